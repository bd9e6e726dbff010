"""``llmledger keys``: API keys of the service, made directly in the ledger database.

This is how the first admin key is made; later keys can also be made through
the API (``POST /v1/keys``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from llmledger.cli.common import echo_json, ledger_from, print_table
from llmledger.server.keys import ROLES, ApiKey, KeyStore

__all__ = ["COMMANDS"]


def _store(ctx: click.Context) -> KeyStore:
    return KeyStore(ledger_from(ctx).store)


def _as_json(key: ApiKey) -> dict[str, object]:
    return {
        "id": key.id,
        "prefix": key.prefix,
        "role": key.role,
        "tenant": key.tenant,
        "user": key.user,
        "name": key.name,
        "created": key.created,
        "revoked": key.revoked,
    }


@click.group("keys")
def keys_group() -> None:
    """API keys of the service: create, list, revoke."""


@keys_group.command("create")
@click.option(
    "--role",
    type=click.Choice(ROLES),
    required=True,
    help="admin: everything; reader: reads in its tenant; ingest: writes events only.",
)
@click.option("--tenant", help="Tenant the key is confined to (required for reader and ingest).")
@click.option("--user", help="For a reader key: only this user's calls.")
@click.option("--name", help="A label for people (where the key is used).")
@click.option("--json", "as_json", is_flag=True, help="Print the key and its secret as JSON.")
@click.pass_context
def create_command(
    ctx: click.Context,
    role: str,
    tenant: str | None,
    user: str | None,
    name: str | None,
    as_json: bool,
) -> None:
    """Create a key and print its secret (shown this once; only its hash is stored).

    \b
    Examples:
      llmledger keys create --role admin
      llmledger keys create --role ingest --tenant acme --name "acme app"
      llmledger keys create --role reader --tenant acme --user ana --json
    """
    new = _store(ctx).create(role, tenant=tenant, user=user, name=name, now=datetime.now(UTC))
    if as_json:
        echo_json({**_as_json(new.key), "secret": new.secret})
        return
    click.echo(new.secret)
    click.echo(
        f"{new.key.role} key {new.key.prefix} created; the secret above is not stored "
        "and will not be shown again",
        err=True,
    )


@keys_group.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def list_command(ctx: click.Context, include_revoked: bool, as_json: bool) -> None:
    """The keys (prefixes, roles and scopes; never secrets)."""
    keys = _store(ctx).list(include_revoked=include_revoked)
    if as_json:
        echo_json([_as_json(k) for k in keys])
        return
    rows = [
        (
            k.prefix,
            k.role,
            k.tenant or "",
            k.user or "",
            k.name or "",
            k.created.strftime("%Y-%m-%d %H:%M"),
            "" if k.revoked is None else k.revoked.strftime("%Y-%m-%d %H:%M"),
        )
        for k in keys
    ]
    print_table(None, ("key", "role", "tenant", "user", "name", "created", "revoked"), rows)


@keys_group.command("revoke")
@click.argument("key_id")
@click.option("--json", "as_json", is_flag=True, help="Print the revoked key as JSON.")
@click.pass_context
def revoke_command(ctx: click.Context, key_id: str, as_json: bool) -> None:
    """Revoke a key by its id or prefix (llk_…); it stops working at once."""
    key = _store(ctx).revoke(key_id, now=datetime.now(UTC))
    if as_json:
        echo_json(_as_json(key))
    else:
        click.echo(f"revoked {key.prefix}")


COMMANDS = [keys_group]
