"""The store contract: one suite, run against SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from llmledger.core.errors import InvalidEventError, StoreError
from llmledger.core.events import UsageEvent
from llmledger.core.ids import new_id
from llmledger.core.usage import BUCKETS, Usage
from llmledger.query import Filter, Query, parse_where
from llmledger.query.spec import COLUMN_DIMENSIONS
from llmledger.runtime.journal import Journal
from llmledger.runtime.spool import journal_status
from llmledger.runtime.writer import Writer
from llmledger.store import (
    ApiKey,
    ContentRecord,
    InvalidQueryError,
    RowExistsError,
    SqlStore,
    Store,
    StoredPrice,
    StoredRate,
    WriteResult,
    event_tags,
    metadata,
    migrate,
    open_store,
)
from llmledger.store.codec import to_micros, to_nanos
from llmledger.store.migrator import head_revision
from tests.test_query_engine import T0 as SPREAD_START
from tests.test_query_engine import make_events

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    with open_store(db_url) as opened:
        yield opened


def full_event(**changes: Any) -> UsageEvent:
    """An event with every field set to something other than its default."""
    event = UsageEvent(
        provider="anthropic",
        model="claude-sonnet-4-5",
        ts=T0,
        duration_ms=1234.5,
        ttft_ms=210.25,
        response_model="claude-sonnet-4-5-20250929",
        operation="chat",
        stream=True,
        service_tier="priority",
        request_id="req_011CUe",
        finish_reason="end_turn",
        status="error",
        error_type="RateLimitError",
        error_message="429: slow down — ünïcode ✓",
        usage=Usage(**{name: 100 + i for i, name in enumerate(BUCKETS)}),
        usage_raw={
            "input_tokens": 3,
            "cache_read_input_tokens": 4012,
            "nested": {"a": [1, 2.5, None]},
        },
        usage_source="estimated",
        cost=Decimal("0.012345678"),
        cost_breakdown={"input": Decimal("0.010000000"), "output": Decimal("0.002345678")},
        cost_source="catalog",
        price_ref="genai-prices@0.2.3:anthropic/claude-sonnet-4-5",
        unpriced_reason=None,
        incomplete_reason="no rate for input_audio_tokens=106 in genai-prices@0.2.3:x/y",
        tenant="acme",
        user="u-42",
        feature="summarise",
        session="conv-9",
        tags={"environment": "prod", "podcast_id": "p-1", "emoji": "🎧"},
        api_key_fingerprint="sk-…a1b2",
        warnings=("cache_read_tokens exceed input_tokens",),
    )
    return event.replace(**changes) if changes else event


def minimal_event(**changes: Any) -> UsageEvent:
    fields: dict[str, Any] = {"provider": "openai", "model": "gpt-4o-mini", "ts": T0, **changes}
    return UsageEvent(**fields)


# -- round trip -------------------------------------------------------------------


def test_every_field_round_trips_exactly(store: SqlStore) -> None:
    event = full_event()
    assert store.write([event]).count == 1
    back = store.get(event.id)
    assert back == event
    assert back is not None
    assert back.ts.tzinfo is not None and back.ts.utcoffset() == timedelta(0)
    assert back.ts.microsecond == 123456
    assert str(back.cost) == "0.012345678"
    assert back.cost_breakdown == {"input": Decimal("0.01"), "output": Decimal("0.002345678")}
    assert all(isinstance(v, Decimal) for v in back.cost_breakdown.values())


def test_minimal_event_round_trips_with_defaults(store: SqlStore) -> None:
    event = minimal_event()
    store.write([event])
    back = store.get(event.id)
    assert back == event
    assert back is not None and back.tags == {} and back.warnings == () and back.cost is None


def test_other_time_zones_are_stored_as_the_same_instant_in_utc(store: SqlStore) -> None:
    brasilia = timezone(timedelta(hours=-3))
    event = minimal_event(ts=datetime(2025, 3, 1, 9, 0, 0, 7, tzinfo=brasilia))
    store.write([event])
    back = store.get(event.id)
    assert back is not None
    assert back.ts == event.ts and back.ts.utcoffset() == timedelta(0)
    assert back.ts.hour == 12 and back.ts.microsecond == 7


def test_get_unknown_id_is_none(store: SqlStore) -> None:
    assert store.get(new_id()) is None


def test_large_token_counts_and_costs_fit(store: SqlStore) -> None:
    event = minimal_event(usage=Usage(input_tokens=5_000_000_000), cost=Decimal("123456.123456789"))
    store.write([event])
    assert store.get(event.id) == event


# -- idempotent ids ---------------------------------------------------------------


def test_duplicate_ids_in_one_batch_store_one_row(store: SqlStore) -> None:
    event = full_event()
    assert store.write([event, event, event]).count == 1
    assert store.count() == 1


def test_duplicate_ids_across_batches_are_skipped(store: SqlStore) -> None:
    first = [minimal_event() for _ in range(5)]
    assert store.write(first).count == 5
    again = [*first[:3], minimal_event(), minimal_event()]
    assert store.write(again).count == 2
    assert store.write(first).count == 0
    assert store.count() == 7


def test_a_duplicate_never_changes_the_stored_event_or_its_tags(store: SqlStore) -> None:
    event = minimal_event(tags={"a": "1"})
    store.write([event])
    store.write([event.replace(model="other", tags={"a": "2", "b": "3"})])
    assert store.get(event.id) == event
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(event_tags.c.key, event_tags.c.value)).all()
    assert rows == [("a", "1")]


def test_empty_batch_writes_nothing(store: SqlStore) -> None:
    assert store.write([]) == WriteResult()
    assert store.count() == 0


def test_the_write_result_sorts_every_event_of_the_batch(store: SqlStore) -> None:
    stored = minimal_event()
    store.write([stored])
    new, again, naive = minimal_event(), minimal_event(), minimal_event(ts=datetime(2025, 1, 1))
    batch = [new, stored, naive, again, new, naive]
    reasons: list[str] = []
    result = store.write(batch, on_error=lambda e, exc: reasons.append(e.id))
    assert result.inserted == (new, again) and result.count == 2
    assert result.duplicates == (stored.id, new.id)
    assert result.rejected == (naive.id, naive.id) and reasons == [naive.id]
    assert result.count + len(result.duplicates) + len(result.rejected) == len(batch)
    with pytest.raises(AttributeError):
        result.inserted = ()  # type: ignore[misc]
    assert store.write([new, again]) == WriteResult(duplicates=(new.id, again.id))


# -- reads ------------------------------------------------------------------------


def spread(n: int, **changes: Any) -> list[UsageEvent]:
    return [minimal_event(ts=T0 + timedelta(minutes=i), **changes) for i in range(n)]


def test_recent_is_newest_first_with_limit_and_offset(store: SqlStore) -> None:
    events = spread(10)
    store.write(list(reversed(events)))
    assert [e.id for e in store.recent(limit=3)] == [e.id for e in events[::-1][:3]]
    assert [e.id for e in store.recent(limit=3, offset=3)] == [e.id for e in events[::-1][3:6]]
    assert len(store.recent()) == 10


def test_events_are_in_time_order_and_filter_by_range(store: SqlStore) -> None:
    events = spread(10)
    store.write(events[::-1])
    assert [e.id for e in store.events()] == [e.id for e in events]
    ranged = list(store.events(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=5)))
    assert [e.id for e in ranged] == [e.id for e in events[2:5]]
    assert [e.id for e in store.events(limit=4)] == [e.id for e in events[:4]]


def test_events_filter_by_columns_null_and_tags(store: SqlStore) -> None:
    a = minimal_event(model="a", user="ann", tags={"env": "prod", "team": "x"})
    b = minimal_event(model="b", user=None, tags={"env": "dev"})
    c = minimal_event(model="a", user="bob", stream=True)
    store.write([a, b, c])
    assert {e.id for e in store.events(model="a")} == {a.id, c.id}
    assert [e.id for e in store.events(user=None)] == [b.id]
    assert [e.id for e in store.events(tags={"env": "prod"})] == [a.id]
    assert [e.id for e in store.events(tags={"env": "prod", "team": "y"})] == []
    assert [e.id for e in store.events(model="a", stream=True)] == [c.id]


def test_events_stream_more_rows_than_one_fetch(store: SqlStore) -> None:
    store.write([minimal_event(ts=T0 + timedelta(seconds=i)) for i in range(2500)])
    assert sum(1 for _ in store.events()) == 2500


def test_bad_queries_are_rejected(store: SqlStore) -> None:
    with pytest.raises(InvalidQueryError, match="cannot filter on 'colour'"):
        store.events(colour="red")
    with pytest.raises(InvalidQueryError, match="timezone-aware"):
        store.events(since=datetime(2025, 1, 1))


# -- reports ------------------------------------------------------------------------

#: What a report of totals asks for.
TOTALS = ("calls", *BUCKETS, "cost", "unpriced_calls")


def mixed_events() -> list[UsageEvent]:
    out = []
    for i in range(24):
        out.append(
            minimal_event(
                ts=T0 + timedelta(hours=i),
                provider=("openai", "anthropic")[i % 2],
                model=("gpt-4o", "gpt-4o-mini", "claude")[i % 3],
                tenant=("t1", "t2", None)[i % 3],
                user=("ann", "bob", "cid", None)[i % 4],
                feature=("chat", None)[i % 2],
                session=f"s{i % 5}",
                operation=("chat", "embeddings")[i % 2],
                status=("ok", "ok", "error")[i % 3],
                usage=Usage(input_tokens=100 + i, output_tokens=10 * i, cache_read_tokens=i),
                cost=None if i % 5 == 0 else Decimal(i).scaleb(-6),
            )
        )
    return out


def test_ungrouped_report(store: SqlStore) -> None:
    events = mixed_events()
    store.write(events)
    report = store.report(Query(metrics=TOTALS))
    total = report.total
    assert report.rows == [total]
    assert total["calls"] == 24
    assert total["input_tokens"] == sum(e.usage.input_tokens for e in events)
    assert total["output_tokens"] == sum(e.usage.output_tokens for e in events)
    assert total["cost"] == sum(e.cost for e in events if e.cost is not None)
    assert isinstance(total["cost"], Decimal)
    assert total["unpriced_calls"] == sum(1 for e in events if e.cost is None)


@pytest.mark.parametrize("dimension", COLUMN_DIMENSIONS)
def test_reports_by_each_dimension_add_up_to_the_total(store: SqlStore, dimension: str) -> None:
    events = mixed_events()
    store.write(events)
    total = store.report(Query(metrics=TOTALS)).total
    groups = store.report(Query(by=(dimension,), metrics=TOTALS)).rows
    assert {g[dimension] for g in groups} == {getattr(e, dimension) for e in events}
    for key in ("calls", "unpriced_calls", *BUCKETS):
        assert sum(g[key] for g in groups) == total[key]
    assert sum(g["cost"] for g in groups if g["cost"] is not None) == total["cost"]
    for group in groups:
        members = [e for e in events if getattr(e, dimension) == group[dimension]]
        assert group["calls"] == len(members)
        assert group["input_tokens"] == sum(e.usage.input_tokens for e in members)


def test_reports_respect_the_time_range(store: SqlStore) -> None:
    store.write(mixed_events())
    query = Query(since=T0 + timedelta(hours=2), until=T0 + timedelta(hours=6), metrics=TOTALS)
    assert store.report(query).total["calls"] == 4


def test_event_pages_go_newest_first_through_a_query_s_range_and_filters(
    store: SqlStore,
) -> None:
    events = mixed_events()
    # Two calls at the same time: the id breaks the tie, and a page may end between them.
    events.append(minimal_event(ts=events[9].ts, model="gpt-4o", tenant="t1"))
    store.write(events)
    query = Query(
        since=T0 + timedelta(hours=1),
        until=T0 + timedelta(hours=20),
        where=(Filter("model", ("gpt-4o",)),),
    )
    seen: list[UsageEvent] = []
    before = None
    while page := store.event_page(query, limit=2, before=before):
        seen.extend(page)
        before = (to_micros(page[-1].ts), page[-1].id)
    chosen = [
        e
        for e in events
        if e.model == "gpt-4o" and T0 + timedelta(hours=1) <= e.ts < T0 + timedelta(hours=20)
    ]
    assert [e.id for e in seen] == [
        e.id for e in sorted(chosen, key=lambda e: (e.ts, e.id), reverse=True)
    ]
    assert seen[0] == store.get(seen[0].id)


@pytest.mark.parametrize(
    "where",
    [
        ("model=o3", "status=error"),
        ("feature=search", "tenant!=acme"),
        ("user=bo", "model=gpt-4o", "status=ok"),
        ("feature=nothing",),
    ],
)
def test_filtered_event_pages_over_weeks_match_the_events(
    store: SqlStore, where: tuple[str, ...]
) -> None:
    events = make_events(600, seed=5, span=timedelta(days=20))
    store.write(events)
    filters = parse_where(where)

    def kept(event: UsageEvent) -> bool:
        row = {f.dimension: getattr(event, f.dimension) for f in filters}
        return all((row[f.dimension] in f.values) != f.negate for f in filters)

    def pages(query: Query, limit: int) -> list[str]:
        seen: list[str] = []
        before = None
        while page := store.event_page(query, limit=limit, before=before):
            assert len(page) <= limit
            seen.extend(e.id for e in page)
            before = (to_micros(page[-1].ts), page[-1].id)
        return seen

    newest_first = sorted(events, key=lambda e: (e.ts, e.id), reverse=True)
    since, until = (
        SPREAD_START + timedelta(days=1, minutes=7),
        SPREAD_START + timedelta(days=19, hours=3),
    )
    for query in (
        Query(where=filters),
        Query(since=since, until=until, where=filters),
        Query(since=since, where=filters),
        Query(until=until, where=filters),
    ):
        expected = [
            e.id
            for e in newest_first
            if kept(e)
            and (query.since is None or e.ts >= query.since)
            and (query.until is None or e.ts < query.until)
        ]
        for limit in (1, 7, 50):
            assert pages(query, limit) == expected, (query, limit)
    # Calls gone from the events but still counted by the rollups (as when deleted
    # between two reads of a page) leave no hole: the older days are read too.
    query = Query(since=since, until=until, where=filters)
    matching = [e for e in newest_first if kept(e) and since <= e.ts < until]
    gone = [e.id for e in matching[:5]]
    if not gone:
        return
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("DELETE FROM events WHERE id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": gone},
        )
    assert [e.id for e in store.event_page(query, limit=7)] == [e.id for e in matching[5:12]]


def test_reports_of_an_empty_ledger(store: SqlStore) -> None:
    total = store.report(Query(metrics=TOTALS)).total
    assert total["calls"] == 0 and total["cost"] is None and total["input_tokens"] == 0
    assert store.report(Query(by=("model",), metrics=TOTALS)).rows == []


# -- unpriced is NULL, never zero ---------------------------------------------------


def test_unpriced_is_null_and_free_is_zero(store: SqlStore) -> None:
    unpriced = minimal_event(model="mystery", unpriced_reason="no price for mystery")
    free = minimal_event(model="free-tier", cost=Decimal("0"))
    store.write([unpriced, free])
    with store.engine.connect() as conn:
        stored: dict[str, int | None] = dict(
            conn.execute(sa.text("SELECT model, cost_nanos FROM events")).all()
        )
    assert stored == {"mystery": None, "free-tier": 0}
    back_unpriced, back_free = store.get(unpriced.id), store.get(free.id)
    assert back_unpriced is not None and back_unpriced.cost is None
    assert back_free is not None and back_free.cost == Decimal(0)
    assert store.unpriced_models() == [("openai", "mystery", 1)]
    report = store.report(Query(by=("model",), metrics=("cost", "unpriced_calls")))
    by_model = {g["model"]: g for g in report.rows}
    assert by_model["mystery"]["cost"] is None and by_model["mystery"]["unpriced_calls"] == 1
    assert by_model["free-tier"]["cost"] == 0 and by_model["free-tier"]["unpriced_calls"] == 0


def test_unpriced_models_are_counted_most_first(store: SqlStore) -> None:
    store.write([minimal_event(model="x") for _ in range(3)] + [minimal_event(model="y")])
    store.write([minimal_event(model="z", cost=Decimal("0.1"))])
    assert store.unpriced_models() == [("openai", "x", 3), ("openai", "y", 1)]


# -- tags table -------------------------------------------------------------------


def test_tags_are_also_rows_of_event_tags(store: SqlStore) -> None:
    event = full_event()
    store.write([event, minimal_event()])
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(event_tags).order_by(event_tags.c.key)).all()
    micros = (event.ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    stored = store.get(event.id)
    assert stored is not None and stored.cost is not None
    # Each row carries its call's cost, so a tag's spend is read from its rows alone.
    assert [tuple(r) for r in rows] == [
        (key, event.tags[key], micros, event.id, to_nanos(stored.cost))
        for key in sorted(event.tags)
    ]


# -- schema and migrations -------------------------------------------------------------


def _register_every_table() -> None:
    """Import every llmledger module, so each table defined on the shared metadata is known."""
    import importlib
    import pkgutil

    import llmledger

    for module in pkgutil.walk_packages(llmledger.__path__, "llmledger."):
        # A module needing an extra that is not installed defines no table we could miss.
        with contextlib.suppress(ImportError):
            importlib.import_module(module.name)


@pytest.mark.unmigrated
def test_migrating_an_empty_database_matches_the_metadata(db_url: str) -> None:
    _register_every_table()
    migrate(db_url)
    migrate(db_url)  # a second run is a no-op
    with SqlStore(db_url) as store:
        assert store.schema_version() == head_revision()
        assert {"events", "event_tags"} <= set(sa.inspect(store.engine).get_table_names())
        with store.engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diffs == []


@pytest.mark.unmigrated
def test_a_store_that_was_never_migrated_reports_no_version(db_url: str) -> None:
    with SqlStore(db_url) as store:
        assert store.schema_version() is None


# -- errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:////nonexistent-llmledger-dir/sub/ledger.db", "cannot open ledger database"),
        ("mysql://user@localhost/ledger", "unsupported database 'mysql'"),
        ("not a url", "not a database URL"),
        ("postgresql+psycopg2://u@localhost/x", "unsupported PostgreSQL driver"),
        (
            "postgresql+psycopg://postgres@127.0.0.1:1/nothing?connect_timeout=2",
            "cannot open ledger",
        ),
    ],
)
def test_unopenable_databases_raise_a_one_line_store_error(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as info:
        SqlStore(url)
    assert "\n" not in str(info.value)


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open ledger database"):
        SqlStore(f"sqlite:///{junk}")


def test_invalid_events_fail_the_batch_or_go_to_on_error(store: SqlStore) -> None:
    naive = minimal_event(ts=datetime(2025, 1, 1))
    good = minimal_event()
    with pytest.raises(InvalidEventError):
        store.write([good, naive])
    assert store.count() == 0
    rejected: list[UsageEvent] = []
    assert store.write([good, naive], on_error=lambda e, exc: rejected.append(e)).count == 1
    assert rejected == [naive]


def test_backup_copies_sqlite_and_points_postgres_to_pg_dump(
    store: SqlStore, tmp_path: Path
) -> None:
    event = full_event()
    store.write([event])
    if store.dialect == "postgresql":
        assert store.path is None
        with pytest.raises(StoreError, match="pg_dump"):
            store.backup(tmp_path / "copy.db")
        return
    assert store.path is not None and store.path.exists()
    copy = store.backup(tmp_path / "copy.db")
    with SqlStore(f"sqlite:///{copy}") as restored:
        assert restored.get(event.id) == event


def test_open_store_with_settings_creates_the_default_folder(ledger_home: Path) -> None:
    from llmledger.core.settings import load_settings

    assert not ledger_home.exists()
    with open_store(load_settings()) as store:
        assert store.path == ledger_home / "ledger.db"
        assert store.path.exists()
        assert store.schema_version() == head_revision()


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'l.db'}") as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1


# -- the writer on each backend ------------------------------------------------------------


def test_writer_flush_commits_everything_submitted(store: SqlStore) -> None:
    writer = Writer(store, batch_size=7, flush_interval=5, strict=True)
    events = [minimal_event() for _ in range(50)]
    for event in events:
        writer.submit(event)
    assert writer.flush(timeout=30)
    assert store.count() == 50 and writer.written == 50
    assert writer.close(timeout=30)


def test_writer_runs_deferred_items_and_the_prepare_hook(store: SqlStore) -> None:
    def price(event: UsageEvent) -> UsageEvent:
        return event.replace(cost=Decimal("0.5"), cost_source="manual")

    writer = Writer(store, prepare=price, strict=True, batch_size=10, flush_interval=5)
    deferred = minimal_event()
    writer.submit(lambda: deferred)
    writer.submit(minimal_event())
    assert writer.flush(timeout=30)
    back = store.get(deferred.id)
    assert back is not None and back.cost == Decimal("0.5") and back.cost_source == "manual"
    writer.close()


def test_writer_skips_bad_items_without_losing_the_batch(store: SqlStore) -> None:
    writer = Writer(store, strict=False, batch_size=100, flush_interval=5)
    good = [minimal_event() for _ in range(3)]
    writer.submit(good[0])
    writer.submit(lambda: 1 / 0)  # type: ignore[arg-type, return-value]
    writer.submit(good[1])
    writer.submit(minimal_event(ts=datetime(2025, 1, 1)))  # naive time: rejected by the store
    writer.submit("not an event")  # type: ignore[arg-type]
    writer.submit(good[2])
    assert writer.flush(timeout=30) is False  # three events did not reach the store
    assert writer.failed == 2 and writer.dropped == 1 and writer.written == 3
    assert {e.id for e in store.events()} == {e.id for e in good}
    writer.close()


def test_writer_strict_re_raises_internal_errors_from_flush(store: SqlStore) -> None:
    writer = Writer(store, strict=True, batch_size=100, flush_interval=5)
    writer.submit(lambda: 1 / 0)  # type: ignore[arg-type, return-value]
    writer.submit(minimal_event())
    with pytest.raises(ZeroDivisionError):
        writer.flush(timeout=30)
    assert writer.flush(timeout=30)  # reported once
    assert store.count() == 1
    writer.close()


def test_writer_counts_drops_past_the_journal_limit_and_after_close(
    store: SqlStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal(tmp_path / "journal", limit_bytes=1500)
    writer = Writer(store, journal=journal, strict=True, batch_size=100, flush_interval=60)
    kept = 0
    for _ in range(20):
        writer.submit(minimal_event())
    kept = journal.appended
    assert 0 < kept < 20 and writer.dropped == 20 - kept
    assert sum("dropped" in r.getMessage() for r in caplog.records) == 1  # rate-limited
    assert journal_status(tmp_path).destinations == ()  # not under a spool folder
    assert writer.close(timeout=30) is False  # events were dropped: it says so
    writer.submit(minimal_event())
    assert writer.dropped == 21 - kept
    assert store.count() == kept
    assert (tmp_path / "journal").is_dir()
    [count] = (tmp_path / "journal").glob("*.dropped")
    assert int(count.read_text()) == 20 - kept


def test_concurrent_threads_with_their_own_writers(db_url: str) -> None:
    migrate(db_url)
    stores = [SqlStore(db_url) for _ in range(2)]
    writers = [Writer(s, strict=True, batch_size=50, flush_interval=0.01) for s in stores]

    def produce(writer: Writer) -> None:
        for _ in range(500):
            writer.submit(minimal_event())

    threads = [threading.Thread(target=produce, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for writer in writers:
        assert writer.close(timeout=60)
    assert stores[0].count() == 1000
    for s in stores:
        s.close()


PRODUCER = """
import sys
from datetime import datetime, timezone
from llmledger.core.events import UsageEvent
from llmledger.store import open_store
from llmledger.runtime.writer import Writer
store = open_store(sys.argv[1])
writer = Writer(store, strict=True, batch_size=100, flush_interval=0.01)
for i in range(int(sys.argv[2])):
    writer.submit(UsageEvent(provider="openai", model="m", ts=datetime.now(timezone.utc)))
assert writer.close(timeout=120)
store.close()
"""


def test_concurrent_processes_write_to_one_ledger(db_url: str) -> None:
    migrate(db_url)
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PRODUCER, db_url, "2000"], env=env, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err.decode()
    with SqlStore(db_url) as store:
        assert store.count() == 4000


def test_writer_works_in_a_forked_child(store: SqlStore, tmp_path: Path) -> None:
    writer = Writer(store, strict=True, batch_size=10, flush_interval=0.01)
    writer.submit(minimal_event())
    assert writer.flush(timeout=30)
    child_event = minimal_event()
    report = tmp_path / "child.txt"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        outcome = "did not finish"
        try:
            writer.submit(child_event)
            flushed = writer.flush(timeout=30)
            outcome = f"flushed={flushed} written={writer.written} failed={writer.failed}"
        except BaseException as exc:
            outcome = f"raised {exc!r}"
        finally:
            report.write_text(outcome)
            os._exit(0)
    os.waitpid(pid, 0)
    assert report.read_text() == "flushed=True written=1 failed=0"
    assert store.get(child_event.id) == child_event
    writer.submit(minimal_event())
    assert writer.flush(timeout=30)
    assert store.count() == 3
    writer.close()


def test_write_hooks_see_exactly_the_new_events_inside_the_transaction(db_url: str) -> None:
    seen: list[list[str]] = []

    def hook(conn: sa.Connection, new: Sequence[UsageEvent]) -> None:
        assert conn.in_transaction()
        seen.append([e.id for e in new])

    with open_store(db_url) as store:
        store.write_hooks.append(hook)
        old = minimal_event(tags={"k": "v"})
        store.write([old])
        fresh = [minimal_event(tags={"k": "w"}) for _ in range(3)]
        assert store.write([fresh[0], old, fresh[1], fresh[1], fresh[2]]).count == 3
        assert seen == [[old.id], [e.id for e in fresh]]

        def failing(conn: sa.Connection, new: Sequence[UsageEvent]) -> None:
            raise RuntimeError("rollups are broken")

        store.write_hooks.append(failing)
        with pytest.raises(StoreError, match="rollups are broken"):
            store.write([minimal_event()])
        assert store.count() == 4
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(event_tags)).scalar() == 4


# -- the protocol -------------------------------------------------------------------


def test_sql_store_has_every_operation_of_the_protocol(store: SqlStore) -> None:
    names = {
        name
        for name in vars(Store)
        if not name.startswith("_") or name in ("__enter__", "__exit__")
    } - {"__protocol_attrs__", "__non_callable_proto_members__"}
    assert {"write", "get_content", "add_key", "add_price", "database_prices"} <= names
    missing = [name for name in sorted(names) if not hasattr(store, name)]
    assert missing == []


# -- kept text ----------------------------------------------------------------------


def test_text_round_trips_and_a_second_record_replaces_the_first(store: SqlStore) -> None:
    ts = datetime(2025, 3, 1, 9, 0, 0, 7, tzinfo=timezone(timedelta(hours=-3)))
    first = ContentRecord("01JTEXT", ts, "Olá? — ✓ 🎧", None)
    store.save_content([first])
    back = store.get_content("01JTEXT")
    assert back == first and back is not None and back.ts.utcoffset() == timedelta(0)
    store.save_content([ContentRecord("01JTEXT", ts, None, "second"), first])
    assert store.get_content("01JTEXT") == first  # the last record of an event wins
    store.save_content([ContentRecord("01JTEXT", ts, None, "answer")])
    assert store.get_content("01JTEXT") == ContentRecord("01JTEXT", ts, None, "answer")
    assert store.get_content("01JNONE") is None
    store.save_content([])


def test_text_is_written_only_for_the_events_a_write_inserts(store: SqlStore) -> None:
    old, new, naive = minimal_event(), minimal_event(), minimal_event(ts=datetime(2025, 1, 1))
    store.write([old], content={old.id: ContentRecord(old.id, old.ts, "kept?", "yes")})
    texts = {
        e.id: ContentRecord(e.id, T0, f"{e.id}?", None)
        for e in (old, new, naive, minimal_event())  # the last one is not in the batch
    }
    result = store.write([old, new, naive], on_error=lambda e, exc: None, content=texts)
    assert result.inserted == (new,)
    assert store.get_content(new.id) == texts[new.id]
    assert store.get_content(old.id) == ContentRecord(old.id, old.ts, "kept?", "yes")
    assert store.get_content(naive.id) is None
    assert all(store.get_content(i) is None for i in texts if i not in (old.id, new.id))


def test_text_is_rolled_back_with_the_events_it_came_with(db_url: str) -> None:
    def failing(conn: sa.Connection, new: Sequence[UsageEvent]) -> None:
        raise RuntimeError("rollups are broken")

    with open_store(db_url) as store:
        store.write_hooks.append(failing)
        event = minimal_event()
        with pytest.raises(StoreError, match="rollups are broken"):
            store.write([event], content={event.id: ContentRecord(event.id, T0, "lost?", None)})
        assert store.count() == 0 and store.get_content(event.id) is None


# -- API keys -------------------------------------------------------------------------


def api_key(key_id: str, created: datetime, **changes: Any) -> ApiKey:
    fields: dict[str, Any] = {
        "id": key_id,
        "role": "reader",
        "tenant": "acme",
        "user": "ana",
        "name": "dashboard ✓",
        "created": created,
        **changes,
    }
    return ApiKey(**fields)


def test_keys_are_stored_listed_and_revoked(store: SqlStore) -> None:
    later = api_key("0BBBBBBBBBBB", T0 + timedelta(seconds=1), role="admin", tenant=None)
    first = api_key("0AAAAAAAAAAA", T0, user=None, name=None)
    store.add_key(later, "b" * 64)
    store.add_key(first, "a" * 64)
    found = store.get_key(first.id)
    assert found is not None and found.key == first and found.secret_hash == "a" * 64
    assert found.key.created.microsecond == 123456
    assert store.get_key("0CCCCCCCCCCC") is None
    assert store.list_keys() == [first, later]
    revoked = store.revoke_key(first.id, now=T0 + timedelta(days=1))
    assert revoked == api_key(first.id, T0, user=None, name=None, revoked=T0 + timedelta(days=1))
    again = store.revoke_key(first.id, now=T0 + timedelta(days=2))
    assert again is not None and again.revoked == T0 + timedelta(days=1)  # the first time stays
    assert store.revoke_key("0CCCCCCCCCCC", now=T0) is None
    assert store.list_keys() == [later]
    assert store.list_keys(include_revoked=True) == [revoked, later]


def test_a_key_id_is_stored_once(store: SqlStore) -> None:
    key = api_key("0AAAAAAAAAAA", T0)
    store.add_key(key, "a" * 64)
    with pytest.raises(RowExistsError, match="0AAAAAAAAAAA") as raised:
        store.add_key(api_key("0AAAAAAAAAAA", T0, role="admin"), "b" * 64)
    assert raised.value.existing == "0AAAAAAAAAAA"
    assert store.list_keys() == [key]


# -- prices and exchange rates -------------------------------------------------------------


def price_row(**changes: Any) -> StoredPrice:
    fields: dict[str, Any] = {
        "id": new_id(),
        "provider": "acme",
        "model": "acme-1",
        "service_tier": None,
        "valid_from": date(2025, 1, 1),
        "checked": None,
        "rates": {"input_mtok": "1.25", "tiers": [{"start": 1000, "output_mtok": "0.000001"}]},
        "created": T0,
        "created_by": "ops",
        **changes,
    }
    return StoredPrice(**fields)


def rate_row(**changes: Any) -> StoredRate:
    fields: dict[str, Any] = {
        "id": new_id(),
        "currency": "BRL",
        "rate": Decimal("5.123456789012"),
        "valid_from": date(2025, 1, 1),
        "checked": None,
        "source": "central bank",
        "created": T0,
        "created_by": None,
        **changes,
    }
    return StoredRate(**fields)


def test_price_rows_are_history_never_replaced(store: SqlStore) -> None:
    first = price_row()
    store.add_price(first)
    with pytest.raises(RowExistsError, match="ACME/Acme-1 from 2025-01-01") as raised:
        store.add_price(price_row(provider="ACME", model="Acme-1", rates={"input_mtok": "9"}))
    assert raised.value.existing == first.id
    with pytest.raises(RowExistsError):
        store.add_price(price_row(valid_from=date(2025, 1, 1), created=T0 + timedelta(days=1)))
    tier = price_row(service_tier="flex")
    later = price_row(valid_from=date(2025, 6, 1))
    always = price_row(valid_from=None, model="acme-0")
    other = price_row(provider="zeta", model="z-1")
    for row in (other, later, tier, always):
        store.add_price(row)
    assert store.list_prices() == [always, first, later, tier, other]
    assert store.list_prices(provider="acme", model="acme-1") == [first, later, tier]
    assert store.list_prices(model="z-1") == [other]
    with pytest.raises(RowExistsError, match="from the beginning"):
        store.add_price(price_row(valid_from=None, model="acme-0"))


def test_checking_a_price_row_sets_its_day(store: SqlStore) -> None:
    row = price_row()
    store.add_price(row)
    checked = store.check_price(row.id, date(2025, 3, 2))
    assert checked == price_row(**{**_fields(row), "checked": date(2025, 3, 2)})
    assert store.list_prices() == [checked]
    assert store.check_price("01JNONE", date(2025, 3, 2)) is None


def test_rates_are_history_and_keep_every_digit(store: SqlStore) -> None:
    first = rate_row()
    store.add_rate(first)
    with pytest.raises(RowExistsError, match="BRL rate from 2025-01-01") as raised:
        store.add_rate(rate_row(rate=Decimal("6")))
    assert raised.value.existing == first.id
    later = rate_row(valid_from=date(2025, 2, 1), source=None, created_by="ops")
    euro = rate_row(currency="EUR", rate=Decimal("0.9"))
    store.add_rate(euro)
    store.add_rate(later)
    assert store.list_rates() == [first, later, euro]
    assert store.list_rates(currency="brl") == [first, later]
    assert str(store.list_rates(currency="BRL")[0].rate) == "5.123456789012"
    checked = store.check_rate(later.id, date(2025, 3, 2))
    assert checked is not None and checked.checked == date(2025, 3, 2)
    assert store.check_rate("01JNONE", date(2025, 3, 2)) is None


def test_database_prices_hold_every_row_and_a_version_that_moves(store: SqlStore) -> None:
    empty = store.database_prices()
    assert (empty.prices, empty.rates) == ((), ())
    assert empty.version == store.prices_version()
    price, rate = price_row(), rate_row()
    store.add_price(price)
    assert store.prices_version() != empty.version
    store.add_rate(rate)
    both = store.database_prices()
    assert (both.prices, both.rates) == ((price,), (rate,))
    assert both.version == store.prices_version() != empty.version
    assert both.as_price_file() == {
        "prices": [{"provider": "acme", "model": "acme-1", "from": "2025-01-01", **price.rates}],
        "exchange_rates": {
            "BRL": [{"from": "2025-01-01", "rate": "5.123456789012", "source": "central bank"}]
        },
    }


def _fields(row: StoredPrice) -> dict[str, Any]:
    return {name: getattr(row, name) for name in StoredPrice.__slots__}
