"""CLI start-up stays light: what ``llmledger --help`` and ``llmledger logs`` import (not
timed; bench/bench_cli.py measures), and the SQLite read path ``logs`` takes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from llmledger.cli import main
from llmledger.core.events import UsageEvent
from llmledger.core.usage import Usage
from llmledger.store import events as events_table
from llmledger.store import open_store
from llmledger.store.codec import FIXED_COLUMNS, OPTIONAL_COLUMNS
from llmledger.store.migrator import head_revision, upgrade_connection
from llmledger.store.quick import recent_events, schema_head

#: Libraries a command listing must not pay for.
HEAVY = ("sqlalchemy", "alembic", "pydantic", "rich", "httpx", "fastapi", "genai_prices", "yaml")
PROVIDER_SDKS = ("openai", "anthropic", "google")


def imported_by(args: list[str], home: Path) -> set[str]:
    """Top-level packages imported by running the CLI with ``args`` in a new process."""
    code = (
        "import json, sys\n"
        "from llmledger.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:], prog_name='llmledger')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"LLMLEDGER_HOME": str(home), "PATH": "/usr/bin:/bin", **_pythonpath()},
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stderr.strip().splitlines()[-1]))


def _pythonpath() -> dict[str, str]:
    return {"PYTHONPATH": ":".join(p for p in sys.path if p)}


def sample_events() -> list[UsageEvent]:
    now = datetime.now(UTC)
    return [
        UsageEvent(
            provider="anthropic",
            model="claude-sonnet-4-5",
            ts=now - timedelta(minutes=i),
            usage=Usage(input_tokens=1200 + i, cache_read_tokens=1000, output_tokens=80),
            usage_raw={"input_tokens": 200 + i, "cache_read_input_tokens": 1000},
            cost=Decimal("0.000123456"),
            cost_breakdown={"input_tokens": Decimal("0.0001"), "output_tokens": Decimal("2E-8")},
            cost_source="catalog",
            duration_ms=412.5,
            stream=bool(i % 2),
            tenant="acme",
            user=None if i % 3 else "ana",
            feature="chat",
            tags={"ticket": f"T-{i}"} if i % 2 else {},
            warnings=("estimated",) if i == 1 else (),
        )
        for i in range(6)
    ]


def test_help_imports_no_database_validation_table_or_sdk_library(tmp_path: Path) -> None:
    loaded = imported_by(["--help"], tmp_path / "home")
    assert "click" in loaded
    assert loaded.isdisjoint(HEAVY + PROVIDER_SDKS), sorted(loaded & set(HEAVY + PROVIDER_SDKS))


def test_logs_reads_a_sqlite_ledger_without_sqlalchemy(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with open_store(f"sqlite:///{home / 'ledger.db'}") as store:
        store.write(sample_events())
    loaded = imported_by(["logs", "-n", "3"], home)
    assert loaded.isdisjoint(("sqlalchemy", "alembic", "pydantic", *PROVIDER_SDKS)), sorted(
        loaded & {"sqlalchemy", "alembic", "pydantic"}
    )


def test_quick_read_gives_the_events_the_store_gives(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with open_store(url) as store:
        store.write(sample_events())
        expected = store.recent(limit=4)
    quick = recent_events(url, 4)
    assert quick == expected
    assert [e.ts for e in expected] == sorted((e.ts for e in expected), reverse=True)


def test_quick_read_steps_aside_where_it_does_not_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert recent_events(url, 5) is None  # not created: the store creates and migrates it
    assert recent_events("sqlite://", 5) is None
    assert recent_events("postgresql+psycopg://app@db/ledger", 5) is None
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        upgrade_connection(conn, "0004")
    engine.dispose()
    assert recent_events(url, 5) is None  # an older schema is migrated by the store first
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    assert recent_events(f"sqlite:///{tmp_path / 'junk.db'}", 5) is None
    # logs still works on the migrated path, and brings the schema up to date.
    monkeypatch.setenv("LLMLEDGER_DATABASE_URL", url)
    result = CliRunner().invoke(main, ["logs", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == []
    assert recent_events(url, 5) == []


def test_the_quick_read_knows_the_schema_it_reads() -> None:
    assert schema_head() == head_revision()
    assert tuple(events_table.columns.keys()) == FIXED_COLUMNS + OPTIONAL_COLUMNS


def test_python_dash_m_runs_the_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llmledger", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"LLMLEDGER_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", **_pythonpath()},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: llmledger ")
    assert re.search(r"^  logs +The most recent events, newest first\.$", result.stdout, re.M)
