"""A price status apart from the call status, and incomplete calls in the rollups.

Revision ID: 0008
Revises: 0007

``events.price_status`` says how far an event's cost is known: ``priced``,
``incomplete`` (priced from the rates there were while some billed unit had
none; ``events.incomplete_reason`` names it) or ``unpriced`` (no cost). Events
stored before were priced or unpriced, so their status follows from their cost.
Each rollup table counts incomplete calls beside the unpriced ones; rollups
written before count none, which is what their events say. This script is
self-contained: it must keep working whatever the library's code becomes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

_ROLLUP_TABLES = ("rollups_hourly", "rollups_daily")


def upgrade() -> None:
    """Add the columns and give every stored event its price status."""
    op.add_column("events", sa.Column("price_status", sa.Text, nullable=True))
    op.add_column("events", sa.Column("incomplete_reason", sa.Text, nullable=True))
    events = sa.table("events", sa.column("cost_nanos"), sa.column("price_status"))
    op.execute(
        events.update().values(
            price_status=sa.case((events.c.cost_nanos.is_(None), "unpriced"), else_="priced")
        )
    )
    for name in _ROLLUP_TABLES:
        op.add_column(
            name, sa.Column("incomplete_calls", sa.BigInteger, nullable=False, server_default="0")
        )


def downgrade() -> None:
    """Drop them; incomplete costs stay as the costs they are."""
    for name in _ROLLUP_TABLES:
        with op.batch_alter_table(name) as batch:
            batch.drop_column("incomplete_calls")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("incomplete_reason")
        batch.drop_column("price_status")
