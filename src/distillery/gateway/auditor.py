"""The background auditor: an audit pass (audit/passes.py) every `interval_s`, in a thread.

Its decisions land in accounts.status, which the gateway reads through the authenticator's
cache: the next request after `auth_cache_ttl_s` sees a flag, a throttle or a block, with no
restart. The embedding model loads in the thread, not on the request path; a failed pass is
logged and retried at the next interval (the audit must never take the gateway down).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

log = logging.getLogger(__name__)


class BackgroundAuditor:
    def __init__(self, engine: Engine, calibration: str, config_file: str | None = None):
        from distillery.audit import AuditConfig

        self.engine = engine
        self.config = AuditConfig.from_toml(config_file, calibration=calibration)
        self.passes = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._done = threading.Event()  # set after each pass (tests wait on it)
        self._thread = threading.Thread(target=self._run, name="auditor", daemon=True)

    @classmethod
    def start(cls, engine: Engine, serve_config) -> BackgroundAuditor:
        a = cls(engine, serve_config.audit_calibration, serve_config.audit_config)
        a._thread.start()
        return a

    def _run(self) -> None:
        from distillery.audit import Auditor, Calibration

        auditor = Auditor(self.engine, Calibration.load(self.config.calibration), self.config)
        while not self._stop.is_set():
            try:
                res = auditor.run()
                if res.decisions:
                    log.info("audit pass: %d rows, %d decisions", res.rows_read,
                             len(res.decisions))
                self.last_error = None
            except Exception as e:  # keep serving; say why the audit is failing
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("audit pass failed")
            self.passes += 1
            self._done.set()
            self._stop.wait(self.config.interval_s)

    def wait_pass(self, timeout: float = 60.0) -> bool:
        """Block until the next pass has finished."""
        self._done.clear()
        return self._done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
