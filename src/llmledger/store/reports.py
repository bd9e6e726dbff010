"""Answering the query model from the database: reports, timelines and pages of events.

The plan (:func:`llmledger.query.plan.plan`) says which source answers each
stretch of a query's range; each piece is compiled
(:mod:`llmledger.store.compile`), run, and its rows folded by
:class:`llmledger.query.report.Folder`, whose groups become the
:class:`~llmledger.query.report.Report`.  :class:`~llmledger.store.SqlStore`
runs these functions on a connection of its own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmledger.core.events import UsageEvent
from llmledger.pricing.fx import ExchangeRates
from llmledger.query.periods import DAY_US, from_us, to_us
from llmledger.query.plan import Piece, SourceMode, grain_for, plan
from llmledger.query.report import Folder, Report, build_report, flat_query, merged
from llmledger.query.spec import PERCENTILE_METRICS, Query
from llmledger.store.codec import decode_event
from llmledger.store.compile import (
    TIMELINE_COLUMNS,
    compile_timeline,
    compile_values,
    prepared_piece,
    quantile_columns,
)
from llmledger.store.rollup_tables import state_values
from llmledger.store.rollups import rebuild_rollups
from llmledger.store.schema import events

__all__ = ["StoreReports", "read_event_page", "run_report", "run_timeline"]


def _data_bounds(conn: Connection) -> tuple[int, int] | None:
    row = conn.execute(sa.select(sa.func.min(events.c.ts_us), sa.func.max(events.c.ts_us))).one()
    return None if row[0] is None else (int(row[0]), int(row[1]) + 1)


def _execute(
    conn: Connection, query: Query, pieces: list[Piece], rates: ExchangeRates | None
) -> Folder:
    folder = Folder(query, rates)
    percentiles = [m for m in query.metrics if m in PERCENTILE_METRICS]
    # PostgreSQL gathers each group's values into arrays; SQLite's run in this
    # process anyway, and reading them row by row is what it does fastest.
    grouped = conn.dialect.name == "postgresql"
    n_dims = len(query.by)
    # Percentiles of a whole range (no groups, no buckets) are computed by PostgreSQL,
    # rather than every latency of the range sent over to be sorted here.
    in_database = (
        bool(percentiles)
        and conn.dialect.name == "postgresql"
        and not query.by
        and query.every is None
        and len(pieces) == 1
        and pieces[0].slot_us is None
    )
    for piece in pieces:
        statement, params = prepared_piece(piece, query.by, query.where, query.metrics)
        if in_database:
            # The one row of the range, with its percentiles as its last columns.
            statement = statement.add_columns(*quantile_columns(percentiles))
        rows: list[Any] = list(conn.execute(statement, params).all())
        if in_database:
            quantiles = rows[0][-len(percentiles) :]
            rows = [row[: -len(percentiles)] for row in rows]
        head = n_dims + (piece.slot_us is not None)
        folder.add_rows([[*r[:head], *state_values(r[head:])] for r in rows], piece.slot_us, n_dims)
        if in_database:
            folder.add_quantiles(percentiles, quantiles)
        elif percentiles:
            statement = compile_values(piece, query.by, query.where, grouped=grouped)
            values = conn.execute(statement).all()
            folder.add_values(values, piece.slot_us, n_dims, grouped=grouped)
    return folder


def run_report(
    conn: Connection,
    query: Query,
    *,
    rates: ExchangeRates | None = None,
    mode: SourceMode = "auto",
) -> Report:
    """Answer ``query`` on a connection (see :meth:`llmledger.store.SqlStore.report`).

    Example:
        >>> from llmledger.store import open_store
        >>> with open_store("sqlite://").engine.connect() as conn:
        ...     run_report(conn, Query(metrics=("calls",))).rows
        [{'calls': 0}]
    """
    needs_bounds = query.every is not None and (query.since is None or query.until is None)
    pieces = plan(query, _data_bounds(conn) if needs_bounds else None, mode)
    folder = _execute(conn, query, pieces, rates)
    total = None
    if "tag" in query.by:
        # A call with several tags is in several groups: its total counts it once.
        flat = flat_query(query)
        total = merged(_execute(conn, flat, plan(flat, None, mode), folder.rates).groups.values())
    return build_report(query, folder, pieces, total)


def run_timeline(
    conn: Connection,
    query: Query,
    *,
    limit: int | None = 1000,
    rates: ExchangeRates | None = None,
) -> list[dict[str, Any]]:
    """The calls of a query's range and filters, oldest first (see ``SqlStore.timeline``).

    Example:
        >>> from llmledger.store import open_store
        >>> with open_store("sqlite://").engine.connect() as conn:
        ...     run_timeline(conn, Query())
        []
    """
    start = None if query.since is None else to_us(query.since)
    end = None if query.until is None else to_us(query.until)
    statement = compile_timeline(Piece(None, start, end, None), query.where, limit)
    result = conn.execute(statement).all()
    folder = Folder(query, rates)
    out = []
    for row in result:
        item = dict(zip(TIMELINE_COLUMNS, row, strict=True))
        ts_us = int(item.pop("ts_us"))
        nanos = item.pop("cost_nanos")
        day = ts_us - ts_us % DAY_US
        item = {
            "ts": from_us(ts_us, query.zone),
            **item,
            "cost": None if nanos is None else folder.cost(nanos, day),
        }
        out.append(item)
    return out


#: Shortest range (µs) whose page is first narrowed by the rollups' counts.
_NARROW_US = 2 * DAY_US


def _page_statement(
    piece: Piece, query: Query, limit: int, before: tuple[int, str] | None, lock: bool
) -> sa.Select[Any]:
    statement = (
        compile_timeline(piece, query.where, None)
        .with_only_columns(*events.c)
        .order_by(None)
        .order_by(events.c.ts_us.desc(), events.c.id.desc())
        .limit(limit)
    )
    if before is not None:
        micros, event_id = before
        statement = statement.where(
            sa.or_(
                events.c.ts_us < micros,
                sa.and_(events.c.ts_us == micros, events.c.id < event_id),
            )
        )
    if lock:
        statement = statement.with_for_update(of=events)
    return statement


def _newest_start(
    conn: Connection, query: Query, start: int | None, end: int, limit: int
) -> tuple[int, bool]:
    """Where the newest ``limit`` calls of a query before ``end`` begin, by the rollups' counts.

    The start (µs) of the newest UTC day from which on at least ``limit`` calls
    match, of the oldest day with a match when fewer do, or ``end`` when none
    does; and whether at least ``limit`` calls match.  The counts come from the
    daily and hourly rollups (and the events of the partial hours at the edges),
    so a filter that matches few calls in a long range is not answered by
    reading every call of the range.
    """
    counts = Query(
        since=None if start is None else from_us(start, query.zone),
        until=from_us(end, query.zone),
        where=query.where,
        every="day",
        metrics=("calls",),
    )
    found, newest = 0, end
    for row in sorted(run_report(conn, counts).rows, key=lambda r: r["day"], reverse=True):
        if row["calls"]:
            found += row["calls"]
            newest = to_us(row["day"])
            if found >= limit:
                break
    return (newest if start is None else max(newest, start)), found >= limit


def read_event_page(
    conn: Connection,
    query: Query,
    *,
    limit: int,
    before: tuple[int, str] | None = None,
    lock: bool = False,
) -> list[UsageEvent]:
    """The newest events of a query's range and filters (see ``SqlStore.event_page``).

    With ``lock`` the rows read are locked for the caller's transaction
    (``SELECT … FOR UPDATE``, PostgreSQL).  A filtered page over a range of days
    first asks the rollups how many calls match per day, then reads the events
    of the newest days that hold the page only (none when nothing matches); if
    the events read are fewer than the counts said (calls deleted in between),
    the older days are read too.

    Example:
        >>> from llmledger.store import open_store
        >>> with open_store("sqlite://").engine.connect() as conn:
        ...     read_event_page(conn, Query(), limit=10)
        []
    """
    start = None if query.since is None else to_us(query.since)
    end = None if query.until is None else to_us(query.until)
    upper = end if before is None else before[0] if end is None else min(end, before[0])
    if not query.where or lock or grain_for(query.dimensions_used()) is None:
        piece = Piece(None, start, end, None)
        return [
            decode_event(r)
            for r in conn.execute(_page_statement(piece, query, limit, before, lock))
        ]
    if upper is None:
        bounds = _data_bounds(conn)
        if bounds is None:
            return []
        upper = bounds[1]
    newest, enough = start, False
    if start is None or upper - start > _NARROW_US:
        newest, enough = _newest_start(conn, query, start, upper, limit)
    piece = Piece(None, newest, end, None)
    page = [
        decode_event(r) for r in conn.execute(_page_statement(piece, query, limit, before, lock))
    ]
    if len(page) < limit and enough and newest != start:
        older = Piece(None, start, newest, None)
        statement = _page_statement(older, query, limit - len(page), before, lock)
        page += [decode_event(r) for r in conn.execute(statement)]
    return page


class StoreReports:
    """The report operations of :class:`~llmledger.store.SqlStore` (one of its bases).

    Each runs on a connection of the store's own; the store provides ``_connect``.
    """

    def _connect(self, *, write: bool = False) -> Connection:
        raise NotImplementedError  # pragma: no cover - SqlStore provides it

    def report(
        self,
        query: Query,
        *,
        rates: ExchangeRates | None = None,
        mode: SourceMode = "auto",
    ) -> Report:
        """Answer a query of the report model, from rollups where they answer exactly.

        Args:
            query: The query.
            rates: Exchange rates; the built-in ones when None and
                ``query.currency`` is not USD.
            mode: ``"auto"`` (rollups where they answer exactly), ``"hourly"``
                (the same without the daily rollups), ``"events"`` (raw
                events only) or ``"rollups"`` (fail when rollups cannot answer).

        Raises:
            InvalidQueryError: with ``mode="rollups"`` for a query rollups cannot answer.
            CurrencyError: when no rate is known for a day in the range.

        Example:
            >>> from llmledger.store import open_store
            >>> store = open_store("sqlite://")
            >>> report = store.report(Query(by=("model",)))
            >>> report.to_dict()["total"]["calls"], report.rows
            (0, [])
            >>> store.report(Query(metrics=("calls",))).rows
            [{'calls': 0}]
        """
        with self._connect() as conn:
            return run_report(conn, query, rates=rates, mode=mode)

    def timeline(
        self, query: Query, *, limit: int | None = 1000, rates: ExchangeRates | None = None
    ) -> list[dict[str, Any]]:
        """The calls of a query's range and filters, oldest first.

        Each dict has ``ts`` (in the query's zone), the columns of
        ``llmledger.store.compile.TIMELINE_COLUMNS`` and ``cost`` in the query's
        currency (None when unpriced).

        Example:
            >>> from llmledger.store import open_store
            >>> store = open_store("sqlite://")
            >>> store.timeline(Query())
            []
        """
        with self._connect() as conn:
            return run_timeline(conn, query, limit=limit, rates=rates)

    def event_page(
        self, query: Query, *, limit: int, before: tuple[int, str] | None = None
    ) -> list[UsageEvent]:
        """The newest events of a query's range and filters, newest first.

        Args:
            query: Its range and filters apply.
            limit: Most events returned.
            before: ``(ts_us, id)`` of the last event of the previous page: only
                events strictly older (by time, then id) are returned.

        Example:
            >>> from llmledger.store import open_store
            >>> store = open_store("sqlite://")
            >>> store.event_page(Query(), limit=10)
            []
        """
        with self._connect() as conn:
            return read_event_page(conn, query, limit=limit, before=before)

    def rebuild_rollups(self, since: datetime | None = None, until: datetime | None = None) -> int:
        """Recompute the rollups of whole hours and days in a range from the raw events.

        See :func:`llmledger.store.rollups.rebuild_rollups`.

        Returns:
            How many rollup rows (hourly and daily) the widened range now has.

        Example:
            >>> from llmledger.store import open_store
            >>> store = open_store("sqlite://")
            >>> store.rebuild_rollups()
            0
        """
        with self._connect(write=True) as conn, conn.begin():
            return rebuild_rollups(conn, since, until)
