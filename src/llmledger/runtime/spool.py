"""The spool folder around the journals: where each destination's journal lives, what the
folder holds (``llmledger spool status``), and batches set aside for good (``spool/refused``).

See :mod:`llmledger.runtime.journal` for the journal itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmledger.core.ids import new_id
from llmledger.runtime.journal import ACK, HEADER, SEGMENT

__all__ = [
    "REFUSED",
    "JournalStatus",
    "SetAsideIds",
    "journal_folder",
    "journal_status",
    "name_destination",
    "read_set_aside",
    "refused_batches",
    "set_aside",
]

_HEADER = HEADER
_ACK = ACK
_SEGMENT = SEGMENT
_ACK_SUFFIX = ".ack"
_DROPPED = ".dropped"
_DESTINATION = "destination"
#: The folder, beside the journals, holding batches set aside for good.
REFUSED = "refused"
_REFUSED_SUFFIX = ".json.gz"


def journal_folder(spool: str | os.PathLike[str], destination: str) -> Path:
    """The journal of events bound for ``destination`` (a database or service URL).

    Each destination has its own folder, so a replay never sends events to a
    store they were not meant for; the folder names its destination in a file.

    Example:
        >>> journal_folder("/tmp/spool", "sqlite:////tmp/ledger.db").name
        'j-abc098c4c94d'
    """
    digest = hashlib.sha256(destination.encode("utf-8")).hexdigest()[:12]
    return Path(spool) / f"j-{digest}"


def name_destination(folder: Path, destination: str) -> None:
    """Write which store the journal in ``folder`` feeds (for ``spool status``)."""
    path = folder / _DESTINATION
    with contextlib.suppress(OSError):
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(destination + "\n", encoding="utf-8")


@dataclass(frozen=True, slots=True)
class JournalStatus:
    """What the spool folder holds: journals waiting, batches set aside, drops.

    Attributes:
        folder: The spool folder (``$LLMLEDGER_HOME/spool``).
        destinations: Per destination: segments, events waiting, bytes, live owners.
        waiting_batches: Segment files holding events not yet stored.
        waiting_events: Events not yet stored.
        refused_batches: Batches set aside for good (``spool/refused``).
        refused_events: Events in them.
        dropped_events: Events dropped at the journal's disk limit (or a full disk).
        bytes: Bytes in the spool folder, set-aside batches included.
    """

    folder: Path
    destinations: tuple[dict[str, Any], ...]
    waiting_batches: int
    waiting_events: int
    refused_batches: int
    refused_events: int
    dropped_events: int
    bytes: int


def _count_records(path: Path) -> tuple[int, int, bool]:
    """Records after the acknowledged offset of one segment, its size, and whether a
    live process holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return 0, 0, False
    try:
        size = os.fstat(fd).st_size
        held = True
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            held = True
        else:
            held = False
            fcntl.flock(fd, fcntl.LOCK_UN)
        offset = 0
        with contextlib.suppress(OSError, struct.error):
            (offset,) = _ACK.unpack(path.with_suffix(_ACK_SUFFIX).read_bytes()[: _ACK.size])
        count = 0
        header = _HEADER.size
        while offset + header <= size:
            head = os.pread(fd, header, offset)
            if len(head) < header:
                break
            length, _ = _HEADER.unpack(head)
            if length == 0:  # the unused, allocated end of the segment
                size = offset
                break
            if offset + header + length > size:
                break
            offset += header + length
            count += 1
        return count, size, held
    finally:
        os.close(fd)


def _refused_files(spool: Path) -> list[Path]:
    try:
        names = sorted(n for n in os.listdir(spool / REFUSED) if n.endswith(_REFUSED_SUFFIX))
    except OSError:
        return []
    return [spool / REFUSED / name for name in names]


def _events_in_name(path: Path) -> int:
    count = path.name.removesuffix(_REFUSED_SUFFIX).rpartition("-")[2]
    return int(count) if count.isdigit() else 0


def journal_status(spool: str | os.PathLike[str]) -> JournalStatus:
    """What ``spool`` holds (``$LLMLEDGER_HOME/spool``), read from its files.

    Example:
        >>> import tempfile
        >>> status = journal_status(tempfile.mkdtemp())
        >>> status.waiting_events, status.refused_events, status.dropped_events
        (0, 0, 0)
    """
    spool = Path(spool)
    destinations = []
    total_bytes = waiting_batches = waiting_events = dropped = 0
    try:
        folders = sorted(p for p in spool.iterdir() if p.is_dir() and p.name.startswith("j-"))
    except OSError:
        folders = []
    for folder in folders:
        events = segments = size = live = lost = 0
        for path in sorted(folder.iterdir()):
            if path.suffix == _SEGMENT:
                count, seg_size, held = _count_records(path)
                size += seg_size
                live += held
                if count:
                    segments += 1
                    events += count
            elif path.suffix == _DROPPED:
                with contextlib.suppress(OSError, ValueError):
                    lost += int(path.read_text())
            elif path.suffix == _ACK_SUFFIX:
                with contextlib.suppress(FileNotFoundError):
                    size += path.stat().st_size
        try:
            destination = (folder / _DESTINATION).read_text(encoding="utf-8").strip()
        except OSError:
            destination = "?"
        destinations.append(
            {
                "folder": str(folder),
                "destination": destination,
                "waiting_batches": segments,
                "waiting_events": events,
                "dropped_events": lost,
                "writing_processes": live,
                "bytes": size,
            }
        )
        total_bytes += size
        waiting_batches += segments
        waiting_events += events
        dropped += lost
    refused = _refused_files(spool)
    for path in refused:
        with contextlib.suppress(FileNotFoundError):
            total_bytes += path.stat().st_size
    return JournalStatus(
        folder=spool,
        destinations=tuple(destinations),
        waiting_batches=waiting_batches,
        waiting_events=waiting_events,
        refused_batches=len(refused),
        refused_events=sum(_events_in_name(p) for p in refused),
        dropped_events=dropped,
        bytes=total_bytes,
    )


def set_aside(
    spool: str | os.PathLike[str],
    payload: bytes,
    count: int,
    limit_bytes: int,
    *,
    strict: bool = False,
) -> Path | str:
    """Keep a refused batch (a gzipped ``{"events": [...]}`` body) in ``spool/refused``.

    The body may say why, for all its events (``"reason"``) or for each
    (``"reasons"``, in the order of ``"events"``).  The file appears whole or
    not at all: a partial file is removed, so a full disk leaves nothing behind.

    Returns:
        The file written, or why it could not be.

    Raises:
        OSError: with ``strict``, when the file could not be written (a full
            folder, over ``limit_bytes``, is still answered with why).
    """
    folder = Path(spool) / REFUSED
    used = sum(p.stat().st_size for p in _refused_files(Path(spool)) if p.exists())
    if used + len(payload) > limit_bytes:
        return f"{folder} is full ({limit_bytes:,} bytes)"
    name = f"{new_id()}-{count}{_REFUSED_SUFFIX}"
    partial = folder / f".{name}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as out:
            out.write(payload)
        os.replace(partial, folder / name)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        if strict:
            raise
        return f"cannot write to {folder} ({exc})"
    return folder / name


class SetAsideIds:
    """The ids of the events set aside in ``spool/refused`` now, read from its files.

    Each file is read once; a file removed since (``spool requeue``) takes its
    ids with it, so an event requeued and refused again is set aside again.

    Example:
        >>> import tempfile
        >>> SetAsideIds(tempfile.mkdtemp()).current()
        set()
    """

    def __init__(self, spool: str | os.PathLike[str]) -> None:
        self.spool = Path(spool)
        self._files: dict[str, frozenset[str]] = {}

    def current(self) -> set[str]:
        """The ids (upper case) of the events in the set-aside files there now."""
        paths = {path.name: path for path in _refused_files(self.spool)}
        for gone in set(self._files) - set(paths):
            del self._files[gone]
        for name in set(paths) - set(self._files):
            try:
                items = read_set_aside(paths[name])
            except ValueError:  # removed meanwhile, or not ours: holds no id we set aside
                items = []
            self._files[name] = frozenset(
                item["id"].upper()
                for item in items
                if isinstance(item, dict) and isinstance(item.get("id"), str)
            )
        return set().union(*self._files.values())


def refused_batches(spool: str | os.PathLike[str]) -> list[Path]:
    """The batches set aside in ``spool/refused``, oldest first."""
    return _refused_files(Path(spool))


def read_set_aside(path: Path) -> list[dict[str, Any]]:
    """The events (JSON objects, in the shape of ``llmledger logs --json``) of a batch set aside.

    Raises:
        ValueError: when the file is not a gzipped ``{"events": [...]}`` body.
    """
    try:
        data = json.loads(gzip.decompress(path.read_bytes()))
        items = data["events"]
    except (OSError, EOFError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path.name} is not a batch of events: {exc}") from None
    if not isinstance(items, list):
        raise ValueError(f"{path.name} is not a batch of events")
    return items
