"""Grain 4 (a tenant's users, kept per UTC hour and per UTC day), and the cost on tag rows.

Revision ID: 0014
Revises: 0012

Reports by user (the dashboard's top users over 30 days) read the finest grain
(3), which has a row per hour and combination of user, model, feature and the
rest: on a large ledger nearly as many rows as events.  Grain 4 keeps one row
per tenant, user and period, hourly and daily, so such a report reads a few rows
per user and day.  Its rows are summed from the finest grain's hourly rows (no
event is read), then per UTC day.

``event_tags`` gains ``cost_nanos``, the cost of the tagged event, copied from
the events: the spend of a tag's calls (budgets scoped by a tag) is then read
from the tag's rows alone instead of looking up each event.  This script is
self-contained: it must keep working whatever the library's code becomes.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None

_GRAIN = 4
_FINEST = 3
_NAMES = ("tenant", "user")
_BASE = 10**9
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
_WIDE = (*_BUCKETS, "cost_nanos")
_FLOATS = ("duration_ms_sum", "ttft_ms_sum")
_STATE = (
    "calls",
    "successes",
    "errors",
    "unpriced_calls",
    "incomplete_calls",
    *(c for name in _BUCKETS for c in (name, f"{name}_e9")),
    "duration_count",
    "ttft_count",
    "cost_nanos",
    "cost_nanos_e9",
    *_FLOATS,
    "first_us",
    "last_us",
)
_TABLES = {"rollups_hourly": "hour_us", "rollups_daily": "day_us"}


def _table(name: str) -> Any:
    def column(c: str) -> Any:
        if c in (*_NAMES, "dims_key"):
            return sa.column(c, sa.Text)
        if c in _FLOATS:
            return sa.column(c, sa.Double)
        return sa.column(c, sa.BigInteger)

    return sa.table(
        name, *(column(c) for c in ("grain", _TABLES[name], "dims_key", *_NAMES, *_STATE))
    )


def _dims_key(columns: list[Any]) -> Any:
    """The rollups' injective key of a grain's values (``len:value``, ``~`` for NULL)."""
    parts = [
        sa.func.coalesce(sa.cast(sa.func.length(c), sa.Text) + sa.literal(":") + c, sa.literal("~"))
        for c in columns
    ]
    return sa.type_coerce(parts[0] + parts[1], sa.Text)


def _summed(rows: Any) -> list[Any]:
    """The state columns of merged rollup rows (wide sums carried over), in ``_STATE`` order."""
    c = rows.c
    out: list[Any] = []
    for name in _STATE:
        if name.endswith("_e9"):
            continue
        if name in _WIDE:
            low = sa.cast(sa.func.coalesce(sa.func.sum(c[name]), 0), sa.BigInteger)
            high = sa.cast(sa.func.coalesce(sa.func.sum(c[f"{name}_e9"]), 0), sa.BigInteger)
            out += [low % _BASE, high + low // _BASE]
        elif name == "first_us":
            out.append(sa.func.min(c.first_us))
        elif name == "last_us":
            out.append(sa.func.max(c.last_us))
        else:
            out.append(sa.func.sum(c[name]))
    return out


def upgrade() -> None:
    """Sum grain 4's hourly rows from the finest grain's, then its daily rows from those;
    add the tag rows' cost and copy it from their events."""
    op.add_column("event_tags", sa.Column("cost_nanos", sa.BigInteger, nullable=True))
    tags = sa.table("event_tags", sa.column("event_id", sa.Text), sa.column("cost_nanos"))
    events = sa.table("events", sa.column("id", sa.Text), sa.column("cost_nanos"))
    cost = sa.select(events.c.cost_nanos).where(events.c.id == tags.c.event_id).scalar_subquery()
    op.execute(tags.update().values(cost_nanos=cost))
    hourly, daily = _table("rollups_hourly"), _table("rollups_daily")
    for table in (hourly, daily):
        op.execute(table.delete().where(table.c.grain == _GRAIN))
    source = hourly.alias("finest")
    kept = [source.c[name] for name in _NAMES]
    select = (
        sa.select(
            sa.literal(_GRAIN, sa.SmallInteger),
            source.c.hour_us,
            _dims_key(kept),
            *kept,
            *_summed(source),
        )
        .where(source.c.grain == _FINEST)
        .group_by(source.c.hour_us, *kept)
    )
    op.execute(
        hourly.insert().from_select(["grain", "hour_us", "dims_key", *_NAMES, *_STATE], select)
    )
    rows = hourly.alias("hourly")
    day = rows.c.hour_us - rows.c.hour_us % _DAY_US
    keys = [day, rows.c.dims_key, *(rows.c[n] for n in _NAMES)]
    select = (
        sa.select(sa.literal(_GRAIN, sa.SmallInteger), *keys, *_summed(rows))
        .where(rows.c.grain == _GRAIN)
        .group_by(*keys)
    )
    op.execute(
        daily.insert().from_select(["grain", "day_us", "dims_key", *_NAMES, *_STATE], select)
    )


def downgrade() -> None:
    """Remove grain 4's rows and the tag rows' cost; nothing else reads them."""
    for name in _TABLES:
        table = _table(name)
        op.execute(table.delete().where(table.c.grain == _GRAIN))
    # A plain ALTER (SQLite 3.35 or later): a batch copy would lose WITHOUT ROWID.
    op.execute("ALTER TABLE event_tags DROP COLUMN cost_nanos")
