"""``llmledger db``: where the ledger is, migrating it, backing it up."""

from __future__ import annotations

from pathlib import Path

import click

from llmledger.cli.common import ledger_from
from llmledger.core.errors import StoreError

__all__ = ["COMMANDS"]


@click.group("db")
def db_group() -> None:
    """The ledger database."""


@db_group.command("path")
@click.pass_context
def db_path(ctx: click.Context) -> None:
    """Print the ledger's location (file path for SQLite, URL otherwise)."""
    ledger = ledger_from(ctx)
    url = ledger.settings.resolved_database_url
    if url.startswith("sqlite:///"):
        click.echo(url.removeprefix("sqlite:///"))
    else:
        click.echo(url)


@db_group.command("migrate")
@click.pass_context
def db_migrate(ctx: click.Context) -> None:
    """Create the ledger or upgrade it to the current schema."""
    ledger_from(ctx).store.migrate()
    click.echo("ledger schema is up to date")


@db_group.command("backup")
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def db_backup(ctx: click.Context, dest: Path) -> None:
    """Copy the SQLite ledger to DEST, safely, while it may be in use."""
    if dest.exists():
        raise StoreError(f"{dest} exists; choose a new file name")
    ledger_from(ctx).store.backup(dest)
    click.echo(f"backed up to {dest}")


def _add_rollup_command() -> None:
    from llmledger.cli.report import rebuild_rollups_command

    db_group.add_command(rebuild_rollups_command)


_add_rollup_command()

COMMANDS = [db_group]
