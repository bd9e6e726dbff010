"""Refreshing the price catalog from the network, against a real HTTP server on loopback,
on SQLite and PostgreSQL: the fetched catalog prices the events recorded after it, a bad
document or a server that is down keeps the catalog in force, nothing is fetched while
``price_refresh`` is off."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import llmledger
from llmledger.cli import main
from llmledger.core.settings import DEFAULT_CATALOG_URL, load_settings
from llmledger.core.usage import Usage
from llmledger.monitor import refresh_catalog
from llmledger.pricing import Catalog
from llmledger.pricing.fetched import catalog_changes, read_catalog
from llmledger.runtime.ledger import get_ledger, shutdown
from llmledger.server.state import Service
from llmledger.store import SqlStore, open_store

NOW = datetime.now(UTC).replace(microsecond=0)
USAGE = Usage(input_tokens=1000, output_tokens=100)


def _raw(value: Any) -> Any:
    """A genai-prices object as the JSON its published data document holds."""
    from genai_prices.types import ModelPrice

    if isinstance(value, ModelPrice):
        return {
            k: _raw(v) for k, v in vars(value).items() if not k.startswith("_") and v is not None
        }
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name.rstrip("_"): _raw(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.init and not f.name.startswith("_") and getattr(value, f.name) is not None
        }
    if isinstance(value, list | tuple):
        return [_raw(v) for v in value]
    if isinstance(value, dict):
        return {k: _raw(v) for k, v in value.items()}
    if isinstance(value, Decimal):
        number = float(value)
        return number if Decimal(repr(number)) == value else str(value)
    if isinstance(value, date | time):
        return value.isoformat()
    return value


def bundled_document() -> list[dict[str, Any]]:
    """The bundled catalog of the installed genai-prices, as a data document."""
    from genai_prices.data import providers

    return [_raw(provider) for provider in providers]


def changed_document() -> bytes:
    """The bundled catalog with gpt-4o repriced ($7 / $21) and one model added."""
    document = bundled_document()
    openai = next(p for p in document if p["id"] == "openai")
    gpt_4o = next(m for m in openai["models"] if m["id"] == "gpt-4o")
    gpt_4o["prices"] = {"input_mtok": 7, "output_mtok": 21}
    gpt_4o.pop("price_variants", None)
    openai["models"].append(
        {
            "id": "acme-refresh-1",
            "match": {"equals": "acme-refresh-1"},
            "prices": {"input_mtok": 1, "output_mtok": 2},
        }
    )
    return json.dumps(document).encode()


class CatalogServer:
    """A loopback HTTP server answering every GET with ``body`` (or ``status``)."""

    def __init__(self) -> None:
        self.body = b"[]"
        self.status = 200
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/data.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def served() -> Iterator[CatalogServer]:
    server = CatalogServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    with open_store(db_url) as opened:
        yield opened


def _down_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/data.json"


def _service(db_url: str, url: str, **settings: Any) -> Service:
    values: dict[str, Any] = {
        "database_url": db_url,
        "price_refresh": True,
        "price_catalog_url": url,
        "price_catalog_timeout": 5,
        "alert_recipients": "email:ops@example.com",
    }
    return Service(load_settings(**(values | settings)))


def _digest(store: SqlStore) -> str:
    digests = [m for m in store.list_messages() if m.payload["kind"] == "digest"]
    assert len(digests) == 1
    return digests[0].text


def test_the_default_url_is_the_one_genai_prices_updates_from() -> None:
    from genai_prices.update_prices import DEFAULT_UPDATE_URL

    assert load_settings().price_catalog_url == DEFAULT_CATALOG_URL == DEFAULT_UPDATE_URL
    assert load_settings().price_refresh is False


def test_the_bundled_catalog_read_back_from_its_document_is_the_same() -> None:
    catalog = read_catalog(json.dumps(bundled_document()), fetched=NOW)
    assert catalog_changes(Catalog(), catalog).summary() == (
        "0 model(s) added, 0 price(s) changed, 0 model(s) removed"
    )


def test_the_weekly_check_refreshes_the_catalog_and_prices_with_it(
    served: CatalogServer, store: SqlStore, db_url: str
) -> None:
    served.body = changed_document()
    service = _service(db_url, served.url)
    try:
        before = service.pricer.price("openai", "gpt-4o", USAGE, NOW)
        assert before.cost == Decimal("0.003500000")  # $2.50 / $10 in the bundled catalog
        service.monitor.price_check(NOW)
        assert served.requests == 1
        text = _digest(store)
        assert "Catalog refresh" in text
        assert "1 model(s) added, 1 price(s) changed, 0 model(s) removed" in text
        assert "added: openai/acme-refresh-1" in text
        assert "price changed: openai/gpt-4o" in text
        # The service's prices include it (read again within seconds; now, forced).
        service.prices_changed()
        after = service.pricer.price("openai", "gpt-4o", USAGE, NOW)
        assert after.cost == Decimal("0.009100000") and after.source == "catalog"
        assert after.ref == f"genai-prices@fetched-{NOW.date()}:openai/gpt-4o"
        assert service.pricer.catalog is not None
        assert service.pricer.catalog.name == f"catalog (fetched {NOW.date()})"
    finally:
        service.close()
    # A process recording into the same database prices with it too.
    shutdown()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LLMLEDGER_DATABASE_URL", db_url)
        llmledger.record(provider="openai", model="gpt-4o", input_tokens=1000, output_tokens=100)
        llmledger.record(provider="openai", model="acme-refresh-1", input_tokens=1000)
        assert llmledger.flush(timeout=60)
        shutdown()
    stored = {e.model: e for e in store.events()}
    assert stored["gpt-4o"].cost == Decimal("0.009100000")
    assert stored["acme-refresh-1"].cost == Decimal("0.001000000")
    assert stored["acme-refresh-1"].price_status == "priced"


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b'[{"id": "openai", "models": [', 200, "the catalog document is not JSON"),
        (b'{"providers": []}', 200, "not a list of providers (it is a JSON object)"),
        (b"[]", 200, "the catalog document lists no providers"),
        (b'[{"id": 1}]', 200, "not in the genai-prices data shape"),
        (b"", 503, "HTTP 503"),
    ],
    ids=["truncated", "object", "empty", "shape", "http-error"],
)
def test_a_bad_document_keeps_the_catalog_in_force(
    served: CatalogServer,
    store: SqlStore,
    db_url: str,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    status: int,
    reason: str,
) -> None:
    served.body = changed_document()
    service = _service(db_url, served.url)
    try:
        first = refresh_catalog(
            store, Catalog(), url=served.url, timeout=5, now=NOW - timedelta(days=7)
        )
        assert first.ok and first.stored
        in_force = store.catalog_id()
        served.body, served.status = body, status
        with caplog.at_level(logging.ERROR, logger="llmledger.monitor"):
            service.monitor.price_check(NOW)
        assert served.requests == 2
        assert store.catalog_id() == in_force
        assert any(r.levelno == logging.ERROR and reason in r.getMessage() for r in caplog.records)
        text = _digest(store)
        assert "not refreshed:" in text and reason in text
        assert "the catalog in force stays" in text
        # The catalog fetched last week still prices.
        price = service.pricer.price("openai", "gpt-4o", USAGE, NOW)
        assert price.cost == Decimal("0.009100000")
    finally:
        service.close()


def test_a_server_that_is_down_keeps_the_bundled_catalog(store: SqlStore, db_url: str) -> None:
    service = _service(db_url, _down_url(), price_catalog_timeout=2)
    try:
        service.monitor.price_check(NOW)
        assert store.catalog_id() is None
        text = _digest(store)
        assert "not refreshed: could not fetch the catalog from http://127.0.0.1:" in text
        price = service.pricer.price("openai", "gpt-4o", USAGE, NOW)
        assert price.cost == Decimal("0.003500000")
        assert price.ref is not None and price.ref.startswith("genai-prices@0.2.3:")
    finally:
        service.close()


def test_nothing_is_fetched_while_the_setting_is_off(
    served: CatalogServer, store: SqlStore, db_url: str
) -> None:
    served.body = changed_document()
    service = _service(db_url, served.url, price_refresh=False)
    try:
        service.monitor.price_check(NOW)
        assert served.requests == 0 and store.catalog_id() is None
        assert "Catalog refresh" not in _digest(store)
        # Without recipients either.
        quiet = _service(db_url, served.url, price_refresh=False, alert_recipients="")
        try:
            quiet.monitor.price_check(NOW + timedelta(days=7))
        finally:
            quiet.close()
        assert served.requests == 0
    finally:
        service.close()


def test_the_refresh_runs_without_recipients(
    served: CatalogServer, store: SqlStore, db_url: str
) -> None:
    served.body = changed_document()
    service = _service(db_url, served.url, alert_recipients="")
    try:
        assert service.monitor.price_check(NOW) == []
        assert served.requests == 1 and store.catalog_id() is not None
        assert store.job_last_run("price_check") == NOW
    finally:
        service.close()


def test_the_same_document_again_stores_nothing_new(served: CatalogServer, store: SqlStore) -> None:
    served.body = changed_document()
    first = refresh_catalog(store, Catalog(), url=served.url, timeout=5, now=NOW)
    assert first.ok and first.stored and first.catalog is not None
    again = refresh_catalog(
        store, first.catalog, url=served.url, timeout=5, now=NOW + timedelta(days=7)
    )
    assert again.ok and not again.stored
    assert again.lines() == [
        f"refreshed from {served.url} on {(NOW + timedelta(days=7)).date()}: "
        "unchanged since the last refresh"
    ]
    latest = store.latest_catalog()
    assert latest is not None and latest.id == store.catalog_id()
    assert latest.fetched == NOW and latest.checked == NOW + timedelta(days=7)


def _run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def test_the_refresh_command(served: CatalogServer, ledger_home: Path) -> None:
    served.body = b"[]"
    refused = _run("prices", "refresh", "--url", served.url)
    assert refused.exit_code == 1
    assert "not refreshed: the catalog document lists no providers" in refused.output
    served.body = changed_document()
    done = _run("prices", "refresh", "--url", served.url, "--json")
    assert done.exit_code == 0, done.output
    answer = json.loads(done.output)
    assert answer["refreshed"] and answer["stored"]
    assert answer["added"] == ["openai/acme-refresh-1"] and answer["changed"] == ["openai/gpt-4o"]
    shutdown()
    listed = _run("prices", "list", "--search", "acme-refresh", "--json")
    assert [p["ref"] for p in json.loads(listed.output)] == [
        f"genai-prices@fetched-{datetime.now(UTC).date()}:openai/acme-refresh-1"
    ]
    table = _run("prices", "list", "--provider", "openai")
    assert f"catalog (fetched {datetime.now(UTC).date()})" in table.output
    assert get_ledger().pricer.price("openai", "gpt-4o", USAGE, NOW).cost == Decimal("0.0091")


@pytest.mark.unmigrated
def test_the_catalogs_migration_runs_on_the_previous_schema_and_back(db_url: str) -> None:
    import sqlalchemy as sa

    from llmledger.store.catalogs import StoredCatalog
    from llmledger.store.migrator import current_revision, downgrade_connection, upgrade_connection

    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            upgrade_connection(conn, "0014")
        with open_store(db_url) as migrated:
            migrated.add_catalog(StoredCatalog("01JC", "[1]", "http://x", NOW, NOW))
            assert migrated.prices_version()[-1] == "01JC"
        with engine.begin() as conn:
            downgrade_connection(conn, "0014")
            assert current_revision(conn) == "0014"
            assert "price_catalogs" not in sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()
