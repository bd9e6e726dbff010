"""What one service instance holds: settings, the store, keys, database prices, counters.

Nothing here is per-request state that another instance would need: every
instance over the same database answers the same, so any number can run side by
side.  Database prices, and the catalog fetched into the database, are re-read when
another instance changed them (checked at most every few seconds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio

from llmledger.core.settings import Settings
from llmledger.monitor import Monitor, Scheduler
from llmledger.pricing import ExchangeRates, PriceBook, PriceResolver
from llmledger.runtime.prices import bundled_prices, catalog_in_force
from llmledger.server.keys import KeyStore
from llmledger.server.metrics import Metrics
from llmledger.server.pricedb import PriceDB
from llmledger.store import Store, open_store
from llmledger.store.budget import QueryTimeoutError, time_budget

__all__ = ["INGEST_THREADS", "Service"]

#: Seconds between two checks for price rows added by another instance.
PRICE_REFRESH_SECONDS = 5.0
#: Worker threads kept for ingest.  Every other route that blocks runs in the
#: shared pool of the server's threads, where reports waiting for one of the
#: ``report_slots`` each hold a thread: ingest never queues behind them.
INGEST_THREADS = 8


class Service:
    """The parts of the service, built from settings.

    Args:
        settings: Where the ledger is (``database_url``), price files, limits.
        store: An open store to use instead of opening ``settings``' database.
    """

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store: Store = store if store is not None else open_store(settings)
        self.keys = KeyStore(self.store, cache_seconds=settings.key_cache_seconds)
        self.prices = PriceDB(self.store)
        self._report_slots = threading.BoundedSemaphore(settings.report_slots)
        #: The threads ingest runs in (see :data:`INGEST_THREADS`).
        self.ingest_threads = anyio.CapacityLimiter(INGEST_THREADS)
        self.metrics = Metrics()
        self._lock = threading.Lock()
        self._pricer: PriceResolver | None = None
        self._rates: ExchangeRates | None = None
        self._version: tuple[Any, ...] | None = None
        self._checked_at = float("-inf")
        self.monitor = Monitor(self.store, settings, lambda: self.pricer)
        self.scheduler: Scheduler | None = None

    def start_jobs(self) -> None:
        """Run the scheduled jobs in this process (one instance over the database leads)."""
        if self.scheduler is None:
            self.scheduler = Scheduler(self.monitor)
            self.scheduler.start()

    def wrote(self) -> None:
        """Events were stored: ask the scheduled check to run soon (when jobs run here)."""
        if self.scheduler is not None:
            self.scheduler.poke()

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if (
            not force
            and self._pricer is not None
            and now - self._checked_at < PRICE_REFRESH_SECONDS
        ):
            return
        with self._lock:
            version = self.prices.version()
            self._checked_at = now
            if not force and self._pricer is not None and version == self._version:
                return
            files = PriceBook.load(self.settings.all_price_files())
            # The supplementary rows never change while running; the catalog is the
            # bundled one until one is fetched into the database (any instance's
            # weekly price check, or ``llmledger prices refresh``).
            self._pricer = PriceResolver(
                catalog=catalog_in_force(self.store),
                user_prices=files,
                database=self.prices.book(),
                supplement=bundled_prices()[1],
            )
            self._rates = self._pricer.exchange_rates
            self._version = version

    @contextmanager
    def report_budget(self) -> Iterator[None]:
        """Run a report query in one of the ``report_slots``, within ``query_timeout``.

        Reads beyond the slots wait for one (the wait counts against the
        budget), so however many reports are asked for at once, the database
        connections and the processor time left serve ingest.

        Raises:
            QueryTimeoutError: when no slot came free within the budget, or the
                query ran out of it.
        """
        seconds = self.settings.query_timeout or None
        started = time.monotonic()
        if not self._report_slots.acquire(timeout=seconds):
            raise QueryTimeoutError(
                f"{self.settings.report_slots} report queries were running for the whole time "
                f"budget ({seconds:g} s, query_timeout); ask again later"
            )
        try:
            left = None if seconds is None else max(seconds - (time.monotonic() - started), 0.001)
            with time_budget(left):
                yield
        finally:
            self._report_slots.release()

    @property
    def pricer(self) -> PriceResolver:
        """The price source: database rows, price files, the catalog and the
        supplementary rows (the composition the SDK's ledger uses too)."""
        self._refresh()
        assert self._pricer is not None
        return self._pricer

    @property
    def exchange_rates(self) -> ExchangeRates:
        """Exchange rates of the price files and the database."""
        self._refresh()
        assert self._rates is not None
        return self._rates

    def prices_changed(self) -> None:
        """Rebuild the resolver now (this instance added or verified a row)."""
        self._refresh(force=True)

    def close(self) -> None:
        """Stop the scheduled jobs and close the store's connections."""
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        self.store.close()
