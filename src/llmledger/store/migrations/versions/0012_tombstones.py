"""Tombstones: the ids of deleted events, so no replay brings them back.

Revision ID: 0012
Revises: 0010

``tombstones`` holds one row per deleted event: its id, its start time and when
it was deleted. The store skips a tombstoned id on every write, as it skips an
id already stored; otherwise the ledger stays append-only. This script is
self-contained: it must keep working whatever the library's code becomes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``tombstones``."""
    op.create_table(
        "tombstones",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("ts_us", sa.BigInteger, nullable=False),
        sa.Column("deleted_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tombstones"),
    )


def downgrade() -> None:
    """Drop ``tombstones``: deleted events could then be replayed into the ledger again."""
    op.drop_table("tombstones")
