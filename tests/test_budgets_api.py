"""``/v1/budgets`` and ``/v1/alerts`` on SQLite and PostgreSQL: admins manage, keys of a
tenant see their tenant's budgets and alerts only, bad input is refused with its reason."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.alerting_support import Hook, webhook_server
from tests.test_server_api import Api, make_event, open_api


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    yield from open_api(db_url)


def _budget(api: Api, name: str, tenant: str | None, **fields: Any) -> dict[str, Any]:
    body = {"name": name, "amount": "1", "period": "day", "tenant": tenant, **fields}
    answer = api.post("/v1/budgets", body)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


@pytest.fixture
def seeded(api: Api) -> dict[str, Any]:
    """Budgets and fired alerts of two tenants (and one of no tenant)."""
    acme = _budget(api, "acme daily", "acme", thresholds=[50])
    globex = _budget(api, "globex daily", "globex", thresholds=[50])
    everyone = _budget(api, "all", None, amount="1000")
    for tenant in ("acme", "globex"):
        key = api.key("ingest", tenant=tenant)
        events = [make_event(cost="0.6", cost_source="manual") for _ in range(1)]
        assert api.post("/v1/events", {"events": events}, token=key).status_code == 200
    service = api.client.app.state.service  # type: ignore[attr-defined]
    fired = service.monitor.check(datetime.now(UTC)).fired
    by_tenant = {a.tenant: a.id for a in fired if a.rule == "budget"}
    return {
        "acme": acme,
        "globex": globex,
        "all": everyone,
        "acme_alert": by_tenant["acme"],
        "globex_alert": by_tenant["globex"],
        "acme_reader": api.key("reader", tenant="acme"),
        "ana_reader": api.key("reader", tenant="acme", user="ana"),
    }


def test_a_tenant_key_lists_and_checks_its_tenant_budgets_only(
    api: Api, seeded: dict[str, Any]
) -> None:
    for token in (seeded["acme_reader"], seeded["ana_reader"]):
        assert [b["name"] for b in api.get("/v1/budgets", token).json()] == ["acme daily"]
        checked = api.get("/v1/budgets/check", token).json()
        assert [(s["budget"]["name"], s["spent"], s["crossed"]) for s in checked] == [
            ("acme daily", "0.600000000", [50])
        ]
    assert sorted(b["name"] for b in api.get("/v1/budgets").json()) == [
        "acme daily",
        "all",
        "globex daily",
    ]


def test_another_tenants_budget_is_not_found_on_every_route(
    api: Api, seeded: dict[str, Any]
) -> None:
    reader = seeded["acme_reader"]
    other = seeded["globex"]["id"]
    for ref in (other, "globex daily", seeded["all"]["id"]):
        assert api.get(f"/v1/budgets/{ref}", reader).status_code == 404
    own = api.get(f"/v1/budgets/{seeded['acme']['id']}", reader)
    assert own.status_code == 200 and own.json()["percent"] == "60.00"


def test_readers_cannot_manage_budgets_or_ack_alerts(api: Api, seeded: dict[str, Any]) -> None:
    reader = seeded["acme_reader"]
    own = seeded["acme"]["id"]
    headers = api.auth(reader)
    assert api.post("/v1/budgets", {"name": "x", "amount": "1"}, reader).status_code == 403
    assert (
        api.client.patch(f"/v1/budgets/{own}", json={"amount": "2"}, headers=headers).status_code
        == 403
    )
    assert api.client.delete(f"/v1/budgets/{own}", headers=headers).status_code == 403
    assert api.post(f"/v1/budgets/{own}/test", {}, reader).status_code == 403
    assert api.post(f"/v1/alerts/{seeded['acme_alert']}/ack", {}, reader).status_code == 403
    assert api.get(f"/v1/budgets/{own}", reader).json()["budget"]["amount"] == "1"


def test_alerts_stay_in_the_tenant(api: Api, seeded: dict[str, Any]) -> None:
    reader = seeded["acme_reader"]
    listed = api.get("/v1/alerts", reader).json()
    assert {a["tenant"] for a in listed} == {"acme"}
    assert seeded["acme_alert"] in {a["id"] for a in listed}
    assert api.get(f"/v1/alerts/{seeded['globex_alert']}", reader).status_code == 404
    assert api.get(f"/v1/alerts/{seeded['acme_alert']}", reader).status_code == 200
    everything = api.get("/v1/alerts").json()
    assert {seeded["acme_alert"], seeded["globex_alert"]} <= {a["id"] for a in everything}


def test_admins_change_ack_and_remove(api: Api, seeded: dict[str, Any]) -> None:
    alert_id = seeded["acme_alert"]
    acked = api.post(f"/v1/alerts/{alert_id}/ack", {"by": "ana"}).json()
    assert acked["acked_by"] == "ana" and acked["state"] == "firing"
    assert [a["id"] for a in api.get("/v1/alerts", state="firing").json()].count(alert_id) == 1
    own = seeded["acme"]["id"]
    changed = api.client.patch(
        f"/v1/budgets/{own}", json={"amount": "5", "thresholds": [80]}, headers=api.auth(api.admin)
    )
    assert changed.status_code == 200 and changed.json()["thresholds"] == [80]
    assert changed.json()["tenant"] == "acme"
    removed = api.client.delete(f"/v1/budgets/{own}", headers=api.auth(api.admin))
    assert removed.status_code == 200
    assert api.get(f"/v1/budgets/{own}").status_code == 404
    # Its alerts stay in the history.
    assert api.get(f"/v1/alerts/{alert_id}").status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "x", "amount": "-1"}, 422, "invalid_request"),
        ({"name": "x", "amount": "1", "where": ["colour=red"]}, 422, "invalid_budget"),
        ({"name": "x", "amount": "1", "recipients": ["sms:1"]}, 422, "invalid_budget"),
        ({"name": "x", "amount": "1", "period": "rolling"}, 422, "invalid_budget"),
        ({"name": "x", "amount": "1", "tz": "Nowhere/City"}, 422, "invalid_budget"),
        ({"name": "x", "amount": "1", "colour": "red"}, 422, "invalid_request"),
        ({"name": "acme daily", "amount": "1"}, 409, "conflict"),
    ],
)
def test_bad_budgets_are_refused_with_their_reason(
    api: Api, seeded: dict[str, Any], body: dict[str, Any], status: int, code: str
) -> None:
    answer = api.post("/v1/budgets", body)
    assert (answer.status_code, answer.json()["error"]) == (status, code), answer.text
    assert len(api.get("/v1/budgets").json()) == 3


def test_the_test_notification_reaches_a_webhook(api: Api) -> None:
    hook: Hook
    with webhook_server() as (url, hook):
        budget = _budget(api, "hooked", None, recipients=[f"slack:{url}"])
        answer = api.post(f"/v1/budgets/{budget['id']}/test", {})
        assert answer.json() == [{"recipient": f"slack:{url}", "delivered": True, "error": None}]
        (body,) = hook.bodies()
        assert body["text"].startswith("*[llmledger] Test notification (budget hooked)*")
        hook.answers = [500]
        failed = api.post(f"/v1/budgets/{budget['id']}/test", {}).json()
        assert failed[0]["delivered"] is False and "answered 500" in failed[0]["error"]
