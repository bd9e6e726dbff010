"""API keys: hashing, verification, scopes, and the ``llmledger keys`` commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from llmledger.cli import main
from llmledger.errors import ConfigError
from llmledger.keys import KeyStore, UnknownKeyError, api_keys, hash_token
from llmledger.store import open_store

NOW = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture
def keys(db_url: str) -> Iterator[KeyStore]:
    with open_store(db_url) as store:
        yield KeyStore(store.engine)


def test_only_the_hash_is_stored_and_tokens_verify(keys: KeyStore) -> None:
    new = keys.create("ingest", tenant="acme", name="app", now=NOW)
    assert new.secret.startswith(f"llk_{new.key.id}_") and len(new.secret) > 50
    with keys.engine.connect() as conn:
        (stored,) = conn.execute(sa.select(api_keys.c.secret_hash)).one()
    assert stored == hash_token(new.secret) and new.secret not in stored
    assert keys.verify(new.secret) == new.key
    secret_part = new.secret.rsplit("_", 1)[1]
    for wrong in (
        "",
        "llk_",
        new.secret[:-1],
        new.secret + "a",
        f"llk_{new.key.id}_",
        f"llk_AAAAAAAAAAAA_{secret_part}",
        secret_part,
        "Bearer " + new.secret,
    ):
        assert keys.verify(wrong) is None, wrong


def test_revoked_keys_stop_working(keys: KeyStore) -> None:
    new = keys.create("admin", now=NOW)
    revoked = keys.revoke(new.key.prefix, now=NOW)
    assert revoked.revoked == NOW and not revoked.active
    assert keys.verify(new.secret) is None
    assert keys.revoke(new.key.id, now=datetime(2026, 1, 1, tzinfo=UTC)).revoked == NOW
    assert keys.list() == [] and keys.list(include_revoked=True) == [revoked]
    with pytest.raises(UnknownKeyError):
        keys.revoke("NOPE", now=NOW)


@pytest.mark.parametrize(
    ("role", "tenant", "user", "message"),
    [
        ("root", None, None, "role must be one of"),
        ("admin", "acme", None, "admin key sees every tenant"),
        ("reader", None, None, "needs a --tenant"),
        ("ingest", None, None, "needs a --tenant"),
        ("ingest", "acme", "ana", "only reader keys"),
    ],
)
def test_roles_and_scopes_that_do_not_go_together(
    keys: KeyStore, role: str, tenant: str | None, user: str | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        keys.create(role, tenant=tenant, user=user, now=NOW)


def test_keys_commands_bootstrap_the_first_admin(db_url: str) -> None:
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, ["--database-url", db_url, "keys", *args])
        assert result.exit_code == 0, result.output
        return result.output

    made = json.loads(run("create", "--role", "admin", "--name", "bootstrap", "--json"))
    assert made["role"] == "admin" and made["secret"].startswith(made["prefix"] + "_")
    plain = run("create", "--role", "reader", "--tenant", "acme", "--user", "ana")
    token = plain.splitlines()[0]
    with open_store(db_url) as opened:
        store = KeyStore(opened.engine)
        assert store.verify(made["secret"]) is not None
        reader = store.verify(token)
    assert reader is not None and (reader.tenant, reader.user) == ("acme", "ana")
    listed = json.loads(run("list", "--json"))
    assert [k["role"] for k in listed] == ["admin", "reader"]
    assert all("secret" not in k for k in listed)
    assert "llk_" in run("list")
    assert json.loads(run("revoke", made["prefix"], "--json"))["revoked"] is not None
    assert run("revoke", reader.id).startswith("revoked llk_")
    assert json.loads(run("list", "--json")) == []
    assert len(json.loads(run("list", "--all", "--json"))) == 2
    failed = runner.invoke(main, ["--database-url", db_url, "keys", "create", "--role", "ingest"])
    assert failed.exit_code == 1 and "needs a --tenant" in failed.output
    failed = runner.invoke(main, ["--database-url", db_url, "keys", "revoke", "NOPE"])
    assert failed.exit_code == 1 and "no API key" in failed.output
