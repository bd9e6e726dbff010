"""PostgreSQL's write path: COPY into temporary tables, then one INSERT … SELECT each.

Measured against psycopg 3's pipelined ``executemany`` on the same rows, COPY
plus ``INSERT … SELECT … ON CONFLICT DO NOTHING`` is about twice as fast (see
``docs/benchmarks.md``), and ``RETURNING id`` tells exactly which events were
new, so the tags of a duplicate are never inserted.
"""

from __future__ import annotations

from typing import Any

from llmledger.events import UsageEvent
from llmledger.store.codec import FIXED_COLUMNS, OPTIONAL_COLUMNS, EncodedBatch
from llmledger.store.schema import event_tags, events

__all__ = ["copy_batch"]

_EVENTS_IN = "llmledger_events_in"
_TAGS_IN = "llmledger_event_tags_in"
_EVENT_COLUMNS = ", ".join(f'"{name}"' for name in (*FIXED_COLUMNS, *OPTIONAL_COLUMNS))
_TAG_COLUMNS = ", ".join(f'"{column.name}"' for column in event_tags.columns)
_INFO_KEY = "llmledger_copy_tables"


def copy_batch(
    dbapi_connection: Any, info: dict[Any, Any], encoded: EncodedBatch
) -> list[UsageEvent]:
    """Insert an encoded batch in the connection's open transaction.

    Args:
        dbapi_connection: A psycopg 3 connection inside a transaction.
        info: Per-connection scratch space that outlives the transaction
            (SQLAlchemy's ``PoolProxiedConnection.info``); remembers that the
            temporary tables exist.
        encoded: Rows built with ``split_nulls=False`` (one group, every column).

    Returns:
        The events that were new, in batch order.
    """
    accepted = encoded.accepted
    if len({event.id for event in accepted}) != len(accepted):
        raise ValueError("copy_batch needs a batch without repeated ids")
    with dbapi_connection.cursor() as cursor:
        if not info.get(_INFO_KEY):
            # Temporary tables live as long as the session; ON COMMIT DELETE ROWS
            # empties them at every commit.
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {_EVENTS_IN} "
                f"(LIKE {events.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {_TAGS_IN} "
                f"(LIKE {event_tags.name}) ON COMMIT DELETE ROWS"
            )
        with cursor.copy(f"COPY {_EVENTS_IN} ({_EVENT_COLUMNS}) FROM STDIN") as copy:
            write_row = copy.write_row
            for rows in encoded.groups.values():
                for row in rows:
                    write_row(row)
        cursor.execute(
            f"INSERT INTO {events.name} ({_EVENT_COLUMNS}) "
            f"SELECT {_EVENT_COLUMNS} FROM {_EVENTS_IN} "
            "ON CONFLICT (id) DO NOTHING RETURNING id"
        )
        inserted = {event_id for (event_id,) in cursor.fetchall()}
        new = (
            accepted
            if len(inserted) == len(accepted)
            else [e for e in accepted if e.id in inserted]
        )
        tag_rows = encoded.tag_rows
        if new is not accepted:
            tag_rows = [row for row in tag_rows if row[3] in inserted]
        if tag_rows:
            with cursor.copy(f"COPY {_TAGS_IN} ({_TAG_COLUMNS}) FROM STDIN") as copy:
                write_row = copy.write_row
                for tag_row in tag_rows:
                    write_row(tag_row)
            cursor.execute(
                f"INSERT INTO {event_tags.name} ({_TAG_COLUMNS}) "
                f"SELECT {_TAG_COLUMNS} FROM {_TAGS_IN} ON CONFLICT DO NOTHING"
            )
    return new


def mark_tables_created(info: dict[Any, Any]) -> None:
    """Record, after a commit, that this connection's temporary tables exist."""
    info[_INFO_KEY] = True
