"""Importing the logs of home-grown loggers: CSV and JSON Lines, mapped onto events.

A :class:`Mapping` says which column becomes which event field (``section`` →
``feature``, ``location_id`` → ``tenant``, ``podcast_id`` → ``tag:podcast_id``,
``prompt_tokens`` → ``input_tokens``), which fields every row gets
(``provider=anthropic``) and the time zone of times written without an
offset.  Columns named like an event field map to it unless told otherwise;
nested JSON objects are read with dotted names (``usage.prompt_tokens``).

Each row becomes an event through :func:`~llmledger.runtime.recording.build_event`,
the validation :func:`llmledger.record` applies; a row it refuses is written, as
it was, to the rejects file with its line number and reason, so nothing is lost.
Rows are priced by the ledger's one price source unless they carry a cost, which
is kept as reported (``cost_source`` ``provider-reported``), and written with the
store's ``write``: ids are derived from the row (or its id column), so a second
run of the same file adds nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from llmledger.core.errors import ConfigError, InvalidEventError, LedgerError
from llmledger.core.events import UsageEvent
from llmledger.core.ids import derived_id, id_time_ms
from llmledger.core.usage import BUCKETS
from llmledger.runtime.ledger import Ledger
from llmledger.runtime.recording import build_event

__all__ = [
    "FIELDS",
    "ColumnMapping",
    "ImportResult",
    "Rejected",
    "default_rejects_path",
    "detect_format",
    "import_file",
    "load_mapping",
    "parse_assignments",
    "row_event",
]

Format = Literal["csv", "jsonl"]

#: Event fields a column may map to (besides ``tag:KEY`` and the token buckets).
TEXT_FIELDS = (
    "provider",
    "model",
    "response_model",
    "operation",
    "status",
    "tenant",
    "user",
    "feature",
    "session",
    "service_tier",
    "request_id",
    "finish_reason",
    "error_type",
    "error_message",
    "api_key_fingerprint",
)
#: Every target a column may map to: ``id``, ``ts``, the text fields, numbers, buckets.
FIELDS: tuple[str, ...] = ("id", "ts", *TEXT_FIELDS, "stream", "duration_ms", "cost", *BUCKETS)
_BATCH = 1000
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f", ""}


def _check_target(target: str) -> str:
    target = target.strip()
    if target in FIELDS or (target.startswith("tag:") and len(target) > 4):
        return target
    raise ConfigError(f"cannot map onto {target!r}: targets are {', '.join(FIELDS)} and tag:KEY")


@dataclass(frozen=True)
class ColumnMapping:
    """How the rows of one log become events.

    Attributes:
        columns: Source column (dotted for nested JSON) → target field.
        constants: Target field → a value every row gets (a column wins).
        tz: Zone of times written without an offset (None: such a time is refused).
        source: Name the derived ids are made from (default: the file's name).

    Example:
        >>> m = ColumnMapping.build(["section=feature", "podcast_id=tag:podcast_id"],
        ...                    ["provider=openai"])
        >>> m.columns["section"], m.constants["provider"]
        ('feature', 'openai')
    """

    columns: Mapping[str, str] = field(default_factory=dict)
    constants: Mapping[str, str] = field(default_factory=dict)
    tz: ZoneInfo | None = None
    source: str | None = None

    @classmethod
    def build(
        cls,
        maps: Sequence[str] = (),
        sets: Sequence[str] = (),
        *,
        tz: str | None = None,
        source: str | None = None,
        base: ColumnMapping | None = None,
    ) -> ColumnMapping:
        """A mapping from ``--map SRC=FIELD`` and ``--set FIELD=VALUE`` options, on top of
        ``base`` (a mapping file's).

        Raises:
            ConfigError: on a malformed option, an unknown target or time zone.
        """
        columns = dict(base.columns) if base else {}
        constants = dict(base.constants) if base else {}
        for column, target in parse_assignments(maps, "--map", "COLUMN=FIELD").items():
            columns[column] = _check_target(target)
        for target, value in parse_assignments(sets, "--set", "FIELD=VALUE").items():
            constants[_check_target(target)] = value
        zone = base.tz if base else None
        if tz:
            try:
                zone = ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigError(
                    f"unknown time zone {tz!r} (use an IANA name like America/Sao_Paulo)"
                ) from None
        return cls(columns, constants, zone, source or (base.source if base else None))


def parse_assignments(items: Sequence[str], option: str, shape: str) -> dict[str, str]:
    """``A=B`` options as a dict.

    Example:
        >>> parse_assignments(["section=feature"], "--map", "COLUMN=FIELD")
        {'section': 'feature'}

    Raises:
        ConfigError: on an item without ``=`` or with an empty side.
    """
    out: dict[str, str] = {}
    for item in items:
        left, sep, right = item.partition("=")
        if not sep or not left.strip() or (option == "--map" and not right.strip()):
            raise ConfigError(f"{option} takes {shape}, got {item!r}")
        out[left.strip()] = right.strip()
    return out


def load_mapping(path: Path) -> ColumnMapping:
    """A mapping file (YAML): ``map`` (column: field), ``set`` (field: value), ``tz``, ``source``.

    Raises:
        ConfigError: when the file cannot be read or is not such a mapping.
    """
    import pydantic
    import yaml

    class _File(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        map: dict[str, str] = {}
        set: dict[str, str | int | float | bool] = {}
        tz: str | None = None
        source: str | None = None

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        parsed = _File.model_validate(data)
    except OSError as exc:
        raise ConfigError(f"cannot read mapping file {path}: {exc.strerror or exc}") from None
    except (yaml.YAMLError, pydantic.ValidationError) as exc:
        detail = "; ".join(str(exc).splitlines()[:3])
        raise ConfigError(f"{path} is not a mapping file: {detail}") from None
    return ColumnMapping.build(
        [f"{k}={v}" for k, v in parsed.map.items()],
        [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in parsed.set.items()],
        tz=parsed.tz,
        source=parsed.source,
    )


# -- reading rows ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One record of the log: where it starts, its fields, and its text as read."""

    line: int
    data: dict[str, Any] | None
    text: str
    error: str | None = None


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        out[name] = value
    return out


def read_rows(text: Iterator[str], fmt: Format) -> Iterator[Row]:
    """The rows of a CSV (with a header) or JSON Lines stream, with their first line."""
    if fmt == "jsonl":
        for number, line in enumerate(text, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Row(number, None, line.rstrip("\n"), f"not JSON: {exc.msg}")
                continue
            if not isinstance(data, dict):
                yield Row(number, None, line.rstrip("\n"), "not a JSON object")
                continue
            yield Row(number, _flatten(data), line.rstrip("\n"))
        return
    reader = csv.reader(text)
    header = next(reader, None)
    if header is None:
        return
    header = [name.strip().lstrip("\ufeff") for name in header]
    start = reader.line_num + 1
    for cells in reader:
        buffer = io.StringIO()
        csv.writer(buffer).writerow(cells)
        raw = buffer.getvalue().rstrip("\r\n")
        first, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            yield Row(first, None, raw, f"{len(cells)} cells where the header has {len(header)}")
            continue
        yield Row(first, dict(zip(header, cells, strict=True)), raw)


# -- rows to events --------------------------------------------------------------------


def _number(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidEventError(f"{name}: not a whole number: {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text == "":
        return 0
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise InvalidEventError(f"{name}: not a whole number: {value!r}") from None
    if number != number.to_integral_value():
        raise InvalidEventError(f"{name}: not a whole number: {value!r}")
    return int(number)


def _time(value: Any, zone: ZoneInfo | None) -> datetime:
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        number = float(value)
        # Seconds, or milliseconds (JavaScript's Date.now()) past 2001-09-09.
        return datetime.fromtimestamp(number / 1000 if number > 1e11 else number, UTC)
    text = str(value).strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidEventError(f"ts: not an ISO 8601 time: {value!r}") from None
    if moment.tzinfo is None:
        if zone is None:
            raise InvalidEventError(
                f"ts: {value!r} has no UTC offset; say the log's zone with --tz (e.g. --tz UTC)"
            )
        moment = moment.replace(tzinfo=zone)
    return moment


def _row_id(ts: datetime, *parts: str) -> str:
    """The id of a row's event: its time, then a hash of where and what the row is."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return derived_id(int(ts.timestamp() * 1000), digest[:10])


def _is_ulid(text: str) -> bool:
    try:
        id_time_ms(text)
    except InvalidEventError:
        return False
    return text[0] in "01234567"


def row_event(
    data: Mapping[str, Any],
    mapping: ColumnMapping,
    *,
    source: str,
    occurrence: int,
    features: Collection[str] = (),
    now: datetime,
) -> UsageEvent:
    """The event of one row.

    Raises:
        LedgerError: with the reason, when the row cannot be an event.
    """
    values: dict[str, Any] = dict(mapping.constants)
    tags: dict[str, str] = {}
    columns = {name: name for name in data if name in FIELDS or name.startswith("tag:")}
    columns.update(mapping.columns)
    for column, target in columns.items():
        if column not in data:
            continue
        value = data[column]
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if isinstance(value, dict | list):
            raise InvalidEventError(f"{column}: an object where a value was expected")
        if target.startswith("tag:"):
            tags[target[4:]] = str(value).strip()
        else:
            values[target] = value
    for name in BUCKETS:
        if name in values:
            values[name] = _number(name, values[name])
    for name in TEXT_FIELDS:
        if name in values:
            values[name] = str(values[name]).strip()
    if "stream" in values:
        flag = str(values["stream"]).strip().lower()
        if flag not in _TRUE | _FALSE:
            raise InvalidEventError(f"stream: not true or false: {values['stream']!r}")
        values["stream"] = flag in _TRUE
    if "duration_ms" in values:
        try:
            values["duration_ms"] = float(values["duration_ms"])
        except (TypeError, ValueError):
            raise InvalidEventError(
                f"duration_ms: not a number: {values['duration_ms']!r}"
            ) from None
    if values.get("ts") is None:
        raise InvalidEventError("ts: no time (map the log's time column to ts)")
    values["ts"] = _time(values["ts"], mapping.tz)
    if "cost" in values:
        values["cost_source"] = "provider-reported"
    given = values.pop("id", None)
    canonical = json.dumps({k: str(v) for k, v in sorted(data.items())}, ensure_ascii=False)
    if given is not None and _is_ulid(str(given).strip()):
        values["id"] = str(given).strip().upper()
    elif given is not None:
        values["id"] = _row_id(values["ts"], source, "id", str(given).strip())
    else:
        values["id"] = _row_id(values["ts"], source, "row", canonical, str(occurrence))
    if tags:
        values["tags"] = tags
    return build_event(features=features, now=now, **values)


# -- the import ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row that could not be imported: its line and why."""

    line: int
    reason: str


@dataclass(slots=True)
class ImportResult:
    """What an import did.

    Attributes:
        rows: Rows read (blank lines are not rows).
        imported: Events stored by this run (with ``dry_run``: rows that would be).
        duplicates: Events already in the ledger (an earlier run of the same rows).
        rejected: Rows refused, with their line and reason.
        priced: Events priced by the price source (rows without a cost).
        reported: Events that kept the cost their row carried.
        unpriced: Events no price source knew.
        rejects_file: Where the refused rows were written (None when none were).
    """

    rows: int = 0
    imported: int = 0
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    priced: int = 0
    reported: int = 0
    unpriced: int = 0
    rejects_file: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (``llmledger import --json``)."""
        return {
            "rows": self.rows,
            "imported": self.imported,
            "duplicates": self.duplicates,
            "rejected": len(self.rejected),
            "priced": self.priced,
            "reported": self.reported,
            "unpriced": self.unpriced,
            "rejects_file": None if self.rejects_file is None else str(self.rejects_file),
            "rejections": [{"line": r.line, "reason": r.reason} for r in self.rejected],
        }


def detect_format(path: Path) -> Format:
    """``jsonl`` for ``.jsonl``/``.ndjson``/``.json`` files, else ``csv``."""
    return "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson", ".json") else "csv"


def default_rejects_path(path: Path) -> Path:
    """Where refused rows go by default: beside the log, ``NAME.rejected.EXT``."""
    return path.with_name(f"{path.stem}.rejected{path.suffix or '.csv'}")


class _Rejects:
    """The rejects file, opened on the first refused row."""

    def __init__(self, path: Path, fmt: Format, header: str | None) -> None:
        self.path = path
        self.fmt = fmt
        self.header = header
        self._file: Any = None

    def write(self, row: Row, reason: str) -> None:
        if self._file is None:
            try:
                self._file = self.path.open("w", encoding="utf-8", newline="")
            except OSError as exc:
                raise ConfigError(
                    f"cannot write the rejected rows to {self.path}: {exc.strerror or exc}"
                ) from None
            if self.fmt == "csv" and self.header is not None:
                self._file.write(self.header.rstrip("\r\n") + ",llmledger_line,llmledger_reason\n")
        if self.fmt == "csv":
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerow([row.line, reason])
            self._file.write(f"{row.text},{buffer.getvalue()}")
        else:
            self._file.write(
                json.dumps({"line": row.line, "reason": reason, "text": row.text}) + "\n"
            )

    def close(self) -> Path | None:
        if self._file is None:
            return None
        self._file.close()
        return self.path


def import_file(
    ledger: Ledger,
    path: Path,
    mapping: ColumnMapping,
    *,
    fmt: Format | None = None,
    rejects: Path | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import a CSV or JSON Lines log into the ledger (see the module).

    Args:
        ledger: Its store receives the events, its price source prices them.
        path: The log.
        mapping: How rows become events.
        fmt: ``csv`` or ``jsonl`` (default: from the file's suffix).
        rejects: Where refused rows go (default: :func:`default_rejects_path`).
        dry_run: Read, validate and price, but write nothing (rejected rows included).
        now: The clock for the future-time check (default: now).
        progress: Called with the bytes read so far, as rows are read.

    Raises:
        FileAccessError: when the log cannot be read.
    """
    fmt = fmt or detect_format(path)
    clock = now or datetime.now(UTC)
    source = mapping.source or path.name
    result = ImportResult()
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        from llmledger.core.errors import FileAccessError

        raise FileAccessError.from_os_error(exc, "cannot read the log") from None
    with handle:
        header = handle.readline() if fmt == "csv" else None
        handle.seek(0)
        sink = _Rejects(rejects or default_rejects_path(path), fmt, header)
        seen: dict[bytes, int] = {}
        batch: list[UsageEvent] = []
        lines = iter(handle.readline, "")
        try:
            for row in read_rows(lines, fmt):
                result.rows += 1
                reason = row.error
                if reason is None and row.data is not None:
                    # Identical rows are told apart by their order; a digest keeps this small.
                    text = json.dumps(row.data, sort_keys=True, default=str).encode()
                    key = hashlib.blake2b(text, digest_size=16).digest()
                    seen[key] = occurrence = seen.get(key, 0) + 1
                    try:
                        event = row_event(
                            row.data,
                            mapping,
                            source=source,
                            occurrence=occurrence,
                            features=ledger.features,
                            now=clock,
                        )
                        event = ledger.prepare(event)
                    except LedgerError as exc:
                        reason = str(exc)
                    else:
                        _count_price(result, event)
                        batch.append(event)
                if reason is not None:
                    result.rejected.append(Rejected(row.line, reason))
                    if not dry_run:
                        sink.write(row, reason)
                if len(batch) >= _BATCH:
                    _write(ledger, batch, result, dry_run)
                if progress is not None:
                    progress(handle.tell())
            _write(ledger, batch, result, dry_run)
        finally:
            result.rejects_file = sink.close()
    return result


def _count_price(result: ImportResult, event: UsageEvent) -> None:
    if event.cost is None:
        result.unpriced += 1
    elif event.cost_source == "provider-reported":
        result.reported += 1
    else:
        result.priced += 1


def _write(ledger: Ledger, batch: list[UsageEvent], result: ImportResult, dry_run: bool) -> None:
    if batch and dry_run:
        result.imported += len(batch)  # would be: duplicates are not looked for
    elif batch:
        written = ledger.store.write(batch)
        result.imported += len(written.inserted)
        result.duplicates += len(written.duplicates)
    batch.clear()
