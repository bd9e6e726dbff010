"""API keys: hashing, verification, scopes, and the ``llmledger keys`` commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from llmledger.cli import main
from llmledger.core.errors import ConfigError
from llmledger.server.keys import CACHE_SECONDS, KeyStore, UnknownKeyError, hash_token
from llmledger.store import SqlStore, open_store

NOW = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    with open_store(db_url) as opened:
        yield opened


@pytest.fixture
def keys(store: SqlStore) -> KeyStore:
    return KeyStore(store)


class FakeClock:
    """A monotonic clock that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cached(keys: KeyStore, clock: FakeClock) -> KeyStore:
    """A store over the same database as ``keys``, caching on a fake clock."""
    return KeyStore(keys.store, clock=clock)


@pytest.fixture
def queries(store: SqlStore) -> Iterator[list[str]]:
    """Every statement sent about API keys while the test runs."""
    statements: list[str] = []

    def record(
        conn: sa.Connection,
        cursor: object,
        statement: str,
        parameters: object,
        context: object,
        executemany: bool,
    ) -> None:
        if "api_keys" in statement:
            statements.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", record)
    yield statements
    sa.event.remove(store.engine, "before_cursor_execute", record)


def _other_secret(token: str) -> str:
    """The token with its last character changed: same id, wrong secret."""
    return token[:-1] + ("B" if token.endswith("A") else "A")


def test_only_the_hash_is_stored_and_tokens_verify(keys: KeyStore) -> None:
    new = keys.create("ingest", tenant="acme", name="app", now=NOW)
    assert new.secret.startswith(f"llk_{new.key.id}_") and len(new.secret) > 50
    row = keys.store.get_key(new.key.id)
    assert row is not None
    stored = row.secret_hash
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
        store = KeyStore(opened)
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


# -- the cache of verified keys --------------------------------------------------------------


def test_a_verified_key_is_read_again_only_after_cache_seconds(
    cached: KeyStore, clock: FakeClock, queries: list[str]
) -> None:
    assert CACHE_SECONDS == 5.0
    new = cached.create("ingest", tenant="acme", now=NOW)
    queries.clear()
    assert cached.verify(new.secret) == new.key
    assert len(queries) == 1
    clock.now += 4.5
    assert cached.verify(new.secret) == new.key
    assert len(queries) == 1
    clock.now += 0.5
    assert cached.verify(new.secret) == new.key
    assert len(queries) == 2
    assert cached.verify(new.secret) == new.key
    assert len(queries) == 2


def test_a_revoke_through_the_same_store_takes_effect_at_once(
    cached: KeyStore, queries: list[str]
) -> None:
    revoked = cached.create("ingest", tenant="acme", now=NOW)
    kept = cached.create("ingest", tenant="acme", now=NOW)
    assert cached.verify(revoked.secret) == revoked.key
    assert cached.verify(kept.secret) == kept.key
    cached.revoke(revoked.key.prefix, now=NOW)
    assert cached.verify(revoked.secret) is None
    queries.clear()
    assert cached.verify(kept.secret) == kept.key
    assert queries == []


def test_a_revoke_through_another_store_is_seen_after_cache_seconds(
    db_url: str, cached: KeyStore, clock: FakeClock
) -> None:
    new = cached.create("reader", tenant="acme", now=NOW)
    assert cached.verify(new.secret) == new.key
    with open_store(db_url) as elsewhere:
        KeyStore(elsewhere).revoke(new.key.id, now=NOW)
    clock.now += 4.5
    assert cached.verify(new.secret) == new.key
    clock.now += 0.5
    assert cached.verify(new.secret) is None
    clock.now += 60
    assert cached.verify(new.secret) is None


def test_a_revoke_during_a_verify_is_not_undone_by_the_cache(
    cached: KeyStore, store: SqlStore
) -> None:
    new = cached.create("ingest", tenant="acme", now=NOW)
    revoking: list[str] = []

    def revoke_once_read(
        conn: sa.Connection,
        cursor: object,
        statement: str,
        parameters: object,
        context: object,
        executemany: bool,
    ) -> None:
        if statement.lstrip().upper().startswith("SELECT") and not revoking:
            revoking.append(new.key.id)
            cached.revoke(new.key.id, now=NOW)

    sa.event.listen(store.engine, "after_cursor_execute", revoke_once_read)
    try:
        in_flight = cached.verify(new.secret)
    finally:
        sa.event.remove(store.engine, "after_cursor_execute", revoke_once_read)
    assert revoking and in_flight == new.key
    assert cached.verify(new.secret) is None


def test_tokens_that_do_not_verify_are_refused_and_never_cached(
    cached: KeyStore, queries: list[str]
) -> None:
    new = cached.create("ingest", tenant="acme", now=NOW)
    revoked = cached.create("ingest", tenant="acme", now=NOW)
    cached.revoke(revoked.key.id, now=NOW)
    assert cached.verify(new.secret) == new.key
    wrong = _other_secret(new.secret)
    assert wrong != new.secret and wrong.startswith(new.key.prefix + "_")
    queries.clear()
    for token in (wrong, wrong, new.secret[:-1], revoked.secret, revoked.secret):
        assert cached.verify(token) is None, token
    assert len(queries) == 5
    assert cached.verify(new.secret) == new.key


def test_the_cache_keeps_only_the_newest_keys(
    keys: KeyStore, clock: FakeClock, queries: list[str]
) -> None:
    small = KeyStore(keys.store, cache_size=2, clock=clock)
    first, second, third = (small.create("ingest", tenant="acme", now=NOW) for _ in range(3))
    for new in (first, second, third):
        assert small.verify(new.secret) == new.key
    queries.clear()
    assert small.verify(third.secret) == third.key
    assert small.verify(second.secret) == second.key
    assert queries == []
    assert small.verify(first.secret) == first.key
    assert len(queries) == 1
    assert small.verify(second.secret) == second.key
    assert len(queries) == 2


def test_cache_seconds_zero_reads_the_database_every_time(
    keys: KeyStore, clock: FakeClock, queries: list[str]
) -> None:
    uncached = KeyStore(keys.store, cache_seconds=0, clock=clock)
    new = uncached.create("ingest", tenant="acme", now=NOW)
    queries.clear()
    for _ in range(3):
        assert uncached.verify(new.secret) == new.key
    assert len(queries) == 3


def test_negative_cache_settings_are_refused(keys: KeyStore) -> None:
    with pytest.raises(ConfigError, match="cannot be negative"):
        KeyStore(keys.store, cache_seconds=-1)
    with pytest.raises(ConfigError, match="cannot be negative"):
        KeyStore(keys.store, cache_size=-1)
