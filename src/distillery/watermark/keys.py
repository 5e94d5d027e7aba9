"""The key ring: one secret master key -> a global (provider) key and per-account keys.

The master key lives in a file readable by its owner only (mode 0600; a looser file is
refused) or in the environment variable DISTILLERY_WATERMARK_KEY. It is versioned: rotation
adds a version and keeps the old ones, so text marked before a rotation is still detected.

Derivation (HMAC-SHA256, RFC 2104), per master version v:
  global key            HMAC(master_v, "distillery-watermark/global")
  account key (name)    HMAC(master_v, "distillery-watermark/account/" + name)
Each key has a public id, e.g. "account:alice:v1:3fa29c0e71d2" or "global:v1:...", whose last
part is HMAC(key, "key-id") truncated: it names the key in usage logs without revealing it.
Independent keys per account mean a stolen account key says nothing about the others.

Secrets never reach a log or a repr: WatermarkKey hides them, and KeyRing prints only ids.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from distillery.models.registry import distillery_home

log = logging.getLogger(__name__)

ENV_VAR = "DISTILLERY_WATERMARK_KEY"
FILE_FORMAT = "distillery-watermark-keyring/1"
Scope = Literal["global", "account"]


class KeyFileError(ValueError):
    """The key file (or variable) is missing, malformed, or readable by others."""


def default_key_path() -> Path:
    return distillery_home() / "watermark.key"


@dataclass(frozen=True)
class WatermarkKey:
    key_id: str
    scope: Scope
    version: int
    account: str | None
    secret: bytes = field(repr=False)

    def derive(self, label: str) -> bytes:
        """A sub-secret for one purpose (e.g. the layer split, the hashing seed)."""
        return hmac.new(self.secret, label.encode(), hashlib.sha256).digest()

    def seed64(self, label: str = "seed") -> int:
        """A 64-bit integer seed for the integer hash (prf.py)."""
        return int.from_bytes(self.derive(label)[:8], "little")


AccountKey = WatermarkKey  # the name the gateway contract uses; one class for both scopes


def _fingerprint(secret: bytes) -> str:
    return hmac.new(secret, b"key-id", hashlib.sha256).hexdigest()[:12]


def _validate_account(name: str) -> None:
    if not name or not name.strip() or any(c in name for c in "\n\r\0"):
        raise ValueError(f"account name {name!r} is empty or has control characters")


class KeyRing:
    """Master key versions -> derived keys. Build with KeyRing.load() or KeyRing.generate()."""

    def __init__(self, versions: dict[int, bytes], current: int | None = None):
        if not versions:
            raise ValueError("a key ring needs at least one master key version")
        for v, k in versions.items():
            if len(k) < 16:
                raise ValueError(f"master key version {v} is {len(k)} bytes: use at least 16")
        self._versions = dict(versions)
        self.current = current if current is not None else max(versions)
        if self.current not in versions:
            raise ValueError(f"current version {self.current} is not among {sorted(versions)}")

    def __repr__(self) -> str:
        return f"KeyRing(versions={self.versions}, current={self.current})"

    @property
    def versions(self) -> list[int]:
        return sorted(self._versions)

    @classmethod
    def generate(cls, path: str | Path | None = None) -> KeyRing:
        """A new random master key (version 1); written to `path` (mode 0600) when given."""
        ring = cls({1: secrets.token_bytes(32)})
        if path is not None:
            ring.save(path)
        return ring

    def rotated(self) -> KeyRing:
        """A ring with a new current version; old versions stay for detection."""
        v = max(self._versions) + 1
        return KeyRing({**self._versions, v: secrets.token_bytes(32)}, current=v)

    def _master(self, version: int | None) -> tuple[int, bytes]:
        v = self.current if version is None else version
        if v not in self._versions:
            raise KeyError(f"no master key version {v}: this ring has {self.versions}")
        return v, self._versions[v]

    def global_key(self, version: int | None = None) -> WatermarkKey:
        v, master = self._master(version)
        secret = hmac.new(master, b"distillery-watermark/global", hashlib.sha256).digest()
        return WatermarkKey(f"global:v{v}:{_fingerprint(secret)}", "global", v, None, secret)

    def account_key(self, name: str, version: int | None = None) -> WatermarkKey:
        _validate_account(name)
        v, master = self._master(version)
        msg = b"distillery-watermark/account/" + name.encode()
        secret = hmac.new(master, msg, hashlib.sha256).digest()
        return WatermarkKey(f"account:{name}:v{v}:{_fingerprint(secret)}", "account", v, name,
                            secret)

    # ---- storage ----------------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps({"format": FILE_FORMAT, "current": self.current,
                           "versions": {str(v): k.hex() for v, k in self._versions.items()}})

    @classmethod
    def from_json(cls, text: str, where: str) -> KeyRing:
        try:
            d = json.loads(text)
            if d.get("format") != FILE_FORMAT:
                raise ValueError
            return cls({int(v): bytes.fromhex(k) for v, k in d["versions"].items()},
                       int(d["current"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise KeyFileError(
                f"{where} is not a distillery watermark key ring: "
                "create one with `distillery watermark keygen`"
            ) from None

    @classmethod
    def from_env_value(cls, value: str) -> KeyRing:
        """DISTILLERY_WATERMARK_KEY: one hex key (version 1), or "1:hex,2:hex" (latest current)."""
        try:
            if ":" not in value:
                return cls({1: bytes.fromhex(value.strip())})
            pairs = (part.split(":", 1) for part in value.split(","))
            return cls({int(v): bytes.fromhex(k.strip()) for v, k in pairs})
        except ValueError:
            raise KeyFileError(
                f"{ENV_VAR} must be a hex key or '1:HEX,2:HEX' (at least 16 bytes each)"
            ) from None

    @classmethod
    def load(cls, path: str | Path | None = None) -> KeyRing:
        """From `path`, else $DISTILLERY_WATERMARK_KEY, else the default file."""
        if path is None and os.environ.get(ENV_VAR):
            return cls.from_env_value(os.environ[ENV_VAR])
        p = Path(path) if path is not None else default_key_path()
        try:
            st = p.stat()
        except FileNotFoundError:
            raise KeyFileError(
                f"no watermark key at {p}: create one with `distillery watermark keygen` "
                f"or set {ENV_VAR}"
            ) from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"watermark key file {p} has mode {stat.S_IMODE(st.st_mode):04o}: it must be "
                f"readable by its owner only; run `chmod 600 {p}`"
            )
        return cls.from_json(p.read_text(), str(p))

    def save(self, path: str | Path | None = None, overwrite: bool = False) -> Path:
        """Write with mode 0600 from the start (no window where others could read it)."""
        p = Path(path) if path is not None else default_key_path()
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if p.exists() and not overwrite:
            raise FileExistsError(
                f"{p} exists: rotate it with `distillery watermark keygen --rotate` "
                "(old versions stay for detection)"
            )
        tmp = p.with_name(p.name + f".tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.to_json())
        os.replace(tmp, p)
        log.info("wrote watermark key ring (versions %s) to %s", self.versions, p)
        return p
