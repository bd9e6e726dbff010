"""One price source everywhere: its layers and their order, the supplementary rows, the
cost-source vocabulary of older events, and the SDK, the service and ``llmledger cost``
pricing the same call the same way (on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

import llmledger
from llmledger.capture.litellm import provider_of
from llmledger.cli import main
from llmledger.core.errors import PriceFileError
from llmledger.core.events import UsageEvent, current_cost_source
from llmledger.core.providers import PROVIDER_ALIASES, provider_name
from llmledger.core.settings import load_settings
from llmledger.core.usage import BUCKETS, Usage
from llmledger.pricing import (
    SUPPLEMENT_PATH,
    Catalog,
    PriceBook,
    PriceResolver,
    catalog_provider_id,
    load_supplement,
)
from llmledger.pricing.supplement import supplement_book
from llmledger.runtime.ledger import shutdown
from llmledger.server.pricedb import PriceDB
from llmledger.server.state import Service
from llmledger.store import open_store
from llmledger.store.migrator import upgrade_connection
from llmledger.store.schema import events as events_table
from tests.test_remote_content import free_port, serving

AT = datetime(2025, 11, 1, 12, tzinfo=UTC)
M = 1_000_000
AUDIO = Usage(input_tokens=1000, input_audio_tokens=800, output_tokens=100)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog()


def usd(text: str) -> Decimal:
    return Decimal(text).quantize(Decimal("0.000000001"))


def supplement(*rows: dict[str, Any]) -> PriceBook:
    page = {"source": "https://example.com/pricing", "checked": date(2026, 1, 1)}
    return supplement_book({"prices": [{**page, **row} for row in rows]})


# -- the supplementary rows shipped with llmledger -----------------------------------------


def test_every_supplementary_row_names_its_source_page_and_checked_day() -> None:
    raw = yaml.safe_load(SUPPLEMENT_PATH.read_text(encoding="utf-8"))
    assert raw["prices"], "the data file has rows"
    for row in raw["prices"]:
        where = f"{row.get('provider')}/{row.get('model')}"
        assert str(row.get("source", "")).startswith("https://"), where
        assert isinstance(row.get("checked"), date), where
    for price in load_supplement().prices:
        assert price.source == "supplement" and price.ref.startswith("supplement:")
        assert price.source_url and price.checked


@pytest.mark.parametrize(
    ("missing", "message"),
    [("source", r"prices\[0\]\.source: Field required"), ("checked", "checked")],
)
def test_a_supplementary_row_without_its_source_or_checked_day_is_refused(
    missing: str, message: str
) -> None:
    row = {
        "provider": "openai",
        "model": "m",
        "input": 1,
        "source": "https://example.com/pricing",
        "checked": date(2026, 1, 1),
    }
    del row[missing]
    with pytest.raises(PriceFileError, match=message):
        supplement_book({"prices": [row]})
    with pytest.raises(PriceFileError, match="source"):
        supplement_book(
            {"prices": [{**row, "source": "a friend told me", missing: row.get(missing)}]}
        )


def test_audio_tokens_of_gpt_4o_audio_are_paid_at_the_audio_rate() -> None:
    # Catalog: input $2.50, output $10; supplementary row (OpenAI's model page): audio in $40.
    # 200 text input tokens * 2.5 + 800 audio * 40 + 100 output * 10, per million.
    result = PriceResolver().price("openai", "gpt-4o-audio-preview-2024-12-17", AUDIO, AT)
    assert result.cost == usd("0.0335")
    assert result.breakdown["input_audio_tokens"] == usd("0.032")
    assert result.source == "supplement"
    assert result.ref == (
        "genai-prices@0.2.3:openai/gpt-4o-audio-preview+supplement:openai/gpt-4o-audio-preview"
    )
    text_only = PriceResolver().price(
        "openai", "gpt-4o-audio-preview", Usage(input_tokens=1000, output_tokens=100), AT
    )
    assert (text_only.cost, text_only.source) == (usd("0.0035"), "catalog")


def test_the_catalog_rate_wins_for_every_bucket_it_has(catalog: Catalog) -> None:
    # gpt-audio's catalog price has its own audio rate ($32): a supplementary row does not move it.
    rows = supplement(
        {"provider": "openai", "model": "gpt-audio", "input": 99, "input_audio": 99, "output": 99}
    )
    resolver = PriceResolver(catalog=catalog, supplement=rows)
    result = resolver.price("openai", "gpt-audio", AUDIO, AT)
    assert result.source == "catalog"
    assert result.breakdown["input_audio_tokens"] == usd("0.0256")  # 800 * 32 / 1M


def test_supplementary_rows_fill_per_bucket_and_from_their_day(catalog: Catalog) -> None:
    rows = supplement(
        {"provider": "openai", "model": "gpt-4o", "input": 7, "input_audio": 20},
        {"provider": "openai", "model": "gpt-4o", "from": date(2025, 12, 1), "input": 7,
         "input_audio": 30},
    )  # fmt: skip
    resolver = PriceResolver(catalog=catalog, supplement=rows)
    before = resolver.price("openai", "gpt-4o-2024-08-06", AUDIO, AT)
    after = resolver.price("openai", "gpt-4o", AUDIO, AT + timedelta(days=60))
    # Input stays at the catalog's $2.50; only the audio bucket comes from the row in force.
    assert before.breakdown["input_tokens"] == usd("0.0005")
    assert before.breakdown["input_audio_tokens"] == usd("0.016")
    assert after.breakdown["input_audio_tokens"] == usd("0.024")
    assert before.ref is not None and before.ref.endswith("+supplement:openai/gpt-4o")
    assert after.ref is not None and after.ref.endswith("+supplement:openai/gpt-4o@2025-12-01")


def test_a_model_the_catalog_lacks_is_priced_by_its_supplementary_row(catalog: Catalog) -> None:
    rows = supplement({"provider": "acme", "model": "acme-voice", "input": 1, "output": 2})
    result = PriceResolver(catalog=catalog, supplement=rows).price(
        "acme", "acme-voice", Usage(input_tokens=M, output_tokens=M), AT
    )
    assert (result.cost, result.source, result.ref) == (
        usd("3"),
        "supplement",
        "supplement:acme/acme-voice",
    )


# -- the order of the layers ----------------------------------------------------------------


def test_database_rows_win_over_files_which_win_over_the_catalog(catalog: Catalog) -> None:
    row = {"provider": "openai", "model": "gpt-4o", "from": "2025-01-01"}
    files = PriceBook.from_mapping({"prices": [{**row, "input": 2}]}, name="prices.yaml")
    database = PriceBook.from_database({"prices": [{**row, "input": 1}]})
    usage = Usage(input_tokens=M)
    both = PriceResolver(catalog=catalog, user_prices=files, database=database)
    only_files = PriceResolver(catalog=catalog, user_prices=files)
    nothing = PriceResolver(catalog=catalog)
    assert [
        (r.cost, r.source, r.ref)
        for r in (
            resolver.price("openai", "gpt-4o", usage, AT)
            for resolver in (both, only_files, nothing)
        )
    ] == [
        (usd("1"), "database", "user:db:openai/gpt-4o@2025-01-01"),
        (usd("2"), "file", "user:prices.yaml:openai/gpt-4o@2025-01-01"),
        (usd("2.5"), "catalog", "genai-prices@0.2.3:openai/gpt-4o"),
    ]
    listed = [p.source for p in both.list_prices("openai", AT) if p.model == "gpt-4o"]
    assert listed == ["database", "file", "catalog"]


def test_pricing_returns_a_result_and_leaves_the_event_alone(catalog: Catalog) -> None:
    event = UsageEvent(provider="openai", model="gpt-4o", ts=AT, usage=Usage(input_tokens=M))
    result = PriceResolver(catalog=catalog).event_price(event)
    assert (result.cost, result.source) == (usd("2.5"), "catalog")
    assert event.cost is None and event.cost_source is None and event.price_ref is None
    resolver = PriceResolver(catalog=catalog)
    priced = resolver.priced(event)
    assert priced is not event and priced.cost == usd("2.5")
    # An event already priced so (the SDK's, at the service) is not copied again.
    assert resolver.priced(priced) is priced


# -- provider names ---------------------------------------------------------------------------


def test_provider_spellings_have_one_table_used_by_capture_and_pricing(catalog: Catalog) -> None:
    for alias, name in PROVIDER_ALIASES.items():
        assert provider_name(alias.upper()) == name
        assert provider_of(alias) == name
        assert name not in PROVIDER_ALIASES, f"{name} is itself an alias"
    assert catalog_provider_id("vertex_ai") == "google"
    assert catalog_provider_id("amazon_bedrock") == "aws"
    resolver = PriceResolver(catalog=catalog)
    usage = Usage(input_tokens=M)
    assert resolver.price("vertex_ai", "gemini-2.5-flash", usage, AT).cost == (
        resolver.price("google", "gemini-2.5-flash", usage, AT).cost
    )


# -- cost sources written before file and database were told apart ---------------------------


def test_override_reads_as_file_or_database_by_its_price_ref() -> None:
    assert current_cost_source("override", "user:db:acme/a@2025-01-01") == "database"
    assert current_cost_source("override", "user:prices.yaml:acme/a") == "file"
    assert current_cost_source("override", None) == "file"
    assert current_cost_source("manual", None) == "manual"


@pytest.mark.unmigrated
def test_the_migration_renames_override_by_price_ref(db_url: str) -> None:
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            upgrade_connection(conn, "0005")
        rows = [
            ("01JDB0000000000000000000AA", "override", "user:db:acme/a@2025-01-01"),
            ("01JDB0000000000000000000AB", "override", "user:prices.yaml:acme/a"),
            ("01JDB0000000000000000000AC", "catalog", "genai-prices@0.2.3:openai/gpt-4o"),
            ("01JDB0000000000000000000AD", None, None),
        ]
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
        with engine.begin() as conn:
            for event_id, source, ref in rows:
                conn.execute(
                    events_table.insert().values(
                        id=event_id, cost_source=source, price_ref=ref, **fixed
                    )
                )
    finally:
        engine.dispose()
    with open_store(db_url) as store:
        stored = {e.id: e.cost_source for e in store.events()}
        with store.engine.connect() as conn:
            raw = dict(conn.execute(sa.select(events_table.c.id, events_table.c.cost_source)).all())
    assert (
        stored
        == raw
        == {
            "01JDB0000000000000000000AA": "database",
            "01JDB0000000000000000000AB": "file",
            "01JDB0000000000000000000AC": "catalog",
            "01JDB0000000000000000000AD": None,
        }
    )


# -- the SDK, the service and the cost command price alike -------------------------------------


def _add_prices(admin: str, port: int) -> None:
    rows = [
        # A model only the service knows.
        {"provider": "acme", "model": "acme-chat-1", "from": "2025-01-01", "input": 1, "output": 2},
        # A negotiated price for a catalog model, which the SDK alone would price at $2.50.
        {"provider": "openai", "model": "gpt-4o", "from": "2025-01-01", "input": "1.25",
         "output": 5},
    ]  # fmt: skip
    for row in rows:
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/prices",
            json=row,
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert answer.status_code == 201, answer.text


def test_a_price_added_through_the_api_prices_what_the_sdk_sends(db_url: str) -> None:
    port = free_port()
    with serving(db_url, port) as service:
        now = datetime.now(UTC)
        admin = service.keys.create("admin", now=now).secret
        ingest = service.keys.create("ingest", tenant="acme", now=now).secret
        _add_prices(admin, port)
        ledger = llmledger.configure(url=f"http://127.0.0.1:{port}", api_key=ingest)
        try:
            assert ledger.prices.wait(120)  # the SDK's own prices loaded: events come back priced
            at = now - timedelta(minutes=1)
            usage = Usage(input_tokens=1000, output_tokens=500)
            only_there = llmledger.record(provider="acme", model="acme-chat-1", ts=at, usage=usage)
            negotiated = llmledger.record(provider="openai", model="gpt-4o", ts=at, usage=usage)
            manual = llmledger.record(
                provider="acme", model="acme-chat-1", ts=at, cost=Decimal("0.5"), usage=usage
            )
            assert llmledger.flush(30)
        finally:
            shutdown()
        # What the SDK worked out on its own: it knows no database prices with a url.
        assert only_there.cost is None and only_there.unpriced_reason
        assert (negotiated.cost, negotiated.cost_source) == (usd("0.0075"), "catalog")
        stored = {e.id: e for e in service.store.events()}
    assert len(stored) == 3
    mine = stored[only_there.id]
    assert (mine.cost, mine.cost_source, mine.price_ref, mine.unpriced_reason) == (
        usd("0.002"),  # 1000 * $1 + 500 * $2, per million
        "database",
        "user:db:acme/acme-chat-1@2025-01-01",
        None,
    )
    assert mine.cost_breakdown == {"input_tokens": usd("0.001"), "output_tokens": usd("0.001")}
    theirs = stored[negotiated.id]
    assert (theirs.cost, theirs.cost_source) == (usd("0.00375"), "database")
    assert (stored[manual.id].cost, stored[manual.id].cost_source) == (Decimal("0.5"), "manual")


def test_an_older_sdk_event_saying_override_is_priced_by_the_service(db_url: str) -> None:
    port = free_port()
    with serving(db_url, port) as service:
        key = service.keys.create("admin", now=datetime.now(UTC)).secret
        _add_prices(key, port)
        event_id = "01JDB0000000000000000000ZZ"
        event = {
            "id": event_id,
            "ts": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
            "provider": "acme",
            "model": "acme-chat-1",
            "usage": {"input_tokens": 1000},
            "cost": "7",
            "cost_source": "override",
            "price_ref": "user:prices.yaml:acme/acme-chat-1",
        }
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/events",
            json=event,
            headers={"Authorization": f"Bearer {key}"},
        )
        assert answer.status_code == 200, answer.text
        stored = service.store.get(event_id)
    assert stored is not None
    assert (stored.cost, stored.cost_source) == (usd("0.001"), "database")


def test_the_sdk_and_cost_read_the_price_rows_of_their_own_database(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = Service(load_settings(database_url=db_url))
    try:
        service.store.migrate()
        PriceDB(service.store).add_price(
            {"provider": "acme", "model": "acme-chat-1", "from": date(2025, 1, 1), "input": 3},
            now=datetime.now(UTC),
            by=None,
        )
        service.prices_changed()
        from_service = service.pricer.price("acme", "acme-chat-1", Usage(input_tokens=M), AT)
    finally:
        service.close()
    monkeypatch.setenv("LLMLEDGER_DATABASE_URL", db_url)
    try:
        assert llmledger.get_ledger().prices.wait(120)  # priced at once, not pending
        event = llmledger.record(provider="acme", model="acme-chat-1", ts=AT, input_tokens=M)
        assert llmledger.flush(30)
    finally:
        shutdown()
    assert (event.cost, event.cost_source) == (from_service.cost, from_service.source)
    assert event.cost == usd("3") and event.price_ref == "user:db:acme/acme-chat-1@2025-01-01"
    answer = CliRunner().invoke(
        main,
        ["cost", "--model", "acme-chat-1", "--input", str(M), "--at", AT.isoformat(), "--json"],
        catch_exceptions=False,
    )
    assert answer.exit_code == 0, answer.output
    printed = json.loads(answer.output)["cost"]
    assert (printed["total"], printed["source"]) == ("3.000000000", "database")


def test_pricing_opens_no_database_that_does_not_exist_yet(ledger_home: Path) -> None:
    ledger = llmledger.configure()
    result = ledger.pricer.price("openai", "gpt-4o", Usage(input_tokens=M), AT)
    assert (result.cost, result.source) == (usd("2.5"), "catalog")
    assert ledger._store is None and not (ledger_home / "ledger.db").exists()


def test_prices_show_says_which_rates_a_supplementary_row_filled() -> None:
    answer = CliRunner().invoke(
        main,
        ["prices", "show", "gpt-4o-audio-preview", "--provider", "openai", "--at", AT.isoformat()],
        catch_exceptions=False,
    )
    assert answer.exit_code == 0, answer.output
    assert "filled from supplement:openai/gpt-4o-audio-preview: input_audio_tokens" in answer.output
    assert "read from: https://developers.openai.com/" in answer.output


def test_an_unreachable_database_leaves_the_other_layers_pricing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from llmledger.runtime.ledger import Ledger

    url = "postgresql+psycopg://postgres@127.0.0.1:1/nothing?connect_timeout=2"
    ledger = Ledger(load_settings(database_url=url, strict=False))
    result = ledger.pricer.price("openai", "gpt-4o", Usage(input_tokens=M), AT)
    assert (result.cost, result.source) == (usd("2.5"), "catalog")
    assert "could not read the database's prices" in caplog.text


def test_responses_are_read_under_any_spelling_of_their_provider() -> None:
    from llmledger.normalize import read_response

    body = {"usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 2}}
    assert read_response(body, provider="gemini").provider == "google"
    # Vertex AI is a provider of its own, whichever way it is spelled.
    assert read_response(body, provider="vertex_ai").provider == "vertex"
