"""The rollup tables keep room on their pages for updated rows (PostgreSQL), and the
migration that says so runs on the previous schema and back, on every database."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from llmledger.store.migrator import current_revision, downgrade_connection, upgrade_connection

TABLES = ("rollups_hourly", "rollups_daily")


def _fillfactors(conn: sa.Connection) -> dict[str, str | None]:
    """Each rollup table's fill factor as PostgreSQL stores it (None: the default)."""
    rows = conn.exec_driver_sql(
        "SELECT relname, reloptions FROM pg_class "
        "WHERE relname IN ('rollups_hourly', 'rollups_daily') "
        "AND relnamespace = current_schema()::regnamespace"
    ).all()
    out: dict[str, str | None] = {}
    for name, options in rows:
        found = [o.split("=", 1)[1] for o in options or () if o.startswith("fillfactor=")]
        out[name] = found[0] if found else None
    return out


@pytest.mark.unmigrated
def test_the_fillfactor_migration_runs_on_the_previous_schema_and_back(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            upgrade_connection(conn, "0015")
            postgres = conn.dialect.name == "postgresql"
            if postgres:
                assert _fillfactors(conn) == dict.fromkeys(TABLES)
        with engine.begin() as conn:
            upgrade_connection(conn, "0016")
            assert current_revision(conn) == "0016"
            if postgres:
                assert _fillfactors(conn) == dict.fromkeys(TABLES, "50")
        with engine.begin() as conn:
            downgrade_connection(conn, "0015")
            assert current_revision(conn) == "0015"
            if postgres:
                assert _fillfactors(conn) == dict.fromkeys(TABLES)
    finally:
        engine.dispose()
