"""The progress of reprices, so a reprice stopped anywhere resumes where it was.

Revision ID: 0009
Revises: 0008

``reprice_jobs`` holds one row per reprice (its range and filters, hashed, as
the key): the last event done, the running totals and when it started and
finished.  Each batch of a reprice updates its events, their rollup rows and
this row in one transaction.  This script is self-contained: it must keep
working whatever the library's code becomes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``reprice_jobs``."""
    op.create_table(
        "reprice_jobs",
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("after_ts_us", sa.BigInteger, nullable=True),
        sa.Column("after_id", sa.Text, nullable=True),
        sa.Column("state", sa.Text, nullable=True),
        sa.Column("batches", sa.BigInteger, nullable=False),
        sa.Column("started_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.Column("finished_us", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_reprice_jobs"),
    )


def downgrade() -> None:
    """Drop ``reprice_jobs`` (repriced events keep their new costs)."""
    op.drop_table("reprice_jobs")
