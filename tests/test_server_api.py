"""The HTTP API against the app, on SQLite and PostgreSQL: ingest, reads, prices, keys, errors."""

from __future__ import annotations

import gc
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmledger.core.ids import new_id
from llmledger.core.settings import load_settings
from llmledger.server import create_app


@dataclass
class Api:
    """A test client over a fresh ledger, with an admin key."""

    client: TestClient
    admin: str
    tokens: dict[str, str] = field(default_factory=dict)

    def key(self, role: str, tenant: str | None = None, user: str | None = None) -> str:
        service = self.client.app.state.service  # type: ignore[attr-defined]
        return str(
            service.keys.create(role, tenant=tenant, user=user, now=datetime.now(UTC)).secret
        )

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def get(self, path: str, token: str | None = None, **params: Any) -> Any:
        return self.client.get(path, params=params, headers=self.auth(token or self.admin))

    def post(self, path: str, body: Any, token: str | None = None) -> Any:
        return self.client.post(path, json=body, headers=self.auth(token or self.admin))


def make_event(**changes: Any) -> dict[str, Any]:
    """An event in the wire shape, a minute old."""
    event: dict[str, Any] = {
        "id": new_id(),
        "ts": (datetime.now(UTC) - timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
        "provider": "openai",
        "model": "gpt-4o",
        "usage": {"input_tokens": 1000, "output_tokens": 100, "cache_read_tokens": 200},
        "duration_ms": 250.0,
        "feature": "chat",
    }
    event.update(changes)
    return event


def open_api(db_url: str, **settings: Any) -> Iterator[Api]:
    app = create_app(load_settings(database_url=db_url, **settings))
    service = app.state.service
    admin = service.keys.create("admin", now=datetime.now(UTC)).secret
    with TestClient(app) as client:
        yield Api(client, admin)


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    yield from open_api(db_url)


# -- ingest ----------------------------------------------------------------------------


def test_one_event_then_the_same_again_is_a_duplicate(api: Api) -> None:
    event = make_event()
    first = api.post("/v1/events", event)
    assert first.status_code == 200
    assert first.json() == {"results": [{"id": event["id"], "status": "accepted", "reason": None}]}
    again = api.post("/v1/events", event)
    assert again.json()["results"][0]["status"] == "duplicate"
    stored = api.get(f"/v1/events/{event['id']}").json()
    assert stored["usage"]["total_tokens"] == 1100
    assert stored["cost"] is not None and stored["cost_source"] == "catalog"


def test_a_batch_answers_each_event_and_stores_only_the_valid_ones(api: Api) -> None:
    good, repeated = make_event(), make_event()
    api.post("/v1/events", repeated)
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    bad = [
        make_event(colour="red"),
        make_event(usage={"input_tokens": "12"}),
        make_event(usage={"input_tokens": -1}),
        make_event(usage={"input_tokens": 10, "cache_read_tokens": 11}),
        make_event(usage={"input_tokens": 10, "output_tokens": 1, "total_tokens": 12}),
        make_event(ts=future),
        make_event(ts="yesterday"),
        make_event(ts="2025-01-01T00:00:00"),
        make_event(status="fine"),
        make_event(cost="-1"),
        make_event(id="not-a-ulid"),
        "not an object",
    ]
    answer = api.post("/v1/events", {"events": [good, repeated, good, *bad]})
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [r["status"] for r in results[:3]] == ["accepted", "duplicate", "duplicate"]
    reasons = [r["reason"] for r in results[3:]]
    assert all(r["status"] == "rejected" for r in results[3:])
    expected = [
        "colour: unknown field",
        "usage.input_tokens: Input should be a valid integer",
        "usage.input_tokens: Input should be greater than or equal to 0",
        "cache_read_tokens (11) exceeds input_tokens (10)",
        "total_tokens (12) is not input_tokens + output_tokens (11)",
        "is in the future",
        "ts: Input should be a valid datetime",
        "ts: needs a UTC offset",
        "status: Input should be 'ok'",
        "cost: String should match pattern",
        "id: String should match pattern",
        "an event is a JSON object",
    ]
    for reason, part in zip(reasons, expected, strict=True):
        assert part in reason
    assert len(api.get("/v1/events").json()["events"]) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[]", "must be an event or"),
        (b'{"events": {}}', "events: Input should be a valid array"),
        (b'{"events": [], "more": 1}', "more: unknown field"),
        (json.dumps(make_event(usage={"input_tokens": -5})).encode(), "greater than or equal"),
    ],
)
def test_a_malformed_body_is_a_422_in_the_one_error_shape(
    api: Api, body: bytes, message: str
) -> None:
    answer = api.client.post("/v1/events", content=body, headers=api.auth(api.admin))
    assert answer.status_code == 422
    error = answer.json()
    assert error["ok"] is False and error["status"] == 422 and error["error"] == "invalid_event"
    assert message in error["message"]


def test_a_batch_over_1000_events_is_refused(api: Api) -> None:
    answer = api.post("/v1/events", {"events": [make_event() for _ in range(1001)]})
    assert answer.status_code == 422
    assert "at most 1000" in answer.json()["message"]
    assert api.get("/v1/events").json()["events"] == []


def test_oversized_bodies_are_413_plain_or_compressed(db_url: str) -> None:
    for api in open_api(db_url, max_body_bytes=2000):
        batch = json.dumps({"events": [make_event() for _ in range(20)]}).encode()
        answer = api.client.post("/v1/events", content=batch, headers=api.auth(api.admin))
        assert answer.status_code == 413 and answer.json()["error"] == "body_too_large"
        packed = gzip.compress(batch)
        assert len(packed) < 2000
        answer = api.client.post(
            "/v1/events",
            content=packed,
            headers={**api.auth(api.admin), "Content-Encoding": "gzip"},
        )
        assert answer.status_code == 413
        assert "decompressed" in answer.json()["message"]
        small = gzip.compress(json.dumps(make_event()).encode())
        answer = api.client.post(
            "/v1/events",
            content=small,
            headers={**api.auth(api.admin), "Content-Encoding": "gzip"},
        )
        assert answer.json()["results"][0]["status"] == "accepted"
        answer = api.client.post(
            "/v1/events", content=b"xx", headers={**api.auth(api.admin), "Content-Encoding": "br"}
        )
        assert answer.status_code == 415
        answer = api.client.post(
            "/v1/events", content=b"xx", headers={**api.auth(api.admin), "Content-Encoding": "gzip"}
        )
        assert answer.status_code == 400


def test_nothing_is_half_written_when_the_database_fails(api: Api) -> None:
    service = api.client.app.state.service  # type: ignore[attr-defined]

    def fail(*_args: Any) -> None:
        raise RuntimeError("disk on fire")

    service.store.write_hooks.append(fail)
    answer = api.post("/v1/events", {"events": [make_event() for _ in range(5)]})
    assert answer.status_code == 500 and answer.json()["error"] == "internal_error"
    service.store.write_hooks.remove(fail)
    assert service.store.count() == 0
    assert "llmledger_ingest_failed_requests_total 1" in api.client.get("/metrics").text


def test_an_unexpected_error_is_answered_in_the_one_shape_not_raised_to_the_server(
    db_url: str,
) -> None:
    app = create_app(load_settings(database_url=db_url))

    def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/broken", broken)
    # The test client raises what reaches the server (which would close the connection).
    with TestClient(app, raise_server_exceptions=True) as client:
        answer = client.get("/broken")
        assert answer.status_code == 500
        assert answer.json() == {
            "ok": False,
            "status": 500,
            "error": "internal_error",
            "message": "internal error",
        }
        assert client.get("/healthz").status_code == 200


def test_events_are_priced_with_prices_added_through_the_api(api: Api) -> None:
    row = {"provider": "acme", "model": "acme-1", "from": "2020-01-01", "input": "1", "output": 2}
    added = api.post("/v1/prices", row)
    assert added.status_code == 201, added.text
    assert added.json()["ref"] == "user:db:acme/acme-1@2020-01-01"
    event = make_event(
        provider="acme",
        model="acme-1",
        usage={"input_tokens": 1_000_000, "output_tokens": 1_000_000},
    )
    api.post("/v1/events", event)
    stored = api.get(f"/v1/events/{event['id']}").json()
    assert stored["cost"] == "3.000000000"
    assert stored["price_ref"] == "user:db:acme/acme-1@2020-01-01"
    # history: a later row is added beside the first, the same day again is a conflict
    assert api.post("/v1/prices", {**row, "input": "5"}).status_code == 409
    assert api.post("/v1/prices", {**row, "from": "2021-01-01", "input": "5"}).status_code == 201
    listed = api.get("/v1/prices", provider="acme").json()
    assert [p["from"] for p in listed] == ["2020-01-01", "2021-01-01"]
    verified = api.post(f"/v1/prices/{listed[0]['id']}/verify", {"checked": "2025-05-01"})
    assert verified.json()["checked"] == "2025-05-01"
    assert api.post("/v1/prices/nope/verify", {}).status_code == 404
    bad = api.post("/v1/prices", {"provider": "acme", "model": "x", "cache_read": 1})
    assert bad.status_code == 422 and "needs a rate too" in bad.json()["message"]
    assert api.post("/v1/prices", {**row, "colour": 1}).json()["details"] == [
        "colour: unknown field"
    ]


def test_exchange_rates_are_dated_rows_used_by_reports(api: Api) -> None:
    api.post("/v1/events", make_event())
    assert api.get("/v1/report", currency="BRL").status_code == 400
    added = api.post("/v1/exchange-rates", {"currency": "brl", "rate": "5.5", "from": "2020-01-01"})
    assert added.status_code == 201 and added.json()["currency"] == "BRL"
    assert (
        api.post(
            "/v1/exchange-rates", {"currency": "BRL", "rate": 6, "from": "2020-01-01"}
        ).status_code
        == 409
    )
    assert (
        api.post(
            "/v1/exchange-rates", {"currency": "BRL", "rate": 0, "from": "2021-01-01"}
        ).status_code
        == 422
    )
    report = api.get("/v1/report", currency="BRL", metrics="cost").json()
    usd = api.get("/v1/report", metrics="cost").json()
    assert report["rates"][0]["rate"] == "5.5"
    assert float(report["total"]["cost"]) == pytest.approx(float(usd["total"]["cost"]) * 5.5)
    rate_id = api.get("/v1/exchange-rates").json()[0]["id"]
    assert api.post(f"/v1/exchange-rates/{rate_id}/verify", None).json()["checked"] is not None


# -- reads -----------------------------------------------------------------------------


def test_listing_pages_through_every_event_once_newest_first(api: Api) -> None:
    base = datetime.now(UTC) - timedelta(hours=1)
    batch = [
        make_event(ts=(base + timedelta(seconds=i // 3)).isoformat(), model=f"m{i % 2}")
        for i in range(25)
    ]
    api.post("/v1/events", {"events": batch})
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 7}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/v1/events", **params).json()
        seen += [e["id"] for e in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(e["id"] for e in batch) and len(seen) == 25
    times = [e["ts"] for e in api.get("/v1/events", limit=1000).json()["events"]]
    assert times == sorted(times, reverse=True)
    only = api.get("/v1/events", where="model=m1").json()["events"]
    assert len(only) == 12 and {e["model"] for e in only} == {"m1"}
    assert api.get("/v1/events", where="model!=m1", last="2h").json()["events"][0]["model"] == "m0"
    assert api.get("/v1/events", limit=1001).status_code == 422
    assert api.get("/v1/events", limit=0).status_code == 422
    assert api.get("/v1/events", cursor="%%%").json()["error"] == "invalid_query"
    assert api.get("/v1/events", where="colour=red").status_code == 400


def test_filters_on_tags_and_periods(api: Api) -> None:
    api.post("/v1/events", {"events": [make_event(tags={"podcast": "p1"}), make_event()]})
    tagged = api.get("/v1/events", where="tag:podcast=p1").json()["events"]
    assert len(tagged) == 1 and tagged[0]["tags"] == {"podcast": "p1"}
    assert len(api.get("/v1/events", period="today", tz="UTC").json()["events"]) in (0, 2)
    assert api.get("/v1/events", since="2000-01-01", until="2001-01-01").json()["events"] == []


def test_report_batch_and_stats(api: Api) -> None:
    api.post(
        "/v1/events",
        {
            "events": [
                make_event(feature="chat"),
                make_event(feature="chat", status="error"),
                make_event(feature="search", duration_ms=750.0),
            ]
        },
    )
    report = api.get("/v1/report", by="feature", metrics=["calls", "errors"]).json()
    assert {r["feature"]: r["calls"] for r in report["rows"]} == {"chat": 2, "search": 1}
    batch = api.post(
        "/v1/report/batch",
        {
            "queries": [
                {"by": ["model"], "metrics": ["calls"]},
                {"every": "day", "last": "7d"},
            ]
        },
    )
    assert batch.status_code == 200
    first, second = batch.json()["reports"]
    assert first["rows"] == [{"model": "gpt-4o", "calls": 3}]
    assert second["query"]["every"] == "day"
    bad = api.post("/v1/report/batch", {"queries": [{}, {"by": ["colour"]}]})
    assert bad.status_code == 400 and bad.json()["message"].startswith("queries[1]:")
    assert api.post("/v1/report/batch", {"queries": []}).status_code == 422
    stats = api.get("/v1/stats", days=7).json()
    assert stats["total_requests"] == 3
    assert stats["total_tokens"] == 3300
    assert stats["success_rate"] == pytest.approx(2 / 3)
    assert stats["mean_response_ms"] == pytest.approx(1250 / 3)
    assert [(f["feature"], f["requests"]) for f in stats["by_feature"]] == [
        ("chat", 2),
        ("search", 1),
    ]
    assert api.get("/v1/stats", days=0).status_code == 422
    assert api.get("/v1/report", source="rollups", metrics="latency_p95").status_code == 400


# -- keys, auth, errors ----------------------------------------------------------------


def test_keys_are_created_listed_and_revoked_by_admins(api: Api) -> None:
    made = api.post("/v1/keys", {"role": "reader", "tenant": "acme", "name": "dashboard"})
    assert made.status_code == 201
    secret = made.json()["secret"]
    assert secret.startswith(made.json()["prefix"] + "_")
    assert api.get("/v1/events", token=secret).status_code == 200
    listed = api.get("/v1/keys").json()
    assert all("secret" not in k for k in listed)
    assert made.json()["id"] in {k["id"] for k in listed}
    assert api.get("/v1/keys", token=secret).status_code == 403
    revoked = api.client.delete(f"/v1/keys/{made.json()['id']}", headers=api.auth(api.admin))
    assert revoked.json()["revoked"] is not None
    assert api.get("/v1/events", token=secret).status_code == 401
    assert made.json()["id"] not in {k["id"] for k in api.get("/v1/keys").json()}
    assert made.json()["id"] in {k["id"] for k in api.get("/v1/keys", revoked=True).json()}
    assert api.post("/v1/keys", {"role": "reader"}).status_code == 422
    assert api.post("/v1/keys", {"role": "root"}).status_code == 422
    assert api.client.delete("/v1/keys/NOPE", headers=api.auth(api.admin)).status_code == 404


def test_roles_and_missing_or_wrong_keys(api: Api) -> None:
    ingest = api.key("ingest", tenant="acme")
    reader = api.key("reader", tenant="acme")
    assert api.post("/v1/events", make_event(), token=reader).status_code == 403
    assert api.get("/v1/events", token=ingest).status_code == 403
    assert (
        api.post(
            "/v1/prices", {"provider": "a", "model": "b", "input": 1}, token=reader
        ).status_code
        == 403
    )
    assert api.get("/v1/prices", token=reader).status_code == 200
    for headers in (
        {},
        {"Authorization": "Bearer llk_nope"},
        {"Authorization": "Basic abc"},
        {"Authorization": f"Bearer {ingest}x"},
    ):
        answer = api.client.get("/v1/events", headers=headers)
        assert answer.status_code == 401, headers
        assert answer.json()["error"] == "unauthorized"


def test_health_metrics_docs_and_unknown_routes(api: Api) -> None:
    health = api.client.get("/healthz").json()
    assert health["ok"] is True and health["schema_version"]
    api.post("/v1/events", {"events": [make_event(), make_event(), make_event(ts="x")]})
    metrics = api.client.get("/metrics").text
    assert "llmledger_events_ingested_total 2" in metrics
    assert "llmledger_events_rejected_total 1" in metrics
    assert 'llmledger_ingest_duration_seconds_bucket{le="+Inf"} 1' in metrics
    assert api.client.get("/docs").status_code == 200
    schema = api.client.get("/openapi.json").json()
    assert "EventIn" in schema["components"]["schemas"]
    missing = api.client.get("/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = api.client.put("/v1/events", headers=api.auth(api.admin))
    assert wrong.status_code == 405 and wrong.json()["ok"] is False
    assert api.get("/v1/events/01J00000000000000000000000").status_code == 404


def test_instances_over_one_database_answer_alike(db_url: str) -> None:
    for first in open_api(db_url):
        for second in open_api(db_url):
            event = make_event(provider="acme", model="acme-2")
            assert first.post("/v1/events", event).json()["results"][0]["status"] == "accepted"
            again = second.post("/v1/events", event).json()["results"][0]["status"]
            assert again == "duplicate"
            made = first.post("/v1/keys", {"role": "reader", "tenant": "t"}).json()
            assert second.get("/v1/events", token=made["secret"]).status_code == 200
            second.client.delete(f"/v1/keys/{made['id']}", headers=second.auth(second.admin))
            assert first.get("/v1/events", token=made["secret"]).status_code == 401
            row = {"provider": "acme", "model": "acme-2", "input": "1", "output": "1"}
            assert first.post("/v1/prices", row).status_code == 201
            assert second.post("/v1/prices", row).status_code == 409
            # the other instance picks the new price up at its next check
            second.client.app.state.service._checked_at = float("-inf")  # type: ignore[attr-defined]
            later = make_event(
                provider="acme",
                model="acme-2",
                usage={"input_tokens": 1_000_000, "output_tokens": 0},
            )
            second.post("/v1/events", later)
            assert first.get(f"/v1/events/{later['id']}").json()["cost"] == "1.000000000"


def test_a_serving_process_freezes_its_start_up_objects_out_of_the_collector(
    tmp_path: Path, unfrozen_gc: None
) -> None:
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    assert gc.get_freeze_count() == 0
    try:
        with TestClient(create_app(settings)):
            assert gc.get_freeze_count() == 0  # mounted in a larger program: left alone
        with TestClient(create_app(settings, own_process=True)) as client:
            assert gc.get_freeze_count() > 0
            assert client.get("/healthz").status_code == 200
    finally:
        gc.unfreeze()


# -- prompt and response text ----------------------------------------------------------


def _kept_rows(api: Api) -> dict[str, tuple[str | None, str | None]]:
    import sqlalchemy as sa

    from llmledger.store.content import event_content

    service = api.client.app.state.service  # type: ignore[attr-defined]
    with service.store.engine.connect() as conn:
        rows = conn.execute(sa.select(event_content)).mappings().all()
    return {row["event_id"]: (row["prompt"], row["response"]) for row in rows}


def test_text_is_kept_for_the_events_a_write_inserts_only(api: Api) -> None:
    kept = make_event(content={"prompt": "What is 2+2?", "response": "4"})
    plain = make_event()
    repeated = make_event()
    first = api.post("/v1/events", {"events": [kept, plain, repeated]})
    assert [r["status"] for r in first.json()["results"]] == ["accepted"] * 3
    assert _kept_rows(api) == {kept["id"]: ("What is 2+2?", "4")}
    # A duplicate with other text, and a retried batch, change nothing.
    again = {**kept, "content": {"prompt": "overwritten?", "response": None}}
    late = {**repeated, "content": {"prompt": "too late", "response": None}}
    second = api.post("/v1/events", {"events": [again, late]})
    assert [r["status"] for r in second.json()["results"]] == ["duplicate", "duplicate"]
    assert api.post("/v1/events", {"events": [kept, plain]}).status_code == 200
    assert _kept_rows(api) == {kept["id"]: ("What is 2+2?", "4")}
    # Within one batch the first occurrence of an id is the one stored, with its text.
    once = make_event()
    twice = {**once, "content": {"prompt": "second copy", "response": None}}
    both = make_event(content={"prompt": "first", "response": None})
    both_again = {**both, "content": {"prompt": "second", "response": None}}
    third = api.post("/v1/events", {"events": [once, twice, both, both_again]})
    assert [r["status"] for r in third.json()["results"]] == [
        "accepted",
        "duplicate",
        "accepted",
        "duplicate",
    ]
    rows = _kept_rows(api)
    assert once["id"] not in rows and rows[both["id"]] == ("first", None)
    # A rejected event keeps no text.
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    refused = make_event(ts=future, content={"prompt": "refused", "response": None})
    assert api.post("/v1/events", {"events": [refused]}).json()["results"][0]["status"] == (
        "rejected"
    )
    assert refused["id"] not in _kept_rows(api)
    # The event itself never carries the text.
    stored = api.get(f"/v1/events/{kept['id']}").json()
    assert "content" not in stored and "2+2" not in json.dumps(stored)
    assert "content" not in json.dumps(api.get("/v1/events").json())


def test_text_is_written_in_the_events_transaction(api: Api) -> None:
    service = api.client.app.state.service  # type: ignore[attr-defined]

    def fail(*_args: Any) -> None:
        raise RuntimeError("disk on fire")

    event = make_event(content={"prompt": "question", "response": "answer"})
    service.store.write_hooks.append(fail)
    try:
        assert api.post("/v1/events", event).status_code == 500
    finally:
        service.store.write_hooks.remove(fail)
    assert service.store.count() == 0 and _kept_rows(api) == {}
    assert api.post("/v1/events", event).json()["results"][0]["status"] == "accepted"
    assert _kept_rows(api) == {event["id"]: ("question", "answer")}


def test_malformed_or_too_long_text_refuses_its_event(api: Api) -> None:
    from llmledger.wire.parse import MAX_CONTENT_CHARS

    long_text = "x" * (MAX_CONTENT_CHARS + 1)
    single = api.post("/v1/events", make_event(content={"prompt": long_text}))
    assert single.status_code == 422
    assert single.json()["message"] == (
        f"content.prompt: String should have at most {MAX_CONTENT_CHARS} characters"
    )
    good = make_event(content={"prompt": "x" * MAX_CONTENT_CHARS, "response": None})
    bad = [
        make_event(content={"response": long_text}),
        make_event(content={"prompt": 12}),
        make_event(content={"prompt": "a", "colour": "red"}),
        make_event(content="the prompt"),
    ]
    answer = api.post("/v1/events", {"events": [good, *bad]})
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert results[0]["status"] == "accepted"
    assert [r["status"] for r in results[1:]] == ["rejected"] * 4
    assert [r["reason"] for r in results[1:]] == [
        f"content.response: String should have at most {MAX_CONTENT_CHARS} characters",
        "content.prompt: Input should be a valid string",
        "content.colour: unknown field",
        "content: Input should be a valid dictionary or instance of ContentIn",
    ]
    assert list(_kept_rows(api)) == [good["id"]]
    assert api.get("/v1/events").json()["events"][0]["id"] == good["id"]


def test_text_is_read_back_within_the_keys_scope(api: Api) -> None:
    ingest = api.key("ingest", tenant="acme")
    acme = make_event(user="ana", content={"prompt": "acme's question", "response": "reply"})
    other = make_event(tenant="globex", content={"prompt": "globex's", "response": None})
    bare = make_event(tenant="globex")
    assert api.post("/v1/events", acme, token=ingest).status_code == 200
    api.post("/v1/events", {"events": [other, bare]})
    path = f"/v1/events/{acme['id']}/content"
    expected = {"event_id": acme["id"], "prompt": "acme's question", "response": "reply"}
    assert api.get(path).json() == expected
    assert api.get(path.lower()).json() == expected
    assert api.get(path, token=api.key("reader", tenant="acme")).json() == expected
    assert api.get(path, token=api.key("reader", tenant="acme", user="ana")).status_code == 200
    for outsider in (
        api.key("reader", tenant="globex"),
        api.key("reader", tenant="acme", user="bob"),
    ):
        hidden = api.get(path, token=outsider)
        assert hidden.status_code == 404 and hidden.json()["error"] == "not_found"
    assert api.get(path, token=ingest).status_code == 403
    globex = api.key("reader", tenant="globex")
    assert api.get(f"/v1/events/{other['id']}/content", token=globex).json()["prompt"] == (
        "globex's"
    )
    none_kept = api.get(f"/v1/events/{bare['id']}/content", token=globex)
    assert none_kept.status_code == 404 and "no text was kept" in none_kept.json()["message"]
    assert api.get("/v1/events/01J00000000000000000000000/content").status_code == 404
    schema = api.client.get("/openapi.json").json()
    assert "/v1/events/{event_id}/content" in schema["paths"]
    assert "content" in schema["components"]["schemas"]["EventIn"]["properties"]
    assert "content" not in schema["components"]["schemas"]["EventOut"]["properties"]


def test_the_key_cache_follows_the_key_cache_seconds_setting(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    for seconds, cached in ((0.0, False), (30.0, True)):
        app = create_app(load_settings(database_url=url, key_cache_seconds=seconds))
        keys = app.state.service.keys
        token = keys.create("reader", tenant="acme", now=datetime.now(UTC)).secret
        with TestClient(app) as client:
            headers = {"Authorization": f"Bearer {token}"}
            assert client.get("/v1/events", headers=headers).status_code == 200
            # Revoked behind this instance's back (as another instance would):
            other = type(keys)(app.state.service.store, cache_seconds=0)
            other.revoke(token.split("_")[1], now=datetime.now(UTC))
            answer = client.get("/v1/events", headers=headers)
            assert answer.status_code == (200 if cached else 401)
