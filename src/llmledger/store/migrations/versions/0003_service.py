"""The service's own tables: API keys, and prices and exchange rates added through the API.

Revision ID: 0003
Revises: 0002

Prices and rates are history: each row is dated and a new row never replaces an
earlier one (``row_key`` is unique: one row per model, tier and first day).
This script is self-contained: it must keep working whatever the library's code becomes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``api_keys``, ``user_prices`` and ``user_exchange_rates``."""
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("secret_hash", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("tenant", sa.Text, nullable=True),
        sa.Column("user", sa.Text, nullable=True),
        sa.Column("name", sa.Text, nullable=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("revoked_us", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
    )
    op.create_table(
        "user_prices",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("row_key", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("service_tier", sa.Text, nullable=True),
        sa.Column("valid_from", sa.Text, nullable=True),
        sa.Column("checked", sa.Text, nullable=True),
        sa.Column("rates", sa.Text, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_user_prices"),
        sa.UniqueConstraint("row_key", name="uq_user_prices_row_key"),
    )
    op.create_table(
        "user_exchange_rates",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("rate", sa.Text, nullable=False),
        sa.Column("valid_from", sa.Text, nullable=False),
        sa.Column("checked", sa.Text, nullable=True),
        sa.Column("source", sa.Text, nullable=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_user_exchange_rates"),
        sa.UniqueConstraint(
            "currency", "valid_from", name="uq_user_exchange_rates_currency_valid_from"
        ),
    )


def downgrade() -> None:
    """Drop the service's tables (the events are untouched)."""
    op.drop_table("user_exchange_rates")
    op.drop_table("user_prices")
    op.drop_table("api_keys")
