"""The layers of docs/architecture.md hold in the code.

The page's table "Who may import whom" is read here and every import in the package
(at the top of a module or inside a function) is checked against it, so the page and the
code cannot drift apart: a new dependency between packages is either drawn there or fails.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "llmledger"
PAGE = ROOT / "docs" / "architecture.md"
#: Only the store talks to a database.
DATABASE_LIBRARIES = frozenset({"sqlalchemy", "alembic", "psycopg", "psycopg_pool", "sqlite3"})


def allowed_imports() -> dict[str, frozenset[str]]:
    """The table of the architecture page: package -> the packages it may import."""
    text = PAGE.read_text(encoding="utf-8")
    section = text.split("## Who may import whom", 1)[1].split("\n## ", 1)[0]
    table: dict[str, frozenset[str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([a-z_]+)`", re.sub(r"\(.*?\)", "", cells[1]))
        table[cells[0].strip("`")] = frozenset(names)
    return table


def package_of(path: Path) -> str:
    """``llmledger/store/sql.py`` -> ``store``; the top-level modules are ``llmledger``."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else "llmledger"


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every absolute module name ``path`` imports, with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            if node.module is not None:
                yield node.lineno, node.module


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_page_names_every_package() -> None:
    table = allowed_imports()
    packages = {package_of(path) for path in modules()}
    assert packages == set(table), "docs/architecture.md must list exactly the packages"
    for allowed in table.values():
        assert allowed <= set(table)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layers(path: Path) -> None:
    table = allowed_imports()
    own = package_of(path)
    crossings = []
    for line, name in imports(path):
        top, _, rest = name.partition(".")
        if top == "llmledger":
            target = rest.split(".", 1)[0] or "llmledger"
            if target != own and target not in table[own]:
                crossings.append(f"line {line}: {name} ({own} may not import {target})")
        elif top in DATABASE_LIBRARIES and own != "store":
            crossings.append(f"line {line}: {name} (only the store talks to a database)")
    assert not crossings, "\n".join(crossings)


def test_the_check_sees_a_crossing(tmp_path: Path) -> None:
    # The parser must find imports inside functions too, where lazy imports hide.
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    import sqlalchemy\n    from llmledger.store import x\n")
    assert [name for _, name in imports(sample)] == ["sqlalchemy", "llmledger.store"]
