"""The demo: real SDK clients against the simulated provider, recorded by instrument()."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from click.testing import CliRunner

from llmledger.cli import main
from llmledger.store import open_store


def test_demo_fills_a_ledger_of_its_own_and_reports(ledger_home: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--calls", "20"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "20 calls (1 failed on purpose)" in result.output
    assert "by feature" in result.output and "by model" in result.output
    demo_url = f"sqlite:///{ledger_home / 'demo.db'}"
    assert f"demo ledger: {demo_url}" in result.output
    # the user's own ledger is left alone
    assert not (ledger_home / "ledger.db").exists()

    store = open_store(demo_url)
    events = store.recent(limit=100)
    store.close()
    assert len(events) == 20
    statuses = Counter(e.status for e in events)
    assert statuses == {"ok": 19, "error": 1}
    ok = [e for e in events if e.status == "ok"]
    # every successful call was priced from the catalog and attributed
    assert all(e.cost is not None and e.cost_source == "catalog" for e in ok)
    assert all(e.tenant and e.user and e.feature for e in events)
    assert {e.provider for e in events} == {"openai", "anthropic"}
    assert {e.operation for e in events} >= {"chat", "responses", "embeddings"}
    assert any(e.stream and e.ttft_ms is not None for e in ok)
    # the repeated long instructions hit the simulated prompt caches
    assert sum(e.usage.cache_read_tokens for e in ok) > 0
    assert any(e.usage.reasoning_tokens > 0 for e in ok)
    failed = next(e for e in events if e.status == "error")
    assert failed.error_type == "InternalServerError" and failed.request_id


def test_a_second_demo_run_does_not_double_its_ledger(ledger_home: Path) -> None:
    for _ in range(2):
        result = CliRunner().invoke(main, ["demo", "--calls", "5"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    store = open_store(f"sqlite:///{ledger_home / 'demo.db'}")
    assert store.count() == 5
    store.close()


def test_demo_into_a_named_ledger_replaces_its_earlier_run(db_url: str) -> None:
    store = open_store(db_url)
    from datetime import UTC, datetime

    from llmledger.core.events import UsageEvent

    mine = UsageEvent(provider="openai", model="gpt-4o", ts=datetime.now(UTC), tenant="real")
    store.write([mine])
    for run in range(2):
        result = CliRunner().invoke(
            main, ["demo", "--calls", "6", "--db", db_url], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        assert ("deleted the 6 events of an earlier demo run" in result.output) == (run == 1)
    assert store.count() == 7
    assert store.get(mine.id) == mine
    store.close()
