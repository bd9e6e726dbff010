"""Rollup rows per tenant, and sums past 64 bits kept exact, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from llmledger.core.events import UsageEvent
from llmledger.core.usage import Usage
from llmledger.query import Filter, Query, plan
from llmledger.query.plan import SourceMode
from llmledger.store import SqlStore, open_store
from llmledger.store.migrator import downgrade_connection
from llmledger.wire.parse import MAX_COST, MAX_TOKENS
from tests.test_query_engine import make_events

DAY = datetime(2025, 6, 2, tzinfo=UTC)
# Calls at the largest accepted cost that pass 2^63 nano-USD: one more than fits.
AT_LIMIT = 2**63 // (MAX_COST * 10**9) + 1


def _largest(tenant: str, index: int) -> UsageEvent:
    return UsageEvent(
        provider="openai",
        model="gpt-4o",
        tenant=tenant,
        usage=Usage(input_tokens=MAX_TOKENS, output_tokens=MAX_TOKENS),
        cost=Decimal(MAX_COST),
        ts=DAY + timedelta(seconds=8 * index),
    )


def _totals(store: SqlStore, mode: SourceMode, tenant: str | None = None) -> dict[str, Any]:
    where = () if tenant is None else (Filter("tenant", (tenant,)),)
    query = Query(where=where, metrics=("calls", "cost", "input_tokens"))
    return dict(store.report(query, mode=mode).total)


def test_sums_past_64_bits_stay_exact_and_other_tenants_keep_writing(db_url: str) -> None:
    with open_store(db_url) as store:
        events = [_largest("acme", i) for i in range(AT_LIMIT)]
        # One nano-dollar more: a float total could not hold it.
        events.append(_largest("acme", AT_LIMIT).replace(cost=Decimal("1e-9")))
        for start in range(0, len(events), 2000):
            assert store.write(events[start : start + 2000]).count == len(
                events[start : start + 2000]
            )
        cost = Decimal(MAX_COST * AT_LIMIT) + Decimal("1e-9")
        assert cost.scaleb(9) > 2**63
        expected = {
            "calls": AT_LIMIT + 1,
            "cost": cost,
            "input_tokens": (AT_LIMIT + 1) * MAX_TOKENS,
        }
        modes: tuple[SourceMode, ...] = ("auto", "rollups", "hourly", "events")
        for mode in modes:
            totals = _totals(store, mode)
            assert totals == expected, mode
            assert isinstance(totals["cost"], Decimal)

        # Another tenant's call on the same model and day is stored, in rows of its own.
        other = _largest("globex", 1).replace(id="other-tenant", cost=Decimal("0.5"))
        assert store.write([other]).count == 1
        for mode in modes:
            assert _totals(store, mode, "globex") == {
                "calls": 1,
                "cost": Decimal("0.5"),
                "input_tokens": MAX_TOKENS,
            }
            assert _totals(store, mode, "acme") == expected
        with store.engine.connect() as conn:
            tenants = conn.execute(
                sa.text("SELECT tenant, calls FROM rollups_daily WHERE grain = 1 ORDER BY tenant")
            ).all()
        assert [tuple(row) for row in tenants] == [("acme", AT_LIMIT + 1), ("globex", 1)]

        # Rebuilt from the events in SQL, the rollups hold the same exact sums.
        store.rebuild_rollups()
        assert _totals(store, "rollups", "acme") == expected


def test_token_and_cost_sums_of_a_long_history_pass_64_bits_exactly(db_url: str) -> None:
    # 2^63 tokens would take 9.2e8 calls at the per-event cap: the rollup rows of such a
    # history are set up directly (each wide sum's high column just under the total), and
    # then calls are written through the store as ever, adding to those rows.
    history_tokens = (2**63 // 10**9) * 10**9  # just under 2^63, a multiple of WIDE_BASE
    history_nanos = history_tokens
    with open_store(db_url) as store:
        first = _largest("acme", 0).replace(id="first", cost=Decimal("1"))
        assert store.write([first]).count == 1
        with store.engine.begin() as conn:
            for table in ("rollups_hourly", "rollups_daily"):
                conn.execute(
                    sa.text(
                        f"UPDATE {table} SET input_tokens_e9 = input_tokens_e9 + :high, "
                        "cost_nanos_e9 = cost_nanos_e9 + :high"
                    ),
                    {"high": history_tokens // 10**9},
                )
        later = [_largest("acme", i) for i in range(1, 4)]
        assert store.write(later).count == 3
        tokens = history_tokens + 4 * MAX_TOKENS
        nanos = history_nanos + (1 + 3 * MAX_COST) * 10**9
        assert tokens > 2**63 and nanos > 2**63
        modes: tuple[SourceMode, ...] = ("auto", "rollups", "hourly")
        for mode in modes:
            totals = _totals(store, mode)
            assert totals["input_tokens"] == tokens, mode
            assert totals["cost"] == Decimal(nanos).scaleb(-9), mode
            by_tenant = store.report(
                Query(by=("tenant", "model"), metrics=("input_tokens", "cost")), mode=mode
            ).rows
            assert [(r["tenant"], r["input_tokens"]) for r in by_tenant] == [("acme", tokens)]
        # Raw events hold what was written: their own sums stay exact and small.
        raw = _totals(store, "events")
        assert raw["input_tokens"] == 4 * MAX_TOKENS
        assert raw["cost"] == Decimal(1 + 3 * MAX_COST)


@pytest.mark.unmigrated
def test_migration_keys_every_grain_by_tenant_and_rebuilds_from_events(db_url: str) -> None:
    events = make_events(300, seed=11)
    with open_store(db_url) as before:
        before.write_hooks.clear()  # no rollups: the old ones are made below
        before.write(events)
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        # The events as a ledger at 0006 holds them (later columns dropped).
        downgrade_connection(conn, "0006")
        # A row the old grain 1 kept for every tenant at once; the rebuild replaces it.
        old = sa.Table("rollups_hourly", sa.MetaData(), autoload_with=conn)
        zeros = {c.name: 0 for c in old.c if not c.nullable}
        conn.execute(old.insert().values({**zeros, "grain": 1, "dims_key": "~", "calls": 999}))
    engine.dispose()
    with open_store(db_url) as store:
        with store.engine.connect() as conn:
            grain_1 = conn.execute(
                sa.text(
                    "SELECT count(*) FROM rollups_hourly WHERE grain = 1 AND tenant IS NOT NULL"
                )
            ).scalar_one()
        assert grain_1 > 0
        for by in (("model",), ("tenant", "model"), ("tenant",)):
            query = Query(by=by, metrics=("calls", "cost", "input_tokens", "latency_mean"))
            rolled = store.report(query, mode="rollups").to_dict()
            raw = store.report(query, mode="events").to_dict()
            assert rolled["rows"] == raw["rows"]
            assert rolled["total"]["calls"] == len(events)
        with store.engine.connect() as conn:
            snapshot = conn.execute(
                sa.text("SELECT * FROM rollups_daily ORDER BY grain, day_us, dims_key")
            ).all()
        store.rebuild_rollups()
        with store.engine.connect() as conn:
            rebuilt = conn.execute(
                sa.text("SELECT * FROM rollups_daily ORDER BY grain, day_us, dims_key")
            ).all()
        assert _rounded(rebuilt) == _rounded(snapshot)


def _rounded(rows: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Rows with their float sums rounded (sums in another order differ in the last bits)."""
    return [tuple(round(v, 6) if isinstance(v, float) else v for v in row) for row in rows]


@pytest.mark.unmigrated
def test_the_user_grain_and_tag_cost_migration_fills_both_from_the_ledger(db_url: str) -> None:
    events = make_events(300, seed=12)
    grain_4 = "SELECT * FROM {} WHERE grain = 4 ORDER BY 2, dims_key"
    with open_store(db_url) as store:
        store.write(events)
        with store.engine.connect() as conn:
            written = [
                _rounded(conn.execute(sa.text(grain_4.format(t))).all())
                for t in ("rollups_hourly", "rollups_daily")
            ]
    assert all(written)
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        downgrade_connection(conn, "0012")
        assert conn.execute(sa.text(grain_4.format("rollups_hourly"))).all() == []
    engine.dispose()
    with open_store(db_url) as store:  # migrates to the newest schema
        with store.engine.connect() as conn:
            migrated = [
                _rounded(conn.execute(sa.text(grain_4.format(t))).all())
                for t in ("rollups_hourly", "rollups_daily")
            ]
        assert migrated == written
        query = Query(by=("tenant", "user"), metrics=("calls", "cost", "input_tokens"))
        assert [p.grain for p in plan(query, None)] == [4]
        rolled = store.report(query, mode="rollups").to_dict()
        assert rolled["rows"] == store.report(query, mode="events").to_dict()["rows"]
        # The tag rows got their events' costs back.
        podcasts = Query(
            by=("tag:podcast_id",),
            where=(Filter("tag:podcast_id", ("rec1", "rec2")),),
            metrics=("calls", "cost", "unpriced_calls"),
        )
        assert [p.tag_rows for p in plan(podcasts, None)] == ["podcast_id"]
        from_tags = store.report(podcasts).to_dict()
        assert from_tags == store.report(podcasts, mode="events").to_dict()
        assert from_tags["total"]["cost"] is not None
