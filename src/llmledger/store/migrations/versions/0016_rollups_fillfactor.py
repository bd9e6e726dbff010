"""Rollup tables leave half of each page free on PostgreSQL, for their rows' next versions.

Revision ID: 0016
Revises: 0015

Every ingested batch updates the rollup rows of its hours and days.  On a full
page PostgreSQL writes the new version of a row to another page and adds an
entry to every index; with room on the page it updates the row in place of the
old version (a HOT update), with no index entry, and reclaims the old versions
without waiting for VACUUM.  A fill factor of 50 keeps that room: on the ingest
benchmark's batches, nine in ten rollup updates or more are HOT instead of
under half, and the tables stay several times smaller.  New pages follow the
setting; pages already written keep their rows until they are rewritten.
SQLite has no such setting: nothing changes there.  This script is
self-contained: it must keep working whatever the library's code becomes.
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision: str | None = "0015"
branch_labels: str | None = None
depends_on: str | None = None

_TABLES = ("rollups_hourly", "rollups_daily")
_FILLFACTOR = 50


def upgrade() -> None:
    """Set the rollup tables' fill factor (PostgreSQL)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {_FILLFACTOR})")


def downgrade() -> None:
    """Give the rollup tables back the default fill factor (PostgreSQL)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
