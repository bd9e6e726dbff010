"""The test databases themselves: a copied template is what migrating leaves, and each is new."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from llmledger.core.events import UsageEvent
from llmledger.store import SqlStore, migrate
from llmledger.store.migrator import head_revision
from tests.conftest import LedgerTemplates, schema_url


@contextmanager
def freshly_migrated(db_backend: str, templates: LedgerTemplates, tmp_path: Path) -> Iterator[str]:
    """A database migrated from empty by Alembic, as users' databases are."""
    if db_backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
        migrate(url)
        yield url
        return
    schema = templates.postgres.create()
    try:
        url = schema_url(templates.postgres.base, schema)
        migrate(url)
        yield url
    finally:
        templates.postgres.drop(schema)


def described(url: str) -> dict[str, Any]:
    """Every table's columns, keys and indexes, and the rows of the migration version table."""
    with SqlStore(url) as store:
        inspector = sa.inspect(store.engine)
        shape: dict[str, Any] = {}
        for table in sorted(inspector.get_table_names()):
            shape[table] = (
                [
                    (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                    for c in inspector.get_columns(table)
                ],
                inspector.get_pk_constraint(table)["constrained_columns"],
                sorted((i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(table)),
                sorted(str(u["column_names"]) for u in inspector.get_unique_constraints(table)),
                sorted(str(f["referred_table"]) for f in inspector.get_foreign_keys(table)),
            )
        with store.engine.connect() as conn:
            shape["versions"] = [
                tuple(r) for r in conn.exec_driver_sql("SELECT * FROM alembic_version")
            ]
    return shape


def test_a_copied_template_is_what_migrating_an_empty_database_leaves(
    db_url: str, db_backend: str, ledger_templates: LedgerTemplates, tmp_path: Path
) -> None:
    with SqlStore(db_url) as store:
        assert store.schema_version() == head_revision()
    with freshly_migrated(db_backend, ledger_templates, tmp_path) as fresh:
        assert described(db_url) == described(fresh)


@pytest.mark.unmigrated
def test_an_unmigrated_database_is_empty(db_url: str) -> None:
    with SqlStore(db_url) as store:
        assert store.schema_version() is None
        assert sa.inspect(store.engine).get_table_names() == []


def test_what_a_test_writes_stays_in_its_own_copy(
    db_url: str, db_backend: str, ledger_templates: LedgerTemplates, tmp_path: Path
) -> None:
    event = UsageEvent(provider="openai", model="gpt-4o", ts=datetime.now(UTC))
    with SqlStore(db_url) as store:
        assert store.count() == 0
        store.write([event])
        assert store.count() == 1
    if db_backend == "sqlite":
        other = ledger_templates.sqlite_copy(tmp_path / "other.db")
        with SqlStore(other) as store:
            assert store.count() == 0
        return
    schema = ledger_templates.postgres.migrated_copy()
    try:
        with SqlStore(schema_url(ledger_templates.postgres.base, schema)) as store:
            assert store.count() == 0
    finally:
        ledger_templates.postgres.drop(schema)
