"""Small costs print as plain decimals in every export and table, never as ``2E-8``."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmledger.cli import main
from llmledger.core.events import UsageEvent
from llmledger.query import Query, Report
from llmledger.query.export import to_csv, to_markdown
from llmledger.store import open_store

TINY = Decimal("2E-8")


def test_exports_print_small_costs_as_plain_decimals() -> None:
    report = Report(
        Query(by=("model",), metrics=("calls", "cost")),
        {"calls": 1, "cost": TINY},
        [{"model": "gpt-4o", "calls": 1, "cost": TINY}],
    )
    rows = list(csv.reader(io.StringIO(to_csv(report))))
    assert rows[1] == ["gpt-4o", "1", "0.00000002"]
    assert Decimal(rows[2][2]) == TINY
    markdown = to_markdown(report)
    assert "| gpt-4o | 1 | 0.00000002 |" in markdown
    assert "E-" not in markdown


@pytest.mark.parametrize("fmt", ["csv", "md", "json", "text"])
def test_report_command_prints_small_costs_plainly(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("LLMLEDGER_DATABASE_URL", url)
    with open_store(url) as store:
        store.write(
            [
                UsageEvent(
                    provider="openai",
                    model="tiny",
                    ts=datetime.now(UTC) - timedelta(hours=1),
                    cost=TINY,
                )
            ]
        )
    result = CliRunner().invoke(
        main, ["report", "--by", "model", "--metrics", "cost,cost_per_call", "--format", fmt]
    )
    assert result.exit_code == 0, result.output
    assert "E-" not in result.output and "e-" not in result.output
    if fmt == "json":
        assert json.loads(result.output)["total"]["cost"] == "0.000000020"
    elif fmt != "text":
        assert "0.00000002" in result.output
