"""Alembic environment: runs on the connection handed in by ``llmledger.store.migrator``."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from llmledger.store.schema import metadata

connection: Connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    # SQLite runs DDL inside the transaction too, so a failed upgrade leaves nothing behind.
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
