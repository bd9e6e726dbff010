"""``llmledger budgets``, ``alerts`` and ``worker``: the examples of docs/alerts.md run, and
every setting of budgets and alerts is documented there."""

from __future__ import annotations

import json
import shlex
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from llmledger.cli import main
from llmledger.core.events import UsageEvent
from llmledger.core.settings import Settings
from llmledger.store import open_store
from tests.alerting_support import webhook_server

DOCS = Path(__file__).parent.parent / "docs" / "alerts.md"


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def ledger(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LLMLEDGER_DATABASE_URL", db_url)
    now = datetime.now(UTC)
    with open_store(db_url) as store:
        store.write(
            [
                UsageEvent(
                    provider="openai",
                    model="gpt-4o",
                    ts=now - timedelta(minutes=m),
                    tenant="acme",
                    feature="chat",
                    tags={"podcast_id": "ep42"},
                    cost=Decimal("0.2"),
                )
                for m in range(1, 5)
            ]
        )
    return db_url


def test_the_documented_examples_run(ledger: str) -> None:
    examples = [
        line
        for line in DOCS.read_text().splitlines()
        if line.startswith(("llmledger budgets", "llmledger alerts"))
    ]
    assert len(examples) >= 10
    for example in examples:
        result = _run(*shlex.split(example)[1:])
        assert result.exit_code == 0, f"{example}: {result.output}"
    with open_store(ledger) as store, webhook_server() as (url, hook):
        # The examples' recipients are not on this machine: tell a local receiver instead.
        now = datetime.now(UTC)
        for budget in store.list_budgets():
            store.update_budget(budget.changed(recipients=(f"webhook:{url}",)), now=now)
        shown = json.loads(_run("budgets", "check", "--json").output)
        spent = {s["budget"]["name"]: s["spent"] for s in shown["budgets"]}
        assert spent["acme-daily"] == "0.800000000"
        fired = {a["title"].split(":")[0] for a in shown["fired"] if a["rule"] == "budget"}
        assert fired == {"Budget acme-daily at 50%"}
        assert json.loads(_run("budgets", "check", "--json").output)["fired"] == []
        assert [b["alert"]["title"].split(":")[0] for b in hook.bodies()] == [
            "Budget acme-daily at 50%"
        ]


def test_every_budget_and_alert_setting_is_documented() -> None:
    text = DOCS.read_text()
    names = [f.name for f in fields(Settings)]
    # The budget and alert settings run from run_jobs to notify_timeout in Settings.
    for name in names[names.index("run_jobs") : names.index("notify_timeout") + 1]:
        assert f"| `{name}` |" in text, name


def test_the_alert_recipients_test(ledger: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with webhook_server() as (url, hook):
        monkeypatch.setenv("LLMLEDGER_ALERT_RECIPIENTS", f"slack:{url}")
        result = _run("alerts", "test")
        assert result.output == f"slack:{url}: delivered\n"
        assert hook.bodies()[0]["text"].startswith("*[llmledger] Test notification (alert ")


def test_test_ack_and_worker(ledger: str) -> None:
    with webhook_server() as (url, hook):
        assert (
            _run("budgets", "add", "b", "--amount", "0.5", "--notify", f"webhook:{url}").exit_code
            == 0
        )
        result = _run("budgets", "test", "b")
        assert result.exit_code == 0 and "delivered" in result.output
        hook.answers = [500]
        failed = CliRunner().invoke(main, ["budgets", "test", "b"])
        assert failed.exit_code == 1 and "1 of 1 test notification(s) failed" in failed.output
        assert _run("worker", "--once").exit_code == 0
        # The alert recipients' own test.
        hook.answers = []
        missing = CliRunner().invoke(main, ["alerts", "test"])
        assert missing.exit_code == 1 and "no alert recipients are set" in missing.output
        bodies = [b for b in hook.bodies() if b["kind"] == "alert"]
        assert sorted(b["alert"]["details"]["threshold"] for b in bodies) == [50, 80, 100]
    listed = json.loads(_run("alerts", "list", "--json").output)
    budget_alert = next(a for a in listed if a["rule"] == "budget")
    acked = _run("alerts", "ack", budget_alert["id"], "--by", "ana")
    assert acked.output.strip() == f"alert {budget_alert['id']} acknowledged by ana"
    missing = CliRunner().invoke(main, ["alerts", "ack", "nope"])
    assert missing.exit_code == 1 and "no alert 'nope'" in missing.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["budgets", "add", "x", "--amount", "ten"], "--amount 'ten' is not a number"),
        (["budgets", "add", "x", "--amount", "1", "--where", "colour=red"], "unknown dimension"),
        (["budgets", "add", "x", "--amount", "1", "--notify", "pager:1"], "write email:ADDRESS"),
        (["budgets", "show", "nope"], "no budget 'nope'"),
        (["budgets", "remove", "nope"], "no budget 'nope'"),
    ],
)
def test_bad_input_is_one_line_with_a_nonzero_exit(
    ledger: str, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and message in result.output, result.output
