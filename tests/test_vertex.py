"""Vertex AI as a provider of its own: read from the response and the client, priced
through Google's catalog models with its own list prices where they differ, and kept
apart from the Gemini API (``google``) in reports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from google import genai
from google.genai import types

from llmledger.capture import Instrumentation
from llmledger.cli import main
from llmledger.core.events import UsageEvent
from llmledger.core.providers import provider_name
from llmledger.core.usage import Usage
from llmledger.normalize import read_response, read_stream_events
from llmledger.otel.semconv import metric_attributes
from llmledger.pricing import PriceBook, PriceResolver
from llmledger.pricing.supplement import supplement_book
from llmledger.store import open_store
from tests.test_capture_support import JSON, KeepingLedger, Replay, instrumented, ledger, recorded

__all__ = ["instrumented", "ledger"]

RECORDED = Path(__file__).parent / "fixtures" / "recorded"
VERTEX = recorded("vertex_generate_content.json")
# The recorded call's own time (its createTime).
AT = datetime(2025, 12, 31, 15, 46, 13, tzinfo=UTC)


def usd(text: str) -> Decimal:
    return Decimal(text).quantize(Decimal("0.000000001"))


@pytest.fixture(scope="module")
def resolver() -> PriceResolver:
    return PriceResolver()


# -- reading ------------------------------------------------------------------------------------


def test_a_body_only_vertex_sends_reads_as_vertex_even_when_named_google() -> None:
    for name in ("vertex_generate_content.json", "vertex_generate_flex.json"):
        body = (RECORDED / name).read_bytes()
        assert read_response(body, provider="google").provider == "vertex"
        assert read_response(body).provider == "vertex"


def test_each_vertex_field_alone_is_enough_and_gemini_api_bodies_stay_google() -> None:
    body: dict[str, Any] = json.loads(VERTEX)
    without_time = {k: v for k, v in body.items() if k != "createTime"}
    assert read_response(without_time, provider="google").provider == "vertex"
    usage = {k: v for k, v in body["usageMetadata"].items() if k != "trafficType"}
    assert read_response({**body, "usageMetadata": usage}, provider="google").provider == "vertex"
    neither = {**without_time, "usageMetadata": usage}
    assert read_response(neither, provider="google").provider == "google"
    for name in ("gemini_generate_thoughts.json", "gemini_generate_cached_content.json"):
        assert read_response((RECORDED / name).read_bytes()).provider == "google"


def test_sdk_dumps_are_told_apart_the_same_way() -> None:
    vertex = types.GenerateContentResponse.model_validate(json.loads(VERTEX)).model_dump()
    assert vertex["create_time"] is not None
    assert read_stream_events([vertex], provider="google").provider == "vertex"
    gemini = types.GenerateContentResponse.model_validate(
        json.loads(recorded("gemini_generate_thoughts.json"))
    ).model_dump()
    # The SDK dumps absent Vertex fields as None: not a Vertex body.
    assert gemini["create_time"] is None
    assert read_stream_events([gemini], provider="google").provider == "google"


# -- pricing ------------------------------------------------------------------------------------


def test_the_recorded_vertex_call_is_priced_at_vertex_list_prices(
    resolver: PriceResolver,
) -> None:
    reading = read_response(VERTEX, provider="google")
    event = UsageEvent(
        provider=reading.provider,
        model="gemini-2.0-flash",
        ts=AT,
        usage=reading.usage,
        service_tier=reading.service_tier,
    )
    result = resolver.event_price(event)
    # Vertex AI lists Gemini 2.0 Flash at $0.15/M input, $0.60/M output:
    # 13 x 0.15 + 8 x 0.60 = 1.95 + 4.80 = 6.75 per million -> $0.00000675.
    assert result.cost == usd("0.00000675")
    assert (result.source, result.ref, result.status) == (
        "supplement",
        "supplement:vertex/gemini-2.0-flash",
        "priced",
    )
    # The same usage on the Gemini API: 13 x 0.10 + 8 x 0.40 = 1.3 + 3.2 -> $0.0000045.
    gemini = resolver.event_price(event.replace(provider="google"))
    assert (gemini.cost, gemini.source) == (usd("0.0000045"), "catalog")


def test_a_vertex_tier_multiplies_the_vertex_row(resolver: PriceResolver) -> None:
    usage = Usage(input_tokens=13, output_tokens=8)
    result = resolver.price("vertex", "gemini-2.0-flash", usage, AT, service_tier="flex")
    # Flex PayGo halves the Vertex rates: 6.75 / 2 = 3.375 per million.
    assert result.cost == usd("0.000003375")
    assert result.ref == (
        "supplement:vertex/gemini-2.0-flash;discount=0.5"
        "(supplement:tier vertex/gemini-*;service_tier=flex)"
    )
    # A tier no Vertex row prices is not priced at the Gemini API's variant for it.
    batch = resolver.price("vertex", "gemini-2.0-flash", usage, AT, service_tier="batch")
    assert batch.cost == usd("0.00000675")
    assert batch.incomplete_reason is not None and "'batch'" in batch.incomplete_reason


def test_the_tiers_known_for_a_vertex_model_are_vertex_ones() -> None:
    later = datetime(2026, 11, 1, tzinfo=UTC)
    # Google's catalog prices gemini-3-flash-preview's batch tier (from 2026-10-14).
    assert "batch" in PriceResolver().service_tiers("vertex", "gemini-3-flash-preview", later)
    own = supplement_book(
        {
            "prices": [
                {
                    "provider": "vertex",
                    "model": "gemini-3-flash-preview",
                    "input": 0.5,
                    "output": 3,
                    "source": "https://cloud.google.com/vertex-ai/generative-ai/pricing",
                    "checked": date(2026, 12, 3),
                }
            ]
        }
    )
    resolver = PriceResolver(supplement=own)
    # Once Vertex's own row prices the model, Google's variants are not its tiers.
    assert resolver.service_tiers("vertex", "gemini-3-flash-preview", later) == ("standard",)
    usage = Usage(input_tokens=1_000_000)
    batch = resolver.price("vertex", "gemini-3-flash-preview", usage, later, service_tier="batch")
    assert (batch.cost, batch.status) == (usd("0.5"), "incomplete")


def test_a_rate_the_vertex_row_lacks_is_flagged_not_borrowed(resolver: PriceResolver) -> None:
    usage = Usage(input_tokens=1000, cache_read_tokens=600, output_tokens=10)
    result = resolver.price("vertex", "gemini-2.0-flash", usage, AT)
    # Cached input has no Vertex rate in the row: paid from the rates it has
    # (1000 x 0.15 + 10 x 0.60 = 156 per million) and flagged, never at Google's 0.025.
    assert result.cost == usd("0.000156")
    assert result.status == "incomplete"
    assert result.incomplete_reason is not None
    assert "cache_read_tokens=600" in result.incomplete_reason


def test_a_model_without_a_vertex_row_borrows_googles(resolver: PriceResolver) -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    vertex = resolver.price("vertex_ai", "gemini-2.5-flash", usage, AT)
    google = resolver.price("google", "gemini-2.5-flash", usage, AT)
    assert vertex.cost == google.cost and vertex.cost is not None
    assert (vertex.source, vertex.ref) == ("catalog", google.ref)


def test_price_file_rows_for_google_do_not_price_vertex_calls() -> None:
    book = PriceBook.from_mapping(
        {
            "prices": [
                {"provider": "google", "model": "gemini-2.0-flash", "input": 9, "output": 9},
                {"provider": "vertex", "model": "gemini-2.5-flash", "input": 7, "output": 7},
            ]
        },
        name="inline",
    )
    resolver = PriceResolver(user_prices=book)
    usage = Usage(input_tokens=1_000_000)
    assert resolver.price("google", "gemini-2.0-flash", usage, AT).cost == usd("9")
    assert resolver.price("vertex", "gemini-2.0-flash", usage, AT).cost == usd("0.15")
    assert resolver.price("vertex", "gemini-2.5-flash", usage, AT).cost == usd("7")
    assert resolver.price("google", "gemini-2.5-flash", usage, AT).cost != usd("7")


def test_listing_vertex_prices_shows_its_own_row(resolver: PriceResolver) -> None:
    rows = [p for p in resolver.list_prices("vertex", AT) if p.model == "gemini-2.0-flash"]
    assert [(p.provider, p.source, p.rates["input_tokens"]) for p in rows] == [
        ("vertex", "supplement", Decimal("0.15"))
    ]


# -- capture ------------------------------------------------------------------------------------


def _client(replay: Replay, *, vertexai: bool) -> genai.Client:
    options = types.HttpOptions(
        httpx_client=replay.sync_client("google"), httpx_async_client=replay.async_client("google")
    )
    return genai.Client(vertexai=vertexai, api_key="AIza-test", http_options=options)


def test_a_vertexai_client_records_vertex_calls(
    ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    # The Gemini API's recorded body, without a Vertex field: the client says where it ran.
    replay = Replay({":generateContent": (200, recorded("gemini_generate_thoughts.json"), JSON)})
    _client(replay, vertexai=True).models.generate_content(model="gemini-2.5-flash", contents="hi")
    _client(replay, vertexai=False).models.generate_content(model="gemini-2.5-flash", contents="hi")
    on_vertex, on_gemini_api = ledger.events()
    assert (on_vertex.provider, on_vertex.model) == ("vertex", "gemini-2.5-flash")
    assert (on_gemini_api.provider, on_gemini_api.model) == ("google", "gemini-2.5-flash")


def test_opentelemetry_names_vertex_as_the_convention_does() -> None:
    event = UsageEvent(provider="vertex", model="gemini-2.0-flash", ts=AT)
    assert metric_attributes(event)["gen_ai.provider.name"] == "gcp.vertex_ai"
    assert provider_name("gcp.vertex_ai") == "vertex"
    assert provider_name("gcp.gemini") == "google"


# -- reports ------------------------------------------------------------------------------------


@pytest.fixture
def gemini_ledger(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("LLMLEDGER_DATABASE_URL", db_url)
    now = datetime.now(UTC)
    events = [
        UsageEvent(
            provider=provider,
            model="gemini-2.0-flash",
            ts=now - timedelta(hours=h + 1),
            usage=Usage(input_tokens=13, output_tokens=8),
            cost=cost,
        )
        for h, (provider, cost) in enumerate(
            [
                ("google", usd("0.0000045")),
                ("vertex", usd("0.00000675")),
                ("vertex", usd("0.00000675")),
            ]
        )
    ]
    with open_store(db_url) as store:
        store.write(events)
    yield db_url


def _report(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["report", "--last", "7d", "--json", *args])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def test_reports_keep_vertex_apart_from_google(gemini_ledger: str) -> None:
    rows = {r["provider"]: r for r in _report("--by", "provider")["rows"]}
    assert (rows["google"]["calls"], rows["google"]["cost"]) == (1, "0.000004500")
    assert (rows["vertex"]["calls"], rows["vertex"]["cost"]) == (2, "0.000013500")
    # provider=google is the Gemini API alone; both are asked for by name.
    assert _report("--where", "provider=google")["total"]["calls"] == 1
    assert _report("--where", "provider=google,vertex")["total"]["calls"] == 3
