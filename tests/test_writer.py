"""The writer's own behaviour over a real journal, against an in-memory sink that can be told
to fail."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

import pytest

from llmledger.core.errors import InvalidEventError
from llmledger.core.events import UsageEvent
from llmledger.core.settings import load_settings
from llmledger.runtime.content import ContentRecord, PendingContent
from llmledger.runtime.writer import Writer, _flush_all_at_exit
from llmledger.store import WriteError, WriteResult


def event(model: str = "m") -> UsageEvent:
    return UsageEvent(provider="openai", model=model, ts=datetime.now(UTC))


class Sink:
    """Keeps batches; ``failures`` is a list of errors raised by the next writes."""

    def __init__(self) -> None:
        self.rows: dict[str, UsageEvent] = {}
        self.calls = 0
        self.failures: list[Exception] = []
        self.reject_models: set[str] = set()
        self.texts: dict[str, ContentRecord] = {}

    def write(
        self,
        batch: Sequence[UsageEvent],
        *,
        on_error: Callable[[UsageEvent, Exception], None] | None = None,
        content: Mapping[str, ContentRecord] | None = None,
    ) -> WriteResult:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        if any(e.model in self.reject_models for e in batch):
            raise WriteError("constraint failed", retryable=False)
        new = [e for e in batch if e.id not in self.rows]
        self.rows.update((e.id, e) for e in new)
        self.texts.update((e.id, content[e.id]) for e in new if content and e.id in content)
        return WriteResult(tuple(new))


def make_writer(sink: Sink, **options: object) -> Writer:
    defaults: dict[str, object] = {
        "batch_size": 100,
        "flush_interval": 5.0,
        "strict": False,
        "retry_backoff": 0.001,
        "max_backoff": 0.01,
    }
    defaults.update(options)
    return Writer(sink, **defaults)  # type: ignore[arg-type]


def test_transient_failures_are_retried() -> None:
    sink = Sink()
    sink.failures = [WriteError("database is locked", retryable=True)] * 2
    writer = make_writer(sink)
    writer.submit(event())
    assert writer.flush(timeout=10)
    assert writer.written == 1 and writer.failed == 0 and sink.calls == 3
    writer.close()


def test_a_batch_that_keeps_failing_stays_in_the_journal_until_the_store_takes_it() -> None:
    sink = Sink()
    sink.failures = [WriteError("database is locked", retryable=True)] * 40
    writer = make_writer(sink)
    for _ in range(5):
        writer.submit(event())
    assert writer.flush(timeout=10)
    assert writer.failed == 0 and writer.written == 5 and sink.calls == 41
    writer.close()


def test_flush_says_false_while_the_store_is_down_and_nothing_is_lost() -> None:
    sink = Sink()
    sink.failures = [WriteError("disk I/O error", retryable=True)] * 10_000
    writer = make_writer(sink)
    batch = [event() for _ in range(7)]
    for item in batch:
        writer.submit(item)
    assert writer.flush(timeout=0.2) is False
    assert writer.pending == 7 and writer.down is not None
    sink.failures.clear()
    assert writer.flush(timeout=10)
    assert set(sink.rows) == {e.id for e in batch} and writer.down is None
    writer.close()


def test_data_refused_by_a_store_that_takes_nothing_is_kept_not_set_aside() -> None:
    sink = Sink()
    sink.reject_models = {"m"}  # every event: the store is at fault, not one event
    kept: list[tuple[list[str], str]] = []
    writer = make_writer(sink, set_aside=lambda es, why: kept.append(([e.id for e in es], why)))
    for _ in range(4):
        writer.submit(event())
    assert writer.flush(timeout=0.2) is False
    assert writer.failed == 0 and kept == [] and writer.pending == 4
    sink.reject_models.clear()
    assert writer.flush(timeout=10)
    assert writer.written == 4
    writer.close()


def test_rejected_data_is_isolated_so_the_rest_of_the_batch_is_kept() -> None:
    sink = Sink()
    sink.reject_models = {"bad"}
    kept: list[tuple[list[str], str]] = []
    writer = make_writer(sink, set_aside=lambda es, why: kept.append(([e.id for e in es], why)))
    batch = [event(), event("bad"), event(), event(), event("bad"), event()]
    for item in batch:
        writer.submit(item)
    assert writer.flush(timeout=10) is False  # two events did not reach the store
    assert writer.failed == 2 and writer.written == 4
    assert set(sink.rows) == {e.id for e in batch if e.model != "bad"}
    assert [ids for ids, _ in kept] == [[batch[1].id], [batch[4].id]]
    assert all("constraint failed" in why for _, why in kept)
    assert writer.flush(timeout=10)  # nothing failed since
    writer.close()


def test_kept_text_reaches_the_sink_with_its_event_and_is_set_aside_with_it() -> None:
    sink = Sink()
    sink.reject_models = {"bad"}
    kept: list[tuple[list[str], str, dict[str, ContentRecord]]] = []
    writer = make_writer(
        sink, set_aside=lambda es, why, texts=None: kept.append(([e.id for e in es], why, texts))
    )
    held = PendingContent(limit=10)  # where the events built in the writer put their text
    writer.texts = held
    batch = [event(), event("bad"), event(), event()]
    texts = {e.id: ContentRecord(e.id, e.ts, f"asked {i}?", "yes") for i, e in enumerate(batch)}
    held.save(texts[batch[0].id])
    writer.submit(batch[0])
    # Text in the event's own record (an event put back by ``spool requeue``).
    assert writer.journal.append(batch[1], ("asked 1?", "yes"))
    writer.submit(batch[2])  # no text kept for this one
    assert writer.journal.append(batch[3], ("asked 3?", "yes"))
    assert writer.flush(timeout=10) is False
    assert sink.texts == {e.id: texts[e.id] for e in (batch[0], batch[3])}
    assert kept == [([batch[1].id], kept[0][1], {batch[1].id: texts[batch[1].id]})]
    assert len(held) == 0
    writer.close()


def test_strict_reports_a_write_failure() -> None:
    sink = Sink()
    sink.failures = [RuntimeError("boom")]
    writer = make_writer(sink, strict=True)
    writer.submit(event())
    with pytest.raises(RuntimeError, match="boom"):
        writer.flush(timeout=10)
    writer.close()


def test_prepare_errors_skip_only_that_event() -> None:
    sink = Sink()

    def prepare(e: UsageEvent) -> UsageEvent:
        if e.model == "bad":
            raise InvalidEventError("cannot price")
        return e

    writer = make_writer(sink, prepare=prepare)
    for item in (event(), event("bad"), event()):
        writer.submit(item)
    assert writer.flush(timeout=10) is False
    assert writer.failed == 1 and writer.written == 2
    writer.close()


def test_a_full_batch_is_written_without_waiting_for_the_interval() -> None:
    sink = Sink()
    writer = make_writer(sink, batch_size=10, flush_interval=60)
    for _ in range(10):
        writer.submit(event())
    for _ in range(200):
        if writer.written == 10:
            break
        threading.Event().wait(0.01)
    assert writer.written == 10
    writer.close()


def test_a_callable_is_built_at_once_so_its_event_is_journaled_before_submit_returns() -> None:
    sink = Sink()
    writer = make_writer(sink)
    made = event()
    writer.submit(lambda: made)
    assert writer.journal.appended == 1  # on disk when submit returns
    writer.submit(lambda: 1 / 0)  # type: ignore[arg-type, return-value]
    assert writer.failed == 1 and writer.journal.appended == 1
    assert writer.flush(timeout=10) is False
    assert list(sink.rows) == [made.id]
    writer.close()


def test_flush_with_nothing_submitted_returns_at_once() -> None:
    writer = make_writer(Sink())
    assert writer.flush(timeout=0)
    assert writer.close(timeout=1)


def test_the_exit_hook_flushes_live_writers() -> None:
    sink = Sink()
    writer = make_writer(sink, flush_interval=60)
    writer.submit(event())
    _flush_all_at_exit()
    assert len(sink.rows) == 1
    writer.close()


def test_defaults_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMLEDGER_SHUTDOWN_TIMEOUT", "7")
    monkeypatch.setenv("LLMLEDGER_BATCH_SIZE", "3")
    writer = Writer(Sink())
    assert (writer.shutdown_timeout, writer.batch_size, writer.strict) == (7, 3, True)
    explicit = Writer(Sink(), settings=load_settings(), batch_size=5)
    assert explicit.batch_size == 5 and explicit.shutdown_timeout == 7
    writer.close()
    explicit.close()


def test_submit_from_many_threads_loses_nothing() -> None:
    sink = Sink()
    writer = make_writer(sink, batch_size=64, flush_interval=0.01)

    def produce() -> None:
        for _ in range(2000):
            writer.submit(event())

    threads = [threading.Thread(target=produce) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert writer.close(timeout=30)
    assert len(sink.rows) == 8000 and writer.written == 8000 and writer.dropped == 0


def test_flush_waits_for_a_batch_already_taken_from_the_journal() -> None:
    started, release = threading.Event(), threading.Event()

    class SlowSink(Sink):
        def write(
            self,
            batch: Sequence[UsageEvent],
            *,
            on_error: Callable[[UsageEvent, Exception], None] | None = None,
            content: Mapping[str, ContentRecord] | None = None,
        ) -> WriteResult:
            started.set()
            release.wait(10)
            return super().write(batch, on_error=on_error, content=content)

    sink = SlowSink()
    writer = make_writer(sink, flush_interval=0.01)
    writer.submit(event())
    assert started.wait(10)
    assert writer.pending == 1  # in the thread's hands, and still in the journal
    assert writer.flush(timeout=0.05) is False
    release.set()
    assert writer.flush(timeout=10)
    assert writer.written == 1
    writer.close()
