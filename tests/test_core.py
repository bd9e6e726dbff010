"""Usage buckets, events, ids, settings and attribution: the pure core."""

from __future__ import annotations
import __future__

import asyncio
import copy
import dataclasses
import inspect
import json
import pickle
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import llmledger
from llmledger.core.attribution import attribute, check_feature, current_attribution, propagate
from llmledger.core.errors import ConfigError, InvalidEventError, InvalidUsageError, LedgerError
from llmledger.core.events import UsageEvent
from llmledger.core.ids import id_time_ms, new_id
from llmledger.core.settings import load_settings
from llmledger.core.usage import BUCKETS, Usage


def test_public_api_is_complete() -> None:
    exported = set(llmledger.__all__)
    public = {
        name
        for name, value in vars(llmledger).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and not isinstance(value, __future__._Feature)
    }
    assert public - exported == set()
    for name in exported:
        assert hasattr(llmledger, name), name
    from llmledger.core import errors

    # Every error of the tree is public: callers catch them by name.
    assert {name for name in errors.__all__ if inspect.isclass(getattr(errors, name))} <= exported


def test_importing_llmledger_loads_nothing_until_used() -> None:
    import subprocess
    import sys

    code = "import sys, llmledger; print(sorted(m for m in sys.modules if 'llmledger' in m))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "['llmledger']"


def test_every_error_is_a_ledger_error_and_a_builtin() -> None:
    from llmledger.core import errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        if not inspect.isclass(cls):
            continue
        assert issubclass(cls, LedgerError)
        if cls is not LedgerError:
            builtins = (ValueError, LookupError, RuntimeError, OSError, ImportError)
            assert any(issubclass(cls, b) for b in builtins), name


def test_every_exception_llmledger_defines_is_in_the_tree() -> None:
    """Errors defined anywhere in the package derive from LedgerError (the CLI's own
    click exceptions are how errors are shown, not errors of their own)."""
    import importlib
    import pkgutil

    import click

    outside = []
    for info in pkgutil.walk_packages(llmledger.__path__, "llmledger."):
        if ".migrations" in info.name:
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == info.name
                and not issubclass(value, LedgerError | click.ClickException)
            ):
                outside.append(f"{info.name}.{name}")
    assert outside == []


# -- usage -------------------------------------------------------------------------


def test_usage_totals_include_parts() -> None:
    u = Usage(input_tokens=4020, cache_read_tokens=4012, output_tokens=87, reasoning_tokens=64)
    assert u.total_tokens == 4107
    assert u.uncached_input_tokens == 8
    assert u.problems() == []


@pytest.mark.parametrize(
    ("usage", "fragment"),
    [
        (Usage(input_tokens=5, cache_read_tokens=6), "cache_read_tokens + cache_write_tokens"),
        (Usage(output_tokens=1, reasoning_tokens=2), "reasoning_tokens (2) exceeds output_tokens"),
        (Usage(input_tokens=-1), "input_tokens is negative"),
        (
            Usage(input_tokens=10, cache_write_tokens=4, cache_write_1h_tokens=5),
            "cache_write_5m_tokens + cache_write_1h_tokens (5) exceed cache_write_tokens (4)",
        ),
    ],
)
def test_usage_problems_name_the_broken_invariant(usage: Usage, fragment: str) -> None:
    assert any(fragment in p for p in usage.problems())


@given(
    st.lists(
        st.integers(min_value=0, max_value=10**9), min_size=len(BUCKETS), max_size=len(BUCKETS)
    )
)
def test_usage_dict_round_trip_and_addition(values: list[int]) -> None:
    u = Usage(*values)
    assert Usage.from_dict(u.as_dict()) == u
    assert (u + u).as_dict() == {k: 2 * v for k, v in u.as_dict().items()}


def test_usage_from_dict_rejects_unknown_bucket() -> None:
    with pytest.raises(InvalidUsageError, match="prompt_tokens"):
        Usage.from_dict({"prompt_tokens": 3})


# -- events and ids -----------------------------------------------------------------


def test_ids_are_ulids_sorted_by_time() -> None:
    first = new_id(now_ms=1_700_000_000_000)
    second = new_id(now_ms=1_700_000_000_001)
    assert len(first) == 26 and first < second
    assert id_time_ms(first) == 1_700_000_000_000
    assert len({new_id() for _ in range(10_000)}) == 10_000
    with pytest.raises(ValueError):
        id_time_ms("not-a-ulid")


def test_event_validation_rejects_naive_time_and_unknown_status() -> None:
    naive = UsageEvent(provider="openai", model="m", ts=datetime(2025, 1, 1))
    with pytest.raises(InvalidEventError, match="timezone-aware"):
        naive.validate()
    bad = UsageEvent(
        provider="openai",
        model="m",
        ts=datetime.now(UTC),
        status="fine",  # type: ignore[arg-type]
    )
    with pytest.raises(InvalidEventError, match="status must be one of"):
        bad.validate()


def test_event_validation_keeps_broken_usage_with_a_warning() -> None:
    event = UsageEvent(
        provider="openai",
        model="m",
        ts=datetime.now(UTC),
        usage=Usage(input_tokens=1, cache_read_tokens=2),
    )
    checked = event.validate()
    assert checked.usage.cache_read_tokens == 2  # never silently fixed
    assert checked.warnings and "exceed input_tokens" in checked.warnings[0]
    assert event.warnings == ()  # the event checked is left as it was
    assert checked.validate() is checked


def test_events_are_immutable_and_keep_no_reference_to_the_callers_collections() -> None:
    tags = {"env": "prod"}
    warnings = ["a warning"]
    breakdown = {"input_tokens": Decimal("0.5")}
    event = UsageEvent(
        provider="openai",
        model="m",
        ts=datetime.now(UTC),
        tags=tags,
        warnings=warnings,  # type: ignore[arg-type]
        cost_breakdown=breakdown,
    )
    tags["env"] = "dev"
    warnings.append("another")
    breakdown["output_tokens"] = Decimal("1")
    assert event.tags == {"env": "prod"} and event.warnings == ("a warning",)
    assert event.cost_breakdown == {"input_tokens": Decimal("0.5")}
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.cost = Decimal("1")  # type: ignore[misc]
    tags_as_dict: dict[str, str] = event.tags  # type: ignore[assignment]
    changes: list[Callable[[], object]] = [
        lambda: tags_as_dict.__setitem__("env", "dev"),
        lambda: tags_as_dict.update(env="dev"),
        lambda: tags_as_dict.pop("env"),
        tags_as_dict.clear,
    ]
    for change in changes:
        with pytest.raises(TypeError, match="cannot be changed"):
            change()
    assert event.tags == {"env": "prod"}
    # Read-only, yet still a dict for the JSON encoders, pickling and copying.
    assert json.dumps(event.tags) == '{"env": "prod"}'
    assert pickle.loads(pickle.dumps(event)) == event
    assert copy.deepcopy(event) == event
    changed = event.replace(tags={"env": "dev"}, status="blocked")
    assert (changed.tags, changed.status, event.tags) == (
        {"env": "dev"},
        "blocked",
        {"env": "prod"},
    )


# -- settings -----------------------------------------------------------------------


def test_settings_precedence(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    (home / "config.toml").write_text('batch_size = 7\nqueue_limit = 9\ncurrency = "brl"\n')
    env = {"LLMLEDGER_HOME": str(home), "LLMLEDGER_QUEUE_LIMIT": "11"}
    s = load_settings(env, currency="eur")
    assert (s.batch_size, s.queue_limit, s.currency) == (7, 11, "EUR")
    assert s.resolved_database_url == f"sqlite:///{home / 'ledger.db'}"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LLMLEDGER_QUEUE_LIMIT": "lots"}, "queue_limit"),
        ({"LLMLEDGER_STRICT": "maybe"}, "must be true or false"),
        ({"LLMLEDGER_FLUSH_INTERVAL": "-1"}, "must be positive"),
    ],
)
def test_bad_settings_are_clear_errors(env: dict[str, str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({"LLMLEDGER_HOME": str(tmp_path), **env})


def test_unknown_setting_in_config_file(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="colour"):
        load_settings({"LLMLEDGER_HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings({"LLMLEDGER_HOME": str(tmp_path)}, colour="red")


# -- attribution --------------------------------------------------------------------


def test_attribute_nests_and_merges_tags() -> None:
    with attribute(tenant="acme", tags={"env": "prod", "id": 7}):
        with attribute(user="ana", tags={"env": "test"}) as inner:
            assert inner.tenant == "acme" and inner.user == "ana"
            assert dict(inner.tags) == {"env": "test", "id": "7"}
        assert current_attribution().user is None
    assert current_attribution().tenant is None


def test_attribute_as_decorator_sync_and_async() -> None:
    @attribute(feature="search")
    def sync() -> str | None:
        return current_attribution().feature

    @attribute(feature="chat")
    async def run_async() -> str | None:
        await asyncio.sleep(0)
        return current_attribution().feature

    assert sync() == "search"
    assert asyncio.run(run_async()) == "chat"


def test_attribution_follows_asyncio_tasks_and_threads() -> None:
    async def main() -> list[str | None]:
        async def child(name: str) -> str | None:
            with attribute(user=name):
                await asyncio.sleep(0)
                return current_attribution().user

        with attribute(tenant="t"):
            task = asyncio.create_task(asyncio.sleep(0, result=current_attribution().tenant))
            users = await asyncio.gather(child("a"), child("b"))
            return [await task, *users]

    assert asyncio.run(main()) == ["t", "a", "b"]

    seen: list[str | None] = []
    with attribute(tenant="threaded"):

        def note_tenant() -> None:
            seen.append(current_attribution().tenant)

        worker = threading.Thread(target=propagate(note_tenant))
        worker.start()
        worker.join()
        with ThreadPoolExecutor(2) as pool:
            assert (
                pool.submit(propagate(lambda: current_attribution().tenant)).result() == "threaded"
            )
    assert seen == ["threaded"]


def test_attribute_rejects_bad_values() -> None:
    with pytest.raises(InvalidEventError, match="tenant must be a string"):
        attribute(tenant=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidEventError, match="tag 'x' must be a string"):
        attribute(tags={"x": [1]})  # type: ignore[dict-item]


def test_declared_features_refuse_unknown_ones_where_the_call_is_recorded() -> None:
    llmledger.configure(features={"search": "Search", "chat": "Chat"})
    try:
        with attribute(feature="search"):
            assert llmledger.record(provider="openai", model="gpt-4o").feature == "search"
        with attribute(feature="serach"):  # opening the block asks nothing of the ledger
            with pytest.raises(llmledger.UnknownFeatureError, match=r"'serach'.*chat, search"):
                llmledger.record(provider="openai", model="gpt-4o")
            refused = pytest.raises(llmledger.UnknownFeatureError, match=r"'serach'")
            with refused, llmledger.track(provider="openai", model="gpt-4o"):
                pass
        with pytest.raises(llmledger.UnknownFeatureError, match=r"'serach'"):
            llmledger.record(provider="openai", model="gpt-4o", feature="serach")
    finally:
        llmledger.configure()


def test_attribute_never_builds_the_process_ledger() -> None:
    import llmledger.runtime.ledger as ledger_module

    assert ledger_module._ledger is None
    with attribute(feature="anything", user="u1") as attribution:
        assert attribution.feature == "anything"
    assert ledger_module._ledger is None


def test_check_feature_is_given_the_declared_features() -> None:
    check_feature("search", {"search"})
    check_feature("whatever", ())
    check_feature(None, {"search"})
    with pytest.raises(llmledger.UnknownFeatureError):
        check_feature("chat", {"search"})


def test_features_from_the_environment_take_optional_display_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMLEDGER_FEATURES", " chat=Chat assistant ,search,, rag = ")
    assert load_settings().features == {"chat": "Chat assistant", "search": "search", "rag": "rag"}


def test_key_cache_seconds_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMLEDGER_KEY_CACHE_SECONDS", "0")
    assert load_settings().key_cache_seconds == 0.0
    monkeypatch.setenv("LLMLEDGER_KEY_CACHE_SECONDS", "-1")
    with pytest.raises(ConfigError, match="key_cache_seconds"):
        load_settings()


def test_the_buckets_are_the_fields_of_usage_and_of_the_wire_shape() -> None:
    from llmledger.wire.parse import UsageIn

    assert tuple(field.name for field in dataclasses.fields(Usage)) == BUCKETS
    assert tuple(name for name in UsageIn.model_fields if name != "total_tokens") == BUCKETS
