"""The data of each dashboard page, read through the one query model.

Each function takes the service, the signed-in key's principal and ``now``,
and returns what its page shows.  Every read goes through the functions the
API's routes use (:func:`~llmledger.server.routers.reports.run_report`,
:func:`~llmledger.server.routers.events.page_of_events`,
:func:`~llmledger.server.routers.events.visible_event`), so a key's scope
applies here exactly as there; there is no SQL in this module.
``bench/bench_dashboard.py`` times these functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from llmledger.core.errors import LedgerError
from llmledger.core.events import UsageEvent
from llmledger.query import Query, Report, build_query, project_month
from llmledger.query.periods import month_bounds, parse_period
from llmledger.query.spec import COLUMN_DIMENSIONS, zone
from llmledger.server.auth import Principal
from llmledger.server.routers.events import page_of_events, visible_event
from llmledger.server.routers.reports import run_report
from llmledger.server.state import Service

__all__ = [
    "CALL_FILTERS",
    "PERIODS",
    "STACKS",
    "CallFilters",
    "call_detail",
    "calls_page",
    "entity",
    "export_events",
    "keys_page",
    "new_calls",
    "overview",
    "prices_page",
]

#: The overview's periods: (label, this period, the previous one).
PERIODS: tuple[tuple[str, str, str], ...] = (
    ("Today", "today", "yesterday"),
    ("This week", "this-week", "last-week"),
    ("This month", "this-month", "last-month"),
)
#: What the overview's trend chart may be stacked by.
STACKS: tuple[str, ...] = ("provider", "model", "feature")
#: Dimensions the calls page filters on, one field each.
CALL_FILTERS: tuple[str, ...] = COLUMN_DIMENSIONS
#: Most calls an export holds.
EXPORT_LIMIT = 100_000
_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")
_TOPS = ("feature", "user", "model", "tenant")
#: Queries of one page answered at once.
_PARALLEL = 6


def _cost(report: Report) -> Decimal:
    found: Decimal | None = report.total.get("cost")
    return found or Decimal(0)


def overview(
    service: Service,
    principal: Principal,
    now: datetime,
    *,
    tz: str = "UTC",
    currency: str | None = None,
    stack: str = "provider",
    days: int = 30,
) -> dict[str, Any]:
    """Spend per period against the previous one, the month-end forecast, a daily
    trend stacked by ``stack``, the top groups and the health of the last 24 hours.

    Each period is compared with the same stretch of the previous one (today
    until now against yesterday until the same hour).
    """
    local = zone(tz)
    base = Query(tz=tz, currency=currency or service.settings.currency, metrics=("cost", "calls"))
    month_metrics = ("cost", "calls", "errors", "error_rate", "unpriced_calls", "incomplete_calls")
    queries: dict[str, Query] = {}
    starts = {}
    for _, current, previous in PERIODS:
        start, _ = parse_period(current, now, local)
        before, before_end = parse_period(previous, now, local)
        starts[current] = start
        metrics = month_metrics if current == "this-month" else base.metrics
        queries[current] = replace(base, since=start, until=now, metrics=metrics)
        queries[previous] = replace(
            base, since=before, until=min(before_end, before + (now - start))
        )
    basis_days = 7
    queries["basis"] = replace(base, since=now - timedelta(days=basis_days), until=now)
    first_day = (now.astimezone(local) - timedelta(days=days - 1)).date()
    since = build_query(now=now, since=first_day.isoformat(), tz=tz).since
    window = replace(base, since=since, until=now)
    if stack not in STACKS:
        stack = "provider"
    queries["trend"] = replace(window, by=(stack,), every="day", limit=8)
    tops = [d for d in _TOPS if d != "tenant" or principal.tenant is None]
    for dimension in tops:
        queries[f"top:{dimension}"] = replace(window, by=(dimension,), limit=5)
    queries["health"] = replace(
        base,
        since=now - timedelta(hours=24),
        until=now,
        metrics=("calls", "errors", "error_rate", "latency_p50", "latency_p95"),
    )
    found = _run_all(service, principal, queries)
    periods = []
    for label, current, previous in PERIODS:
        this, that = found[current], found[previous]
        spent, earlier = _cost(this), _cost(that)
        periods.append(
            {
                "label": label,
                "cost": spent,
                "calls": this.total["calls"],
                "previous": earlier,
                "change": None if not earlier else float((spent - earlier) / earlier),
            }
        )
    month_start, month_end = month_bounds(now, local)
    in_zone = month_start.astimezone(local)
    forecast = project_month(
        _cost(found["this-month"]),
        _cost(found["basis"]),
        basis_days,
        now,
        month_end,
        month=f"{in_zone.year:04d}-{in_zone.month:02d}",
        currency=base.currency,
    )
    trend = found["trend"]
    health = found["health"].total
    month_total = found["this-month"]
    return {
        "currency": base.currency,
        "tz": tz,
        "periods": periods,
        "forecast": forecast,
        "month": month_total.total,
        "stack": stack,
        "trend": _series(trend, stack, "cost"),
        "days": days,
        "tops": {d: found[f"top:{d}"].rows for d in tops},
        "health": health,
    }


def _run_all(
    service: Service, principal: Principal, queries: Mapping[str, Query]
) -> dict[str, Report]:
    """Answer several queries (a page's worth): side by side, each on a connection of its
    own, on a database server; one after the other on SQLite, whose in-memory ledgers
    share one connection and whose local reads gain little from threads."""
    if service.store.dialect == "sqlite":
        return {name: run_report(service, principal, query) for name, query in queries.items()}
    with ThreadPoolExecutor(
        max_workers=min(_PARALLEL, service.settings.report_slots, len(queries))
    ) as pool:
        futures = {
            name: pool.submit(run_report, service, principal, query)
            for name, query in queries.items()
        }
        return {name: future.result() for name, future in futures.items()}


def _series(report: Report, dimension: str, metric: str) -> dict[str, Any]:
    """A report bucketed in time as chart series: one per group, aligned on the buckets."""
    every = report.query.every
    assert every is not None
    buckets: list[str] = []
    values: dict[str, dict[str, float]] = {}
    for row in report.rows:
        when = row[every].date().isoformat() if every != "hour" else row[every].isoformat()
        if when not in buckets:
            buckets.append(when)
        name = row.get(dimension)
        label = "(none)" if name is None else str(name)
        amount = row.get(metric)
        values.setdefault(label, {})[when] = float(amount or 0)
    buckets.sort()
    return {
        "x": buckets,
        "series": [
            {"name": name, "y": [points.get(b, 0.0) for b in buckets]}
            for name, points in values.items()
        ],
    }


@dataclass(frozen=True, slots=True)
class CallFilters:
    """What the calls page is asked to show: its URL's parameters.

    Attributes:
        equals: Dimension -> value(s) (``a,b``; ``(none)`` for "not set").
        last: A span ending now (``24h``), unless ``since``/``until`` are given.
        since: Start (ISO 8601, in ``tz`` without offset).
        until: End, exclusive.
        tz: Time zone of the times shown and given.
        search: An event id, or ``KEY=VALUE`` (a dimension, else a tag).
    """

    equals: Mapping[str, str] = field(default_factory=dict)
    last: str | None = "7d"
    since: str | None = None
    until: str | None = None
    tz: str = "UTC"
    search: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> CallFilters:
        """The filters of a URL's query parameters."""
        equals = {d: params[d].strip() for d in CALL_FILTERS if params.get(d, "").strip()}
        since = params.get("since") or None
        until = params.get("until") or None
        last = params.get("last", "7d")
        return cls(
            equals=equals,
            last=None if since or until or last in ("", "all") else last,
            since=since,
            until=until,
            tz=params.get("tz") or "UTC",
            search=params.get("q", "").strip(),
        )

    def params(self) -> dict[str, str]:
        """The filters as URL parameters (what links and exports carry)."""
        out = dict(self.equals)
        out["last"] = self.last or ("" if self.since or self.until else "all")
        for name, value in (("since", self.since), ("until", self.until), ("q", self.search)):
            if value:
                out[name] = value
        if self.tz != "UTC":
            out["tz"] = self.tz
        return out

    def search_id(self) -> str | None:
        """The event id searched for, when the search is one."""
        return self.search.upper() if _ULID.match(self.search) else None

    def query(self, now: datetime) -> Query:
        """The query of these filters (raises ``InvalidQueryError`` on a bad one)."""
        where = [f"{name}={value}" for name, value in self.equals.items()]
        if self.search and self.search_id() is None:
            name, sep, _ = self.search.partition("=")
            name = name.strip().removesuffix("!")
            if not sep or not name:
                from llmledger.query import InvalidQueryError

                raise InvalidQueryError(
                    f"search takes an event id or KEY=VALUE (a tag or a dimension), "
                    f"got {self.search!r}"
                )
            dimension = name if name in COLUMN_DIMENSIONS or name.startswith("tag:") else None
            where.append(self.search if dimension else f"tag:{self.search.strip()}")
        return build_query(
            now=now, since=self.since, until=self.until, last=self.last, tz=self.tz, where=where
        )


def calls_page(
    service: Service,
    principal: Principal,
    now: datetime,
    filters: CallFilters,
    *,
    cursor: str | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    """One page of the calls matching the filters, newest first, and the next page's cursor.

    A search for an event id shows that call alone (when the key may see it).
    """
    found = filters.search_id()
    if found is not None:
        try:
            return {"events": [visible_event(service, principal, found)], "next_cursor": None}
        except LookupError:
            return {"events": [], "next_cursor": None}
    events, next_cursor = page_of_events(service, principal, filters.query(now), limit, cursor)
    return {"events": events, "next_cursor": next_cursor}


def new_calls(
    service: Service,
    principal: Principal,
    now: datetime,
    filters: CallFilters,
    after: tuple[datetime, str],
    *,
    limit: int = 100,
) -> list[UsageEvent]:
    """Calls matching the filters that are newer than ``after`` (time, id), newest first."""
    query = filters.query(now)
    moment, last_id = after
    since = moment if query.since is None else max(query.since, moment)
    if query.until is not None and since >= query.until:
        return []
    events, _ = page_of_events(service, principal, replace(query, since=since), limit, cursor=None)
    return [e for e in events if (e.ts, e.id) > (moment, last_id)]


def export_events(
    service: Service, principal: Principal, now: datetime, filters: CallFilters
) -> Iterator[UsageEvent]:
    """Every call matching the filters, newest first, at most :data:`EXPORT_LIMIT`."""
    found = filters.search_id()
    if found is not None:
        yield from calls_page(service, principal, now, filters)["events"]
        return
    query = filters.query(now)
    cursor: str | None = None
    sent = 0
    while sent < EXPORT_LIMIT:
        events, cursor = page_of_events(
            service, principal, query, min(1000, EXPORT_LIMIT - sent), cursor
        )
        yield from events
        sent += len(events)
        if cursor is None:
            return


def call_detail(service: Service, principal: Principal, event_id: str) -> dict[str, Any]:
    """One call and the text kept with it (``NotFoundError`` outside the key's scope)."""
    event = visible_event(service, principal, event_id)
    return {"event": event, "content": service.store.get_content(event.id)}


def entity(
    service: Service,
    principal: Principal,
    now: datetime,
    tag: str,
    *,
    last: str | None = None,
    tz: str = "UTC",
    currency: str | None = None,
    limit: int = 500,
) -> dict[str, Any]:
    """What one tagged thing (``podcast_id=rec1``) cost, by feature, and its calls in time.

    Raises:
        InvalidQueryError: when ``tag`` is not ``KEY=VALUE``.
    """
    key, sep, value = tag.partition("=")
    if not sep or not key.strip() or not value.strip():
        from llmledger.query import InvalidQueryError

        raise InvalidQueryError(f"the entity is a tag, KEY=VALUE (podcast_id=rec1), got {tag!r}")
    query = build_query(
        now=now,
        last=last or None,
        tz=tz,
        where=[f"tag:{key.strip()}={value.strip()}"],
        by=["feature"],
        metrics=["calls", "errors", "input_tokens", "output_tokens", "cost", "first_seen"],
        currency=currency or service.settings.currency,
    )
    by_feature = run_report(service, principal, query)
    scoped = principal.scoped(replace(query, by=(), metrics=()))
    rates = service.exchange_rates if query.currency != "USD" else None
    with service.report_budget():
        calls = service.store.timeline(scoped, limit=limit, rates=rates)
    return {
        "tag": f"{key.strip()}={value.strip()}",
        "report": by_feature,
        "timeline": calls,
        "limit": limit,
    }


def prices_page(
    service: Service, principal: Principal, now: datetime, *, stale_days: int = 90
) -> dict[str, Any]:
    """Prices in force for the models seen in the last 30 days (with their source),
    stale price rows, the models with unpriced or incomplete calls, the service's rows."""
    seen = run_report(
        service,
        principal,
        Query(
            since=now - timedelta(days=30),
            until=now,
            by=("provider", "model"),
            metrics=("calls", "cost"),
            limit=200,
        ),
    ).rows
    pricer = service.pricer
    in_force = []
    for row in seen:
        try:
            price: Any = pricer.lookup(row["provider"], row["model"], now)
        except LedgerError as exc:
            price = str(exc)
        in_force.append({"provider": row["provider"], "model": row["model"], "price": price})
    gaps = run_report(
        service,
        principal,
        Query(
            by=("provider", "model"),
            metrics=("calls", "unpriced_calls", "incomplete_calls"),
            sort=(),
        ),
    ).rows
    before: date = now.date() - timedelta(days=stale_days)
    return {
        "in_force": in_force,
        "gaps": [r for r in gaps if r["unpriced_calls"] or r["incomplete_calls"]],
        "stale": pricer.stale(before),
        "stale_before": before,
        "rows": service.prices.prices(),
    }


def keys_page(service: Service) -> dict[str, Any]:
    """Every key, revoked ones too (admins only: the route checks)."""
    return {"keys": service.keys.list(include_revoked=True)}


def bucket_names(events: Sequence[UsageEvent]) -> list[str]:
    """The token buckets any of these calls has (for columns worth showing)."""
    from llmledger.core.usage import BUCKETS

    return [b for b in BUCKETS if any(getattr(e.usage, b) for e in events)]
