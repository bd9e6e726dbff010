"""Prompt and response text, kept apart from the events when asked for.

Revision ID: 0005
Revises: 0004

``event_content`` holds the (redacted) text of an event, keyed by the event id,
with the event's start time (``ts_us``) indexed so old text can be deleted on a
schedule of its own. There is no foreign key to ``events``: the text is written
while its event is still queued. This script is self-contained: it must keep
working whatever the library's code becomes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``event_content``."""
    op.create_table(
        "event_content",
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("ts_us", sa.BigInteger, nullable=False),
        sa.Column("prompt", sa.Text, nullable=True),
        sa.Column("response", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("event_id", name="pk_event_content"),
    )
    op.create_index("ix_event_content_ts_us", "event_content", ["ts_us"])


def downgrade() -> None:
    """Drop ``event_content`` and the text in it (the events are untouched)."""
    op.drop_index("ix_event_content_ts_us", table_name="event_content")
    op.drop_table("event_content")
