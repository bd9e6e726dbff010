"""``llmledger report``: the JSON shape, exports and formula escaping, views, docs examples."""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmledger.cli import main
from llmledger.cli.report import rebuild_rollups_command
from llmledger.core.events import UsageEvent
from llmledger.core.usage import Usage
from llmledger.store import open_store

DOCS = Path(__file__).parent.parent / "docs" / "reports.md"


@pytest.fixture
def ledger(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[UsageEvent]]:
    """A ledger with recent calls, one of them from a user named like a formula."""
    monkeypatch.setenv("LLMLEDGER_DATABASE_URL", db_url)
    now = datetime.now(UTC)
    events = [
        UsageEvent(
            provider="openai",
            model="gpt-4o",
            ts=now - timedelta(hours=h),
            usage=Usage(input_tokens=100 * h, output_tokens=10),
            cost=Decimal("0.25"),
            duration_ms=100.0 + h,
            feature="chat" if h % 2 else "search",
            user='=HYPERLINK("http://evil")' if h == 3 else "ana",
            status="error" if h % 5 == 0 else "ok",
            tags={"podcast_id": "rec123"} if h < 4 else {},
        )
        for h in range(1, 30)
    ]
    events.append(UsageEvent(provider="acme", model="mystery", ts=now - timedelta(hours=2)))
    with open_store(db_url) as store:
        store.write(events)
    yield events


def _run(*args: str) -> str:
    result = CliRunner().invoke(main, ["report", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_json_is_the_one_report_shape(ledger: list[UsageEvent]) -> None:
    data = json.loads(_run("--by", "model", "--last", "7d", "--format", "json"))
    assert set(data) >= {"query", "currency", "total", "rows"}
    assert data["currency"] == "USD"
    assert data["query"]["by"] == ["model"]
    assert data["total"]["calls"] == 30
    assert isinstance(data["total"]["input_tokens"], int)
    assert data["total"]["cost"] == "7.250000000"
    rows = {r["model"]: r for r in data["rows"]}
    assert rows["mystery"]["cost"] is None
    assert rows["mystery"]["unpriced_calls"] == 1
    assert rows["gpt-4o"]["cost"] == "7.250000000"
    again = json.loads(_run("--by", "model", "--last", "7d", "--json"))
    assert again["rows"] == data["rows"]


def test_csv_and_xlsx_escape_formulas(ledger: list[UsageEvent], tmp_path: Path) -> None:
    text = _run("--by", "user", "--format", "csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][0] == "user"
    users = [r[0] for r in rows[1:]]
    assert '\'=HYPERLINK("http://evil")' in users
    assert rows[-1][0] == "total"
    target = tmp_path / "users.xlsx"
    _run("--by", "user", "--format", "xlsx", "-o", str(target))
    from openpyxl import load_workbook

    sheet = load_workbook(target)["report"]
    cells = [c.value for c in sheet["A"]]
    assert '\'=HYPERLINK("http://evil")' in cells
    assert all(c.data_type != "f" for row in sheet.iter_rows() for c in row)


def test_line_breaks_in_values_are_quoted_and_escaped(db_url: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    users = ["ok\r@SUM(A1)", "a\n=1+1", "bell\x07", "plain"]
    with open_store(db_url) as store:
        store.write(
            [
                UsageEvent(provider="openai", model="gpt-4o", ts=now, user=user, cost=Decimal(1))
                for user in users
            ]
        )
    url = ["--database-url", db_url]
    result = CliRunner().invoke(main, [*url, "report", "--by", "user", "--format", "csv"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert sorted(r[0] for r in rows[1:-1]) == ["'a\n'=1+1", "'ok\r'@SUM(A1)", "bell\x07", "plain"]
    # A reader that starts a row at every CR or LF never sees one start like a formula.
    assert not [line for line in re.split(r"[\r\n]", text) if line.startswith(("=", "+", "@"))]
    target = tmp_path / "users.xlsx"
    args = [*url, "report", "--by", "user", "--format", "xlsx", "-o", str(target)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    from openpyxl import load_workbook

    cells = [c.value for c in load_workbook(target)["report"]["A"]]
    # XML reads a CR back as LF.
    assert "'ok\n'@SUM(A1)" in cells and "'a\n'=1+1" in cells and "bell\ufffd" in cells


def test_markdown_and_text_views(ledger: list[UsageEvent], tmp_path: Path) -> None:
    md = _run("--by", "feature", "--format", "md")
    assert md.startswith("| feature |")
    assert "| total |" in md
    text = _run("--every", "day", "--last", "3d", "--tz", "America/Sao_Paulo")
    assert "by day" in text
    assert "cost per day" in text
    assert "█" in text
    out = tmp_path / "report.txt"
    _run("--by", "model", "-o", str(out))
    assert "gpt-4o" in out.read_text()


def test_per_entity_timeline(ledger: list[UsageEvent]) -> None:
    text = _run("--where", "tag:podcast_id=rec123", "--timeline")
    assert "by feature" in text
    assert "timeline (3 calls)" in text
    data = json.loads(_run("--where", "tag:podcast_id=rec123", "--timeline", "--json"))
    assert data["total"]["calls"] == 3
    assert [r["feature"] for r in data["rows"]] == ["chat", "search"]
    assert len(data["timeline"]) == 3
    assert data["timeline"][0]["cost"] == "0.250000000"


def test_forecast(ledger: list[UsageEvent]) -> None:
    data = json.loads(_run("--forecast", "--json"))
    assert set(data["forecast"]) >= {"month", "spent", "run_rate_per_day", "projected"}
    assert "forecast for" in _run("--forecast")


def test_errors_are_one_line(ledger: list[UsageEvent]) -> None:
    result = CliRunner().invoke(main, ["report", "--by", "colour"])
    assert result.exit_code != 0
    assert "unknown dimension" in result.output
    result = CliRunner().invoke(main, ["report", "--currency", "XYZ"])
    assert result.exit_code != 0
    assert "no exchange rate" in result.output


def test_rebuild_rollups_command(ledger: list[UsageEvent]) -> None:
    result = CliRunner().invoke(
        rebuild_rollups_command, [], obj={"settings": {}}, catch_exceptions=False
    )
    assert result.exit_code == 0
    assert re.search(r"rollups rebuilt: [\d,]+ rows", result.output)
    assert json.loads(_run("--json", "--source", "rollups"))["total"]["calls"] == 30


def test_every_source_gives_the_same_report(ledger: list[UsageEvent]) -> None:
    answers = {}
    for source in ("auto", "hourly", "rollups", "events"):
        data = json.loads(
            _run(
                "--json",
                "--by",
                "model,feature",
                "--since",
                "2000-01-01",
                "--until",
                "2100-01-01",
                "--source",
                source,
            )
        )
        answers[source] = data.pop("source"), data
    assert answers["auto"][0] == "rollups"  # whole UTC days: the daily rollups alone
    assert answers["events"][0] == "events"
    assert len({json.dumps(data, sort_keys=True) for _, data in answers.values()}) == 1


def test_every_documented_example_runs(
    ledger: list[UsageEvent], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "rates.yaml").write_text(
        "exchange_rates:\n  BRL:\n    - {from: 2000-01-01, rate: 5.5}\n"
    )
    monkeypatch.setenv("LLMLEDGER_PRICE_FILES", str(tmp_path / "rates.yaml"))
    examples = [
        line.split("#")[0].strip()
        for line in DOCS.read_text().splitlines()
        if line.startswith("llmledger report")
    ]
    assert len(examples) >= 10
    for example in examples:
        _run(*shlex.split(example)[2:])


def test_declared_features_show_their_display_names_in_tables_only(
    ledger: list[UsageEvent], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMLEDGER_FEATURES", "chat=Chat assistant, search")
    text = _run("--by", "feature")
    assert "Chat assistant (chat)" in text
    assert "search" in text and "(search)" not in text  # no display name: the name alone
    timeline = _run("--where", "tag:podcast_id=rec123", "--timeline")
    assert timeline.count("Chat assistant (chat)") >= 2  # the breakdown and the calls
    rows = json.loads(_run("--by", "feature", "--json"))["rows"]
    assert {r["feature"] for r in rows} == {"chat", "search", None}  # data keeps the names
