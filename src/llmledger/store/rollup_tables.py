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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from llmledger.query.aggregate import COUNT_FIELDS
from llmledger.query.periods import DAY_US, HOUR_US
from llmledger.query.plan import ROLLUP_DIMENSIONS
from llmledger.store.schema import metadata

__all__ = [
    "daily_rollups",
    "dims_key",
    "dims_key_sql",
    "rollup_table",
    "rollups",
]


def _rollup_table(name: str, time_column: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("grain", sa.SmallInteger, primary_key=True),
        sa.Column(time_column, sa.BigInteger, primary_key=True),
        sa.Column("dims_key", sa.Text, primary_key=True),
        *(sa.Column(name, sa.Text, nullable=True) for name in ROLLUP_DIMENSIONS),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in COUNT_FIELDS),
        sa.Column("cost_nanos", sa.BigInteger, nullable=False),
        sa.Column("duration_ms_sum", sa.Double, nullable=False),
        sa.Column("ttft_ms_sum", sa.Double, nullable=False),
        sa.Column("first_us", sa.BigInteger, nullable=False),
        sa.Column("last_us", sa.BigInteger, nullable=False),
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
