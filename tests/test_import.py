"""``llmledger import``: mapping, validation keeping rejected rows, idempotent re-runs, pricing."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from llmledger.cli import main
from llmledger.store import open_store

LOG = """\
id,created_at,section,location_id,podcast_id,model,prompt_tokens,completion_tokens,cost
1,2025-03-01T10:00:00Z,catalog,loc-1,p1,gpt-4o-mini,1000,200,
2,2025-03-01T11:00:00Z,catalog,loc-2,p2,gpt-4o-mini,1000,200,0.5
3,2025-03-01T12:00:00Z,search,loc-2,,gpt-4o-mini,abc,200,
4,2031-03-01T12:00:00Z,search,loc-2,,gpt-4o-mini,1,200,
5,2025-03-02T09:00:00Z,search,loc-1,p1,gpt-4o,"2,000",100,
6,2025-03-02T09:30:00Z,search,loc-1,p1,no-such-model-9,100,10,
"""
MAPS = [
    "--map", "created_at=ts", "--map", "section=feature", "--map", "location_id=tenant",
    "--map", "podcast_id=tag:podcast_id", "--map", "prompt_tokens=input_tokens",
    "--map", "completion_tokens=output_tokens", "--set", "provider=openai",
]  # fmt: skip


def invoke(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--database-url", db_url, "import", *args])


def test_a_log_is_imported_once_with_its_bad_rows_kept(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "usage.csv"
    log.write_text(LOG)
    first = invoke(db_url, str(log), *MAPS, "--json")
    assert first.exit_code == 1  # rows were rejected
    summary = json.loads(first.stdout)
    assert {k: summary[k] for k in ("rows", "imported", "duplicates", "rejected")} == {
        "rows": 6,
        "imported": 3,
        "duplicates": 0,
        "rejected": 3,
    }
    assert summary["priced"] == 1 and summary["reported"] == 1 and summary["unpriced"] == 1
    assert summary["rejections"] == [
        {"line": 4, "reason": "input_tokens: not a whole number: 'abc'"},
        {"line": 5, "reason": "ts: 2031-03-01T12:00:00+00:00 is in the future"},
        {"line": 6, "reason": "input_tokens: not a whole number: '2,000'"},
    ]
    # nothing lost: every refused row is in the rejects file as it was, with line and reason
    rejects = tmp_path / "usage.rejected.csv"
    assert summary["rejects_file"] == str(rejects)
    with rejects.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    original = list(csv.DictReader(LOG.splitlines()))
    assert [{k: v for k, v in r.items() if not k.startswith("llmledger_")} for r in rows] == [
        original[2],
        original[3],
        original[4],
    ]
    assert [r["llmledger_line"] for r in rows] == ["4", "5", "6"]

    store = open_store(db_url)
    events = {e.tags.get("podcast_id", "-") + e.model: e for e in store.events()}
    assert len(events) == 3
    catalog = events["p1gpt-4o-mini"]
    assert catalog.cost_source == "catalog" and catalog.cost == Decimal("0.000270000")
    assert catalog.tenant == "loc-1" and catalog.feature == "catalog"
    reported = events["p2gpt-4o-mini"]
    assert reported.cost == Decimal("0.5") and reported.cost_source == "provider-reported"
    assert events["p1no-such-model-9"].cost is None

    # a second run of the same log stores nothing new
    again = json.loads(invoke(db_url, str(log), *MAPS, "--json").stdout)
    assert (again["imported"], again["duplicates"]) == (0, 3)
    assert store.count() == 3
    store.close()


def test_identical_rows_are_each_imported_and_an_id_column_names_the_event(
    db_url: str, tmp_path: Path
) -> None:
    row = '{"t": "2025-03-01T10:00:00+00:00", "m": "gpt-4o", "u": {"in": 5, "out": 1}}\n'
    log = tmp_path / "calls.jsonl"
    log.write_text(row * 2 + "\n")
    args = ["--map", "t=ts", "--map", "m=model", "--map", "u.in=input_tokens"]
    args += ["--map", "u.out=output_tokens", "--set", "provider=openai", "--json"]
    result = invoke(db_url, str(log), *args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["imported"] == 2
    # renamed, the same export would be new rows; --source keeps the ids
    renamed = tmp_path / "calls-copy.jsonl"
    renamed.write_text(log.read_text())
    again = invoke(db_url, str(renamed), *args, "--source", "calls.jsonl")
    assert json.loads(again.stdout)["duplicates"] == 2

    keyed = tmp_path / "keyed.csv"
    keyed.write_text("pk,ts,model,input_tokens\n7,2025-03-01T10:00:00Z,gpt-4o,5\n")
    ulid = "01JNJ7ZP8Q0000000000000000"
    keyed2 = tmp_path / "keyed2.csv"
    keyed2.write_text(f"id,ts,model,input_tokens\n{ulid},2025-03-01T10:00:00Z,gpt-4o,6\n")
    for path in (keyed, keyed2):
        assert (
            invoke(db_url, str(path), "--map", "pk=id", "--set", "provider=openai").exit_code == 0
        )
    store = open_store(db_url)
    assert store.get(ulid) is not None and store.get(ulid).usage.input_tokens == 6  # type: ignore[union-attr]
    keyed.write_text("pk,ts,model,input_tokens\n7,2025-03-01T10:00:00Z,gpt-4o,999\n")
    changed = invoke(db_url, str(keyed), "--map", "pk=id", "--set", "provider=openai", "--json")
    assert json.loads(changed.stdout)["duplicates"] == 1  # same primary key: the same event
    assert store.count() == 4
    store.close()


def test_times_without_offset_need_a_zone(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "naive.csv"
    log.write_text("ts,provider,model,input_tokens\n2025-03-01 10:00:00,openai,gpt-4o,5\n")
    refused = invoke(db_url, str(log), "--json")
    assert json.loads(refused.stdout)["rejections"][0]["reason"].startswith(
        "ts: '2025-03-01 10:00:00' has no UTC offset"
    )
    log.with_name("naive.rejected.csv").unlink()
    taken = invoke(db_url, str(log), "--tz", "America/Sao_Paulo")
    assert taken.exit_code == 0, taken.output
    store = open_store(db_url)
    (event,) = store.events()
    assert event.ts.isoformat() == "2025-03-01T13:00:00+00:00"
    store.close()


def test_dry_run_writes_nothing(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "usage.csv"
    log.write_text(LOG)
    result = invoke(db_url, str(log), *MAPS, "--dry-run")
    assert result.exit_code == 1
    assert result.stdout.startswith("6 rows: would import 3, 0 already in the ledger, 3 rejected")
    assert not (tmp_path / "usage.rejected.csv").exists()
    store = open_store(db_url)
    assert store.count() == 0
    store.close()


def test_declared_features_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMLEDGER_FEATURES", "catalog")
    log = tmp_path / "usage.csv"
    log.write_text(LOG)
    result = CliRunner().invoke(main, ["import", str(log), *MAPS, "--json"])
    reasons = [r["reason"] for r in json.loads(result.stdout)["rejections"]]
    assert sum("feature" in r and "search" in r for r in reasons) == 2


@pytest.mark.parametrize(
    ("args", "mapping", "message"),
    [
        (["--map", "section"], None, "--map takes COLUMN=FIELD, got 'section'"),
        (["--map", "section=sektion"], None, "cannot map onto 'sektion'"),
        (["--tz", "Mars/Olympus"], None, "unknown time zone 'Mars/Olympus'"),
        ([], "map: [1, 2]\n", "is not a mapping file"),
        ([], "map: {a: ts}\ncolour: red\n", "is not a mapping file"),
    ],
)
def test_bad_mappings_are_one_line_errors(
    tmp_path: Path, args: list[str], mapping: str | None, message: str
) -> None:
    log = tmp_path / "usage.csv"
    log.write_text(LOG)
    if mapping is not None:
        (tmp_path / "m.yaml").write_text(mapping)
        args = [*args, "--mapping", str(tmp_path / "m.yaml")]
    result = CliRunner().invoke(main, ["import", str(log), *args])
    assert result.exit_code == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
