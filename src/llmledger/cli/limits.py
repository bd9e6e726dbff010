"""``llmledger limits``: spending limits of the ledger, and the pre-call check."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import click

from llmledger.cli.common import echo_json, ledger_from, print_table
from llmledger.core.limits import MODES, PERIODS, SCOPES, Decision, Limit
from llmledger.wire.limits import decision_json, limit_json

__all__ = ["COMMANDS"]


def _amount(value: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not a number") from None


def _units(limit: Limit, units: int) -> str:
    if limit.metric == "cost":
        return format((Decimal(units) / 10**9).normalize(), "f")
    return str(units)


def _state_json(limit: Limit, state: tuple[datetime, int, int] | None) -> dict[str, Any]:
    window, used, reserved = state if state is not None else (None, None, None)
    return {**limit_json(limit), "window": window, "used": used, "reserved": reserved}


def _row(limit: Limit, state: tuple[datetime, int, int] | None) -> tuple[str, ...]:
    used = "" if state is None else _units(limit, state[1])
    reserved = "" if state is None else _units(limit, state[2])
    return (
        limit.id,
        limit.scope,
        limit.value,
        limit.tenant or "",
        limit.metric,
        format(limit.amount, "f"),
        limit.period,
        limit.mode,
        used,
        reserved,
    )


_HEADERS = (
    "id",
    "scope",
    "value",
    "tenant",
    "metric",
    "amount",
    "per",
    "mode",
    "used",
    "in flight",
)


@click.group("limits")
def limits_group() -> None:
    """Spending limits: cost, tokens or requests per tenant, user, feature or key."""


@limits_group.command("add")
@click.argument("scope", type=click.Choice(SCOPES))
@click.argument("value")
@click.option("--cost", help="Most USD per period.")
@click.option(
    "--tokens", type=click.IntRange(min=1), help="Most tokens (input + output) per period."
)
@click.option("--requests", type=click.IntRange(min=1), help="Most calls per period.")
@click.option(
    "--per", "period", type=click.Choice(PERIODS), required=True, help="The calendar window (UTC)."
)
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="block",
    show_default=True,
    help="block: refuse calls past the limit; warn: let them through and record it.",
)
@click.option("--tenant", help="Count only this tenant's calls (for user, feature and key limits).")
@click.option("--name", help="A label for people.")
@click.option("--json", "as_json", is_flag=True, help="Print the limit as JSON.")
@click.pass_context
def add_command(
    ctx: click.Context,
    scope: str,
    value: str,
    cost: str | None,
    tokens: int | None,
    requests: int | None,
    period: str,
    mode: str,
    tenant: str | None,
    name: str | None,
    as_json: bool,
) -> None:
    """Add a limit; guarded calls (setting ``limits``) are checked against it.

    \b
    Examples:
      llmledger limits add tenant acme --cost 50 --per month
      llmledger limits add user ana --tenant acme --tokens 200000 --per day
      llmledger limits add feature search --requests 1000 --per hour --mode warn
    """
    given = [
        (m, v)
        for m, v in (("cost", cost), ("tokens", tokens), ("requests", requests))
        if v is not None
    ]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --cost, --tokens and --requests")
    metric, amount = given[0]
    limit = Limit(
        scope=scope,  # type: ignore[arg-type]
        value=value,
        metric=metric,  # type: ignore[arg-type]
        amount=_amount(str(amount)),
        period=period,  # type: ignore[arg-type]
        mode=mode,  # type: ignore[arg-type]
        tenant=tenant,
        name=name,
        created=datetime.now(UTC),
    ).validate()
    ledger_from(ctx).store.add_limit(limit)
    if as_json:
        echo_json(limit_json(limit))
    else:
        click.echo(f"added limit {limit.id}")


@limits_group.command("list")
@click.option("--tenant", help="Only the limits of this tenant.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def list_command(ctx: click.Context, tenant: str | None, as_json: bool) -> None:
    """The limits, with what is used and in flight in their current windows."""
    store = ledger_from(ctx).store
    found = store.list_limits(tenant=tenant)
    states = store.limit_states(found, now=datetime.now(UTC))
    if as_json:
        echo_json([_state_json(x, states.get(x.id)) for x in found])
        return
    print_table(None, _HEADERS, [_row(x, states.get(x.id)) for x in found])


@limits_group.command("show")
@click.argument("limit_id")
@click.option("--json", "as_json", is_flag=True, help="Print the limit as JSON.")
@click.pass_context
def show_command(ctx: click.Context, limit_id: str, as_json: bool) -> None:
    """One limit with its current window."""
    store = ledger_from(ctx).store
    limit = store.get_limit(limit_id)
    if limit is None:
        raise click.ClickException(f"no limit {limit_id!r}")
    state = store.limit_states([limit], now=datetime.now(UTC)).get(limit.id)
    if as_json:
        echo_json(_state_json(limit, state))
        return
    print_table(None, _HEADERS, [_row(limit, state)])


@limits_group.command("remove")
@click.argument("limit_id")
@click.pass_context
def remove_command(ctx: click.Context, limit_id: str) -> None:
    """Remove a limit with its counters."""
    if ledger_from(ctx).store.remove_limit(limit_id) is None:
        raise click.ClickException(f"no limit {limit_id!r}")
    click.echo(f"removed limit {limit_id}")


@limits_group.command("check")
@click.option("--tenant", help="The tenant of the call.")
@click.option("--user", help="The user of the call.")
@click.option("--feature", help="The feature of the call.")
@click.option("--cost", help="The call's expected cost in USD.")
@click.option("--tokens", type=click.IntRange(min=0), help="The call's expected tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as JSON.")
@click.pass_context
def check_command(
    ctx: click.Context,
    tenant: str | None,
    user: str | None,
    feature: str | None,
    cost: str | None,
    tokens: int | None,
    as_json: bool,
) -> None:
    """Would a call fit under the limits now? Exits 1 when it would be refused.

    \b
    Example:
      llmledger limits check --tenant acme --user ana --cost 0.02 --tokens 1500
    """
    from llmledger.runtime.limits import check

    result = check(
        tenant=tenant,
        user=user,
        feature=feature,
        cost=None if cost is None else _amount(cost),
        tokens=tokens,
        ledger=ledger_from(ctx),
    )
    if as_json:
        echo_json(
            {
                "allowed": result.allowed,
                "unavailable": result.unavailable,
                "decisions": [decision_json(d) for d in result.decisions],
            }
        )
    else:
        for decision in result.decisions:
            click.echo(f"{_outcome(decision)}: {decision.describe()}")
        if result.unavailable:
            click.echo(f"the limit store cannot be reached: {result.unavailable}")
        if not result.decisions and not result.unavailable:
            click.echo("no limit applies")
    if not result.allowed:
        ctx.exit(1)


def _outcome(decision: Decision) -> str:
    return {"ok": "ok", "warn": "WARN", "block": "BLOCK"}[decision.outcome]


COMMANDS = [limits_group]
