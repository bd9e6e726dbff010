"""The query engine on SQLite and PostgreSQL: sums add up, tags, time zones, rollups = events."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmledger.core.events import Status, UsageEvent
from llmledger.core.usage import BUCKETS, Usage
from llmledger.pricing.fx import ExchangeRates
from llmledger.query import METRICS, Filter, InvalidQueryError, Query, SortKey, month_forecast, plan
from llmledger.query.aggregate import percentile
from llmledger.query.periods import DAY_US, HOUR_US, to_us
from llmledger.query.plan import DAILY_GRAINS, GRAINS
from llmledger.query.spec import COLUMN_DIMENSIONS, PERCENTILE_METRICS
from llmledger.store import SqlStore, open_store
from llmledger.store.codec import FIXED_COLUMNS, OPTIONAL_COLUMNS, encode_batch
from llmledger.store.migrator import upgrade_connection
from llmledger.store.rollup_tables import daily_rollups, rollup_table, rollups
from llmledger.store.rollups import apply_rollups
from llmledger.store.schema import events as events_table
from tests.conftest import SharedLedgers

T0 = datetime(2025, 3, 28, tzinfo=UTC)
_STATUSES: list[Status] = [
    "ok",
    "ok",
    "ok",
    "ok",
    "ok",
    "ok",
    "ok",
    "error",
    "incomplete",
    "abandoned",
]
ADDITIVE = ("calls", "successes", "errors", "unpriced_calls", *BUCKETS, "total_tokens")
# Every metric rollups can answer (percentiles always come from the events).
ROLLUP_METRICS = tuple(m for m in METRICS if m not in PERCENTILE_METRICS)


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    with open_store(db_url) as opened:
        assert apply_rollups in opened.write_hooks  # the store keeps rollups itself
        yield opened


@pytest.fixture
def store_of_400(db_backend: str, shared_ledgers: SharedLedgers) -> Iterator[SqlStore]:
    """400 varied events, written once per module and backend: read, never written, here."""
    store = shared_ledgers.store(db_backend, "400", lambda s: s.write(make_events(400, seed=1)))
    yield store
    assert store.count() == 400


def make_events(count: int, seed: int, *, span: timedelta = timedelta(days=6)) -> list[UsageEvent]:
    """Varied events: every dimension sometimes unset, some unpriced, some with several tags."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        tags = {}
        if rng.random() < 0.6:
            tags["podcast_id"] = rng.choice(["rec1", "rec2", "rec3"])
        if rng.random() < 0.4:
            tags["env"] = rng.choice(["prod", "test"])
        input_tokens = rng.randint(0, 5000)
        output_tokens = rng.randint(0, 900)
        out.append(
            UsageEvent(
                provider=rng.choice(["openai", "anthropic"]),
                model=rng.choice(["gpt-4o", "o3", "claude-sonnet"]),
                response_model=rng.choice([None, "gpt-4o-2024-08-06", "=cmd"]),
                operation=rng.choice(["chat", "chat", "embeddings"]),
                status=rng.choice(_STATUSES),
                ts=T0 + timedelta(microseconds=rng.randrange(int(span.total_seconds() * 1e6))),
                usage=Usage(
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    cache_read_tokens=rng.randint(0, input_tokens),
                    reasoning_tokens=rng.randint(0, output_tokens),
                ),
                cost=rng.choice([None, Decimal(rng.randint(0, 10**7)).scaleb(-9)]),
                duration_ms=rng.choice([None, round(rng.uniform(50, 4000), 3)]),
                ttft_ms=rng.choice([None, round(rng.uniform(5, 400), 3)]),
                tenant=rng.choice([None, "acme", "globex"]),
                user=rng.choice([None, "ana", "bo", "carla"]),
                feature=rng.choice([None, "chat", "search", "summary"]),
                session=rng.choice([None, "s1", "s2"]),
                api_key_fingerprint=rng.choice([None, "k1", "k2"]),
                tags=tags,
            )
        )
    return out


def _reset(store: SqlStore) -> None:
    with store.engine.begin() as conn:
        for table in ("rollups_daily", "rollups_hourly", "event_tags", "events"):
            conn.exec_driver_sql(f"DELETE FROM {table}")


def _sum(rows: list[dict[str, Any]], name: str) -> Any:
    values = [r[name] for r in rows if r[name] is not None]
    return sum(values, Decimal(0) if name == "cost" else 0)


@pytest.mark.parametrize(
    "by",
    [(d,) for d in COLUMN_DIMENSIONS]
    + [("tag:podcast_id",), ("model", "tenant"), ("user", "tag:env")],
)
def test_totals_of_any_grouping_add_up_to_the_ungrouped_total(
    store_of_400: SqlStore, by: tuple[str, ...]
) -> None:
    store = store_of_400
    metrics = (*ADDITIVE, "cost")
    flat = store.report(Query(metrics=metrics))
    assert flat.rows == [flat.total]
    assert flat.total["calls"] == 400
    for every in (None, "day"):
        report = store.report(Query(by=by, every=every, metrics=metrics))
        assert report.total == flat.total
        for name in metrics:
            assert _sum(report.rows, name) == flat.total[name], name


def test_grouping_by_a_tag_key_puts_untagged_calls_under_none(store: SqlStore) -> None:
    store.write(make_events(300, seed=2))
    report = store.report(Query(by=("tag:podcast_id",), metrics=("calls",)))
    values = {r["tag:podcast_id"] for r in report.rows}
    assert values == {"rec1", "rec2", "rec3", None}
    assert not report.notes


def test_grouping_by_every_tag_is_explicit_that_rows_overlap(store: SqlStore) -> None:
    both = UsageEvent(
        provider="openai",
        model="gpt-4o",
        ts=T0,
        tags={"env": "prod", "team": "a"},
        usage=Usage(input_tokens=10),
        cost=Decimal("1"),
    )
    one = UsageEvent(
        provider="openai",
        model="gpt-4o",
        ts=T0,
        tags={"env": "prod"},
        usage=Usage(input_tokens=5),
        cost=Decimal("2"),
    )
    none = UsageEvent(provider="openai", model="gpt-4o", ts=T0, usage=Usage(input_tokens=1))
    store.write([both, one, none])
    report = store.report(Query(by=("tag",), metrics=("calls", "input_tokens", "cost")))
    rows = {r["tag"]: (r["calls"], r["input_tokens"], r["cost"]) for r in report.rows}
    assert rows == {
        "env=prod": (2, 15, Decimal("3")),
        "team=a": (1, 10, Decimal("1")),
        None: (1, 1, None),
    }
    # The total counts each call once, so the rows add up to more than it.
    assert report.total == {"calls": 3, "input_tokens": 16, "cost": Decimal("3")}
    assert any("several tags" in note for note in report.notes)
    assert "several tags" in report.to_dict()["notes"][0]


def _day_rows(store: SqlStore, tz: str, mode: str = "auto") -> dict[str, int]:
    query = Query(every="day", tz=tz, metrics=("calls",))
    report = store.report(query, mode=mode)  # type: ignore[arg-type]
    return {r["day"].isoformat(): r["calls"] for r in report.rows}


def test_day_buckets_follow_the_time_zone_across_a_daylight_saving_change(store: SqlStore) -> None:
    # Lisbon moved from UTC+0 to UTC+1 at 01:00 UTC on 2025-03-30.
    times = [
        "2025-03-29T23:30:00+00:00",  # 23:30 on the 29th, local
        "2025-03-30T00:30:00+00:00",  # 00:30 on the 30th (still UTC+0)
        "2025-03-30T22:59:00+00:00",  # 23:59 on the 30th (now UTC+1)
        "2025-03-30T23:00:00+00:00",  # 00:00 on the 31st
        "2025-03-31T12:00:00+00:00",
    ]
    store.write(
        [UsageEvent(provider="openai", model="gpt-4o", ts=datetime.fromisoformat(t)) for t in times]
    )
    expected = {
        "2025-03-29T00:00:00+00:00": 1,
        "2025-03-30T00:00:00+00:00": 2,
        "2025-03-31T00:00:00+01:00": 2,
    }
    assert _day_rows(store, "Europe/Lisbon") == expected
    assert _day_rows(store, "Europe/Lisbon", "events") == expected
    assert _day_rows(store, "UTC") == {
        "2025-03-29T00:00:00+00:00": 1,
        "2025-03-30T00:00:00+00:00": 3,
        "2025-03-31T00:00:00+00:00": 1,
    }
    # UTC+5:30 cannot be served from hourly rollups: the engine reads the events.
    assert _day_rows(store, "Asia/Kolkata") == {
        "2025-03-30T00:00:00+05:30": 2,
        "2025-03-31T00:00:00+05:30": 3,
    }
    kolkata = Query(every="day", tz="Asia/Kolkata", since=T0, until=T0 + timedelta(days=9))
    assert [p.grain for p in plan(kolkata, None)] == [None]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10**6),
    by=st.lists(
        st.sampled_from(
            [
                "provider",
                "model",
                "response_model",
                "status",
                "tenant",
                "feature",
                "user",
                "api_key_fingerprint",
            ]
        ),
        max_size=2,
        unique=True,
    ),
    every=st.sampled_from([None, "hour", "day", "week", "month"]),
    tz=st.sampled_from(["UTC", "Europe/Lisbon", "Europe/London", "America/New_York", "Asia/Tokyo"]),
    start_minutes=st.one_of(st.none(), st.integers(0, 6 * 24 * 60)),
    length_minutes=st.one_of(st.none(), st.integers(1, 6 * 24 * 60)),
    where=st.sampled_from(
        [(), (Filter("model", ("o3",), negate=True),), (Filter("tenant", ("acme", None)),)]
    ),
)
def test_reports_from_rollups_equal_reports_from_raw_events(
    store: SqlStore,
    seed: int,
    by: list[str],
    every: str | None,
    tz: str,
    start_minutes: int | None,
    length_minutes: int | None,
    where: tuple[Filter, ...],
) -> None:
    _reset(store)
    store.write(make_events(60, seed))
    since = None if start_minutes is None else T0 + timedelta(minutes=start_minutes, seconds=7)
    until = None
    if length_minutes is not None:
        until = (since or T0) + timedelta(minutes=length_minutes)
    query = Query(
        since=since,
        until=until,
        by=tuple(by),
        every=every,  # type: ignore[arg-type]
        tz=tz,
        where=where,
        metrics=ROLLUP_METRICS,
    )
    from_rollups = store.report(query, mode="auto")
    from_hourly = store.report(query, mode="hourly")
    from_events = store.report(query, mode="events")
    if length_minutes is None or length_minutes > 120:
        assert "rollups" in from_rollups.source
        assert "rollups" in from_hourly.source
    assert from_events.source == "events"

    def exact(report: Any) -> Any:
        data = report.to_dict()
        for row in [data["total"], *data["rows"]]:
            row.pop("latency_mean")
            row.pop("ttft_mean")
        data.pop("source")
        return data

    for planned in (from_rollups, from_hourly):
        assert exact(planned) == exact(from_events)
        for a, b in zip(
            [planned.total, *planned.rows], [from_events.total, *from_events.rows], strict=True
        ):
            for name in ("latency_mean", "ttft_mean"):
                # Float sums in another order, then rounded to 3 decimals: within one unit.
                assert a[name] == pytest.approx(b[name], abs=1.5e-3)


def _level_rows(store: SqlStore, period_us: int, grain: int) -> list[tuple[Any, ...]]:
    """(period start, the grain's values, sums…) of one rollup level, from its table."""
    table, time = rollup_table(period_us)
    names = GRAINS[grain]
    summed = [
        table.c[name]
        for name in (
            "calls",
            "successes",
            "errors",
            "unpriced_calls",
            *BUCKETS,
            "duration_count",
            "ttft_count",
            "cost_nanos",
        )
    ]
    query = sa.select(
        time, *(table.c[n] for n in names), *summed, table.c.first_us, table.c.last_us
    ).where(table.c.grain == grain)
    with store.engine.connect() as conn:
        return sorted((tuple(r) for r in conn.execute(query)), key=repr)


def _expected_level_rows(
    events: list[UsageEvent], period_us: int, grain: int
) -> list[tuple[Any, ...]]:
    """The same rows computed in Python from the events, independently of the store."""
    groups: dict[tuple[Any, ...], list[UsageEvent]] = {}
    for event in events:
        micros = (event.ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        key = (micros - micros % period_us, *(getattr(event, n) for n in GRAINS[grain]))
        groups.setdefault(key, []).append(event)
    out = []
    for key, members in groups.items():
        stamps = [
            (e.ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) for e in members
        ]
        costs = [e.cost for e in members if e.cost is not None]
        out.append(
            (
                *key,
                len(members),
                sum(e.status == "ok" for e in members),
                sum(e.status == "error" for e in members),
                len(members) - len(costs),
                *(sum(getattr(e.usage, b) for e in members) for b in BUCKETS),
                sum(e.duration_ms is not None for e in members),
                sum(e.ttft_ms is not None for e in members),
                sum(int(c.scaleb(9)) for c in costs),
                min(stamps),
                max(stamps),
            )
        )
    return sorted(out, key=repr)


LEVELS = [(HOUR_US, grain) for grain in GRAINS] + [(DAY_US, grain) for grain in DAILY_GRAINS]


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 10**6), batches=st.integers(1, 4))
def test_every_rollup_level_holds_exactly_the_sums_of_the_raw_events(
    store: SqlStore, seed: int, batches: int
) -> None:
    _reset(store)
    written = make_events(120, seed, span=timedelta(days=3))
    for index in range(batches):  # several batches touch the same rows: upserts add up
        store.write(written[index::batches])
    for period_us, grain in LEVELS:
        expected = _expected_level_rows(written, period_us, grain)
        assert _level_rows(store, period_us, grain) == expected, (period_us, grain)
    store.rebuild_rollups()
    for period_us, grain in LEVELS:
        expected = _expected_level_rows(written, period_us, grain)
        assert _level_rows(store, period_us, grain) == expected, (period_us, grain)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # 30 days from a partial hour: events, hours to midnight, days, hours, events.
        (
            Query(
                since=T0 + timedelta(hours=13, minutes=5),
                until=T0 + timedelta(days=30, hours=7, minutes=1),
                by=("model",),
            ),
            [(None, None), (1, HOUR_US), (1, DAY_US), (1, HOUR_US), (None, None)],
        ),
        # Tenant and feature are kept daily (grain 2), and a tenant's users (grain 4);
        # users with any other dimension only hourly (grain 3).
        (Query(since=T0, until=T0 + timedelta(days=3), by=("tenant", "feature")), [(2, DAY_US)]),
        (Query(since=T0, until=T0 + timedelta(days=3), by=("user",)), [(4, DAY_US)]),
        (
            Query(
                since=T0,
                until=T0 + timedelta(days=3),
                by=("user",),
                where=(Filter("feature", ("a",)),),
            ),
            [(3, HOUR_US)],
        ),
        # Days in UTC, or in London in winter, are UTC days; in Lisbon in summer they are not.
        (Query(since=T0, until=T0 + timedelta(days=2), every="day"), [(1, DAY_US)]),
        (
            Query(since=T0 - timedelta(days=20), until=T0, every="week", tz="Europe/London"),
            [(1, DAY_US)],
        ),
        (
            Query(
                since=T0 + timedelta(days=60),
                until=T0 + timedelta(days=62),
                every="day",
                tz="Europe/Lisbon",
            ),
            [(1, HOUR_US)],
        ),
        (Query(since=T0, until=T0 + timedelta(days=2), every="hour"), [(1, HOUR_US)]),
        # Costs in another currency are converted per UTC day: daily rows serve.
        (Query(since=T0, until=T0 + timedelta(days=2), currency="BRL"), [(1, DAY_US)]),
        (Query(by=("model",)), [(1, DAY_US)]),
        (Query(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=50)), [(None, None)]),
    ],
)
def test_the_plan_reads_the_coarsest_rollups_that_answer(
    query: Query, expected: list[tuple[int | None, int | None]]
) -> None:
    pieces = plan(query, None)
    assert [(p.grain, p.period_us if p.grain else None) for p in pieces] == expected
    # The pieces tile the range, in order.
    assert pieces[0].start_us == (None if query.since is None else to_us(query.since))
    assert pieces[-1].end_us == (None if query.until is None else to_us(query.until))
    for before, after in pairwise(pieces):
        assert before.end_us == after.start_us


def test_rebuilt_rollups_equal_rollups_kept_on_write(store: SqlStore) -> None:
    store.write(make_events(500, seed=5))

    def snapshot() -> list[tuple[Any, ...]]:
        with store.engine.connect() as conn:
            rows = [*conn.execute(sa.select(rollups)), *conn.execute(sa.select(daily_rollups))]
        # Float sums (latency, time to first token) added in another order: rounded.
        return sorted(
            (tuple(r[:-4]), round(r[-4], 6), round(r[-3], 6), r[-2], r[-1])
            for r in (list(row) for row in rows)
        )

    kept = snapshot()
    assert kept
    assert store.rebuild_rollups() == len(kept)
    assert snapshot() == kept
    # A partial rebuild (widened to whole hours) leaves the same rows.
    store.rebuild_rollups(T0 + timedelta(hours=5, minutes=10), T0 + timedelta(days=2))
    assert snapshot() == kept


@pytest.mark.unmigrated
def test_rollups_are_filled_when_an_old_ledger_is_migrated(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        upgrade_connection(conn, "0001")
        # Rows in the shape of that schema: a ledger from before rollups existed.
        old_columns = {column["name"] for column in sa.inspect(conn).get_columns("events")}
        encoded = encode_batch(make_events(200, seed=6), split_nulls=False, bool_as_int=False)
        names = FIXED_COLUMNS + OPTIONAL_COLUMNS
        conn.execute(
            sa.insert(events_table),
            [
                {name: value for name, value in zip(names, row, strict=True) if name in old_columns}
                for rows in encoded.groups.values()
                for row in rows
            ],
        )
    engine.dispose()
    with open_store(db_url) as store:
        report = store.report(Query(by=("model",), metrics=("calls", "cost")), mode="rollups")
        raw = store.report(Query(by=("model",), metrics=("calls", "cost")), mode="events")
        assert report.to_dict()["rows"] == raw.to_dict()["rows"]
        assert report.total["calls"] == 200


def test_filters_with_several_values_negation_and_unset(store: SqlStore) -> None:
    events = make_events(300, seed=7)
    store.write(events)

    def count(*filters: Filter) -> int:
        totals = [
            store.report(Query(where=filters, metrics=("calls",)), mode=mode).total
            for mode in ("auto", "events")
        ]
        assert totals[0] == totals[1]
        return int(totals[0]["calls"])

    assert count(Filter("model", ("o3", "gpt-4o"))) == sum(
        e.model in ("o3", "gpt-4o") for e in events
    )
    assert count(Filter("tenant", ("acme",), negate=True)) == sum(
        e.tenant != "acme" for e in events
    )
    assert count(Filter("tenant", (None,))) == sum(e.tenant is None for e in events)
    assert count(Filter("tenant", (None, "acme"), negate=True)) == sum(
        e.tenant == "globex" for e in events
    )
    assert count(Filter("status", ("error",))) == sum(e.status == "error" for e in events)
    assert count(Filter("tag:podcast_id", ("rec1",))) == sum(
        e.tags.get("podcast_id") == "rec1" for e in events
    )
    assert count(Filter("tag:podcast_id", ("rec1",), negate=True)) == sum(
        e.tags.get("podcast_id") != "rec1" for e in events
    )
    assert count(Filter("tag:env", (None,))) == sum("env" not in e.tags for e in events)
    assert count(Filter("tag:env", (None, "prod"))) == sum(
        e.tags.get("env") in (None, "prod") for e in events
    )
    assert count(Filter("session", ("s1",)), Filter("user", ("ana",))) == sum(
        e.session == "s1" and e.user == "ana" for e in events
    )


def test_percentiles_are_exact_and_computed_from_the_events(store: SqlStore) -> None:
    events = make_events(250, seed=8)
    store.write(events)
    query = Query(by=("model",), metrics=("latency_p50", "latency_p95", "latency_p99", "ttft_p50"))
    report = store.report(query)
    assert report.source == "events"
    for row in report.rows:
        durations = sorted(
            e.duration_ms for e in events if e.model == row["model"] and e.duration_ms is not None
        )
        position = 0.95 * (len(durations) - 1)
        low = int(position)
        expected = durations[low] + (durations[low + 1] - durations[low]) * (position - low)
        assert row["latency_p95"] == pytest.approx(expected, abs=1e-3)


def test_percentiles_of_a_whole_range_equal_those_of_its_values(store: SqlStore) -> None:
    # PostgreSQL computes these in the database (percentile_cont), SQLite from the values.
    events = make_events(250, seed=13)
    store.write(events)
    names = ("latency_p50", "latency_p95", "latency_p99", "ttft_p50", "ttft_p99")
    since, until = T0 + timedelta(hours=5, minutes=3), T0 + timedelta(days=4)
    for where, by in (
        ((), ()),
        ((Filter("model", ("o3",), negate=True),), ()),
        ((Filter("tag:podcast_id", ("rec1", "rec2")),), ()),
        ((), ("tag",)),  # the total of overlapping tag groups is a query of the whole range
    ):
        query = Query(since=since, until=until, where=where, by=by, metrics=(*names, "calls"))
        report = store.report(query)
        chosen = [
            e
            for e in events
            if since <= e.ts < until and (not where or all(_kept(f, e) for f in where))
        ]
        assert report.total["calls"] == len(chosen)
        for name in names:
            column = "duration_ms" if name.startswith("latency") else "ttft_ms"
            values = [getattr(e, column) for e in chosen if getattr(e, column) is not None]
            expected = percentile(values, int(name.rsplit("_p", 1)[1]) / 100)
            assert report.total[name] == pytest.approx(round(expected or 0, 3), abs=1e-3), name
    empty = store.report(Query(since=T0 - timedelta(days=9), until=T0, metrics=names))
    assert all(empty.total[name] is None for name in names)


def _kept(item: Filter, event: UsageEvent) -> bool:
    if item.dimension.startswith("tag:"):
        value = event.tags.get(item.dimension.removeprefix("tag:"))
    else:
        value = getattr(event, item.dimension)
    return (value in item.values) != item.negate


def test_a_tags_spend_is_read_from_its_rows_alone_and_equals_the_events(
    store: SqlStore,
) -> None:
    store.write(make_events(400, seed=14))
    metrics = ("calls", "cost", "unpriced_calls", "cost_per_call")
    one = (Filter("tag:podcast_id", ("rec1",)),)
    two = (Filter("tag:podcast_id", ("rec1", "rec3")),)
    since, until = T0 + timedelta(hours=7, minutes=11), T0 + timedelta(days=5)
    for query in (
        Query(where=one, metrics=metrics),
        Query(by=("tag:podcast_id",), where=two, metrics=metrics, since=since, until=until),
        Query(by=("tag:podcast_id",), where=two, every="day", tz="Europe/Lisbon", metrics=metrics),
        Query(where=(*two, Filter("tag:podcast_id", ("rec3",))), every="hour", metrics=metrics),
    ):
        assert [p.tag_rows for p in plan(query, None)] == ["podcast_id"], query
        assert store.report(query).to_dict() == store.report(query, mode="events").to_dict()
    # Anything else a tag's rows do not hold reads the events.
    for query in (
        Query(by=("tag:podcast_id",), metrics=metrics),  # calls without the tag too
        Query(where=(Filter("tag:podcast_id", ("rec1",), negate=True),), metrics=metrics),
        Query(where=(Filter("tag:podcast_id", ("rec1", None)),), metrics=metrics),
        Query(where=(*one, Filter("tag:env", ("prod",))), metrics=metrics),
        Query(where=(*one, Filter("model", ("o3",))), metrics=metrics),
        Query(where=one, metrics=("calls", "input_tokens")),
        Query(by=("tag",), where=one, metrics=metrics),
    ):
        assert [p.tag_rows for p in plan(query, None)] == [None], query


def test_limit_keeps_the_top_groups_and_sums_the_rest(store: SqlStore) -> None:
    store.write(make_events(300, seed=9))
    full = store.report(Query(by=("user",), metrics=("calls", "cost")))
    top = store.report(Query(by=("user",), metrics=("calls", "cost"), limit=2))
    assert top.rows == full.rows[:2]
    assert top.other is not None
    assert top.other["calls"] + sum(r["calls"] for r in top.rows) == full.total["calls"]
    costs = [r["cost"] for r in full.rows if r["cost"] is not None]
    assert costs == sorted(costs, reverse=True)
    by_name = store.report(
        Query(by=("user",), metrics=("calls",), sort=(SortKey("user", descending=False),))
    )
    assert [r["user"] for r in by_name.rows] == ["ana", "bo", "carla", None]
    by_error_rate = store.report(
        Query(by=("feature",), metrics=("error_rate",), sort=(SortKey("error_rate"),))
    )
    rates = [r["error_rate"] for r in by_error_rate.rows]
    assert rates == sorted(rates, reverse=True)
    newest = store.report(
        Query(every="day", metrics=("calls",), sort=(SortKey("day", descending=True),))
    )
    days = [r["day"] for r in newest.rows]
    assert days == sorted(days, reverse=True)


def test_costs_in_another_currency_use_the_rate_of_each_day(store: SqlStore) -> None:
    store.write(
        [
            UsageEvent(
                provider="openai",
                model="a",
                ts=datetime(2025, 1, 31, 23, tzinfo=UTC),
                cost=Decimal("1"),
            ),
            UsageEvent(
                provider="openai",
                model="b",
                ts=datetime(2025, 2, 1, 1, tzinfo=UTC),
                cost=Decimal("2"),
            ),
        ]
    )
    rates = ExchangeRates()
    rates.add("BRL", Decimal("6.00"), date(2025, 1, 1))
    rates.add("BRL", Decimal("5.50"), date(2025, 2, 1))
    report = store.report(Query(by=("model",), metrics=("cost",), currency="BRL"), rates=rates)
    assert {r["model"]: r["cost"] for r in report.rows} == {"a": Decimal("6"), "b": Decimal("11")}
    assert report.total["cost"] == Decimal("17")
    data = report.to_dict()
    assert data["currency"] == "BRL"
    assert [(r["rate"], r["from"]) for r in data["rates"]] == [
        ("6.00", "2025-01-01"),
        ("5.50", "2025-02-01"),
    ]
    assert "1 USD = 6.00 from 2025-01-01" in data["notes"][0]
    from llmledger.core.errors import CurrencyError

    with pytest.raises(CurrencyError):
        store.report(Query(metrics=("cost",), currency="EUR"), rates=rates)


def test_timeline_and_first_last_seen(store: SqlStore) -> None:
    events = make_events(50, seed=10)
    store.write(events)
    query = Query(
        where=(Filter("tag:podcast_id", ("rec2",)),),
        tz="Europe/Lisbon",
        metrics=("calls", "first_seen", "last_seen"),
    )
    calls = store.timeline(query)
    chosen = sorted((e for e in events if e.tags.get("podcast_id") == "rec2"), key=lambda e: e.ts)
    assert [c["id"] for c in calls] == [e.id for e in chosen]
    report = store.report(query)
    assert report.total["first_seen"] == chosen[0].ts
    assert report.total["last_seen"] == chosen[-1].ts
    assert report.to_dict()["total"]["first_seen"].endswith(("+00:00", "+01:00"))


def test_month_forecast_uses_the_recent_run_rate(store: SqlStore) -> None:
    now = datetime(2025, 4, 21, tzinfo=UTC)
    store.write(
        [
            UsageEvent(
                provider="openai", model="a", ts=now - timedelta(days=d, hours=1), cost=Decimal("2")
            )
            for d in range(25)
        ]
    )
    forecast = month_forecast(store, Query(), now)
    assert forecast.month == "2025-04"
    assert forecast.spent == Decimal("40")  # 20 days of April so far
    assert forecast.run_rate_per_day == Decimal("2")
    assert forecast.projected == Decimal("60")


def test_an_unanswerable_query_refuses_rollups_only(store: SqlStore) -> None:
    with pytest.raises(InvalidQueryError, match="rollups"):
        store.report(Query(by=("session",)), mode="rollups")
