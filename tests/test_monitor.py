"""Budgets, alerts, the outbox and the lease through the store and the monitor, on SQLite
and PostgreSQL, with a real webhook receiver on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from llmledger.alerts import Alert, Budget
from llmledger.alerts import test_messages as make_test_messages
from llmledger.core.events import UsageEvent
from llmledger.core.settings import load_settings
from llmledger.monitor import Monitor, Scheduler
from llmledger.monitor.scheduler import POKE_GAP
from llmledger.pricing import PriceResolver
from llmledger.query import Query, parse_where
from llmledger.store import RowExistsError, SqlStore, open_store
from tests.alerting_support import Hook, webhook_server

NOW = datetime.now(UTC).replace(microsecond=0)
_PRICER = PriceResolver(catalog=False, supplement=False)


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    with open_store(db_url) as opened:
        yield opened


@pytest.fixture
def hook() -> Iterator[tuple[str, Hook]]:
    with webhook_server() as served:
        yield served


def _monitor(store: SqlStore, **settings: Any) -> Monitor:
    return Monitor(store, load_settings(**settings), lambda: _PRICER)


def _event(minutes_ago: float = 1, **fields: Any) -> UsageEvent:
    values: dict[str, Any] = {
        "provider": "openai",
        "model": "gpt-4o",
        "ts": NOW - timedelta(minutes=minutes_ago),
        "cost": Decimal("0.25"),
    }
    return UsageEvent(**(values | fields))


SCOPES = [
    (),
    ("provider=openai",),
    ("model!=o3",),
    ("tag:env=prod",),
    ("tag:env!=prod",),
    ("tag:env=(none)",),
    ("feature=chat,search", "tag:env!=test"),
    ("user!=(none)", "model=o3"),
]


def test_budget_spend_equals_the_filtered_report(store: SqlStore) -> None:
    rows = []
    for i in range(60):
        tags = [{}, {"env": "prod"}, {"env": "test"}][i % 3]
        rows.append(
            _event(
                minutes_ago=i * 97,
                model=["gpt-4o", "o3", "gpt-4.1"][i % 4 % 3],
                feature=[None, "chat", "search"][i % 5 % 3],
                user=None if i % 7 == 0 else f"u{i % 3}",
                tenant="acme" if i % 2 else "globex",
                tags=tags,
                cost=Decimal(i) / 100,
            )
        )
    store.write(rows)
    periods = [("day", None, "UTC"), ("rolling", 2, "America/New_York"), ("week", None, "UTC")]
    budgets = [
        Budget(
            name=f"b{i}-{tenant}-{period}",
            amount=Decimal(100),
            period=period,  # type: ignore[arg-type]
            rolling_days=days,
            tz=tz,
            where=scope,
            tenant=tenant,
        )
        for i, scope in enumerate(SCOPES)
        for tenant in (None, "acme")
        for period, days, tz in periods
    ]
    found = _monitor(store).budget_statuses(budgets, NOW)
    assert len({(s.since, s.until) for s in found}) == 3
    for budget, status in zip(budgets, found, strict=True):
        direct = store.report(
            Query(
                since=status.since,
                until=status.until,
                where=budget.filters(),
                metrics=("cost",),
            )
        ).total["cost"]
        assert status.spent == (direct or Decimal(0)), budget.where


def test_budgets_are_kept_changed_and_removed(store: SqlStore) -> None:
    budget = Budget(name="chat", amount=Decimal("12.5"), where=("feature=chat",), tenant="acme")
    store.add_budget(budget, now=NOW)
    with pytest.raises(RowExistsError):
        store.add_budget(Budget(name="chat", amount=Decimal(1)), now=NOW)
    assert store.get_budget("chat") == store.get_budget(budget.id)
    assert [b.name for b in store.list_budgets(tenant="acme")] == ["chat"]
    assert store.list_budgets(tenant="globex") == []
    changed = store.update_budget(budget.changed(amount=Decimal(20), active=False), now=NOW)
    assert changed is not None and changed.amount == Decimal(20) and not changed.active
    assert store.list_budgets(active_only=True) == []
    assert store.remove_budget(budget.id) and not store.remove_budget(budget.id)


def test_one_open_alert_per_key_and_messages_once_per_dedupe_key(store: SqlStore) -> None:
    def alert() -> Alert:
        from llmledger.core.ids import new_id

        return Alert(new_id(), "budget", "budget:x:50", "acme", "t", "m", {}, (), NOW)

    first, second = alert(), alert()
    messages = make_test_messages(("webhook:http://127.0.0.1:9/x",), NOW, "t")
    assert store.record_alerts([(first, messages)], [], now=NOW) == [first]
    # Another instance firing the same crossing meanwhile stores nothing.
    assert store.record_alerts([(second, messages)], [], now=NOW) == []
    assert [m.id for m in store.list_messages()] == [messages[0].id]
    assert store.queue_messages(messages) == 0
    store.record_alerts([], [first.id], now=NOW + timedelta(minutes=1))
    assert store.open_alerts() == []
    assert store.last_resolved(NOW) == {"budget:x:50": NOW + timedelta(minutes=1)}
    # Resolved, the key may fire again.
    assert store.record_alerts([(second, [])], [], now=NOW) == [second]
    acked = store.ack_alert(second.id, by="ana", now=NOW)
    assert acked is not None and acked.acked_by == "ana"
    again = store.ack_alert(second.id, by="bob", now=NOW + timedelta(hours=1))
    assert again is not None and again.acked_by == "ana"


def test_one_instance_leads_until_its_lease_runs_out(store: SqlStore) -> None:
    lease = timedelta(seconds=30)
    assert store.lead("a", now=NOW, ttl=lease)
    assert not store.lead("b", now=NOW + timedelta(seconds=10), ttl=lease)
    assert store.lead("a", now=NOW + timedelta(seconds=20), ttl=lease)
    assert not store.lead("b", now=NOW + timedelta(seconds=40), ttl=lease)
    assert store.lead("b", now=NOW + timedelta(seconds=51), ttl=lease)
    store.release("b")
    assert store.lead("a", now=NOW + timedelta(seconds=52), ttl=lease)


def test_a_failed_delivery_is_retried_with_the_same_delivery_id(
    store: SqlStore, hook: tuple[str, Hook]
) -> None:
    url, received = hook
    received.answers = [500, 503]
    store.add_budget(
        Budget(
            name="all",
            amount=Decimal(1),
            period="day",
            thresholds=(50,),
            recipients=(f"webhook:{url}",),
        ),
        now=NOW,
    )
    store.write([_event(cost=Decimal("0.75"))])
    monitor = _monitor(store, webhook_secret="k")
    (fired,) = monitor.check(NOW).fired
    first = monitor.deliver(NOW)
    assert [m.attempts for m in first.retrying] == [1] and received.calls == []
    assert monitor.deliver(NOW + timedelta(seconds=29)).retrying == []  # not due yet
    assert len(monitor.deliver(NOW + timedelta(seconds=30)).retrying) == 1
    # A new process over the same database picks the outbox up.
    later = _monitor(store, webhook_secret="k")
    done = later.deliver(NOW + timedelta(seconds=90))
    assert [m.attempts for m in done.delivered] == [3]
    (body,) = received.bodies()
    assert body["delivery_id"] == first.retrying[0].id and body["alert"]["id"] == fired.id
    assert later.check(NOW + timedelta(minutes=5)).fired == []
    assert later.deliver(NOW + timedelta(hours=2)).delivered == []
    assert len(received.calls) == 1


def test_error_rate_and_authentication_failures_fire_and_resolve(store: SqlStore) -> None:
    store.write([_event(minutes_ago=i / 10) for i in range(30)])
    store.write(
        [
            _event(minutes_ago=2, status="error", error_type="RateLimitError", cost=None)
            for _ in range(3)
        ]
        + [
            _event(
                minutes_ago=3,
                status="error",
                error_type="AuthenticationError",
                error_message="Incorrect API key provided",
                api_key_fingerprint="ab12",
                cost=None,
            )
        ]
    )
    monitor = _monitor(store, alert_recipients="email:ops@example.com")
    fired = {a.rule: a for a in monitor.check(NOW).fired}
    assert fired["error_rate"].key == "error_rate:openai"
    assert fired["auth_failure"].key == "auth_failure:openai:ab12"
    assert [m.recipient for m in store.list_messages(alert_id=fired["error_rate"].id)] == [
        "email:ops@example.com"
    ]
    assert monitor.check(NOW + timedelta(minutes=1)).fired == []
    # Twenty minutes on, the window holds none of those calls: both resolve.
    cleared = monitor.check(NOW + timedelta(minutes=20))
    assert {a.rule for a in cleared.resolved} >= {"error_rate", "auth_failure"}


def test_the_weekly_price_check_is_queued_once(store: SqlStore) -> None:
    store.write([_event(cost=None, model="mystery-1")])
    monitor = _monitor(store, alert_recipients="email:ops@example.com,slack:https://example.com/s")
    scheduler = Scheduler(monitor, interval=300, clock=lambda: NOW)
    assert scheduler.run_once()
    queued = [m for m in store.list_messages() if m.payload["kind"] == "digest"]
    assert len(queued) == 2
    assert "openai/mystery-1: 1 call(s) unpriced" in queued[0].text
    assert monitor.price_check(NOW) and store.queue_messages(monitor.price_check(NOW)) == 0
    assert len([m for m in store.list_messages() if m.payload["kind"] == "digest"]) == 2
    assert store.job_last_run("price_check") == NOW
    # Another scheduler does not lead while the first holds the lease.
    assert not Scheduler(monitor, interval=300, clock=lambda: NOW).run_once()


def test_a_burst_of_writes_wakes_the_job_loop_once_and_is_checked(store: SqlStore) -> None:
    scheduler = Scheduler(_monitor(store), interval=300, clock=lambda: NOW)
    scheduler.poke()
    assert scheduler._wake.is_set()
    scheduler._wake.clear()
    for _ in range(100):  # batch after batch of ingest
        scheduler.poke()
    assert not scheduler._wake.is_set()
    # The loop's next tick still knows of the writes: the check runs once POKE_GAP has passed.
    store.job_ran("check", now=NOW - POKE_GAP)
    assert scheduler.run_once()
    assert store.job_last_run("check") == NOW


def test_a_condition_outside_budgets_reaches_the_alert_recipients_only_once(
    store: SqlStore,
) -> None:
    store.write([_event(cost=None, model="mystery-2")])
    monitor = _monitor(store, alert_recipients="webhook:https://example.com/h")
    fired = [a for a in monitor.check(NOW).fired if a.rule == "price_gap"]
    assert [a.key for a in fired] == ["price_gap:openai:mystery-2:unpriced"]
    assert all(a.rule != "price_gap" for a in monitor.check(NOW + timedelta(minutes=5)).fired)


def test_where_parsing_is_shared_with_reports() -> None:
    budget = Budget(name="x", amount=Decimal(1), where=("key=abc",))
    assert budget.where == tuple(f.to_text() for f in parse_where(["api_key_fingerprint=abc"]))


@pytest.mark.unmigrated
def test_the_budgets_migration_runs_on_the_previous_schema_and_back(db_url: str) -> None:
    import sqlalchemy as sa

    from llmledger.store.migrator import current_revision, downgrade_connection, upgrade_connection

    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            upgrade_connection(conn, "0011")
        with open_store(db_url) as store:
            store.write([_event()])
        with engine.begin() as conn:
            downgrade_connection(conn, "0011")
        with open_store(db_url) as store:
            store.add_budget(Budget(name="after", amount=Decimal(1)), now=NOW)
            assert store.count() == 1 and [b.name for b in store.list_budgets()] == ["after"]
        with engine.begin() as conn:
            downgrade_connection(conn, "0011")
            assert current_revision(conn) == "0011"
            assert "budgets" not in sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()
