"""A ledger's prices: loaded off the caller's thread, and renewed when they change.

Loading the price source takes a good part of a second (the bundled catalog, the
supplementary rows, the user's price files, the database's price rows), so the
first ``record()`` or captured call does not wait for it: it starts a loading
thread and its event comes back ``pending``; the writer prices it before storing
it (:meth:`LedgerPrices.settle`, which waits for the load in the writer's thread).
Once loaded, the caller's thread prices from memory (:class:`~llmledger.pricing.cache.PriceCache`).

The writer checks, at most every :data:`REFRESH_SECONDS`, whether the database's
price rows, its fetched catalog or the price files changed (a row added through
the service, a catalog refreshed, a file edited); then a new cache built from the
new prices replaces the old one whole.  The bundled catalog and the supplementary
rows ship with llmledger and never change while running, so they are loaded once
per process and shared by every ledger; so is the last fetched catalog read.

Nothing here imports the pricing package on the caller's thread: that import is
part of the load.
"""

from __future__ import annotations

import _thread
import logging
import os
import threading
import time
import weakref
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, cast

from llmledger.core.errors import LedgerError
from llmledger.core.events import PRICE_PENDING_REASON, UsageEvent
from llmledger.runtime.threads import leave_signals_to_the_main_thread

if TYPE_CHECKING:
    from llmledger.pricing import Catalog, PriceBook, PriceResolver
    from llmledger.pricing.cache import PriceCache
    from llmledger.runtime.ledger import Ledger
    from llmledger.store import Store

__all__ = ["REFRESH_SECONDS", "LedgerPrices", "bundled_prices", "catalog_in_force"]

#: How long a background thread waits when it starts, so the caller that started it goes on.
_YIELD = 0.002

log = logging.getLogger("llmledger")

#: Least seconds between two checks that the database's prices or the price files changed.
REFRESH_SECONDS = 5.0

# The bundled catalog and supplementary rows, loaded once per process.
_shared: tuple[Any, Any] | None = None
_shared_lock = threading.Lock()
# The last fetched catalog read from a database: (its id, the Catalog).
_fetched: tuple[str, Any] | None = None
_live: weakref.WeakSet[LedgerPrices] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A load under way in the parent has no thread here, and its lock may be held.
    global _shared_lock
    _shared_lock = threading.Lock()
    for prices in list(_live):
        prices._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def bundled_prices() -> tuple[Catalog, PriceBook]:
    """The bundled catalog and llmledger's supplementary rows (loaded on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            from llmledger.pricing import Catalog, load_supplement

            _shared = (Catalog(), load_supplement())
        return _shared


def catalog_in_force(store: Store, *, strict: bool = False) -> Catalog:
    """The catalog a database's prices use: the newest catalog fetched into it
    (``llmledger prices refresh``, the weekly price check), else the bundled one.

    A fetched catalog is read once per process and kept while it is the newest.
    One that cannot be read any more (stored by another version of llmledger)
    is logged and the bundled catalog is used.

    Raises:
        LedgerError: when the database cannot be read (the caller decides).
        CatalogError: a stored catalog that cannot be read, with ``strict``.
    """
    global _fetched
    newest = store.catalog_id()
    if newest is None:
        return bundled_prices()[0]
    found = _fetched
    if found is not None and found[0] == newest:
        return cast("Catalog", found[1])
    stored = store.latest_catalog()
    if stored is None:  # removed in between: the bundled one again
        return bundled_prices()[0]
    from llmledger.core.errors import CatalogError
    from llmledger.pricing.fetched import read_catalog

    try:
        catalog = read_catalog(stored.document, fetched=stored.fetched)
    except CatalogError as exc:
        if strict:
            raise
        log.error(
            "llmledger: the catalog fetched on %s cannot be read (%s); "
            "pricing with the bundled one",
            stored.fetched.date(),
            exc,
        )
        return bundled_prices()[0]
    _fetched = (stored.id, catalog)
    return catalog


class LedgerPrices:
    """The prices one ledger records with.

    ``cache`` is None until the prices are loaded; the caller's thread reads it
    without a lock (one attribute read), the loading thread and the writer
    replace it whole.
    """

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self.cache: PriceCache | None = None
        self._lock = threading.Lock()
        self._loaded = threading.Event()
        self._started = False
        self._error: BaseException | None = None
        self._checked_at = float("-inf")
        _live.add(self)

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        if self.cache is None and not self._loaded.is_set():
            self._loaded = threading.Event()
            self._started = False

    # -- the caller's thread --------------------------------------------------------

    def warm(self) -> None:
        """Start loading the prices in a background thread, unless that was done."""
        if self._started or self.cache is not None:
            return
        with self._lock:
            if not self._started:
                self._started = True
                # Not threading.Thread: its start() waits until the new thread runs,
                # and a new thread busy importing the pricing modules holds the GIL
                # for milliseconds before the caller gets it back.
                _thread.start_new_thread(self._load, ())

    def priced_now(
        self, event: UsageEvent, *, usage_sound: bool = False, in_place: bool = False
    ) -> UsageEvent:
        """The event priced from memory, or marked pending while the prices load
        (call :meth:`warm` once the event is queued, so the loading starts).

        ``usage_sound`` and ``in_place`` are :meth:`PriceCache.priced`'s.

        Raises:
            LedgerError: the error that made loading the prices fail (a bad price
                file…), once it is known.
        """
        cache = self.cache
        if cache is not None:
            return cache.priced(event, usage_sound=usage_sound, in_place=in_place)
        if self._error is not None:
            raise self._error
        return event.replace(unpriced_reason=PRICE_PENDING_REASON)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the prices are loaded (starting the load if needed).

        Returns:
            False when ``timeout`` seconds passed first, or loading them failed.
        """
        self.warm()
        return self._loaded.wait(timeout) and self.cache is not None

    # -- waiting for the prices (the writer's thread, commands) ------------------------

    def resolver(self) -> PriceResolver:
        """The loaded price source, waiting for it when it is still loading.

        Raises:
            LedgerError: when the prices cannot be loaded (a bad price file…).
        """
        cache = self.cache
        if cache is None:
            self.wait()
            cache = self.cache
            if cache is None:
                assert self._error is not None
                raise self._error
        return cache.resolver

    def settle(self, event: UsageEvent) -> UsageEvent:
        """The event as it is stored: priced when it has no price yet (the writer's thread).

        An event whose price cannot be had because the prices failed to load is
        stored unpriced, with that reason, rather than lost.
        """
        from llmledger.pricing.cache import needs_price

        self.refresh()
        if not needs_price(event):
            return event
        try:
            resolver = self.resolver()
        except LedgerError as exc:
            return event.replace(unpriced_reason=f"the prices could not be loaded: {exc}")
        return resolver.priced(event)

    def refresh(self, force: bool = False) -> None:
        """Renew the prices when the database's rows or the price files changed.

        Checked at most every :data:`REFRESH_SECONDS` unless ``force``; runs in the
        writer's thread (it reads the database).
        """
        cache = self.cache
        if cache is None:
            return
        now = time.monotonic()
        if not force and now - self._checked_at < REFRESH_SECONDS:
            return
        self._checked_at = now
        try:
            version = self._version()
            if version != cache.version:
                self.cache = self._build(version)
        except Exception:
            # The prices in force stay; the next check tries again.
            if self._ledger.settings.strict:
                raise
            log.warning("llmledger: could not renew the prices", exc_info=True)

    # -- loading (the loading thread, the writer's) -------------------------------------

    def _load(self) -> None:
        leave_signals_to_the_main_thread()
        # The thread that started this one is in the middle of a record(): let it
        # have the interpreter back first, rather than after a whole switch interval.
        time.sleep(_YIELD)
        try:
            self.cache = self._build(self._version())
            self._checked_at = time.monotonic()
        except BaseException as exc:
            self._error = exc
            log.error("llmledger: could not load the prices: %s", exc)
        finally:
            self._loaded.set()

    def _version(self) -> Hashable:
        """What the prices are built from: the database's price version, the files' times."""
        ledger = self._ledger
        files = tuple(
            (str(path), path.stat().st_mtime_ns if path.exists() else None)
            for path in ledger.settings.all_price_files()
        )
        return (ledger.database_prices_version(), files)

    def _build(self, version: Hashable) -> PriceCache:
        from llmledger.pricing import PriceResolver
        from llmledger.pricing.cache import PriceCache

        ledger = self._ledger
        catalog, supplement = bundled_prices()
        if ledger._has_prices_database():
            try:
                catalog = catalog_in_force(ledger.store, strict=ledger.settings.strict)
            except LedgerError:
                # An unreachable database must not stop recording (as for its price rows).
                if ledger.settings.strict:
                    raise
                log.warning("llmledger: could not read the database's catalog", exc_info=True)
        resolver = PriceResolver(
            catalog=catalog,
            user_prices=ledger.settings.all_price_files(),
            database=ledger._database_prices(),
            supplement=supplement,
        )
        return PriceCache(resolver, version)
