"""The llmledger command line, run in-process with click's runner."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from llmledger.cli import main
from tests.conftest import RECORDED


def run(*args: str, input: str | bytes | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_cost_of_a_saved_response_as_json() -> None:
    result = run(
        "cost",
        str(RECORDED / "openai_chat_prompt_cache_hit.json"),
        "--json",
        "--at",
        "2025-06-01T00:00:00Z",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["provider"] == "openai"
    body = json.loads((RECORDED / "openai_chat_prompt_cache_hit.json").read_text())
    usage = body["usage"]
    assert data["usage"]["input_tokens"] == usage["prompt_tokens"]
    assert data["usage"]["cache_read_tokens"] == usage["prompt_tokens_details"]["cached_tokens"]
    assert data["usage"]["output_tokens"] == usage["completion_tokens"]
    assert data["cost"]["currency"] == "USD" and data["cost"]["source"] == "catalog"
    assert Decimal(data["cost"]["total"]) > 0
    assert sum(Decimal(v) for v in data["cost"]["breakdown"].values()) == Decimal(
        data["cost"]["total"]
    )


def test_cost_of_a_stream_transcript_from_stdin() -> None:
    text = (RECORDED / "anthropic_stream_thinking.sse").read_bytes()
    result = run("cost", "-", "--json", input=text)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["provider"] == "anthropic" and data["usage"]["output_tokens"] == 282


def test_cost_from_counts_table_and_json() -> None:
    result = run(
        "cost",
        "--model",
        "gpt-4o",
        "--input",
        "2000000",
        "--output",
        "100000",
        "--cache-read",
        "1000000",
        "--at",
        "2025-01-01",
    )
    assert result.exit_code == 0, result.output
    # 1M uncached at $2.50, 1M cached at $1.25, 0.1M output at $10 per million
    assert "total: $4.750000000" in result.output
    data = json.loads(run("cost", "--model", "nope-model", "--input", "5", "--json").output)
    assert data["cost"]["total"] is None and "nope-model" in data["cost"]["reason"]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("cost", "-"), b"{not json", "JSON"),
        (("cost", "-", "--provider", "acme-ai"), b'{"usage": {}}', "acme-ai"),
        (("cost", "--model", "gpt-4o", "--input", "-5"), None, "negative"),
        (("cost", "--model", "gpt-4o", "--input", "5", "--cache-read", "9"), None, "exceed"),
        (
            ("record", "--provider", "openai", "--model", "gpt-4o", "--input", "-1"),
            None,
            "negative",
        ),
        (("record", "--provider", "openai", "--model", "m", "--tag", "oops"), None, "KEY=VALUE"),
    ],
)
def test_errors_are_one_line_with_nonzero_exit(
    args: tuple[str, ...], stdin: bytes | None, message: str
) -> None:
    result = CliRunner().invoke(main, list(args), input=stdin)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]


def test_database_that_cannot_be_opened(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(
        main, ["--database-url", f"sqlite:///{blocker}/x/ledger.db", "logs"]
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1


def test_record_then_logs_and_report(ledger_home: Path) -> None:
    for feature, tokens in (("search", 100), ("chat", 300), ("chat", 200)):
        result = run(
            "record",
            "--provider",
            "openai",
            "--model",
            "gpt-4o-mini",
            "--input",
            str(tokens),
            "--output",
            "10",
            "--feature",
            feature,
            "--tenant",
            "acme",
            "--tag",
            "ticket=T-9",
        )
        assert result.exit_code == 0, result.output
    events = json.loads(run("logs", "--json", "-n", "2").output)
    assert len(events) == 2
    newest = events[0]
    assert newest["usage"]["input_tokens"] == 200 and newest["tags"] == {"ticket": "T-9"}
    for field in (
        "id",
        "ts",
        "provider",
        "model",
        "status",
        "cost",
        "cost_source",
        "tenant",
        "user",
        "feature",
        "session",
        "usage_source",
        "operation",
        "stream",
    ):
        assert field in newest
    report = json.loads(run("report", "--by", "feature", "--format", "json").output)
    rows = {row["feature"]: row for row in report["rows"]}
    assert rows["chat"]["calls"] == 2 and rows["search"]["calls"] == 1
    assert report["total"]["calls"] == 3
    assert "gpt-4o-mini" in run("logs").output


def test_db_path_and_backup(ledger_home: Path, tmp_path: Path) -> None:
    assert run("db", "path").output.strip() == str(ledger_home / "ledger.db")
    run("record", "--provider", "openai", "--model", "gpt-4o", "--input", "1")
    dest = tmp_path / "copy.db"
    assert run("db", "backup", str(dest)).exit_code == 0
    with sqlite3.connect(dest) as conn:
        assert conn.execute("select count(*) from events").fetchone() == (1,)
    assert CliRunner().invoke(main, ["db", "backup", str(dest)]).exit_code == 1
    assert run("db", "migrate").exit_code == 0


def test_every_command_and_option_has_help() -> None:
    import click

    def walk(command: click.Command, path: str) -> None:
        assert command.help or command.short_help, f"{path} has no help"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{path} {param.opts} has no help"
        if isinstance(command, click.Group):
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None, name
                walk(sub, f"{path} {name}")

    walk(main, "llmledger")


def test_every_command_is_in_the_readme() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    import click

    for name in main.list_commands(click.Context(main)):
        assert f"llmledger {name}" in readme, name
