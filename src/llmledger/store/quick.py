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

import re
import sqlite3
from pathlib import Path

from llmledger.core.events import UsageEvent
from llmledger.store.codec import FIXED_COLUMNS, OPTIONAL_COLUMNS, decode_event

__all__ = ["recent_events", "schema_head"]

_VERSIONS = Path(__file__).with_name("migrations") / "versions"
_PREFIX = "sqlite:///"
_REVISION = re.compile(r'^revision = "(\w+)"', re.M)
_DOWN_REVISION = re.compile(r'^down_revision: str \| None = "(\w+)"', re.M)


def schema_head() -> str:
    """The newest schema revision shipped: the one no migration names as its
    ``down_revision`` (read from the scripts' text, without importing Alembic).

    Example:
        >>> len(schema_head()), schema_head().isdigit()
        (4, True)
    """
    revisions: list[str] = []
    followed: set[str] = set()
    for path in sorted(_VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py")):
        text = path.read_text(encoding="utf-8")
        found = _REVISION.search(text)
        revisions.append(found.group(1) if found else path.name[:4])
        before = _DOWN_REVISION.search(text)
        if before:
            followed.add(before.group(1))
    heads = [revision for revision in revisions if revision not in followed]
    # Numbers are not always in chain order once branches are merged; the chain decides.
    return heads[-1] if heads else revisions[-1]


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
