"""The remote sink against a fake service (httpx.MockTransport): batching, retries, the
journal while the service is down, batches set aside."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmledger.core.errors import ConfigError, ServiceUnavailable
from llmledger.core.events import UsageEvent
from llmledger.core.settings import load_settings
from llmledger.core.usage import Usage
from llmledger.runtime.journal import Journal
from llmledger.runtime.ledger import Ledger
from llmledger.runtime.remote import RemoteSink
from llmledger.runtime.writer import Writer
from llmledger.wire.parse import parse_body

NOW = datetime.now(UTC)


def events(n: int) -> list[UsageEvent]:
    return [
        UsageEvent(
            provider="openai",
            model="gpt-4o",
            ts=NOW - timedelta(minutes=1),
            usage=Usage(input_tokens=10, output_tokens=i),
        )
        for i in range(n)
    ]


class FakeService:
    """Stores ids like the real service; ``answers`` scripts failures before that."""

    def __init__(self) -> None:
        self.stored: list[str] = []
        self.requests: list[httpx.Request] = []
        self.answers: list[int | Exception] = []
        self.down = False
        self.most_events: int | None = None  # more in one request: 413

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return httpx.Response(answer, headers={"Retry-After": "2"}, json={"ok": False})
        assert request.headers["content-encoding"] == "gzip"
        assert request.headers["authorization"] == "Bearer llk_test"
        _, parsed = parse_body(gzip.decompress(request.content), now=datetime.now(UTC))
        if self.most_events is not None and len(parsed) > self.most_events:
            return httpx.Response(413, json={"ok": False, "message": "too large"})
        results = []
        for item in parsed:
            if isinstance(item, Exception):
                results.append({"id": None, "status": "rejected", "reason": str(item)})
            elif item.model == "bad":
                results.append({"id": item.id, "status": "rejected", "reason": "bad model"})
            elif item.id in self.stored:
                results.append({"id": item.id, "status": "duplicate", "reason": None})
            else:
                self.stored.append(item.id)
                results.append({"id": item.id, "status": "accepted", "reason": None})
        return httpx.Response(200, json={"results": results})


def make_sink(
    service: FakeService, tmp_path: Path, **options: Any
) -> tuple[RemoteSink, list[float]]:
    pauses: list[float] = []
    defaults: dict[str, Any] = {"sleep": pauses.append}
    sink = RemoteSink(
        "http://ledger.test/",
        "llk_test",
        spool_dir=tmp_path / "spool",
        transport=httpx.MockTransport(service),
        **{**defaults, **options},
    )
    return sink, pauses


def test_batches_of_at_most_1000_compressed(tmp_path: Path) -> None:
    service = FakeService()
    sink, _ = make_sink(service, tmp_path)
    batch = events(2500)
    assert sink.write(batch).count == 2500
    assert [len(gzip.decompress(r.content)) > 0 for r in service.requests] == [True] * 3
    assert service.stored == [e.id for e in batch]
    assert sink.write(batch[:10]).count == 0 and sink.stats.duplicates == 10
    assert sink.stats.sent == 2500
    sink.close()


def test_retries_429_and_5xx_with_growing_pauses(tmp_path: Path) -> None:
    service = FakeService()
    service.answers = [503, 429, httpx.ReadTimeout("slow")]
    sink, pauses = make_sink(service, tmp_path, retries=3, backoff=0.5, budget=60.0)
    assert sink.write(events(3)).count == 3
    # Retry-After: 2 wins over the first pauses; the network error pause doubles again
    assert pauses == [2.0, 2.0, 2.0]
    assert len(service.requests) == 4
    sink.close()


def journal_writer(sink: RemoteSink, tmp_path: Path, **options: Any) -> Writer:
    """The writer a ledger with ``url`` builds: the remote sink fed by a journal on disk."""
    defaults: dict[str, Any] = {
        "batch_size": 5000,
        "flush_interval": 0.05,
        "strict": False,
        "retry_backoff": 0.01,
        "max_backoff": 0.05,
        "shutdown_timeout": 1.0,
    }
    return Writer(sink, journal=Journal(tmp_path / "journal"), **{**defaults, **options})


def test_an_unreachable_service_keeps_events_in_the_journal_then_each_is_stored_once(
    tmp_path: Path,
) -> None:
    service = FakeService()
    service.down = True
    sink, _ = make_sink(service, tmp_path, retries=0)
    writer = journal_writer(sink, tmp_path)
    first, second = events(5), events(1200)
    for event in first + second:
        writer.submit(event)
    assert not writer.flush(timeout=0.3)
    assert writer.pending == 1205 and writer.written == 0 and writer.down is not None
    service.down = False
    assert writer.flush(timeout=10)
    assert writer.pending == 0 and writer.written == 1205
    assert sorted(service.stored) == sorted(e.id for e in first + second)
    assert len(set(service.stored)) == len(service.stored)
    writer.close()
    assert not list((tmp_path / "journal").glob("*.seg"))
    sink.close()


def test_what_a_closed_writer_left_is_sent_by_the_next_one(tmp_path: Path) -> None:
    service = FakeService()
    service.down = True
    sink, _ = make_sink(service, tmp_path, retries=0)
    writer = journal_writer(sink, tmp_path)
    left = events(3)
    for event in left:
        writer.submit(event)
    assert not writer.close(timeout=0.2)
    assert list((tmp_path / "journal").glob("*.seg"))  # what was left waits on disk
    service.down = False
    next_writer = journal_writer(sink, tmp_path)
    assert next_writer.flush(timeout=10)  # only flush(): nothing new was recorded
    assert sorted(service.stored) == sorted(e.id for e in left)
    next_writer.close()
    assert not list((tmp_path / "journal").glob("*.seg"))


def test_an_unreachable_service_raises_so_the_writer_keeps_the_batch(tmp_path: Path) -> None:
    service = FakeService()
    service.down = True
    sink, pauses = make_sink(service, tmp_path, retries=2)
    with pytest.raises(ServiceUnavailable, match="connection refused"):
        sink.write(events(2))
    assert pauses == [0.25, 0.5]
    sink.close()


def poisoned(service: FakeService, bad: set[str]) -> None:
    """Make the service answer 500 to every request holding one of the ``bad`` ids."""
    answer = service.__call__

    def call(request: httpx.Request) -> httpx.Response:
        body = json.loads(gzip.decompress(request.content))
        if any(item["id"] in bad for item in body["events"]):
            service.requests.append(request)
            return httpx.Response(500, json={"ok": False, "message": "internal error"})
        return answer(request)

    service.__call__ = call  # type: ignore[method-assign]


def test_a_batch_failing_with_5xx_is_split_until_the_event_at_fault_is_set_aside(
    tmp_path: Path,
) -> None:
    service = FakeService()
    batch = events(20)
    poison = batch[13]
    poisoned(service, {poison.id})
    sink = RemoteSink(
        "http://ledger.test/",
        "llk_test",
        spool_dir=tmp_path / "spool",
        transport=httpx.MockTransport(lambda r: service.__call__(r)),
        retries=1,
        sleep=lambda _: None,
    )
    result = sink.write(batch)
    assert sorted(e.id for e in result.inserted) == sorted(e.id for e in batch if e != poison)
    assert sorted(service.stored) == sorted(e.id for e in batch if e != poison)
    assert sink.stats.refused == 1
    [kept] = _refused_files(tmp_path)
    assert [e["id"] for e in json.loads(gzip.decompress(kept.read_bytes()))["events"]] == [
        poison.id
    ]
    sink.close()


def test_a_service_failing_every_batch_with_5xx_sets_nothing_aside(tmp_path: Path) -> None:
    service = FakeService()
    batch = events(8)
    poisoned(service, {e.id for e in batch})
    sink = RemoteSink(
        "http://ledger.test/",
        "llk_test",
        spool_dir=tmp_path / "spool",
        transport=httpx.MockTransport(lambda r: service.__call__(r)),
        retries=0,
        sleep=lambda _: None,
    )
    with pytest.raises(ServiceUnavailable, match="HTTP 500"):
        sink.write(batch)
    assert sink.stats.refused == 0 and not _refused_files(tmp_path)
    sink.close()


def test_rejected_events_go_to_the_writers_error_hook(tmp_path: Path) -> None:
    service = FakeService()
    sink, _ = make_sink(service, tmp_path)
    batch = events(2)
    batch[1] = batch[1].replace(model="bad")
    failed: list[tuple[str, str]] = []
    result = sink.write(batch, on_error=lambda e, exc: failed.append((e.id, str(exc))))
    assert result.inserted == (batch[0],) and result.rejected == (batch[1].id,)
    assert failed == [(batch[1].id, "the service rejected it: bad model")]
    assert sink.stats.rejected == 1
    again = sink.write(batch[:1])
    assert again.count == 0 and again.duplicates == (batch[0].id,)
    sink.close()


@pytest.mark.parametrize("status", [401, 403])
def test_batches_refused_for_the_key_are_kept_for_later(tmp_path: Path, status: int) -> None:
    service = FakeService()
    service.answers = [status]
    sink, _ = make_sink(service, tmp_path)
    batch = events(3)
    with pytest.raises(ServiceUnavailable, match="LLMLEDGER_API_KEY"):
        sink.write(batch)
    assert sink.write(batch).count == 3
    assert sink.stats.refused == 0
    sink.close()


def test_the_time_budget_bounds_one_batch(tmp_path: Path) -> None:
    service = FakeService()
    service.answers = [httpx.ReadTimeout("slow")] * 10
    sink, _ = make_sink(service, tmp_path, retries=10, timeout=2.0, budget=5.0)
    with pytest.raises(ServiceUnavailable):
        sink.write(events(1))
    assert len(service.requests) <= 3
    sink.close()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_ledger_sends_to_the_service_when_url_is_set(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, url="http://127.0.0.1:9", api_key="llk_x_y")
    ledger = Ledger(settings)
    sink = ledger._sink()
    assert isinstance(sink, RemoteSink)
    assert sink.spool_dir == tmp_path / "spool"
    sink.close()
    with pytest.raises(ConfigError, match="LLMLEDGER_API_KEY"):
        Ledger(load_settings(home=tmp_path, url="http://127.0.0.1:9"))._sink()
    assert not isinstance(Ledger(load_settings(home=tmp_path))._sink(), RemoteSink)
    assert os.environ.get("LLMLEDGER_URL") is None


def _refused_files(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "spool" / "refused"
    return sorted(folder.glob("*.json.gz")) if folder.exists() else []


def test_a_batch_too_large_for_the_service_is_sent_again_in_halves(tmp_path: Path) -> None:
    service = FakeService()
    service.most_events = 300
    sink, _ = make_sink(service, tmp_path)
    batch = events(1000)
    assert sink.write(batch).count == 1000
    assert service.stored == [e.id for e in batch]  # every event once, in order
    assert sink.stats.refused == 0
    assert not _refused_files(tmp_path)


def test_a_refused_batch_is_set_aside_and_never_blocks_the_next(tmp_path: Path) -> None:
    service = FakeService()
    service.answers = [422]
    sink, pauses = make_sink(service, tmp_path)
    refused = events(5)
    assert sink.write(refused).count == 0
    assert pauses == []  # a final answer is not retried
    assert sink.stats.refused == 5
    [kept] = _refused_files(tmp_path)
    assert [e["id"] for e in json.loads(gzip.decompress(kept.read_bytes()))["events"]] == [
        e.id for e in refused
    ]
    later = events(3)
    assert sink.write(later).count == 3
    assert service.stored == [e.id for e in later]


def test_single_events_too_large_are_set_aside_one_by_one(tmp_path: Path) -> None:
    service = FakeService()
    service.most_events = 0
    sink, _ = make_sink(service, tmp_path)
    assert sink.write(events(3)).count == 0
    assert sink.stats.refused == 3
    assert len(_refused_files(tmp_path)) == 3


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda results: results[:-1], "2 results for 3 events"),
        (lambda results: [*results, results[0]], "4 results for 3 events"),
        (lambda results: results[::-1], "result 0 is about"),
        (lambda results: [{**r, "status": "refused"} for r in results], "result 0 is not an"),
        (lambda results: {"ok": True}, "the results are a dict"),
    ],
)
def test_an_answer_that_does_not_match_the_batch_keeps_it(
    tmp_path: Path, change: Callable[[Any], Any], problem: str
) -> None:
    service = FakeService()

    def answer(request: httpx.Request) -> httpx.Response:
        results = service(request).json()["results"]
        return httpx.Response(200, json={"results": change(results)})

    sink = RemoteSink(
        "http://ledger.test/",
        "llk_test",
        spool_dir=tmp_path / "spool",
        transport=httpx.MockTransport(answer),
        sleep=lambda _: None,
    )
    batch = events(3)
    with pytest.raises(ServiceUnavailable, match=problem) as raised:
        sink.write(batch)
    assert getattr(raised.value, "retryable", False)  # the writer keeps the batch
    assert sink.stats.refused == sink.stats.rejected == sink.stats.sent == 0
    assert not _refused_files(tmp_path)
    sink.close()
