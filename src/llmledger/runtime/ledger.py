"""The ledger: settings, store, price resolver and background writer, wired together.

One :class:`Ledger` per process is the usual case (:func:`get_ledger`), built on
first use from the settings in force; :func:`configure` replaces it.  Every part
is built late, so importing llmledger opens nothing.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from llmledger.core.errors import FileAccessError, LedgerError
from llmledger.core.events import UsageEvent
from llmledger.core.settings import Settings, load_settings
from llmledger.runtime.observers import CommitListeners

if TYPE_CHECKING:
    from llmledger.pricing import PriceBook, PriceResolver
    from llmledger.runtime.content import ContentStore, PendingContent
    from llmledger.runtime.limits import LimitGuard
    from llmledger.runtime.prices import LedgerPrices
    from llmledger.runtime.remote import RemoteSink
    from llmledger.runtime.writer import EventSink, Writer
    from llmledger.store import Store, WriteResult

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
        self._closed = False
        #: Whether instrumented calls are checked against the limits (the one
        #: flag the capture hooks read; the ``limits`` setting).
        self.guarded = settings.limits
        #: Told of every batch stored, in the writer's thread (OpenTelemetry export).
        self.after_commit = CommitListeners(strict=settings.strict)

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
                    from llmledger.runtime.writer import Writer

                    self._writer = Writer(
                        self._observed_sink(),
                        settings=self.settings,
                        prepare=self.prepare,
                        queue_limit=self.settings.queue_limit,
                        batch_size=self.settings.batch_size,
                        flush_interval=self.settings.flush_interval,
                        strict=self.settings.strict,
                    )
        return self._writer

    @property
    def content_store(self) -> ContentStore:
        """Where kept prompt and response text goes.

        With ``url`` set, the text goes with its event to the service (held in
        :class:`~llmledger.runtime.content.PendingContent` until the remote sink sends
        the event); otherwise into this ledger's store.
        """
        if self.settings.url:
            return self._pending()
        from llmledger.runtime.content import SqlContentStore

        return SqlContentStore(self)

    def _pending(self) -> PendingContent:
        if self._pending_content is None:
            with self._lock:
                if self._pending_content is None:
                    from llmledger.runtime.content import PendingContent

                    # Every event waiting in the queue, and the batch being written.
                    limit = self.settings.queue_limit + self.settings.batch_size
                    self._pending_content = PendingContent(limit)
        return self._pending_content

    def _sink(self) -> EventSink:
        """The service named by ``url`` when set (remote sink), else the store."""
        if self.settings.url:
            from llmledger.runtime.remote import RemoteSink

            self._remote = RemoteSink.from_settings(self.settings, content=self._pending())
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
        return self.prices.settle(event)

    def submit(self, item: UsageEvent | Callable[[], UsageEvent]) -> None:
        """Queue an event (or deferred work producing one) for the background writer.

        Never raises and never blocks: a full queue drops the event and counts it.
        """
        try:
            self.writer.submit(item)
        except Exception:
            if self.settings.strict:
                raise
            log.exception("llmledger: could not queue an event")

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event submitted so far is committed (or ``timeout`` passes)."""
        if self._writer is None:
            return True
        return self._writer.flush(timeout)

    def close(self) -> None:
        """Flush, stop the writer and close the store (or the remote sink's connections)."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.close()
        self.after_commit.close()
        atexit.unregister(self._close_listeners_at_exit)
        if self._remote is not None:
            self._remote.close()
        if self._store is not None:
            self._store.close()

    def stats(self) -> dict[str, Any]:
        """Counters of the writer: written, dropped, failed."""
        if self._writer is None:
            return {"written": 0, "dropped": 0, "failed": 0}
        w = self._writer
        return {"written": w.written, "dropped": w.dropped, "failed": w.failed}


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
    ) -> WriteResult:
        return self._ledger.store.write(batch, on_error=on_error)


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
    """Wait until every event recorded so far is committed to the ledger.

    Returns:
        True when everything was written before ``timeout`` seconds passed.
    """
    return get_ledger().flush(timeout) if _ledger is not None else True
