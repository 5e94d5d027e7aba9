"""Property-based fuzzing of the OpenAPI schema (schemathesis): no input gives a 5xx (fast
tier, every operation a few times); no server error and no schema violation (slow tier)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings


def test_openapi_fuzz_finds_no_5xx(module_live):
    fuzz_server = module_live
    admin = fuzz_server.gateway.config.admin_token
    schema = schemathesis.openapi.from_url(fuzz_server.server.base_url + "/openapi.json",
                                           headers={"Authorization": f"Bearer {admin}"})
    keys = {"/v1": f"Bearer {fuzz_server.key}", "/admin": f"Bearer {admin}"}
    failures = []
    ops = list(schema.get_all_operations())
    assert len(ops) >= 8
    for result in ops:
        op = result.ok()

        @settings(max_examples=15, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def check(case):
            auth = keys["/admin" if case.path.startswith("/admin") else "/v1"]
            resp = case.call(headers={"Authorization": auth}, timeout=30)
            if resp.status_code >= 500:
                failures.append((case.operation.label, resp.status_code, resp.text[:300]))
            if resp.status_code >= 400 and "json" in str(resp.headers.get("content-type")):
                body = resp.json()
                if "error" not in body or "message" not in body["error"]:
                    failures.append((case.operation.label, resp.status_code, "not OpenAI-shaped"))

        check()
    assert not failures, failures[:5]


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_schema_violation(make_live):
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    lv = make_live(rpm_limit=100_000)
    admin = lv.gateway.config.admin_token
    schema = schemathesis.openapi.from_url(lv.server.base_url + "/openapi.json",
                                           headers={"Authorization": f"Bearer {admin}"})
    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    failures, ops = [], [op.ok() for op in schema.get_all_operations()]
    assert {op.path for op in ops} >= {"/v1/chat/completions", "/v1/completions",
                                       "/admin/keys", "/admin/accounts"}
    for op in ops:
        @settings(max_examples=60, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def check(case):
            auth = f"Bearer {admin if case.path.startswith('/admin') else lv.key}"
            try:
                case.call_and_validate(headers={"Authorization": auth}, checks=checks,
                                       timeout=30)
            except (AssertionError, BaseExceptionGroup) as e:  # schemathesis failures
                failures.append((case.operation.label, str(e)[:500]))

        check()
    assert not failures, failures[:5]
