"""The initial ledger schema: events and event_tags.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

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
_OPTIONAL_TEXT = (
    "response_model",
    "service_tier",
    "request_id",
    "finish_reason",
    "error_type",
    "error_message",
    "tenant",
    "user",
    "feature",
    "session",
    "cost_source",
    "price_ref",
    "unpriced_reason",
    "api_key_fingerprint",
)


def upgrade() -> None:
    """Create the events and event_tags tables with their indexes."""
    op.create_table(
        "events",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("ts_us", sa.BigInteger, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("usage_source", sa.Text, nullable=False),
        sa.Column("stream", sa.Boolean, nullable=False),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in _BUCKETS),
        sa.Column("duration_ms", sa.Double, nullable=True),
        sa.Column("ttft_ms", sa.Double, nullable=True),
        *(sa.Column(name, sa.Text, nullable=True) for name in _OPTIONAL_TEXT),
        sa.Column("cost_nanos", sa.BigInteger, nullable=True),
        sa.Column("tags", sa.Text, nullable=True),
        sa.Column("cost_breakdown", sa.Text, nullable=True),
        sa.Column("usage_raw", sa.Text, nullable=True),
        sa.Column("warnings", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_ts_us", "events", ["ts_us"])
    op.create_index("ix_events_tenant_ts_us", "events", ["tenant", "ts_us"])
    op.create_index("ix_events_model_ts_us", "events", ["model", "ts_us"])
    op.create_index("ix_events_feature_ts_us", "events", ["feature", "ts_us"])
    op.create_table(
        "event_tags",
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("ts_us", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("key", "value", "ts_us", "event_id", name="pk_event_tags"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    """Drop everything ``upgrade`` created."""
    op.drop_table("event_tags")
    op.drop_table("events")
