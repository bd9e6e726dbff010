"""The rollup tables (hourly and daily) and the key of their rows.

``rollups_hourly`` holds, per UTC hour and combination of dimension values, the
mergeable aggregates of the calls (see :mod:`llmledger.query.aggregate`), at
each grain of :data:`llmledger.query.plan.GRAINS`.  Dimensions outside a row's
grain are NULL and never read.  ``rollups_daily`` has the same columns per UTC
day (``day_us``) for the grains of :data:`~llmledger.query.plan.DAILY_GRAINS`:
a 30-day report then reads about 30 rows per group instead of 720.

A row is identified by ``(grain, hour_us, dims_key)``: ``dims_key`` encodes the
grain's values injectively (``len:value`` per value, ``~`` for NULL) and is
computed the same way in Python (:func:`dims_key`) and in SQL
(:func:`dims_key_sql`), so writes can upsert and a rebuild can run in SQL.
Every grain has ``tenant``, so one tenant's writes never touch another's rows.

Sums that a ledger could push past 64 bits (tokens and nano-USD) are kept in two
integer columns, as SQLite has no wider integer: ``<field>`` holds the sum
modulo :data:`WIDE_BASE` and ``<field>_e9`` the multiples of it, and each write
carries the remainder over.  At the per-event limits (10^10 tokens per bucket,
10^6 USD per call) the high column grows by at most 10 and 10^6 per event, so it
cannot overflow before 9e12 calls in one row; reads and rebuilds only ever
sum remainders below 10^9, and the exact total is put together in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from llmledger.core.usage import BUCKETS
from llmledger.query.aggregate import STATE_FIELDS
from llmledger.query.periods import DAY_US, HOUR_US
from llmledger.query.plan import ROLLUP_DIMENSIONS
from llmledger.store.schema import metadata

__all__ = [
    "STORED_FIELDS",
    "WIDE_BASE",
    "WIDE_FIELDS",
    "daily_rollups",
    "dims_key",
    "dims_key_sql",
    "rollup_table",
    "rollups",
    "split_wide",
    "state_values",
]

#: The base of a wide sum's two columns: ``sum = <field>_e9 * WIDE_BASE + <field>``.
WIDE_BASE = 10**9
#: State fields kept as wide sums (two columns each).
WIDE_FIELDS: tuple[str, ...] = (*BUCKETS, "cost_nanos")
#: Stored columns of a state, in order: each wide field is followed by its ``_e9`` column.
STORED_FIELDS: tuple[str, ...] = tuple(
    column
    for name in STATE_FIELDS
    for column in ((name, f"{name}_e9") if name in WIDE_FIELDS else (name,))
)
_WIDE_AT = tuple(i for i, name in enumerate(STORED_FIELDS) if name in WIDE_FIELDS)


def split_wide(state: Sequence[Any]) -> list[Any]:
    """A state in ``STATE_FIELDS`` order, as stored (each wide sum split in two).

    Example:
        >>> counts = [1] * STATE_FIELDS.index("input_tokens")
        >>> stored = split_wide(counts + [3 * WIDE_BASE + 7] + [0] * 12 + [5] + [0] * 4)
        >>> stored[len(counts) : len(counts) + 2], stored[STORED_FIELDS.index("cost_nanos")]
        ([7, 3], 5)
    """
    out: list[Any] = []
    for name, value in zip(STATE_FIELDS, state, strict=True):
        if name in WIDE_FIELDS:
            high, low = divmod(value, WIDE_BASE)
            out += (low, high)
        else:
            out.append(value)
    return out


def state_values(stored: Sequence[Any]) -> list[Any]:
    """Stored sums (``STORED_FIELDS`` order) back in ``STATE_FIELDS`` order, exact.

    The database returns each half of a wide sum as an integer (or a Decimal,
    or None for an empty group); Python's integers hold the whole.

    Example:
        >>> state_values(split_wide(list(range(len(STATE_FIELDS))))) == list(
        ...     range(len(STATE_FIELDS)))
        True
    """
    out = list(stored)
    for at in reversed(_WIDE_AT):
        low, high = out[at], out[at + 1]
        out[at : at + 2] = [int(low or 0) + int(high or 0) * WIDE_BASE]
    return out


def _rollup_table(name: str, time_column: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("grain", sa.SmallInteger, primary_key=True),
        sa.Column(time_column, sa.BigInteger, primary_key=True),
        sa.Column("dims_key", sa.Text, primary_key=True),
        *(sa.Column(name, sa.Text, nullable=True) for name in ROLLUP_DIMENSIONS),
        *(
            sa.Column(
                name, sa.Double if name.endswith("_ms_sum") else sa.BigInteger, nullable=False
            )
            for name in STORED_FIELDS
        ),
        sqlite_with_rowid=False,
    )


rollups = _rollup_table("rollups_hourly", "hour_us")
daily_rollups = _rollup_table("rollups_daily", "day_us")


def rollup_table(period_us: int) -> tuple[sa.Table, sa.Column[int]]:
    """The table of a rollup period and its time column (the period's start, µs).

    Example:
        >>> table, time = rollup_table(HOUR_US)
        >>> table.name, time.name
        ('rollups_hourly', 'hour_us')
    """
    if period_us == HOUR_US:
        return rollups, rollups.c.hour_us
    if period_us == DAY_US:
        return daily_rollups, daily_rollups.c.day_us
    raise ValueError(f"no rollups per {period_us} µs")


def dims_key(values: Sequence[str | None]) -> str:
    """The injective key of a grain's values.

    Example:
        >>> dims_key(["openai", None, "a:b"])
        '6:openai~3:a:b'
    """
    return "".join(["~" if v is None else f"{len(v)}:{v}" for v in values])


def dims_key_sql(columns: Sequence[Any]) -> Any:
    """:func:`dims_key` as a SQL expression over ``columns`` (SQLite and PostgreSQL)."""
    parts = [
        sa.func.coalesce(sa.cast(sa.func.length(c), sa.Text) + sa.literal(":") + c, sa.literal("~"))
        for c in columns
    ]
    key: Any = parts[0]
    for part in parts[1:]:
        key = key + part
    return sa.type_coerce(key, sa.Text)
