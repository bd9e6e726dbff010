"""Spending limits in the ledger database (migration 0011): the limits, their counters and
the reservations of calls in flight.

``limits`` holds one row per limit.  ``limit_usage`` counts, per limit and window,
the units settled (``used``).  ``limit_reservations`` holds what each call in
flight reserved, per limit, until it is settled or its ``expires_us`` passes (a
process killed mid-call never settles; its reservation stops counting at expiry).

Reserve is atomic per limit.  On SQLite its write transaction begins with
``BEGIN IMMEDIATE``, which serialises every writer, then reads and changes the
counters.  On PostgreSQL it is one round trip: two statements sent in one
pipeline, which runs them as one transaction.  The first locks the rows of the
matching limits in id order (``SELECT … FOR UPDATE``); the second, whose snapshot
is taken once the locks are held, reads the counters and inserts the reservation
only when no ``block`` limit refuses it.  (One statement alone cannot do it: its
snapshot would predate the lock it waited for, and miss the reservation committed
by the holder.)  Settle is one statement on PostgreSQL too: it moves the
reservation into the counters, which never lets a reservation pass its limit, so
it needs no lock.  The decision itself is the pure
:func:`llmledger.core.limits.decide`, mirrored in the reservation's SQL condition.

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from llmledger.core.errors import InvalidLimitError, StoreError, StoreUnavailableError
from llmledger.core.limits import PERIODS, Amounts, Decision, Limit, Subject, decide, window_start
from llmledger.store.codec import from_micros, to_micros
from llmledger.store.errors import RowExistsError, database_errors, is_transient, one_line
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

    def _limit_engine(self) -> Engine:  # pragma: no cover - SqlStore's
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
        if not self._sqlite:
            return self._reserve_postgres(match, params, needed, now, ttl, reservation)
        with database_errors("check the limits"), self._connect(write=write) as conn:
            conn.begin()
            cursor = self._cursor(conn)
            rows = cursor.all(
                f"SELECT {_LIMIT_COLUMNS} FROM limits WHERE {match} ORDER BY id", params
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
        stale = to_micros(now) - STALE_RESERVATION_US
        if not self._sqlite:
            values = {**params, **_amounts("", spent), "stale": stale}
            sql = _PG_SETTLE.format(owner=owner)
            return int(self._autocommit("settle the limits", lambda d: _one(d, sql, values)))
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
            metric = {
                str(limit_id): str(name)
                for limit_id, name in cursor.all(
                    f"SELECT id, metric FROM limits WHERE id IN ({ids})", id_params
                )
            }
            # Long-expired reservations of these limits go here, off the caller's path.
            cursor.run(
                f"DELETE FROM limit_reservations WHERE limit_id IN ({ids}) AND expires_us < :stale",
                {**id_params, "stale": stale},
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

    def _reserve_postgres(
        self,
        match: str,
        params: dict[str, Any],
        needed: Amounts,
        now: datetime,
        ttl: float,
        reservation: str | None,
    ) -> list[Decision]:
        now_us = to_micros(now)
        values: dict[str, Any] = {
            **params,
            **{f"w_{period}": to_micros(window_start(period, now)) for period in PERIODS},
            **_amounts("n_", needed),
            "now": now_us,
            "reservation": reservation,
            "expires": now_us + int(ttl * 1_000_000),
        }
        counted = _PG_COUNTED.format(match=match)
        lock = _PG_LOCK.format(match=match)

        def run(driver: Any) -> list[Any]:
            with driver.cursor() as cursor:
                if reservation is None:
                    cursor.execute(_pg_sql(counted + _PG_DECIDE_ONLY), values)
                    return list(cursor.fetchall())
                # Two statements in one pipeline (one round trip): an autocommit
                # connection runs them as one implicit transaction, and the second's
                # snapshot follows the first's locks.
                with driver.pipeline(), driver.cursor() as locking:
                    locking.execute(_pg_sql(lock), values)
                    cursor.execute(_pg_sql(counted + _PG_RESERVE), values)
                return list(cursor.fetchall())

        rows = self._autocommit("check the limits", run)
        decisions = []
        for row in rows:
            limit = _limit(dict(zip(_LIMIT_FIELDS, row, strict=False)))
            window_us, used, reserved, taken = (int(v) for v in row[len(_LIMIT_FIELDS) :])
            if taken:
                raise InvalidLimitError(
                    f"reservation {reservation!r} is already in use: give each call its own"
                )
            units = needed.get(limit.metric)
            outcome = decide(limit, used=used, reserved=reserved, needed=units)
            decisions.append(
                Decision(limit, from_micros(window_us), used, reserved, units, outcome)
            )
        return decisions

    def _autocommit(self, doing: str, work: Callable[[Any], _T]) -> _T:
        """``work`` on a PostgreSQL driver connection in autocommit (each message its
        own transaction: no BEGIN and COMMIT round trips), the driver's errors as the
        store's.  A pooled connection found broken is replaced and the work tried once
        more (the pool does not ping: the work's statement is the ping)."""
        engine = self._limit_engine()
        for attempt in (1, 2):
            with database_errors(doing):
                fairy = engine.raw_connection()
            driver: Any = fairy.driver_connection
            try:
                driver.autocommit = True
                try:
                    return work(driver)
                finally:
                    if not driver.closed:
                        driver.autocommit = False
            except engine.dialect.loaded_dbapi.Error as exc:
                broken = bool(driver.closed or driver.broken)
                if broken:
                    fairy.invalidate()
                    if attempt == 1:
                        continue
                error = StoreUnavailableError if broken or is_transient(exc) else StoreError
                raise error(f"cannot {doing}: {one_line(exc)}") from exc
            finally:
                fairy.close()
        raise AssertionError("unreachable")  # pragma: no cover

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
_T = TypeVar("_T")

# PostgreSQL's reserve: lock the matching limits (in id order, so two reservations
# never deadlock), then, in a second statement, count and reserve.
_PG_LOCK = "SELECT id FROM limits WHERE {match} ORDER BY id FOR UPDATE"
_PG_COUNTED = f"""WITH found AS (
  SELECT {_LIMIT_COLUMNS}, units,
    CASE period WHEN 'hour' THEN :w_hour WHEN 'day' THEN :w_day WHEN 'week' THEN :w_week
      ELSE :w_month END AS window_us,
    CASE metric WHEN 'cost' THEN :n_cost WHEN 'tokens' THEN :n_tokens
      ELSE :n_requests END AS needed
  FROM limits WHERE {{match}}
), counted AS (
  SELECT found.*,
    COALESCE((SELECT used FROM limit_usage AS u
              WHERE u.limit_id = found.id AND u.window_us = found.window_us), 0) AS used,
    CAST(COALESCE((SELECT SUM(r.units) FROM limit_reservations AS r
                   WHERE r.limit_id = found.id AND r.window_us = found.window_us
                     AND r.expires_us > :now), 0) AS BIGINT) AS reserved
  FROM found
)"""
_PG_DECIDE_ONLY = f"""
SELECT {_LIMIT_COLUMNS}, window_us, used, reserved, 0 FROM counted ORDER BY id"""
# The condition mirrors llmledger.core.limits.decide: a block limit refuses when
# used + reserved + max(needed, 1) passes its units.
_PG_RESERVE = f""", taken AS (
  SELECT EXISTS (SELECT 1 FROM limit_reservations WHERE id = :reservation) AS taken
), inserted AS (
  INSERT INTO limit_reservations (id, limit_id, window_us, units, expires_us, tenant)
  SELECT :reservation, id, window_us, needed, :expires, :tenant FROM counted
  WHERE NOT (SELECT taken FROM taken) AND NOT EXISTS (
    SELECT 1 FROM counted
    WHERE mode = 'block' AND used + reserved + GREATEST(needed, 1) > units)
)
SELECT {_LIMIT_COLUMNS}, window_us, used, reserved, CAST((SELECT taken FROM taken) AS INT)
FROM counted ORDER BY id"""
# PostgreSQL's settle, one statement: the reservation's rows leave as their spend
# enters the counters.  Long-expired reservations of the same limits go too, skipping
# rows another settle holds (two settles never wait for each other's leftovers).
_PG_SETTLE = """WITH settled AS (
  DELETE FROM limit_reservations WHERE id = :id{owner} AND expires_us >= :stale
  RETURNING limit_id, window_us
), stale AS (
  DELETE FROM limit_reservations WHERE ctid IN (
    SELECT ctid FROM limit_reservations
    WHERE limit_id IN (SELECT limit_id FROM settled) AND expires_us < :stale
    FOR UPDATE SKIP LOCKED)
), counted AS (
  INSERT INTO limit_usage (limit_id, window_us, used)
  SELECT s.limit_id, s.window_us,
    CASE l.metric WHEN 'cost' THEN :cost WHEN 'tokens' THEN :tokens ELSE :requests END
  FROM settled AS s JOIN limits AS l ON l.id = s.limit_id ORDER BY s.limit_id
  ON CONFLICT (limit_id, window_us) DO UPDATE SET used = limit_usage.used + excluded.used
  RETURNING 1
)
SELECT count(*) FROM counted"""
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


def _amounts(prefix: str, amounts: Amounts) -> dict[str, int]:
    return {
        f"{prefix}cost": amounts.cost,
        f"{prefix}tokens": amounts.tokens,
        f"{prefix}requests": amounts.requests,
    }


def _one(driver: Any, sql: str, params: Mapping[str, Any]) -> Any:
    """The one value a statement answers (PostgreSQL, ``:name`` parameters)."""
    with driver.cursor() as cursor:
        cursor.execute(_pg_sql(sql), params)
        return cursor.fetchone()[0]


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
