"""The ``llmledger`` command: thin views that parse, call the library and render."""

from __future__ import annotations

from typing import Any

import click

from llmledger.core.errors import LedgerError

__all__ = ["main"]


class _Group(click.Group):
    """Prints llmledger's own errors as one line on stderr, with exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LedgerError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llmledger")
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    envvar="LLMLEDGER_HOME",
    help="Folder for all local state (default: the platform's user data folder).",
)
@click.option(
    "--database-url",
    envvar="LLMLEDGER_DATABASE_URL",
    help="Ledger database URL (default: SQLite in the home folder).",
)
@click.pass_context
def main(ctx: click.Context, home: str | None, database_url: str | None) -> None:
    """Record, price and report LLM provider usage."""
    ctx.ensure_object(dict)
    ctx.obj["settings"] = {"home": home, "database_url": database_url}


def _register() -> None:
    from llmledger.cli import cost, db, demo, keys, logs, prices, report, serve, spool

    for module in (cost, db, demo, logs, prices, report, serve, keys, spool):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
