"""Walking a tree: which files are read, which project each belongs to, the report."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from llmledger.audit.javascript import JS_SUFFIXES, read_javascript
from llmledger.audit.model import AuditReport, Finding
from llmledger.audit.python import PythonFile, read_python

__all__ = ["PROJECT_MARKERS", "SKIPPED_FOLDERS", "audit", "project_of"]

#: Files that mark a project's root: ``llmledger.instrument()`` called anywhere in a
#: project covers the SDK clients of the whole project (one process, or its workers).
PROJECT_MARKERS = (
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "requirements.txt",
    "manage.py",
    "package.json",
)
#: Folders never read: dependencies, builds, caches.
SKIPPED_FOLDERS = frozenset(
    {
        "node_modules",
        "__pycache__",
        "site-packages",
        "dist",
        "build",
        ".next",
        ".venv",
        "venv",
        ".tox",
        ".git",
        ".mypy_cache",
        ".ruff_cache",
    }
)


def _files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(
            d for d in subfolders if d not in SKIPPED_FOLDERS and not d.startswith(".")
        )
        for name in sorted(names):
            path = Path(folder) / name
            if path.suffix == ".py" or path.suffix in JS_SUFFIXES:
                yield path


def project_of(path: Path, root: Path) -> Path:
    """The nearest folder above ``path`` holding a project marker (else ``root``)."""
    for folder in path.resolve().parents:
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return folder
    return root.resolve()


def _shown(path: Path, root: Path) -> str:
    base = root if root.is_dir() else root.parent
    try:
        return path.relative_to(base).as_posix()
    except ValueError:  # pragma: no cover - os.walk stays under root
        return path.as_posix()


def audit(root: Path) -> AuditReport:
    """Find the LLM calls under ``root`` (a folder or one file) that escape tracking.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "app.py").write_text("import openai\\nclient = openai.OpenAI()\\n")
        >>> [(f.rule, f.path, f.line) for f in audit(folder).findings]
        [('untracked-sdk-client', 'app.py', 2)]
    """
    report = AuditReport()
    pending: list[tuple[Path, PythonFile]] = []
    instrumented: set[Path] = set()
    kept: list[tuple[Finding, frozenset[int]]] = []
    for path in _files(root):
        shown = _shown(path, root)
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            report.errors.append((shown, str(exc)))
            continue
        report.files += 1
        if path.suffix == ".py":
            try:
                module = read_python(source, shown)
            except SyntaxError as exc:
                report.errors.append((shown, f"not valid Python: {exc.msg} (line {exc.lineno})"))
                continue
            project = project_of(path, root)
            if module.instruments:
                instrumented.add(project)
            pending.append((project, module))
            kept.extend((f, module.ignored_lines) for f in module.findings)
        else:
            found, ignored = read_javascript(source, shown)
            kept.extend((f, ignored) for f in found)
    for project, module in pending:
        if project not in instrumented:
            kept.extend((f, module.ignored_lines) for f in module.instrumented_clients)
    for finding, ignored in sorted(kept, key=lambda item: (item[0].path, item[0].line)):
        lines = range(finding.line, finding.end_line + 1)
        target = report.ignored if any(line in ignored for line in lines) else report.findings
        target.append(finding)
    return report
