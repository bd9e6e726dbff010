"""Reports as files: JSON, CSV, XLSX and Markdown, from the one report shape.

CSV and XLSX cells that a spreadsheet would run as a formula (text starting
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) are written with a
leading apostrophe, so a model name or tag value such as ``=HYPERLINK(…)``
shows as text instead of running.  So is text holding a line break (CR or LF):
a reader that splits rows at it would see a line of its own, so each line
inside that starts like a formula is escaped too, and CSV quotes every such
cell.  Numbers stay numbers.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from llmledger.core.errors import ExportError, FileAccessError, MissingDependencyError
from llmledger.core.events import UsageEvent
from llmledger.core.usage import BUCKETS
from llmledger.query.report import Report
from llmledger.query.spec import NONE_VALUE
from llmledger.wire.serialize import decimal_text

__all__ = [
    "CALL_COLUMNS",
    "FORMATS",
    "ExportFormat",
    "call_rows",
    "calls_to_csv",
    "csv_lines",
    "escape_formula",
    "export",
    "table_rows",
    "to_csv",
    "to_json",
    "to_markdown",
    "write_calls_xlsx",
    "write_text",
    "write_xlsx",
]

ExportFormat = Literal["json", "csv", "xlsx", "md"]
FORMATS: tuple[str, ...] = ("json", "csv", "xlsx", "md")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: A line inside a cell that starts like a formula (for readers that split rows there).
_LINE_FORMULA = re.compile(r"([\r\n])(?=[=+\-@\t])")


def escape_formula(text: str) -> str:
    """Text a spreadsheet shows as typed, never evaluates.

    Example:
        >>> escape_formula("=HYPERLINK(\\"http://x\\")"), escape_formula("gpt-4o")
        ('\\'=HYPERLINK("http://x")', 'gpt-4o')
        >>> escape_formula("a\\r@SUM(A1)")
        "'a\\r'@SUM(A1)"
    """
    if "\n" in text or "\r" in text:
        return "'" + _LINE_FORMULA.sub("\\1'", text)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        # str() would print a small cost as 2E-8, which people and spreadsheets misread.
        return decimal_text(value)
    return value


def _cell(value: Any) -> Any:
    return escape_formula(value) if isinstance(value, str) else _plain(value)


def table_rows(report: Report, *, total_row: bool = True) -> Iterator[list[Any]]:
    """The header, each row, then ``other`` and ``total`` rows, as plain cells.

    An ungrouped report has one row, the total, so no total row is added.

    Dimension values that are not set show as ``(none)``; costs stay ``Decimal``.

    Example:
        >>> from llmledger.query.spec import Query
        >>> r = Report(Query(by=("model",), metrics=("calls",)), {"calls": 3},
        ...            [{"model": "a", "calls": 2}, {"model": None, "calls": 1}])
        >>> list(table_rows(r))
        [['model', 'calls'], ['a', 2], ['(none)', 1], ['total', 3]]
    """
    columns = report.columns
    heads = [c for c in columns if c not in report.query.metrics]
    yield list(columns)
    for row in report.rows:
        yield [
            (NONE_VALUE if row.get(c) is None else row[c]) if c in heads else row.get(c)
            for c in columns
        ]
    for label, values in (("other", report.other), ("total", report.total)):
        if values is None or (label == "total" and not (total_row and heads)):
            continue
        first = [label, *([""] * (len(heads) - 1))] if heads else []
        yield [*first, *(values.get(m) for m in report.query.metrics)]


def to_json(report: Report) -> str:
    """The report's one JSON shape (see :meth:`Report.to_dict`), indented."""
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False)


def to_csv(report: Report) -> str:
    """CSV with a header row and the total last; formulas escaped.

    Example:
        >>> from llmledger.query.spec import Query
        >>> r = Report(Query(by=("model",), metrics=("cost",)), {"cost": Decimal("1")},
        ...            [{"model": "=1+1", "cost": Decimal("1")}])
        >>> print(to_csv(r))
        model,cost
        '=1+1,1
        total,1
        <BLANKLINE>
    """
    return "".join(csv_lines(table_rows(report)))


def csv_lines(rows: Iterable[list[Any]]) -> Iterator[str]:
    """Each row as one CSV line ending ``\n``; text cells formula-escaped."""
    # The csv module quotes the characters of its line terminator only: with
    # "\n" a bare CR would go out unquoted.  Rows are written ending "\r\n",
    # so cells holding either are quoted, and end "\n" as before.
    row = io.StringIO()
    writer = csv.writer(row, lineterminator="\r\n")
    for cells in rows:
        row.seek(0)
        row.truncate()
        writer.writerow(["" if v is None else _cell(v) for v in cells])
        yield row.getvalue()[:-2] + "\n"


#: Columns of an export of calls (one row per call), in order.
CALL_COLUMNS: tuple[str, ...] = (
    "id",
    "ts",
    "provider",
    "model",
    "response_model",
    "operation",
    "status",
    "price_status",
    "tenant",
    "user",
    "feature",
    "session",
    *BUCKETS,
    "cost",
    "cost_source",
    "duration_ms",
    "ttft_ms",
    "error_type",
    "tags",
)


def call_rows(events: Iterable[UsageEvent]) -> Iterator[list[Any]]:
    """The header (:data:`CALL_COLUMNS`), then one row per call; costs stay ``Decimal``.

    Tags are one JSON object per cell.

    Example:
        >>> from datetime import UTC, datetime
        >>> e = UsageEvent(provider="openai", model="=cmd", ts=datetime(2025, 1, 1, tzinfo=UTC))
        >>> header, row = call_rows([e])
        >>> dict(zip(header, row))["model"], dict(zip(header, row))["cost"]
        ('=cmd', None)
    """
    yield list(CALL_COLUMNS)
    for event in events:
        usage = event.usage
        yield [
            event.id,
            event.ts,
            event.provider,
            event.model,
            event.response_model,
            event.operation,
            event.status,
            event.price_status,
            event.tenant,
            event.user,
            event.feature,
            event.session,
            *(getattr(usage, bucket) for bucket in BUCKETS),
            event.cost,
            event.cost_source,
            event.duration_ms,
            event.ttft_ms,
            event.error_type,
            json.dumps(dict(event.tags), ensure_ascii=False, sort_keys=True) if event.tags else "",
        ]


def calls_to_csv(events: Iterable[UsageEvent]) -> Iterator[str]:
    """An export of calls as CSV lines (header first), formulas escaped; streamed.

    Example:
        >>> from datetime import UTC, datetime
        >>> e = UsageEvent(provider="openai", model="@x", ts=datetime(2025, 1, 1, tzinfo=UTC))
        >>> "'@x" in list(calls_to_csv([e]))[1]
        True
    """
    return csv_lines(call_rows(events))


def to_markdown(report: Report) -> str:
    """A Markdown table (pipes in values escaped).

    Example:
        >>> from llmledger.query.spec import Query
        >>> r = Report(Query(metrics=("calls",)), {"calls": 1}, [{"calls": 1}])
        >>> print(to_markdown(r))
        | calls |
        |---:|
        | 1 |
        <BLANKLINE>
    """
    rows = list(table_rows(report))
    header, body = rows[0], rows[1:]
    metrics = set(report.query.metrics)
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if c in metrics else "---" for c in header) + "|",
    ]
    for cells in body:
        text = ["" if v is None else str(_plain(v)) for v in cells]
        lines.append("| " + " | ".join(t.replace("|", "\\|") for t in text) + " |")
    return "\n".join(lines) + "\n"


def _xlsx_text(text: str) -> str:
    # XML cannot hold most control characters; openpyxl refuses them outright.
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    return escape_formula(ILLEGAL_CHARACTERS_RE.sub("\ufffd", text))


def _workbook(rows: Iterable[list[Any]], title: str) -> Any:
    """A workbook whose first sheet holds ``rows`` (header bold, text escaped)."""
    try:
        from openpyxl import Workbook
    except ImportError:
        raise MissingDependencyError(
            "xlsx reports need openpyxl: pip install 'llmledger[xlsx]'", name="openpyxl"
        ) from None
    from openpyxl.styles import Font

    workbook = Workbook()
    sheet = workbook.worksheets[0]
    sheet.title = title
    for cells in rows:
        converted = []
        for value in cells:
            if isinstance(value, Decimal):
                value = float(value)
            elif isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, str):
                value = _xlsx_text(value)
            converted.append(value)
        sheet.append(converted)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    return workbook


def _save(workbook: Any, path: str | Path) -> Path:
    target = Path(path)
    try:
        workbook.save(target)
    except OSError as exc:
        raise FileAccessError.from_os_error(exc, "cannot write the report") from None
    return target


def write_xlsx(report: Report, path: str | Path) -> Path:
    """Write an Excel workbook: a report sheet and a sheet with the query and rates.

    Needs ``openpyxl`` (``pip install 'llmledger[xlsx]'``).  Costs are written as
    numbers, text cells as text (formulas escaped).

    Raises:
        MissingDependencyError: when openpyxl is not installed.
        FileAccessError: when the file cannot be written.
    """
    workbook = _workbook(table_rows(report), "report")
    about = workbook.create_sheet("query")
    data = report.to_dict()
    for key, value in data["query"].items():
        about.append([key, _xlsx_text(json.dumps(value))])
    about.append(["currency", data["currency"]])
    about.append(["source", data["source"]])
    for rate in data["rates"]:
        about.append(["rate", f"1 USD = {rate['rate']} {rate['currency']} from {rate['from']}"])
    for note in data["notes"]:
        about.append(["note", _xlsx_text(note)])
    return _save(workbook, path)


def write_calls_xlsx(
    events: Iterable[UsageEvent], path: str | Path, about: Iterable[tuple[str, str]] = ()
) -> Path:
    """Write an export of calls as an Excel workbook: a ``calls`` sheet (one row per
    call, costs as numbers, text escaped) and a ``query`` sheet of ``about`` pairs.

    Raises:
        MissingDependencyError: when openpyxl is not installed.
        FileAccessError: when the file cannot be written.
    """
    workbook = _workbook(call_rows(events), "calls")
    sheet = workbook.create_sheet("query")
    for key, value in about:
        sheet.append([_xlsx_text(key), _xlsx_text(value)])
    return _save(workbook, path)


def write_text(path: str | Path, text: str) -> Path:
    """Write a rendered report to a file, as UTF-8 with the text's own line ends.

    Raises:
        FileAccessError: when the file cannot be written (a missing folder, no permission).

    Example:
        >>> import tempfile
        >>> write_text(Path(tempfile.mkdtemp()) / "r.csv", "model,cost\\n").name
        'r.csv'
    """
    target = Path(path)
    try:
        target.write_text(text, encoding="utf-8", newline="")
    except OSError as exc:
        raise FileAccessError.from_os_error(exc, "cannot write the report") from None
    return target


def export(report: Report, fmt: str, path: str | Path | None = None) -> str | None:
    """Render a report in ``fmt``; write it to ``path`` when given.

    Returns the text (None for XLSX, which needs a path).

    Raises:
        ExportError: on an unknown format, or XLSX without a path.
        MissingDependencyError: for XLSX when openpyxl is not installed.
        FileAccessError: when the file cannot be written.
    """
    if fmt == "xlsx":
        if path is None:
            raise ExportError("xlsx needs an output file (-o FILE)")
        write_xlsx(report, path)
        return None
    renderers = {"json": to_json, "csv": to_csv, "md": to_markdown}
    if fmt not in renderers:
        raise ExportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    text = renderers[fmt](report)
    if path is not None:
        write_text(path, text)
    return text
