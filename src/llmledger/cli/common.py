"""What the CLI commands share: the ledger for this invocation, JSON output, tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import click

from llmledger.core.errors import InvalidEventError
from llmledger.core.settings import Settings, load_settings
from llmledger.runtime.ledger import Ledger, configure

__all__ = [
    "echo_json",
    "ledger_from",
    "money",
    "parse_tags",
    "parse_time",
    "print_table",
    "settings_from",
]


def _given(ctx: click.Context) -> dict[str, Any]:
    settings = (ctx.find_root().obj or {}).get("settings", {})
    return {k: v for k, v in settings.items() if v is not None}


def settings_from(ctx: click.Context) -> Settings:
    """The settings named by the global options (or the environment and config),
    without opening anything."""
    return load_settings(**_given(ctx))


def ledger_from(ctx: click.Context, *, database_url: str | None = None) -> Ledger:
    """The ledger named by the global options (or the environment and config), or the one
    at ``database_url`` with the other settings (the demo's own ledger)."""
    root = ctx.find_root()
    cached = root.meta.get("llmledger.runtime.ledger")
    if cached is None:
        given = _given(ctx)
        if database_url is not None:
            given["database_url"] = database_url
        cached = configure(**given)
        root.meta["llmledger.runtime.ledger"] = cached
        root.call_on_close(cached.close)
    assert isinstance(cached, Ledger)
    return cached


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    raise TypeError(f"cannot serialise {type(value).__name__}")


def echo_json(data: Any) -> None:
    """Print data as indented JSON (Decimals as strings, times as ISO 8601 UTC)."""
    click.echo(json.dumps(data, indent=2, default=_default, ensure_ascii=False))


def parse_time(value: str | None, name: str = "time") -> datetime | None:
    """An ISO 8601 time or date; a naive value is taken as UTC.

    Raises:
        InvalidEventError: when the text is not a time.
    """
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEventError(f"{name} is not an ISO 8601 time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_tags(values: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` options as a tag map.

    Raises:
        InvalidEventError: on an option without ``=``.
    """
    tags: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidEventError(f"tag must be KEY=VALUE, got {item!r}")
        tags[key] = value
    return tags


def money(value: Decimal | None, places: int = 6) -> str:
    """Money for people: fixed places, or 'unpriced'."""
    if value is None:
        return "unpriced"
    return f"${value:,.{places}f}"


def _cell_text(cell: Any) -> str:
    if cell is None:
        return ""
    if isinstance(cell, Decimal):
        return format(cell, "f")  # never 2E-8
    return str(cell)


def print_table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    right: Sequence[str] = (),
) -> None:
    """Print a table with rich (plain text when output is not a terminal)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=title, title_justify="left", show_edge=False, header_style="bold", expand=False
    )
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    for row in rows:
        table.add_row(*(_cell_text(cell) for cell in row))
    console = Console()
    if not console.is_terminal:
        # Piped output is read by people in files and by tools: never truncate cells.
        console = Console(width=10_000)
    console.print(table)
