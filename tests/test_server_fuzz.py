"""Fuzz every operation of the OpenAPI document (schemathesis): no answer is a 5xx.

Short on purpose (a few examples per operation); run longer with
``LLMLEDGER_FUZZ_EXAMPLES=500 pytest tests/test_server_fuzz.py``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from llmledger.core.settings import load_settings
from llmledger.server import create_app

EXAMPLES = int(os.environ.get("LLMLEDGER_FUZZ_EXAMPLES", "5"))

# schemathesis builds one test per operation when this module is collected, so
# the app (on a SQLite file of its own) exists from then; the fixture below closes it.
_HOME = Path(tempfile.mkdtemp(prefix="llmledger-fuzz-"))
_APP = create_app(
    load_settings(home=_HOME, database_url=f"sqlite:///{_HOME / 'fuzz.db'}", max_body_bytes=200_000)
)
_ADMIN = _APP.state.service.keys.create("admin", now=datetime.now(UTC)).secret
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP)


@pytest.fixture(scope="module", autouse=True)
def _close_the_app() -> Iterator[None]:
    yield
    _APP.state.service.close()
    shutil.rmtree(_HOME, ignore_errors=True)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
def test_no_operation_answers_a_server_error(case: Any) -> None:
    response = case.call(headers={"Authorization": f"Bearer {_ADMIN}"})
    case.validate_response(response, checks=[not_a_server_error])
    if response.status_code >= 400:
        body = response.json()
        assert body["ok"] is False and body["status"] == response.status_code
        assert isinstance(body["message"], str)
