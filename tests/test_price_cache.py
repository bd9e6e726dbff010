"""Prices on the caller's thread: loaded in the background, priced from memory, renewed.

The first ``record()`` of a process must not wait for the prices: here the user's
price file is a named pipe that the test writes only after ``record()`` returned,
so a ``record()`` that read the prices itself would still be waiting on the pipe.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import llmledger
from llmledger.core.events import PRICE_PENDING_REASON, UsageEvent
from llmledger.core.ids import id_time_ms, new_id
from llmledger.core.usage import Usage
from llmledger.pricing import PriceResolver
from llmledger.pricing.cache import PriceCache, needs_price
from llmledger.runtime.ledger import Ledger
from llmledger.server.pricedb import PriceDB

M = 1_000_000
PRICES = """\
prices:
  - provider: acme
    model: acme-1
    from: 2025-01-01
    input: 2
  - provider: acme
    model: acme-1
    from: 2025-06-01
    input: 3
  - provider: acme
    model: acme-1
    service_tier: flex
    from: 2025-01-01
    input: 1
"""


def _in_thread(work: Any) -> Any:
    """Run ``work`` in a thread; what it returned, or None when it is still running."""
    done: list[Any] = []
    thread = threading.Thread(target=lambda: done.append(work()), daemon=True)
    thread.start()
    thread.join(timeout=60)
    return done[0] if done else None


def test_the_first_record_returns_pending_and_the_stored_event_is_priced(
    tmp_path: Path,
) -> None:
    pipe = tmp_path / "prices.yaml"
    os.mkfifo(pipe)
    ledger = llmledger.configure(price_files=[str(pipe)])
    at = datetime(2025, 7, 1, tzinfo=UTC)
    first = _in_thread(
        lambda: llmledger.record(provider="acme", model="acme-1", ts=at, input_tokens=M)
    )
    # Returned while the prices could not be loaded: nobody had written the pipe yet.
    assert isinstance(first, UsageEvent), "record() waited for the prices"
    assert (first.price_status, first.cost, first.unpriced_reason) == (
        "pending",
        None,
        PRICE_PENDING_REASON,
    )
    with llmledger.track(provider="acme", model="acme-1", ts=at) as t:
        t.set_usage(input_tokens=M)
    assert t.event is not None and t.event.price_status == "pending"

    written = _in_thread(lambda: pipe.write_text(PRICES))
    assert written is not None, "the prices were never read"
    assert llmledger.flush(60)
    stored = {e.id: e for e in ledger.store.recent(limit=10)}
    for event in (first, t.event):
        assert stored[event.id].price_status == "priced"
        assert stored[event.id].cost == Decimal(3)
        assert stored[event.id].cost_source == "file"
    # Loaded now: the next event comes back priced.
    assert llmledger.record(provider="acme", model="acme-1", ts=at, input_tokens=M).cost == 3


def test_prices_are_told_apart_by_day_and_service_tier(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICES)
    ledger = llmledger.configure(price_files=[str(prices)])
    assert ledger.prices.wait(120)

    def cost(day: date, tier: str | None = None) -> Decimal | None:
        at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        event = llmledger.record(
            provider="acme", model="acme-1", ts=at, input_tokens=M, service_tier=tier
        )
        assert event.price_status == "priced"
        return event.cost

    assert cost(date(2025, 5, 31)) == 2
    assert cost(date(2025, 6, 1)) == 3
    assert cost(date(2025, 5, 31)) == 2  # the earlier day again, after the later one
    assert cost(date(2025, 6, 1), "flex") == 1
    assert cost(date(2025, 6, 1)) == 3  # the tier's price stays the tier's
    with pytest.raises(llmledger.InvalidEventError, match="unknown service tier 'turbo'"):
        cost(date(2025, 6, 1), "turbo")


def test_a_price_added_to_the_database_renews_the_prices(db_url: str) -> None:
    ledger = llmledger.configure(database_url=db_url)
    ledger.store.migrate()
    assert ledger.prices.wait(120)
    at = datetime(2025, 7, 1, tzinfo=UTC)
    before = llmledger.record(provider="acme", model="acme-db", ts=at, input_tokens=M)
    assert before.price_status == "unpriced"
    old = ledger.prices.cache
    PriceDB(ledger.store).add_price(
        {"provider": "acme", "model": "acme-db", "from": date(2025, 1, 1), "input": 4},
        now=datetime.now(UTC),
        by=None,
    )
    # What the writer does every few seconds, forced so the test does not wait.
    ledger.prices.refresh(force=True)
    assert ledger.prices.cache is not old
    after = llmledger.record(provider="acme", model="acme-db", ts=at, input_tokens=M)
    assert (after.cost, after.cost_source) == (Decimal(4), "database")
    ledger.prices.refresh(force=True)
    renewed = ledger.prices.cache
    ledger.prices.refresh(force=True)
    assert ledger.prices.cache is renewed  # nothing changed: the cache is kept
    assert llmledger.flush(60)
    stored = {e.id: e for e in ledger.store.recent(limit=10)}
    assert stored[after.id].cost == 4 and stored[before.id].cost is None


def test_an_edited_price_file_renews_the_prices(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICES)
    ledger = llmledger.configure(price_files=[str(prices)])
    assert ledger.prices.wait(120)
    at = datetime(2025, 7, 1, tzinfo=UTC)
    assert llmledger.record(provider="acme", model="acme-1", ts=at, input_tokens=M).cost == 3
    prices.write_text(PRICES.replace("input: 3", "input: 5"))
    os.utime(prices, ns=(0, prices.stat().st_mtime_ns + 1_000_000_000))
    ledger.prices.refresh(force=True)
    assert llmledger.record(provider="acme", model="acme-1", ts=at, input_tokens=M).cost == 5


def test_a_price_file_that_cannot_be_read_loses_no_event(tmp_path: Path) -> None:
    broken = tmp_path / "prices.yaml"
    broken.write_text("prices: [{provider: acme}]\n")
    ledger = Ledger(llmledger.load_settings(price_files=[str(broken)], strict=False))
    try:
        first = llmledger.UsageEvent(
            provider="acme", model="acme-1", ts=datetime.now(UTC), usage=Usage(input_tokens=1)
        )
        pending = ledger.prices.priced_now(first)
        assert pending.price_status == "pending"
        assert not ledger.prices.wait(120)
        # Once the failure is known, the caller is told, as it was told before.
        with pytest.raises(llmledger.PriceFileError):
            ledger.prices.priced_now(first)
        # What was recorded while loading is stored unpriced, with the reason.
        settled = ledger.prepare(pending)
        assert settled.price_status == "unpriced"
        assert settled.unpriced_reason is not None
        assert settled.unpriced_reason.startswith("the prices could not be loaded")
    finally:
        ledger.close()


def test_the_cache_prices_as_the_resolver_does() -> None:
    resolver = PriceResolver()
    cache = PriceCache(resolver, version=1)
    event = UsageEvent(
        provider="openai",
        model="gpt-4o",
        ts=datetime(2025, 6, 1, tzinfo=UTC),
        usage=Usage(input_tokens=1000, cache_read_tokens=400, output_tokens=100),
    )
    assert cache.priced(event) == resolver.priced(event)
    assert cache.event_price(event) == resolver.event_price(event)
    assert needs_price(event) and not needs_price(cache.priced(event))


def _cache_cases() -> list[UsageEvent]:
    """Events the cache prices by their day's price, and events it leaves to the resolver."""
    day = datetime(2025, 6, 1, 12, tzinfo=UTC)
    cases: list[dict[str, Any]] = [
        {"usage": Usage(input_tokens=1000, output_tokens=100)},
        {"usage": Usage.from_counts({"input_tokens": 1000, "output_tokens": 100})},
        {"usage": Usage(input_tokens=1000, cache_read_tokens=400, output_tokens=100)},
        {"usage": Usage(input_tokens=1000, output_tokens=300, reasoning_tokens=200)},
        {"usage": Usage(input_tokens=1000, input_audio_tokens=800)},  # incomplete
        {"usage": Usage(input_tokens=1000), "fee_counts": {"web_searches": 2}},
        {"usage": Usage(input_tokens=10, cache_read_tokens=11)},  # inconsistent
        {"usage": Usage(input_tokens=0)},
        {"usage": Usage(input_tokens=1000), "service_tier": "flex"},
        {"usage": Usage(input_tokens=1000), "service_tier": "priority"},
        {"usage": Usage(input_tokens=1000), "service_tier": "no-such-tier"},
        {"usage": Usage(input_tokens=1000), "response_model": "gpt-4o-2024-08-06"},
        {"usage": Usage(input_tokens=1000), "response_model": "gpt-4o"},
        {"usage": Usage(input_tokens=1000), "model": "no-such-model"},
        {"usage": Usage(input_tokens=1000), "usage_source": "missing"},
        {"usage": Usage(input_tokens=1000), "cost": Decimal("0.5"), "cost_source": "manual"},
        {"usage": Usage(input_tokens=1000), "cost": Decimal("0.5"), "cost_source": "catalog"},
        {"usage": Usage(input_tokens=M), "provider": "acme", "model": "acme-1"},
        {
            "usage": Usage(input_tokens=M),
            "provider": "acme",
            "model": "acme-1",
            "ts": day.replace(year=2024),
        },
        {
            "usage": Usage(input_tokens=M),
            "provider": "acme",
            "model": "acme-1",
            "service_tier": "flex",
        },
        # A floating name, before and after its alias; a price that changes within the day.
        {"usage": Usage(input_tokens=M), "provider": "mistral", "model": "mistral-large-latest"},
        {
            "usage": Usage(input_tokens=M),
            "provider": "mistral",
            "model": "mistral-large-latest",
            "ts": datetime(2025, 12, 5, tzinfo=UTC),
        },
        {"usage": Usage(input_tokens=M), "provider": "deepseek", "model": "deepseek-chat"},
        {
            "usage": Usage(input_tokens=M),
            "provider": "deepseek",
            "model": "deepseek-chat",
            "ts": datetime(2025, 6, 1, 20, tzinfo=UTC),
        },
        {
            "usage": Usage(input_tokens=M, output_tokens=M),
            "provider": "anthropic",
            "model": "claude-sonnet-4-5",
        },
    ]
    return [
        UsageEvent(**{"provider": "openai", "model": "gpt-4o", "ts": day, **case}) for case in cases
    ]


def test_the_cache_prices_every_event_as_the_resolver_does(tmp_path: Path) -> None:
    (tmp_path / "prices.yaml").write_text(PRICES)
    cache = PriceCache(PriceResolver(user_prices=[tmp_path / "prices.yaml"]), version=1)
    fresh = PriceResolver(user_prices=[tmp_path / "prices.yaml"])
    for event in _cache_cases() * 2:  # the second time from the day's price kept
        expected = fresh.priced(event)
        assert cache.priced(event) == expected, event
        assert cache.priced(event).price_status == expected.price_status
        if not event.usage.problems():
            mine = event.replace()
            assert cache.priced(mine, usage_sound=True, in_place=True) == expected, event
    unaware = UsageEvent(provider="openai", model="gpt-4o", ts=datetime(2025, 6, 1))
    with pytest.raises(llmledger.InvalidEventError, match="timezone-aware"):
        cache.priced(unaware)


def test_events_made_in_one_step_equal_those_of_the_constructor() -> None:
    at = datetime(2025, 6, 1, tzinfo=UTC)
    built = UsageEvent.from_values(
        {"provider": "openai", "model": "gpt-4o", "ts": at, "tags": {"a": "1"}, "warnings": ["w"]}
    )
    made = UsageEvent(
        provider="openai", model="gpt-4o", ts=at, id=built.id, tags={"a": "1"}, warnings=("w",)
    )
    assert built == made and repr(built) == repr(made)
    assert built.replace(feature="x") == made.replace(feature="x")
    with pytest.raises(TypeError, match="no field"):
        built.replace(colour="red")
    with pytest.raises(llmledger.InvalidEventError, match="tags must map"):
        built.replace(tags=["a"])
    with pytest.raises(AttributeError):
        built.cost = Decimal(1)  # type: ignore[misc]  # frozen on purpose


def test_a_child_process_makes_ids_of_its_own() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, "".join(new_id()[10:] for _ in range(4)).encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    child = os.read(read, 200).decode()
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0 and len(child) == 64
    parent = "".join(new_id()[10:] for _ in range(4))
    assert parent != child
    assert abs(id_time_ms(new_id()) - datetime.now(UTC).timestamp() * 1000) < 60_000
