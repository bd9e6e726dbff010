"""The store protocol: every operation the code above the store asks of it.

The runtime, the service and the CLI hold a :class:`Store`, never an engine or a
connection, so another implementation (a fake for tests, a columnar engine for
very large ledgers) can sit behind them.  :class:`~llmledger.store.SqlStore`
implements it for SQLite and PostgreSQL; the contract suite
(``tests/test_store_contract.py``) says what each operation must do.

Example:
    >>> from datetime import UTC, datetime
    >>> from llmledger.core.events import UsageEvent
    >>> from llmledger.store import open_store
    >>> store: Store = open_store("sqlite://")
    >>> event = UsageEvent(provider="openai", model="gpt-4o", ts=datetime(2025, 1, 1, tzinfo=UTC))
    >>> result = store.write([event, event])
    >>> [e.id for e in result.inserted] == [event.id], result.duplicates == (event.id,)
    (True, True)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from llmledger.core.events import UsageEvent

if TYPE_CHECKING:
    from datetime import timedelta

    from llmledger.alerts import Alert, Budget, Message
    from llmledger.core.limits import Amounts, Decision, Limit, Subject
    from llmledger.pricing.fx import ExchangeRates
    from llmledger.query.plan import SourceMode
    from llmledger.query.report import Report
    from llmledger.query.spec import Query
    from llmledger.store.catalogs import StoredCatalog
    from llmledger.store.content import ContentRecord
    from llmledger.store.keys import ApiKey, StoredKey
    from llmledger.store.prices import DatabasePrices, StoredPrice, StoredRate
    from llmledger.store.reprice import RepriceBatch, RepriceJob, RepriceStep
    from llmledger.store.tombstones import DeleteResult

__all__ = ["Store", "WriteResult"]


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write did with each event of its batch.

    Every event of the batch is in exactly one of the three, in batch order.

    Attributes:
        inserted: The events stored by this write.
        duplicates: Ids not stored because the id was stored before, or came
            earlier in the same batch (one entry per such event).
        rejected: Ids of the events refused as malformed (reported to the
            write's ``on_error``), one entry per such event.

    Example:
        >>> WriteResult().count
        0
    """

    inserted: tuple[UsageEvent, ...] = ()
    duplicates: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        """How many events were stored."""
        return len(self.inserted)


class Store(Protocol):
    """The ledger's storage: events, kept text, API keys, price and rate rows, and its schema.

    Times are aware datetimes; money is ``Decimal``.  Errors are
    :class:`~llmledger.core.errors.StoreError` and its subclasses.
    """

    # -- the database ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """Where the ledger is, any password hidden."""
        ...

    @property
    def dialect(self) -> str:
        """The kind of database: ``"sqlite"``, ``"postgresql"``…"""
        ...

    def migrate(self) -> None:
        """Bring the schema to the newest version (a no-op when it is)."""
        ...

    def schema_version(self) -> str | None:
        """The schema version the database is at (None before the first migration)."""
        ...

    def backup(self, dest: str | os.PathLike[str]) -> Path:
        """Copy the ledger to ``dest`` while it stays in use; the path written."""
        ...

    def close(self) -> None:
        """Release connections; using the store again reopens them."""
        ...

    def __enter__(self) -> Store: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    # -- events ----------------------------------------------------------------------

    def write(
        self,
        batch: Sequence[UsageEvent],
        *,
        on_error: Callable[[UsageEvent, Exception], None] | None = None,
        content: Mapping[str, ContentRecord] | None = None,
    ) -> WriteResult:
        """Insert events in one transaction, skipping ids already stored or deleted.

        ``content`` maps event ids to their text, written in the same
        transaction for the events inserted (never for a duplicate).
        """
        ...

    def get(self, event_id: str) -> UsageEvent | None:
        """The event with this id, or None."""
        ...

    def event_tenants(self, ids: Iterable[str]) -> dict[str, str | None]:
        """The tenant of each stored event among ``ids`` (one query per batch of ids)."""
        ...

    def recent(self, limit: int = 50, offset: int = 0) -> list[UsageEvent]:
        """The newest events first."""
        ...

    def events(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        *,
        tags: Mapping[str, str] | None = None,
        **equals: Any,
    ) -> Iterator[UsageEvent]:
        """Events in time order with column equality and tag filters, streamed."""
        ...

    def event_page(
        self, query: Query, *, limit: int, before: tuple[int, str] | None = None
    ) -> list[UsageEvent]:
        """Events in a report query's range and filters, newest first, at most ``limit``,
        strictly older than ``before`` (``(ts_us, id)`` of a previous page's last event)."""
        ...

    def count(self) -> int:
        """How many events are stored."""
        ...

    def delete_events(self, query: Query, *, now: datetime, dry_run: bool = False) -> DeleteResult:
        """Delete the events of a query's range and filters in one transaction, leaving a
        tombstone per id (a later write skips it as a duplicate) and rebuilding the
        rollups they counted in; with ``dry_run`` only count them."""
        ...

    def unpriced_models(self) -> list[tuple[str, str, int]]:
        """``(provider, model, calls)`` of the models seen without a price, most calls first."""
        ...

    def price_gaps(self) -> list[tuple[str, str, str, int]]:
        """``(provider, model, price status, calls)`` of the models seen without a
        price (``unpriced``) or priced without a rate for some billed unit
        (``incomplete``), most calls first."""
        ...

    # -- reports ---------------------------------------------------------------------

    def report(
        self, query: Query, *, rates: ExchangeRates | None = None, mode: SourceMode = "auto"
    ) -> Report:
        """Answer a query of the report model (from rollups where they answer exactly)."""
        ...

    def timeline(
        self, query: Query, *, limit: int | None = 1000, rates: ExchangeRates | None = None
    ) -> list[dict[str, Any]]:
        """The calls of a query's range and filters, oldest first, costs in its currency."""
        ...

    def rebuild_rollups(self, since: datetime | None = None, until: datetime | None = None) -> int:
        """Recompute the rollups of a range from the raw events; the rollup rows it now has."""
        ...

    # -- repricing -------------------------------------------------------------------

    def reprice_job(self, key: str) -> RepriceJob | None:
        """The saved progress of a reprice, or None."""
        ...

    def start_reprice(
        self, key: str, spec: str, *, now: datetime, restart: bool = False
    ) -> RepriceJob:
        """The job of ``key``: an unfinished one resumed, else started over."""
        ...

    def reprice_batch(
        self, key: str, query: Query, step: RepriceStep, *, limit: int, now: datetime
    ) -> RepriceBatch:
        """Reprice the job's next batch (events, rollups and progress in one transaction)."""
        ...

    # -- kept text -------------------------------------------------------------------

    def save_content(self, records: Sequence[ContentRecord]) -> None:
        """Keep text; a record replaces what its event had."""
        ...

    def get_content(self, event_id: str) -> ContentRecord | None:
        """The text kept for one event, or None."""
        ...

    # -- API keys --------------------------------------------------------------------

    def add_key(self, key: ApiKey, secret_hash: str) -> None:
        """Store a new key with the hash of its token."""
        ...

    def get_key(self, key_id: str) -> StoredKey | None:
        """A key and its token's hash, or None."""
        ...

    def list_keys(self, *, include_revoked: bool = False) -> list[ApiKey]:
        """The keys, oldest first."""
        ...

    def revoke_key(self, key_id: str, *, now: datetime) -> ApiKey | None:
        """Revoke a key (keeping an earlier revoke's time); None when there is no such key."""
        ...

    # -- price and exchange rate rows ------------------------------------------------

    def add_price(self, price: StoredPrice) -> None:
        """Store a price row; ``RowExistsError`` for a second one of a model, tier and day."""
        ...

    def list_prices(
        self, *, provider: str | None = None, model: str | None = None
    ) -> list[StoredPrice]:
        """Price rows, by provider, model, tier and first day."""
        ...

    def check_price(self, price_id: str, checked: date) -> StoredPrice | None:
        """Set a price row's checked day; the row after, or None when missing."""
        ...

    def add_rate(self, rate: StoredRate) -> None:
        """Store an exchange rate row; ``RowExistsError`` for a second one of a currency and day."""
        ...

    def list_rates(self, *, currency: str | None = None) -> list[StoredRate]:
        """Exchange rate rows, by currency and first day."""
        ...

    def check_rate(self, rate_id: str, checked: date) -> StoredRate | None:
        """Set a rate row's checked day; the row after, or None when missing."""
        ...

    def database_prices(self) -> DatabasePrices:
        """Every price and rate row, with their version, read together."""
        ...

    def prices_version(self) -> tuple[Any, ...]:
        """A cheap value that changes whenever a price or rate row is added, or a
        fetched catalog is stored."""
        ...

    # -- fetched catalogs ------------------------------------------------------------

    def add_catalog(self, catalog: StoredCatalog) -> bool:
        """Store a fetched catalog as the one in force; False when it is the newest
        one's document again (then only marked checked)."""
        ...

    def latest_catalog(self) -> StoredCatalog | None:
        """The catalog in force (the newest fetched), or None: the bundled one."""
        ...

    def catalog_id(self) -> str | None:
        """The id of the catalog in force, cheaply (None: the bundled one)."""
        ...

    # -- limits ----------------------------------------------------------------------

    def add_limit(self, limit: Limit) -> None:
        """Store a new limit; ``RowExistsError`` for a second one with its id."""
        ...

    def get_limit(self, limit_id: str) -> Limit | None:
        """The limit with this id, or None."""
        ...

    def list_limits(self, *, tenant: str | None = None) -> list[Limit]:
        """Every limit (only those of ``tenant`` when given), oldest first."""
        ...

    def remove_limit(self, limit_id: str) -> Limit | None:
        """Delete a limit with its counters; the limit, or None when missing."""
        ...

    def reserve_limits(
        self,
        subject: Subject,
        needed: Amounts,
        *,
        now: datetime,
        ttl: float,
        reservation: str | None,
    ) -> list[Decision]:
        """Decide a call against the limits it counts for, atomically reserving
        ``needed`` under ``reservation`` when none blocks (None: decide only)."""
        ...

    def settle_limits(
        self, reservation: str, spent: Amounts, *, now: datetime, tenant: str | None = None
    ) -> int:
        """Replace a reservation by what was spent; how many limits counted it."""
        ...

    def limit_states(
        self, limit_list: Sequence[Limit], *, now: datetime
    ) -> dict[str, tuple[datetime, int, int]]:
        """Per limit id: its current window's start, units settled and units in flight."""

    # -- budgets, alerts, the outbox, the scheduler's jobs (store/alerting.py) -------

    def add_budget(self, budget: Budget, *, now: datetime) -> None:
        """Store a new budget; ``RowExistsError`` when its name is taken."""
        ...

    def get_budget(self, id_or_name: str) -> Budget | None:
        """The budget with this id or name, or None."""
        ...

    def list_budgets(self, *, tenant: str | None = "*", active_only: bool = False) -> list[Budget]:
        """Budgets by name: every one (``"*"``), or only a tenant's (None: of no tenant)."""
        ...

    def update_budget(self, budget: Budget, *, now: datetime) -> Budget | None:
        """Replace a stored budget; None when there is none with its id."""
        ...

    def remove_budget(self, budget_id: str) -> bool:
        """Delete a budget (its alerts stay); whether there was one."""
        ...

    def open_alerts(self) -> list[Alert]:
        """The alerts not resolved yet."""
        ...

    def last_resolved(self, since: datetime) -> dict[str, datetime]:
        """Key -> when its latest alert resolved, for those resolved after ``since``."""
        ...

    def record_alerts(
        self,
        fired: Sequence[tuple[Alert, Sequence[Message]]],
        resolved: Iterable[str],
        *,
        now: datetime,
    ) -> list[Alert]:
        """Store fired alerts with their messages and resolve alerts, in one transaction."""
        ...

    def list_alerts(
        self,
        *,
        tenant: str | None = "*",
        state: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[Alert]:
        """Alerts newest first, of every tenant (``"*"``) or of one."""
        ...

    def get_alert(self, alert_id: str) -> Alert | None:
        """The alert with this id, or None."""
        ...

    def ack_alert(self, alert_id: str, *, by: str | None, now: datetime) -> Alert | None:
        """Acknowledge an alert; the alert after, or None."""
        ...

    def auth_failures(
        self, since: datetime, until: datetime, error_types: Iterable[str]
    ) -> list[tuple[str, str | None, int, str | None]]:
        """Calls refused for their provider key: ``(provider, fingerprint, count, message)``."""
        ...

    def queue_messages(
        self, messages: Sequence[Message], *, job: tuple[str, datetime] | None = None
    ) -> int:
        """Queue messages once per dedupe key, recording a job's run with them."""
        ...

    def due_messages(self, now: datetime, *, limit: int = 100) -> list[Message]:
        """Messages whose next delivery attempt is due."""
        ...

    def list_messages(self, *, alert_id: str | None = None, limit: int = 100) -> list[Message]:
        """Messages newest first."""
        ...

    def message_attempted(
        self,
        message: Message,
        *,
        now: datetime,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> Message:
        """Record a delivery attempt; the message after."""
        ...

    def lead(self, holder: str, *, now: datetime, ttl: timedelta) -> bool:
        """Take or keep the scheduler's lease; whether ``holder`` leads."""
        ...

    def release(self, holder: str) -> None:
        """Give the scheduler's lease up."""
        ...

    def job_last_run(self, name: str) -> datetime | None:
        """When a scheduled job last ran."""
        ...

    def job_ran(self, name: str, *, now: datetime) -> None:
        """Record a scheduled job's run."""
        ...
