"""The journal: every event on disk before ``record()`` returns, until its store has it.

The caller's thread serialises the event (``marshal`` of its fields, or of a
captured call's plain values) and copies it into this process's segment file,
which is mapped into memory (``mmap``, shared with the file) and whose disk
blocks were allocated and paged in when it was made (``posix_fallocate``,
``MAP_POPULATE``): an append is a memory copy, no system call, and can never
find the disk full.  From then on the event belongs to the operating system's
page cache: it survives the death of the process (SIGTERM, SIGKILL, an OOM
kill), though not a power loss unless ``journal_fsync`` is set.

Making a mapped segment takes milliseconds, so the caller's thread never does:
the background writer keeps one ready (:meth:`Journal.prepare_spare`), and
until it is there (the first events of a process) or where a segment cannot be
allocated or mapped (a nearly full disk, a file system without either),
appends are ``pwrite`` calls to a plain segment.  The unused end of a mapped
segment is zeros: a record header of length zero marks where its records end.  The background writer
(and, with ``url`` set, the remote sink behind it) reads the segments back in
batches and marks how far its store has committed; the heap never holds the
backlog, so memory stays flat however far behind the store falls.

Segments are claimed with an exclusive ``flock``: the lock belongs to the open
file and is released by the kernel when the process dies, whatever its pid
(pid reuse, pid 1 in a container).  A segment whose lock can be taken has no
live owner: the next process that uses the same destination, or its
``flush()``, claims it and replays it.  Replays are idempotent because the
store and the service skip event ids they already have, so every event is
stored exactly once.

Layout of ``$LLMLEDGER_HOME/spool``::

    spool/j-<hash>/destination        the database or service the events go to
    spool/j-<hash>/<ulid>.seg         records: <length u32><crc32 u32><payload>
    spool/j-<hash>/<ulid>.ack         8 bytes: how far the store committed
    spool/j-<hash>/<ulid>.dropped     events this process dropped at the disk limit
    spool/j-<hash>/<ulid>.making      a segment being made (renamed .seg once locked)
    spool/refused/<ulid>-<n>.json.gz  batches set aside for a person to look at

A payload is an event (``m``: ``marshal`` of its fields, ``p``: a pickle), a
captured call's plain values (``c``, its kept text among them), or an event with
the prompt and response text kept for it (``t``: ``marshal`` of the event's
payload, the prompt and the response: an event set aside and put back by
``spool requeue``), so kept text survives the process with its event.

(:mod:`llmledger.runtime.spool` names the folders, reads their status and keeps
the batches set aside.)

The disk limit (``spool_limit`` bytes per journal) bounds the folder: past it
new events are dropped, counted (``Ledger.stats()["dropped"]``, ``llmledger
spool status``) and logged as errors.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import marshal
import mmap
import os
import struct
import threading
import time
import weakref
import zlib
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from operator import attrgetter
from pathlib import Path
from typing import Any

from llmledger.core.billing import UsagePart
from llmledger.core.events import FrozenDict, UsageEvent
from llmledger.core.ids import new_id
from llmledger.core.usage import BUCKETS, Usage
from llmledger.runtime.captured import Captured

__all__ = [
    "ACK",
    "HEADER",
    "SEGMENT",
    "Chunk",
    "Journal",
    "decode_event",
    "decode_record",
    "decode_with_text",
    "encode_captured",
    "encode_event",
]

log = logging.getLogger("llmledger.runtime.journal")

#: A record's header: the payload's length and CRC-32.
HEADER = _HEADER = struct.Struct("<II")
#: An ``.ack`` file: the offset its segment is stored up to.
ACK = _ACK = struct.Struct("<Q")
SEGMENT = _SEGMENT = ".seg"
_ACK_SUFFIX = ".ack"
_DROPPED = ".dropped"
_MAKING = ".making"
_READ_CHUNK = 1 << 20
# Paged in when mapped (Linux): the first touch of a page costs the writer, not the caller.
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
_MARSHALLED = b"m"
_PICKLED = b"p"
_CAPTURED = b"c"
_WITH_TEXT = b"t"

#: The prompt and the response kept with one event (either may be None).
Text = tuple[str | None, str | None]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_SPECIAL = (
    "ts",
    "usage",
    "cost",
    "cost_breakdown",
    "tags",
    "usage_parts",
    "fee_counts",
    "usage_raw",
)
_PLAIN = tuple(f.name for f in fields(UsageEvent) if f.name not in _SPECIAL)
_plain = attrgetter(*_PLAIN)
_NO_TAGS: FrozenDict[Any] = FrozenDict()
_buckets = attrgetter(*BUCKETS)
_dumps = marshal.dumps


# -- one event as bytes ------------------------------------------------------------------


def encode_event(event: UsageEvent, text: Text | None = None) -> bytes:
    """The event as journal bytes: ``marshal`` of its fields (pickle for odd raw usage),
    with the prompt and response text kept for it when ``text`` is given.

    Example:
        >>> e = UsageEvent(provider="openai", model="gpt-4o",
        ...                ts=datetime(2025, 1, 1, tzinfo=UTC), tags={"env": "prod"})
        >>> decode_event(encode_event(e)) == e
        True
        >>> decode_with_text(encode_event(e, ("Hi?", "Hello."))) == (e, ("Hi?", "Hello."))
        True
    """
    if text is not None:
        return _WITH_TEXT + _dumps((_encode_fields(event), text[0], text[1]))
    return _encode_fields(event)


def _encode_fields(event: UsageEvent) -> bytes:
    cost = event.cost
    breakdown = event.cost_breakdown
    tags = event.tags
    parts = event.usage_parts
    fees = event.fee_counts
    try:
        return _MARSHALLED + _dumps(
            (
                _plain(event),
                (event.ts - _EPOCH) // _MICROSECOND,
                _buckets(event.usage),
                None if cost is None else str(cost),
                None if breakdown is None else {k: str(v) for k, v in breakdown.items()},
                dict(tags) if tags else None,
                tuple((p.model, _buckets(p.usage)) for p in parts) if parts else None,
                dict(fees) if fees else None,
                event.usage_raw,
            )
        )
    except ValueError:  # a raw usage marshal cannot hold: the slow, general way
        import pickle  # rare: imported when first needed

        return _PICKLED + pickle.dumps(event, protocol=pickle.HIGHEST_PROTOCOL)


def encode_captured(values: tuple[Any, ...]) -> bytes:
    """A captured call's plain values (:func:`~llmledger.runtime.captured.captured`) as
    journal bytes.

    Example:
        >>> decode_record(encode_captured(tuple(range(23)))).duration_ms
        7
    """
    try:
        return _CAPTURED + _dumps(values)
    except ValueError:  # a body value marshal cannot hold: as the JSON it came from
        import json  # rare: imported when first needed

        return _CAPTURED + _dumps(json.loads(json.dumps(values, default=str)))


def decode_record(data: bytes) -> UsageEvent | Captured:
    """What a journal record holds: an event (:func:`encode_event`), or a captured call
    (:func:`encode_captured`) whose event the writer builds.

    Raises:
        ValueError: when the bytes are neither.
    """
    if data[:1] == _CAPTURED:
        try:
            return Captured(*marshal.loads(data[1:]))
        except (EOFError, TypeError, ValueError) as exc:
            raise ValueError(f"unreadable record: {exc}") from None
    return decode_event(data)


def decode_with_text(data: bytes) -> tuple[UsageEvent, Text | None]:
    """The event of :func:`encode_event`'s bytes, and the text kept with it (or None).

    Raises:
        ValueError: when the bytes are not an encoded event.
    """
    if data[:1] != _WITH_TEXT:
        return decode_event(data), None
    try:
        fields_, prompt, response = marshal.loads(data[1:])
    except (EOFError, TypeError, ValueError) as exc:
        raise ValueError(f"unreadable record: {exc}") from None
    if not isinstance(fields_, bytes) or fields_[:1] in (_WITH_TEXT, _CAPTURED):
        raise ValueError("unreadable record: no event with the text")
    for value in (prompt, response):
        if value is not None and not isinstance(value, str):
            raise ValueError("unreadable record: the kept text is not text")
    return decode_event(fields_), (prompt, response)


def decode_event(data: bytes) -> UsageEvent:
    """The event of :func:`encode_event`'s bytes (its time in UTC), without its text.

    Raises:
        ValueError: when the bytes are not an encoded event.
    """
    if data[:1] == _WITH_TEXT:
        return decode_with_text(data)[0]
    kind, body = data[:1], data[1:]
    if kind == _PICKLED:
        import pickle

        event = pickle.loads(body)
        if not isinstance(event, UsageEvent):
            raise ValueError("not an event")
        return event
    if kind != _MARSHALLED:
        raise ValueError("unknown record kind")
    try:
        plain, ts_us, usage, cost, breakdown, tags, parts, fees, raw = marshal.loads(body)
    except (EOFError, TypeError) as exc:
        raise ValueError(f"unreadable record: {exc}") from None
    if type(plain) is not tuple or len(plain) != len(_PLAIN):
        raise ValueError("unreadable record: not an event's fields")
    values: dict[str, Any] = dict(zip(_PLAIN, plain, strict=True))
    # The fields were checked when the event was made: the fast constructor, with
    # the collections made the types the constructor would make.
    values["ts"] = _EPOCH + timedelta(microseconds=ts_us)
    values["usage"] = Usage(*usage)
    values["cost"] = None if cost is None else Decimal(cost)
    values["cost_breakdown"] = (
        None if breakdown is None else FrozenDict({k: Decimal(v) for k, v in breakdown.items()})
    )
    values["tags"] = FrozenDict(tags) if tags else _NO_TAGS
    values["usage_parts"] = tuple(UsagePart(m, Usage(*u)) for m, u in parts) if parts else ()
    values["fee_counts"] = FrozenDict(fees) if fees else _NO_TAGS
    values["usage_raw"] = raw
    if type(values["warnings"]) is not tuple:
        values["warnings"] = tuple(values["warnings"])
    return UsageEvent.from_fields(values)


# -- segments ------------------------------------------------------------------------------


class _Segment:
    """One segment file, held open and locked by this process."""

    __slots__ = (
        "ack_fd",
        "acked",
        "capacity",
        "end",
        "fd",
        "map",
        "orphan",
        "path",
        "read_to",
        "records",
        "sealed",
    )

    def __init__(self, path: Path, fd: int, *, orphan: bool) -> None:
        self.path = path
        self.fd = fd
        self.orphan = orphan
        self.sealed = orphan  # no more appends
        self.end = 0  # where the records end
        self.acked = 0  # committed by the store
        self.read_to = 0  # handed to the writer
        self.records = 0  # appended by this process
        self.ack_fd = -1
        self.map: mmap.mmap | None = None  # appends copy into it, up to capacity
        self.capacity = 0

    @property
    def ack_path(self) -> Path:
        return self.path.with_suffix(_ACK_SUFFIX)

    def load_ack(self) -> None:
        with contextlib.suppress(OSError, struct.error):
            (self.acked,) = _ACK.unpack(self.ack_path.read_bytes()[: _ACK.size])
        self.read_to = self.acked

    def ack(self, offset: int) -> None:
        self.acked = offset
        if self.ack_fd < 0:
            self.ack_fd = os.open(self.ack_path, os.O_RDWR | os.O_CREAT, 0o600)
        os.pwrite(self.ack_fd, _ACK.pack(offset), 0)

    def close(self, *, remove: bool) -> None:
        if self.map is not None:
            with contextlib.suppress(OSError, ValueError):
                self.map.close()
            self.map = None
            if not remove:  # give back the allocated blocks past the records
                with contextlib.suppress(OSError):
                    os.ftruncate(self.fd, self.end)
        if remove:
            # Unlinked while still locked, so no other process claims a half-gone file.
            for path in (self.path, self.ack_path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        for fd in (self.ack_fd, self.fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.fd = self.ack_fd = -1


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@dataclass(slots=True)
class Chunk:
    """Events read from the journal, to be committed together.

    Attributes:
        events: The events, in journal order.
        corrupt: Records that could not be read back (skipped, counted).
        texts: The prompt and response text kept with some of the events (records
            of kind ``t``), by event id; a captured call's text is in its values.
    """

    events: list[UsageEvent | Captured]
    corrupt: int
    _marks: list[tuple[_Segment, int]]
    own: int  # events appended by this process
    texts: dict[str, Text] = field(default_factory=dict)


_live: weakref.WeakSet[Journal] = weakref.WeakSet()
_fork_hook = False


def _after_fork_in_child() -> None:
    for journal in list(_live):
        journal._forget_after_fork()


class Journal:
    """An append-only, crash-surviving log of events in one folder.

    Args:
        folder: The journal's folder (one per destination: :func:`journal_folder`).
        limit_bytes: Most bytes the folder may hold; past it events are dropped and counted.
        segment_bytes: Size of a segment file (its blocks are allocated when it is
            made); appends that do not fit go to a new one.
        fsync: ``os.fsync`` after every append (survives power loss; much slower).
        drop_log_interval: Least seconds between two "journal full" errors in the log.

    Example:
        >>> import tempfile
        >>> journal = Journal(tempfile.mkdtemp())
        >>> e = UsageEvent(provider="openai", model="gpt-4o", ts=datetime.now(UTC))
        >>> journal.append(e)
        True
        >>> chunk = journal.read(10)
        >>> [x.id for x in chunk.events] == [e.id]
        True
        >>> journal.commit(chunk)
        >>> journal.read(10) is None
        True
        >>> journal.close()
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        limit_bytes: int = 1_000_000_000,
        segment_bytes: int = 8 << 20,
        fsync: bool = False,
        drop_log_interval: float = 10.0,
    ) -> None:
        global _fork_hook
        self.folder = Path(folder)
        self.limit_bytes = limit_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.drop_log_interval = drop_log_interval
        self._lock = threading.Lock()
        self._claim_lock = threading.Lock()
        self._spare_lock = threading.Lock()
        self._active: _Segment | None = None
        self._spare: _Segment | None = None  # made by the writer, mapped, for the next appends
        self._own: list[_Segment] = []  # oldest first; the active one last
        self._orphans: list[_Segment] = []
        #: Segments of dead processes claimed, and of those, how many were stored and
        #: removed (in the order they were claimed).
        self.orphans_claimed = 0
        self.orphans_finished = 0
        # Segments handed to another process (hand_off), with their record counts.
        self._handed: list[tuple[Path, int]] = []
        self._size: int | None = None
        self.appended = 0
        self.committed = 0  # of this process's own events
        self.dropped = 0
        self._dropped_logged = 0
        self._last_drop_log = float("-inf")
        self._last_rescan = float("-inf")
        self._closed = False
        _live.add(self)
        if not _fork_hook:
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_hook = True

    # -- the caller's side ---------------------------------------------------------------

    def append(self, event: UsageEvent | tuple[Any, ...], text: Text | None = None) -> bool:
        """Write one event (with the prompt and response ``text`` kept for it, if
        given), or a captured call's plain values, to the operating system;
        never raises.

        Returns:
            False when it was dropped (journal full, disk full, journal closed),
            which is counted in :attr:`dropped` and logged.
        """
        try:
            if isinstance(event, tuple):
                payload = encode_captured(event)
            else:
                payload = encode_event(event, text)
            record = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        except Exception as exc:  # pragma: no cover - every event field is encodable
            self._drop(f"cannot encode event {getattr(event, 'id', '(captured call)')}: {exc}")
            return False
        size = len(record)
        with self._lock:
            segment = self._active
            if (
                segment is None
                or segment.end + size > segment.capacity
                or (segment.map is None and self._spare is not None)
            ):
                if self._closed:
                    self._drop("the journal is closed")
                    return False
                segment = self._next_segment(size)
                if segment is None:
                    return False
            start = segment.end
            end = start + size
            view = segment.map
            if view is not None:
                view[start:end] = record
                if self.fsync:
                    page = start - start % mmap.PAGESIZE
                    view.flush(page, end - page)
            elif not self._write(segment, record):
                return False
            segment.end = end
            segment.records += 1
            self.appended += 1
        return True

    def _write(self, segment: _Segment, record: bytes) -> bool:
        """Append a record with a system call (a segment that could not be mapped)."""
        try:
            written = os.pwrite(segment.fd, record, segment.end)
            if self.fsync:
                os.fsync(segment.fd)
        except OSError as exc:
            written = -1
            problem = str(exc)
        else:
            problem = "short write (disk full?)"
        if written == len(record):
            return True
        if written > 0:  # a torn record would hide every later one: cut it off
            with contextlib.suppress(OSError):
                os.ftruncate(segment.fd, segment.end)
        self._drop(f"cannot write to {segment.path}: {problem}")
        return False

    def _next_segment(self, size: int) -> _Segment | None:
        """A new segment with room for a ``size``-byte record, within the disk limit; None
        when there is none (the event is dropped, counted and logged)."""
        used = self._size
        if used is None:
            used = self._size = self._folder_size()
        if used + size > self.limit_bytes:
            # The cached size may miss segments the writer removed since: look again,
            # at most twice a second while full.
            now = time.monotonic()
            if now - self._last_rescan >= 0.5:
                self._last_rescan = now
                used = self._size = self._folder_size()
            if used + size > self.limit_bytes:
                self._drop(f"the journal {self.folder} is full ({self.limit_bytes:,} bytes)")
                return None
        spare = self._spare
        if spare is not None and spare.capacity >= size:
            self._spare = None
            segment = spare
        else:
            capacity = min(max(self.segment_bytes, size), self.limit_bytes - used)
            try:
                segment = self._create(capacity, mapped=False)
            except OSError as exc:
                self._drop(f"cannot create a journal segment in {self.folder}: {exc}")
                return None
            self._size = used + segment.capacity
        if self._active is not None:
            self._active.sealed = True
        self._own.append(segment)
        self._active = segment
        return segment

    def prepare_spare(self) -> None:
        """Make the next segment, allocated, mapped and paged in, so appends never wait
        for one (the writer calls it; never raises)."""
        if self._spare is not None or self._closed:
            return
        with self._spare_lock:  # close() waits for a spare being made: no file left behind
            self._prepare_spare()

    def _prepare_spare(self) -> None:
        try:
            with self._lock:
                if self._closed:
                    return
                used = self._size
                if used is None:
                    used = self._size = self._folder_size()
                capacity = min(self.segment_bytes, self.limit_bytes - used)
                if capacity < min(self.segment_bytes, 1 << 16) or self._spare is not None:
                    return  # too near the disk limit: appends make plain segments
                self._size = used + capacity
            spare = self._create(capacity, mapped=True)
        except OSError as exc:
            log.debug("llmledger: no spare journal segment in %s: %s", self.folder, exc)
            return
        if spare.map is None:  # mapping failed: plain segments will do
            spare.close(remove=True)
            self._size = None
            return
        with self._lock:
            if self._closed:
                spare.close(remove=True)
            else:
                self._spare = spare

    def _drop(self, reason: str) -> None:
        self.dropped += 1
        now = time.monotonic()
        if now - self._last_drop_log >= self.drop_log_interval:
            self._last_drop_log = now
            log.error("llmledger dropped an event: %s; %d dropped so far", reason, self.dropped)
            self._save_dropped()

    def _save_dropped(self) -> None:
        """Keep this process's drop count beside its segment, for ``spool status``."""
        if self.dropped == self._dropped_logged or self._active is None:
            return
        path = self._active.path.with_suffix(_DROPPED)
        try:
            path.write_text(str(self.dropped))
        except OSError:  # a full disk: no empty file left behind
            with contextlib.suppress(OSError):
                path.unlink()
        else:
            self._dropped_logged = self.dropped

    def _create(self, capacity: int, *, mapped: bool) -> _Segment:
        """A new segment file, locked; ``mapped``: its blocks allocated, mapped and paged
        in (left unmapped when that fails, appends then write)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = new_id()
        # Made and locked under another name, then renamed: a segment file is never
        # seen unlocked, so no other process takes a new one for an empty leftover.
        making = self.folder / f"{name}{_MAKING}"
        path = self.folder / f"{name}{_SEGMENT}"
        fd = os.open(making, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(making, path)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                making.unlink()
            raise
        segment = _Segment(path, fd, orphan=False)
        segment.capacity = capacity
        if mapped:
            try:
                os.posix_fallocate(fd, 0, capacity)
                segment.map = mmap.mmap(fd, capacity, flags=_MAP_FLAGS)
            except (OSError, ValueError) as exc:
                log.debug("llmledger: journal segment %s not mapped: %s", path, exc)
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
        return segment

    def _folder_size(self) -> int:
        total = 0
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.folder):
                if entry.name.endswith(_SEGMENT):
                    with contextlib.suppress(FileNotFoundError):
                        total += entry.stat().st_size
        return total

    # -- the writer's side ---------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Events this process appended that its store has not committed yet."""
        return self.appended - self.committed

    def claim_orphans(self) -> int:
        """Claim the segments no live process holds (left by processes that died).

        Returns:
            How many segments were claimed.
        """
        with self._claim_lock:
            return self._claim_orphans()

    def _claim_orphans(self) -> int:
        claimed = 0
        held = {s.path.name for s in (*self._own, *self._orphans)}
        try:
            listed = os.listdir(self.folder)
        except OSError:  # no folder yet (or not a folder): nothing was left there
            return 0
        self._remove_unfinished([n for n in listed if n.endswith(_MAKING)])
        for name in sorted(n for n in listed if n.endswith(_SEGMENT)):
            if name in held:
                continue
            path = self.folder / name
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            if not _try_lock(fd):
                os.close(fd)
                continue
            if not path.exists():  # finished and removed by the owner before we locked it
                os.close(fd)
                continue
            segment = _Segment(path, fd, orphan=True)
            segment.end = os.fstat(fd).st_size
            segment.load_ack()
            if segment.acked < segment.end:
                head = os.pread(fd, _HEADER.size, segment.acked)
                if len(head) < _HEADER.size or _HEADER.unpack(head)[0] == 0:
                    segment.end = segment.acked  # only the unused, allocated end is left
            if segment.acked >= segment.end:  # all stored (or empty): only the file was left
                segment.close(remove=True)
                continue
            self._orphans.append(segment)
            self.orphans_claimed += 1
            claimed += 1
        return claimed

    def _remove_unfinished(self, names: list[str]) -> None:
        """Remove segments a dead process began to make (``names``) and never used,
        once a minute old."""
        for name in names:
            path = self.folder / name
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime < 60:
                    continue
                fd = os.open(path, os.O_RDWR)
                try:
                    if _try_lock(fd):
                        path.unlink()
                finally:
                    os.close(fd)

    @property
    def orphans_waiting(self) -> bool:
        """Whether claimed segments of dead processes still hold uncommitted events."""
        return bool(self._orphans)

    def read(self, most: int) -> Chunk | None:
        """The next events not yet handed out: claimed orphans first, then this process's.

        Returns:
            Up to ``most`` events, or None when everything was handed out.
        """
        events: list[UsageEvent | Captured] = []
        texts: dict[str, Text] = {}
        marks: list[tuple[_Segment, int]] = []
        corrupt = 0
        own = 0
        # No lock: the writer must never wait on the caller's thread, which may be the
        # one running a signal handler that waits for the writer.  Copying a list and
        # reading an int are atomic; an end read early only means a shorter chunk.
        segments = [*self._orphans, *self._own]
        ends = {id(s): s.end for s in segments}
        for segment in segments:
            if len(events) >= most:
                break
            start = segment.read_to
            offset, records, bad = self._read_segment(
                segment, start, ends[id(segment)], most, events, texts
            )
            corrupt += bad
            if offset != start:
                segment.read_to = offset
                marks.append((segment, offset))
                if not segment.orphan:
                    own += records
            elif segment.sealed and segment.acked >= segment.end:
                # Its last chunk ended just before the zeros of its unused end, found
                # only now: everything in it is stored, and no chunk holds it.
                self._retire(segment)
        if not marks:
            return None
        return Chunk(events, corrupt, marks, own, texts)

    def _read_segment(
        self,
        segment: _Segment,
        start: int,
        end: int,
        most: int,
        out: list[UsageEvent | Captured],
        texts: dict[str, Text],
    ) -> tuple[int, int, int]:
        """Decode records of ``segment`` from ``start`` into ``out`` (the text kept with
        an event into ``texts``).

        Returns:
            The offset reached, the records read and how many of them were unreadable.
        """
        offset = start
        corrupt = records = 0
        buffer = b""
        base = start
        header = _HEADER.size
        while len(out) < most and offset < end:
            rel = offset - base
            if len(buffer) - rel < header:
                buffer = os.pread(segment.fd, min(_READ_CHUNK, end - offset), offset)
                base, rel = offset, 0
            if len(buffer) - rel >= header:
                length, crc = _HEADER.unpack_from(buffer, rel)
                if length == 0:  # the zeros after the last record of a dead process's segment
                    segment.end = end = offset
                    break
                if len(buffer) - rel < header + length <= end - offset:
                    buffer = os.pread(segment.fd, max(_READ_CHUNK, header + length), offset)
                    base, rel = offset, 0
            if len(buffer) - rel < header and not buffer[rel:].strip(b"\0"):
                # Fewer zeros than a header after the last record of a full segment:
                # the record that came next did not fit, and went to the next segment.
                segment.end = end = offset
                break
            if len(buffer) - rel < header or len(buffer) - rel < header + length:
                # A record cut short (the process died in a write on a full disk):
                # nothing can follow it.
                log.warning(
                    "llmledger: %d bytes of an incomplete record end %s; skipped",
                    end - offset,
                    segment.path,
                )
                corrupt += 1
                offset = end
                break
            payload = buffer[rel + header : rel + header + length]
            offset += header + length
            records += 1
            try:
                if zlib.crc32(payload) != crc:
                    raise ValueError("checksum mismatch")
                if payload[:1] == _WITH_TEXT:
                    event, text = decode_with_text(payload)
                    if text is not None:
                        texts[event.id] = text
                    out.append(event)
                else:
                    out.append(decode_record(payload))
            except Exception as exc:
                corrupt += 1
                log.error("llmledger: unreadable record in %s skipped: %s", segment.path, exc)
        return offset, records, corrupt

    def commit(self, chunk: Chunk) -> None:
        """Mark the chunk's events as stored: finished segments are removed."""
        # Sealed segments are never appended to again, so they need no lock (see read()).
        for segment, offset in chunk._marks:
            try:
                segment.ack(offset)
            except OSError as exc:  # pragma: no cover - a replay later is idempotent
                log.warning("llmledger: cannot mark progress in %s: %s", segment.path, exc)
            if offset >= segment.end and segment.sealed:
                self._retire(segment)
        self.committed += chunk.own
        active = self._active
        # A consumed active segment past 1 MiB is swapped for a fresh one, so the disk
        # holds the backlog, not the history; only when the caller is not appending.
        if (
            active is not None
            and active.acked >= active.end >= min(1 << 20, self.segment_bytes)
            and self._lock.acquire(blocking=False)
        ):
            try:
                if self._active is active and active.acked >= active.end and not self._closed:
                    active.sealed = True
                    self._active = None
                    self._retire(active)
            finally:
                self._lock.release()
        if self._handed:  # handed off, then claimed back here (the writer process died)
            self.settle_handed()

    def hand_off(self) -> int:
        """Seal every segment of this process and release it for another process to
        write (the writer process: :mod:`llmledger.runtime.drain`), as if its owner had
        died; appends go on in a new segment.  Only for a journal this process never
        reads from.

        Returns:
            How many events were handed off.
        """
        with self._lock:
            own, self._own, self._active = self._own, [], None
            handed = 0
            for segment in own:
                if segment.records == 0:  # a plain first segment swapped for a mapped one
                    segment.close(remove=True)
                    continue
                segment.sealed = True
                # Unmapped and cut to its records, then unlocked: the next claim_orphans()
                # anywhere finds a complete segment with no live owner.
                segment.close(remove=False)
                self._handed.append((segment.path, segment.records))
                handed += segment.records
            if own:
                self._size = None
            return handed

    def settle_handed(self) -> int:
        """Count as committed the handed-off segments that are gone: whoever claimed one
        removes it once its store has every event in it.

        Returns:
            How many segments handed off are still waiting.
        """
        if not self._handed:
            return 0
        with self._lock:
            waiting = []
            for path, records in self._handed:
                if path.exists():
                    waiting.append((path, records))
                else:
                    self.committed += records
            self._handed = waiting
            return len(waiting)

    def rewind(self, chunk: Chunk) -> None:
        """Hand the chunk's events out again (its store did not take them)."""
        for segment, _ in chunk._marks:
            segment.read_to = segment.acked

    def _retire(self, segment: _Segment) -> None:
        segment.close(remove=True)
        if segment in self._own:
            self._own.remove(segment)
        if segment in self._orphans:
            self._orphans.remove(segment)
            self.orphans_finished += 1
        self._size = None

    def close(self) -> None:
        """Release every segment: consumed ones are removed, the rest stay for the next process."""
        with self._spare_lock, self._lock:
            self._closed = True
            self._save_dropped()
            for segment in [*self._orphans, *self._own]:
                done = segment.acked >= segment.end
                segment.close(remove=done)
            self._orphans.clear()
            self._own.clear()
            self._active = None
            if self._spare is not None:
                self._spare.close(remove=True)
                self._spare = None
        _live.discard(self)

    def _forget_after_fork(self) -> None:
        # The parent keeps its segments (and their locks); the child starts its own.
        self._lock = threading.Lock()
        self._claim_lock = threading.Lock()
        self._spare_lock = threading.Lock()
        spare = [self._spare] if self._spare is not None else []
        for segment in [*self._orphans, *self._own, *spare]:
            if segment.map is not None:  # the child's own view of the parent's file
                with contextlib.suppress(OSError, ValueError):
                    segment.map.close()
            for fd in (segment.fd, segment.ack_fd):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
        self._orphans = []
        self.orphans_claimed = self.orphans_finished = 0
        self._own = []
        self._handed = []
        self._active = None
        self._spare = None
        self.appended = self.committed = self.dropped = 0
