"""``llmledger spool``: what waits in the journal, storing it now, requeueing refused batches."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

import llmledger
from llmledger.cli import main
from llmledger.runtime.ledger import shutdown
from llmledger.runtime.spool import journal_status
from tests.test_remote import FakeService, events, make_sink
from tests.test_remote_content import free_port, serving


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.fixture
def spooled(ledger_home: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[str], list[str]]:
    """A port nothing listens on, the ids of 5 events waiting in its journal, and of 3
    set aside as refused, under ledger_home."""
    service = FakeService()
    sink, _ = make_sink(service, ledger_home)
    service.answers = [422]
    refused = events(3)
    sink.write(refused)
    sink.close()
    port = free_port()
    monkeypatch.setenv("LLMLEDGER_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("LLMLEDGER_API_KEY", "llk_x_y")
    ledger = llmledger.configure(strict=False, shutdown_timeout=0.5)
    waiting = events(5)
    for event in waiting:
        ledger.submit(event)
    shutdown()
    return port, [e.id for e in waiting], [e.id for e in refused]


def test_status_counts_waiting_and_refused_batches(
    ledger_home: Path, spooled: tuple[int, list[str], list[str]]
) -> None:
    port = spooled[0]
    code, out = run("spool", "status", "--json")
    assert code == 0, out
    figures = json.loads(out)
    assert figures["folder"] == str(ledger_home / "spool")
    assert (figures["waiting_batches"], figures["waiting_events"]) == (1, 5)
    assert (figures["refused_batches"], figures["refused_events"]) == (1, 3)
    assert figures["dropped_events"] == 0
    assert figures["bytes"] == journal_status(ledger_home / "spool").bytes > 0
    [destination] = figures["destinations"]
    assert destination["destination"] == f"http://127.0.0.1:{port}"
    assert destination["writing_processes"] == 0
    code, text = run("spool", "status")
    assert code == 0 and "waiting for http://127.0.0.1" in text and "refused, set aside" in text


def test_requeue_then_replay_sends_every_event_once(
    db_url: str,
    ledger_home: Path,
    spooled: tuple[int, list[str], list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, waiting, refused = spooled
    code, out = run("spool", "requeue")
    assert code == 0 and out.startswith("3 events back in the journal"), out
    assert journal_status(ledger_home / "spool").refused_events == 0
    assert journal_status(ledger_home / "spool").waiting_events == 8
    with serving(db_url, port) as service:
        key = service.keys.create("ingest", tenant="acme", now=datetime.now(UTC)).secret
        monkeypatch.setenv("LLMLEDGER_API_KEY", key)
        code, out = run("spool", "replay")
        assert code == 0, out
        assert out.startswith("8 events stored, 0 refused and set aside, 0 still waiting")
        assert sorted(e.id for e in service.store.events()) == sorted(waiting + refused)
        code, out = run("spool", "replay")
        assert code == 0 and out.startswith("0 events stored")
    assert journal_status(ledger_home / "spool").waiting_events == 0


def test_replay_says_what_is_left(
    ledger_home: Path, spooled: tuple[int, list[str], list[str]]
) -> None:
    code, out = run("spool", "replay", "--timeout", "1")
    assert code == 1
    assert "5 still waiting" in out
    assert journal_status(ledger_home / "spool").waiting_events == 5
