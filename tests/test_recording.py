"""record(), track() and flush() end to end: priced, attributed and committed to the ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import llmledger
from tests.conftest import RECORDED

pytestmark = pytest.mark.usefixtures("prices_loaded")


def committed() -> list[llmledger.UsageEvent]:
    assert llmledger.flush(timeout=10)
    return llmledger.get_ledger().store.recent(limit=100)


def test_record_counts_prices_and_commits() -> None:
    with llmledger.attribute(tenant="acme", user="ana", tags={"ticket": "T-1"}):
        event = llmledger.record(
            provider="openai",
            model="gpt-4o",
            input_tokens=1000,
            cache_read_tokens=400,
            output_tokens=100,
            feature="summary",
        )
    # gpt-4o: $2.50 input, $1.25 cached input, $10 output per million tokens
    assert (
        event.cost
        == Decimal("600") * Decimal("2.5") / 10**6
        + Decimal("400") * Decimal("1.25") / 10**6
        + Decimal("100") * 10 / 10**6
    )
    assert event.cost_source == "catalog" and event.price_ref
    assert (event.tenant, event.user, event.feature, event.tags) == (
        "acme",
        "ana",
        "summary",
        {"ticket": "T-1"},
    )
    [stored] = committed()
    assert stored.id == event.id and stored.cost == event.cost
    assert stored.usage == event.usage and stored.tags == {"ticket": "T-1"}


def test_unknown_model_is_unpriced_never_zero() -> None:
    event = llmledger.record(
        provider="openai", model="my-finetune-xyz", input_tokens=10, output_tokens=1
    )
    assert event.cost is None
    assert event.unpriced_reason and "my-finetune-xyz" in event.unpriced_reason
    [stored] = committed()
    assert stored.cost is None and stored.unpriced_reason == event.unpriced_reason


def test_record_from_a_recorded_response() -> None:
    body = json.loads((RECORDED / "anthropic_messages_cache_read.json").read_text())
    event = llmledger.record(response=body, provider="anthropic", feature="chat")
    assert event.provider == "anthropic"
    assert event.usage.cache_read_tokens == body["usage"]["cache_read_input_tokens"]
    assert event.usage.input_tokens == (
        body["usage"]["input_tokens"]
        + body["usage"]["cache_read_input_tokens"]
        + body["usage"]["cache_creation_input_tokens"]
    )
    assert event.usage_raw == body["usage"]
    assert event.cost is not None and event.cost > 0


def test_record_backfill_uses_price_in_force_then() -> None:
    # claude-sonnet-4-6 charged $6/M for prompts over 200k tokens until 2026-03-13, then $3/M
    before = datetime(2026, 2, 1, 12, tzinfo=UTC)
    after = datetime(2026, 4, 1, 12, tzinfo=UTC)
    old = llmledger.record(
        provider="anthropic", model="claude-sonnet-4-6", input_tokens=300_000, ts=before
    )
    new = llmledger.record(
        provider="anthropic", model="claude-sonnet-4-6", input_tokens=300_000, ts=after.isoformat()
    )
    assert (old.ts, new.ts) == (before, after)
    assert (old.cost, new.cost) == (Decimal("1.8"), Decimal("0.9"))


def test_manual_cost_wins() -> None:
    event = llmledger.record(provider="openai", model="gpt-4o", input_tokens=1, cost="0.25")
    assert (event.cost, event.cost_source) == (Decimal("0.25"), "manual")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_tokens": -1}, "negative"),
        ({"output_tokens": -1}, "output_tokens is negative"),
        ({"input_tokens": True}, "input_tokens must be an integer"),
        ({"output_tokens": 1.5}, "output_tokens must be an integer"),
        ({"input_tokens": 5, "cache_read_tokens": 9}, "exceed input_tokens"),
        ({"prompt_tokens": 5}, "unknown event field"),
        ({"ts": datetime(2025, 1, 1)}, "time zone"),
        ({"ts": "yesterday"}, "ISO 8601"),
        ({"cost": "-1"}, "non-negative"),
        ({"status": "great"}, "status must be one of"),
        ({"operation": "dance"}, "operation must be one of"),
        ({"duration_ms": -1}, "duration_ms must be a non-negative number"),
        ({"tags": {1: "x"}}, "tags must map strings to strings"),
        ({"model": None}, "model is required"),
        ({"model": 7}, "model is required"),
        ({"provider": 5}, "provider is required"),
    ],
)
def test_record_rejects_bad_input_clearly(kwargs: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"provider": "openai", "model": "gpt-4o", **kwargs}
    with pytest.raises(llmledger.InvalidEventError, match=message):
        llmledger.record(**values)  # type: ignore[arg-type]  # bad input on purpose
    assert committed() == []


def test_track_times_the_call_and_records_errors() -> None:
    with llmledger.track(provider="openai", model="gpt-4o-mini", feature="chat") as t:
        t.set_usage(input_tokens=20, output_tokens=5)
    assert t.event is not None and t.event.status == "ok"
    assert t.event.duration_ms is not None and t.event.duration_ms >= 0

    class RateLimited(Exception):
        request_id = "req_123"

    with pytest.raises(RateLimited), llmledger.track(provider="openai", model="gpt-4o-mini"):
        raise RateLimited("slow down")
    events = {e.status: e for e in committed()}
    failed = events["error"]
    assert (failed.error_type, failed.error_message, failed.request_id) == (
        "RateLimited",
        "slow down",
        "req_123",
    )
    assert failed.usage_source == "missing" and failed.usage.is_empty()
    # A failed request is billed nothing: priced at zero, not left unpriced
    assert failed.cost == Decimal(0) and failed.unpriced_reason is None


def test_track_takes_usage_from_a_response() -> None:
    body = json.loads((RECORDED / "openai_chat_prompt_cache_hit.json").read_text())
    with llmledger.track(provider="openai", model=body["model"]) as t:
        t.set_response(body)
    assert t.event is not None
    assert (
        t.event.usage.cache_read_tokens == body["usage"]["prompt_tokens_details"]["cached_tokens"]
    )
    assert t.event.request_id == body["id"] or t.event.request_id


def test_flush_on_many_events_and_ordering() -> None:
    base = datetime(2025, 6, 1, tzinfo=UTC)
    for i in range(500):
        llmledger.record(
            provider="openai",
            model="gpt-4o-mini",
            input_tokens=i,
            output_tokens=1,
            ts=base + timedelta(seconds=i),
        )
    events = committed()
    assert len(events) == 100
    assert [e.usage.input_tokens for e in events[:3]] == [499, 498, 497]
    assert llmledger.get_ledger().store.count() == 500


def test_the_first_record_leaves_the_database_library_to_the_writer(tmp_path: Path) -> None:
    """record() on the caller's thread imports no database library (the writer does)."""
    code = (
        "import sys, threading, llmledger\n"
        "caller, seen = threading.get_ident(), set()\n"
        "def hook(event, args):\n"
        "    if event == 'import' and threading.get_ident() == caller:\n"
        "        seen.add(args[0].split('.')[0])\n"
        "sys.addaudithook(hook)\n"
        "llmledger.record(provider='openai', model='gpt-4o', input_tokens=1, output_tokens=1)\n"
        "sys.addaudithook(lambda *a: None)\n"
        "found = sorted(seen & {'sqlalchemy', 'alembic', 'psycopg', 'sqlite3'})\n"
        "caller = None\n"
        "assert llmledger.flush(60)\n"
        "print(found)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            **os.environ,
            "LLMLEDGER_HOME": str(tmp_path),
            "PYTHONPATH": ":".join(p for p in sys.path if p),
        },
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
