"""Tenant isolation: a key never sees another tenant's data, on every read route."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.test_server_api import Api, make_event, open_api


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    yield from open_api(db_url)


@pytest.fixture
def seeded(api: Api) -> dict[str, Any]:
    """Two tenants' calls, sent with each tenant's ingest key (and one by the admin)."""
    acme = api.key("ingest", tenant="acme")
    globex = api.key("ingest", tenant="globex")
    acme_events = [make_event(user="ana", feature="chat"), make_event(user="bob", feature="chat")]
    # An ingest key puts events in its tenant whatever they claim.
    acme_events.append(make_event(user="ana", tenant="globex", feature="search"))
    globex_events = [make_event(user="ana", feature="secret-project")]
    assert api.post("/v1/events", {"events": acme_events}, token=acme).status_code == 200
    assert api.post("/v1/events", {"events": globex_events}, token=globex).status_code == 200
    return {
        "acme": acme_events,
        "globex": globex_events,
        "acme_reader": api.key("reader", tenant="acme"),
        "ana_reader": api.key("reader", tenant="acme", user="ana"),
        "globex_reader": api.key("reader", tenant="globex"),
    }


def _ids(events: list[dict[str, Any]]) -> set[str]:
    return {e["id"] for e in events}


def test_ingest_keys_force_their_tenant(api: Api, seeded: dict[str, Any]) -> None:
    stored = api.get("/v1/events").json()["events"]
    tenants = {e["id"]: e["tenant"] for e in stored}
    assert {tenants[i] for i in _ids(seeded["acme"])} == {"acme"}
    assert {tenants[i] for i in _ids(seeded["globex"])} == {"globex"}


def test_event_list_and_filters_stay_in_the_tenant(api: Api, seeded: dict[str, Any]) -> None:
    reader = seeded["acme_reader"]
    assert _ids(api.get("/v1/events", token=reader).json()["events"]) == _ids(seeded["acme"])
    for where in ("tenant=globex", "tenant!=acme", "tenant=(none)", "feature=secret-project"):
        assert api.get("/v1/events", token=reader, where=where).json()["events"] == [], where
    ana = api.get("/v1/events", token=seeded["ana_reader"]).json()["events"]
    assert {e["user"] for e in ana} == {"ana"} and {e["tenant"] for e in ana} == {"acme"}
    assert len(ana) == 2
    assert (
        api.get("/v1/events", token=seeded["ana_reader"], where="user=bob").json()["events"] == []
    )


def test_one_event_of_another_tenant_is_not_found(api: Api, seeded: dict[str, Any]) -> None:
    theirs = seeded["globex"][0]["id"]
    ours = seeded["acme"][0]["id"]
    bobs = seeded["acme"][1]["id"]
    assert api.get(f"/v1/events/{ours}", token=seeded["acme_reader"]).status_code == 200
    answer = api.get(f"/v1/events/{theirs}", token=seeded["acme_reader"])
    assert answer.status_code == 404
    # the same answer as for an id that does not exist: nothing leaks
    assert answer.json()["message"] == f"no event {theirs!r}"
    assert api.get(f"/v1/events/{bobs}", token=seeded["ana_reader"]).status_code == 404
    assert api.get(f"/v1/events/{theirs}", token=seeded["globex_reader"]).status_code == 200


def test_reports_and_batches_stay_in_the_tenant(api: Api, seeded: dict[str, Any]) -> None:
    reader = seeded["acme_reader"]
    by_tenant = api.get("/v1/report", token=reader, by="tenant", metrics="calls").json()
    assert by_tenant["rows"] == [{"tenant": "acme", "calls": 3}]
    assert by_tenant["total"]["calls"] == 3
    by_feature = api.get(
        "/v1/report", token=reader, by="feature", metrics="calls", source="events"
    ).json()
    assert {r["feature"] for r in by_feature["rows"]} == {"chat", "search"}
    none = api.get("/v1/report", token=reader, where="tenant=globex", metrics="calls").json()
    assert none["total"]["calls"] == 0
    by_user = api.get("/v1/report", token=seeded["ana_reader"], by="user", metrics="calls").json()
    assert by_user["rows"] == [{"user": "ana", "calls": 2}]
    batch = api.post(
        "/v1/report/batch",
        {
            "queries": [
                {"by": ["tenant"], "metrics": ["calls"]},
                {"by": ["tag"], "metrics": ["calls"]},
                {"every": "day", "by": ["user"], "metrics": ["calls"], "last": "2d"},
            ]
        },
        token=reader,
    ).json()["reports"]
    assert batch[0]["rows"] == [{"tenant": "acme", "calls": 3}]
    assert batch[1]["total"]["calls"] == 3
    assert sum(r["calls"] for r in batch[2]["rows"]) == 3
    admin = api.get("/v1/report", by="tenant", metrics="calls").json()
    assert {r["tenant"]: r["calls"] for r in admin["rows"]} == {"acme": 3, "globex": 1}


def test_stats_stay_in_the_tenant(api: Api, seeded: dict[str, Any]) -> None:
    stats = api.get("/v1/stats", token=seeded["acme_reader"]).json()
    assert stats["total_requests"] == 3
    assert {f["feature"] for f in stats["by_feature"]} == {"chat", "search"}
    assert api.get("/v1/stats", token=seeded["ana_reader"]).json()["total_requests"] == 2
    assert api.get("/v1/stats", token=seeded["globex_reader"]).json()["total_requests"] == 1
    assert api.get("/v1/stats").json()["total_requests"] == 4


def test_scoped_keys_cannot_reach_keys_or_change_prices(api: Api, seeded: dict[str, Any]) -> None:
    reader = seeded["acme_reader"]
    assert api.get("/v1/keys", token=reader).status_code == 403
    assert api.post("/v1/keys", {"role": "admin"}, token=reader).status_code == 403
    assert api.client.delete("/v1/keys/X", headers=api.auth(reader)).status_code == 403
    assert (
        api.post(
            "/v1/exchange-rates", {"currency": "BRL", "rate": 5, "from": "2025-01-01"}, token=reader
        ).status_code
        == 403
    )
    # prices and exchange rates are shared by every tenant (no tenant data in them)
    assert api.get("/v1/prices", token=reader).status_code == 200
    assert api.get("/v1/exchange-rates", token=reader).status_code == 200
