"""The migration guides run: each ``console`` block of docs/migrating/*.md is executed on the
sample export of its logger (tests/data/migrating/<guide>/) and prints what the guide shows."""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmledger.cli import main

ROOT = Path(__file__).resolve().parent.parent
GUIDES = ROOT / "docs" / "migrating"
DATA = Path(__file__).parent / "data" / "migrating"
_BLOCK = re.compile(r"```console\n(.*?)```", re.DOTALL)
_ENV = re.compile(r"^[A-Z_]+=")


@dataclass(frozen=True)
class Step:
    """One ``$ command`` of a guide and the output the guide shows for it."""

    env: dict[str, str]
    argv: list[str]
    expected: str


def steps(text: str) -> list[Step]:
    """Every ``$ llmledger …`` line (``\\`` continues it) with the lines shown after it."""
    out: list[Step] = []
    for block in _BLOCK.findall(text):
        block = block.replace("\\\n", " ")
        command: list[str] | None = None
        shown: list[str] = []
        for line in [*block.splitlines(), "$ end"]:
            if line.startswith("$ "):
                if command is not None:
                    env = {}
                    while command and _ENV.match(command[0]):
                        name, _, value = command.pop(0).partition("=")
                        env[name] = value
                    assert command[0] == "llmledger", command
                    out.append(Step(env, command[1:], "\n".join(shown).rstrip()))
                command, shown = shlex.split(line[2:]), []
            else:
                shown.append(line.rstrip())
    return out[:-1] if out and out[-1].argv == [] else out


def run(step: Step) -> tuple[int, str]:
    result = CliRunner().invoke(main, step.argv, env=step.env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    text = "\n".join(line.rstrip() for line in result.stdout.splitlines()).rstrip()
    return result.exit_code, text


def guides() -> list[str]:
    return sorted(p.stem for p in GUIDES.glob("*.md") if p.stem != "index")


def test_every_guide_has_its_sample_data_and_commands() -> None:
    assert guides() == sorted(p.name for p in DATA.iterdir() if p.is_dir())
    for name in guides():
        found = steps((GUIDES / f"{name}.md").read_text())
        assert [s.argv[0] for s in found][:1] == ["import"], name
        assert any(s.argv[0] == "report" for s in found), name


@pytest.mark.parametrize("name", guides())
def test_a_guide_runs_on_its_sample_data(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / name
    shutil.copytree(DATA / name, folder)
    monkeypatch.chdir(folder)
    for step in steps((GUIDES / f"{name}.md").read_text()):
        code, text = run(step)
        assert text == step.expected, f"$ llmledger {shlex.join(step.argv)}"
        # import exits 1 when it rejected rows, and says so
        assert code == (1 if "rejected rows written to" in text else 0), text
