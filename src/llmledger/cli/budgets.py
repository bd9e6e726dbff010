"""``llmledger budgets`` and ``llmledger alerts``: money budgets and the alert history."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import click

from llmledger.alerts import PERIODS, Budget
from llmledger.cli.common import echo_json, ledger_from, print_table
from llmledger.core.errors import BudgetError
from llmledger.monitor import Monitor

__all__ = ["COMMANDS"]


def _monitor(ctx: click.Context) -> Monitor:
    ledger = ledger_from(ctx)
    return Monitor(ledger.store, ledger.settings, lambda: ledger.pricer)


def _budget(ctx: click.Context, name: str) -> Budget:
    budget = ledger_from(ctx).store.get_budget(name)
    if budget is None:
        raise BudgetError(f"no budget {name!r} (see llmledger budgets list)")
    return budget


def _amount(text: str) -> Decimal:
    try:
        return Decimal(text.strip())
    except InvalidOperation:
        raise BudgetError(f"--amount {text!r} is not a number") from None


@click.group("budgets")
def budgets_group() -> None:
    """Money budgets: add, list, show, check, test, remove."""


@budgets_group.command("add")
@click.argument("name")
@click.option("--amount", required=True, help="The cap, e.g. 500 or 12.50.")
@click.option("--currency", default="USD", show_default=True, help="Currency of the amount.")
@click.option(
    "--period",
    type=click.Choice(PERIODS),
    default="month",
    show_default=True,
    help="Calendar day, ISO week or month in --tz, or rolling --days.",
)
@click.option("--days", type=int, help="Length of a rolling period in days.")
@click.option("--tz", default="UTC", show_default=True, help="Time zone of calendar periods.")
@click.option("--where", multiple=True, help="Scope: DIM=V1,V2 or DIM!=V (repeatable).")
@click.option("--tenant", help="The tenant whose calls the budget counts (and who sees it).")
@click.option(
    "--threshold",
    "thresholds",
    type=int,
    multiple=True,
    help="Percentage that raises an alert (repeatable; default 50, 80, 100).",
)
@click.option(
    "--notify",
    "recipients",
    multiple=True,
    help="Who is told: email:ADDRESS, webhook:URL or slack:URL (repeatable).",
)
@click.option("--inactive", is_flag=True, help="Store it switched off.")
@click.option("--json", "as_json", is_flag=True, help="Print the budget as JSON.")
@click.pass_context
def add_command(
    ctx: click.Context,
    name: str,
    amount: str,
    currency: str,
    period: str,
    days: int | None,
    tz: str,
    where: tuple[str, ...],
    tenant: str | None,
    thresholds: tuple[int, ...],
    recipients: tuple[str, ...],
    inactive: bool,
    as_json: bool,
) -> None:
    """Add a budget.

    \b
    Examples:
      llmledger budgets add openai-monthly --amount 500 --where provider=openai \\
          --notify email:ops@example.com
      llmledger budgets add acme-daily --amount 1 --period day --tenant acme \\
          --threshold 50 --threshold 100 --notify webhook:https://hooks.example.com/llm
      llmledger budgets add podcast --amount 20 --period rolling --days 7 \\
          --where tag:podcast_id=ep42
    """
    now = datetime.now(UTC)
    budget = Budget(
        name=name,
        amount=_amount(amount),
        currency=currency,
        period=period,  # type: ignore[arg-type]  # a click.Choice of PERIODS
        rolling_days=days,
        tz=tz,
        where=where,
        thresholds=thresholds or (50, 80, 100),
        recipients=recipients,
        tenant=tenant,
        active=not inactive,
        created=now,
    )
    ledger_from(ctx).store.add_budget(budget, now=now)
    if as_json:
        echo_json(budget.to_dict())
    else:
        click.echo(f"budget {budget.name} added ({budget.id})")


@budgets_group.command("list")
@click.option("--tenant", help="Only this tenant's budgets.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_command(ctx: click.Context, tenant: str | None, as_json: bool) -> None:
    """Every budget, by name."""
    found = ledger_from(ctx).store.list_budgets(tenant="*" if tenant is None else tenant)
    if as_json:
        echo_json([b.to_dict() for b in found])
        return
    rows = [
        (
            b.name,
            f"{b.amount:f} {b.currency}",
            b.period if b.period != "rolling" else f"rolling {b.rolling_days}d",
            b.tenant or "",
            " ".join(b.where),
            ",".join(map(str, b.thresholds)),
            " ".join(b.recipients),
            "yes" if b.active else "no",
        )
        for b in found
    ]
    print_table(
        None,
        ("name", "amount", "period", "tenant", "scope", "thresholds", "notify", "active"),
        rows,
        right=("amount",),
    )


def _print_statuses(
    monitor: Monitor, budgets: list[Budget], as_json: bool, errors: list[str] | None = None
) -> None:
    found = monitor.budget_statuses(budgets, datetime.now(UTC), errors=errors)
    for error in errors or ():
        click.echo(f"not checked: {error}", err=True)
    if as_json:
        echo_json([s.to_dict() for s in found])
        return
    rows = [
        (
            s.budget.name,
            f"{s.spent:.2f}",
            f"{s.budget.amount:f}",
            f"{s.remaining:.2f}",
            f"{s.percent}%",
            f"{s.forecast:.2f}",
            "" if s.exceeds_on is None else s.exceeds_on.isoformat(),
            ",".join(map(str, s.crossed)),
        )
        for s in found
    ]
    print_table(
        None,
        ("budget", "spent", "amount", "remaining", "used", "forecast", "exceeds on", "crossed"),
        rows,
        right=("spent", "amount", "remaining", "used", "forecast"),
    )


@budgets_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def show_command(ctx: click.Context, name: str, as_json: bool) -> None:
    """One budget's status: spent, remaining, % used, forecast, thresholds crossed."""
    _print_statuses(_monitor(ctx), [_budget(ctx, name)], as_json)


@budgets_group.command("check")
@click.option(
    "--alert/--no-alert",
    default=True,
    show_default=True,
    help="Also fire and deliver alerts (what the scheduled check does).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def check_command(ctx: click.Context, alert: bool, as_json: bool) -> None:
    """Check every active budget (and, with --alert, every alert rule) now."""
    monitor = _monitor(ctx)
    if not alert:
        _print_statuses(monitor, monitor.store.list_budgets(active_only=True), as_json, [])
        return
    now = datetime.now(UTC)
    result = monitor.check(now)
    delivery = monitor.deliver(now)
    if as_json:
        echo_json(
            {
                "budgets": [s.to_dict() for s in result.statuses],
                "fired": [a.to_dict() for a in result.fired],
                "resolved": [a.id for a in result.resolved],
                "delivered": len(delivery.delivered),
                "retrying": [m.to_dict() for m in delivery.retrying],
                "errors": result.errors,
            }
        )
        return
    for status in result.statuses:
        click.echo(
            f"{status.budget.name}: {status.spent:.2f} of {status.budget.amount:f} "
            f"{status.budget.currency} ({status.percent}%)"
        )
    for fired in result.fired:
        click.echo(f"fired: {fired.title}")
    click.echo(
        f"{len(result.fired)} alert(s) fired, {len(result.resolved)} resolved, "
        f"{len(delivery.delivered)} message(s) delivered, {len(delivery.retrying)} to retry"
    )
    for error in result.errors:
        click.echo(f"not checked: {error}", err=True)


@budgets_group.command("test")
@click.argument("name")
@click.pass_context
def test_command(ctx: click.Context, name: str) -> None:
    """Send a test notification to each of a budget's recipients now."""
    budget = _budget(ctx, name)
    if not budget.recipients:
        raise BudgetError(f"budget {budget.name!r} has no recipients (--notify)")
    origin = f"budget {budget.name}"
    _report_tests(_monitor(ctx).send_test(budget.recipients, origin, datetime.now(UTC)))


@budgets_group.command("remove")
@click.argument("name")
@click.pass_context
def remove_command(ctx: click.Context, name: str) -> None:
    """Remove a budget (its alerts stay in the history)."""
    budget = _budget(ctx, name)
    ledger_from(ctx).store.remove_budget(budget.id)
    click.echo(f"budget {budget.name} removed")


@click.group("alerts")
def alerts_group() -> None:
    """The alert history: list, acknowledge, test the alert recipients."""


@alerts_group.command("list")
@click.option(
    "--state", type=click.Choice(("firing", "resolved")), help="Only firing or resolved alerts."
)
@click.option("--tenant", help="Only this tenant's alerts.")
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(1, 10_000),
    default=50,
    show_default=True,
    help="Most alerts shown.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def alerts_list(
    ctx: click.Context, state: str | None, tenant: str | None, limit: int, as_json: bool
) -> None:
    """Alerts, newest first."""
    found = ledger_from(ctx).store.list_alerts(
        tenant="*" if tenant is None else tenant, state=state, limit=limit
    )
    if as_json:
        echo_json([a.to_dict() for a in found])
        return
    rows = [
        (
            a.id,
            a.fired.isoformat(timespec="seconds"),
            a.state,
            a.rule,
            a.tenant or "",
            a.title,
            "" if a.acked is None else f"by {a.acked_by}",
        )
        for a in found
    ]
    print_table(None, ("id", "fired", "state", "rule", "tenant", "title", "acked"), rows)


@alerts_group.command("ack")
@click.argument("alert_id")
@click.option("--by", help="Who acknowledges (default: the user name).")
@click.pass_context
def alerts_ack(ctx: click.Context, alert_id: str, by: str | None) -> None:
    """Acknowledge an alert."""
    import getpass

    acked = ledger_from(ctx).store.ack_alert(
        alert_id, by=by or getpass.getuser(), now=datetime.now(UTC)
    )
    if acked is None:
        raise BudgetError(f"no alert {alert_id!r} (see llmledger alerts list)")
    click.echo(f"alert {acked.id} acknowledged by {acked.acked_by}")


@alerts_group.command("test")
@click.pass_context
def alerts_test(ctx: click.Context) -> None:
    """Send a test notification to each of the alert recipients (alert_recipients) now."""
    monitor = _monitor(ctx)
    recipients = monitor.rules.recipients
    if not recipients:
        raise BudgetError("no alert recipients are set (alert_recipients)")
    _report_tests(monitor.send_test(recipients, "alert recipients", datetime.now(UTC)))


def _report_tests(results: list[tuple[str, str | None]]) -> None:
    failed = 0
    for recipient, error in results:
        click.echo(f"{recipient}: {'delivered' if error is None else error}")
        failed += error is not None
    if failed:
        raise click.ClickException(f"{failed} of {len(results)} test notification(s) failed")


@click.command("worker")
@click.option("--once", is_flag=True, help="Run the due jobs once and exit (for cron).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    help="Seconds between two checks (default: the check_interval setting, 300).",
)
@click.pass_context
def worker_command(ctx: click.Context, once: bool, interval: float | None) -> None:
    """Run the scheduled jobs alone: budget and alert checks, deliveries, the price check.

    Any number of workers and `llmledger serve` instances can run over one
    database: one leads at a time (a lease row in the database).
    """
    import signal

    from llmledger.monitor import Scheduler

    scheduler = Scheduler(_monitor(ctx), interval=interval)
    if once:
        if not scheduler.run_once():
            click.echo("another instance leads the jobs; nothing run", err=True)
        scheduler.stop()
        return

    def stop(_signum: int, _frame: object) -> None:
        scheduler.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    click.echo(
        f"llmledger worker: checking every {scheduler.interval.total_seconds():g} s", err=True
    )
    scheduler.run()
    scheduler.stop()


COMMANDS = [budgets_group, alerts_group, worker_command]
