"""The price status of an event apart from its call status: billed units without a rate
make a cost incomplete (never silently mispriced), a call spanning models is priced part by
part, per-use fees are charged; stored, sent, counted in reports and listed by the CLI, on
SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import llmledger
from llmledger.cli import main
from llmledger.core.billing import UsagePart
from llmledger.core.errors import InvalidEventError
from llmledger.core.events import UsageEvent
from llmledger.core.settings import load_settings
from llmledger.core.usage import BUCKETS, Usage
from llmledger.normalize import read_response, read_stream
from llmledger.pricing import PriceBook, PriceResolver
from llmledger.pricing.compiled import BUCKET_PARENTS, OWN_RATE_BUCKETS
from llmledger.pricing.model import Price
from llmledger.pricing.supplement import supplement_book
from llmledger.query import Query
from llmledger.runtime.ledger import shutdown
from llmledger.store import SqlStore, open_store
from llmledger.store.migrator import upgrade_connection
from llmledger.store.schema import events as events_table
from llmledger.wire.parse import parse_event
from llmledger.wire.serialize import event_to_json
from tests.conftest import RECORDED
from tests.test_remote_content import free_port, serving

AT = datetime(2026, 11, 1, 12, tzinfo=UTC)
M = 1_000_000
AUDIO = Usage(input_tokens=1000, input_audio_tokens=800, output_tokens=100)


@pytest.fixture(scope="module")
def resolver() -> PriceResolver:
    return PriceResolver()


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    with open_store(db_url) as opened:
        yield opened


def usd(text: str) -> Decimal:
    return Decimal(text).quantize(Decimal("0.000000001"))


def audio_event(**changes: object) -> UsageEvent:
    event = UsageEvent(provider="openai", model="gpt-4o-audio-preview", ts=AT, usage=AUDIO)
    return event.replace(**changes) if changes else event


# -- a bucket or a fee without a rate -----------------------------------------------------------


def test_audio_tokens_without_an_audio_rate_are_priced_as_text_and_flagged() -> None:
    bare = PriceResolver(supplement=False)
    result = bare.price("openai", "gpt-4o-audio-preview", AUDIO, AT)
    # 1000 input at $2.5/M (the audio part at the text rate) + 100 output at $10/M.
    assert result.cost == usd("0.0035")
    assert result.status == "incomplete"
    assert result.incomplete_reason == (
        "no rate for input_audio_tokens=800 in genai-prices@0.2.3:openai/gpt-4o-audio-preview; "
        "priced from the rates it has"
    )


def test_the_supplementary_audio_rate_makes_the_same_call_priced(resolver: PriceResolver) -> None:
    result = resolver.price("openai", "gpt-4o-audio-preview", AUDIO, AT)
    # 200 text at $2.5/M + 800 audio at $40/M + 100 output at $10/M.
    assert result.cost == usd("0.0335")
    assert (result.status, result.incomplete_reason) == ("priced", None)


def test_web_searches_are_charged_at_the_catalog_fee(resolver: PriceResolver) -> None:
    usage = Usage(input_tokens=1000, output_tokens=100)
    result = resolver.price(
        "anthropic", "claude-sonnet-5", usage, AT, fee_counts={"web_searches": 3}
    )
    # $2/M * 1000 + $10/M * 100 + 3 searches at $10 per thousand.
    assert result.breakdown["web_searches"] == usd("0.03")
    assert result.cost == usd("0.033")
    assert result.status == "priced"


def test_a_fee_without_a_rate_is_flagged_with_its_count() -> None:
    book = PriceBook.from_mapping(
        {"prices": [{"provider": "acme", "model": "acme-1", "input": 1, "output": 2}]},
        name="inline",
    )
    pricer = PriceResolver(catalog=False, user_prices=book, supplement=False)
    result = pricer.price(
        "acme", "acme-1", Usage(input_tokens=M), AT, fee_counts={"web_searches": 2}
    )
    assert result.cost == usd("1")
    assert result.incomplete_reason is not None
    assert "web_searches=2" in result.incomplete_reason


def test_a_one_hour_cache_write_without_its_rate_is_flagged() -> None:
    book = PriceBook.from_mapping(
        {
            "prices": [
                {
                    "provider": "acme",
                    "model": "acme-1",
                    "input": 3,
                    "output": 15,
                    "cache_write": 3.75,
                    "cache_read": 0.3,
                }
            ]
        },
        name="inline",
    )
    pricer = PriceResolver(catalog=False, user_prices=book, supplement=False)
    five = Usage(input_tokens=2000, cache_write_tokens=1000, cache_write_5m_tokens=1000)
    hour = Usage(input_tokens=2000, cache_write_tokens=1000, cache_write_1h_tokens=1000)
    # A cache write rate without a lifetime is the five-minute one: priced.
    assert pricer.price("acme", "acme-1", five, AT).status == "priced"
    flagged = pricer.price("acme", "acme-1", hour, AT)
    assert flagged.status == "incomplete"
    assert flagged.incomplete_reason is not None
    assert "cache_write_1h_tokens=1000" in flagged.incomplete_reason


_RATE = st.sampled_from([None, Decimal("0.5"), Decimal("3")])


@st.composite
def _priced_usages(draw: st.DrawFn) -> tuple[Price, Usage, dict[str, int]]:
    rates = {bucket: draw(_RATE) for bucket in BUCKETS}
    rates["input_tokens"] = rates["input_tokens"] or Decimal(1)
    rates["output_tokens"] = rates["output_tokens"] or Decimal(2)
    price = Price(
        provider="acme",
        model="m",
        rates={k: v for k, v in rates.items() if v is not None},
        fees=draw(st.sampled_from([{}, {"web_searches": Decimal("0.01")}])),
        source="file",
        ref="user:inline:acme/m",
    )
    small = st.integers(0, 400)
    write_5m, write_1h = draw(small), draw(small)
    cache_write = write_5m + write_1h + draw(small)
    parts = {
        "cache_read_tokens": draw(small),
        "input_audio_tokens": draw(small),
        "input_image_tokens": draw(small),
        "tool_use_prompt_tokens": draw(small),
    }
    usage = Usage(
        input_tokens=cache_write + sum(parts.values()) + draw(small),
        cache_write_tokens=cache_write,
        cache_write_5m_tokens=write_5m,
        cache_write_1h_tokens=write_1h,
        output_tokens=800,
        reasoning_tokens=draw(small),
        output_audio_tokens=draw(small),
        **parts,
    )
    return price, usage, {"web_searches": draw(st.integers(0, 3))}


@settings(max_examples=300, deadline=None)
@given(_priced_usages())
def test_every_nonzero_bucket_has_a_rate_or_the_cost_is_flagged(
    case: tuple[Price, Usage, dict[str, int]],
) -> None:
    price, usage, fees = case
    pricer = PriceResolver(catalog=False, user_prices=PriceBook(prices=(price,)), supplement=False)
    result = pricer.price("acme", "m", usage, AT, fee_counts=fees)
    assert result.cost is not None
    flagged = result.incomplete_reason or ""
    for bucket in OWN_RATE_BUCKETS:
        count = getattr(usage, bucket)
        rated = bucket in price.rates or (
            bucket == "cache_write_5m_tokens" and BUCKET_PARENTS[bucket] in price.rates
        )
        assert (f"{bucket}={count}" in flagged) == (bool(count) and not rated), bucket
    searches = fees["web_searches"]
    if searches and "web_searches" in price.fees:
        assert result.breakdown["web_searches"] == usd(str(Decimal("0.01") * searches))
    assert (f"web_searches={searches}" in flagged) == (
        bool(searches) and "web_searches" not in price.fees
    )
    assert result.status == ("incomplete" if flagged else "priced")


# -- a call spanning models ------------------------------------------------------------------------


def test_the_advisor_step_is_priced_at_the_advisor_model(resolver: PriceResolver) -> None:
    reading = read_response((RECORDED / "anthropic_messages_advisor_tool.json").read_bytes())
    event = UsageEvent(
        provider="anthropic",
        model="claude-sonnet-5",
        response_model=reading.response_model,
        ts=AT,
        usage=reading.usage,
        usage_parts=reading.usage_parts,
        service_tier=reading.service_tier,
    )
    result = resolver.event_price(event)
    # claude-sonnet-5 ($2/M in, $10/M out): the two message steps, 1128 + 1262 = 2390 in
    # and 110 + 11 = 121 out: 0.004780 + 0.001210 = 0.005990.
    # claude-opus-4-8 ($5/M in, $25/M out): the advisor step, 2518 in and 22 out:
    # 0.012590 + 0.000550 = 0.013140.  Together 0.019130 (all 4908 / 143 at the
    # call's model would be 0.011246).
    assert result.cost == usd("0.01913")
    assert result.breakdown == {
        "input_tokens": usd("0.00478"),
        "output_tokens": usd("0.00121"),
        "input_tokens@claude-opus-4-8": usd("0.01259"),
        "output_tokens@claude-opus-4-8": usd("0.00055"),
    }
    assert result.ref == (
        "genai-prices@0.2.3:anthropic/claude-sonnet-5"
        " & genai-prices@0.2.3:anthropic/claude-opus-4-8"
    )
    assert resolver.priced(event).model == "claude-sonnet-5"


def test_the_streamed_advisor_step_is_priced_at_the_advisor_model(resolver: PriceResolver) -> None:
    reading = read_stream((RECORDED / "anthropic_stream_advisor_tool.sse").read_bytes())
    event = UsageEvent(
        provider="anthropic",
        model="claude-sonnet-5",
        ts=AT,
        usage=reading.usage,
        usage_parts=reading.usage_parts,
    )
    result = resolver.event_price(event)
    # claude-sonnet-5: 1128 + 1283 = 2411 in, 135 + 10 = 145 out: 0.004822 + 0.001450;
    # claude-opus-4-8: 2543 in, 18 out: 0.012715 + 0.000450.  Together 0.019437.
    assert result.cost == usd("0.019437")
    assert result.breakdown["input_tokens@claude-opus-4-8"] == usd("0.012715")


def test_a_part_on_a_model_without_a_price_leaves_the_call_unpriced(
    resolver: PriceResolver,
) -> None:
    event = UsageEvent(
        provider="anthropic",
        model="claude-sonnet-5",
        ts=AT,
        usage=Usage(input_tokens=30, output_tokens=3),
        usage_parts=(
            UsagePart(None, Usage(input_tokens=10, output_tokens=1)),
            UsagePart("claude-nothing-9", Usage(input_tokens=20, output_tokens=2)),
        ),
    )
    result = resolver.event_price(event)
    assert result.cost is None
    assert result.unpriced_reason is not None
    assert "claude-nothing-9" in result.unpriced_reason


# -- stored, sent, counted, listed ---------------------------------------------------------


def test_an_incomplete_event_is_stored_counted_and_listed(store: SqlStore) -> None:
    bare = PriceResolver(supplement=False)
    flagged = bare.priced(audio_event())
    priced = PriceResolver().priced(audio_event())
    unpriced = bare.priced(audio_event(model="nothing-9"))
    assert [e.price_status for e in (flagged, priced, unpriced)] == [
        "incomplete",
        "priced",
        "unpriced",
    ]
    store.write([flagged, priced, unpriced])
    back = store.get(flagged.id)
    assert back is not None
    assert (back.price_status, back.incomplete_reason) == ("incomplete", flagged.incomplete_reason)
    query = Query(by=("model",), metrics=("calls", "cost", "unpriced_calls", "incomplete_calls"))
    for mode in ("rollups", "events"):
        rows = {r["model"]: r for r in store.report(query, mode=mode).rows}
        assert rows["gpt-4o-audio-preview"]["incomplete_calls"] == 1
        assert rows["gpt-4o-audio-preview"]["cost"] == usd("0.0370")
        assert rows["nothing-9"]["unpriced_calls"] == 1
    assert store.price_gaps() == [
        ("openai", "gpt-4o-audio-preview", "incomplete", 1),
        ("openai", "nothing-9", "unpriced", 1),
    ]
    assert store.unpriced_models() == [("openai", "nothing-9", 1)]
    assert [e.id for e in store.events(price_status="incomplete")] == [flagged.id]


def test_the_wire_carries_the_status_the_parts_and_the_fees() -> None:
    event = PriceResolver(supplement=False).priced(
        audio_event(
            usage_parts=(
                UsagePart(None, Usage(input_tokens=900, input_audio_tokens=800, output_tokens=60)),
                UsagePart("gpt-4o", Usage(input_tokens=100, output_tokens=40)),
            ),
            fee_counts={"web_searches": 1},
        )
    )
    data = json.loads(json.dumps(event_to_json(event), default=str))
    assert data["price_status"] == "incomplete"
    back = parse_event(data, now=datetime.now(UTC))
    assert back == event
    data["usage_parts"][1]["usage"]["input_tokens"] = 101
    with pytest.raises(InvalidEventError, match="usage_parts do not add up to usage"):
        parse_event(data, now=datetime.now(UTC))
    data["usage_parts"] = []
    data["price_status"] = "priced"  # derived: what is sent is not believed
    assert parse_event(data, now=datetime.now(UTC)).price_status == "incomplete"


def test_the_cli_shows_the_price_status() -> None:
    bare = PriceResolver(supplement=False)
    with open_store(load_settings()) as store:
        store.write([bare.priced(audio_event()), bare.priced(audio_event(model="nothing-9"))])
    runner = CliRunner()
    logs = runner.invoke(main, ["logs"], catch_exceptions=False)
    assert "incomplete" in logs.output and "unpriced" in logs.output
    gaps = runner.invoke(main, ["prices", "unpriced", "--json"], catch_exceptions=False)
    assert json.loads(gaps.output) == [
        {"provider": "openai", "model": "gpt-4o-audio-preview", "price": "incomplete", "calls": 1},
        {"provider": "openai", "model": "nothing-9", "price": "unpriced", "calls": 1},
    ]
    report = runner.invoke(main, ["report", "--since", "2026-10-01"], catch_exceptions=False)
    assert "1 priced incompletely" in report.output, report.output
    cost = runner.invoke(
        main,
        [
            "cost",
            "--model",
            "gpt-4o-audio-preview",
            "--input",
            "1000",
            "--input-audio",
            "800",
            "--at",
            "2026-11-01T12:00:00Z",
            "--json",
        ],
        catch_exceptions=False,
    )
    assert json.loads(cost.output)["cost"]["status"] == "priced"  # the supplementary rate


def test_the_cost_of_a_saved_advisor_response_spans_both_models() -> None:
    result = CliRunner().invoke(
        main,
        [
            "cost",
            str(RECORDED / "anthropic_messages_advisor_tool.json"),
            "--at",
            "2026-11-01T12:00:00Z",
        ],
        catch_exceptions=False,
    )
    assert "input_tokens@claude-opus-4-8" in result.output
    assert "total: $0.019130000" in result.output


# -- the migration from the schema before ---------------------------------------------------------


@pytest.mark.unmigrated
def test_the_migration_gives_stored_events_their_price_status(db_url: str) -> None:
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    fixed = {
        "ts_us": 0,
        "provider": "acme",
        "model": "a",
        "operation": "chat",
        "status": "ok",
        "usage_source": "provider",
        "stream": False,
        **dict.fromkeys(BUCKETS, 0),
    }
    try:
        with engine.begin() as conn:
            upgrade_connection(conn, "0006")
            old = sa.table("events", *(sa.column(name) for name in (*fixed, "id", "cost_nanos")))
            conn.execute(
                old.insert().values(id="01JDB0000000000000000000AA", cost_nanos=5, **fixed)
            )
            conn.execute(
                old.insert().values(id="01JDB0000000000000000000AB", cost_nanos=None, **fixed)
            )
    finally:
        engine.dispose()
    with open_store(db_url) as store:
        with store.engine.connect() as conn:
            raw = dict(
                conn.execute(sa.select(events_table.c.id, events_table.c.price_status)).all()
            )
        assert raw == {
            "01JDB0000000000000000000AA": "priced",
            "01JDB0000000000000000000AB": "unpriced",
        }
        assert {e.id: e.price_status for e in store.events()} == raw
        store.rebuild_rollups()
        total = store.report(
            Query(metrics=("calls", "unpriced_calls", "incomplete_calls")), mode="rollups"
        ).total
        assert (total["calls"], total["unpriced_calls"], total["incomplete_calls"]) == (2, 1, 0)


def test_the_service_prices_the_parts_and_fees_the_sdk_sends(db_url: str) -> None:
    port = free_port()
    with serving(db_url, port) as service:
        now = datetime.now(UTC)
        ingest = service.keys.create("ingest", tenant="acme", now=now).secret
        ledger = llmledger.configure(url=f"http://127.0.0.1:{port}", api_key=ingest)
        try:
            assert ledger.prices.wait(120)  # so the events come back priced, not pending
            at = now - timedelta(minutes=1)
            advisor = llmledger.record(
                response=(RECORDED / "anthropic_messages_advisor_tool.json").read_bytes(),
                provider="anthropic",
                ts=at,
            )
            searched = llmledger.record(
                provider="openai",
                model="gpt-4o-audio-preview",
                ts=at,
                usage=AUDIO,
                fee_counts={"web_searches": 2},
            )
            assert llmledger.flush(30)
        finally:
            shutdown()
        stored = {e.id: e for e in service.store.events()}
    # The same hand derivation as above: the advisor step at claude-opus-4-8's rates.
    assert stored[advisor.id].cost == advisor.cost == usd("0.01913")
    assert stored[advisor.id].cost_breakdown == advisor.cost_breakdown
    assert stored[advisor.id].model == "claude-sonnet-5"
    flagged = stored[searched.id]
    assert flagged.price_status == searched.price_status == "incomplete"
    assert flagged.incomplete_reason == searched.incomplete_reason
    assert flagged.incomplete_reason is not None and "web_searches=2" in flagged.incomplete_reason


def test_a_web_search_fee_from_a_price_row_and_from_a_supplementary_row() -> None:
    book = PriceBook.from_mapping(
        {"prices": [{"provider": "acme", "model": "acme-1", "input": 1, "web_search": "0.02"}]},
        name="inline",
    )
    pricer = PriceResolver(catalog=False, user_prices=book, supplement=False)
    result = pricer.price(
        "acme", "acme-1", Usage(input_tokens=M), AT, fee_counts={"web_searches": 3}
    )
    # 1M input at $1/M + 3 searches at $0.02.
    assert (result.cost, result.breakdown["web_searches"]) == (usd("1.06"), usd("0.06"))
    assert result.status == "priced"
    # gpt-4o-audio-preview has no search fee in the catalog; a supplementary row fills it.
    filled = PriceResolver(
        supplement=supplement_book(
            {
                "prices": [
                    {
                        "provider": "openai",
                        "model": "gpt-4o-audio-preview",
                        "input": 2.5,
                        "web_search": "0.01",
                        "source": "https://example.com/pricing",
                        "checked": date(2026, 1, 1),
                    }
                ]
            }
        )
    ).price("openai", "gpt-4o-audio-preview", AUDIO, AT, fee_counts={"web_searches": 2})
    assert filled.breakdown["web_searches"] == usd("0.02")
    assert (filled.source, filled.status) == (
        "supplement",
        "incomplete",
    )  # audio still lacks a rate
