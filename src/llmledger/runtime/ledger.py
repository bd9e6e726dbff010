"""The ledger: settings, store, price resolver, journal and background writer, wired together.

One :class:`Ledger` per process is the usual case (:func:`get_ledger`), built on
first use from the settings in force; :func:`configure` replaces it.  Every part
is built late, so importing llmledger opens nothing.  Events go through the
journal (:mod:`llmledger.runtime.journal`) of their destination, one folder per
database or service under ``$LLMLEDGER_HOME/spool``.
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llmledger.core.errors import FileAccessError, LedgerError
from llmledger.core.events import UsageEvent
from llmledger.core.settings import Settings, load_settings
from llmledger.runtime.captured import Captured, captured_event
from llmledger.runtime.observers import CommitListeners

if TYPE_CHECKING:
    from llmledger.pricing import PriceBook, PriceResolver
    from llmledger.runtime.content import ContentStore, PendingContent
    from llmledger.runtime.journal import Journal
    from llmledger.runtime.limits import LimitGuard
    from llmledger.runtime.prices import LedgerPrices
    from llmledger.runtime.remote import RemoteSink
    from llmledger.runtime.writer import EventSink, Writer
    from llmledger.store import ContentRecord, Store, WriteResult

__all__ = ["Ledger", "configure", "flush", "get_ledger", "shutdown"]

log = logging.getLogger("llmledger")


class Ledger:
    """Everything needed to record events into one database.

    Example:
        >>> ledger = Ledger(load_settings(home="/tmp/ledger-doc"))
        >>> ledger.settings.resolved_database_url
        'sqlite:////tmp/ledger-doc/ledger.db'
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Reentrant: the writer is built under it and asks for the pending content.
        self._lock = threading.RLock()
        self._store: Store | None = None
        self._prices: LedgerPrices | None = None
        self._writer: Writer | None = None
        self._pending_content: PendingContent | None = None
        self._remote: RemoteSink | None = None
        self._limits: LimitGuard | None = None
        self._signals_pending = False
        self._closed = False
        #: Whether instrumented calls are checked against the limits (the one
        #: flag the capture hooks read; the ``limits`` setting).
        self.guarded = settings.limits
        #: Told of every batch stored, in the writer's thread (OpenTelemetry export).
        self.after_commit = CommitListeners(strict=settings.strict)
        if settings.debug:
            from llmledger.runtime import debug

            debug.enable()

    @property
    def store(self) -> Store:
        """The store, opened and migrated on first use."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    from llmledger.store import open_store

                    if self.settings.database_url is None:
                        try:
                            self.settings.home.mkdir(parents=True, exist_ok=True)
                        except OSError as exc:
                            raise FileAccessError.from_os_error(
                                exc, "cannot create the home folder"
                            ) from None
                    store = open_store(self.settings.resolved_database_url)
                    store.migrate()
                    self._store = store
        return self._store

    # -- prices: loaded off the caller's thread (runtime/prices.py) ----------------------

    @property
    def prices(self) -> LedgerPrices:
        """The prices this ledger records with: loaded in the background on first use,
        priced from memory once loaded, renewed when they change."""
        if self._prices is None:
            with self._lock:
                if self._prices is None:
                    from llmledger.runtime.prices import LedgerPrices

                    self._prices = LedgerPrices(self)
        return self._prices

    @property
    def limits(self) -> LimitGuard:
        """The limits of this ledger: its database's, or the service's with ``url``."""
        if self._limits is None:
            with self._lock:
                if self._limits is None:
                    from llmledger.runtime.limits import LimitGuard

                    self._limits = LimitGuard(self)
        return self._limits

    @property
    def pricer(self) -> PriceResolver:
        """The price source: the database's price rows (when this ledger's own
        database has any), the user's price files, the bundled catalog and
        llmledger's supplementary rows; the same composition the service uses.

        Waits for the prices when they are still loading.
        """
        return self.prices.resolver()

    def database_prices_version(self) -> tuple[Any, ...] | None:
        """What changes when a price row is added to this ledger's own database
        (None when it has none to read, as for :meth:`_database_prices`)."""
        if not self._has_prices_database():
            return None
        try:
            return self.store.prices_version()
        except LedgerError:
            if self.settings.strict:
                raise
            return None

    def _has_prices_database(self) -> bool:
        # With ``url`` set the service prices every event it receives, and a local
        # SQLite file that does not exist yet has no rows: neither is opened.
        if self.settings.url:
            return False
        if self._store is None and self.settings.database_url is None:
            return (self.settings.home / "ledger.db").exists()
        return True

    def _database_prices(self) -> PriceBook | None:
        """The price rows of this ledger's own database, if it has one already.

        With ``url`` set the service prices every event it receives, and a local
        SQLite file that does not exist yet has no rows: neither is opened here.
        """
        if not self._has_prices_database():
            return None
        from llmledger.pricing import PriceBook

        try:
            return PriceBook.from_database(self.store.database_prices().as_price_file())
        except LedgerError:
            # An unreachable database must not stop recording: its events wait in
            # the writer, priced from the other layers.
            if self.settings.strict:
                raise
            log.warning("llmledger: could not read the database's prices", exc_info=True)
            return None

    @property
    def writer(self) -> Writer:
        """The background writer; the store is opened from its thread, not the caller's."""
        if self._writer is None:
            with self._lock:
                if self._writer is None:
                    from llmledger.runtime.writer import Writer, install_signal_handlers

                    settings = self.settings
                    journal = self._journal()
                    kind: type[Writer] = Writer
                    if settings.writer_process and journal is not None:
                        from llmledger.runtime.drain import ProcessWriter

                        kind = ProcessWriter
                    self._writer = kind(
                        self._observed_sink(),
                        journal=journal,
                        prepare=self.prepare,
                        build=self._build_captured,
                        batch_size=settings.batch_size,
                        flush_interval=settings.flush_interval,
                        strict=settings.strict,
                        shutdown_timeout=settings.shutdown_timeout,
                        settings=settings,
                        set_aside=None if settings.url else self._set_aside,
                    )
                    # The text a captured call's event is built with goes with it.
                    self._writer.texts = self._pending()
                    self._signals_pending = settings.handle_signals and not (
                        install_signal_handlers()
                    )
        return self._writer

    @property
    def destination(self) -> str:
        """Where this ledger's events go: the service's URL, or the database's."""
        return self.settings.url or self.settings.resolved_database_url

    def _journal(self) -> Journal | None:
        """The journal of this ledger's destination (None for an in-memory database:
        no other process could ever replay it, so the writer keeps a private one)."""
        from llmledger.runtime.journal import Journal
        from llmledger.runtime.spool import journal_folder, name_destination

        destination = self.destination
        if not self.settings.url and _in_memory(destination):
            return None
        spool = self.settings.home / "spool"
        folder = journal_folder(spool, destination)
        name_destination(folder, _hide_password(destination))
        return Journal(
            folder, limit_bytes=self.settings.spool_limit, fsync=self.settings.journal_fsync
        )

    def _set_aside(
        self,
        events: Sequence[UsageEvent],
        reason: str,
        content: Mapping[str, ContentRecord] | None = None,
    ) -> None:
        """Keep events the store refused for good in ``spool/refused`` (``spool requeue``),
        each with the text kept for it."""
        import gzip
        import json

        from llmledger.runtime.spool import set_aside
        from llmledger.wire.serialize import event_to_json

        items = [event_to_json(e) for e in events]
        for item, event in zip(items, events, strict=True):
            text = content.get(event.id) if content else None
            if text is not None:
                item["content"] = {"prompt": text.prompt, "response": text.response}
        body = json.dumps({"events": items, "reason": reason}, separators=(",", ":")).encode()
        kept = set_aside(
            self.settings.home / "spool",
            gzip.compress(body),
            len(events),
            self.settings.spool_limit,
        )
        if isinstance(kept, str):
            log.error("llmledger: %d refused events could not be set aside: %s", len(events), kept)
        else:
            log.error(
                "llmledger: %d events refused by the store (%s); kept in %s",
                len(events),
                reason,
                kept,
            )

    @property
    def content_store(self) -> ContentStore:
        """Where kept prompt and response text goes: with its event's batch, to the store
        (in the event's transaction) or, with ``url``, to the service.

        A captured call's text is in the journal with the call's values; the writer
        builds the event, which puts the text here
        (:class:`~llmledger.runtime.content.PendingContent`), and takes it back for the
        event's batch.
        """
        return self._pending()

    def _pending(self) -> PendingContent:
        if self._pending_content is None:
            with self._lock:
                if self._pending_content is None:
                    from llmledger.runtime.content import PendingContent

                    # Texts of events built in the writer, waiting for their batch.
                    self._pending_content = PendingContent(self.settings.queue_limit)
        return self._pending_content

    def _sink(self) -> EventSink:
        """The service named by ``url`` when set (remote sink), else the store."""
        if self.settings.url:
            from llmledger.runtime.remote import RemoteSink

            self._remote = RemoteSink.from_settings(self.settings)
            return self._remote
        return _LazySink(self)

    def _observed_sink(self) -> EventSink:
        """:meth:`_sink`, whose writes are passed on to the after-commit listeners
        (with the OpenTelemetry exporter among them when the ``otel`` setting is on)."""
        if self.settings.otel:
            from llmledger.otel.export import add_exporter

            add_exporter(self.after_commit, self.settings)
            # At exit the listeners are closed after the last events are written, so
            # the exporter sends those too (its own exit hook would race the writer's).
            atexit.register(self._close_listeners_at_exit)
        return self.after_commit.observe(self._sink())

    def _close_listeners_at_exit(self) -> None:
        try:
            self.flush(10.0)
        except Exception:
            log.exception("llmledger could not flush events at exit")
        self.after_commit.close()

    @property
    def features(self) -> Collection[str]:
        """The declared feature names (none declared: every feature is fine)."""
        return self.settings.features

    def prepare(self, event: UsageEvent) -> UsageEvent:
        """The event priced, when it has no cost yet or its price was pending (runs
        in the writer thread, which waits for the prices if they are still loading).

        Returns:
            A priced copy, or ``event`` itself when it was priced already.
        """
        settled = self.prices.settle(event)
        if self.settings.debug and settled is not event:
            from llmledger.runtime.debug import log_priced

            log_priced(settled)
        return settled

    def _build_captured(self, call: Captured) -> UsageEvent:
        """The event of a captured call read back from the journal (in the writer)."""
        return captured_event(call, self)

    def submit(self, item: UsageEvent | tuple[Any, ...] | Callable[[], UsageEvent]) -> None:
        """Append an event to the journal (a callable is run first, to make it), or a
        captured call's plain values (:func:`~llmledger.runtime.captured.captured`),
        whose event the writer builds.

        Once this returns the event is written to the operating system: it
        survives the death of the process.  Never raises and never blocks on a
        database: an event over the journal's disk limit is dropped and counted.
        """
        try:
            self.writer.submit(item)
            if self._signals_pending:  # first used from another thread: try from this one
                from llmledger.runtime.writer import install_signal_handlers

                self._signals_pending = not install_signal_handlers()
        except Exception:
            if self.settings.strict:
                raise
            log.exception("llmledger: could not queue an event")

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event submitted so far, and every event a dead process
        left in this destination's journal, is in the store, and every limit settle
        handed over so far is applied (or ``timeout`` passes).

        Returns:
            True only when all of them reached the store.
        """
        flushed = self.writer.flush(timeout)
        if self._limits is not None:
            flushed = self._limits.flush(timeout) and flushed
        return flushed

    def close(self) -> None:
        """Flush (for at most ``shutdown_timeout`` seconds), stop the writer and close
        the store (or the remote sink's connections); what is left stays in the journal."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.close(self.settings.shutdown_timeout)
        if self._limits is not None:
            self._limits.close(self.settings.shutdown_timeout)
        self.after_commit.close()
        atexit.unregister(self._close_listeners_at_exit)
        if self._remote is not None:
            self._remote.close()
        if self._store is not None:
            self._store.close()

    def stats(self) -> dict[str, Any]:
        """Counters of this process's writer.

        ``written`` (rows committed), ``pending`` (events waiting in the
        journal), ``dropped`` (events the journal could not take: its disk
        limit or a full disk), ``failed`` (events that could not be built,
        priced or stored) and ``down`` (why the store is not taking events, or None).
        """
        if self._writer is None:
            return {"written": 0, "pending": 0, "dropped": 0, "failed": 0, "down": None}
        w = self._writer
        return {
            "written": w.written,
            "pending": w.pending,
            "dropped": w.dropped,
            "failed": w.failed,
            "down": w.down,
        }


class _LazySink:
    """The ledger's store as the writer sees it: opened on the first write, which
    happens in the writer's thread, so no caller ever waits for a database."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def write(
        self,
        batch: Sequence[UsageEvent],
        *,
        on_error: Callable[[UsageEvent, Exception], None] | None = None,
        content: Mapping[str, ContentRecord] | None = None,
    ) -> WriteResult:
        return self._ledger.store.write(batch, on_error=on_error, content=content)


_ledger: Ledger | None = None
_ledger_lock = threading.Lock()


def get_ledger() -> Ledger:
    """The process-wide ledger, built from the settings in force on first use."""
    global _ledger
    if _ledger is None:
        with _ledger_lock:
            if _ledger is None:
                _ledger = Ledger(load_settings())
    return _ledger


def configure(**settings: Any) -> Ledger:
    """Replace the process-wide ledger with one built from these settings.

    Arguments win over ``LLMLEDGER_*`` environment variables, which win over the
    config file. The previous ledger is flushed and closed.

    Example:
        >>> import llmledger
        >>> ledger = llmledger.configure(home="/tmp/ledger-doc", features=["search", "chat"])
        >>> sorted(ledger.settings.features)
        ['chat', 'search']

    Raises:
        ConfigError: on an unknown setting or a bad value.
    """
    global _ledger
    new = Ledger(load_settings(**settings))
    with _ledger_lock:
        old, _ledger = _ledger, new
    if old is not None:
        old.close()
    return new


def shutdown() -> None:
    """Flush and close the process-wide ledger; the next use builds a new one."""
    global _ledger
    with _ledger_lock:
        old, _ledger = _ledger, None
    if old is not None:
        old.close()


def flush(timeout: float | None = None) -> bool:
    """Wait until every event recorded so far is committed to the ledger, with
    whatever processes that died left in the journal.

    Returns:
        True when everything was written before ``timeout`` seconds passed.
    """
    return get_ledger().flush(timeout)


def _in_memory(url: str) -> bool:
    """Whether a database URL names an in-memory SQLite database."""
    scheme, _, rest = url.partition("://")
    return scheme.startswith("sqlite") and (rest in ("", "/") or ":memory:" in rest)


def _hide_password(url: str) -> str:
    """The URL with any password replaced by ``***``.

    Example:
        >>> _hide_password("postgresql+psycopg://me:secret@db/ledger")
        'postgresql+psycopg://me:***@db/ledger'
    """
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
