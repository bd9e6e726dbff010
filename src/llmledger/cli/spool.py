"""``llmledger spool``: the remote sink's spool on this machine (``$LLMLEDGER_HOME/spool``).

With ``LLMLEDGER_URL`` set, batches the service could not take wait in the
spool and are sent again by the applications themselves; these commands show
what is waiting, send it now, and put batches the service refused for good
back in line once the cause is fixed.
"""

from __future__ import annotations

import click

from llmledger.cli.common import echo_json, ledger_from, print_table
from llmledger.core.errors import ConfigError
from llmledger.runtime.remote import RemoteSink, requeue_refused, spool_status

__all__ = ["COMMANDS"]


@click.group("spool")
def spool_group() -> None:
    """Events waiting on this machine for the llmledger service: status, replay, requeue."""


@spool_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.pass_context
def status_command(ctx: click.Context, as_json: bool) -> None:
    """Batches and events waiting to be sent, and those the service refused for good."""
    settings = ledger_from(ctx).settings
    status = spool_status(settings.home / "spool")
    figures = {
        "folder": str(status.folder),
        "waiting_batches": status.waiting_batches,
        "waiting_events": status.waiting_events,
        "refused_batches": status.refused_batches,
        "refused_events": status.refused_events,
        "bytes": status.bytes,
        "limit_bytes": settings.spool_limit,
    }
    if as_json:
        echo_json(figures)
        return
    print_table(
        f"spool {status.folder}",
        ("", "batches", "events"),
        [
            ("waiting to be sent", f"{status.waiting_batches:,}", f"{status.waiting_events:,}"),
            ("refused, set aside", f"{status.refused_batches:,}", f"{status.refused_events:,}"),
        ],
        right=("batches", "events"),
    )
    click.echo(f"{status.bytes:,} of {settings.spool_limit:,} bytes used")


@spool_group.command("replay")
@click.pass_context
def replay_command(ctx: click.Context) -> None:
    """Send the waiting batches to the service now, oldest first (needs LLMLEDGER_URL)."""
    settings = ledger_from(ctx).settings
    if not settings.url:
        raise ConfigError("LLMLEDGER_URL is not set: there is no service to send the spool to")
    sink = RemoteSink.from_settings(settings, background=False)
    try:
        stored = sink.replay()
    finally:
        sink.close()
    left = sink.spooled_events
    click.echo(
        f"{stored:,} events stored, {sink.stats.duplicates:,} already there, "
        f"{sink.stats.refused:,} refused and set aside, {left:,} still waiting"
    )
    if left:
        raise click.ClickException("the service did not take every batch; try again later")


@spool_group.command("requeue")
@click.pass_context
def requeue_command(ctx: click.Context) -> None:
    """Put batches the service refused back in the spool, to be sent again."""
    folder = ledger_from(ctx).settings.home / "spool"
    moved = requeue_refused(folder)
    click.echo(f"{moved:,} events back in {folder}; `llmledger spool replay` sends them now")


COMMANDS = [spool_group]
