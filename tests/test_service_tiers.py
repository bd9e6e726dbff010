"""Service tiers in pricing: the catalog's variants, llmledger's supplementary tier multipliers
(Vertex AI Flex PayGo), a tier no price knows (flagged when read from a response, refused when
given by a user)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from click.testing import CliRunner

import llmledger
from llmledger.cli import main
from llmledger.core.errors import InvalidEventError, PriceFileError
from llmledger.core.events import UsageEvent
from llmledger.core.usage import Usage
from llmledger.normalize import read_response, read_stream
from llmledger.pricing import PriceBook, PriceResolver, load_supplement
from llmledger.pricing.supplement import supplement_book
from tests.conftest import RECORDED

AT = datetime(2026, 11, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def resolver() -> PriceResolver:
    return PriceResolver()


def usd(text: str) -> Decimal:
    return Decimal(text).quantize(Decimal("0.000000001"))


def test_a_vertex_flex_call_is_priced_at_half_the_standard_rates(resolver: PriceResolver) -> None:
    reading = read_response(
        (RECORDED / "vertex_generate_flex.json").read_bytes(), provider="vertex"
    )
    assert (reading.service_tier, reading.response_model) == ("flex", "gemini-3-flash-preview")
    event = UsageEvent(
        provider="vertex",
        model="gemini-3-flash-preview",
        ts=AT,
        usage=reading.usage,
        service_tier=reading.service_tier,
    )
    result = resolver.event_price(event)
    # gemini-3-flash-preview: $0.50/M in, $3/M out (the 51 thinking tokens are output);
    # Flex PayGo halves both: 5 * 0.25/M + 52 * 1.5/M = 0.00000125 + 0.000078.
    assert result.cost == usd("0.00007925")
    assert result.source == "supplement"
    assert result.ref is not None and "supplement:tier vertex/gemini-*;service_tier=flex" in (
        result.ref
    )
    assert result.status == "priced"
    standard = resolver.event_price(event.replace(service_tier=None))
    assert standard.cost == usd("0.0001585")


def test_a_tier_no_price_knows_is_priced_at_standard_and_flagged(resolver: PriceResolver) -> None:
    usage = Usage(input_tokens=1000, output_tokens=100)
    result = resolver.price("google", "gemini-2.5-flash", usage, AT, service_tier="priority")
    # The standard rates: 1000 * 0.30/M + 100 * 2.50/M.
    assert result.cost == usd("0.00055")
    assert result.status == "incomplete"
    assert result.incomplete_reason == (
        "no price for service tier 'priority' of model 'gemini-2.5-flash'; "
        "priced at the standard rates"
    )


def test_openai_flex_and_priority_come_from_the_catalog(resolver: PriceResolver) -> None:
    usage = Usage(input_tokens=1_000_000)
    flex = resolver.price("openai", "gpt-5", usage, AT, service_tier="flex")
    standard = resolver.price("openai", "gpt-5", usage, AT, service_tier="standard")
    assert (standard.cost, flex.cost) == (usd("1.25"), usd("0.625"))
    assert flex.ref is not None and flex.ref.endswith(";service_tier=flex")
    assert flex.status == standard.status == "priced"
    assert resolver.service_tiers("openai", "gpt-5", AT) == (
        "standard",
        "flex",
        "priority",
        "fast",
        "batch",
    )
    assert resolver.service_tiers("google", "gemini-2.5-flash", AT) == ("standard", "batch", "flex")


def test_an_openai_flex_stream_before_the_catalog_lists_flex_is_billed_at_half(
    resolver: PriceResolver,
) -> None:
    reading = read_stream(
        (RECORDED / "openai_responses_stream.sse").read_bytes(), provider="openai"
    )
    assert (reading.service_tier, reading.response_model) == ("flex", "gpt-5-2025-08-07")
    # The response's created_at: 2025-09-16 15:00:36 UTC. genai-prices lists gpt-5's flex
    # variant only from 2026-10-12, so the supplementary tier row applies.
    event = UsageEvent(
        provider="openai",
        model="gpt-5",
        ts=datetime(2025, 9, 16, 15, 0, 36, tzinfo=UTC),
        response_model=reading.response_model,
        operation="responses",
        usage=reading.usage,
        service_tier=reading.service_tier,
    )
    result = resolver.event_price(event)
    # gpt-5 standard $1.25/M in, $10/M out; Flex processing is billed at Batch API rates,
    # half of those: input 53 + output 469 (448 of them reasoning) ->
    # 53 * 0.625/M + 469 * 5/M = 0.000033125 + 0.002345 = 0.002378125.
    assert result.cost == usd("0.002378125")
    assert result.source == "supplement"
    assert result.ref is not None and "supplement:tier openai/gpt-5*@2025-08-07" in result.ref
    assert result.status == "priced"
    # Standard, the same call: 53 * 1.25/M + 469 * 10/M = 0.00475625.
    assert resolver.event_price(event.replace(service_tier=None)).cost == usd("0.00475625")


def test_a_tier_variant_the_catalog_dates_later_does_not_price_earlier_calls(
    resolver: PriceResolver,
) -> None:
    usage = Usage(input_tokens=1_000_000)
    before = datetime(2025, 9, 16, tzinfo=UTC)
    # The catalog's priority variant of gpt-5 starts 2026-10-12 and no supplementary row
    # prices priority: the standard $1.25 with a flag, never a silent standard price.
    early = resolver.price("openai", "gpt-5", usage, before, service_tier="priority")
    assert early.cost == usd("1.25")
    assert early.status == "incomplete"
    assert early.incomplete_reason is not None and "'priority'" in early.incomplete_reason
    late = resolver.price(
        "openai", "gpt-5", usage, datetime(2026, 11, 1, tzinfo=UTC), service_tier="priority"
    )
    assert (late.cost, late.status) == (usd("2.5"), "priced")


def test_every_tier_row_names_its_page_and_day() -> None:
    tiers = load_supplement().discounts
    assert tiers and all(t.service_tier and t.checked for t in tiers)
    row = {"provider": "google", "model": "gemini-*", "service_tier": "flex", "discount": 0.5}
    with pytest.raises(PriceFileError, match="source"):
        supplement_book({"tiers": [{**row, "checked": date(2026, 1, 1)}]})
    with pytest.raises(PriceFileError, match="service_tier"):
        supplement_book({"tiers": [{**row, "service_tier": None, "source": "https://x.example/p"}]})


@pytest.mark.usefixtures("prices_loaded")
def test_a_tier_given_by_a_user_that_no_price_knows_is_refused() -> None:
    with pytest.raises(InvalidEventError) as info:
        llmledger.record(provider="openai", model="gpt-4o", input_tokens=10, service_tier="turbo")
    assert str(info.value) == (
        "unknown service tier 'turbo' for openai/gpt-4o; known: standard, priority, fast, batch"
    )
    event = llmledger.record(
        provider="openai", model="gpt-4o", input_tokens=1_000_000, service_tier="priority"
    )
    assert event.service_tier == "priority" and event.cost == usd("4.25")
    # A model no price knows is recorded unpriced whatever its tier.
    assert llmledger.record(provider="acme", model="x", service_tier="turbo").cost is None


def test_the_record_command_checks_its_tier() -> None:
    runner = CliRunner()
    base = ["record", "--provider", "openai", "--model", "gpt-5", "--input", "1000000"]
    refused = runner.invoke(main, [*base, "--tier", "turbo"])
    assert refused.exit_code != 0
    assert "unknown service tier 'turbo'" in refused.output
    assert "known: standard, flex, priority, fast, batch" in refused.output
    done = runner.invoke(main, [*base, "--tier", "flex", "--json"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert '"service_tier": "flex"' in done.output
    assert "0.625" in done.output


# -- floating aliases ----------------------------------------------------------------------------


def test_a_floating_alias_the_catalog_lists_is_priced_as_it_says(resolver: PriceResolver) -> None:
    usage = Usage(input_tokens=1000, output_tokens=100)
    # Before Mistral Large 3, the catalog's mistral-large (Large 2, $2/M in, $6/M out)
    # is what mistral-large-latest named.
    at = datetime(2025, 6, 1, tzinfo=UTC)
    result = resolver.price("mistral", "mistral-large-latest", usage, at)
    assert (result.cost, result.status) == (usd("0.0026"), "priced")


def test_a_floating_alias_is_priced_as_the_model_it_pointed_to_that_day(
    resolver: PriceResolver,
) -> None:
    reading = read_response(
        (RECORDED / "mistral_chat_cached.json").read_bytes(), provider="mistral"
    )
    event = UsageEvent(
        provider="mistral",
        model="mistral-large-latest",
        ts=datetime(2026, 7, 24, 16, 38, 33, tzinfo=UTC),  # the response's created
        response_model=reading.response_model,
        usage=reading.usage,
    )
    assert (event.usage.input_tokens, event.usage.cache_read_tokens) == (268, 224)
    assert event.usage.output_tokens == 5
    result = resolver.event_price(event)
    # From 2025-12-02 mistral-large-latest is Mistral Large 3 (mistral-large-2512):
    # input $0.50/M, cached input $0.05/M (10%), output $1.50/M.
    # (268 - 224) * 0.50 + 224 * 0.05 + 5 * 1.50 = 22 + 11.2 + 7.5 = 40.7 per million.
    assert result.cost == usd("0.0000407")
    assert result.status == "priced"
    assert result.ref is not None
    assert result.ref.endswith(";alias=supplement:alias mistral/mistral-large-latest@2025-12-02")
    # A price file row for the name itself wins over the alias.
    book = PriceBook.from_mapping(
        {"prices": [{"provider": "mistral", "model": "mistral-large-latest", "input": 1}]},
        name="mine",
    )
    mine = PriceResolver(user_prices=book).event_price(event)
    assert mine.cost == usd("0.000268") and mine.source == "file"


def test_every_alias_row_names_its_page_and_day() -> None:
    aliases = load_supplement().aliases
    assert aliases and all(a.checked and a.source_url for a in aliases)
    row = {"provider": "mistral", "model": "m-latest", "target": "m-2", "from": "2025-01-01"}
    with pytest.raises(PriceFileError, match="source"):
        supplement_book({"aliases": [{**row, "checked": date(2026, 1, 1)}]})


def test_a_floating_alias_reached_by_prefix_is_priced_and_flagged(resolver: PriceResolver) -> None:
    usage = Usage(input_tokens=1000, output_tokens=100)
    result = resolver.price("anthropic", "claude-sonnet-4-5-latest", usage, AT)
    # Priced as claude-sonnet-4-5: 1000 * 3/M + 100 * 15/M.
    assert result.cost == usd("0.0045")
    assert result.incomplete_reason == (
        "'claude-sonnet-4-5-latest' is a floating alias the catalog does not list; "
        "priced as claude-sonnet-4-5"
    )
