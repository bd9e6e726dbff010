"""Reads of a SQLite ledger with the ``sqlite3`` module alone, for commands that must start fast.

Importing SQLAlchemy and Alembic costs several hundred milliseconds, more than
``llmledger logs`` may take in all.  When the ledger is a SQLite file already
at the newest schema, :func:`recent_events` reads it read-only through
``sqlite3`` with the same row decoding as the store; in every other case (a
PostgreSQL URL, a ledger not created yet or not migrated, a file it cannot open)
it answers None and the caller opens the full store, which creates and
migrates as usual.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from llmledger.core.events import UsageEvent
from llmledger.store.codec import FIXED_COLUMNS, OPTIONAL_COLUMNS, decode_event

__all__ = ["recent_events", "schema_head"]

_VERSIONS = Path(__file__).with_name("migrations") / "versions"
_PREFIX = "sqlite:///"


def schema_head() -> str:
    """The newest schema revision shipped, from the migration files' names (``0005_…``).

    Example:
        >>> len(schema_head()), schema_head().isdigit()
        (4, True)
    """
    names = sorted(path.name for path in _VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))
    return names[-1][:4]


def _sqlite_file(url: str) -> Path | None:
    """The file of a plain ``sqlite:///PATH`` URL, or None for anything else."""
    if not url.startswith(_PREFIX) or "?" in url:
        return None
    database = url.removeprefix(_PREFIX)
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def recent_events(url: str, limit: int) -> list[UsageEvent] | None:
    """The newest events first, read without SQLAlchemy, or None when this path does not apply.

    Args:
        url: The ledger's database URL.
        limit: How many events.

    Returns:
        The events, or None for a URL other than a SQLite file, a file that does
        not exist or cannot be opened, or a ledger not at the newest schema.

    Example:
        >>> from llmledger.store import open_store
        >>> import tempfile
        >>> url = f"sqlite:///{tempfile.mkdtemp()}/ledger.db"
        >>> recent_events(url, 5) is None  # not created yet
        True
        >>> open_store(url).close()
        >>> recent_events(url, 5)
        []
    """
    path = _sqlite_file(url)
    if path is None or not path.is_file():
        return None
    columns = ", ".join(f'"{name}"' for name in FIXED_COLUMNS + OPTIONAL_COLUMNS)
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
    except sqlite3.Error:
        return None
    try:
        version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        if version != [(schema_head(),)]:
            return None
        rows = conn.execute(
            f"SELECT {columns} FROM events ORDER BY ts_us DESC, id DESC LIMIT ?", (limit,)
        ).fetchall()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return [decode_event(row) for row in rows]
