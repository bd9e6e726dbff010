"""Daily rollups for long report ranges, filled from the hourly rollups.

Revision ID: 0004
Revises: 0003

``rollups_daily`` has the columns of ``rollups_hourly`` per UTC day (``day_us``)
for the coarse grains 1 and 2 (no ``user``).  The writer keeps it up to date
(``llmledger.store.rollups.apply_rollups``) and ``SqlStore.rebuild_rollups``
recomputes it.  This script is self-contained: it must keep working whatever
the library's code becomes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_DAY_US = 86_400_000_000
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
_DAILY_GRAINS = (1, 2)
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


def upgrade() -> None:
    """Create ``rollups_daily`` and fill it from ``rollups_hourly``."""
    op.create_table(
        "rollups_daily",
        sa.Column("grain", sa.SmallInteger, nullable=False),
        sa.Column("day_us", sa.BigInteger, nullable=False),
        sa.Column("dims_key", sa.Text, nullable=False),
        *(sa.Column(name, sa.Text, nullable=True) for name in _DIMENSIONS),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in _COUNTS),
        sa.Column("cost_nanos", sa.BigInteger, nullable=False),
        sa.Column("duration_ms_sum", sa.Double, nullable=False),
        sa.Column("ttft_ms_sum", sa.Double, nullable=False),
        sa.Column("first_us", sa.BigInteger, nullable=False),
        sa.Column("last_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("grain", "day_us", "dims_key", name="pk_rollups_daily"),
        sqlite_with_rowid=False,
    )
    hourly = sa.table(
        "rollups_hourly",
        *(sa.column(name) for name in ("grain", "hour_us", "dims_key", "first_us", "last_us")),
        *(sa.column(name) for name in (*_DIMENSIONS, *_SUMMED)),
    )
    daily = sa.table(
        "rollups_daily",
        *(sa.column(name) for name in ("grain", "day_us", "dims_key", "first_us", "last_us")),
        *(sa.column(name) for name in (*_DIMENSIONS, *_SUMMED)),
    )
    c = hourly.c
    day = c.hour_us - c.hour_us % _DAY_US
    # A grain's dims_key already identifies its dimension values, and the
    # dimensions outside the grain are NULL in every row of it.
    keys = [c.grain, day, c.dims_key, *(c[name] for name in _DIMENSIONS)]
    select = (
        sa.select(
            *keys,
            *(sa.func.sum(c[name]) for name in _SUMMED),
            sa.func.min(c.first_us),
            sa.func.max(c.last_us),
        )
        .where(c.grain.in_(_DAILY_GRAINS))
        .group_by(*keys)
    )
    columns = ["grain", "day_us", "dims_key", *_DIMENSIONS, *_SUMMED, "first_us", "last_us"]
    op.execute(daily.insert().from_select(columns, select))


def downgrade() -> None:
    """Drop the daily rollups (the hourly rollups and events are untouched)."""
    op.drop_table("rollups_daily")
