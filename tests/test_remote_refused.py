"""The remote sink against a real ``llmledger serve`` process: events the service rejects
are set aside once each, with their reasons, and come back with ``spool requeue``; an answer
that does not match the batch keeps it in the journal; an event the service keeps failing on
is set aside after a bound.  A small HTTP server in front of the service plays the faults."""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from llmledger.cli import main
from llmledger.core.events import UsageEvent
from llmledger.core.usage import Usage
from llmledger.runtime.content import ContentRecord
from llmledger.runtime.journal import Journal
from llmledger.runtime.remote import RemoteSink
from llmledger.runtime.spool import journal_folder, journal_status, read_set_aside
from llmledger.runtime.writer import Writer
from llmledger.store import open_store
from tests.test_server_e2e import cli, free_port, serve


def event(feature: str | None = "chat", **changes: Any) -> UsageEvent:
    return UsageEvent(
        provider="openai",
        model="gpt-4o",
        ts=datetime.now(UTC) - timedelta(minutes=1),
        usage=Usage(input_tokens=10, output_tokens=3),
        feature=feature,
        **changes,
    )


def ingest_key(db_url: str) -> str:
    answer = cli(db_url, "keys", "create", "--role", "ingest", "--tenant", "acme", "--json")
    secret: str = json.loads(answer)["secret"]
    return secret


def refused(home: Path) -> list[tuple[str, str]]:
    """(event id, reason) of every event set aside under ``home``, oldest file first."""
    found: list[tuple[str, str]] = []
    for path in sorted((home / "spool" / "refused").glob("*.json.gz")):
        body = json.loads(gzip.decompress(path.read_bytes()))
        assert [item["id"] for item in body["events"]] == [i["id"] for i in read_set_aside(path)]
        found.extend(zip([item["id"] for item in body["events"]], body["reasons"], strict=True))
    return found


def stored_ids(db_url: str) -> list[str]:
    with open_store(db_url) as store:
        return [e.id for e in store.events()]


def writer_for(sink: RemoteSink, home: Path) -> Writer:
    """What a ledger with ``url`` builds: the remote sink fed by its journal on disk."""
    journal = Journal(journal_folder(home / "spool", sink.url))
    return Writer(
        sink,
        journal=journal,
        batch_size=1000,
        flush_interval=0.05,
        strict=False,
        retry_backoff=0.01,
        max_backoff=0.05,
        shutdown_timeout=1.0,
    )


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_events_the_service_rejects_are_set_aside_once_then_requeued_after_the_fix(
    db_url: str, ledger_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = ingest_key(db_url)
    port = free_port()
    good = [event() for _ in range(6)]
    undeclared = [event("search") for _ in range(2)]  # the service declares only "chat"
    nul = event(tags={"note": "a\x00b"})  # no store holds a NUL
    first = [good[0], undeclared[0], good[1], good[2], undeclared[1]]
    second = [good[3], nul, good[4], good[5]]
    with serve(db_url, port, env={"LLMLEDGER_FEATURES": "chat"}) as url:
        sink = RemoteSink(url, key, spool_dir=ledger_home / "spool", retries=0)
        writer = writer_for(sink, ledger_home)
        asked = ContentRecord(undeclared[0].id, undeclared[0].ts, "asked?", "answered.")
        for e in first:
            if e is undeclared[0]:  # its text waits in the journal, then set aside, with it
                assert writer.journal.append(e, ("asked?", "answered."))
            else:
                writer.submit(e)
        assert writer.flush(30) is False  # two events failed: flush says so
        for e in second:
            writer.submit(e)
        assert writer.flush(30) is False
        assert writer.pending == 0  # every journal entry was acknowledged
        # The same batch again (a replay after a crash before the acknowledgement):
        # the good ones are duplicates, the rejected ones are not set aside twice.
        again = sink.write(first + second)
        assert again.count == 0 and len(again.duplicates) == 6 and len(again.rejected) == 3
        writer.close()
        sink.close()
        assert sorted(stored_ids(db_url)) == sorted(e.id for e in good)
    set_aside = refused(ledger_home)
    assert [event_id for event_id, _ in set_aside] == [e.id for e in [*undeclared, nul]]
    reasons = dict(set_aside)
    for e in undeclared:
        assert "unknown feature 'search'" in reasons[e.id]
    assert "NUL" in reasons[nul.id]
    assert sink.stats.rejected == 6 and sink.stats.refused == 3 and sink.stats.sent == 6
    monkeypatch.setenv("LLMLEDGER_URL", url)
    monkeypatch.setenv("LLMLEDGER_API_KEY", key)
    code, out = run("spool", "status", "--json")
    assert code == 0, out
    figures = json.loads(out)
    assert (figures["refused_batches"], figures["refused_events"]) == (2, 3)
    assert figures["waiting_events"] == 0
    # The cause is fixed (the service declares the feature): requeue, then replay.
    with serve(db_url, port, env={"LLMLEDGER_FEATURES": "chat,search"}):
        code, out = run("spool", "requeue")
        assert code == 0 and "2 events back in the journal" in out, out
        assert "left in place" in out  # the NUL cannot be sent anywhere as it is
        code, out = run("spool", "replay")
        assert code == 0 and out.startswith("2 events stored"), out
    ids = stored_ids(db_url)
    assert sorted(ids) == sorted(e.id for e in [*good, *undeclared])  # each once
    with open_store(db_url) as store:
        assert store.get_content(undeclared[0].id) == asked
    assert [event_id for event_id, _ in refused(ledger_home)] == [nul.id]
    status = journal_status(ledger_home / "spool")
    assert (status.refused_events, status.waiting_events) == (1, 0)


class Front:
    """A small HTTP server in front of the service, answering as ``mode`` says:
    ``pass`` forwards, ``short`` forwards and drops the last result of the answer,
    ``fail`` answers 500 to any batch holding one of ``failing``, ``down`` answers 503
    to everything."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self.failing: set[str] = set()
        self.posts: list[list[str]] = []  # the ids of each batch posted
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ids = [e.get("id") for e in json.loads(gzip.decompress(body))["events"]]
                front.posts.append(ids)
                if front.mode == "down" or (front.mode == "fail" and front.failing & set(ids)):
                    self._answer(500 if front.mode == "fail" else 503, b'{"ok":false}')
                    return
                answer = httpx.post(
                    front.upstream + self.path,
                    content=body,
                    headers={k: v for k, v in self.headers.items() if k.lower() != "host"},
                    timeout=30,
                )
                content = answer.content
                if front.mode == "short" and answer.status_code == 200 and ids:
                    results = answer.json()["results"][:-1]
                    content = json.dumps({"results": results}).encode()
                self._answer(answer.status_code, content)

            def _answer(self, status: int, content: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def failed_posts(self, event_id: str) -> int:
        return sum(event_id in ids for ids in self.posts)


@contextmanager
def front_of(upstream: str) -> Iterator[Front]:
    front = Front(upstream)
    thread = threading.Thread(target=front.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield front
    finally:
        front.server.shutdown()
        front.server.server_close()
        thread.join(10)


def test_an_answer_that_does_not_match_the_batch_keeps_it_in_the_journal(
    db_url: str, ledger_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = ingest_key(db_url)
    batch = [event() for _ in range(5)]
    with serve(db_url, free_port()) as url, front_of(url) as front:
        front.mode = "short"
        sink = RemoteSink(front.url, key, spool_dir=ledger_home / "spool", retries=0)
        writer = writer_for(sink, ledger_home)
        with caplog.at_level(logging.ERROR, logger="llmledger.runtime.remote"):
            for e in batch:
                writer.submit(e)
            assert writer.flush(1) is False
            # Sent again and again (the writer's pauses are short here)...
            wait_for(lambda: sum(len(ids) == 5 for ids in front.posts) >= 3)
        assert writer.pending == 5 and writer.written == 0
        assert "4 results for 5 events" in (writer.down or "")
        # ... and logged once, not at every try.
        assert caplog.text.count("does not match the 5 events sent (4 results for 5 events)") == 1
        assert not refused(ledger_home)
        # The service did store them; once its answers match, the journal entry goes,
        # and every event is in the ledger once.
        front.mode = "pass"
        assert writer.flush(30)
        assert writer.pending == 0
        writer.close()
        sink.close()
    assert sorted(stored_ids(db_url)) == sorted(e.id for e in batch)
    assert journal_status(ledger_home / "spool").waiting_events == 0


def test_a_lone_event_the_service_keeps_failing_on_is_set_aside_after_the_bound(
    db_url: str, ledger_home: Path
) -> None:
    key = ingest_key(db_url)
    poison, after = event(), event()
    with serve(db_url, free_port()) as url, front_of(url) as front:
        sink = RemoteSink(
            front.url,
            key,
            spool_dir=ledger_home / "spool",
            retries=1,
            max_failures=3,
            sleep=lambda _: None,  # tries again at once: the bound counts writes, not time
        )
        writer = writer_for(sink, ledger_home)
        # While the service answers nothing but 5xx it is down: nothing is set aside.
        front.mode = "down"
        writer.submit(poison)
        assert writer.flush(1) is False
        assert writer.pending == 1 and not refused(ledger_home)
        # Up, but failing on this event alone, on every try of every write.
        front.failing = {poison.id}
        mark = len(front.posts)
        front.mode = "fail"
        assert writer.flush(30)
        assert writer.pending == 0
        tries = [ids for ids in front.posts[mark:] if ids == [poison.id]]
        # Three counted writes of up to two tries each (one may straddle the switch; a
        # write whose first try raced the switch counts one try).
        assert 3 <= len(tries) <= 3 * 2 + 2
        [(event_id, reason)] = refused(ledger_home)
        assert event_id == poison.id
        assert reason.startswith("the service fails on this event (3 writes): HTTP 500")
        writer.submit(after)
        assert writer.flush(30)
        writer.close()
        sink.close()
    assert stored_ids(db_url) == [after.id]
    assert sink.stats.refused == 1
