"""Reprice on SQLite and PostgreSQL: a dry run changes nothing; a real run prices every
event at the price in force at its time, keeps rollups equal to the raw events, is
idempotent, and resumes after a failed batch or a SIGKILL with the result of one run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from llmledger.core.events import UsageEvent
from llmledger.core.settings import load_settings
from llmledger.core.usage import Usage
from llmledger.pricing import PriceResolver
from llmledger.query import Filter, Query, plan
from llmledger.runtime.reprice import reprice, reprice_key, repriced
from llmledger.server import create_app
from llmledger.store import SqlStore, open_store

LLMLEDGER = str(Path(sys.executable).with_name("llmledger"))
JUNE = datetime(2025, 6, 1, tzinfo=UTC)

# The price list the events were first priced with: acme-chat-1 at $1 / $4 per million
# input / output tokens; acme-chat-2 not priced at all.
OLD_PRICES = """\
prices:
  - provider: acme
    model: acme-chat-1
    from: 2025-01-01
    input: 1.00
    output: 4.00
"""
# The corrected list: acme-chat-1 was $2 / $8 until 2025-06-15 and $0.50 / $2 from then
# on; acme-chat-2 is $3 / $3.
NEW_PRICES = """\
prices:
  - provider: acme
    model: acme-chat-1
    from: 2025-01-01
    input: 2.00
    output: 8.00
  - provider: acme
    model: acme-chat-1
    from: 2025-06-15
    input: 0.50
    output: 2.00
  - provider: acme
    model: acme-chat-2
    from: 2025-01-01
    input: 3.00
    output: 3.00
"""


def _price_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _events(count: int) -> list[UsageEvent]:
    """Calls over June 2025 on three models, four tenants, a manual cost among them."""
    out = []
    models = ("acme-chat-1", "acme-chat-2", "acme-chat-1", "gpt-4o")
    for i in range(count):
        model = models[i % len(models)]
        out.append(
            UsageEvent(
                id=f"ev{i:06d}",
                provider="openai" if model == "gpt-4o" else "acme",
                model=model,
                ts=JUNE + timedelta(minutes=97 * i),
                tenant=f"t{i % 4}",
                user=f"u{i % 7}",
                usage=Usage(input_tokens=1000 + i, output_tokens=100 + i % 50),
                duration_ms=100.0 + i,
                cost=Decimal("0.5") if i % 23 == 0 else None,
                cost_source="manual" if i % 23 == 0 else None,
                tags={"team": f"x{i % 3}"} if i % 2 else {},
            )
        )
    return out


def _ledger(db_url: str, tmp_path: Path, count: int) -> tuple[SqlStore, PriceResolver]:
    """A ledger whose events were priced with the old list, and the new price source."""
    old = PriceResolver(user_prices=[_price_file(tmp_path, "old.yaml", OLD_PRICES)])
    store = open_store(db_url)
    assert store.write([old.priced(e) for e in _events(count)]).count == count
    new = PriceResolver(user_prices=[_price_file(tmp_path, "new.yaml", NEW_PRICES)])
    return store, new


def _stored(store: SqlStore) -> list[UsageEvent]:
    return sorted(store.events(), key=lambda e: e.id)


def _rollup_tables(store: SqlStore) -> list[Any]:
    with store.engine.connect() as conn:
        return [
            conn.execute(sa.text(f"SELECT * FROM {name} ORDER BY 1, 2, 3")).all()
            for name in ("rollups_hourly", "rollups_daily")
        ]


def _assert_rollups_match_events(store: SqlStore) -> None:
    metrics = ("calls", "cost", "unpriced_calls", "incomplete_calls", "input_tokens")
    for by in ((), ("model",), ("tenant", "model"), ("provider", "user")):
        for every in (None, "day", "hour"):
            query = Query(
                by=by, every=every, metrics=metrics, since=JUNE, until=JUNE + timedelta(days=60)
            )
            rolled = store.report(query, mode="rollups").to_dict()
            raw = store.report(query, mode="events").to_dict()
            assert rolled["rows"] == raw["rows"], (by, every)
            assert rolled["total"] == raw["total"], (by, every)
    # The tag rows carry each call's cost too: a tag's spend read from them alone is the same.
    teams = Query(
        by=("tag:team",),
        every="day",
        where=(Filter("tag:team", ("x0", "x2")),),
        metrics=("calls", "cost", "unpriced_calls"),
    )
    assert [p.tag_rows for p in plan(teams, None)] == ["team"]
    assert store.report(teams).to_dict() == store.report(teams, mode="events").to_dict()


def _assert_priced_as_new(store: SqlStore, new: PriceResolver) -> None:
    for event in _stored(store):
        assert repriced(new, event) == event, event.id


def test_dry_run_shows_the_difference_per_model_and_changes_nothing(
    db_url: str, tmp_path: Path
) -> None:
    store, new = _ledger(db_url, tmp_path, 8)
    events, rollups = _stored(store), _rollup_tables(store)
    summary = reprice(store, new, Query(), now=datetime.now(UTC), dry_run=True, batch_size=3)
    assert _stored(store) == events
    assert _rollup_tables(store) == rollups
    assert store.reprice_job(reprice_key(Query())) is None
    rows = {(r.provider, r.model): r for r in summary.rows}
    # ev000 (manual $0.50, kept) and ev002, ev004, ev006 on acme-chat-1, all before June 15:
    # old  (1000+i)·$1/M + (100+i)·$4/M,  new the same at $2 / $8, i.e. exactly twice.
    # ev002: 1002·1e-6 + 102·4e-6 = 0.001410; ev004: 0.001420; ev006: 0.001430.
    one = rows["acme", "acme-chat-1"]
    assert (one.calls, one.changed) == (4, 3)
    assert one.before == Decimal("0.004260")
    assert one.after == Decimal("0.008520")
    assert one.difference == Decimal("0.004260")
    # ev001, ev005 on acme-chat-2 were unpriced; at $3 / $3:
    # (1001 + 101)·3e-6 = 0.003306 and (1005 + 105)·3e-6 = 0.003330.
    two = rows["acme", "acme-chat-2"]
    assert (two.changed, two.newly_priced, two.unpriced) == (2, 2, 0)
    assert (two.before, two.after) == (Decimal(0), Decimal("0.006636"))
    # gpt-4o is priced from the catalog, which did not change.
    assert rows["openai", "gpt-4o"].changed == 0
    store.close()


def test_a_run_prices_every_event_at_its_time_keeps_rollups_exact_and_is_idempotent(
    db_url: str, tmp_path: Path
) -> None:
    store, new = _ledger(db_url, tmp_path, 500)
    dry = reprice(store, new, Query(), now=datetime.now(UTC), dry_run=True)
    done = reprice(store, new, Query(), now=datetime.now(UTC), dry_run=False, batch_size=37)
    assert done.finished and not done.resumed
    assert done.to_dict()["rows"] == dry.to_dict()["rows"]
    assert done.total.changed > 0 and done.total.newly_priced > 0
    _assert_priced_as_new(store, new)
    _assert_rollups_match_events(store)
    # Calls from June 15 on use the later row: ev222 is on acme-chat-1 at 2025-06-15 22:54
    # (97 min · 222 after June 1), 1222 input and 122 output tokens:
    # 1222·0.5e-6 + 122·2e-6 = 0.000611 + 0.000244 = 0.000855.
    late = store.get("ev000222")
    assert late is not None and late.ts == datetime(2025, 6, 15, 22, 54, tzinfo=UTC)
    assert late.cost == Decimal("0.000855") and late.model == "acme-chat-1"
    # The manual cost stays.
    manual = store.get("ev000000")
    assert manual is not None and manual.cost == Decimal("0.5")

    before = _stored(store), _rollup_tables(store)
    again = reprice(store, new, Query(), now=datetime.now(UTC), dry_run=False)
    assert again.total.changed == 0
    assert (_stored(store), _rollup_tables(store)) == before
    store.close()


def test_a_filtered_run_touches_only_its_events(db_url: str, tmp_path: Path) -> None:
    store, new = _ledger(db_url, tmp_path, 60)
    query = Query(where=(Filter("tenant", ("t1",)),), since=JUNE + timedelta(days=1))
    done = reprice(store, new, query, now=datetime.now(UTC), dry_run=False, batch_size=4)
    for event in _stored(store):
        inside = event.tenant == "t1" and event.ts >= JUNE + timedelta(days=1)
        assert (repriced(new, event) == event) or not inside, event.id
    assert done.total.calls == sum(
        1 for e in _events(60) if e.tenant == "t1" and e.ts >= JUNE + timedelta(days=1)
    )
    _assert_rollups_match_events(store)
    store.close()


def test_a_failed_batch_keeps_nothing_of_it_and_the_run_resumes_to_the_same_result(
    db_url: str, tmp_path: Path
) -> None:
    store, new = _ledger(db_url, tmp_path, 120)
    dry = reprice(store, new, Query(), now=datetime.now(UTC), dry_run=True)
    key, now = reprice_key(Query()), datetime.now(UTC)
    store.start_reprice(key, "all events", now=now)
    from llmledger.runtime.reprice import _step

    step = _step(new)
    for _ in range(2):
        store.reprice_batch(key, Query(), step, limit=25, now=now)
    half = _stored(store), _rollup_tables(store)

    def failing(page: Any, state: str | None) -> Any:
        _repriced_page, _new_state = step(page, state)
        raise RuntimeError("the pricing of this batch failed")

    with pytest.raises(RuntimeError):
        store.reprice_batch(key, Query(), failing, limit=25, now=now)
    job = store.reprice_job(key)
    assert job is not None and job.batches == 2 and job.finished is None
    assert (_stored(store), _rollup_tables(store)) == half

    done = reprice(store, new, Query(), now=datetime.now(UTC), dry_run=False, batch_size=25)
    assert done.resumed and done.finished
    assert done.to_dict()["rows"] == dry.to_dict()["rows"]
    _assert_priced_as_new(store, new)
    _assert_rollups_match_events(store)
    store.close()


def test_a_reprice_killed_mid_run_resumes_to_the_result_of_one_run(
    db_url: str, tmp_path: Path
) -> None:
    store, new = _ledger(db_url, tmp_path, 1500)
    dry = reprice(store, new, Query(), now=datetime.now(UTC), dry_run=True)
    store.close()
    env = {**os.environ, "LLMLEDGER_PRICE_FILES": str(tmp_path / "new.yaml")}
    process = subprocess.Popen(
        [LLMLEDGER, "--database-url", db_url, "reprice", "--batch-size", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    key = reprice_key(Query())
    watcher = open_store(db_url)
    try:
        deadline = time.monotonic() + 120
        while True:
            job = watcher.reprice_job(key)
            if job is not None and job.batches >= 5:
                break
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the reprice did not start"
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:  # pragma: no cover - only when an assertion failed
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
    job = watcher.reprice_job(key)
    assert job is not None and job.finished is None and 5 <= job.batches < 1500
    # What the killed run committed is consistent: rollups equal the raw events.
    _assert_rollups_match_events(watcher)

    done = reprice(watcher, new, Query(), now=datetime.now(UTC), dry_run=False, batch_size=50)
    assert done.resumed and done.finished
    assert done.to_dict()["rows"] == dry.to_dict()["rows"]
    _assert_priced_as_new(watcher, new)
    _assert_rollups_match_events(watcher)
    watcher.close()


def test_the_cli_shows_a_dry_run_and_applies_a_real_one(db_url: str, tmp_path: Path) -> None:
    store, new = _ledger(db_url, tmp_path, 12)
    store.close()
    env = {**os.environ, "LLMLEDGER_PRICE_FILES": str(tmp_path / "new.yaml")}

    def run(*args: str) -> str:
        done = subprocess.run(
            [LLMLEDGER, "--database-url", db_url, "reprice", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout

    shown = run("--dry-run", "--where", "model=acme-chat-2")
    assert "Dry run: nothing changed." in shown and "acme-chat-2" in shown
    assert "acme-chat-1" not in shown
    with open_store(db_url) as check:
        assert all(e.cost is None for e in check.events(model="acme-chat-2"))
    applied = run("--json")
    assert '"dry_run": false' in applied
    with open_store(db_url) as check:
        _assert_priced_as_new(check, new)
        _assert_rollups_match_events(check)


def test_the_service_route_is_for_admins_dry_by_default_and_filtered(
    db_url: str, tmp_path: Path
) -> None:
    store, new = _ledger(db_url, tmp_path, 40)
    events = _stored(store)
    store.close()
    settings = load_settings(database_url=db_url, price_files=[str(tmp_path / "new.yaml")])
    app = create_app(settings)
    service = app.state.service
    now = datetime.now(UTC)
    admin = service.keys.create("admin", now=now).secret
    reader = service.keys.create("reader", tenant="t2", now=now).secret
    ingest = service.keys.create("ingest", tenant="t2", now=now).secret
    with TestClient(app) as client:

        def post(token: str, body: dict[str, Any]) -> Any:
            return client.post(
                "/v1/admin/reprice", json=body, headers={"Authorization": f"Bearer {token}"}
            )

        assert post(reader, {}).status_code == 403
        assert post(ingest, {"dry_run": False}).status_code == 403
        assert post(admin, {"dry_run": "maybe"}).status_code == 422
        dry = post(admin, {})
        assert dry.status_code == 200, dry.text
        assert dry.json()["dry_run"] is True and dry.json()["total"]["changed"] > 0
        with open_store(db_url) as check:
            assert _stored(check) == events

        scoped = post(admin, {"dry_run": False, "batch_size": 3, "where": ["tenant=t2"]})
        assert scoped.status_code == 200, scoped.text
        assert scoped.json()["total"]["calls"] == sum(1 for e in events if e.tenant == "t2")
        with open_store(db_url) as check:
            for event in _stored(check):
                if event.tenant != "t2":
                    assert event == next(e for e in events if e.id == event.id)
            _assert_rollups_match_events(check)

        # A run cut at its time limit (one batch each time) goes on when sent again.
        answers: list[dict[str, Any]] = []
        while not answers or not answers[-1]["finished"]:
            cut = post(admin, {"dry_run": False, "batch_size": 7, "max_seconds": 1e-6})
            assert cut.status_code == 200, cut.text
            answers.append(cut.json())
        assert len(answers) == -(-(len(events) + 1) // 7)  # one batch per request
        assert answers[-1]["batches"] == len(answers) and answers[-1]["resumed"]
        dry_parts = []
        cursor = None
        while True:
            part = post(admin, {"batch_size": 9, "max_seconds": 1e-6, "cursor": cursor}).json()
            dry_parts.append(part)
            if part["finished"]:
                break
            cursor = part["cursor"]
        assert sum(p["total"]["calls"] for p in dry_parts) == len(events)
        assert post(admin, {"cursor": "nonsense"}).status_code == 400

        every = post(admin, {"dry_run": False, "restart": True})
        assert every.status_code == 200, every.text
        with open_store(db_url) as check:
            _assert_priced_as_new(check, new)
            _assert_rollups_match_events(check)


def test_a_fee_the_stored_event_cannot_count_again_keeps_its_cost() -> None:
    # An OpenAI Responses call with one web search: the count was in the response's
    # output items, not in its usage object, so it is not stored with the event.
    resolver = PriceResolver()
    at = datetime(2025, 9, 1, tzinfo=UTC)
    call = UsageEvent(
        provider="openai",
        model="gpt-4o",
        ts=at,
        operation="responses",
        usage=Usage(input_tokens=1000, output_tokens=100),
        usage_raw={"input_tokens": 1000, "output_tokens": 100},
        fee_counts={"web_searches": 1},
    )
    stored = resolver.priced(call).replace(fee_counts={})
    assert stored.cost_breakdown is not None and "web_searches" in stored.cost_breakdown
    assert repriced(resolver, stored) is stored
    # The same call without a search is priced again as usual.
    plain = resolver.priced(call.replace(fee_counts={})).replace(cost=Decimal("1"))
    assert repriced(resolver, plain).cost == resolver.priced(call.replace(fee_counts={})).cost
    with open_store("sqlite://") as store:
        store.write([stored, plain.replace(id="other")])
        summary = reprice(store, resolver, Query(), now=datetime.now(UTC))
    assert (summary.total.calls, summary.total.kept, summary.total.changed) == (2, 1, 1)
