"""Every CLI command at the edge: a person's mistake is one line on stderr and a non-zero
exit, never a traceback.  Commands are found by walking the click group, so a new
command is covered without touching this file."""

from __future__ import annotations

import importlib
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from llmledger.cli import COMMANDS, main
from llmledger.core.errors import (
    FileAccessError,
    ServiceUnavailable,
    StoreError,
    as_ledger_error,
)

CommandPath = tuple[str, ...]


def leaf_commands(
    group: click.Group = main, path: CommandPath = ()
) -> list[tuple[CommandPath, click.Command]]:
    """Every command that runs (groups are walked), with the names that reach it."""
    ctx = click.Context(group)
    found: list[tuple[CommandPath, click.Command]] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            found.extend(leaf_commands(command, (*path, name)))
        else:
            found.append(((*path, name), command))
    return found


LEAVES = leaf_commands()
IDS = [" ".join(path) for path, _ in LEAVES]


def required_arguments(command: click.Command, tmp_path: Path) -> list[str]:
    """Well-formed values for a command's required arguments and options."""
    args: list[str] = []
    for param in command.params:
        if not param.required:
            continue
        if isinstance(param.type, click.File):
            value = "-"
        elif isinstance(param.type, click.Path):
            value = str(tmp_path / "not-there" / "file")
        elif isinstance(param.type, click.Choice):
            value = str(param.type.choices[0])
        elif isinstance(param.type, click.types.IntParamType):
            value = "1"
        else:
            value = "x"
        if isinstance(param, click.Option):
            args.append(param.opts[0])
        args.append(value)
    return args


def invoke(args: Sequence[str], stdin: str = "") -> Result:
    return CliRunner().invoke(main, list(args), input=stdin, prog_name="llmledger")


def assert_one_line_error(result: Result, *, code: int | None = None, says: str = "") -> None:
    """Non-zero exit, one ``Error: …`` line on stderr, nothing raised past the CLI."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}"
    )
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    assert "Traceback" not in result.output
    assert says in lines[0], lines[0]


def test_every_command_is_walked() -> None:
    names = {path[0] for path, _ in LEAVES}
    assert names == set(COMMANDS)
    assert ("db", "rebuild-rollups") in [path for path, _ in LEAVES]


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=IDS)
def test_an_unknown_option_is_one_line(path: CommandPath, command: click.Command) -> None:
    result = invoke([*path, "--no-such-option"])
    assert_one_line_error(result, code=2, says="--no-such-option")
    assert f"llmledger {' '.join(path)} --help" in result.stderr


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=IDS)
def test_a_broken_config_file_is_one_line(
    path: CommandPath, command: click.Command, ledger_home: Path, tmp_path: Path
) -> None:
    ledger_home.mkdir(parents=True)
    (ledger_home / "config.toml").write_text("currency = [unclosed\n", encoding="utf-8")
    result = invoke([*path, *required_arguments(command, tmp_path)])
    assert_one_line_error(result)


# serve, demo and sim would run for long with a home that works; their start with a
# broken one is covered above.
@pytest.mark.parametrize(
    ("path", "command"),
    [(p, c) for p, c in LEAVES if p[0] not in ("serve", "demo", "sim")],
    ids=[i for i in IDS if i.split()[0] not in ("serve", "demo", "sim")],
)
def test_a_home_that_cannot_be_created_is_never_a_traceback(
    path: CommandPath, command: click.Command, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    home = blocker / "home"
    result = invoke(["--home", str(home), *path, *required_arguments(command, tmp_path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}"
    )
    if result.exit_code != 0:
        assert_one_line_error(result)


def test_command_table_matches_the_commands() -> None:
    """``llmledger --help`` lists the table's summaries: they must be the commands' own."""
    declared = set()
    for name, entry in COMMANDS.items():
        module_name, _, attribute = entry.target.partition(":")
        module = importlib.import_module(module_name)
        command = getattr(module, attribute)
        declared.update(module.COMMANDS)
        assert command.name == name
        assert command.get_short_help_str(limit=1000) == entry.summary, name
    # A command a module offers but the table forgets would never be reachable.
    loaded = {main.get_command(click.Context(main), name) for name in COMMANDS}
    assert declared == loaded


def _record(*extra: str) -> list[str]:
    return ["record", "--provider", "openai", "--model", "gpt-4o", "--input", "5", *extra]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["report", "--format", "xlsx"], "xlsx needs an output file"),
        (["report", "--source", "rollups", "--by", "session"], "rollups alone"),
        (["report", "--source", "rollups", "--metrics", "latency_p95"], "rollups alone"),
        (["report", "--format", "csv", "-o", "{tmp}/missing/r.csv"], "No such file"),
        (["report", "--format", "md", "-o", "{tmp}/missing/r.md"], "No such file"),
        (["report", "--format", "xlsx", "-o", "{tmp}/missing/r.xlsx"], "No such file"),
        (["report", "--json", "-o", "{tmp}/missing/r.json"], "No such file"),
        (["report", "-o", "{tmp}/missing/r.txt"], "No such file"),
        (["report", "--last", "30 days"], "--last"),
        (["--home", "{tmp}/a-file/home", "logs"], "cannot create the home folder"),
        (["--home", "{tmp}/a-file/home", "report"], "cannot create the home folder"),
        (["--home", "{tmp}/a-file", "logs"], "a-file"),
        (_record("--ts", "2035-01-01T00:00:00Z"), "in the future"),
        (_record("--ts", "2025-01-01T00:00:00"), "offset"),
        (_record("--ts", "yesterday"), "ISO 8601"),
        (["cost", "{tmp}/no-such-response.json"], "No such file"),
    ],
)
def test_common_mistakes_are_one_line(args: list[str], says: str, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    result = invoke([arg.replace("{tmp}", str(tmp_path)) for arg in args])
    assert_one_line_error(result, says=says)


def test_xlsx_without_openpyxl_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes ``import openpyxl`` fail, as when it is not installed.
    monkeypatch.setitem(sys.modules, "openpyxl", None)
    result = invoke(["report", "--format", "xlsx", "-o", str(tmp_path / "r.xlsx")])
    assert_one_line_error(result, says="pip install 'llmledger[xlsx]'")


def test_an_undeclared_feature_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMLEDGER_FEATURES", "chat,search")
    assert_one_line_error(invoke(_record("--feature", "colour")), says="unknown feature")
    assert invoke(_record("--feature", "chat")).exit_code == 0


def test_a_real_process_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from llmledger.cli import main; sys.exit(main())",
            "--home",
            str(tmp_path / "home"),
            "report",
            "--format",
            "xlsx",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["Error: xlsx needs an output file (-o FILE)"], (
        result.stderr
    )


def test_a_damaged_database_is_one_line(ledger_home: Path) -> None:
    assert invoke(["db", "migrate"]).exit_code == 0
    with sqlite3.connect(ledger_home / "ledger.db") as conn:
        conn.execute("DROP TABLE api_keys")
        conn.execute("DROP TABLE events")
    assert_one_line_error(invoke(["keys", "list"]), code=1, says="api_keys")
    assert_one_line_error(invoke(["logs"]), code=1, says="events")


def test_library_errors_become_errors_of_the_tree() -> None:
    import httpx

    stored = as_ledger_error(sqlite3.OperationalError("database is locked\nmore"))
    assert isinstance(stored, StoreError) and str(stored) == "database error: database is locked"
    unreachable = as_ledger_error(httpx.ConnectError("connection refused"))
    assert isinstance(unreachable, ServiceUnavailable)
    missing = as_ledger_error(FileNotFoundError(2, "No such file or directory", "/x/y"))
    assert isinstance(missing, FileAccessError) and isinstance(missing, OSError)
    assert str(missing) == "cannot use a file or folder: /x/y: No such file or directory"
    assert as_ledger_error(ZeroDivisionError()) is None  # a bug keeps its traceback


@pytest.mark.parametrize(
    ("args", "package", "extra"),
    [
        (["serve"], "uvicorn", "llmledger[server]"),
        (["demo", "--calls", "1"], "anthropic", "llmledger[demo]"),
    ],
)
def test_a_missing_extra_is_named(
    args: list[str], package: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, package, None)
    assert_one_line_error(invoke(args), code=1, says=f"pip install '{extra}'")
