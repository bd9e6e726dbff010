"""Tenant in every rollup grain, and token and cost sums that cannot overflow.

Revision ID: 0007
Revises: 0006

Grain 1 (provider, model, response model, operation, status, key fingerprint)
gains ``tenant``, so one tenant's writes never touch another's rows.  Each token
bucket and ``cost_nanos`` gets a companion ``<field>_e9`` column: the sum is
``<field>_e9 * 10^9 + <field>``, with ``<field>`` below 10^9, which no ledger
fills (a 64-bit sum of nano-USD overflowed after 9,223 calls at the per-call
cost limit).  The rollups are then rebuilt from the events, which stay the
source of truth.  This script is self-contained: it must keep working whatever
the library's code becomes.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

_BASE = 10**9
_HOUR_US = 3_600_000_000
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
    1: (
        "provider",
        "model",
        "response_model",
        "operation",
        "status",
        "api_key_fingerprint",
        "tenant",
    ),
    2: ("provider", "model", "operation", "status", "tenant", "feature"),
    3: _DIMENSIONS,
}
_DAILY_GRAINS = (1, 2)
_PLAIN = ("calls", "successes", "errors", "unpriced_calls", "duration_count", "ttft_count")
_FLOATS = ("duration_ms_sum", "ttft_ms_sum")
_STATE = (
    "calls",
    "successes",
    "errors",
    "unpriced_calls",
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


def _column(name: str) -> Any:
    """A column typed as stored, so integer division stays integer on both databases."""
    if name in (*_DIMENSIONS, "dims_key"):
        return sa.column(name, sa.Text)
    if name in (*_FLOATS, "duration_ms", "ttft_ms"):
        return sa.column(name, sa.Double)
    return sa.column(name, sa.BigInteger)


def _table(name: str) -> Any:
    return sa.table(
        name, *(_column(c) for c in ("grain", _TABLES[name], "dims_key", *_DIMENSIONS, *_STATE))
    )


def _dims_key(columns: list[Any]) -> Any:
    """The rollups' injective key of a grain's values (``len:value``, ``~`` for NULL)."""
    parts = [
        sa.func.coalesce(sa.cast(sa.func.length(c), sa.Text) + sa.literal(":") + c, sa.literal("~"))
        for c in columns
    ]
    key: Any = parts[0]
    for part in parts[1:]:
        key = key + part
    return sa.type_coerce(key, sa.Text)


def _wide(low: Any, high: Any) -> list[Any]:
    low = sa.cast(sa.func.coalesce(low, 0), sa.BigInteger)
    high = sa.cast(sa.func.coalesce(high, 0), sa.BigInteger)
    return [low % _BASE, high + low // _BASE]


def _count_if(condition: Any) -> Any:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def _from_events(events: Any) -> list[Any]:
    c = events.c
    return [
        sa.func.count(),
        _count_if(c.status == "ok"),
        _count_if(c.status == "error"),
        _count_if(c.cost_nanos.is_(None)),
        *(
            x
            for name in _BUCKETS
            for x in _wide(sa.func.sum(c[name] % _BASE), sa.func.sum(c[name] // _BASE))
        ),
        sa.func.count(c.duration_ms),
        sa.func.count(c.ttft_ms),
        *_wide(sa.func.sum(c.cost_nanos % _BASE), sa.func.sum(c.cost_nanos // _BASE)),
        sa.func.coalesce(sa.func.sum(c.duration_ms), 0.0),
        sa.func.coalesce(sa.func.sum(c.ttft_ms), 0.0),
        sa.func.min(c.ts_us),
        sa.func.max(c.ts_us),
    ]


def _from_rollups(rows: Any) -> list[Any]:
    c = rows.c
    out: list[Any] = []
    for name in _STATE:
        if name.endswith("_e9"):
            continue
        if name in _WIDE:
            out += _wide(sa.func.sum(c[name]), sa.func.sum(c[f"{name}_e9"]))
        elif name == "first_us":
            out.append(sa.func.min(c.first_us))
        elif name == "last_us":
            out.append(sa.func.max(c.last_us))
        else:
            out.append(sa.func.sum(c[name]))
    return out


def upgrade() -> None:
    """Add the high halves of the wide sums, then rebuild every rollup from the events."""
    for name in _TABLES:
        with op.batch_alter_table(name) as batch:
            for wide in _WIDE:
                batch.add_column(
                    sa.Column(f"{wide}_e9", sa.BigInteger, nullable=False, server_default="0")
                )
        op.execute(sa.table(name).delete())
    events = sa.table(
        "events",
        *(
            _column(c)
            for c in ("ts_us", "cost_nanos", "duration_ms", "ttft_ms", *_DIMENSIONS, *_BUCKETS)
        ),
    )
    hourly, daily = _table("rollups_hourly"), _table("rollups_daily")
    hour = events.c.ts_us - events.c.ts_us % _HOUR_US
    dims = [events.c[name] for name in _DIMENSIONS]
    finest = max(_GRAINS)
    columns = ["grain", "hour_us", "dims_key", *_DIMENSIONS, *_STATE]
    select = sa.select(
        sa.literal(finest, sa.SmallInteger), hour, _dims_key(dims), *dims, *_from_events(events)
    ).group_by(hour, *dims)
    op.execute(hourly.insert().from_select(columns, select))
    source = hourly.alias("finest")
    for grain, names in _GRAINS.items():
        if grain == finest:
            continue
        kept = [source.c[name] for name in names]
        select = (
            sa.select(
                sa.literal(grain, sa.SmallInteger),
                source.c.hour_us,
                _dims_key(kept),
                *kept,
                *_from_rollups(source),
            )
            .where(source.c.grain == finest)
            .group_by(source.c.hour_us, *kept)
        )
        target = ["grain", "hour_us", "dims_key", *names, *_STATE]
        op.execute(hourly.insert().from_select(target, select))
    rows = hourly.alias("hourly")
    day = rows.c.hour_us - rows.c.hour_us % _DAY_US
    # Within a grain dims_key identifies the values, and the others are NULL.
    keys = [rows.c.grain, day, rows.c.dims_key, *(rows.c[n] for n in _DIMENSIONS)]
    select = (
        sa.select(*keys, *_from_rollups(rows))
        .where(rows.c.grain.in_(_DAILY_GRAINS))
        .group_by(*keys)
    )
    columns = ["grain", "day_us", "dims_key", *_DIMENSIONS, *_STATE]
    op.execute(daily.insert().from_select(columns, select))


def downgrade() -> None:
    """Drop the high halves and empty the rollups; run ``llmledger db rebuild-rollups`` after."""
    for name in _TABLES:
        op.execute(sa.table(name).delete())
        with op.batch_alter_table(name) as batch:
            for wide in _WIDE:
                batch.drop_column(f"{wide}_e9")
