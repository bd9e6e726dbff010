"""Shared pieces of the capture tests: a ledger that keeps what it is given, and
HTTP replays of recorded provider responses for the real SDK clients.

The recorded bodies and streams are in ``tests/fixtures/recorded`` (see
SOURCES.md there). A replay answers like the provider would for the request it
gets: an OpenAI chat stream only carries its usage chunk when the request asked
for it with ``stream_options.include_usage``.
"""

from __future__ import annotations

import gc
import importlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import httpx
import httpx2
import pytest

import llmledger.runtime.ledger
from llmledger.capture import Instrumentation, instrument
from llmledger.core.events import UsageEvent
from llmledger.core.settings import load_settings
from llmledger.runtime.captured import Captured, captured_event
from llmledger.runtime.ledger import Ledger

RECORDED = Path(__file__).parent / "fixtures" / "recorded"

C = TypeVar("C")


class KeepingLedger(Ledger):
    """A ledger that keeps submitted work and builds the events when asked (no store)."""

    def __init__(self) -> None:
        super().__init__(load_settings())
        self.items: list[Any] = []
        self._events: list[UsageEvent] = []

    def submit(self, item: UsageEvent | tuple[Any, ...] | Callable[[], UsageEvent]) -> None:
        self.items.append(item)

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def events(self) -> list[UsageEvent]:
        """Every event submitted so far, built as the background writer would."""
        gc.collect()
        pending, self.items = self.items, []
        for item in pending:
            if isinstance(item, tuple):  # a captured call's values: built as the writer does
                item = captured_event(Captured(*item), self)
            self._events.append(item() if callable(item) else item)
        return list(self._events)

    def one(self) -> UsageEvent:
        """The only event submitted so far."""
        events = self.events()
        assert len(events) == 1, events
        return events[0]


@pytest.fixture
def ledger(monkeypatch: pytest.MonkeyPatch) -> KeepingLedger:
    """The process ledger replaced by a :class:`KeepingLedger`."""
    keeping = KeepingLedger()
    monkeypatch.setattr(llmledger.runtime.ledger, "_ledger", keeping)
    return keeping


@pytest.fixture
def instrumented(ledger: KeepingLedger) -> Iterator[Instrumentation]:
    """Every SDK hooked for the test, unhooked after it."""
    handle = instrument()
    yield handle
    handle.uninstrument()


def recorded(name: str) -> bytes:
    """The bytes of one recorded response."""
    return (RECORDED / name).read_bytes()


def as_read(found: Any) -> tuple[Any, ...]:
    """What capture reads from a response, of an event or of a ``Reading``, to compare."""
    return (
        found.usage,
        found.usage_raw,
        found.usage_source,
        found.usage_parts,
        found.response_model,
        found.finish_reason,
        found.service_tier,
        tuple(found.warnings),
        found.fee_counts,
    )


def without_usage_chunk(sse: bytes) -> bytes:
    """An OpenAI chat stream as the server sends it when usage was not asked for."""
    frames = [frame for frame in sse.split(b"\n\n") if frame.strip()]
    kept = [frame for frame in frames if b'"choices":[]' not in frame]
    return b"\n\n".join(frame.replace(b',"usage":null', b"") for frame in kept) + b"\n\n"


def http_library(sdk: str) -> ModuleType:
    """The HTTP library whose clients this version of ``sdk`` takes: ``httpx`` or ``httpx2``.

    The current majors of the SDKs are built on ``httpx2`` (a fork of ``httpx``); earlier
    ones accept only ``httpx`` clients. ``sdk`` is ``openai``, ``anthropic`` or ``google``.
    """
    if sdk == "google":
        api_client = importlib.import_module("google.genai._api_client")
        return httpx2 if getattr(api_client, "httpx2", None) is not None else httpx
    client_class = importlib.import_module(sdk).DefaultHttpxClient
    library = next(
        base.__module__.partition(".")[0]
        for base in client_class.__mro__
        if base.__name__ == "Client" and base.__module__.startswith("httpx")
    )
    return httpx2 if library == "httpx2" else httpx


class Replay:
    """A ``MockTransport`` handler answering each route with a recorded response.

    ``routes`` maps a path suffix to ``(status, body, headers)``, or to a callable
    of the parsed request body giving one. Requests are kept in ``requests``, their
    headers in ``headers``.  ``sync_client(sdk)`` and ``async_client(sdk)`` give a
    client of the HTTP library that SDK takes (:func:`http_library`).
    """

    def __init__(self, routes: dict[str, Any]) -> None:
        self.routes = routes
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []

    def __call__(self, request: Any) -> Any:
        body = json.loads(request.content or b"{}")
        self.requests.append(body)
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        path = request.url.path
        # An answer of the request's own library (httpx or httpx2).
        library = importlib.import_module(type(request).__module__.partition(".")[0])
        for suffix, answer in self.routes.items():
            if path.endswith(suffix):
                if callable(answer):
                    answer = answer(body)
                status, content, headers = answer
                return library.Response(status, content=content, headers=headers)
        return library.Response(404, json={"error": {"message": f"no route {path}"}})

    def sync_client(self, sdk: str = "openai") -> Any:
        library = http_library(sdk)
        return library.Client(transport=library.MockTransport(self))

    def async_client(self, sdk: str = "openai") -> Any:
        library = http_library(sdk)
        return library.AsyncClient(transport=library.MockTransport(self))

    def sdk_client(
        self,
        client_class: Callable[..., C],
        sdk: str,
        *,
        asynchronous: bool = False,
        **options: Any,
    ) -> C:
        """An SDK client (``client_class(**options)``) answered by this replay, never retrying."""
        http_client = self.async_client(sdk) if asynchronous else self.sync_client(sdk)
        return client_class(http_client=http_client, max_retries=0, **options)


JSON = {"content-type": "application/json"}
SSE = {"content-type": "text/event-stream"}


def test_keeping_ledger_builds_deferred_events(ledger: KeepingLedger) -> None:
    from datetime import datetime

    event = UsageEvent(provider="openai", model="gpt-4o", ts=datetime.now(UTC))
    ledger.submit(lambda: event)
    assert ledger.one() is event


def test_without_usage_chunk_drops_the_usage_only_chunk() -> None:
    stream = without_usage_chunk(recorded("openai_chat_stream_include_usage.sse"))
    assert b'"choices":[]' not in stream
    assert b"[DONE]" in stream
