"""The pure parts of the query engine: options, periods, time zones, metrics, exports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from llmledger.query import (
    DEFAULT_METRICS,
    METRICS,
    InvalidQueryError,
    Query,
    build_query,
    escape_formula,
    parse_dimensions,
    parse_metrics,
    parse_period,
    parse_sort,
    parse_where,
    project_month,
)
from llmledger.query.aggregate import State, derive_metrics, percentile
from llmledger.query.periods import (
    DAY_US,
    HOUR_US,
    bucket_start_us,
    from_us,
    parse_last,
    slot_size_us,
    to_us,
    utc_days,
)
from llmledger.query.plan import grain_for
from llmledger.store.rollup_tables import dims_key

NOW = datetime(2025, 3, 15, 10, 30, tzinfo=UTC)


def test_where_parses_values_negation_tags_and_none() -> None:
    filters = parse_where(["model=gpt-4o, o3", "tenant!=(none)", "tag:podcast_id=rec123", "key=ab"])
    assert [(f.dimension, f.values, f.negate) for f in filters] == [
        ("model", ("gpt-4o", "o3"), False),
        ("tenant", (None,), True),
        ("tag:podcast_id", ("rec123",), False),
        ("api_key_fingerprint", ("ab",), False),
    ]


@pytest.mark.parametrize("text", ["model", "colour=red", "tag:=x", "model="])
def test_where_rejects_malformed_expressions(text: str) -> None:
    with pytest.raises(InvalidQueryError):
        parse_where([text])


def test_dimensions_metrics_and_sort_parse() -> None:
    assert parse_dimensions(["model,tag:env", "fingerprint"]) == (
        "model",
        "tag:env",
        "api_key_fingerprint",
    )
    assert parse_metrics([]) == DEFAULT_METRICS
    assert parse_metrics(["all"]) == METRICS
    assert parse_metrics(["calls,cost", "calls"]) == ("calls", "cost")
    assert [k.to_text() for k in parse_sort(["cost", "model", "first_seen", "calls:asc"])] == [
        "cost:desc",
        "model:asc",
        "first_seen:asc",
        "calls:asc",
    ]
    for bad in (
        lambda: parse_metrics(["speed"]),
        lambda: parse_dimensions(["colour"]),
        lambda: parse_sort(["cost:up"]),
    ):
        with pytest.raises(InvalidQueryError):
            bad()


def test_query_rejects_contradictions() -> None:
    with pytest.raises(InvalidQueryError, match="aware"):
        Query(since=datetime(2025, 1, 1))
    with pytest.raises(InvalidQueryError, match="before"):
        Query(since=NOW, until=NOW)
    with pytest.raises(InvalidQueryError, match="time zone"):
        Query(tz="Mars/Olympus")
    with pytest.raises(InvalidQueryError, match="not both"):
        Query(by=("tag", "tag:env"))
    with pytest.raises(InvalidQueryError, match="twice"):
        Query(by=("model", "model"))
    with pytest.raises(InvalidQueryError, match="sort"):
        build_query(now=NOW, sort=["tenant"])
    with pytest.raises(InvalidQueryError, match="--limit"):
        Query(limit=0)
    with pytest.raises(InvalidQueryError, match="--since or --last"):
        build_query(now=NOW, since="2025-01-01", last="7d")
    with pytest.raises(InvalidQueryError, match="--period alone"):
        build_query(now=NOW, period="today", last="7d")
    with pytest.raises(InvalidQueryError, match="--every"):
        build_query(now=NOW, every="fortnight")
    with pytest.raises(InvalidQueryError, match="aware"):
        build_query(now=datetime(2025, 1, 1))


def test_build_query_reads_times_in_the_zone_and_spans_back_from_until() -> None:
    q = build_query(now=NOW, tz="America/New_York", since="2025-03-01", until="2025-03-10T12:00Z")
    assert q.since == datetime(2025, 3, 1, 5, tzinfo=UTC)
    assert q.until == datetime(2025, 3, 10, 12, tzinfo=UTC)
    q = build_query(now=NOW, last="2w", until="2025-03-10T00:00:00+00:00")
    assert q.since == datetime(2025, 2, 24, tzinfo=UTC)
    assert build_query(now=NOW, last="12h").since == NOW - timedelta(hours=12)
    assert build_query(now=NOW, currency=" brl ").currency == "BRL"


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        ("today", "2025-03-15", "2025-03-16"),
        ("yesterday", "2025-03-14", "2025-03-15"),
        ("this-week", "2025-03-10", "2025-03-17"),
        ("last-week", "2025-03-03", "2025-03-10"),
        ("this-month", "2025-03-01", "2025-04-01"),
        ("last-month", "2025-02-01", "2025-03-01"),
        ("this-year", "2025-01-01", "2026-01-01"),
        ("last-year", "2024-01-01", "2025-01-01"),
        ("2024", "2024-01-01", "2025-01-01"),
        ("2024-12", "2024-12-01", "2025-01-01"),
        ("2025-02-28", "2025-02-28", "2025-03-01"),
        ("2025-W01", "2024-12-30", "2025-01-06"),
    ],
)
def test_calendar_periods(period: str, start: str, end: str) -> None:
    zone = ZoneInfo("Europe/Lisbon")
    since, until = parse_period(period, NOW, zone)
    assert since == datetime.fromisoformat(start).replace(tzinfo=zone)
    assert until == datetime.fromisoformat(end).replace(tzinfo=zone)


@pytest.mark.parametrize("period", ["2025-13", "2025-W60", "someday", "2025-02-30"])
def test_bad_periods(period: str) -> None:
    with pytest.raises(InvalidQueryError):
        parse_period(period, NOW, UTC)


def test_last_month_in_january_wraps_the_year() -> None:
    since, until = parse_period("last-month", datetime(2025, 1, 5, tzinfo=UTC), UTC)
    assert (since.year, since.month, until.month) == (2024, 12, 1)


def test_spans() -> None:
    assert parse_last("30m") == timedelta(minutes=30)
    assert parse_last("1w") == timedelta(weeks=1)
    for bad in ("0d", "7", "1y", ""):
        with pytest.raises(InvalidQueryError):
            parse_last(bad)


def _us(text: str) -> int:
    return to_us(datetime.fromisoformat(text))


def test_day_buckets_follow_daylight_saving_in_lisbon() -> None:
    zone = ZoneInfo("Europe/Lisbon")
    # Clocks went forward at 01:00 UTC on 2025-03-30: that day is 23 hours long.
    start_30 = bucket_start_us(_us("2025-03-30T12:00:00+00:00"), "day", zone)
    start_31 = bucket_start_us(_us("2025-03-30T23:30:00+00:00"), "day", zone)
    assert from_us(start_30) == datetime(2025, 3, 30, 0, tzinfo=UTC)
    assert from_us(start_31) == datetime(2025, 3, 30, 23, tzinfo=UTC)
    assert start_31 - start_30 == 23 * HOUR_US
    # And back at 01:00 UTC on 2025-10-26: 25 hours.
    day = bucket_start_us(_us("2025-10-26T12:00:00+00:00"), "day", zone)
    following = bucket_start_us(_us("2025-10-27T01:00:00+00:00"), "day", zone)
    assert following - day == 25 * HOUR_US


def test_hour_week_and_month_buckets() -> None:
    zone = ZoneInfo("America/New_York")
    t = _us("2025-11-02T05:30:00+00:00")  # 01:30 EDT, the first of two 01:30s
    again = _us("2025-11-02T06:30:00+00:00")  # 01:30 EST
    assert bucket_start_us(t, "hour", zone) != bucket_start_us(again, "hour", zone)
    week = from_us(bucket_start_us(t, "week", zone), zone)
    month = from_us(bucket_start_us(t, "month", zone), zone)
    assert week.isoformat() == "2025-10-27T00:00:00-04:00"
    assert month.isoformat() == "2025-11-01T00:00:00-04:00"
    with pytest.raises(InvalidQueryError):
        bucket_start_us(t, "decade", zone)


def test_slot_sizes() -> None:
    year = (_us("2025-01-01T00:00:00+00:00"), _us("2026-01-01T00:00:00+00:00"))
    assert slot_size_us(UTC, *year) == HOUR_US
    assert slot_size_us(ZoneInfo("America/New_York"), *year) == HOUR_US
    assert slot_size_us(ZoneInfo("Asia/Kolkata"), *year) == HOUR_US // 2
    assert slot_size_us(ZoneInfo("Asia/Kathmandu"), *year) == HOUR_US // 4
    assert slot_size_us(ZoneInfo("Australia/Adelaide"), *year) == HOUR_US // 2


def test_grains_and_keys() -> None:
    assert grain_for(set()) == 1
    assert grain_for({"response_model", "api_key_fingerprint"}) == 1
    assert grain_for({"tenant", "feature", "model"}) == 2
    assert grain_for({"user"}) == grain_for({"tenant", "user"}) == 4
    assert grain_for({"user", "model"}) == 3
    assert grain_for({"tag:env"}) is None
    # Per UTC day the finest grain is not kept; a tenant's users are.
    assert grain_for({"tenant", "feature", "model"}, DAY_US) == 2
    assert grain_for({"user"}, DAY_US) == 4
    assert grain_for({"user", "feature"}, DAY_US) is None


def test_utc_days_only_where_the_zone_is_at_utc_all_along() -> None:
    winter = (_us("2025-01-01T00:00:00+00:00"), _us("2025-03-01T00:00:00+00:00"))
    year = (_us("2025-01-01T00:00:00+00:00"), _us("2026-01-01T00:00:00+00:00"))
    assert utc_days(UTC, *year)
    assert utc_days(ZoneInfo("Etc/UTC"), *year)
    assert utc_days(ZoneInfo("Europe/London"), *winter)
    assert not utc_days(ZoneInfo("Europe/London"), *year)  # summer time from March 30
    assert not utc_days(ZoneInfo("Asia/Tokyo"), *winter)
    assert not utc_days(ZoneInfo("America/New_York"), *winter)
    # Injective: values that would collide under naive joining do not.
    assert dims_key(["a:", "b"]) != dims_key(["a", ":b"])
    assert dims_key([None]) != dims_key(["~"])


def test_percentile_interpolates_like_percentile_cont() -> None:
    assert percentile([5.0], 0.99) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.95) == pytest.approx(4.8)
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0


def test_metrics_without_data_are_none_not_zero() -> None:
    state = State()
    metrics = derive_metrics(state, METRICS, from_us)
    assert metrics["calls"] == 0
    assert metrics["cost"] is None
    assert metrics["error_rate"] is None
    assert metrics["latency_p95"] is None
    assert metrics["first_seen"] is None


def test_cost_is_none_when_every_call_is_unpriced() -> None:
    state = State.from_row([2, 2, 0, 2, *[0] * 13], Decimal(0), 0, 0, 1, 2)
    assert derive_metrics(state, ["cost", "cost_per_call", "success_rate"], from_us) == {
        "cost": None,
        "cost_per_call": None,
        "success_rate": 1.0,
    }


def test_formula_escaping() -> None:
    for dangerous in ("=1+1", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert escape_formula(dangerous) == "'" + dangerous
    assert escape_formula("gpt-4o") == "gpt-4o"
    # A line break: the cell and each line inside that starts like a formula.
    assert escape_formula("ok\r@SUM(A1)") == "'ok\r'@SUM(A1)"
    assert escape_formula("=1\n+2\r\n-3") == "'=1\n'+2\r\n'-3"
    assert escape_formula("two\nlines") == "'two\nlines"


def test_forecast_projects_the_run_rate_to_month_end() -> None:
    f = project_month(
        Decimal("30"),
        Decimal("14"),
        7,
        datetime(2025, 2, 14, 12, tzinfo=UTC),
        datetime(2025, 3, 1, tzinfo=UTC),
        month="2025-02",
    )
    assert f.run_rate_per_day == Decimal("2")
    assert f.remaining_days == Decimal("14.5")
    assert f.projected == Decimal("59")
    assert f.to_dict()["projected"] == "59.000000"
    with pytest.raises(InvalidQueryError):
        project_month(Decimal(0), Decimal(0), 0, NOW, NOW, month="x")
