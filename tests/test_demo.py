"""The demo: real SDK clients against the simulated provider, recorded by instrument()."""

from __future__ import annotations

from collections import Counter

from click.testing import CliRunner

import llmledger
from llmledger.cli import main


def test_demo_fills_a_real_ledger_and_reports() -> None:
    result = CliRunner().invoke(main, ["demo", "--calls", "20"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "20 calls (1 failed on purpose)" in result.output
    assert "by feature" in result.output and "by model" in result.output

    events = llmledger.get_ledger().store.recent(limit=100)
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
