"""``llmledger audit``: LLM calls in a code base that escape tracking."""

from __future__ import annotations

import json
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import click

from llmledger.cli.common import print_table, settings_from

if TYPE_CHECKING:
    from llmledger.audit import AuditReport

__all__ = ["COMMANDS", "audit_command"]


@click.command("audit")
@click.argument(
    "paths",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, path_type=Path),
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("table", "json", "sarif")),
    default="table",
    show_default=True,
    help="Output: a table for people, JSON, or SARIF 2.1.0 for code scanning in CI.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the output to this file instead of the terminal.",
)
@click.pass_context
def audit_command(
    ctx: click.Context, paths: tuple[Path, ...], fmt: str, output: Path | None
) -> None:
    """Find LLM calls that escape tracking: untracked SDK clients, raw HTTP calls, keys.

    Reads Python (with the ast module) and JavaScript/TypeScript (token by token)
    under each PATH. Exits with status 1 when something is found, so CI can fail
    on it; a comment '# llmledger: ignore' (or '// llmledger: ignore') accepts
    the findings of its line.

    \b
    Examples:
      llmledger audit .
      llmledger audit src --format sarif -o llmledger.sarif
    """
    from llmledger.audit import AuditReport, audit, to_sarif

    settings_from(ctx)  # a broken config file is an error here too
    report = AuditReport()
    for path in paths:
        found = audit(path)
        if len(paths) > 1:
            prefix = path.as_posix().rstrip("/") + "/" if path.is_dir() else ""
            found.findings = [replace(f, path=prefix + f.path) for f in found.findings]
        report.findings += found.findings
        report.ignored += found.ignored
        report.files += found.files
        report.errors += found.errors
    for shown, reason in report.errors:
        click.echo(f"warning: skipped {shown}: {reason}", err=True)
    if fmt == "table":
        text = None
        if output is None:
            _print(report)
        else:
            text = "\n".join(
                f"{f.path}:{f.line}:{f.column}: {f.rule}: {f.message}" for f in report.findings
            )
    elif fmt == "json":
        text = json.dumps(report.to_dict(), indent=2)
    else:
        text = json.dumps(to_sarif(report, version("llmledger")), indent=2)
    if text is not None:
        if output is None:
            click.echo(text)
        else:
            output.write_text(text + "\n", encoding="utf-8")
    if report.findings:
        raise SystemExit(1)


def _print(report: AuditReport) -> None:
    if report.findings:
        print_table(
            None,
            ("where", "rule", "provider", "what"),
            [(f"{f.path}:{f.line}", f.rule, f.provider or "", f.message) for f in report.findings],
        )
    summary = (
        f"{len(report.findings)} finding(s) in {report.files} file(s)"
        f"{f'; {len(report.ignored)} accepted by llmledger: ignore' if report.ignored else ''}"
    )
    click.echo(summary if report.findings else f"no untracked LLM calls: {summary}")


COMMANDS = [audit_command]
