"""``llmledger serve``: the HTTP API over the ledger database."""

from __future__ import annotations

import os

import click

from llmledger.cli.common import ledger_from
from llmledger.core.errors import MissingDependencyError

__all__ = ["COMMANDS"]


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes (each a stateless instance over the same database).",
)
@click.option(
    "--log-level",
    type=click.Choice(("critical", "error", "warning", "info", "debug")),
    default="info",
    show_default=True,
    help="Server log level.",
)
@click.pass_context
def serve_command(ctx: click.Context, host: str, port: int, workers: int, log_level: str) -> None:
    """Run the llmledger service: ingest, events, reports, prices and keys over HTTP.

    SQLite by default; set --database-url (or LLMLEDGER_DATABASE_URL) to a
    PostgreSQL URL in production. Create the first admin key with
    `llmledger keys create --role admin`. API docs at http://HOST:PORT/docs.

    \b
    Example:
      llmledger --database-url postgresql+psycopg://app@db/ledger serve --host 0.0.0.0
    """
    try:
        import uvicorn

        from llmledger.server.app import create_app
    except ImportError as exc:
        raise MissingDependencyError(
            f"the service needs its extra: pip install 'llmledger[server]' ({exc})"
        ) from None
    ledger = ledger_from(ctx)
    settings = ledger.settings
    ledger.store.close()  # migrated now, before any worker starts
    if workers == 1:
        app = create_app(settings, own_process=True)
        uvicorn.run(app, host=host, port=port, log_level=log_level)
        return
    # Workers are separate processes: they read the same settings from the environment.
    os.environ["LLMLEDGER_HOME"] = str(settings.home)
    if settings.database_url:
        os.environ["LLMLEDGER_DATABASE_URL"] = settings.database_url
    uvicorn.run(
        "llmledger.server.app:create_process_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
    )


COMMANDS = [serve_command]
