"""Property-based tests of the REST API from its own OpenAPI schema (schemathesis 4.x).

Requests generated from the schema, valid and invalid, must never get a 5xx; the answers must
conform to the schema (status codes, content types, bodies). The app runs with a bearer token
(so the security scheme is part of the schema too) over the committed sample baseline, with
small limits so the limit paths are reachable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tlsdetect.serve.app import Settings, create_app

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "schemathesis-token"

app = create_app(Settings(baseline_dir=ROOT / "baselines" / "sample", token=TOKEN, max_batch=50,
                          max_body_bytes=64 * 1024, reload_check_seconds=3600))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_without_token(case: Any) -> None:
    case.call_and_validate(checks=[not_a_server_error, content_type_conformance])
