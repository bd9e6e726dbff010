"""One validation for every entry point: ``record()``, ``llmledger record`` and the service's
ingest refuse the same events with the same reasons; ``--last`` ends at now everywhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

import llmledger
from llmledger.cli import main
from llmledger.core.errors import InvalidEventError
from llmledger.core.events import UsageEvent
from llmledger.core.settings import load_settings
from llmledger.core.usage import Usage
from llmledger.core.validation import MAX_CLOCK_SKEW, check_time
from llmledger.query import build_query
from llmledger.server import create_app
from llmledger.store import open_store

NOW = datetime.now(UTC)

#: (event fields, what the refusal says), the same for every entry point.
BAD = [
    ({"ts": (NOW + timedelta(days=1)).isoformat()}, "is in the future"),
    ({"ts": "2035-01-01T00:00:00Z"}, "is in the future"),
    ({"ts": "2025-01-01T00:00:00"}, "needs a UTC offset"),
    ({"ts": "1999-12-31T23:00:00Z"}, "is before 2000"),
    ({"ts": "last tuesday"}, "ts"),
    ({"feature": "colour"}, "unknown feature 'colour'"),
]
IDS = ["tomorrow", "2035", "naive", "1999", "not-a-time", "undeclared-feature"]


@pytest.fixture
def ledger_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("LLMLEDGER_DATABASE_URL", url)
    monkeypatch.setenv("LLMLEDGER_FEATURES", "chat,search")
    return url


@pytest.fixture
def client(ledger_url: str) -> Iterator[tuple[TestClient, str]]:
    app = create_app(load_settings())
    admin = app.state.service.keys.create("admin", now=datetime.now(UTC)).secret
    with TestClient(app) as test_client:
        yield test_client, admin


@pytest.mark.parametrize(("fields", "says"), BAD, ids=IDS)
def test_record_refuses(ledger_url: str, fields: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidEventError, match=says):
        llmledger.record(provider="openai", model="gpt-4o", input_tokens=5, **fields)


@pytest.mark.parametrize(("fields", "says"), BAD, ids=IDS)
def test_the_record_command_refuses(ledger_url: str, fields: dict[str, Any], says: str) -> None:
    args = ["record", "--provider", "openai", "--model", "gpt-4o", "--input", "5"]
    for name, value in fields.items():
        args += [f"--{name}", value]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ") and says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("fields", "says"), BAD, ids=IDS)
def test_the_service_refuses(
    client: tuple[TestClient, str], fields: dict[str, Any], says: str
) -> None:
    test_client, admin = client
    event = {
        "ts": (NOW - timedelta(minutes=1)).isoformat(),
        "provider": "openai",
        "model": "gpt-4o",
        "usage": {"input_tokens": 5},
        **fields,
    }
    headers = {"Authorization": f"Bearer {admin}"}
    answer = test_client.post("/v1/events", json=event, headers=headers)
    assert answer.status_code == 422, answer.text
    assert says in answer.json()["message"]
    batch = test_client.post("/v1/events", json={"events": [event]}, headers=headers)
    [result] = batch.json()["results"]
    assert result["status"] == "rejected" and says in result["reason"]


def test_every_entry_point_takes_a_declared_feature_and_a_time_with_an_offset(
    client: tuple[TestClient, str],
) -> None:
    ts = (NOW - timedelta(hours=1)).astimezone().isoformat()
    event = llmledger.record(provider="openai", model="gpt-4o", input_tokens=5, ts=ts)
    assert event.ts == datetime.fromisoformat(ts).astimezone(UTC)
    result = CliRunner().invoke(
        main, ["record", "--provider", "openai", "--model", "m", "--feature", "chat", "--ts", ts]
    )
    assert result.exit_code == 0, result.output
    test_client, admin = client
    answer = test_client.post(
        "/v1/events",
        json={"ts": ts, "provider": "openai", "model": "m", "feature": "search"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert answer.json()["results"][0]["status"] == "accepted"


def test_clock_skew_is_allowed_up_to_its_limit() -> None:
    now = datetime(2025, 6, 1, tzinfo=UTC)
    assert check_time(now + MAX_CLOCK_SKEW, now) == now + MAX_CLOCK_SKEW
    with pytest.raises(InvalidEventError, match="in the future"):
        check_time(now + MAX_CLOCK_SKEW + timedelta(microseconds=1), now)


# -- --last ends at now ----------------------------------------------------------------


def test_last_is_a_span_that_ends_at_now() -> None:
    now = datetime(2025, 6, 1, 12, tzinfo=UTC)
    query = build_query(now=now, last="7d")
    assert (query.since, query.until) == (now - timedelta(days=7), now)
    until = datetime(2025, 5, 1, tzinfo=UTC)
    query = build_query(now=now, last="1d", until=until.isoformat())
    assert (query.since, query.until) == (until - timedelta(days=1), until)


def test_future_dated_events_never_count_in_last(
    client: tuple[TestClient, str], ledger_url: str
) -> None:
    now = datetime.now(UTC)

    def event(ts: datetime) -> UsageEvent:
        return UsageEvent(
            provider="openai",
            model="gpt-4o",
            ts=ts,
            usage=Usage(input_tokens=10),
            cost=Decimal("0.01"),
            feature="chat",
        )

    # Written straight into the store, as a ledger from before this check may hold them.
    with open_store(ledger_url) as store:
        store.write([event(now - timedelta(hours=2)), event(now + timedelta(days=3))])
    result = CliRunner().invoke(main, ["report", "--last", "7d", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["total"]["calls"] == 1
    test_client, admin = client
    headers = {"Authorization": f"Bearer {admin}"}
    report = test_client.get("/v1/report", params={"last": "7d"}, headers=headers).json()
    assert report["total"]["calls"] == 1
    stats = test_client.get("/v1/stats", params={"days": 7}, headers=headers).json()
    assert stats["total_requests"] == 1
    listed = test_client.get("/v1/events", params={"last": "7d"}, headers=headers).json()
    assert len(listed["events"]) == 1
    everything = CliRunner().invoke(main, ["report", "--json"])
    assert json.loads(everything.output)["total"]["calls"] == 2
