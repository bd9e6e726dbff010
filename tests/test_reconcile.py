"""``llmledger reconcile`` against a local simulation of OpenAI's Usage and Costs API and
Anthropic's Usage and Cost Admin API (documented shapes, paged): it finds the planted
untracked call, and names the other causes."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from llmledger.core.events import UsageEvent
from llmledger.core.usage import Usage
from llmledger.pricing import PriceResolver
from llmledger.reconcile.compare import UsageRow, compare
from llmledger.reconcile.providers import ProviderAPIError, fetch_provider_rows
from llmledger.sim.billing import BilledCall, SimulatedBilling
from llmledger.store import open_store
from tests.test_server_e2e import LLMLEDGER

ADMIN_KEY = "sk-admin-test"
DAY1 = date(2026, 11, 2)
DAY2 = date(2026, 11, 3)
SNAPSHOTS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
}


def _event(provider: str, model: str, day: date, hour: int, usage: Usage) -> UsageEvent:
    event = UsageEvent(
        provider=provider,
        model=model,
        ts=datetime(day.year, day.month, day.day, hour, tzinfo=UTC),
        usage=usage,
    )
    return PriceResolver().priced(event)


def _billed(event: UsageEvent, *, rate: Decimal = Decimal(1), tier: str = "standard") -> BilledCall:
    """The call as the provider bills it: its snapshot name, its cost split in two."""
    breakdown = event.cost_breakdown or {}
    output = breakdown.get("output_tokens", Decimal(0)) * rate
    total = (event.cost or Decimal(0)) * rate
    return BilledCall(
        provider=event.provider,
        day=event.ts.date(),
        model=SNAPSHOTS.get(event.model, event.model),
        input_tokens=event.usage.input_tokens,
        output_tokens=event.usage.output_tokens,
        cached_tokens=event.usage.cache_read_tokens,
        cache_write_tokens=event.usage.cache_write_tokens,
        input_cost=total - output,
        output_cost=output,
        service_tier=tier,
    )


def _reconcile(
    db_url: str, base_url: str, *args: str, key: str = ADMIN_KEY
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LLMLEDGER, "--database-url", db_url, "reconcile", "--base-url", base_url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "OPENAI_ADMIN_KEY": key, "ANTHROPIC_ADMIN_KEY": key},
    )


def test_reconcile_finds_the_untracked_call(db_url: str) -> None:
    tracked = [
        _event(
            "openai",
            "gpt-4o-mini",
            DAY1,
            9,
            Usage(input_tokens=1200, cache_read_tokens=1024, output_tokens=80),
        ),
        _event("openai", "gpt-4o-mini", DAY1, 10, Usage(input_tokens=300, output_tokens=40)),
        _event("openai", "gpt-4o-mini", DAY2, 11, Usage(input_tokens=500, output_tokens=60)),
        _event("openai", "gpt-4o", DAY2, 12, Usage(input_tokens=2000, output_tokens=150)),
    ]
    # Called with a key the app's tracked client never saw: the provider bills it.
    untracked = _event(
        "openai", "gpt-4o-mini", DAY2, 15, Usage(input_tokens=4000, output_tokens=900)
    )
    with open_store(db_url) as store:
        store.write(tracked)
    billed = [_billed(e) for e in [*tracked, untracked]]
    with SimulatedBilling(billed, admin_key=ADMIN_KEY) as billing:
        done = _reconcile(
            db_url, billing.url, "--provider", "openai", "--since", "2026-11-01",
            "--until", "2026-11-05", "--json",
        )  # fmt: skip
        table = _reconcile(
            db_url, billing.url, "--provider", "openai", "--since", "2026-11-01",
            "--until", "2026-11-05",
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    answer = json.loads(done.stdout)
    assert answer["needs_attention"] == 1
    by_key = {(d["day"], d["model"]): d for d in answer["differences"]}
    assert set(by_key) == {
        ("2026-11-02", "gpt-4o-mini"),
        ("2026-11-03", "gpt-4o-mini"),
        ("2026-11-03", "gpt-4o"),
    }
    found = by_key[("2026-11-03", "gpt-4o-mini")]
    assert found["cause"] == "calls not tracked"
    assert found["token_differences"]["input_tokens"] == 4000
    assert found["token_differences"]["output_tokens"] == 900
    assert found["provider"]["calls"] - found["ledger"]["calls"] == 1
    assert untracked.cost is not None
    assert abs(Decimal(found["cost_difference"]) - untracked.cost) < Decimal("0.000001")
    for key in (("2026-11-02", "gpt-4o-mini"), ("2026-11-03", "gpt-4o")):
        assert by_key[key]["cause"] in ("ok", "rounding"), by_key[key]
    assert by_key[("2026-11-02", "gpt-4o-mini")]["provider"]["cache_read_tokens"] == 1024
    assert table.returncode == 1
    assert "2026-11-03 gpt-4o-mini: calls not tracked" in table.stdout


def test_reconcile_names_unpriced_tier_and_agreement_on_anthropic(db_url: str) -> None:
    cached = Usage(
        input_tokens=3000,
        cache_read_tokens=2000,
        cache_write_tokens=500,
        cache_write_5m_tokens=500,
        output_tokens=200,
    )
    agreed = _event("anthropic", "claude-sonnet-4-5", DAY1, 9, cached)
    batch = _event(
        "anthropic", "claude-haiku-4-5", DAY1, 10, Usage(input_tokens=10_000, output_tokens=2000)
    )
    unknown = _event(
        "anthropic", "claude-internal-preview", DAY2, 10, Usage(input_tokens=100, output_tokens=10)
    )
    assert unknown.cost is None
    with open_store(db_url) as store:
        store.write([agreed, batch, unknown])
    billed = [
        _billed(agreed),
        # Sent through the Message Batches API at half price; the ledger priced it standard.
        _billed(batch, rate=Decimal("0.5"), tier="batch"),
        BilledCall(
            "anthropic",
            DAY2,
            "claude-internal-preview",
            100,
            10,
            Decimal("0.001"),
            Decimal("0.001"),
        ),
    ]
    with SimulatedBilling(billed, admin_key=ADMIN_KEY, page_days=1) as billing:
        done = _reconcile(
            db_url, billing.url, "--provider", "anthropic", "--since", "2026-11-01",
            "--until", "2026-11-04", "--json",
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    causes = {(d["day"], d["model"]): d["cause"] for d in json.loads(done.stdout)["differences"]}
    assert causes == {
        ("2026-11-02", "claude-sonnet-4-5"): "ok",
        ("2026-11-02", "claude-haiku-4-5"): "tier or price",
        ("2026-11-03", "claude-internal-preview"): "unpriced",
    }


def test_a_ledger_that_agrees_exits_zero(db_url: str) -> None:
    events = [
        _event("openai", "gpt-4o-mini", DAY1, h, Usage(input_tokens=100 * h, output_tokens=h))
        for h in range(1, 6)
    ]
    with open_store(db_url) as store:
        store.write(events)
    with SimulatedBilling([_billed(e) for e in events], admin_key=ADMIN_KEY) as billing:
        done = _reconcile(
            db_url,
            billing.url,
            "--provider",
            "openai",
            "--since",
            "2026-11-01",
            "--until",
            "2026-11-03",
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "agrees with the provider's bill" in done.stdout


def test_a_wrong_admin_key_or_none_is_one_clear_error(db_url: str) -> None:
    with SimulatedBilling([], admin_key=ADMIN_KEY) as billing:
        wrong = _reconcile(
            db_url, billing.url, "--provider", "openai", "--since", "2026-11-01",
            "--until", "2026-11-02", key="sk-not-admin",
        )  # fmt: skip
        missing = _reconcile(
            db_url, billing.url, "--provider", "anthropic", "--since", "2026-11-01",
            "--until", "2026-11-02", "--admin-key-env", "NO_SUCH_VARIABLE",
        )  # fmt: skip
    # Errors exit 1 like every command's, with one line on stderr and nothing compared.
    assert wrong.returncode == 1 and wrong.stdout == ""
    assert wrong.stderr.strip() == (
        "Error: /v1/organization/usage/completions answered 401: an admin key is required"
    )
    assert missing.returncode == 1 and missing.stdout == ""
    assert "NO_SUCH_VARIABLE" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_pages_are_followed_to_the_end() -> None:
    day = date(2026, 11, 1)
    calls = [
        BilledCall(
            "openai",
            day + timedelta(days=i),
            "gpt-4o",
            10 * (i + 1),
            1,
            Decimal("0.01"),
            Decimal(0),
        )
        for i in range(9)
    ]
    requests: list[str] = []

    class Recording(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            requests.append(str(request.url))
            return super().handle_request(request)

    with SimulatedBilling(calls, admin_key=ADMIN_KEY, page_days=2) as billing:
        rows = fetch_provider_rows(
            "openai",
            admin_key=ADMIN_KEY,
            since=datetime(2026, 11, 1, tzinfo=UTC),
            until=datetime(2026, 11, 10, tzinfo=UTC),
            base_url=billing.url,
            transport=Recording(),
        )
    assert [row.input_tokens for row in rows] == [10 * (i + 1) for i in range(9)]
    assert sum(row.cost or 0 for row in rows) == Decimal("0.09")
    assert sum("page=" in url for url in requests) == 8  # 5 pages each of usage and costs


def test_a_page_that_is_not_the_documented_shape_is_refused() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"object": "page", "results": []})

    with pytest.raises(ProviderAPIError, match="without a data list"):
        fetch_provider_rows(
            "openai",
            admin_key=ADMIN_KEY,
            since=datetime(2026, 11, 1, tzinfo=UTC),
            until=datetime(2026, 11, 2, tzinfo=UTC),
            transport=httpx.MockTransport(answer),
        )


def _row(
    model: str, tokens: int, cost: str | None, unpriced_calls: int = 0, incomplete_calls: int = 0
) -> UsageRow:
    return UsageRow(
        DAY1,
        model,
        tokens,
        0,
        calls=1,
        cost=None if cost is None else Decimal(cost),
        unpriced_calls=unpriced_calls,
        incomplete_calls=incomplete_calls,
    )


@pytest.mark.parametrize(
    ("billed", "recorded", "cause"),
    [
        ([_row("m", 10, "1.00")], [_row("m", 10, "1.00")], "ok"),
        ([_row("m", 10, "1.004")], [_row("m", 10, "1.00")], "rounding"),
        ([_row("m", 10, "0.00005")], [_row("m", 10, "0")], "rounding"),
        ([_row("m", 10, "1.00")], [], "calls not tracked"),
        ([], [_row("m", 10, "1.00")], "recorded, not billed"),
        ([_row("m", 10, "1.00")], [_row("m", 12, "1.20")], "recorded, not billed"),
        ([_row("m", 10, "1.00")], [_row("m", 10, "0.50", unpriced_calls=1)], "unpriced"),
        ([_row("m", 10, "1.00")], [_row("m", 10, "0.50", incomplete_calls=1)], "incomplete price"),
        ([_row("m", 10, "1.00")], [_row("m", 10, "2.00")], "tier or price"),
        ([_row("m", 10, None)], [_row("m", 10, "2.00")], "cost not reported"),
    ],
)
def test_each_cause(billed: Sequence[UsageRow], recorded: Sequence[UsageRow], cause: str) -> None:
    (difference,) = compare(billed, recorded)
    assert difference.cause == cause
    assert difference.explanation
    assert json.dumps(difference.to_dict())


def test_the_documented_shapes_read_as_rows() -> None:
    """The response examples in docs/reconcile.md, in order: OpenAI usage and costs, then
    Anthropic usage and cost report."""
    from pathlib import Path

    from llmledger.reconcile.providers import rows_from_anthropic, rows_from_openai

    text = (Path(__file__).parents[1] / "docs" / "reconcile.md").read_text(encoding="utf-8")
    openai_usage, openai_costs, anthropic_usage, anthropic_costs = [
        json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, flags=re.S)
    ]
    (row,) = rows_from_openai([openai_usage], [openai_costs])
    assert (row.day, row.model, row.input_tokens, row.cache_read_tokens, row.calls) == (
        date(2024, 11, 1),
        "gpt-4o-mini-2024-07-18",
        1000,
        800,
        5,
    )
    assert row.cost == Decimal("0.06")
    (row,) = rows_from_anthropic([anthropic_usage], [anthropic_costs])
    assert (row.input_tokens, row.cache_read_tokens, row.cache_write_tokens) == (4700, 3000, 200)
    assert row.cost == Decimal("1.2378912")
    assert row.tiers == ("standard",)
