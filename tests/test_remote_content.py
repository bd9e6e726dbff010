"""Prompt and response text on the way to a service: the wire shape, the text the remote
sink sends with each event (spool and replay included), and a ledger with ``url`` whose
text ends in the service's database while nothing is written locally."""

from __future__ import annotations

import gzip
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa
import uvicorn

import llmledger
from llmledger.capture import capture_content, instrument
from llmledger.core.errors import InvalidEventError, ServiceUnavailable
from llmledger.core.events import UsageEvent
from llmledger.core.settings import load_settings
from llmledger.runtime.content import (
    ContentRecord,
    PendingContent,
    content_store,
)
from llmledger.runtime.ledger import Ledger, shutdown
from llmledger.runtime.observers import ObservedSink
from llmledger.runtime.remote import RemoteSink
from llmledger.server import create_app
from llmledger.server.state import Service
from llmledger.store import SqlStore
from llmledger.store.content import event_content
from llmledger.wire.parse import MAX_CONTENT_CHARS, parse_body, parse_body_with_content
from llmledger.wire.serialize import event_to_json
from tests.test_capture_support import JSON, Replay, recorded
from tests.test_remote import NOW, events

MESSAGES: Any = [{"role": "user", "content": "my secret question"}]


def wire(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "ts": (NOW - timedelta(minutes=1)).isoformat(),
        "provider": "openai",
        "model": "gpt-4o",
    }
    event.update(changes)
    return event


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# -- the wire shape -----------------------------------------------------------------------


def test_a_batch_gives_each_valid_event_its_text() -> None:
    body = json.dumps(
        {
            "events": [
                wire(content={"prompt": "Hi?", "response": "Hello."}),
                wire(),
                wire(content={"prompt": None, "response": "only an answer"}),
                wire(content={}),
            ]
        }
    )
    read = parse_body_with_content(body, now=datetime.now(UTC))
    assert read.batch
    assert all(isinstance(p, UsageEvent) for p in read.parsed)
    assert [(event, text.prompt, text.response) for event, text in read.content] == [
        (read.parsed[0], "Hi?", "Hello."),
        (read.parsed[2], None, "only an answer"),
        (read.parsed[3], None, None),
    ]
    pairs = zip(read.content, (0, 2, 3), strict=True)
    assert all(event is read.parsed[i] for (event, _), i in pairs)
    # parse_body reads the same body, without the text
    batch, parsed = parse_body(body, now=datetime.now(UTC))
    assert batch and [type(p).__name__ for p in parsed] == ["UsageEvent"] * 4


def test_without_text_nothing_is_collected() -> None:
    body = json.dumps({"events": [wire(), wire()]})
    read = parse_body_with_content(body, now=datetime.now(UTC))
    assert len(read.parsed) == 2 and read.content == []


def test_text_survives_the_event_by_event_path_and_a_single_event() -> None:
    body = json.dumps({"events": [wire(content={"prompt": "kept"}), wire(ts=1)]})
    read = parse_body_with_content(body, now=datetime.now(UTC))
    assert isinstance(read.parsed[1], InvalidEventError)
    assert [(event, text.prompt) for event, text in read.content] == [(read.parsed[0], "kept")]
    single = parse_body_with_content(
        json.dumps(wire(content={"response": "alone"})), now=datetime.now(UTC)
    )
    assert not single.batch
    assert [(e, t.response) for e, t in single.content] == [(single.parsed[0], "alone")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            {"prompt": "x" * (MAX_CONTENT_CHARS + 1)},
            f"content.prompt: String should have at most {MAX_CONTENT_CHARS} characters",
        ),
        ({"response": ["a"]}, "content.response: Input should be a valid string"),
        ({"prompt": "fine", "tokens": 3}, "content.tokens: unknown field"),
        ("text", "content: Input should be a valid dictionary"),
    ],
)
def test_bad_text_is_a_clear_refusal(content: Any, message: str) -> None:
    with pytest.raises(InvalidEventError, match=message):
        parse_body_with_content(json.dumps(wire(content=content)), now=datetime.now(UTC))
    batch = json.dumps({"events": [wire(content=content), wire(content={"prompt": "fine"})]})
    read = parse_body_with_content(batch, now=datetime.now(UTC))
    assert isinstance(read.parsed[0], InvalidEventError) and message in str(read.parsed[0])
    assert [t.prompt for _, t in read.content] == ["fine"]


def test_the_json_of_an_event_never_carries_text() -> None:
    assert "content" not in event_to_json(events(1)[0])


# -- pending text -------------------------------------------------------------------------


def test_pending_text_is_bounded_and_drops_are_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pending = PendingContent(limit=3)
    ts = NOW
    with caplog.at_level(logging.WARNING, logger="llmledger"):
        for i in range(5):
            pending.save(ContentRecord(f"E{i}", ts, f"prompt {i}", None))
    assert len(pending) == 3 and pending.dropped == 2
    assert "the text of event E0 was dropped" in caplog.text
    assert pending.take("E0") is None and pending.take("E1") is None
    # saving again replaces and makes the record the newest
    pending.save(ContentRecord("E2", ts, "again", None))
    pending.save(ContentRecord("E5", ts, "new", None))
    record = pending.take("E2")
    assert record is not None and record.prompt == "again"
    assert pending.take("E2") is None
    assert pending.dropped == 3 and len(pending) == 2  # E3 went


def test_a_ledger_holds_text_until_its_event_is_in_the_journal(tmp_path: Path) -> None:
    for settings in (
        load_settings(home=tmp_path, url="http://127.0.0.1:9", api_key="llk_x_y", queue_limit=10),
        load_settings(home=tmp_path, queue_limit=10),
    ):
        ledger = Ledger(settings)
        store = content_store(ledger)
        assert isinstance(store, PendingContent)
        assert store is ledger.content_store and store.limit == 10
        assert ledger.writer.texts is store
        observed = ledger.writer.store  # told to the after-commit listeners
        assert isinstance(observed, ObservedSink)
        if settings.url:
            sink = observed.sink
            assert isinstance(sink, RemoteSink)
            assert sink.max_body_bytes == ledger.settings.max_body_bytes
        ledger.close()


# -- the remote sink against a fake service -----------------------------------------------


class TextService:
    """Answers like the service and keeps the text of each request's events."""

    def __init__(self) -> None:
        self.texts: dict[str, tuple[str | None, str | None]] = {}
        self.bodies: list[bytes] = []
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        body = gzip.decompress(request.content)
        self.bodies.append(body)
        read = parse_body_with_content(body, now=datetime.now(UTC))
        for event, text in read.content:
            self.texts[event.id] = (text.prompt, text.response)
        results = [
            {"id": getattr(p, "id", None), "status": "accepted", "reason": None}
            for p in read.parsed
        ]
        return httpx.Response(200, json={"results": results})


def text_sink(service: TextService, tmp_path: Path, **options: Any) -> RemoteSink:
    return RemoteSink(
        "http://ledger.test",
        "llk_test",
        spool_dir=tmp_path / "spool",
        transport=httpx.MockTransport(service),
        sleep=lambda _: None,
        **options,
    )


def keep(
    texts: dict[str, ContentRecord], event: UsageEvent, prompt: str, response: str | None
) -> None:
    texts[event.id] = ContentRecord(event.id, event.ts, prompt, response)


def test_each_event_carries_its_text(tmp_path: Path) -> None:
    service = TextService()
    sink = text_sink(service, tmp_path)
    batch = events(3)
    texts: dict[str, ContentRecord] = {}
    keep(texts, batch[0], "first?", "first.")
    keep(texts, batch[2], "third?", None)
    assert sink.write(batch, content=texts).count == 3
    assert service.texts == {batch[0].id: ("first?", "first."), batch[2].id: ("third?", None)}
    service.texts.clear()
    sink.write(batch)  # without text (none kept): no content sent
    assert service.texts == {}
    sink.close()


def test_the_text_of_a_batch_not_sent_goes_with_the_next_try(tmp_path: Path) -> None:
    service = TextService()
    service.down = True
    sink = text_sink(service, tmp_path, retries=0)
    batch = events(2)
    texts: dict[str, ContentRecord] = {}
    keep(texts, batch[1], "while down?", "held.")
    with pytest.raises(ServiceUnavailable):
        sink.write(batch, content=texts)
    service.down = False
    assert sink.write(batch, content=texts).count == 2  # the writer reads both again
    assert service.texts == {batch[1].id: ("while down?", "held.")}
    sink.close()


def test_bodies_stay_under_the_limit_and_text_too_large_is_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = TextService()
    sink = text_sink(service, tmp_path, max_body_bytes=20_000)
    batch = events(12)
    texts: dict[str, ContentRecord] = {}
    for event in batch[:10]:
        keep(texts, event, "p" * 4000, "r" * 1000)
    keep(texts, batch[10], "q" * 30_000, None)
    with caplog.at_level(logging.WARNING, logger="llmledger.runtime.remote"):
        assert sink.write(batch, content=texts).count == 12
    assert len(service.bodies) > 1
    assert all(len(body) <= 20_000 for body in service.bodies)
    assert {e.id for e in batch[:10]} == set(service.texts)
    assert service.texts[batch[0].id] == ("p" * 4000, "r" * 1000)
    assert f"the text of event {batch[10].id} makes it larger than one request" in caplog.text
    sink.close()


def test_text_the_service_would_refuse_is_not_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = TextService()
    sink = text_sink(service, tmp_path, max_body_bytes=10**8)
    long_event, odd_event = events(2)
    texts: dict[str, ContentRecord] = {}
    keep(texts, long_event, "x" * (MAX_CONTENT_CHARS + 1), "short answer")
    keep(texts, odd_event, "caf\u00e9 \ud800", "fine")
    with caplog.at_level(logging.WARNING, logger="llmledger.runtime.remote"):
        assert sink.write([long_event, odd_event], content=texts).count == 2
    assert service.texts == {
        long_event.id: (None, "short answer"),
        odd_event.id: ("caf\u00e9 \ufffd", "fine"),
    }
    assert f"the prompt of event {long_event.id} has {MAX_CONTENT_CHARS + 1}" in caplog.text
    sink.close()


# -- a ledger with url, against the app ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def serving(db_url: str, port: int) -> Iterator[Service]:
    """The app on loopback (uvicorn in a thread), over the database at ``db_url``."""
    app = create_app(load_settings(database_url=db_url))
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", ws="none", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started)
        yield app.state.service
    finally:
        server.should_exit = True
        thread.join(10)


def kept_in(service: Service) -> dict[str, tuple[str | None, str | None]]:
    """Every row of the service's text table (the table itself, not one event's text)."""
    assert isinstance(service.store, SqlStore)
    with service.store.engine.connect() as conn:
        rows = conn.execute(sa.select(event_content)).mappings().all()
    return {row["event_id"]: (row["prompt"], row["response"]) for row in rows}


@pytest.fixture
def client() -> openai.OpenAI:
    replay = Replay(
        {"/chat/completions": (200, recorded("openai_chat_prompt_cache_hit.json"), JSON)}
    )
    return openai.OpenAI(api_key="sk-test", http_client=replay.sync_client(), max_retries=0)


def test_a_ledger_with_url_sends_the_text_to_the_service(
    db_url: str, ledger_home: Path, client: openai.OpenAI
) -> None:
    port = free_port()
    with serving(db_url, port) as service:
        now = datetime.now(UTC)
        ingest = service.keys.create("ingest", tenant="acme", now=now).secret
        reader = service.keys.create("reader", tenant="acme", now=now).secret
        ledger = llmledger.configure(url=f"http://127.0.0.1:{port}", api_key=ingest)
        try:
            with instrument():
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
                with capture_content():
                    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            assert llmledger.flush(10)
            assert ledger.stats()["written"] == 2
        finally:
            shutdown()
        stored = list(service.store.events())
        assert len(stored) == 2 and {e.tenant for e in stored} == {"acme"}
        kept = kept_in(service)
        (event_id,) = kept
        prompt, response = kept[event_id]
        assert "my secret question" in (prompt or "") and response == "OK"
        answer = httpx.get(
            f"http://127.0.0.1:{port}/v1/events/{event_id}/content",
            headers={"Authorization": f"Bearer {reader}"},
        )
        assert answer.status_code == 200
        assert answer.json() == {"event_id": event_id, "prompt": prompt, "response": "OK"}
    assert ledger._store is None
    assert not (ledger_home / "ledger.db").exists()
    # Only the journal's note of where its events go: every event left it.
    assert [p.name for p in ledger_home.rglob("*") if p.is_file()] == ["destination"]


def test_text_waits_with_its_event_until_the_service_is_back(
    db_url: str, ledger_home: Path, client: openai.OpenAI
) -> None:
    port = free_port()
    with serving(db_url, port) as service:
        key = service.keys.create("ingest", tenant="acme", now=datetime.now(UTC)).secret
    ledger = llmledger.configure(url=f"http://127.0.0.1:{port}", api_key=key)
    observed = ledger.writer.store
    assert isinstance(observed, ObservedSink)
    sink = observed.sink
    assert isinstance(sink, RemoteSink)
    try:
        with instrument(store_content=True):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert not llmledger.flush(1)
        assert ledger.stats()["pending"] == 1
        with serving(db_url, port) as service:
            assert llmledger.flush(30)
            ((event_id, (prompt, response)),) = kept_in(service).items()
            assert "my secret question" in (prompt or "") and response == "OK"
            assert [e.id for e in service.store.events()] == [event_id]
    finally:
        shutdown()
    assert not (ledger_home / "ledger.db").exists()
