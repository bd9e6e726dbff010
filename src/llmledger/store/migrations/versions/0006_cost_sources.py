"""Cost sources tell price files and database prices apart.

Revision ID: 0006
Revises: 0005

Before this revision a cost priced from the user's prices said ``override``,
whether the price came from a price file or from a row added through the
service. It now says ``file`` or ``database``; the price ref of each stored
event tells which (``user:db:...`` for the database). This script is
self-contained: it must keep working whatever the library's code becomes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

_events = sa.table("events", sa.column("cost_source"), sa.column("price_ref"))


def upgrade() -> None:
    """Rename ``override`` to ``database`` or ``file``, by the event's price ref."""
    c = _events.c
    op.execute(
        _events.update()
        .where(c.cost_source == "override")
        .values(cost_source=sa.case((c.price_ref.like("user:db:%"), "database"), else_="file"))
    )


def downgrade() -> None:
    """Both back to ``override``; ``supplement`` costs become ``catalog`` ones."""
    c = _events.c
    op.execute(
        _events.update()
        .where(c.cost_source.in_(("file", "database")))
        .values(cost_source="override")
    )
    op.execute(_events.update().where(c.cost_source == "supplement").values(cost_source="catalog"))
