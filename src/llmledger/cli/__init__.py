"""The ``llmledger`` command: thin views that parse, call the library and render.

Commands are loaded on demand: ``llmledger --help`` lists them from
:data:`COMMANDS` without importing any of them, and ``llmledger logs`` imports
the logs module only, so no command pays for another's database, HTTP or
pricing libraries at start-up.

Every error a person can cause prints as one line on stderr with a non-zero
exit: llmledger's own errors (:class:`~llmledger.core.errors.LedgerError`),
errors of the file system, the database and the HTTP client (see
:func:`~llmledger.core.errors.as_ledger_error`) and click's usage errors alike.
"""

from __future__ import annotations

import errno
import importlib
import sys
from typing import Any, NamedTuple

import click
from click.exceptions import NoArgsIsHelpError

from llmledger.core.errors import as_ledger_error

__all__ = ["COMMANDS", "CommandEntry", "main", "one_line"]


class CommandEntry(NamedTuple):
    """Where a top-level command lives, and its help line for ``llmledger --help``.

    Attributes:
        target: ``module:attribute`` of the click command.
        summary: The first line of the command's help (a test keeps them equal).
    """

    target: str
    summary: str


#: Every top-level command, loaded only when it runs (or its own help is asked for).
COMMANDS: dict[str, CommandEntry] = {
    "alerts": CommandEntry(
        "llmledger.cli.budgets:alerts_group",
        "The alert history: list, acknowledge, test the alert recipients.",
    ),
    "budgets": CommandEntry(
        "llmledger.cli.budgets:budgets_group",
        "Money budgets: add, list, show, check, test, remove.",
    ),
    "audit": CommandEntry(
        "llmledger.cli.audit:audit_command",
        "Find LLM calls that escape tracking: untracked SDK clients, raw HTTP calls, keys.",
    ),
    "cost": CommandEntry("llmledger.cli.cost:cost_command", "What a call cost, bucket by bucket."),
    "db": CommandEntry("llmledger.cli.db:db_group", "The ledger database."),
    "delete": CommandEntry(
        "llmledger.cli.delete:delete_command",
        "Delete events by filter (test data, a tenant that left), with a dry run.",
    ),
    "demo": CommandEntry(
        "llmledger.cli.demo:demo_command",
        "Fill a demo ledger from real SDK calls to a local simulated provider, then report.",
    ),
    "import": CommandEntry(
        "llmledger.cli.importing:import_command",
        "Import a CSV or JSON Lines log of LLM calls, mapping its columns onto events.",
    ),
    "keys": CommandEntry(
        "llmledger.cli.keys:keys_group", "API keys of the service: create, list, revoke."
    ),
    "limits": CommandEntry(
        "llmledger.cli.limits:limits_group",
        "Spending limits: cost, tokens or requests per tenant, user, feature or key.",
    ),
    "logs": CommandEntry(
        "llmledger.cli.logs:logs_command", "The most recent events, newest first."
    ),
    "prices": CommandEntry(
        "llmledger.cli.prices:prices_group",
        "Prices: the bundled catalog with your own price files on top.",
    ),
    "reconcile": CommandEntry(
        "llmledger.cli.reconcile:reconcile_command",
        "Compare the provider's billed usage and cost with the ledger, day by model.",
    ),
    "record": CommandEntry("llmledger.cli.logs:record_command", "Record one call from the shell."),
    "report": CommandEntry(
        "llmledger.cli.report:report_command",
        "What was spent, on what, for whom: totals, breakdowns, trends and forecasts.",
    ),
    "reprice": CommandEntry(
        "llmledger.cli.reprice:reprice_command",
        "Price stored events again from the prices in force at each event's time.",
    ),
    "serve": CommandEntry(
        "llmledger.cli.serve:serve_command",
        "Run the llmledger service: ingest, events, reports, prices and keys over HTTP.",
    ),
    "sim": CommandEntry(
        "llmledger.cli.sim:sim_command",
        "Run the simulated OpenAI-, Anthropic- and Gemini-compatible provider until stopped.",
    ),
    "worker": CommandEntry(
        "llmledger.cli.budgets:worker_command",
        "Run the scheduled jobs alone: budget and alert checks, deliveries, the price check.",
    ),
    "spool": CommandEntry(
        "llmledger.cli.spool:spool_group",
        "Events waiting on this machine for their database or service: status, replay, requeue.",
    ),
}


def one_line(exc: BaseException) -> str:
    """An error's message on one line (a driver's or a list's line breaks joined).

    Example:
        >>> one_line(ValueError("cannot open\\n  the file"))
        'cannot open; the file'
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


def _shorten(text: str, limit: int) -> str:
    """Text cut at a word to fit ``limit`` characters, as click shortens help lines."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 3, 1)].rsplit(" ", 1)[0] + "..."


class _UsageError(click.UsageError):
    """A usage error shown as one line, pointing at the command's help."""

    def show(self, file: Any = None) -> None:
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        click.echo(f"Error: {one_line(self)}{hint}", file=file or sys.stderr)


def _usage_error(exc: click.UsageError) -> click.UsageError:
    # Asked for the help by giving no arguments: that is help, not an error.
    if isinstance(exc, NoArgsIsHelpError | _UsageError):
        return exc
    return _UsageError(exc.format_message(), exc.ctx)


class _LazyGroup(click.Group):
    """The top-level group: loads a command's module only when that command is used,
    and prints every error a person can cause as one line with exit status 1 (2 for
    usage errors)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, _, attribute = entry.target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The summaries come from the table, so listing commands imports none of them.
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, _shorten(COMMANDS[name].summary, limit)) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _usage_error(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _usage_error(exc) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
                raise  # click handles a closed pipe (``llmledger logs | head``)
            # The person's environment (a file, the database, the service), not a bug.
            error = as_ledger_error(exc)
            if error is None:
                raise
            raise click.ClickException(one_line(error)) from None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
