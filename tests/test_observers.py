"""After-commit listeners: told of the events a write stored, once each, in the writer's
thread; a failing listener loses nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

import llmledger
from llmledger.core.events import UsageEvent
from llmledger.runtime.ledger import shutdown


def test_listeners_see_each_stored_event_once_and_a_failing_one_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = llmledger.configure(home=tmp_path, strict=False)
    seen: list[str] = []
    closed: list[bool] = []

    def fail(events: Sequence[UsageEvent]) -> None:
        raise RuntimeError("listener broke")

    def note(events: Sequence[UsageEvent]) -> None:
        seen.extend(event.id for event in events)

    ledger.after_commit.add(fail)
    ledger.after_commit.add(note, on_close=lambda: closed.append(True))
    event = llmledger.record(provider="openai", model="gpt-4o", input_tokens=10, output_tokens=1)
    assert ledger.flush(10)
    # The same event again (a replay): stored once, so told once.
    ledger.submit(event)
    other = llmledger.record(provider="openai", model="gpt-4o", input_tokens=3)
    assert ledger.flush(10)
    assert seen == [event.id, other.id]
    assert ledger.store.count() == 2
    assert ledger.stats()["failed"] == 0
    assert ledger.after_commit.failed == 2
    assert "an after-commit listener failed" in caplog.text
    ledger.after_commit.remove(fail)
    assert len(ledger.after_commit) == 1
    shutdown()
    assert closed == [True]


def test_no_listener_means_no_work(tmp_path: Path) -> None:
    ledger = llmledger.configure(home=tmp_path)
    assert len(ledger.after_commit) == 0
    llmledger.record(provider="openai", model="gpt-4o", input_tokens=1, ts=datetime.now(UTC))
    assert ledger.flush(10) and ledger.store.count() == 1
    shutdown()
