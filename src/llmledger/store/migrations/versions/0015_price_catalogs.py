"""Price catalogs fetched from the network, kept in the ledger database.

Revision ID: 0015
Revises: 0012

``price_catalogs`` holds genai-prices documents fetched by the weekly price
check or ``llmledger prices refresh``: the text as fetched, its SHA-256, where
and when it was fetched and last fetched again. The newest row is the catalog
every process over the database prices with. This script is self-contained: it
must keep working whatever the library's code becomes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``price_catalogs``."""
    op.create_table(
        "price_catalogs",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("sha256", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("fetched_us", sa.BigInteger, nullable=False),
        sa.Column("checked_us", sa.BigInteger, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_price_catalogs"),
    )
    op.create_index("ix_price_catalogs_fetched_us", "price_catalogs", ["fetched_us"])


def downgrade() -> None:
    """Drop ``price_catalogs``: the bundled catalog prices again."""
    op.drop_index("ix_price_catalogs_fetched_us", table_name="price_catalogs")
    op.drop_table("price_catalogs")
