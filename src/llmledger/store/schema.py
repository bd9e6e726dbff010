"""The ledger's tables, as one SQLAlchemy Core ``MetaData`` shared by every backend.

One row per usage event in ``events``; tags are kept twice: verbatim as JSON in
``events.tags`` (what a round trip reads back) and one row per tag in
``event_tags`` (what filters and group-bys use).  Time is ``ts_us``, integer
microseconds since the Unix epoch in UTC, so range filters and time buckets are
integer arithmetic on both SQLite and PostgreSQL.  Cost is ``cost_nanos``, USD
times 10^9; NULL means unpriced and is never written as 0.
"""

from __future__ import annotations

import sqlalchemy as sa

from llmledger.core.usage import BUCKETS

__all__ = [
    "FILTER_COLUMNS",
    "NANOS_PER_USD",
    "event_tags",
    "events",
    "metadata",
]

#: Cost is stored as integer nano-dollars.
NANOS_PER_USD = 1_000_000_000

# Constraint and index names are fixed so migrations and autogenerate agree on
# every backend.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

events = sa.Table(
    "events",
    metadata,
    # Columns that are never NULL come first, then the optional ones: the fast
    # insert path relies on this order (see ``llmledger.store.codec``).
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("ts_us", sa.BigInteger, nullable=False),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("operation", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("usage_source", sa.Text, nullable=False),
    sa.Column("stream", sa.Boolean, nullable=False),
    *(sa.Column(name, sa.BigInteger, nullable=False) for name in BUCKETS),
    sa.Column("duration_ms", sa.Double, nullable=True),
    sa.Column("ttft_ms", sa.Double, nullable=True),
    sa.Column("response_model", sa.Text, nullable=True),
    sa.Column("service_tier", sa.Text, nullable=True),
    sa.Column("request_id", sa.Text, nullable=True),
    sa.Column("finish_reason", sa.Text, nullable=True),
    sa.Column("error_type", sa.Text, nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("tenant", sa.Text, nullable=True),
    sa.Column("user", sa.Text, nullable=True),
    sa.Column("feature", sa.Text, nullable=True),
    sa.Column("session", sa.Text, nullable=True),
    sa.Column("cost_source", sa.Text, nullable=True),
    sa.Column("price_ref", sa.Text, nullable=True),
    sa.Column("unpriced_reason", sa.Text, nullable=True),
    sa.Column("api_key_fingerprint", sa.Text, nullable=True),
    sa.Column("cost_nanos", sa.BigInteger, nullable=True),
    sa.Column("tags", sa.Text, nullable=True),
    sa.Column("cost_breakdown", sa.Text, nullable=True),
    sa.Column("usage_raw", sa.Text, nullable=True),
    sa.Column("warnings", sa.Text, nullable=True),
    # Added later (migration 0007), so last: ``priced``, ``incomplete`` or
    # ``unpriced`` (UsageEvent.price_status), and what an incomplete price left out.
    sa.Column("price_status", sa.Text, nullable=True),
    sa.Column("incomplete_reason", sa.Text, nullable=True),
    sa.Index(None, "ts_us"),
    sa.Index(None, "tenant", "ts_us"),
    sa.Index(None, "model", "ts_us"),
    sa.Index(None, "feature", "ts_us"),
)

event_tags = sa.Table(
    "event_tags",
    metadata,
    # One row per tag of each event, clustered for "tag key = value over a time
    # range" and "group by a tag's value": the primary key is the only index,
    # and on SQLite the table is that index (WITHOUT ROWID).  The store inserts
    # a batch's rows sorted in key order, and only for events it has just
    # inserted, so a replayed event never adds tags.
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("ts_us", sa.BigInteger, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    # The event's cost (kept in step by writes and reprices), so the spend of a
    # tag's calls is read from its rows alone (budgets scoped by a tag).
    sa.Column("cost_nanos", sa.BigInteger, nullable=True),
    sa.PrimaryKeyConstraint("key", "value", "ts_us", "event_id"),
    sqlite_with_rowid=False,
)

#: Columns ``SqlStore.events`` accepts as ``name=value`` equality filters.
FILTER_COLUMNS: tuple[str, ...] = (
    "provider",
    "model",
    "tenant",
    "user",
    "feature",
    "session",
    "operation",
    "status",
    "response_model",
    "stream",
    "service_tier",
    "request_id",
    "finish_reason",
    "error_type",
    "usage_source",
    "cost_source",
    "price_ref",
    "price_status",
    "api_key_fingerprint",
)
