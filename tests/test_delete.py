"""Deleting events by filter: tombstones keep them deleted, rollups stay equal to the raw events
(SQLite and PostgreSQL), the CLI with its dry run and confirmation, the admin HTTP route on a
real ``llmledger serve``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from click.testing import CliRunner

from llmledger.cli import main
from llmledger.core.events import UsageEvent
from llmledger.query import Query, build_query
from llmledger.query.periods import DAY_US, HOUR_US
from llmledger.query.plan import DAILY_GRAINS, GRAINS
from llmledger.store import ContentRecord, SqlStore, open_store
from llmledger.wire.serialize import event_to_json
from tests.test_query_engine import T0, _expected_level_rows, _level_rows, make_events
from tests.test_server_e2e import cli, free_port, serve

LEVELS = [(HOUR_US, grain) for grain in GRAINS] + [(DAY_US, grain) for grain in DAILY_GRAINS]
NOW = T0 + timedelta(days=30)


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    opened = open_store(db_url)
    yield opened
    opened.close()


def assert_rollups_equal_raw(store: SqlStore) -> None:
    remaining = list(store.events())
    for period_us, grain in LEVELS:
        assert _level_rows(store, period_us, grain) == _expected_level_rows(
            remaining, period_us, grain
        ), (period_us, grain)
    query = Query(by=("tenant", "feature", "model"), metrics=("calls", "input_tokens", "cost"))
    assert (
        store.report(query, mode="rollups").to_dict()["rows"]
        == (store.report(query, mode="events").to_dict()["rows"])
    )


def test_a_delete_leaves_rollups_equal_to_the_raw_events_and_tombstones(store: SqlStore) -> None:
    written = make_events(300, seed=11, span=timedelta(days=3))
    store.write(written)
    store.save_content([ContentRecord(e.id, e.ts, "prompt", "answer") for e in written[:50]])
    query = build_query(
        now=NOW,
        where=["tenant=acme", "tag:podcast_id!=rec1"],
        since=(T0 + timedelta(hours=5, minutes=30)).isoformat(),
        until=(T0 + timedelta(days=2, hours=1)).isoformat(),
    )
    gone = {
        e.id
        for e in written
        if e.tenant == "acme"
        and e.tags.get("podcast_id") != "rec1"
        and query.since is not None
        and query.until is not None
        and query.since <= e.ts < query.until
    }
    assert 10 < len(gone) < 150

    preview = store.delete_events(query, now=NOW, dry_run=True)
    assert (preview.count, preview.dry_run) == (len(gone), True)
    assert store.count() == 300

    result = store.delete_events(query, now=NOW)
    assert result.count == len(gone) and result.cost == preview.cost
    assert store.count() == 300 - len(gone)
    assert not any(store.get(event_id) for event_id in gone)
    assert all(store.get_content(e.id) is None for e in written[:50] if e.id in gone)
    assert sum(store.get_content(e.id) is not None for e in written[:50]) == sum(
        e.id not in gone for e in written[:50]
    )
    # the tag rows went with their events
    by_tag = Query(by=("tag:podcast_id",), metrics=("calls",))
    tagged = sum(row["calls"] for row in store.report(by_tag).to_dict()["rows"])
    assert tagged == 300 - len(gone)
    assert_rollups_equal_raw(store)

    # a replay of everything brings nothing back: the deleted ids are tombstoned
    replay = store.write(written)
    assert replay.count == 0 and len(replay.duplicates) == 300
    assert store.count() == 300 - len(gone)
    assert_rollups_equal_raw(store)
    # new events are still written, in the same batch as tombstoned ones
    fresh = [replace(e, tenant="initech") for e in make_events(5, seed=12)]
    mixed = store.write([*fresh, written[0], *(e for e in written if e.id in gone)])
    assert [e.id for e in mixed.inserted] == [e.id for e in fresh]
    assert_rollups_equal_raw(store)

    # a second delete of the same filter finds nothing
    assert store.delete_events(query, now=NOW).count == 0


def _seed(db_url: str) -> list[UsageEvent]:
    now = datetime.now(UTC)
    events = [
        UsageEvent(
            provider="openai",
            model="gpt-4o",
            ts=now - timedelta(hours=i),
            tenant="acme" if i % 2 else "globex",
            tags={"environment": "test" if i % 3 == 0 else "prod"},
            cost=None,
        )
        for i in range(12)
    ]
    store = open_store(db_url)
    store.write(events)
    store.close()
    return events


def test_the_cli_deletes_with_a_dry_run_and_a_confirmation(db_url: str) -> None:
    events = _seed(db_url)
    test_ids = {e.id for i, e in enumerate(events) if i % 3 == 0}
    runner = CliRunner()
    base = ["--database-url", db_url, "delete", "--where", "tag:environment=test"]

    dry = runner.invoke(main, [*base, "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["count"] == 4 and json.loads(dry.stdout)["dry_run"] is True

    refused = runner.invoke(main, base, input="n\n")
    assert refused.exit_code == 1 and "delete 4 events" in refused.output
    store = open_store(db_url)
    assert store.count() == 12

    done = runner.invoke(main, base, input="y\n")
    assert done.exit_code == 0, done.output
    assert "deleted 4 events" in done.output
    assert store.count() == 8 and not any(store.get(i) for i in test_ids)
    assert_rollups_equal_raw(store)
    store.close()

    nothing = runner.invoke(main, ["--database-url", db_url, "delete"])
    assert nothing.exit_code == 2 and "give a range or a filter" in nothing.output


def test_the_admin_route_deletes_in_its_scope_and_replays_stay_deleted(db_url: str) -> None:
    events = _seed(db_url)
    admin = json.loads(cli(db_url, "keys", "create", "--role", "admin", "--json"))["secret"]
    with serve(db_url, free_port()) as url:
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"})
        reader = client.post("/v1/keys", json={"role": "reader", "tenant": "acme"}).json()
        body = {"where": ["tag:environment=test"], "dry_run": True}

        refused = httpx.post(
            f"{url}/v1/events/delete",
            json=body,
            headers={"Authorization": f"Bearer {reader['secret']}"},
        )
        assert refused.status_code == 403 and refused.json()["ok"] is False
        empty = client.post("/v1/events/delete", json={"dry_run": True})
        assert empty.status_code == 400 and "range or a filter" in empty.json()["message"]

        assert client.post("/v1/events/delete", json=body).json()["count"] == 4
        acme = client.post(
            "/v1/events/delete", json={"where": ["tag:environment=test", "tenant=acme"]}
        )
        assert acme.status_code == 200, acme.text
        assert acme.json()["count"] == 2
        rest = client.post("/v1/events/delete", json={"where": ["tag:environment=test"]}).json()
        assert (rest["count"], rest["dry_run"]) == (2, False)

        # the remote sink replays the batch: deleted events are answered duplicate
        replay = client.post("/v1/events", json={"events": [event_to_json(e) for e in events]})
        assert [r["status"] for r in replay.json()["results"]] == ["duplicate"] * 12
        report = client.get("/v1/report", params={"metrics": "calls"}).json()
        assert report["total"]["calls"] == 8
        client.close()
    store = open_store(db_url)
    assert_rollups_equal_raw(store)
    store.close()


@pytest.mark.unmigrated
def test_the_tombstones_migration_runs_on_a_ledger_of_the_previous_schema(db_url: str) -> None:
    import sqlalchemy as sa

    from llmledger.store.migrator import downgrade_connection, upgrade_connection

    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            upgrade_connection(conn, "0010")
    finally:
        engine.dispose()
    with open_store(db_url) as store:  # migrates to the newest schema
        event = UsageEvent(provider="openai", model="gpt-4o", ts=T0, tenant="acme")
        store.write([event])
        assert store.delete_events(Query(), now=NOW).count == 1
        assert store.write([event]).duplicates == (event.id,)
        with store.engine.begin() as conn:
            downgrade_connection(conn, "0010")
            assert not sa.inspect(conn).has_table("tombstones")
            upgrade_connection(conn)
            assert sa.inspect(conn).has_table("tombstones")
