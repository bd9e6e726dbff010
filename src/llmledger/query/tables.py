"""The hourly rollup table and its grains.

``rollups_hourly`` holds, per UTC hour and combination of dimension values, the
mergeable aggregates of the calls (see :mod:`llmledger.query.aggregate`).  The
same hour is kept at three *grains*, each a set of dimensions, so that a report
reads the smallest grain that has every dimension it groups or filters on:

=====  ==========================================================================
grain  dimensions
=====  ==========================================================================
1      provider, model, response_model, operation, status, api_key_fingerprint
2      provider, model, operation, status, tenant, feature
3      all of the above and user
=====  ==========================================================================

Dimensions outside a row's grain are NULL and never read.  ``session`` and tags
are not rolled up (they are nearly unique per call); reports on them read the
raw events, through the indexes the events tables already have.

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
from llmledger.store.schema import metadata

__all__ = [
    "GRAINS",
    "ROLLUP_DIMENSIONS",
    "dims_key",
    "dims_key_sql",
    "grain_for",
    "rollups",
]

#: Every dimension kept in rollups, in column order.
ROLLUP_DIMENSIONS: tuple[str, ...] = (
    "provider",
    "model",
    "response_model",
    "operation",
    "status",
    "api_key_fingerprint",
    "tenant",
    "feature",
    "user",
)
#: Grain number -> its dimensions, smallest (fewest rows) first.
GRAINS: dict[int, tuple[str, ...]] = {
    1: ("provider", "model", "response_model", "operation", "status", "api_key_fingerprint"),
    2: ("provider", "model", "operation", "status", "tenant", "feature"),
    3: ROLLUP_DIMENSIONS,
}

rollups = sa.Table(
    "rollups_hourly",
    metadata,
    sa.Column("grain", sa.SmallInteger, primary_key=True),
    sa.Column("hour_us", sa.BigInteger, primary_key=True),
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


def grain_for(dimensions: set[str]) -> int | None:
    """The smallest grain holding every dimension, or None when none does.

    Example:
        >>> grain_for({"model"}), grain_for({"tenant", "model"}), grain_for({"session"})
        (1, 2, None)
    """
    for grain, names in GRAINS.items():
        if dimensions <= set(names):
            return grain
    return None


def dims_key(values: Sequence[str | None]) -> str:
    """The injective key of a grain's values.

    Example:
        >>> dims_key(["openai", None, "a:b"])
        '6:openai~3:a:b'
    """
    return "".join("~" if v is None else f"{len(v)}:{v}" for v in values)


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
