"""``/v1/limits``: admins manage limits, a tenant's keys see and check their tenant's only;
reserve and settle through the service, also from the SDK (remote limits)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from llmledger.core.limits import Amounts, Subject
from llmledger.runtime.limits import RemoteLimits
from tests.test_server_api import Api, open_api

ACME_LIMIT = {
    "scope": "tenant",
    "value": "acme",
    "metric": "requests",
    "amount": 2,
    "period": "day",
}
GLOBEX_LIMIT = {
    "scope": "tenant",
    "value": "globex",
    "metric": "cost",
    "amount": "1.5",
    "period": "month",
}
FEATURE_LIMIT = {
    "scope": "feature",
    "value": "search",
    "metric": "tokens",
    "amount": 1000,
    "period": "hour",
}


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    yield from open_api(db_url)


@pytest.fixture
def seeded(api: Api) -> dict[str, Any]:
    made = {
        name: api.post("/v1/limits", body).json()
        for name, body in (
            ("acme", ACME_LIMIT),
            ("globex", GLOBEX_LIMIT),
            ("feature", FEATURE_LIMIT),
        )
    }
    return {
        **made,
        "acme_reader": api.key("reader", tenant="acme"),
        "acme_ingest": api.key("ingest", tenant="acme"),
        "globex_ingest": api.key("ingest", tenant="globex"),
    }


def test_admins_add_list_show_and_remove_limits(api: Api, seeded: dict[str, Any]) -> None:
    acme = seeded["acme"]
    assert (acme["scope"], acme["value"], acme["tenant"], acme["amount"], acme["mode"]) == (
        "tenant",
        "acme",
        "acme",
        "2",
        "block",
    )
    listed = api.get("/v1/limits").json()
    assert [x["id"] for x in listed] == [seeded[n]["id"] for n in ("acme", "globex", "feature")]
    assert listed[0]["used"] == 0 and listed[0]["reserved"] == 0
    assert api.get(f"/v1/limits/{acme['id']}").json()["id"] == acme["id"]
    removed = api.client.delete(f"/v1/limits/{acme['id']}", headers=api.auth(api.admin))
    assert removed.status_code == 200
    assert api.get(f"/v1/limits/{acme['id']}").status_code == 404
    assert (
        api.client.delete(f"/v1/limits/{acme['id']}", headers=api.auth(api.admin)).status_code
        == 404
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"scope": "team"}, "scope"),
        ({"amount": -1}, "amount"),
        ({"amount": "1.5", "metric": "tokens"}, "whole units"),
        ({"period": "year"}, "period"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_limits_are_refused_with_their_reason(
    api: Api, change: dict[str, Any], field: str
) -> None:
    answer = api.post("/v1/limits", {**ACME_LIMIT, **change})
    assert answer.status_code == 422
    assert field in answer.text
    assert api.get("/v1/limits").json() == []


def test_reserve_settle_and_check_through_the_service(api: Api, seeded: dict[str, Any]) -> None:
    ingest = seeded["acme_ingest"]
    first = api.post("/v1/limits/reserve", {"user": "ana"}, token=ingest).json()
    second = api.post("/v1/limits/reserve", {}, token=ingest).json()
    assert first["allowed"] and second["allowed"]
    third = api.post("/v1/limits/reserve", {}, token=ingest).json()
    assert not third["allowed"] and third["reservation"] is None
    assert third["decisions"][0]["outcome"] == "block" and third["decisions"][0]["reserved"] == 2
    assert api.post(
        "/v1/limits/settle", {"reservation": first["reservation"], "requests": 0}, token=ingest
    ).json() == {"settled": 1}
    assert api.post("/v1/limits/check", {}, token=ingest).json()["allowed"]
    # a settle of another tenant's reservation counts nothing
    other = api.post(
        "/v1/limits/settle", {"reservation": second["reservation"]}, token=seeded["globex_ingest"]
    )
    assert other.json() == {"settled": 0}
    assert api.post(
        "/v1/limits/settle", {"reservation": second["reservation"]}, token=ingest
    ).json() == {"settled": 1}


def test_a_tenants_keys_see_and_check_only_their_tenant(api: Api, seeded: dict[str, Any]) -> None:
    reader, ingest, globex = seeded["acme_reader"], seeded["acme_ingest"], seeded["globex_ingest"]
    for token in (reader, ingest):
        assert [x["id"] for x in api.get("/v1/limits", token=token).json()] == [
            seeded["acme"]["id"]
        ]
        assert api.get(f"/v1/limits/{seeded['globex']['id']}", token=token).status_code == 404
        assert api.get(f"/v1/limits/{seeded['feature']['id']}", token=token).status_code == 404
        assert api.get(f"/v1/limits/{seeded['acme']['id']}", token=token).status_code == 200
    # checks are decided for the key's tenant, whatever the body claims
    claimed = api.post(
        "/v1/limits/check", {"tenant": "globex", "feature": "search"}, token=ingest
    ).json()
    ids = {d["limit"]["id"]: d for d in claimed["decisions"]}
    assert set(ids) == {seeded["acme"]["id"], seeded["feature"]["id"]}
    # a limit over every tenant applies, but its counters (other tenants' spend) are hidden
    assert ids[seeded["feature"]["id"]]["used"] is None
    assert ids[seeded["acme"]["id"]]["used"] == 0
    assert (
        api.post("/v1/limits/check", {}, token=globex).json()["decisions"][0]["limit"]["id"]
        == seeded["globex"]["id"]
    )
    # the admin sees the counters
    admin = api.post("/v1/limits/check", {"tenant": "acme", "feature": "search"}).json()
    assert all(d["used"] == 0 for d in admin["decisions"])


def test_only_admins_manage_and_readers_cannot_reserve(api: Api, seeded: dict[str, Any]) -> None:
    reader, ingest = seeded["acme_reader"], seeded["acme_ingest"]
    for token in (reader, ingest):
        assert api.post("/v1/limits", ACME_LIMIT, token=token).status_code == 403
        deleted = api.client.delete(f"/v1/limits/{seeded['acme']['id']}", headers=api.auth(token))
        assert deleted.status_code == 403
    assert api.post("/v1/limits/reserve", {}, token=reader).status_code == 403
    assert api.post("/v1/limits/settle", {"reservation": "x"}, token=reader).status_code == 403
    assert api.client.get("/v1/limits").status_code == 401
    assert api.client.post("/v1/limits/check", json={}).status_code == 401


def test_the_sdk_reserves_and_settles_through_the_service(api: Api, seeded: dict[str, Any]) -> None:
    import httpx

    class Through(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            answer = api.client.request(
                request.method,
                request.url.path,
                content=request.content,
                headers=dict(request.headers),
            )
            return httpx.Response(
                answer.status_code, content=answer.content, headers=answer.headers
            )

    remote = RemoteLimits("http://service", seeded["globex_ingest"], transport=Through())
    subject = Subject(tenant="acme", user="ana")  # the key's tenant wins
    needed = Amounts.of_call(cost=Decimal("1"), tokens=10)
    [decision] = remote.reserve(subject, needed, now=_now(), ttl=60, reservation="R1")
    assert decision.limit.id == seeded["globex"]["id"] and decision.outcome == "ok"
    [blocked] = remote.reserve(subject, needed, now=_now(), ttl=60, reservation="R2")
    assert blocked.outcome == "block" and blocked.reserved == 10**9
    remote.settle("R1", Amounts.of_call(cost=Decimal("0.25"), tokens=10), now=_now())
    [state] = api.get("/v1/limits", token=seeded["globex_ingest"]).json()
    assert (state["used"], state["reserved"]) == (250_000_000, 0)
    remote.close()


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
