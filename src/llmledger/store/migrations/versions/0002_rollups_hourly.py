"""Hourly rollups for reports, filled from the events already stored.

Revision ID: 0002
Revises: 0001

The table is kept up to date by the writer (``llmledger.store.rollups.apply_rollups``)
and can be rebuilt with ``SqlStore.rebuild_rollups``.  This script is
self-contained: it must keep working whatever the library's code becomes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_HOUR_US = 3_600_000_000
_BUCKETS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "input_audio_tokens",
    "input_image_tokens",
    "reasoning_tokens",
    "output_audio_tokens",
    "tool_use_prompt_tokens",
)
_DIMENSIONS = (
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
_GRAINS = {
    1: ("provider", "model", "response_model", "operation", "status", "api_key_fingerprint"),
    2: ("provider", "model", "operation", "status", "tenant", "feature"),
    3: _DIMENSIONS,
}
_COUNTS = (
    "calls",
    "successes",
    "errors",
    "unpriced_calls",
    *_BUCKETS,
    "duration_count",
    "ttft_count",
)
_SUMMED = (*_COUNTS, "cost_nanos", "duration_ms_sum", "ttft_ms_sum")
_STATE = (*_SUMMED, "first_us", "last_us")


def _key(columns: Sequence[sa.ColumnElement[Any]]) -> sa.ColumnElement[str]:
    # len:value per value, ~ for NULL: the same encoding as llmledger.store.rollup_tables.dims_key.
    key: sa.ColumnElement[Any] | None = None
    for column in columns:
        part = sa.func.coalesce(
            sa.cast(sa.func.length(column), sa.Text) + sa.literal(":") + column, sa.literal("~")
        )
        key = part if key is None else key + part
    assert key is not None
    return sa.type_coerce(key, sa.Text)


def upgrade() -> None:
    """Create ``rollups_hourly`` and fill it from the existing events."""
    rollups = op.create_table(
        "rollups_hourly",
        sa.Column("grain", sa.SmallInteger, nullable=False),
        sa.Column("hour_us", sa.BigInteger, nullable=False),
        sa.Column("dims_key", sa.Text, nullable=False),
        *(sa.Column(name, sa.Text, nullable=True) for name in _DIMENSIONS),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in _COUNTS),
        sa.Column("cost_nanos", sa.BigInteger, nullable=False),
        sa.Column("duration_ms_sum", sa.Double, nullable=False),
        sa.Column("ttft_ms_sum", sa.Double, nullable=False),
        sa.Column("first_us", sa.BigInteger, nullable=False),
        sa.Column("last_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("grain", "hour_us", "dims_key", name="pk_rollups_hourly"),
        sqlite_with_rowid=False,
    )
    assert rollups is not None
    events = sa.table(
        "events",
        *(sa.column(name) for name in ("ts_us", "status", "cost_nanos", "duration_ms", "ttft_ms")),
        *(sa.column(name) for name in (*_DIMENSIONS, *_BUCKETS)),
    )
    c = events.c

    def count_if(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
        return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)

    hour = c.ts_us - c.ts_us % _HOUR_US
    dims = [c[name] for name in _DIMENSIONS]
    finest = (
        sa.select(
            sa.literal(3, sa.SmallInteger),
            hour,
            _key(dims),
            *dims,
            sa.func.count(),
            count_if(c.status == "ok"),
            count_if(c.status == "error"),
            count_if(c.cost_nanos.is_(None)),
            *(sa.func.coalesce(sa.func.sum(c[name]), 0) for name in _BUCKETS),
            sa.func.count(c.duration_ms),
            sa.func.count(c.ttft_ms),
            sa.func.coalesce(sa.func.sum(c.cost_nanos), 0),
            sa.func.coalesce(sa.func.sum(c.duration_ms), 0.0),
            sa.func.coalesce(sa.func.sum(c.ttft_ms), 0.0),
            sa.func.min(c.ts_us),
            sa.func.max(c.ts_us),
        )
        .select_from(events)
        .group_by(hour, *dims)
    )
    columns = ["grain", "hour_us", "dims_key", *_DIMENSIONS, *_STATE]
    op.execute(rollups.insert().from_select(columns, finest))
    source = rollups.alias("finest")
    for grain in (1, 2):
        kept = [source.c[name] for name in _GRAINS[grain]]
        coarse = (
            sa.select(
                sa.literal(grain, sa.SmallInteger),
                source.c.hour_us,
                _key(kept),
                *kept,
                *(sa.func.sum(source.c[name]) for name in _SUMMED),
                sa.func.min(source.c.first_us),
                sa.func.max(source.c.last_us),
            )
            .where(source.c.grain == 3)
            .group_by(source.c.hour_us, *kept)
        )
        op.execute(
            rollups.insert().from_select(
                ["grain", "hour_us", "dims_key", *_GRAINS[grain], *_STATE], coarse
            )
        )


def downgrade() -> None:
    """Drop the rollups (the events are untouched)."""
    op.drop_table("rollups_hourly")
