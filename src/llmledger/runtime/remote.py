"""The remote sink: the SDK sends its events to an llmledger service instead of a database.

:class:`RemoteSink` is an :class:`~llmledger.runtime.writer.EventSink`, so the ledger's
background writer keeps doing the batching, the queue bound and the flush at
exit; this module adds what the network needs:

- batches of up to 1,000 events and ``max_body_bytes``, gzip-compressed, in the
  JSON shape of ``llmledger logs --json``; an event whose prompt and response
  text is kept carries it in ``content`` (taken from the ledger's
  :class:`~llmledger.runtime.content.PendingContent`), so the text is sent, spooled and
  replayed with its event;
- retries with growing pauses on 429 and 5xx answers and on connection errors
  (honouring ``Retry-After``), within a time budget per batch so an exiting
  process is never held for long;
- a spool on disk (``$LLMLEDGER_HOME/spool``, bounded by ``spool_limit`` bytes)
  for batches the service could not take, replayed oldest first before the next
  batch is sent and by a background thread while the spool is not empty; event
  ids make every replay idempotent, so each event is stored exactly once;
- a batch the service refuses for good (a 4xx other than 401, 403, 408 and 429)
  never blocks the spool: one answered 413 (too large) is split in halves and
  sent again, and whatever is still refused is set aside in ``spool/refused``
  (within the same ``spool_limit``) for a person to look at, and logged;
- counters of what was sent, spooled, replayed, set aside and dropped; every
  drop is logged.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from llmledger.core.errors import (
    BatchRefused,
    ConfigError,
    InvalidEventError,
    ServiceUnavailable,
)
from llmledger.core.events import UsageEvent
from llmledger.core.ids import new_id
from llmledger.core.settings import Settings
from llmledger.wire.parse import MAX_CONTENT_CHARS
from llmledger.wire.serialize import event_to_json

if TYPE_CHECKING:
    from llmledger.runtime.content import ContentRecord, PendingContent
    from llmledger.store.protocol import WriteResult

__all__ = [
    "BatchRefused",
    "RemoteSink",
    "RemoteStats",
    "ServiceUnavailable",
    "SpoolStatus",
    "requeue_refused",
    "spool_status",
]

log = logging.getLogger("llmledger.runtime.remote")

_MAX_BATCH = 1000
_BODY_START = b'{"events":['
_BODY_END = b"]}"
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_SUFFIX = ".json.gz"
_CLAIMED = ".sending-"


#: 4xx answers worth retrying: the key may be fixed, the service may catch up.
_NOT_FINAL = frozenset({401, 403, 408, 429})
_REFUSED = "refused"


@dataclass(slots=True)
class RemoteStats:
    """What a remote sink did with the events it was given."""

    sent: int = 0
    duplicates: int = 0
    rejected: int = 0
    spooled: int = 0
    replayed: int = 0
    refused: int = 0
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class SpoolStatus:
    """What a spool folder holds: batches waiting to be sent, and batches set aside."""

    folder: Path
    waiting_batches: int
    waiting_events: int
    refused_batches: int
    refused_events: int
    bytes: int


def _batch_files(folder: Path) -> list[Path]:
    """Spooled batch files of a folder, oldest first (their names start with a ULID)."""
    try:
        names = sorted(p for p in os.listdir(folder) if p.endswith(_SUFFIX))
    except FileNotFoundError:
        return []
    return [folder / name for name in names]


def _events_in(files: Sequence[Path]) -> int:
    """Events in batch files, from their names (``<ulid>-<count>.json.gz``)."""
    total = 0
    for path in files:
        count = path.name.removesuffix(_SUFFIX).rpartition("-")[2]
        total += int(count) if count.isdigit() else 0
    return total


def spool_status(folder: str | os.PathLike[str]) -> SpoolStatus:
    """What the spool folder holds (``$LLMLEDGER_HOME/spool`` for a ledger).

    Example:
        >>> import tempfile
        >>> status = spool_status(tempfile.mkdtemp())
        >>> status.waiting_events, status.refused_events, status.bytes
        (0, 0, 0)
    """
    folder = Path(folder)
    waiting = _batch_files(folder)
    refused = _batch_files(folder / _REFUSED)
    size = 0
    for path in (*waiting, *refused):
        with contextlib.suppress(FileNotFoundError):
            size += path.stat().st_size
    return SpoolStatus(
        folder=folder,
        waiting_batches=len(waiting),
        waiting_events=_events_in(waiting),
        refused_batches=len(refused),
        refused_events=_events_in(refused),
        bytes=size,
    )


def requeue_refused(folder: str | os.PathLike[str]) -> int:
    """Move the batches set aside in ``spool/refused`` back into the spool, to be sent again.

    For after the cause is fixed (a service upgraded, its body limit raised);
    the next replay sends them, oldest first, and event ids keep it idempotent.

    Returns:
        How many events were moved back.

    Example:
        >>> import tempfile
        >>> requeue_refused(tempfile.mkdtemp())
        0
    """
    folder = Path(folder)
    moved = []
    for path in _batch_files(folder / _REFUSED):
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, folder / path.name)
            moved.append(path)
    return _events_in(moved)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process
        return True
    return True


@dataclass
class _Answered:
    """What the service said about the events of one write, as the answers come."""

    stored: list[UsageEvent] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


class RemoteSink:
    """Sends event batches to ``POST /v1/events`` of an llmledger service.

    Args:
        url: The service's base URL (``https://ledger.example.com``).
        api_key: An ingest (or admin) key.
        spool_dir: Folder for batches the service could not take.
        spool_limit: Most bytes kept in the spool; a batch that does not fit is
            dropped, counted and logged.
        transport: An httpx transport (tests use ``httpx.MockTransport``).
        timeout: Seconds per request.
        retries: Extra attempts for a batch answered 429/5xx or not answered.
        backoff: Pause before the first retry; it doubles, up to ``max_backoff``.
        budget: Most seconds spent on one batch before it is spooled instead (kept
            under the writer's exit timeout, so exiting never loses a batch).
        replay_interval: Seconds between replay attempts while the service is down.
        background: Replay the spool from a background thread too (not only
            before the next batch).
        content: Where the kept text of the events waits; each event's text is
            sent with it.
        max_body_bytes: Largest request body (uncompressed) the service accepts;
            batches are split to stay under it.

    Example:
        >>> import tempfile
        >>> sink = RemoteSink("http://127.0.0.1:9", "llk_x_y", spool_dir=tempfile.mkdtemp(),
        ...                   retries=0, background=False)
        >>> sink.write([]).count
        0
        >>> sink.stats.sent, sink.spooled_events
        (0, 0)
        >>> sink.close()
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        spool_dir: str | os.PathLike[str],
        spool_limit: int = 100_000_000,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 4.0,
        budget: float = 8.0,
        replay_interval: float = 5.0,
        background: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        content: PendingContent | None = None,
        max_body_bytes: int = 10_000_000,
    ) -> None:
        self.url = url.rstrip("/")
        self.content = content
        self.max_body_bytes = max_body_bytes
        self.spool_dir = Path(spool_dir)
        self.spool_limit = spool_limit
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.budget = budget
        self.replay_interval = replay_interval
        self.timeout = timeout
        self.stats = RemoteStats()
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=self.url,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
                "User-Agent": "llmledger-remote-sink",
            },
            timeout=timeout,
            transport=transport,
        )
        self._lock = threading.RLock()
        self._down_until = 0.0
        self._closed = not background
        self._stop = threading.Event()
        self._replayer: threading.Thread | None = None
        self._release_stale_claims()
        if self._spooled_files():
            self._start_replayer()

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> RemoteSink:
        """The sink named by ``url`` and ``api_key``, spooling to ``home/spool``.

        Raises:
            ConfigError: when ``url`` is set without ``api_key``.
        """
        if not settings.url or not settings.api_key:
            raise ConfigError("LLMLEDGER_URL is set but LLMLEDGER_API_KEY is not: set both")
        return cls(
            settings.url,
            settings.api_key,
            spool_dir=settings.home / "spool",
            spool_limit=settings.spool_limit,
            max_body_bytes=settings.max_body_bytes,
            **options,
        )

    # -- the writer's side ---------------------------------------------------------------

    def write(
        self,
        batch: Sequence[UsageEvent],
        *,
        on_error: Callable[[UsageEvent, Exception], None] | None = None,
    ) -> WriteResult:
        """Send events (spooling them when the service is unreachable).

        Returns:
            What the service answered: the events it stored, the ids it already
            had and those it rejected.  Spooled events are in none of them.
        """
        from llmledger.store.protocol import WriteResult  # the store's imports wait for a write

        with self._lock:
            if self._spooled_files() and time.monotonic() >= self._down_until:
                self.replay()
            answered = _Answered()
            requests = self._requests(batch)
            for index, (chunk, payload) in enumerate(requests):
                if time.monotonic() < self._down_until:
                    self._spool(payload, len(chunk))
                    continue
                try:
                    results = self._deliver(payload, [event.id for event in chunk])
                except ServiceUnavailable as exc:
                    log.warning(
                        "llmledger: service unavailable (%s); spooling %d events",
                        exc,
                        sum(len(c) for c, _ in requests[index:]),
                    )
                    self._mark_down()
                    self._spool(payload, len(chunk))
                    continue
                self._account(chunk, results, on_error, answered)
            return WriteResult(
                tuple(answered.stored), tuple(answered.duplicates), tuple(answered.rejected)
            )

    def _account(
        self,
        chunk: Sequence[UsageEvent],
        results: list[dict[str, Any]],
        on_error: Callable[[UsageEvent, Exception], None] | None,
        answered: _Answered,
    ) -> None:
        stored = 0
        for event, result in zip(chunk, results, strict=False):
            status = result.get("status")
            if status == "accepted":
                stored += 1
                answered.stored.append(event)
            elif status == "duplicate":
                self.stats.duplicates += 1
                answered.duplicates.append(event.id)
            elif status == _REFUSED:
                continue  # set aside with its batch, counted there
            else:
                self.stats.rejected += 1
                answered.rejected.append(event.id)
                error = InvalidEventError(f"the service rejected it: {result.get('reason')}")
                if on_error is not None:
                    on_error(event, error)
                else:
                    log.error("llmledger: event %s dropped: %s", event.id, error)
        self.stats.sent += stored

    # -- HTTP ----------------------------------------------------------------------------

    def _requests(self, batch: Sequence[UsageEvent]) -> list[tuple[list[UsageEvent], bytes]]:
        """The batch as gzipped request bodies, each with its events: at most 1,000
        events and ``max_body_bytes`` (uncompressed) per body."""
        requests = []
        for start in range(0, len(batch), _MAX_BATCH):
            chunk = list(batch[start : start + _MAX_BATCH])
            items = [self._event_json(event) for event in chunk]
            body = _dumps({"events": items})
            if len(body) <= self.max_body_bytes:
                requests.append((chunk, _gzip(body)))
            else:
                requests.extend(self._split(chunk, items))
        return requests

    def _split(
        self, chunk: list[UsageEvent], items: list[dict[str, Any]]
    ) -> list[tuple[list[UsageEvent], bytes]]:
        """Bodies under ``max_body_bytes`` for events too large to go in one."""
        requests: list[tuple[list[UsageEvent], bytes]] = []
        envelope = len(_BODY_START) + len(_BODY_END)
        events: list[UsageEvent] = []
        parts: list[bytes] = []
        size = envelope
        for event, item in zip(chunk, items, strict=True):
            part = _dumps(item)
            if envelope + len(part) > self.max_body_bytes and "content" in item:
                log.warning(
                    "llmledger: the text of event %s makes it larger than one request "
                    "(%d bytes); the event is sent without it",
                    event.id,
                    len(part),
                )
                del item["content"]
                part = _dumps(item)
            if parts and size + len(part) + 1 > self.max_body_bytes:
                requests.append((events, _gzip(_BODY_START + b",".join(parts) + _BODY_END)))
                events, parts, size = [], [], envelope
            events.append(event)
            parts.append(part)
            size += len(part) + 1
        if parts:
            requests.append((events, _gzip(_BODY_START + b",".join(parts) + _BODY_END)))
        return requests

    def _event_json(self, event: UsageEvent) -> dict[str, Any]:
        data = event_to_json(event)
        if self.content is not None:
            record = self.content.take(event.id)
            if record is not None:
                data["content"] = _content_json(record)
        return data

    def _send(self, payload: bytes) -> list[dict[str, Any]]:
        """Post one compressed batch; retry 429/5xx and network errors within the budget.

        Raises:
            ServiceUnavailable: when the service did not take the batch in time.
        """
        started = time.monotonic()
        spent = 0.0  # pauses and timeouts, counted even when the clock did not see them
        pause = self.backoff
        problem = "no attempt"
        for attempt in range(self.retries + 1):
            wait = pause
            try:
                answer = self._client.post("/v1/events", content=payload)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, httpx.TimeoutException):
                    spent += self.timeout
            else:
                if answer.status_code == 200:
                    try:
                        results: list[dict[str, Any]] = answer.json()["results"]
                    except (ValueError, KeyError, TypeError):
                        # Not an llmledger service (a proxy's page, say): keep the batch.
                        raise ServiceUnavailable(
                            f"HTTP 200 without a results list: {answer.text[:200]}"
                        ) from None
                    return results
                problem = f"HTTP {answer.status_code}: {answer.text[:200]}"
                if answer.status_code in (401, 403):
                    # Kept: a key fixed later lets the spool through.
                    raise ServiceUnavailable(f"{problem}; check LLMLEDGER_API_KEY")
                if 400 <= answer.status_code < 500 and answer.status_code not in _NOT_FINAL:
                    raise BatchRefused(answer.status_code, problem)
                if answer.status_code not in _RETRY_STATUSES:
                    raise ServiceUnavailable(problem)
                retry_after = answer.headers.get("retry-after", "")
                if retry_after.isdigit():
                    wait = max(wait, float(retry_after))
            wait = min(wait, self.max_backoff)
            # Another attempt may take a pause and a whole timeout: only if the budget allows.
            elapsed = max(time.monotonic() - started, spent)
            if attempt == self.retries or elapsed + wait + self.timeout > self.budget:
                break
            self._sleep(wait)
            spent += wait
            pause *= 2
        raise ServiceUnavailable(problem)

    def _deliver(self, payload: bytes, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Send one compressed batch; the results, one per event of ``ids``.

        A batch answered 413 is sent again in halves; a batch (or a single
        event) the service still refuses is set aside, and its events are
        answered ``refused``.

        Raises:
            ServiceUnavailable: when the service did not take the batch in time.
        """
        try:
            return self._send(payload)
        except BatchRefused as exc:
            if exc.status == 413 and len(ids) > 1:
                items = json.loads(gzip.decompress(payload))["events"]
                half = len(items) // 2
                return [
                    *self._deliver(_gzip(_dumps({"events": items[:half]})), ids[:half]),
                    *self._deliver(_gzip(_dumps({"events": items[half:]})), ids[half:]),
                ]
            self._set_aside(payload, len(ids), str(exc))
            return [{"id": event_id, "status": _REFUSED, "reason": str(exc)} for event_id in ids]

    def _set_aside(self, payload: bytes, count: int, problem: str) -> None:
        """Keep a refused batch in ``spool/refused`` (never replayed), within the spool limit."""
        kept = self._keep(self.spool_dir / _REFUSED, payload, count)
        if isinstance(kept, str):
            self.stats.dropped += count
            log.error(
                "llmledger: the service refused %d events for good (%s); %s; dropped",
                count,
                problem,
                kept,
            )
            return
        self.stats.refused += count
        log.error(
            "llmledger: the service refused %d events for good (%s); kept in %s",
            count,
            problem,
            kept,
        )

    def _set_aside_file(self, claimed: Path, name: str, problem: Exception) -> None:
        """Move a spooled batch that cannot be read to ``spool/refused``."""
        folder = self.spool_dir / _REFUSED
        try:
            folder.mkdir(parents=True, exist_ok=True)
            os.replace(claimed, folder / name)
        except OSError as exc:  # pragma: no cover - the spool folder went away
            log.error("llmledger: cannot set aside spooled batch %s: %s", claimed, exc)
            return
        log.error(
            "llmledger: spooled batch %s cannot be read (%s); kept in %s",
            name,
            problem,
            folder / name,
        )

    def _mark_down(self) -> None:
        self._down_until = time.monotonic() + self.replay_interval
        self._start_replayer()

    # -- the spool -----------------------------------------------------------------------

    def _spooled_files(self) -> list[Path]:
        return _batch_files(self.spool_dir)

    def _spool_size(self) -> int:
        """Bytes in the spool, batches set aside included."""
        total = 0
        for folder in (self.spool_dir, self.spool_dir / _REFUSED):
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(folder):
                    if entry.is_file():
                        with contextlib.suppress(FileNotFoundError):
                            total += entry.stat().st_size
        return total

    def _keep(self, folder: Path, payload: bytes, count: int) -> Path | str:
        """Write a batch file into ``folder`` within ``spool_limit``: its path, or why not.

        The name starts with a ULID, so batches are replayed oldest first; the
        file appears whole or not at all.
        """
        if self._spool_size() + len(payload) > self.spool_limit:
            return f"spool {self.spool_dir} is full ({self.spool_limit} bytes)"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{new_id()}-{count}{_SUFFIX}"
            partial = folder / f".{name}.tmp"
            partial.write_bytes(payload)
            os.replace(partial, folder / name)
        except OSError as exc:
            return f"cannot write to {folder} ({exc})"
        return folder / name

    def _spool(self, payload: bytes, count: int) -> None:
        kept = self._keep(self.spool_dir, payload, count)
        if isinstance(kept, str):
            self.stats.dropped += count
            log.error(
                "llmledger: %s; dropped %d events (%d dropped so far)",
                kept,
                count,
                self.stats.dropped,
            )
            return
        self.stats.spooled += count

    def _release_stale_claims(self) -> None:
        """Give back batches claimed by a process that died while sending them."""
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.spool_dir):
                stem, sep, pid = name.rpartition(_CLAIMED)
                if sep and pid.isdigit() and not _alive(int(pid)):
                    with contextlib.suppress(OSError):
                        os.replace(self.spool_dir / name, self.spool_dir / stem)

    def replay(self) -> int:
        """Send spooled batches, oldest first, until the spool is empty or the service fails.

        Another process sharing the spool never sends the same file: a batch is
        claimed by renaming it first.

        Returns:
            How many events the service stored.
        """
        stored = 0
        with self._lock:
            for path in self._spooled_files():
                claimed = path.with_name(f"{path.name}{_CLAIMED}{os.getpid()}")
                try:
                    os.replace(path, claimed)
                except FileNotFoundError:
                    continue  # another process took it
                try:
                    payload = claimed.read_bytes()
                    ids = _spooled_ids(payload)
                except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                    self._set_aside_file(claimed, path.name, exc)
                    continue
                try:
                    results = self._deliver(payload, ids)
                except ServiceUnavailable as exc:
                    os.replace(claimed, path)
                    log.warning("llmledger: spool replay paused (%s)", exc)
                    self._mark_down()
                    break
                for result in results:
                    if result.get("status") == "accepted":
                        stored += 1
                    elif result.get("status") == "duplicate":
                        self.stats.duplicates += 1
                    elif result.get("status") != _REFUSED:  # those were set aside
                        self.stats.rejected += 1
                        log.error(
                            "llmledger: spooled event %s dropped: rejected: %s",
                            result.get("id"),
                            result.get("reason"),
                        )
                claimed.unlink()
            self.stats.replayed += stored
            self.stats.sent += stored
        return stored

    def _start_replayer(self) -> None:
        if self._replayer is not None and self._replayer.is_alive():
            return
        if self._closed:
            return
        self._replayer = threading.Thread(
            target=self._replay_loop, name="llmledger-spool", daemon=True
        )
        self._replayer.start()

    def _replay_loop(self) -> None:
        while not self._stop.wait(self.replay_interval):
            if time.monotonic() < self._down_until:
                continue
            try:
                self.replay()
            except Exception:  # pragma: no cover - the host app must never see our errors
                log.exception("llmledger: spool replay failed")
            if not self._spooled_files():
                return

    @property
    def spooled_events(self) -> int:
        """Events waiting in the spool (from the file names)."""
        return _events_in(self._spooled_files())

    def close(self) -> None:
        """Stop the replay thread and close connections (the spool stays for later)."""
        self._closed = True
        self._stop.set()
        self._client.close()


def _spooled_ids(payload: bytes) -> list[str]:
    """The event ids of a spooled (compressed) batch, in order."""
    return [str(item.get("id")) for item in json.loads(gzip.decompress(payload))["events"]]


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode("utf-8")


def _gzip(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=5)


def _content_json(record: ContentRecord) -> dict[str, str | None]:
    """The ``content`` of an event's JSON; a text longer than the service keeps is left out."""
    content: dict[str, str | None] = {"prompt": record.prompt, "response": record.response}
    for kind, text in content.items():
        if text is not None and len(text) > MAX_CONTENT_CHARS:
            log.warning(
                "llmledger: the %s of event %s has %d characters, more than the %d a service "
                "keeps; it is not sent",
                kind,
                record.event_id,
                len(text),
                MAX_CONTENT_CHARS,
            )
            content[kind] = None
        elif text is not None and not text.isascii():
            content[kind] = _without_lone_surrogates(text)
    return content


def _without_lone_surrogates(text: str) -> str:
    """The text with each lone surrogate (which JSON parsers refuse) replaced by U+FFFD.

    Example:
        >>> _without_lone_surrogates("caf\\u00e9 \\ud800!") == "caf\\u00e9 \\ufffd!"
        True
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text
