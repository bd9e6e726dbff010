"""Budgets, the alert history, the outbox of notifications and the scheduler's jobs.

Revision ID: 0010
Revises: 0011

``alerts.open_key`` holds an alert's key while it is open and is NULL once it
resolved: unique, it keeps one open alert per key.  ``outbox.dedupe`` is unique,
so a message queued twice is stored once.  ``jobs`` holds the scheduler's lease
(row ``leader``) and each job's last run.  This script is self-contained: it
must keep working whatever the library's code becomes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``budgets``, ``alerts``, ``outbox`` and ``jobs``."""
    op.create_table(
        "budgets",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("tenant", sa.Text, nullable=True),
        sa.Column("amount", sa.Text, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("period", sa.Text, nullable=False),
        sa.Column("rolling_days", sa.Integer, nullable=True),
        sa.Column("tz", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("thresholds", sa.Text, nullable=False),
        sa.Column("recipients", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_budgets"),
        sa.UniqueConstraint("name", name="uq_budgets_name"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("open_key", sa.Text, nullable=True),
        sa.Column("tenant", sa.Text, nullable=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("recipients", sa.Text, nullable=False),
        sa.Column("fired_us", sa.BigInteger, nullable=False),
        sa.Column("resolved_us", sa.BigInteger, nullable=True),
        sa.Column("acked_us", sa.BigInteger, nullable=True),
        sa.Column("acked_by", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint("open_key", name="uq_alerts_open_key"),
    )
    op.create_index("ix_alerts_key", "alerts", ["key"])
    op.create_index("ix_alerts_fired_us", "alerts", ["fired_us"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("dedupe", sa.Text, nullable=False),
        sa.Column("alert_id", sa.Text, nullable=True),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("next_us", sa.BigInteger, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("delivered_us", sa.BigInteger, nullable=True),
        sa.Column("failed_us", sa.BigInteger, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("dedupe", name="uq_outbox_dedupe"),
    )
    op.create_index("ix_outbox_alert_id", "outbox", ["alert_id"])
    op.create_index("ix_outbox_next_us", "outbox", ["next_us"])
    op.create_table(
        "jobs",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("holder", sa.Text, nullable=True),
        sa.Column("lease_until_us", sa.BigInteger, nullable=True),
        sa.Column("last_run_us", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_jobs"),
    )


def downgrade() -> None:
    """Drop the tables (the events are untouched)."""
    op.drop_table("jobs")
    op.drop_index("ix_outbox_next_us", table_name="outbox")
    op.drop_index("ix_outbox_alert_id", table_name="outbox")
    op.drop_table("outbox")
    op.drop_index("ix_alerts_fired_us", table_name="alerts")
    op.drop_index("ix_alerts_key", table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("budgets")
