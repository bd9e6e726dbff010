"""Limits that hold: guarded SDK calls, ``llmledger.check``, warn and block, reserve and
settle, the policy when the limit store is down; on SQLite and PostgreSQL.

The provider is the real ``openai`` client over ``httpx.MockTransport`` answering a
recorded response and counting the requests that reach it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

import llmledger
from llmledger.capture import Instrumentation, instrument
from llmledger.core.errors import InvalidLimitError, LimitExceededError
from llmledger.core.limits import Amounts, Limit, Subject, estimate_tokens
from llmledger.query import build_query
from llmledger.runtime.ledger import Ledger
from llmledger.runtime.limits import NOTE_TAG, warning_listeners
from llmledger.store import open_store
from tests.test_capture_support import recorded

CHAT = recorded("openai_chat_prompt_cache_hit.json")
QUESTION: Any = [{"role": "user", "content": "What is the capital of France?"}]


class Provider:
    """A provider answering every chat call with a recorded response, counting requests."""

    def __init__(self) -> None:
        self.requests = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return httpx.Response(200, content=CHAT, headers={"content-type": "application/json"})

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(
            api_key="sk-test",
            base_url="https://api.openai.com/v1",
            max_retries=0,
            http_client=_any(httpx.Client(transport=httpx.MockTransport(self.handle))),
        )

    def async_client(self) -> openai.AsyncOpenAI:
        async def handle(request: httpx.Request) -> httpx.Response:
            return self.handle(request)

        return openai.AsyncOpenAI(
            api_key="sk-test",
            base_url="https://api.openai.com/v1",
            max_retries=0,
            http_client=_any(httpx.AsyncClient(transport=httpx.MockTransport(handle))),
        )


@pytest.fixture
def provider() -> Provider:
    return Provider()


@pytest.fixture
def ledger(db_url: str) -> Ledger:
    return llmledger.configure(database_url=db_url, limits=True)


@pytest.fixture
def hooks(ledger: Ledger) -> Iterator[Instrumentation]:
    handle = instrument()
    yield handle
    handle.uninstrument()


def _ask(client: openai.OpenAI, max_tokens: int = 50) -> Any:
    return client.chat.completions.create(model="gpt-4o", messages=QUESTION, max_tokens=max_tokens)


def _events(ledger: Ledger) -> list[Any]:
    assert llmledger.flush(10)
    return sorted(ledger.store.events(), key=lambda e: e.ts)


def test_a_blocked_call_never_reaches_the_provider_and_is_recorded_blocked(
    ledger: Ledger, hooks: Instrumentation, provider: Provider
) -> None:
    ledger.store.add_limit(Limit("user", "ana", "requests", Decimal(2), "day", id="L-ana"))
    client = provider.client()
    with llmledger.attribute(tenant="acme", user="ana"):
        _ask(client)
        _ask(client)
        with pytest.raises(LimitExceededError) as refused:
            _ask(client)
    assert provider.requests == 2
    assert refused.value.reason == "limit"
    assert [d.limit.id for d in refused.value.decisions] == ["L-ana"]  # type: ignore[attr-defined]
    assert "limit L-ana (user ana, requests 2 per day, block)" in str(refused.value)
    events = _events(ledger)
    assert [e.status for e in events] == ["ok", "ok", "blocked"]
    blocked = events[-1]
    assert blocked.error_type == "LimitExceededError"
    assert blocked.usage.input_tokens == 0 and blocked.cost == Decimal(0)
    assert (blocked.tenant, blocked.user, blocked.model) == ("acme", "ana", "gpt-4o")
    assert blocked.tags[NOTE_TAG] == "block:L-ana"
    # another user is not limited
    with llmledger.attribute(user="bob"):
        _ask(client)
    assert provider.requests == 3 and len(_events(ledger)) == 4
    # reports count blocked calls by status
    query = build_query(by=["status"], metrics=["calls"], last="1d", now=datetime.now(UTC))
    report = ledger.store.report(query)
    assert {row["status"]: row["calls"] for row in report.rows} == {"ok": 3, "blocked": 1}


def test_async_calls_are_guarded_too(
    ledger: Ledger, hooks: Instrumentation, provider: Provider
) -> None:
    ledger.store.add_limit(Limit("feature", "search", "requests", Decimal(1), "hour"))
    client = provider.async_client()

    async def calls() -> None:
        with llmledger.attribute(feature="search"):
            await client.chat.completions.create(model="gpt-4o", messages=QUESTION)
            with pytest.raises(LimitExceededError):
                await client.chat.completions.create(model="gpt-4o", messages=QUESTION)

    asyncio.run(calls())
    assert provider.requests == 1
    assert [e.status for e in _events(ledger)] == ["ok", "blocked"]


def test_warn_mode_lets_the_call_through_and_records_the_warning(
    ledger: Ledger, hooks: Instrumentation, provider: Provider
) -> None:
    ledger.store.add_limit(
        Limit("tenant", "acme", "requests", Decimal(1), "day", mode="warn", id="L-warn")
    )
    heard: list[Any] = []
    warning_listeners.append(heard.append)
    try:
        with llmledger.attribute(tenant="acme"):
            _ask(provider.client())
            _ask(provider.client())
    finally:
        warning_listeners.remove(heard.append)
    assert provider.requests == 2
    events = _events(ledger)
    assert [e.status for e in events] == ["ok", "ok"]
    assert NOTE_TAG not in events[0].tags
    assert events[1].tags[NOTE_TAG] == "warn:L-warn"
    assert [c.warnings[0].limit.id for c in heard] == ["L-warn"]


def test_reservations_settle_at_the_real_cost_and_tokens(
    ledger: Ledger, hooks: Instrumentation, provider: Provider
) -> None:
    cost_limit = Limit("tenant", "acme", "cost", Decimal(1), "day", id="L-cost")
    token_limit = Limit("tenant", "acme", "tokens", Decimal(10**6), "day", id="L-tok")
    ledger.store.add_limit(cost_limit)
    ledger.store.add_limit(token_limit)
    with llmledger.attribute(tenant="acme"):
        _ask(provider.client(), max_tokens=100)
    event = _events(ledger)[0]
    states = ledger.store.limit_states([cost_limit, token_limit], now=datetime.now(UTC))
    _, cost_used, cost_reserved = states["L-cost"]
    _, tokens_used, tokens_reserved = states["L-tok"]
    assert (cost_reserved, tokens_reserved) == (0, 0)
    assert event.cost is not None
    assert cost_used == int(event.cost * 10**9)
    assert tokens_used == event.usage.input_tokens + event.usage.output_tokens


def test_a_failed_call_releases_its_reservation(ledger: Ledger, hooks: Instrumentation) -> None:
    limit = Limit("tenant", "acme", "cost", Decimal("0.01"), "day", id="L-cost")
    ledger.store.add_limit(limit)

    def fail(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": {"message": "boom"}})

    client = openai.OpenAI(
        api_key="sk-test",
        base_url="https://api.openai.com/v1",
        max_retries=0,
        http_client=_any(httpx.Client(transport=httpx.MockTransport(fail))),
    )
    with llmledger.attribute(tenant="acme"), pytest.raises(openai.InternalServerError):
        _ask(client)
    assert [e.status for e in _events(ledger)] == ["error"]
    _, used, reserved = ledger.store.limit_states([limit], now=datetime.now(UTC))["L-cost"]
    assert (used, reserved) == (0, 0)


def test_check_estimates_reserves_and_settles(ledger: Ledger) -> None:
    limit = Limit("user", "ana", "tokens", Decimal(1000), "day", id="L-tok")
    ledger.store.add_limit(limit)
    first = llmledger.check(user="ana", prompt="x" * 400, max_tokens=500, reserve=True)
    assert first.allowed and first.reservation is not None
    assert [d.needed for d in first.decisions] == [100 + 500]
    # the first call is in flight: a second of the same size does not fit
    second = llmledger.check(user="ana", prompt="x" * 400, max_tokens=500)
    assert not second.allowed and second.blocking[0].reserved == 600
    with pytest.raises(LimitExceededError):
        llmledger.check(user="ana", tokens=600, raise_on_block=True)
    first.settle(tokens=300)
    first.settle(tokens=300)  # once only
    assert llmledger.flush(10)  # settles are applied off the caller's thread
    third = llmledger.check(user="ana", tokens=600)
    assert third.allowed and third.decisions[0].used == 300
    assert llmledger.check(user="bob", tokens=10**9).decisions == ()


def test_a_settle_handed_over_is_applied_before_the_process_exits(
    db_url: str, tmp_path: Path
) -> None:
    store = open_store(db_url)
    limit = Limit("user", "ana", "tokens", Decimal(1000), "day", id="L-tok")
    store.add_limit(limit)
    script = (
        "import llmledger\n"
        "c = llmledger.check(user='ana', tokens=600, reserve=True)\n"
        "assert c.allowed\n"
        "c.settle(tokens=250)\n"  # then exits without flushing
    )
    env = {
        **os.environ,
        "LLMLEDGER_DATABASE_URL": db_url,
        "LLMLEDGER_HOME": str(tmp_path / "home"),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120)
    _, used, reserved = store.limit_states([limit], now=datetime.now(UTC))["L-tok"]
    assert (used, reserved) == (250, 0)
    store.close()


def test_unsettled_reservations_expire(db_url: str) -> None:
    store = open_store(db_url)
    store.add_limit(Limit("user", "ana", "requests", Decimal(1), "day", id="L1"))
    now = datetime(2025, 6, 1, 12, tzinfo=UTC)
    ana = Subject(user="ana")
    assert (
        store.reserve_limits(ana, Amounts(), now=now, ttl=60, reservation="R1")[0].outcome == "ok"
    )
    assert (
        store.reserve_limits(ana, Amounts(), now=now, ttl=60, reservation="R2")[0].outcome
        == "block"
    )
    later = now + timedelta(seconds=61)
    assert (
        store.reserve_limits(ana, Amounts(), now=later, ttl=60, reservation="R3")[0].outcome == "ok"
    )
    # the late settle of R1 still counts what R1 spent, once
    assert store.settle_limits("R1", Amounts(), now=later) == 1
    assert store.settle_limits("R1", Amounts(), now=later) == 0
    # a new day is a new window
    tomorrow = now + timedelta(days=1)
    assert (
        store.reserve_limits(ana, Amounts(), now=tomorrow, ttl=60, reservation="R4")[0].outcome
        == "ok"
    )
    store.close()


def test_a_reservation_id_in_use_is_refused_and_reserves_nothing(db_url: str) -> None:
    store = open_store(db_url)
    store.add_limit(Limit("user", "ana", "requests", Decimal(2), "day", id="L1"))
    now = datetime(2025, 6, 1, 12, tzinfo=UTC)
    ana = Subject(user="ana")
    store.reserve_limits(ana, Amounts(), now=now, ttl=60, reservation="R1")
    with pytest.raises(InvalidLimitError, match="already in use"):
        store.reserve_limits(ana, Amounts(), now=now, ttl=60, reservation="R1")
    # the refused reservation took nothing: one more call still fits
    decision = store.reserve_limits(ana, Amounts(), now=now, ttl=60, reservation="R2")[0]
    assert decision.outcome == "ok" and decision.reserved == 1
    store.close()


def test_limits_scoped_to_a_tenant_only_count_its_calls(db_url: str) -> None:
    store = open_store(db_url)
    store.add_limit(Limit("user", "ana", "requests", Decimal(1), "day", tenant="acme", id="L1"))
    now = datetime.now(UTC)
    assert (
        store.reserve_limits(
            Subject(tenant="globex", user="ana"), Amounts(), now=now, ttl=60, reservation=None
        )
        == []
    )
    assert [x.id for x in store.list_limits(tenant="acme")] == ["L1"]
    assert store.list_limits(tenant="globex") == []
    assert store.remove_limit("L1") is not None and store.get_limit("L1") is None
    store.close()


def test_the_store_unreachable_fails_open_by_default(
    tmp_path: Any, hooks: Instrumentation, provider: Provider
) -> None:
    ledger = llmledger.configure(
        database_url="postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1", limits=True
    )
    assert ledger.guarded
    check = ledger.limits.decide(Subject(user="ana"), Amounts(), reserve=True)
    assert check.allowed and check.unavailable and check.note() == "unavailable:open"


def test_fail_open_lets_the_call_through_and_records_it(tmp_path: Any, provider: Provider) -> None:
    # An unreachable limit store (a database nothing listens on); events go to a
    # SQLite ledger through their own store, so the call's event can be read back.
    _unreachable_guard(tmp_path, "open")
    with instrument(), llmledger.attribute(user="ana"):
        _ask(provider.client())
    assert provider.requests == 1
    [event] = _events_of(tmp_path)
    assert event.status == "ok" and event.tags[NOTE_TAG] == "unavailable:open"


def test_fail_closed_refuses_the_call_and_records_it(tmp_path: Any, provider: Provider) -> None:
    _unreachable_guard(tmp_path, "closed")
    with (
        instrument(),
        llmledger.attribute(user="ana"),
        pytest.raises(LimitExceededError) as refused,
    ):
        _ask(provider.client())
    assert provider.requests == 0
    assert refused.value.reason == "unavailable"
    [event] = _events_of(tmp_path)
    assert event.status == "blocked" and event.tags[NOTE_TAG] == "unavailable:closed"


def _unreachable_guard(tmp_path: Any, policy: str) -> Ledger:
    from llmledger.runtime.limits import LimitGuard, RemoteLimits

    ledger = llmledger.configure(
        database_url=f"sqlite:///{tmp_path / 'events.db'}", limits=True, limit_policy=policy
    )
    # A service nothing listens on: the limit store is unreachable.
    ledger._limits = LimitGuard(ledger, RemoteLimits("http://127.0.0.1:9", "llk_x", timeout=1))
    return ledger


def _events_of(tmp_path: Any) -> list[Any]:
    assert llmledger.flush(10)
    store = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    try:
        return list(store.events())
    finally:
        store.close()


def test_no_limits_setting_means_no_check(tmp_path: Any, provider: Provider) -> None:
    ledger = llmledger.configure(database_url=f"sqlite:///{tmp_path / 'l.db'}")
    ledger.store.add_limit(Limit("user", "ana", "requests", Decimal(1), "day"))
    assert not ledger.guarded
    with instrument(), llmledger.attribute(user="ana"):
        _ask(provider.client())
        _ask(provider.client())
    assert provider.requests == 2 and ledger._limits is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"scope": "team"}, "scope must be one of"),
        ({"metric": "calls"}, "metric must be one of"),
        ({"period": "year"}, "period must be one of"),
        ({"mode": "stop"}, "mode must be one of"),
        ({"value": " "}, "needs the user"),
        ({"amount": Decimal(0)}, "positive"),
        ({"amount": "x"}, "must be a number"),
        ({"metric": "tokens", "amount": Decimal("1.5")}, "whole units"),
        ({"amount": Decimal("0.0000000001")}, "9 decimals"),
    ],
)
def test_bad_limits_are_clear_errors(fields: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {
        "scope": "user",
        "value": "ana",
        "metric": "cost",
        "amount": Decimal(1),
        "period": "day",
    }
    with pytest.raises(InvalidLimitError, match=message):
        Limit(**{**values, **fields}).validate()


def test_the_estimate_formula() -> None:
    assert estimate_tokens(0, None, bytes_per_token=4, default_output_tokens=7) == (0, 7)
    assert estimate_tokens(9, 3, bytes_per_token=4, default_output_tokens=7) == (3, 3)
    assert estimate_tokens(9, 3, bytes_per_token=1, default_output_tokens=7) == (9, 3)


def test_limit_settings_are_checked() -> None:
    from llmledger.core.errors import ConfigError
    from llmledger.core.settings import load_settings

    assert load_settings({"LLMLEDGER_LIMIT_POLICY": "Closed"}).limit_policy == "closed"
    with pytest.raises(ConfigError, match="limit_policy"):
        load_settings({"LLMLEDGER_LIMIT_POLICY": "maybe"})
    with pytest.raises(ConfigError, match="limit_ttl"):
        load_settings({"LLMLEDGER_LIMIT_TTL": "0"})
    assert json.dumps(load_settings({"LLMLEDGER_LIMITS": "1"}).limits) == "true"


# -- the command line ----------------------------------------------------------------


def test_limits_commands(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from llmledger.cli import main

    def run(*args: str) -> Any:
        return CliRunner().invoke(main, list(args))

    added = run(
        "limits",
        "add",
        "user",
        "ana",
        "--tenant",
        "acme",
        "--cost",
        "0.5",
        "--per",
        "day",
        "--json",
    )
    assert added.exit_code == 0, added.output
    limit_id = json.loads(added.output)["id"]
    listed = run("limits", "list")
    assert limit_id in listed.output and "0.5" in listed.output
    shown = json.loads(run("limits", "show", limit_id, "--json").output)
    assert (shown["used"], shown["reserved"], shown["tenant"]) == (0, 0, "acme")
    ok = run("limits", "check", "--tenant", "acme", "--user", "ana", "--cost", "0.4")
    assert ok.exit_code == 0 and ok.output.startswith("ok: limit")
    refused = run("limits", "check", "--tenant", "acme", "--user", "ana", "--cost", "0.6")
    assert refused.exit_code == 1 and refused.output.startswith("BLOCK: limit")
    assert run("limits", "check", "--user", "bob").output == "no limit applies\n"
    both = run("limits", "add", "user", "ana", "--cost", "1", "--tokens", "5", "--per", "day")
    assert both.exit_code == 2 and "exactly one of" in both.output
    bad = run("limits", "add", "user", "ana", "--cost", "-1", "--per", "day")
    assert bad.exit_code == 1 and "positive" in bad.output
    assert run("limits", "remove", limit_id).exit_code == 0
    missing = run("limits", "show", limit_id)
    assert missing.exit_code == 1 and "no limit" in missing.output


def _any(client: Any) -> Any:
    """The SDK's own annotations name its vendored httpx; the client is httpx's."""
    return client


# -- other SDKs and streams ------------------------------------------------------------


def test_google_genai_calls_and_streams_are_guarded(ledger: Ledger, hooks: Instrumentation) -> None:
    from google.genai import types

    from tests.test_capture_google import _client, replay

    served = replay.__wrapped__()  # type: ignore[attr-defined]
    ledger.store.add_limit(Limit("user", "gina", "requests", Decimal(2), "day", id="L-gina"))
    client = _client(served)
    with llmledger.attribute(user="gina"):
        client.models.generate_content(
            model="gemini-2.5-flash",
            contents="hi",
            config=types.GenerateContentConfig(max_output_tokens=64),
        )
        for _ in client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"):
            pass
        with pytest.raises(LimitExceededError):
            client.models.generate_content(model="gemini-2.5-flash", contents="hi")
        # The SDK's stream starts its request when first read: refused there, before it.
        with pytest.raises(LimitExceededError):
            for _ in client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"):
                pass
    assert len(served.requests) == 2
    events = _events(ledger)
    assert [e.status for e in events] == ["ok", "ok", "blocked", "blocked"]
    assert {e.provider for e in events} == {"google"}


def test_a_streamed_call_settles_when_the_stream_ends(
    ledger: Ledger, hooks: Instrumentation
) -> None:
    from tests.test_capture_openai import _replay

    served = _replay()
    limit = Limit("tenant", "acme", "tokens", Decimal(10**6), "day", id="L-tok")
    ledger.store.add_limit(limit)
    client = served.sdk_client(
        openai.OpenAI, "openai", api_key="sk-test", base_url="https://api.openai.com/v1"
    )
    with llmledger.attribute(tenant="acme"):
        stream = client.chat.completions.create(
            model="gpt-4o",
            messages=QUESTION,
            max_tokens=100,
            stream=True,
            stream_options={"include_usage": True},
        )
        _, _, reserved = ledger.store.limit_states([limit], now=datetime.now(UTC))["L-tok"]
        assert reserved > 0  # in flight while the stream is open
        for _ in stream:
            pass
    [event] = _events(ledger)
    _, used, reserved = ledger.store.limit_states([limit], now=datetime.now(UTC))["L-tok"]
    assert reserved == 0 and used == event.usage.input_tokens + event.usage.output_tokens > 0


def test_anthropic_calls_are_guarded_by_key(ledger: Ledger, hooks: Instrumentation) -> None:
    import anthropic

    from llmledger.core.ids import fingerprint
    from tests.test_capture_support import JSON, Replay

    served = Replay({"/v1/messages": (200, recorded("anthropic_messages_cache_read.json"), JSON)})
    key = fingerprint("sk-ant-test")
    assert key is not None
    ledger.store.add_limit(Limit("api_key", key, "requests", Decimal(1), "hour", id="L-key"))
    client = served.sdk_client(
        anthropic.Anthropic,
        "anthropic",
        api_key="sk-ant-test",
        base_url="https://api.anthropic.com",
    )

    def ask() -> Any:
        return client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=QUESTION)

    ask()
    with pytest.raises(LimitExceededError, match="api_key sha256:"):
        ask()
    assert len(served.requests) == 1
    events = _events(ledger)
    assert [e.status for e in events] == ["ok", "blocked"]
    assert {e.api_key_fingerprint for e in events} == {key}
