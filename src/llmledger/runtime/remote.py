"""The remote sink: the SDK sends its events to an llmledger service instead of a database.

:class:`RemoteSink` is an :class:`~llmledger.runtime.writer.EventSink`: the ledger's
background writer reads the events from the journal (:mod:`llmledger.runtime.journal`)
and hands them here, and marks them done in the journal only once the service
answered.  While the service is unreachable the events simply stay in the
journal, on disk, and the writer tries again with growing pauses; the next
process, or ``flush()`` in any process, sends what a dead process left.  Event
ids make every resend idempotent, so each event is stored exactly once.  This
module adds what the network needs:

- batches of up to 1,000 events and ``max_body_bytes``, gzip-compressed, in the
  JSON shape of ``llmledger logs --json``; an event whose prompt and response
  text is kept carries it in ``content`` (the text waits in the journal with its
  event, and the writer hands it over with the batch);
- retries with growing pauses on 429 and 5xx answers and on connection errors
  (honouring ``Retry-After``), within a time budget per batch so an exiting
  process is never held for long;
- a batch the service refuses for good (a 4xx other than 401, 403, 408 and 429)
  never blocks the journal: one answered 413 (too large) is split in halves and
  sent again, and whatever is still refused is set aside in ``spool/refused``
  (within ``spool_limit``) for a person to look at, and logged;
- the service answers per event: each event it rejects (its ``results``, matched
  to the events by position and id) is set aside with its reason, at most once
  per event id, before the batch is marked done in the journal; an answer that
  does not match the batch (another count, another id) keeps the whole batch in
  the journal, and is logged;
- a batch that keeps failing with 5xx is split in halves until the event at
  fault is found: that event is set aside with the answer, everything else goes
  through.  When no part goes through, the service is down, not the event, and
  the batch stays in the journal, unless the service answers an empty batch
  (so it is up) and fails on each event alone: after ``max_failures`` such
  writes of the same events they are set aside with the last answer;
- counters of what was sent, set aside and dropped; every drop is logged.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
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
from llmledger.core.events import ContentRecord, UsageEvent
from llmledger.core.settings import Settings
from llmledger.runtime.spool import SetAsideIds, set_aside
from llmledger.wire.parse import MAX_CONTENT_CHARS
from llmledger.wire.serialize import event_to_json

if TYPE_CHECKING:
    from llmledger.store.protocol import WriteResult

__all__ = [
    "BatchRefused",
    "RemoteSink",
    "RemoteStats",
    "ServiceUnavailable",
]

log = logging.getLogger("llmledger.runtime.remote")

_MAX_BATCH = 1000
_BODY_START = b'{"events":['
_BODY_END = b"]}"
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


#: 4xx answers worth retrying: the key may be fixed, the service may catch up.
_NOT_FINAL = frozenset({401, 403, 408, 429})
_REFUSED = "refused"


@dataclass(slots=True)
class RemoteStats:
    """What a remote sink did with the events it was given.

    Attributes:
        sent: Events the service stored.
        duplicates: Events the service had already.
        rejected: Events the service rejected one by one (each is set aside too).
        refused: Events set aside in ``spool/refused`` (rejected, refused or failing).
        dropped: Events that could not be set aside (the refused folder full).
    """

    sent: int = 0
    duplicates: int = 0
    rejected: int = 0
    refused: int = 0
    dropped: int = 0


class _ServerFailing(ServiceUnavailable):
    """The service answered 5xx to every try of one batch: the batch may be at fault."""

    retryable = False


class _Kept(ServiceUnavailable):
    """The batch stays in the journal and is sent again later."""

    retryable = True


_EMPTY = b'{"events":[]}'
#: What the service answers about an event (``refused`` is the sink's own word).
_STATUSES = frozenset({"accepted", "duplicate", "rejected"})


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
        spool_dir: The spool folder: batches refused for good go to its ``refused`` folder.
        spool_limit: Most bytes of batches set aside; one that does not fit is
            dropped, counted and logged.
        transport: An httpx transport (tests use ``httpx.MockTransport``).
        timeout: Seconds per request.
        retries: Extra attempts for a batch answered 429/5xx or not answered.
        backoff: Pause before the first retry; it doubles, up to ``max_backoff``.
        budget: Most seconds spent on one batch before it is left in the journal
            for a later try (so an exiting process is never held for long).
        max_body_bytes: Largest request body (uncompressed) the service accepts;
            batches are split to stay under it.
        max_failures: Writes of the same events, each answered 5xx for every one
            of them alone while the service answers an empty batch, before they
            are set aside with the last answer.

    Example:
        >>> import tempfile
        >>> sink = RemoteSink("http://127.0.0.1:9", "llk_x_y", spool_dir=tempfile.mkdtemp(),
        ...                   retries=0)
        >>> sink.write([]).count
        0
        >>> sink.stats.sent
        0
        >>> sink.close()
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        spool_dir: str | os.PathLike[str],
        spool_limit: int = 2_000_000_000,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 4.0,
        budget: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        max_body_bytes: int = 10_000_000,
        max_failures: int = 5,
    ) -> None:
        self.url = url.rstrip("/")
        self.max_body_bytes = max_body_bytes
        self.max_failures = max(1, max_failures)
        self.spool_dir = Path(spool_dir)
        self.spool_limit = spool_limit
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.budget = budget
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
        self._texts: Mapping[str, ContentRecord] = {}
        self._set_aside_ids = SetAsideIds(self.spool_dir)
        self._failures: dict[str, int] = {}  # event id: writes failed while the service was up
        self._mismatch_logged: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> RemoteSink:
        """The sink named by ``url`` and ``api_key``, setting aside in ``home/spool/refused``.

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
        content: Mapping[str, ContentRecord] | None = None,
    ) -> WriteResult:
        """Send events to the service, each with the text kept for it in ``content``.

        Returns:
            What the service answered: the events it stored, the ids it already
            had and those it rejected (set aside in ``spool/refused``).

        Raises:
            ServiceUnavailable: when the service did not take a request, or its
                answer does not match the request (the events stay in the journal).
        """
        from llmledger.store.protocol import WriteResult  # the store's imports wait for a write

        with self._lock:
            answered = _Answered()
            self._texts = content or {}
            try:
                for chunk, payload in self._requests(batch):
                    ids = [event.id for event in chunk]
                    try:
                        results = self._deliver(payload, ids)
                    except _ServerFailing as exc:
                        results = self._failing(payload, ids, exc)
                    self._account(chunk, results, on_error, answered)
            finally:
                self._texts = {}
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
        """Take in the answers about one request's events (checked by :meth:`_check`).

        The events the service rejected are set aside with their reasons first:
        only then may the writer mark the batch done in the journal.
        """
        stored: list[UsageEvent] = []
        duplicates: list[str] = []
        rejected: list[tuple[UsageEvent, str]] = []
        for event, result in zip(chunk, results, strict=True):
            status = result["status"]
            if status == "accepted":
                stored.append(event)
            elif status == "duplicate":
                duplicates.append(event.id)
            elif status == "rejected":
                rejected.append((event, str(result.get("reason") or "no reason given")))
            # refused: set aside with its batch, counted there
        if rejected:
            self._set_aside(
                [self._event_json(event) for event, _ in rejected],
                [event.id for event, _ in rejected],
                [f"the service rejected it: {reason}" for _, reason in rejected],
            )
        if self._failures:
            for event in chunk:
                self._failures.pop(event.id, None)
        self.stats.sent += len(stored)
        self.stats.duplicates += len(duplicates)
        answered.stored.extend(stored)
        answered.duplicates.extend(duplicates)
        for event, reason in rejected:
            self.stats.rejected += 1
            answered.rejected.append(event.id)
            error = InvalidEventError(f"the service rejected it: {reason}")
            if on_error is not None:
                on_error(event, error)
            else:
                log.error("llmledger: event %s set aside: %s", event.id, error)

    def _check(self, results: Any, ids: Sequence[str]) -> list[dict[str, Any]]:
        """The service's answers when they match the request's events: one per event,
        in order, each naming its event (or no event, for one rejected unread).

        Raises:
            ServiceUnavailable: when they do not; the batch stays in the journal.
        """
        problem = None
        if not isinstance(results, list):
            problem = f"the results are a {type(results).__name__}, not a list"
        elif len(results) != len(ids):
            problem = f"{len(results)} results for {len(ids)} events"
        else:
            for index, (result, event_id) in enumerate(zip(results, ids, strict=True)):
                if not isinstance(result, dict) or result.get("status") not in _STATUSES:
                    problem = f"result {index} is not an answer about an event: {result!r:.200}"
                    break
                answer_id = result.get("id")
                if answer_id is None and result["status"] == "rejected":
                    continue
                if not isinstance(answer_id, str) or answer_id.upper() != event_id.upper():
                    problem = f"result {index} is about {answer_id!r}, not event {event_id}"
                    break
        if problem is None:
            self._mismatch_logged = None
            return results  # type: ignore[no-any-return]
        if problem != self._mismatch_logged:
            self._mismatch_logged = problem
            log.error(
                "llmledger: the service's answer does not match the %d events sent (%s); "
                "they stay in the journal and are sent again",
                len(ids),
                problem,
            )
        raise _Kept(f"the service's answer does not match the events sent: {problem}")

    def _failing(
        self, payload: bytes, ids: Sequence[str], error: _ServerFailing
    ) -> list[dict[str, Any]]:
        """A request answered 5xx, every part of it and each event alone.

        When the service does not answer an empty batch either, it is down: the
        events stay in the journal.  Otherwise each write counts against these
        events; after ``max_failures`` they are set aside with the last answer.

        Raises:
            ServiceUnavailable: while the events stay in the journal.
        """
        if not self._answers_empty_batch():
            raise _Kept(str(error)) from error
        failures = self.max_failures
        for event_id in ids:
            failures = min(failures, self._failures.get(event_id, 0) + 1)
            self._failures[event_id] = self._failures.get(event_id, 0) + 1
        if failures < self.max_failures:
            log.warning(
                "llmledger: the service fails on %d events (%s), though it is up; "
                "they are tried again (%d of %d writes)",
                len(ids),
                error,
                failures,
                self.max_failures,
            )
            raise _Kept(str(error)) from error
        for event_id in ids:
            self._failures.pop(event_id, None)
        problem = f"the service fails on this event ({failures} writes): {error}"
        results = []
        for item, event_id in zip(_items(payload), ids, strict=True):
            results.extend(self._refuse(_gzip(_dumps({"events": [item]})), [event_id], problem))
        return results

    def _answers_empty_batch(self) -> bool:
        """Whether the service takes an empty batch now (it is up, whatever it fails on)."""
        try:
            answer = self._client.post("/v1/events", content=_gzip(_EMPTY))
        except httpx.HTTPError:
            return False
        return answer.status_code == 200

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
        record = self._texts.get(event.id)
        if record is not None:
            data["content"] = _content_json(record)
        return data

    def _send(self, payload: bytes) -> Any:
        """Post one compressed batch; retry 429/5xx and network errors within the budget.

        Raises:
            ServiceUnavailable: when the service did not take the batch in time.
        """
        started = time.monotonic()
        spent = 0.0  # pauses and timeouts, counted even when the clock did not see them
        pause = self.backoff
        problem = "no attempt"
        answered_5xx = False
        for attempt in range(self.retries + 1):
            wait = pause
            try:
                answer = self._client.post("/v1/events", content=payload)
            except httpx.HTTPError as exc:
                answered_5xx = False
                problem = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, httpx.TimeoutException):
                    spent += self.timeout
            else:
                if answer.status_code == 200:
                    try:
                        results: Any = answer.json()["results"]
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
                answered_5xx = answer.status_code >= 500
                if answer.status_code not in _RETRY_STATUSES:
                    raise (_ServerFailing if answered_5xx else ServiceUnavailable)(problem)
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
        raise (_ServerFailing if answered_5xx else ServiceUnavailable)(problem)

    def _deliver(self, payload: bytes, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Send one compressed batch; the results, one per event of ``ids``.

        A batch answered 413 is sent again in halves; a batch (or a single
        event) the service still refuses is set aside, and its events are
        answered ``refused``.  A batch answered 5xx on every try is split the
        same way: see :meth:`_isolate`.

        Raises:
            ServiceUnavailable: when the service did not take the batch in time.
        """
        try:
            return self._check(self._send(payload), ids)
        except BatchRefused as exc:
            if exc.status == 413 and len(ids) > 1:
                return [
                    result
                    for part, part_ids in _halves(payload, ids)
                    for result in self._deliver(part, part_ids)
                ]
            return self._refuse(payload, ids, str(exc))
        except _ServerFailing:
            if len(ids) == 1:
                raise
            return self._isolate(payload, ids)

    def _isolate(self, payload: bytes, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Send a batch the service failed on (5xx) in halves, to find the event at fault.

        When one half goes through the service is up, so the events of a half
        that still fails are sent one by one, and each that fails alone is set
        aside with the service's answer.  When neither half goes through, the
        service is down: :class:`_ServerFailing` raises and the batch stays in
        the journal.
        """
        results: list[list[dict[str, Any]] | None] = []
        failing: list[tuple[bytes, Sequence[str], _ServerFailing]] = []
        for part, part_ids in _halves(payload, ids):
            try:
                results.append(self._deliver(part, part_ids))
            except _ServerFailing as exc:
                results.append(None)
                failing.append((part, part_ids, exc))
        if len(failing) == len(results):
            raise failing[0][2]
        found = iter(failing)
        merged: list[dict[str, Any]] = []
        for result in results:
            if result is None:
                part, part_ids, error = next(found)
                result = self._one_by_one(part, part_ids, error)
            merged.extend(result)
        return merged

    def _one_by_one(
        self, payload: bytes, ids: Sequence[str], error: _ServerFailing
    ) -> list[dict[str, Any]]:
        """Each event of a failing part alone (the service is up); set aside those it fails on."""
        if len(ids) == 1:
            return self._refuse(payload, ids, f"the service fails on this event: {error}")
        results: list[dict[str, Any]] = []
        for item, event_id in zip(_items(payload), ids, strict=True):
            single = _gzip(_dumps({"events": [item]}))
            try:
                results.extend(self._deliver(single, [event_id]))
            except _ServerFailing as exc:
                results.extend(
                    self._refuse(single, [event_id], f"the service fails on this event: {exc}")
                )
        return results

    def _refuse(self, payload: bytes, ids: Sequence[str], problem: str) -> list[dict[str, Any]]:
        self._set_aside(_items(payload), ids, [problem] * len(ids))
        return [{"id": event_id, "status": _REFUSED, "reason": problem} for event_id in ids]

    def _set_aside(
        self, items: Sequence[dict[str, Any]], ids: Sequence[str], reasons: Sequence[str]
    ) -> None:
        """Keep refused events, each with its reason, in ``spool/refused`` (never replayed),
        within the spool limit; an event set aside already (a batch sent again) is not
        kept twice.

        Raises:
            ServiceUnavailable: when the file cannot be written; the batch stays in
                the journal, to be set aside on a later try.
        """
        already = self._set_aside_ids.current()
        kept_items: list[dict[str, Any]] = []
        kept_reasons: list[str] = []
        for item, event_id, reason in zip(items, ids, reasons, strict=True):
            if event_id.upper() in already:
                continue
            already.add(event_id.upper())
            kept_items.append(item)
            kept_reasons.append(reason)
        count = len(kept_items)
        if not count:
            return
        body = _gzip(_dumps({"events": kept_items, "reasons": kept_reasons}))
        problem = kept_reasons[0] if len(set(kept_reasons)) == 1 else "reasons in the file"
        try:
            kept = set_aside(self.spool_dir, body, count, self.spool_limit, strict=True)
        except OSError as exc:
            log.error(
                "llmledger: %d events refused for good (%s) cannot be set aside (%s); "
                "they stay in the journal",
                count,
                problem,
                exc,
            )
            raise _Kept(f"cannot set aside refused events: {exc}") from exc
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

    def close(self) -> None:
        """Close the connections."""
        self._client.close()


def _items(payload: bytes) -> list[dict[str, Any]]:
    """The events of a compressed batch, as JSON objects."""
    items: list[dict[str, Any]] = json.loads(gzip.decompress(payload))["events"]
    return items


def _halves(payload: bytes, ids: Sequence[str]) -> list[tuple[bytes, Sequence[str]]]:
    """A compressed batch as two compressed batches, each with its ids."""
    items = _items(payload)
    half = len(items) // 2
    return [
        (_gzip(_dumps({"events": items[:half]})), ids[:half]),
        (_gzip(_dumps({"events": items[half:]})), ids[half:]),
    ]


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
