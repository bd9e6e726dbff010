"""Hostile input against a real ``llmledger serve``, on SQLite and PostgreSQL.

One bad event is refused with its reason and the rest of its batch is stored;
text no store can hold, numbers out of bounds and deep nesting are refused the
same on both databases; impossible query inputs are 4xx in the one error
shape; ids of other tenants do not leak through ingest answers; the remote
sink goes on past refused events.
"""

from __future__ import annotations

import gzip
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmledger.core.events import UsageEvent
from llmledger.core.ids import new_id
from llmledger.runtime.journal import Journal
from llmledger.runtime.remote import RemoteSink
from llmledger.runtime.writer import Writer
from llmledger.wire.parse import MAX_COST, MAX_MILLIS, MAX_RAW_DEPTH, MAX_TOKENS
from tests.conftest import backends, fresh_database
from tests.test_server_e2e import cli, free_port, serve


@dataclass
class Service:
    """A running service and keys for it."""

    url: str
    admin: httpx.Client
    acme: str
    other: str
    home: Path

    def ingest(self, key: str, body: bytes, **headers: str) -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/events",
            content=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            | headers,
            timeout=60,
        )


@pytest.fixture(scope="module", params=backends())
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    folder = tmp_path_factory.mktemp(f"hostile-{request.param}")
    env = {"LLMLEDGER_HOME": str(folder / "home")}
    with fresh_database(request.param, folder) as db_url:
        admin = json.loads(cli(db_url, "keys", "create", "--role", "admin", "--json", env=env))
        with serve(db_url, free_port(), env) as url:
            client = httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {admin['secret']}"}, timeout=60
            )
            acme = client.post("/v1/keys", json={"role": "ingest", "tenant": "acme"}).json()
            other = client.post("/v1/keys", json={"role": "ingest", "tenant": "other"}).json()
            yield Service(url, client, acme["secret"], other["secret"], folder / "home")
            client.close()


def _recent() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))


def event(run: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": new_id(),
        "ts": _recent(),
        "provider": "openai",
        "model": "gpt-4o",
        "usage": {"input_tokens": 100, "output_tokens": 10},
        "duration_ms": 120.5,
        "tags": {"run": run},
    }
    return base | fields


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def body(events: list[dict[str, Any]]) -> bytes:
    # allow_nan: NaN and Infinity go out as the literals a careless client sends.
    return json.dumps({"events": events}, allow_nan=True).encode()


def assert_error_shape(response: httpx.Response) -> dict[str, Any]:
    data: dict[str, Any] = response.json()
    assert data["ok"] is False and data["status"] == response.status_code
    assert isinstance(data["error"], str) and isinstance(data["message"], str)
    assert response.headers.get("connection", "").lower() != "close"
    return data


def strict_json(response: httpx.Response) -> Any:
    """The body, refusing NaN and Infinity, which standard JSON has not."""

    def refuse(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name} in {response.url}")

    return json.loads(response.text, parse_constant=refuse)


# Each bad event, what it holds and a part of the reason it is refused with.
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("NUL in user", {"user": "a\x00b"}, "user: must not contain NUL"),
    ("NUL in feature", {"feature": "chat\x00"}, "feature: must not contain NUL"),
    ("NUL in session", {"session": "\x00"}, "session: must not contain NUL"),
    ("NUL in model", {"model": "gpt-4o\x00"}, "model: must not contain NUL"),
    ("NUL in provider", {"provider": "\x00openai"}, "provider: must not contain NUL"),
    ("NUL in response_model", {"response_model": "x\x00"}, "response_model: must not"),
    ("NUL in a tag key", {"tags": {"k\x00": "v"}}, "tags.k\\u0000.[key]: must not contain NUL"),
    ("NUL in a tag value", {"tags": {"k": "v\x00"}}, "tags.k: must not contain NUL"),
    (
        "NUL in error_message",
        {"status": "error", "error_message": "boom\x00"},
        "error_message: must not contain NUL",
    ),
    ("NUL in error_type", {"status": "error", "error_type": "\x00"}, "error_type: must not"),
    ("NUL in a warning", {"warnings": ["w\x00"]}, "warnings.0: must not contain NUL"),
    ("NUL in the prompt", {"content": {"prompt": "hi\x00"}}, "content.prompt: must not"),
    ("NUL in the response", {"content": {"response": "\x00"}}, "content.response: must not"),
    ("NUL in a usage_raw string", {"usage_raw": {"note": "a\x00"}}, "usage_raw: must not"),
    ("NUL in a usage_raw key", {"usage_raw": {"a\x00": 1}}, "usage_raw: must not"),
    ("a lone surrogate", {"user": "caf\ud800"}, "user: "),
    ("NaN in usage_raw", {"usage_raw": {"cost": float("nan")}}, "usage_raw: holds a number"),
    ("Infinity in usage_raw", {"usage_raw": [1, [float("inf")]]}, "usage_raw: holds a number"),
    ("-Infinity in usage_raw", {"usage_raw": {"x": float("-inf")}}, "usage_raw: holds a number"),
    ("a huge usage_raw integer", {"usage_raw": {"n": 2**70}}, "usage_raw: holds an integer"),
    ("usage_raw too deep", {"usage_raw": nested(MAX_RAW_DEPTH + 1)}, "usage_raw: is nested"),
    ("NaN duration", {"duration_ms": float("nan")}, "duration_ms:"),
    ("infinite ttft", {"ttft_ms": float("inf")}, "ttft_ms:"),
    ("a huge duration", {"duration_ms": 1.7e308}, "duration_ms: Input should be less"),
    ("a huge ttft", {"ttft_ms": MAX_MILLIS + 1}, "ttft_ms: Input should be less"),
    ("a huge count", {"usage": {"input_tokens": MAX_TOKENS + 1}}, "usage.input_tokens:"),
    ("a huge cost", {"cost": "9999999"}, "cost: 9999999 USD is more than one call"),
    (
        "a huge cost part",
        {"cost": "1", "cost_breakdown": {"input": "2000000"}},
        "cost_breakdown.input: 2000000 USD",
    ),
    ("a time past year 9999 in UTC", {"ts": "9999-12-31T23:59:59-12:00"}, "out of range"),
]

# Values at the very limits, which are stored.
AT_LIMITS: list[dict[str, Any]] = [
    {"duration_ms": MAX_MILLIS, "ttft_ms": MAX_MILLIS},
    {"usage": {"input_tokens": MAX_TOKENS, "output_tokens": MAX_TOKENS}},
    {"cost": str(MAX_COST), "cost_breakdown": {"input": str(MAX_COST)}},
    {"usage_raw": {"deep": nested(MAX_RAW_DEPTH - 1), "n": 2**63 - 1, "x": 1.5e300}},
    {"user": "café ☕ \u2028", "session": "🦜 \u00a0", "content": {"prompt": "tab\there"}},
]


def test_one_bad_event_is_refused_with_its_reason_and_the_rest_of_its_batch_stored(
    service: Service,
) -> None:
    run = uuid.uuid4().hex
    good = [event(run) for _ in range(3)] + [event(run, **fields) for fields in AT_LIMITS]
    bad = [event(run, **fields) for _, fields, _ in BAD]
    batch = [good[0], *bad[:10], good[1], *bad[10:], *good[2:]]
    answer = service.ingest(service.acme, body(batch))
    assert answer.status_code == 200, answer.text
    results = {item["id"]: item for item in batch}
    answers = answer.json()["results"]
    assert len(answers) == len(batch)
    for sent, got in zip(batch, answers, strict=True):
        if sent in good:
            assert got == {"id": sent["id"], "status": "accepted", "reason": None}
        else:
            assert got["status"] == "rejected", (sent, got)
    for (case, _, reason), sent in zip(BAD, bad, strict=True):
        got = answers[batch.index(sent)]
        assert reason in got["reason"], (case, got["reason"])
    listed = service.admin.get("/v1/events", params={"where": f"tag:run={run}", "limit": 100})
    assert listed.status_code == 200
    assert {e["id"] for e in strict_json(listed)["events"]} == {e["id"] for e in good}
    assert set(results) >= {e["id"] for e in good}
    # Every read that includes the stored events still answers.
    report = service.admin.get(
        "/v1/report",
        params={
            "where": f"tag:run={run}",
            "by": "user",
            "metrics": "calls,cost,latency_mean,latency_p99,ttft_p50,total_tokens",
        },
    )
    assert report.status_code == 200, report.text
    assert strict_json(report)["total"]["calls"] == len(good)
    stats = service.admin.get("/v1/stats")
    assert stats.status_code == 200 and strict_json(stats)["total_requests"] >= len(good)
    for sent in good:
        one = service.admin.get(f"/v1/events/{sent['id']}")
        assert one.status_code == 200 and strict_json(one)["id"] == sent["id"]


@pytest.mark.parametrize(("case", "fields", "reason"), BAD[:3] + BAD[15:18] + BAD[-1:])
def test_a_single_bad_event_is_a_422_in_the_one_shape(
    service: Service, case: str, fields: dict[str, Any], reason: str
) -> None:
    answer = service.ingest(service.acme, json.dumps(event("single", **fields)).encode())
    assert answer.status_code == 422, case
    data = assert_error_shape(answer)
    assert data["error"] == "invalid_event" and reason in data["message"]


def test_deep_nesting_and_malformed_gzip_are_refused_whole(service: Service) -> None:
    run = uuid.uuid4().hex
    plain = body([event(run)])
    deep = b'{"events": [' + b"[" * 1000 + b"]" * 1000 + b"]}"
    answer = service.ingest(service.acme, deep)
    assert answer.status_code == 422
    assert "nested too deeply" in assert_error_shape(answer)["message"]
    two_members = gzip.compress(plain) + gzip.compress(body([event(run)]))
    answer = service.ingest(service.acme, two_members, **{"Content-Encoding": "gzip"})
    assert answer.status_code == 400
    assert "one gzip member" in assert_error_shape(answer)["message"]
    truncated = gzip.compress(plain)[:-8]
    answer = service.ingest(service.acme, truncated, **{"Content-Encoding": "gzip"})
    assert answer.status_code == 400
    assert "truncated" in assert_error_shape(answer)["message"]
    listed = service.admin.get("/v1/events", params={"where": f"tag:run={run}"}).json()
    assert listed["events"] == []
    answer = service.ingest(service.acme, gzip.compress(plain), **{"Content-Encoding": "gzip"})
    assert answer.status_code == 200 and answer.json()["results"][0]["status"] == "accepted"


def test_costs_the_service_computes_are_held_to_the_per_call_limit(service: Service) -> None:
    model = f"absurd-{uuid.uuid4().hex[:8]}"
    price = {"provider": "acme", "model": model, "from": "2000-01-01", "input": "1000000000000"}
    added = service.admin.post("/v1/prices", json=price)
    assert added.status_code == 201, added.text
    run = uuid.uuid4().hex
    big = event(run, provider="acme", model=model, usage={"input_tokens": MAX_TOKENS})
    small = event(run, provider="acme", model=model, usage={"input_tokens": 1})
    answer = service.ingest(service.acme, body([big, small]))
    assert [r["status"] for r in answer.json()["results"]] == ["accepted", "accepted"]
    stored = service.admin.get(f"/v1/events/{big['id']}").json()
    assert stored["cost"] is None
    assert "more than one call can cost" in stored["unpriced_reason"]
    assert service.admin.get(f"/v1/events/{small['id']}").json()["cost"] == "1000000.000000000"
    report = service.admin.get("/v1/report", params={"where": f"tag:run={run}"})
    assert report.status_code == 200
    assert report.json()["total"]["unpriced_calls"] == 1


IMPOSSIBLE_QUERIES = [
    "/v1/report?last=3000000d",
    "/v1/report?last=99999999999999d",
    "/v1/report?period=9999-12",
    "/v1/report?period=0000-01",
    "/v1/report?since=0001-01-01&every=day&tz=America/New_York",
    "/v1/report?by=tag:%00",
    "/v1/report?since=9999-12-31T23:59:59-12:00",
    "/v1/report?until=0001-01-01T00:00:00%2B12:00&every=hour",
    "/v1/report?where=model%3Dgpt%00",
    "/v1/report?where=tag:%00%3Dx",
    "/v1/report?currency=a%00",
    "/v1/events?last=3000000d",
    "/v1/events?period=9999-12",
    "/v1/events?since=0001-01-01&tz=America/New_York",
    "/v1/events?where=user%3D%00",
    "/v1/events/%00",
    "/v1/events/%00/content",
    "/v1/prices?model=a%00",
    "/v1/exchange-rates?currency=a%00",
]


@pytest.mark.parametrize("path", IMPOSSIBLE_QUERIES)
def test_every_impossible_query_input_is_a_4xx_in_the_one_shape(
    service: Service, path: str
) -> None:
    answer = service.admin.get(path)
    assert 400 <= answer.status_code < 500, (path, answer.status_code, answer.text)
    assert_error_shape(answer)
    # The connection stays usable: the next request on it is answered.
    assert service.admin.get("/v1/stats").status_code == 200


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/v1/report/batch", {"queries": [{"where": ["model=gpt\x00"]}]}),
        ("/v1/report/batch", {"queries": [{"by": ["tag:\x00"]}]}),
        ("/v1/report/batch", {"queries": [{"period": "9999-12"}]}),
        ("/v1/report/batch", {"queries": [{"last": "3000000d"}]}),
        ("/v1/prices", {"provider": "acme\x00", "model": "m", "input": "1"}),
        ("/v1/exchange-rates", {"currency": "BR\x00", "rate": "5"}),
        ("/v1/keys", {"role": "reader", "tenant": "acme\x00"}),
    ],
)
def test_impossible_bodies_are_4xx_in_the_one_shape(
    service: Service, path: str, payload: dict[str, Any]
) -> None:
    answer = service.admin.post(path, json=payload)
    assert 400 <= answer.status_code < 500, (path, answer.status_code, answer.text)
    assert_error_shape(answer)


def test_ingest_answers_do_not_tell_whether_another_tenants_id_exists(service: Service) -> None:
    run = uuid.uuid4().hex
    acme_event = event(run)
    first = service.ingest(service.acme, body([acme_event])).json()["results"][0]
    assert first["status"] == "accepted"
    again = service.ingest(service.acme, body([acme_event])).json()["results"][0]
    assert again["status"] == "duplicate"
    # Another tenant sending that id hears what it hears for a new id.
    fresh = event(run)
    answers = service.ingest(service.other, body([acme_event, fresh])).json()["results"]
    assert answers == [
        {"id": acme_event["id"], "status": "accepted", "reason": None},
        {"id": fresh["id"], "status": "accepted", "reason": None},
    ]
    stored = service.admin.get(f"/v1/events/{acme_event['id']}").json()
    assert stored["tenant"] == "acme"
    assert service.ingest(service.other, body([fresh])).json()["results"][0]["status"] == (
        "duplicate"
    )


def test_the_remote_sink_goes_on_past_events_the_service_refuses(
    service: Service, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    run = uuid.uuid4().hex

    def made(**fields: Any) -> UsageEvent:
        ts = datetime.now(UTC) - timedelta(minutes=1)
        return UsageEvent(provider="openai", model="gpt-4o", ts=ts, tags={"run": run}, **fields)

    first = [made(), made(user="bad\x00user"), made()]
    second = [made(), made(usage_raw={"cost": float("nan")})]
    third = [made()]
    # The service is down: every event waits in the journal.
    down = RemoteSink(
        f"http://127.0.0.1:{free_port()}", service.acme, spool_dir=spool, retries=0, timeout=2.0
    )
    writer = Writer(down, journal=Journal(spool / "journal"), strict=False, flush_interval=0.05)
    for batch in (first, second, third):
        for event in batch:
            writer.submit(event)
    assert not writer.close(timeout=0.5)
    down.close()
    sink = RemoteSink(service.url, service.acme, spool_dir=spool, retries=0)
    replaying = Writer(sink, journal=Journal(spool / "journal"), strict=False)
    assert replaying.flush(timeout=30) is False  # two events were refused: it says so
    assert replaying.written == 4 and sink.stats.rejected == 2
    replaying.close()
    direct = [made(), made(feature="\x00"), made()]
    assert sink.write(direct).count == 2
    sink.close()
    listed = service.admin.get("/v1/events", params={"where": f"tag:run={run}"}).json()
    expected = {e.id for e in (*first, *second, *third, *direct)} - {
        first[1].id,
        second[1].id,
        direct[1].id,
    }
    assert {e["id"] for e in listed["events"]} == expected
