"""Limits passed reach the alerts: guarded calls warned or refused by a limit raise one
alert per limit and window, delivered once by mail and webhook from the outbox to real
receivers on loopback; on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

import llmledger
from llmledger.alerts import limit_conditions
from llmledger.capture import Instrumentation, instrument
from llmledger.core.errors import LimitExceededError
from llmledger.core.limits import Limit
from llmledger.core.settings import load_settings
from llmledger.monitor import Monitor
from llmledger.pricing import PriceResolver
from llmledger.runtime.ledger import Ledger
from tests.alerting_support import smtp_server, webhook_server
from tests.test_limits import Provider, _ask

_PRICER = PriceResolver(catalog=False, supplement=False)


@pytest.fixture
def ledger(db_url: str) -> Ledger:
    return llmledger.configure(database_url=db_url, limits=True)


@pytest.fixture
def hooks(ledger: Ledger) -> Iterator[Instrumentation]:
    handle = instrument()
    yield handle
    handle.uninstrument()


def test_limits_passed_alert_once_per_window_by_mail_and_webhook(
    ledger: Ledger, hooks: Instrumentation
) -> None:
    store = ledger.store
    store.add_limit(Limit("tenant", "acme", "requests", Decimal(2), "day", mode="warn", id="LW"))
    store.add_limit(Limit("user", "bob", "requests", Decimal(1), "day", id="LB"))
    store.add_limit(Limit("user", "eve", "requests", Decimal(100), "day", id="LQ"))
    provider = Provider()
    client = provider.client()
    with smtp_server() as (smtp_port, mailbox), webhook_server() as (hook_url, hook):
        settings = load_settings(
            alert_recipients=f"email:ops@example.com,webhook:{hook_url}",
            smtp_host="127.0.0.1",
            smtp_port=smtp_port,
            smtp_security="none",
        )
        monitor = Monitor(store, settings, lambda: _PRICER)

        def call(n: int, tenant: str | None = None, user: str | None = None) -> None:
            for _ in range(n):
                with (
                    llmledger.attribute(tenant=tenant, user=user),
                    contextlib.suppress(LimitExceededError),
                ):
                    _ask(client)

        call(4, tenant="acme")  # two within the limit, two let through past it
        call(2, user="bob")  # one refused
        call(3, user="eve")  # within its limit: no alert
        assert llmledger.flush(10)
        assert provider.requests == 4 + 1 + 3
        now = datetime.now(UTC)
        fired = monitor.check(now).fired
        assert sorted(a.key.split(":")[1] for a in fired) == ["LB", "LW"]
        warned = next(a for a in fired if a.details["limit"] == "LW")
        assert warned.rule == "limit" and warned.tenant == "acme"
        assert warned.details["warned"] == 2 and warned.details["used_units"] == 4
        refused = next(a for a in fired if a.details["limit"] == "LB")
        assert refused.details["refused"] == 1 and refused.details["mode"] == "block"

        # Passed again and again in the same window: no new alert, no new message.
        call(3, tenant="acme")
        call(2, user="bob")
        assert llmledger.flush(10)
        assert monitor.check(datetime.now(UTC)).fired == []
        delivered = monitor.deliver(datetime.now(UTC)).delivered
        assert len(delivered) == 4  # two alerts, two recipients each
        assert monitor.deliver(datetime.now(UTC) + timedelta(hours=2)).delivered == []
        bodies = hook.bodies()
        assert sorted(b["alert"]["details"]["limit"] for b in bodies) == ["LB", "LW"]
        assert all(b["kind"] == "alert" and b["alert"]["rule"] == "limit" for b in bodies)
        subjects = sorted(str(mail["Subject"]) for mail in mailbox.mails)
        assert len(subjects) == 2 and all("Limit L" in s for s in subjects)
        assert {mail["X-Llmledger-Delivery"] for mail in mailbox.mails} <= {m.id for m in delivered}

        # The next window starts quiet: the crossings of the last one resolve.
        tomorrow = now + timedelta(days=1)
        result = monitor.check(tomorrow)
        assert result.fired == [] and sorted(a.details["limit"] for a in result.resolved) == [
            "LB",
            "LW",
        ]


def test_a_limit_reached_without_events_alerts_too() -> None:
    """Calls checked with ``llmledger.check`` record no event: the counters say it."""
    limit = Limit("user", "ana", "tokens", Decimal(1000), "day", id="L1").validate()
    day = datetime(2025, 3, 5, tzinfo=UTC)
    assert limit_conditions([limit], {"L1": (day, 999, 0)}, [], ()) == []
    (reached,) = limit_conditions([limit], {"L1": (day, 600, 400)}, [], ())
    assert reached.key == "limit:L1:2025-03-05T00:00:00+00:00"
    assert "amount reached" in reached.title
    # a call noted in an earlier window does not count in this one
    earlier = [{"hour": day - timedelta(hours=1), "tag:llmledger.limits": "warn:L1", "calls": 1}]
    assert limit_conditions([limit], {"L1": (day, 0, 0)}, earlier, ()) == []
