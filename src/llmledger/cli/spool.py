"""``llmledger spool``: the journal on this machine (``$LLMLEDGER_HOME/spool``).

Every event waits in the journal of its destination (a database or a service)
until its store has it; batches a service or a store refused for good are set
aside in ``spool/refused``.  These commands show what is waiting and what was
dropped, send what dead processes left now, and put refused batches back in
line once the cause is fixed.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from llmledger.cli.common import echo_json, ledger_from, print_table
from llmledger.runtime.journal import Journal
from llmledger.runtime.spool import (
    journal_folder,
    journal_status,
    read_set_aside,
    refused_batches,
)

__all__ = ["COMMANDS"]


@click.group("spool")
def spool_group() -> None:
    """Events waiting on this machine for their database or service: status, replay, requeue."""


@spool_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.pass_context
def status_command(ctx: click.Context, as_json: bool) -> None:
    """Events waiting in the journal, dropped at its limit, and refused for good."""
    settings = ledger_from(ctx).settings
    status = journal_status(settings.home / "spool")
    figures = {
        "folder": str(status.folder),
        "waiting_batches": status.waiting_batches,
        "waiting_events": status.waiting_events,
        "dropped_events": status.dropped_events,
        "refused_batches": status.refused_batches,
        "refused_events": status.refused_events,
        "bytes": status.bytes,
        "limit_bytes": settings.spool_limit,
        "destinations": list(status.destinations),
    }
    if as_json:
        echo_json(figures)
        return
    rows = [
        (
            f"waiting for {d['destination']}",
            f"{d['waiting_batches']:,}",
            f"{d['waiting_events']:,}",
        )
        for d in status.destinations
    ]
    if not rows:
        rows.append(("waiting to be stored", "0", "0"))
    rows.append(("refused, set aside", f"{status.refused_batches:,}", f"{status.refused_events:,}"))
    rows.append(("dropped at the limit", "", f"{status.dropped_events:,}"))
    print_table(
        f"spool {status.folder}", ("", "batches", "events"), rows, right=("batches", "events")
    )
    click.echo(f"{status.bytes:,} of {settings.spool_limit:,} bytes used")


@spool_group.command("replay")
@click.option(
    "--timeout", type=float, default=60.0, show_default=True, help="Most seconds to spend."
)
@click.pass_context
def replay_command(ctx: click.Context, timeout: float) -> None:
    """Store what processes that ended left in the journal of this ledger's destination now."""
    ledger = ledger_from(ctx)
    done = ledger.flush(timeout)
    stats = ledger.stats()
    left = journal_status(ledger.settings.home / "spool")
    waiting = sum(
        d["waiting_events"]
        for d in left.destinations
        if d["folder"] == str(journal_folder(ledger.settings.home / "spool", ledger.destination))
    )
    click.echo(
        f"{stats['written']:,} events stored, {stats['failed']:,} refused and set aside, "
        f"{waiting:,} still waiting"
    )
    if not done or waiting:
        raise click.ClickException(
            f"not every event was stored ({stats['down'] or 'see the log'}); try again later"
        )


@spool_group.command("requeue")
@click.pass_context
def requeue_command(ctx: click.Context) -> None:
    """Put batches set aside in spool/refused back in the journal, to be sent again."""
    from llmledger.wire.parse import parse_event

    ledger = ledger_from(ctx)
    spool = ledger.settings.home / "spool"
    journal = Journal(
        journal_folder(spool, ledger.destination), limit_bytes=ledger.settings.spool_limit
    )
    moved = 0
    try:
        for path in refused_batches(spool):
            try:
                items = read_set_aside(path)
                events = [parse_event(item, now=datetime.now(UTC)) for item in items]
            except Exception as exc:
                click.echo(f"{path.name} left in place: {exc}", err=True)
                continue
            appended = True
            for event, item in zip(events, items, strict=True):
                text = item.get("content")  # an event's kept text goes back with it
                kept = (
                    (text.get("prompt"), text.get("response")) if isinstance(text, dict) else None
                )
                appended = journal.append(event, kept) and appended
            if appended:
                path.unlink()
                moved += len(events)
    finally:
        journal.close()
    click.echo(f"{moved:,} events back in the journal; `llmledger spool replay` sends them now")


COMMANDS = [spool_group]
