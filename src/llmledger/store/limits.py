"""Spending limits in the ledger database (migration 0011): the limits, their counters and
the reservations of calls in flight.

``limits`` holds one row per limit.  ``limit_usage`` counts, per limit and window,
the units settled (``used``).  ``limit_reservations`` holds what each call in
flight reserved, per limit, until it is settled or its ``expires_us`` passes (a
process killed mid-call never settles; its reservation stops counting at expiry).

Reserve and settle are atomic per limit: both first lock the rows of the limits
they touch, in id order (PostgreSQL ``SELECT … FOR UPDATE``; SQLite's write
transactions begin with ``BEGIN IMMEDIATE``, which serialises them all), then
read and change the counters in the same transaction.  The decision itself is the
pure :func:`llmledger.core.limits.decide`.

Example:
    >>> from datetime import UTC, datetime
    >>> from decimal import Decimal
    >>> from llmledger.core.limits import Amounts, Limit, Subject
    >>> from llmledger.store import open_store
    >>> store = open_store("sqlite://")
    >>> store.add_limit(Limit("user", "ana", "requests", Decimal(1), "day", id="L1"))
    >>> now = datetime(2025, 1, 1, 12, tzinfo=UTC)
    >>> [d.outcome for d in store.reserve_limits(Subject(user="ana"), Amounts(), now=now,
    ...                                          ttl=60, reservation="R1")]
    ['ok']
    >>> [d.outcome for d in store.reserve_limits(Subject(user="ana"), Amounts(), now=now,
    ...                                          ttl=60, reservation="R2")]
    ['block']
    >>> store.settle_limits("R1", Amounts(), now=now)
    1
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmledger.core.errors import InvalidLimitError
from llmledger.core.limits import Amounts, Decision, Limit, Subject, decide, window_start
from llmledger.store.codec import from_micros, to_micros
from llmledger.store.errors import RowExistsError, database_errors
from llmledger.store.schema import metadata

__all__ = ["STALE_RESERVATION_US", "LimitRows", "limit_reservations", "limit_usage", "limits"]

#: Expired reservations are deleted this long after they expire (a settle arriving
#: later than that finds nothing to settle and counts nothing).
STALE_RESERVATION_US = 24 * 3600 * 1_000_000

limits = sa.Table(
    "limits",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("metric", sa.Text, nullable=False),
    sa.Column("amount", sa.Text, nullable=False),
    sa.Column("units", sa.BigInteger, nullable=False),
    sa.Column("period", sa.Text, nullable=False),
    sa.Column("mode", sa.Text, nullable=False),
    sa.Column("tenant", sa.Text),
    sa.Column("name", sa.Text),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Index("ix_limits_scope_value", "scope", "value"),
)

limit_usage = sa.Table(
    "limit_usage",
    metadata,
    sa.Column("limit_id", sa.Text, primary_key=True),
    sa.Column("window_us", sa.BigInteger, primary_key=True),
    sa.Column("used", sa.BigInteger, nullable=False),
)

limit_reservations = sa.Table(
    "limit_reservations",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("limit_id", sa.Text, primary_key=True),
    sa.Column("window_us", sa.BigInteger, nullable=False),
    sa.Column("units", sa.BigInteger, nullable=False),
    sa.Column("expires_us", sa.BigInteger, nullable=False),
    sa.Column("tenant", sa.Text),
    sa.Index("ix_limit_reservations_limit_id_window_us", "limit_id", "window_us"),
)


def _limit(m: Any) -> Limit:
    return Limit(
        scope=m["scope"],
        value=m["value"],
        metric=m["metric"],
        amount=Decimal(m["amount"]),
        period=m["period"],
        mode=m["mode"],
        tenant=m["tenant"],
        name=m["name"],
        id=m["id"],
        created=from_micros(int(m["created_us"])),
    )


class LimitRows:
    """The store's statements on limits (a part of :class:`~llmledger.store.SqlStore`)."""

    _sqlite: bool

    def _connect(self, *, write: bool = False) -> Connection:  # pragma: no cover - SqlStore's
        raise NotImplementedError

    # -- the limits ------------------------------------------------------------------

    def add_limit(self, limit: Limit) -> None:
        """Store a new limit (checked first).

        Raises:
            InvalidLimitError: on a malformed limit.
            RowExistsError: when a limit has this id already.

        Example:
            >>> from decimal import Decimal
            >>> from llmledger.store import open_store
            >>> open_store("sqlite://").add_limit(
            ...     Limit("tenant", "acme", "cost", Decimal("10"), "month"))
        """
        limit = limit.validate()
        created = limit.created or datetime.now(UTC)
        values = {
            "id": limit.id,
            "scope": limit.scope,
            "value": limit.value,
            "metric": limit.metric,
            "amount": format(limit.amount, "f"),
            "units": limit.units,
            "period": limit.period,
            "mode": limit.mode,
            "tenant": limit.tenant,
            "name": limit.name,
            "created_us": to_micros(created),
        }
        with database_errors("store the limit"), self._connect(write=True) as conn, conn.begin():
            try:
                conn.execute(limits.insert().values(**values))
            except sa.exc.IntegrityError:
                raise RowExistsError(f"a limit {limit.id} exists", existing=limit.id) from None

    def get_limit(self, limit_id: str) -> Limit | None:
        """The limit with this id, or None.

        Example:
            >>> from llmledger.store import open_store
            >>> open_store("sqlite://").get_limit("L1") is None
            True
        """
        with database_errors("read the limit"), self._connect() as conn:
            row = conn.execute(sa.select(limits).where(limits.c.id == limit_id)).first()
        return None if row is None else _limit(row._mapping)

    def list_limits(self, *, tenant: str | None = None) -> list[Limit]:
        """Every limit (only those of ``tenant`` when given), oldest first.

        Example:
            >>> from llmledger.store import open_store
            >>> open_store("sqlite://").list_limits(tenant="acme")
            []
        """
        query = sa.select(limits).order_by(limits.c.created_us, limits.c.id)
        if tenant is not None:
            query = query.where(limits.c.tenant == tenant)
        with database_errors("list the limits"), self._connect() as conn:
            return [_limit(row._mapping) for row in conn.execute(query)]

    def remove_limit(self, limit_id: str) -> Limit | None:
        """Delete a limit with its counters and reservations; the limit, or None when missing.

        Example:
            >>> from llmledger.store import open_store
            >>> open_store("sqlite://").remove_limit("L1") is None
            True
        """
        with database_errors("remove the limit"), self._connect(write=True) as conn, conn.begin():
            row = conn.execute(
                sa.select(limits).where(limits.c.id == limit_id).with_for_update()
            ).first()
            if row is None:
                return None
            conn.execute(
                limit_reservations.delete().where(limit_reservations.c.limit_id == limit_id)
            )
            conn.execute(limit_usage.delete().where(limit_usage.c.limit_id == limit_id))
            conn.execute(limits.delete().where(limits.c.id == limit_id))
        return _limit(row._mapping)

    # -- reserve and settle ------------------------------------------------------------
    #
    # The guarded call's path: plain SQL on the driver's cursor inside the SQLAlchemy
    # connection's transaction (as the event writes do), so a check costs the database's
    # time rather than building and compiling expressions each call.

    def _cursor(self, conn: Connection) -> _Cursor:
        return _Cursor(conn.connection.driver_connection, sqlite=self._sqlite)

    def reserve_limits(
        self,
        subject: Subject,
        needed: Amounts,
        *,
        now: datetime,
        ttl: float,
        reservation: str | None,
    ) -> list[Decision]:
        """Decide a call against every limit it counts for, and reserve when none blocks.

        Args:
            subject: Who makes the call.
            needed: What the call is estimated to spend.
            now: The time of the call (aware).
            ttl: Seconds the reservation counts before it expires unsettled.
            reservation: The reservation's id; None only decides (nothing is reserved).

        Returns:
            One decision per matching limit, in limit id order (none: no limit applies).
            Nothing is reserved when one of them is ``block``.

        Example:
            >>> from datetime import UTC, datetime
            >>> from llmledger.store import open_store
            >>> open_store("sqlite://").reserve_limits(
            ...     Subject(user="ana"), Amounts(), now=datetime.now(UTC), ttl=60, reservation=None)
            []
        """
        now_us = to_micros(now)
        write = reservation is not None
        match, params = _matching_sql(subject)
        if match is None:
            return []
        lock = " FOR UPDATE" if write and not self._sqlite else ""
        with database_errors("check the limits"), self._connect(write=write) as conn:
            conn.begin()
            cursor = self._cursor(conn)
            rows = cursor.all(
                f"SELECT {_LIMIT_COLUMNS} FROM limits WHERE {match} ORDER BY id{lock}", params
            )
            found = [_limit(dict(zip(_LIMIT_FIELDS, row, strict=True))) for row in rows]
            if not found:
                conn.rollback()
                return []
            counts = _counts(cursor, found, now, now_us)
            decisions = []
            for limit in found:
                window, used, reserved = counts[limit.id]
                units = needed.get(limit.metric)
                outcome = decide(limit, used=used, reserved=reserved, needed=units)
                decisions.append(Decision(limit, window, used, reserved, units, outcome))
            if write and all(d.outcome != "block" for d in decisions):
                taken = cursor.all(
                    "SELECT 1 FROM limit_reservations WHERE id = :id", {"id": reservation}
                )
                if taken:
                    conn.rollback()
                    raise InvalidLimitError(
                        f"reservation {reservation!r} is already in use: give each call its own"
                    )
                expires_us = now_us + int(ttl * 1_000_000)
                cursor.many(
                    "INSERT INTO limit_reservations "
                    "(id, limit_id, window_us, units, expires_us, tenant) "
                    "VALUES (:id, :limit_id, :window_us, :units, :expires_us, :tenant)",
                    [
                        {
                            "id": reservation,
                            "limit_id": d.limit.id,
                            "window_us": to_micros(d.window),
                            "units": d.needed,
                            "expires_us": expires_us,
                            "tenant": subject.tenant,
                        }
                        for d in decisions
                    ],
                )
            conn.commit()
        return decisions

    def settle_limits(
        self, reservation: str, spent: Amounts, *, now: datetime, tenant: str | None = None
    ) -> int:
        """Replace a reservation by what the call really spent (on error, its zero usage).

        Settling twice counts once: the reservation's rows are deleted as they are
        counted, so a second settle finds none.

        Args:
            reservation: The id given to :meth:`reserve_limits`.
            spent: What the call spent.
            now: Now (aware): reservations of the same limits expired a day before it
                are deleted; the counters keep the reservation's own window.
            tenant: Settle only a reservation made for this tenant (a tenant's key).

        Returns:
            How many limits the spend was counted against.

        Example:
            >>> from datetime import UTC, datetime
            >>> from llmledger.store import open_store
            >>> open_store("sqlite://").settle_limits("R1", Amounts(), now=datetime.now(UTC))
            0
        """
        owner = "" if tenant is None else " AND tenant = :tenant"
        params: dict[str, Any] = {"id": reservation, "tenant": tenant}
        lock = "" if self._sqlite else " FOR UPDATE"
        with database_errors("settle the limits"), self._connect(write=True) as conn:
            conn.begin()
            cursor = self._cursor(conn)
            limit_ids = [
                str(row[0])
                for row in cursor.all(
                    f"SELECT limit_id FROM limit_reservations WHERE id = :id{owner}", params
                )
            ]
            if not limit_ids:
                conn.rollback()
                return 0
            ids, id_params = _in("l", limit_ids)
            # The same locks, in the same order, as a reservation takes.
            metric = {
                str(limit_id): str(name)
                for limit_id, name in cursor.all(
                    f"SELECT id, metric FROM limits WHERE id IN ({ids}) ORDER BY id{lock}",
                    id_params,
                )
            }
            # Long-expired reservations of these limits go here, off the caller's path.
            cursor.run(
                f"DELETE FROM limit_reservations WHERE limit_id IN ({ids}) AND expires_us < :stale",
                {**id_params, "stale": to_micros(now) - STALE_RESERVATION_US},
            )
            settled = cursor.all(
                f"DELETE FROM limit_reservations WHERE id = :id{owner} AND limit_id IN ({ids}) "
                "RETURNING limit_id, window_us",
                {**params, **id_params},
            )
            rows = [
                {"limit_id": limit_id, "window_us": window_us, "used": spent.get(metric[limit_id])}
                for limit_id, window_us in settled
                if limit_id in metric
            ]
            if rows:
                cursor.many(
                    "INSERT INTO limit_usage (limit_id, window_us, used) "
                    "VALUES (:limit_id, :window_us, :used) ON CONFLICT (limit_id, window_us) "
                    "DO UPDATE SET used = limit_usage.used + excluded.used",
                    rows,
                )
            conn.commit()
        return len(rows)

    def limit_states(
        self, limit_list: Sequence[Limit], *, now: datetime
    ) -> dict[str, tuple[datetime, int, int]]:
        """Per limit id: the start of its current window, the units settled in it, and
        the units reserved by calls in flight (unexpired).

        Example:
            >>> from datetime import UTC, datetime
            >>> from llmledger.store import open_store
            >>> open_store("sqlite://").limit_states([], now=datetime.now(UTC))
            {}
        """
        if not limit_list:
            return {}
        with database_errors("read the limits' counters"), self._connect() as conn:
            conn.begin()
            counts = _counts(self._cursor(conn), limit_list, now, to_micros(now))
            conn.rollback()
        return counts


_LIMIT_FIELDS = (
    "id",
    "scope",
    "value",
    "metric",
    "amount",
    "period",
    "mode",
    "tenant",
    "name",
    "created_us",
)
_LIMIT_COLUMNS = ", ".join(_LIMIT_FIELDS)
_SCOPES = ("tenant", "user", "feature", "api_key")
_NAMED = re.compile(r":([a-z_][a-z0-9_]*)")


class _Cursor:
    """Plain SQL with ``:name`` parameters on the driver's connection (sqlite3 or psycopg)."""

    def __init__(self, driver: Any, *, sqlite: bool) -> None:
        self._cursor = driver.cursor()
        self._sqlite = sqlite

    def _sql(self, sql: str) -> str:
        return sql if self._sqlite else _pg_sql(sql)

    def run(self, sql: str, params: Mapping[str, Any]) -> None:
        self._cursor.execute(self._sql(sql), params)

    def all(self, sql: str, params: Mapping[str, Any]) -> list[Any]:
        self._cursor.execute(self._sql(sql), params)
        return list(self._cursor.fetchall())

    def many(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        self._cursor.executemany(self._sql(sql), rows)


@functools.lru_cache(maxsize=256)
def _pg_sql(sql: str) -> str:
    """``:name`` parameters as psycopg's ``%(name)s``."""
    return _NAMED.sub(r"%(\1)s", sql)


def _in(prefix: str, values: Sequence[str]) -> tuple[str, dict[str, str]]:
    names = [f"{prefix}{i}" for i in range(len(values))]
    return ", ".join(f":{n}" for n in names), dict(zip(names, values, strict=True))


def _matching_sql(subject: Subject) -> tuple[str | None, dict[str, Any]]:
    """The WHERE clause of the limits a subject's call counts for, or None when none can."""
    either = [
        f"(scope = '{scope}' AND value = :{scope})"
        for scope in _SCOPES
        if subject.value(scope) is not None
    ]
    if not either:
        return None, {}
    params: dict[str, Any] = {scope: subject.value(scope) for scope in _SCOPES}
    owner = "tenant IS NULL" if subject.tenant is None else "(tenant IS NULL OR tenant = :tenant)"
    return f"({' OR '.join(either)}) AND {owner}", params


def _counts(
    cursor: _Cursor, found: Iterable[Limit], now: datetime, now_us: int
) -> dict[str, tuple[datetime, int, int]]:
    windows = {limit.id: window_start(limit.period, now) for limit in found}
    ids, id_params = _in("l", list(windows))
    params: dict[str, Any] = {
        **id_params,
        "earliest": to_micros(min(windows.values())),
        "now": now_us,
    }
    # One round trip for both: what is settled (kind 0) and what is in flight (kind 1).
    found_counts: dict[tuple[int, str, int], int] = {
        (int(kind), str(limit_id), int(window)): int(total)
        for kind, limit_id, window, total in cursor.all(
            "SELECT 0, limit_id, window_us, used FROM limit_usage "
            f"WHERE limit_id IN ({ids}) AND window_us >= :earliest "
            "UNION ALL "
            "SELECT 1, limit_id, window_us, SUM(units) FROM limit_reservations "
            f"WHERE limit_id IN ({ids}) AND window_us >= :earliest AND expires_us > :now "
            "GROUP BY limit_id, window_us",
            params,
        )
    }
    out: dict[str, tuple[datetime, int, int]] = {}
    for limit_id, window in windows.items():
        key = (limit_id, to_micros(window))
        out[limit_id] = (
            window,
            found_counts.get((0, *key), 0),
            found_counts.get((1, *key), 0),
        )
    return out
