"""Schema migrations, run programmatically with Alembic (no ``alembic.ini`` needed).

The scripts live in ``llmledger/store/migrations/versions``, are numbered
(``0001_initial.py``, ``0002_…``) and are append-only: a released migration is
never edited, a change to the schema is a new script.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

__all__ = ["MIGRATIONS_DIR", "current_revision", "head_revision", "upgrade_connection"]

#: Folder holding Alembic's ``env.py`` and the ``versions`` scripts.
MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# Any constant works; it only has to be the same for every llmledger process.
_PG_MIGRATION_LOCK = 0x6C6C6D6C


def _config() -> Config:
    config = Config()
    # ConfigParser interpolation treats % specially.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    return config


def upgrade_connection(connection: Connection, revision: str = "head") -> None:
    """Upgrade the database behind ``connection`` to ``revision`` inside its transaction.

    On PostgreSQL an advisory lock keeps two processes from migrating at once.

    Example:
        >>> import sqlalchemy as sa
        >>> engine = sa.create_engine("sqlite://")
        >>> with engine.begin() as conn:
        ...     upgrade_connection(conn)
        ...     current_revision(conn) == head_revision()
        True
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
    config = _config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def downgrade_connection(connection: Connection, revision: str) -> None:
    """Take the database behind ``connection`` back to ``revision`` inside its transaction
    (for tests that rebuild an older ledger; data a later migration added is dropped).

    Example:
        >>> import sqlalchemy as sa
        >>> engine = sa.create_engine("sqlite://")
        >>> with engine.begin() as conn:
        ...     upgrade_connection(conn)
        ...     downgrade_connection(conn, "0006")
        ...     current_revision(conn)
        '0006'
    """
    config = _config()
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at, or None before the first migration."""
    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest revision shipped with this version of llmledger."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships 0001
        raise RuntimeError("no migrations found")
    return head
