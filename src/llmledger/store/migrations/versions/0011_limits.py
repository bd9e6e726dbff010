"""Spending limits: the limits, their counters per window, and the reservations of calls in flight.

Revision ID: 0011
Revises: 0009

``limits`` holds one row per limit (amount as text and in integer units: nano-USD
for cost).  ``limit_usage`` counts the units settled per limit and window;
``limit_reservations`` what each call in flight reserved, per limit, until it is
settled or expires.  This script is self-contained: it must keep working whatever
the library's code becomes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``limits``, ``limit_usage`` and ``limit_reservations``."""
    op.create_table(
        "limits",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("metric", sa.Text, nullable=False),
        sa.Column("amount", sa.Text, nullable=False),
        sa.Column("units", sa.BigInteger, nullable=False),
        sa.Column("period", sa.Text, nullable=False),
        sa.Column("mode", sa.Text, nullable=False),
        sa.Column("tenant", sa.Text, nullable=True),
        sa.Column("name", sa.Text, nullable=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_limits"),
    )
    op.create_index("ix_limits_scope_value", "limits", ["scope", "value"])
    op.create_table(
        "limit_usage",
        sa.Column("limit_id", sa.Text, nullable=False),
        sa.Column("window_us", sa.BigInteger, nullable=False),
        sa.Column("used", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("limit_id", "window_us", name="pk_limit_usage"),
    )
    op.create_table(
        "limit_reservations",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("limit_id", sa.Text, nullable=False),
        sa.Column("window_us", sa.BigInteger, nullable=False),
        sa.Column("units", sa.BigInteger, nullable=False),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
        sa.Column("tenant", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", "limit_id", name="pk_limit_reservations"),
    )
    op.create_index(
        "ix_limit_reservations_limit_id_window_us",
        "limit_reservations",
        ["limit_id", "window_us"],
    )


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_table("limit_reservations")
    op.drop_table("limit_usage")
    op.drop_index("ix_limits_scope_value", table_name="limits")
    op.drop_table("limits")
