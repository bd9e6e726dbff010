"""PriceResolver against the bundled catalog: names, history, tiers, variants, unpriced."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from llmledger.core.errors import InvalidEventError, UnknownModelError
from llmledger.core.events import UsageEvent
from llmledger.core.usage import Usage
from llmledger.pricing import Catalog, PriceBook, PriceResolver

AT = datetime(2025, 11, 1, 12, tzinfo=UTC)
LATE = datetime(2026, 11, 1, 12, tzinfo=UTC)
M = 1_000_000


@pytest.fixture(scope="module")
def resolver() -> PriceResolver:
    return PriceResolver()


def usd(text: str) -> Decimal:
    return Decimal(text).quantize(Decimal("0.000000001"))


@pytest.mark.parametrize(
    ("provider", "model", "catalog_ref"),
    [
        ("openai", "gpt-4o-2024-08-06", "openai/gpt-4o"),
        ("anthropic", "claude-sonnet-4-5-20250929", "anthropic/claude-sonnet-4-5"),
        (
            "bedrock",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "aws/regional.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
        ("google", "models/gemini-2.5-flash", "google/gemini-2.5-flash"),
        ("google", "publishers/google/models/gemini-2.5-flash", "google/gemini-2.5-flash"),
        ("openrouter", "openai/gpt-4o", "openrouter/openai/gpt-4o"),
        ("openai", "openai/gpt-4o", "openai/gpt-4o"),
        ("mistral", "mistral-large-latest", "mistral/mistral-large"),
        ("groq", "llama-3.3-70b-versatile", "groq/llama-3.3-70b-versatile"),
        ("deepseek", "deepseek-chat", "deepseek/deepseek-chat"),
        ("xai", "grok-3", "x-ai/grok-3"),
        ("x-ai", "grok-3", "x-ai/grok-3"),
        ("cohere", "command-r-plus", "cohere/command-r-plus"),
        ("azure", "gpt-5-mini", "openai/gpt-5-mini"),
        ("my-gateway", "gpt-4o", "openai/gpt-4o"),
    ],
)
def test_names_people_send_are_found(
    resolver: PriceResolver, provider: str, model: str, catalog_ref: str
) -> None:
    result = resolver.price(provider, model, Usage(input_tokens=10, output_tokens=10), AT)
    assert result.cost is not None and result.cost > 0
    assert result.source == "catalog"
    assert result.ref is not None
    assert result.ref.startswith(f"genai-prices@0.2.3:{catalog_ref}")


def test_cached_input_pays_the_cache_rate(resolver: PriceResolver) -> None:
    result = resolver.price(
        "openai",
        "gpt-4o",
        Usage(input_tokens=1000, cache_read_tokens=400, output_tokens=100),
        AT,
    )
    assert result.cost == usd("0.003")  # 600 x 2.5 + 400 x 1.25 + 100 x 10, per million
    assert result.breakdown == {
        "input_tokens": usd("0.0015"),
        "cache_read_tokens": usd("0.0005"),
        "output_tokens": usd("0.001"),
    }
    assert result.unpriced_reason is None
    assert result.price is not None and result.price.model == "gpt-4o"


def test_anthropic_cache_writes_split_by_ttl(resolver: PriceResolver) -> None:
    usage = Usage(
        input_tokens=3000,
        cache_read_tokens=1000,
        cache_write_tokens=1000,
        cache_write_5m_tokens=600,
        cache_write_1h_tokens=400,
        output_tokens=100,
    )
    result = resolver.price("anthropic", "claude-sonnet-4-5-20250929", usage, AT)
    # 1000 x 3 + 1000 x 0.3 + 600 x 3.75 + 400 x 6 + 100 x 15, per million
    assert result.cost == usd("0.00945")
    assert result.breakdown["cache_write_tokens"] == usd("0.00225")
    assert result.breakdown["cache_write_1h_tokens"] == usd("0.0024")


def test_long_context_tier_is_a_cliff_on_input_tokens(resolver: PriceResolver) -> None:
    model = "claude-sonnet-4-5-20250929"
    at_limit = resolver.price("anthropic", model, Usage(input_tokens=200_000, output_tokens=M), AT)
    above = resolver.price("anthropic", model, Usage(input_tokens=200_001, output_tokens=M), AT)
    assert at_limit.breakdown["output_tokens"] == usd("15")
    assert above.breakdown["output_tokens"] == usd("22.5")
    assert above.breakdown["input_tokens"] == usd(
        "1.200006"
    )  # every token at 6, not just the excess


def test_input_audio_has_its_own_rate(resolver: PriceResolver) -> None:
    result = resolver.price(
        "google", "gemini-2.5-flash", Usage(input_tokens=M, input_audio_tokens=M // 2), AT
    )
    assert result.breakdown == {"input_tokens": usd("0.15"), "input_audio_tokens": usd("0.5")}


def test_service_tier_variants(resolver: PriceResolver) -> None:
    usage = Usage(input_tokens=M, output_tokens=M)
    standard = resolver.price("openai", "gpt-5", usage, LATE)
    flex = resolver.price("openai", "gpt-5", usage, LATE, service_tier="flex")
    priority = resolver.price("openai", "gpt-5", usage, LATE, service_tier="priority")
    batch = resolver.price("openai", "gpt-5", usage, LATE, service_tier="batch")
    unknown = resolver.price("openai", "gpt-5", usage, LATE, service_tier="auto")
    assert standard.cost == usd("11.25")
    assert flex.cost == usd("5.625")
    assert priority.cost == usd("22.5")
    assert batch.cost == usd("5.625")
    assert unknown.cost == standard.cost
    assert flex.ref == "genai-prices@0.2.3:openai/gpt-5@2026-10-12;service_tier=flex"
    assert batch.ref is not None and batch.ref.endswith(";processing=batch")


def test_service_tier_variant_only_from_its_start_date(resolver: PriceResolver) -> None:
    usage = Usage(input_tokens=M, output_tokens=M)
    # Before the catalog's flex variant (2026-10-12) the supplementary tier row halves
    # the standard 1.25 + 10: flex was billed at half from gpt-5's launch.
    before = resolver.price("openai", "gpt-5", usage, AT, service_tier="flex")
    assert before.cost == usd("5.625")
    assert before.ref == (
        "genai-prices@0.2.3:openai/gpt-5;discount=0.5"
        "(supplement:tier openai/gpt-5*@2025-08-07;service_tier=flex)"
    )
    # A tier no row prices then is the standard price, flagged.
    priority = resolver.price("openai", "gpt-5", usage, AT, service_tier="priority")
    assert (priority.cost, priority.status) == (usd("11.25"), "incomplete")


def test_anthropic_fast_mode_maps_to_speed(resolver: PriceResolver) -> None:
    usage = Usage(input_tokens=M)
    assert resolver.price(
        "anthropic", "claude-opus-4-8", usage, LATE, service_tier="fast"
    ).cost == usd("10")


def test_dated_history_uses_the_price_in_force(resolver: PriceResolver) -> None:
    usage = Usage(input_tokens=M)
    noon = timedelta(hours=12)

    def cost_on(day: date) -> Decimal | None:
        at = datetime(day.year, day.month, day.day, tzinfo=UTC) + noon
        return resolver.price("deepseek", "deepseek-v4-flash", usage, at).cost

    # Asked out of order, so a cached stretch must never leak into another.
    assert cost_on(date(2026, 9, 20)) == usd("0.15")
    assert cost_on(date(2026, 8, 1)) == usd("0.14")
    assert cost_on(date(2026, 8, 17)) == usd("0.22")
    assert cost_on(date(2026, 8, 16)) == usd("0.14")
    assert cost_on(date(2026, 9, 10)) == usd("0.15")


def test_time_of_day_prices_switch_at_the_exact_microsecond(resolver: PriceResolver) -> None:
    usage = Usage(input_tokens=M)
    start = datetime(2025, 6, 1, 0, 30, tzinfo=UTC)
    peak = resolver.price("deepseek", "deepseek-chat", usage, start).cost
    before = resolver.price("deepseek", "deepseek-chat", usage, start - timedelta(microseconds=1))
    end = resolver.price("deepseek", "deepseek-chat", usage, start + timedelta(hours=16))
    last = resolver.price(
        "deepseek", "deepseek-chat", usage, start + timedelta(hours=16, microseconds=-1)
    )
    assert peak == usd("0.27")
    assert before.cost == usd("0.135")
    assert end.cost == usd("0.135")
    assert last.cost == usd("0.27")
    assert last.ref is not None and ";hours=00:30-16:30UTC" in last.ref


def test_local_times_are_read_in_utc(resolver: PriceResolver) -> None:
    sao_paulo = timezone(timedelta(hours=-3))
    # 22:00 in São Paulo is 01:00 UTC the next day: peak hours for deepseek-chat.
    local = datetime(2025, 6, 1, 22, tzinfo=sao_paulo)
    assert resolver.price("deepseek", "deepseek-chat", Usage(input_tokens=M), local).cost == usd(
        "0.27"
    )


def test_unknown_model_is_unpriced_never_zero(resolver: PriceResolver) -> None:
    result = resolver.price("openai", "foo", Usage(input_tokens=10), AT)
    assert result.cost is None
    assert not result.priced
    assert result.unpriced_reason == "no price for model 'foo' from provider 'openai'"
    assert result.source is None and result.ref is None and result.breakdown == {}


def test_unknown_provider_and_model_is_unpriced(resolver: PriceResolver) -> None:
    result = resolver.price("acme", "acme-1", Usage(input_tokens=10), AT)
    assert result.unpriced_reason == "no price for model 'acme-1' from provider 'acme'"


def test_price_in_units_llmledger_does_not_count_is_unpriced(resolver: PriceResolver) -> None:
    result = resolver.price("openai", "whisper-1", Usage(input_tokens=10), AT)
    assert result.cost is None
    assert result.unpriced_reason is not None
    assert "does not count: audio_seconds, input_audio_seconds" in result.unpriced_reason


def test_units_without_a_bucket_are_listed_and_the_rest_priced(resolver: PriceResolver) -> None:
    result = resolver.price("openai", "gpt-4o", Usage(input_tokens=M), AT)
    assert result.cost == usd("2.5")
    assert result.price is not None
    assert result.price.uncounted_units == ("storage_searches",)
    # Web searches are counted, so the catalog's $10 per thousand is a fee (per search).
    assert result.price.fees == {"web_searches": Decimal("0.01")}


def test_catalog_model_listed_as_free_costs_zero(resolver: PriceResolver) -> None:
    result = resolver.price("google", "gemma-3", Usage(input_tokens=M, output_tokens=M), AT)
    assert result.cost == Decimal(0)
    assert result.source == "catalog"


def test_per_request_fee(resolver: PriceResolver) -> None:
    result = resolver.price("perplexity", "sonar", Usage(input_tokens=M, output_tokens=M), AT)
    assert result.breakdown["requests"] == usd("0.012")
    assert result.cost == usd("2.012")


@pytest.mark.parametrize(
    "usage",
    [
        Usage(input_tokens=10, cache_read_tokens=20),
        Usage(input_tokens=10, output_tokens=5, reasoning_tokens=6),
        Usage(input_tokens=-1),
        Usage(cache_write_tokens=5, cache_write_1h_tokens=6, input_tokens=10),
    ],
)
def test_broken_usage_is_unpriced_with_the_reason(resolver: PriceResolver, usage: Usage) -> None:
    result = resolver.price("openai", "gpt-4o", usage, AT)
    assert result.cost is None
    assert result.unpriced_reason is not None
    assert result.unpriced_reason.startswith("usage is inconsistent: ")
    assert result.unpriced_reason.removeprefix("usage is inconsistent: ") in usage.problems()


def test_parts_priced_apart_that_exceed_their_total_are_unpriced(resolver: PriceResolver) -> None:
    # Sound by llmledger's rules (each part within the input), but the audio and
    # cache-read rates together would bill more tokens than were sent.
    usage = Usage(input_tokens=100, cache_read_tokens=60, input_audio_tokens=60)
    result = resolver.price("google", "gemini-2.5-flash", usage, AT)
    assert result.cost is None
    assert result.unpriced_reason is not None
    assert "add up to more than their total" in result.unpriced_reason


def test_reported_cost_wins(resolver: PriceResolver) -> None:
    result = resolver.price(
        "openrouter",
        "openai/gpt-4o",
        Usage(input_tokens=M),
        AT,
        reported_cost=Decimal("0.00123456789"),
    )
    assert result.cost == Decimal("0.001234568")
    assert result.source == "provider-reported"
    assert result.ref == "provider-reported:openrouter"


def test_reported_cost_as_float_keeps_its_digits(resolver: PriceResolver) -> None:
    result = resolver.price("openrouter", "x", Usage(), AT, reported_cost=0.1)  # type: ignore[arg-type]
    assert result.cost == usd("0.1")


def test_invalid_reported_cost_falls_back_to_prices(resolver: PriceResolver) -> None:
    result = resolver.price(
        "openai", "gpt-4o", Usage(input_tokens=M), AT, reported_cost=Decimal("-1")
    )
    assert result.source == "catalog"
    assert result.cost == usd("2.5")


def test_naive_time_is_refused(resolver: PriceResolver) -> None:
    with pytest.raises(InvalidEventError, match="timezone-aware"):
        resolver.price("openai", "gpt-4o", Usage(), datetime(2025, 1, 1))


def test_price_event_fills_cost_fields(resolver: PriceResolver) -> None:
    event = UsageEvent(
        provider="openai",
        model="gpt-4o",
        response_model="gpt-4o-2024-08-06",
        ts=AT,
        usage=Usage(input_tokens=M, output_tokens=M),
    )
    original = replace(event)
    event = resolver.priced(event)
    assert event.cost == usd("12.5")
    assert event.cost_breakdown == {"input_tokens": usd("2.5"), "output_tokens": usd("10")}
    assert event.cost_source == "catalog"
    assert event.price_ref == "genai-prices@0.2.3:openai/gpt-4o"
    assert event.unpriced_reason is None
    # Pricing returns a priced copy; the event it was given is left as it was.
    assert original.cost is None and original.cost_source is None
    assert replace(event, cost=None, cost_breakdown=None, cost_source=None, price_ref=None) == (
        original
    )


def test_price_event_falls_back_to_the_requested_model(resolver: PriceResolver) -> None:
    event = UsageEvent(
        provider="openai",
        model="gpt-4o",
        response_model="gpt-4o-weird-snapshot",
        ts=AT,
        usage=Usage(input_tokens=M),
    )
    assert resolver.event_price(event).cost == usd("2.5")


def test_price_event_unpriced(resolver: PriceResolver) -> None:
    event = UsageEvent(provider="openai", model="nope", ts=AT, usage=Usage(input_tokens=1))
    event = resolver.priced(event)
    assert event.cost is None and event.cost_breakdown is None and event.cost_source is None
    assert event.unpriced_reason == "no price for model 'nope' from provider 'openai'"


def test_price_event_without_usage_is_unpriced(resolver: PriceResolver) -> None:
    event = UsageEvent(provider="openai", model="gpt-4o", ts=AT, usage_source="missing")
    event = resolver.priced(event)
    assert event.cost is None
    assert event.unpriced_reason == "the provider reported no usage for this call"


def test_price_event_with_reported_cost(resolver: PriceResolver) -> None:
    event = UsageEvent(provider="openrouter", model="x/y", ts=AT, usage_source="missing")
    event = resolver.priced(event, reported_cost=Decimal("0.5"))
    assert event.cost == usd("0.5")
    assert event.cost_source == "provider-reported"


def test_price_event_keeps_a_manual_cost(resolver: PriceResolver) -> None:
    event = UsageEvent(
        provider="openai",
        model="gpt-4o",
        ts=AT,
        usage=Usage(input_tokens=M),
        cost=Decimal("9"),
        cost_source="manual",
    )
    event = resolver.priced(event)
    assert event.cost == Decimal("9") and event.cost_source == "manual"


def test_a_cost_the_provider_reported_on_the_event_is_kept(resolver: PriceResolver) -> None:
    event = UsageEvent(
        provider="openrouter",
        model="openai/gpt-4o",
        ts=AT,
        usage=Usage(input_tokens=M),
        cost=Decimal("0.25"),
        cost_source="provider-reported",
        price_ref="provider-reported:openrouter",
    )
    result = resolver.event_price(event)
    assert (result.cost, result.source, result.ref) == (
        Decimal("0.25"),
        "provider-reported",
        "provider-reported:openrouter",
    )


def test_a_cost_priced_elsewhere_is_priced_again(resolver: PriceResolver) -> None:
    # A catalog cost computed by another price source (an SDK's) is not taken on trust.
    event = UsageEvent(
        provider="openai",
        model="gpt-4o",
        ts=AT,
        usage=Usage(input_tokens=M),
        cost=Decimal("99"),
        cost_source="catalog",
        price_ref="genai-prices@0.0.1:openai/gpt-4o",
    )
    assert resolver.priced(event).cost == usd("2.5")


def test_lookup(resolver: PriceResolver) -> None:
    price = resolver.lookup("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", AT)
    assert price.provider == "bedrock"
    assert price.rates["input_tokens"] == Decimal("3.3")
    assert price.source == "catalog"


def test_lookup_guesses_the_provider(resolver: PriceResolver) -> None:
    price = resolver.lookup(None, "claude-3-5-haiku-20241022", AT)
    assert price.provider == "anthropic"
    assert price.rates["output_tokens"] == Decimal("4")
    assert price.rate("input_tokens") == Decimal("0.8")


def test_lookup_shows_prices_in_uncounted_units(resolver: PriceResolver) -> None:
    price = resolver.lookup("openai", "whisper-1", AT)
    assert price.rates == {}
    assert price.uncounted_units == ("audio_seconds", "input_audio_seconds")


def test_lookup_unknown(resolver: PriceResolver) -> None:
    with pytest.raises(UnknownModelError, match="no price for model 'foo'"):
        resolver.lookup("openai", "foo", AT)
    with pytest.raises(UnknownModelError, match="from any provider"):
        resolver.lookup(None, "surely-not-a-model-name", AT)


def test_lookup_needs_a_time() -> None:
    with pytest.raises(InvalidEventError, match="at="):
        PriceResolver().lookup("openai", "gpt-4o")
    resolver = PriceResolver(now=AT)
    assert resolver.lookup("openai", "gpt-4o").model == "gpt-4o"
    with pytest.raises(InvalidEventError, match="timezone-aware"):
        PriceResolver(now=datetime(2025, 1, 1))


def test_list_prices(resolver: PriceResolver) -> None:
    rows = resolver.list_prices("openai", AT)
    models = {p.model for p in rows}
    assert {"gpt-4o", "gpt-5", "whisper-1"} <= models
    assert all(p.provider == "openai" for p in rows)
    bedrock = resolver.list_prices("bedrock", AT)
    assert bedrock and all(p.provider == "bedrock" for p in bedrock)
    assert resolver.list_prices("no-such-provider", AT) == []


def test_list_all_prices_names_providers_the_llmledger_way(resolver: PriceResolver) -> None:
    providers = {p.provider for p in resolver.list_prices(at=AT)}
    assert {"openai", "anthropic", "bedrock", "google"} <= providers
    assert "aws" not in providers


def test_without_catalog_everything_is_unpriced() -> None:
    result = PriceResolver(catalog=False).price("openai", "gpt-4o", Usage(input_tokens=1), AT)
    assert result.unpriced_reason == "no price for model 'gpt-4o' from provider 'openai'"


def test_catalog_is_our_own_snapshot() -> None:
    from genai_prices import data_snapshot

    catalog = Catalog()
    assert catalog._snapshot is not data_snapshot.get_snapshot()
    assert catalog._snapshot.from_auto_update is False


def test_custom_catalog_data() -> None:
    from genai_prices.types import ClauseEquals, ModelInfo, ModelPrice, Provider

    provider = Provider(
        id="acme",
        name="Acme",
        api_pattern="https://acme",
        models=[
            ModelInfo(
                id="acme-1",
                match=ClauseEquals(equals="acme-1"),
                prices=ModelPrice(input_mtok=Decimal("1"), output_mtok=Decimal("2")),
            )
        ],
    )
    resolver = PriceResolver(catalog=Catalog([provider], version="test"))
    result = resolver.price("acme", "acme-1", Usage(input_tokens=M, output_tokens=M), AT)
    assert result.cost == usd("3")
    assert result.ref == "genai-prices@test:acme/acme-1"


def _recorded_event(name: str, model: str, at: datetime) -> UsageEvent:
    from llmledger.normalize import read_response
    from tests.conftest import RECORDED

    reading = read_response((RECORDED / name).read_bytes(), provider="google")
    return UsageEvent(
        provider="google",
        model=model,
        ts=at,
        response_model=reading.response_model,
        usage=reading.usage,
        fee_counts={str(fee): uses for fee, uses in reading.fee_counts.items()},
    )


def test_gemini_image_output_is_priced_at_its_own_rate(resolver: PriceResolver) -> None:
    event = _recorded_event(
        "gemini_generate_image_output.json",
        "gemini-3-pro-image-preview",
        datetime(2025, 12, 1, tzinfo=UTC),
    )
    result = resolver.event_price(event)
    # Gemini 3 Pro Image: input $2/M, text and thinking output $12/M, image output $120/M.
    # Output 1457 = 1120 image + 163 text + 174 thinking:
    # 14 * 2 + (163 + 174) * 12 + 1120 * 120 = 28 + 4044 + 134400 = 138472 per million.
    assert result.cost == usd("0.138472")
    assert result.breakdown == {
        "input_tokens": usd("0.000028"),
        "output_tokens": usd("0.004044"),
        "output_image_tokens": usd("0.1344"),
    }
    assert result.status == "priced"
    # A price without an image output rate prices the images as output, and says so.
    flat = PriceResolver(
        catalog=False,
        user_prices=PriceBook.from_mapping(
            {
                "prices": [
                    {
                        "provider": "google",
                        "model": "gemini-3-pro-image-preview",
                        "input": 2,
                        "output": 12,
                    }
                ]
            },
            name="flat",
        ),
    )
    plain = flat.event_price(event)
    assert plain.cost == usd("0.017512")  # 14 * 2 + 1457 * 12 = 17512 per million
    assert plain.incomplete_reason is not None
    assert "output_image_tokens=1120" in plain.incomplete_reason


def test_grounding_on_gemini_2_5_is_one_fee_per_grounded_prompt(resolver: PriceResolver) -> None:
    event = _recorded_event(
        "gemini_generate_web_search.json", "gemini-2.5-pro", datetime(2025, 12, 1, tzinfo=UTC)
    )
    assert event.fee_counts == {"web_searches": 1}
    result = resolver.event_price(event)
    # input = prompt 17 + tool-use prompt 119 = 136; output = 201 + 213 thinking = 414.
    # 2.5 Pro: 136 * 1.25 + 414 * 10 = 170 + 4140 = 4310 per million = $0.00431, plus one
    # grounded prompt at $35 per 1000 = $0.035: $0.03931.
    assert result.cost == usd("0.03931")
    assert result.breakdown is not None and result.breakdown["web_searches"] == usd("0.035")
