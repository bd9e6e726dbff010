"""End to end: a real ``llmledger serve`` runs the scheduled budget check and delivers to a
real SMTP server and a real webhook receiver on loopback, once per crossing, across a
restart."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from llmledger.alerts import Budget
from llmledger.core.events import UsageEvent
from llmledger.core.ids import new_id
from llmledger.store import open_store
from tests.alerting_support import smtp_server, wait_for, webhook_server
from tests.test_server_e2e import LLMLEDGER, cli, free_port, serve

SECRET = "whsec-test"


def _event(tenant: str, cost: str) -> dict[str, Any]:
    return {
        "id": new_id(),
        "ts": (datetime.now(UTC) - timedelta(seconds=30)).isoformat().replace("+00:00", "Z"),
        "provider": "openai",
        "model": "gpt-4o",
        "usage": {"input_tokens": 100, "output_tokens": 10},
        "tenant": tenant,
        "cost": cost,
        "cost_source": "manual",
    }


def _checks_after(db_url: str, moment: datetime, count: int = 2) -> None:
    """Wait until the scheduled check has run ``count`` times after ``moment``."""
    with open_store(db_url, upgrade=False) as store:
        seen: list[datetime] = []

        def ran() -> bool:
            last = store.job_last_run("check")
            if last is not None and last > moment and (not seen or last > seen[-1]):
                seen.append(last)
            return len(seen) >= count

        wait_for(ran, f"{count} scheduled checks")


def test_a_daily_budget_alerts_once_per_threshold_by_mail_and_signed_webhook(
    db_url: str, tmp_path: Path
) -> None:
    admin = json.loads(cli(db_url, "keys", "create", "--role", "admin", "--json"))["secret"]
    with smtp_server() as (smtp_port, mailbox), webhook_server() as (hook_url, hook):
        env = {
            "LLMLEDGER_HOME": str(tmp_path / "home"),
            "LLMLEDGER_SMTP_HOST": "127.0.0.1",
            "LLMLEDGER_SMTP_PORT": str(smtp_port),
            "LLMLEDGER_SMTP_SECURITY": "none",
            "LLMLEDGER_SMTP_SENDER": "ledger@example.com",
            "LLMLEDGER_WEBHOOK_SECRET": SECRET,
            "LLMLEDGER_CHECK_INTERVAL": "0.3",
        }
        port = free_port()
        with (
            serve(db_url, port, env=env) as url,
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}) as client,
        ):
            ingest = client.post("/v1/keys", json={"role": "ingest", "tenant": "acme"}).json()
            other = client.post("/v1/keys", json={"role": "ingest", "tenant": "globex"}).json()
            created = client.post(
                "/v1/budgets",
                json={
                    "name": "acme daily",
                    "amount": "1",
                    "period": "day",
                    "tenant": "acme",
                    "thresholds": [50, 100],
                    "recipients": ["email:ops@example.com", f"webhook:{hook_url}"],
                },
            )
            assert created.status_code == 201, created.text
            budget = created.json()

            # The test notification reaches both channels.
            tested = client.post(f"/v1/budgets/{budget['id']}/test").json()
            assert [t["delivered"] for t in tested] == [True, True], tested
            assert [m["Subject"] for m in mailbox.mails] == [
                "[llmledger] Test notification (budget acme daily)"
            ]
            assert [b["kind"] for b in hook.bodies()] == ["test"]

            def post(token: str, *costs: str) -> None:
                tenant = "acme" if token == ingest["secret"] else "globex"
                answer = httpx.post(
                    f"{url}/v1/events",
                    json={"events": [_event(tenant, c) for c in costs]},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert answer.status_code == 200, answer.text

            def alerts_sent() -> tuple[list[str], list[int]]:
                mails = [m["Subject"] for m in mailbox.mails[1:]]
                levels = [b["alert"]["details"]["threshold"] for b in hook.bodies()[1:]]
                return mails, levels

            # Another tenant's spend never counts.
            post(other["secret"], "5")
            post(ingest["secret"], "0.30", "0.30")
            wait_for(lambda: len(alerts_sent()[1]) == 1 and len(alerts_sent()[0]) == 1, "50%")
            _checks_after(db_url, datetime.now(UTC))
            mails, levels = alerts_sent()
            assert levels == [50]
            assert len(mails) == 1 and mails[0].startswith("[llmledger] Budget acme daily at 50%")

            post(ingest["secret"], "0.45")
            wait_for(lambda: len(alerts_sent()[1]) == 2 and len(alerts_sent()[0]) == 2, "100%")
            _checks_after(db_url, datetime.now(UTC))
            assert alerts_sent()[1] == [50, 100]

        # A restart of the service sends nothing again.
        stopped = datetime.now(UTC)
        with serve(db_url, port, env=env) as url:
            _checks_after(db_url, stopped, count=3)
            listed = httpx.get(
                f"{url}/v1/alerts", headers={"Authorization": f"Bearer {admin}"}
            ).json()
        mails, levels = alerts_sent()
        assert levels == [50, 100]
        assert [m.split(":")[0] for m in mails] == [
            "[llmledger] Budget acme daily at 50%",
            "[llmledger] Budget acme daily at 100%",
        ]
        budget_alerts = [a for a in listed if a["rule"] == "budget"]
        assert sorted(a["details"]["threshold"] for a in budget_alerts) == [50, 100]
        assert {a["tenant"] for a in budget_alerts} == {"acme"}

        # Each webhook is signed over its exact body; every message has its own delivery id.
        deliveries = set()
        for headers, body in hook.calls:
            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(headers["x-llmledger-signature"], expected)
            assert headers["x-llmledger-delivery"] == json.loads(body)["delivery_id"]
            deliveries.add(headers["x-llmledger-delivery"])
        for mail in mailbox.mails:
            deliveries.add(mail["X-Llmledger-Delivery"])
        assert len(deliveries) == len(hook.calls) + len(mailbox.mails) == 6


def test_a_worker_process_delivers_and_stops_on_sigterm(db_url: str, tmp_path: Path) -> None:
    with webhook_server() as (hook_url, hook), tempfile.TemporaryFile("w+") as log:
        now = datetime.now(UTC)
        with open_store(db_url) as store:
            store.add_budget(
                Budget(
                    name="w",
                    amount=Decimal(1),
                    period="day",
                    thresholds=(50,),
                    recipients=(f"webhook:{hook_url}",),
                ),
                now=now,
            )
            store.write(
                [
                    UsageEvent(
                        provider="openai",
                        model="gpt-4o",
                        ts=now - timedelta(seconds=30),
                        cost=Decimal("0.7"),
                    )
                ]
            )
        worker = subprocess.Popen(
            [LLMLEDGER, "--database-url", db_url, "worker", "--interval", "0.3"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LLMLEDGER_HOME": str(tmp_path / "home")},
        )
        try:
            wait_for(lambda: len(hook.calls) == 1, "the worker's delivery")
            _checks_after(db_url, datetime.now(UTC))
        finally:
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(timeout=60)
        log.seek(0)
        assert code == 0, log.read()
        assert [b["alert"]["details"]["threshold"] for b in hook.bodies()] == [50]
        with open_store(db_url) as store:
            # It gave the lease up: another instance leads at once.
            assert store.lead("next", now=datetime.now(UTC), ttl=timedelta(seconds=30))
