"""Recomputing stored events' costs from the prices in force at each event's time.

After a price file changes, a price is added through the service or the catalog
is upgraded, :func:`reprice` prices the events of a range again with the one
composed price source (:class:`~llmledger.pricing.PriceResolver`).  A dry run
reads and prices and changes nothing; a real run has the store update events
and rollups batch by batch, each batch in its own transaction with the job's
progress, so a run stopped anywhere resumes where it stopped when started
again with the same range and filters, and a second run changes nothing.

What is priced again: every event whose cost came from a price list (catalog,
supplement, file, database) and every unpriced one.  A cost the caller gave
(``manual``) or the provider reported is the bill and is kept.  The billed steps
(``usage_parts``) and per-use fees are read again from the stored raw usage;
the per-use fees a response states outside its usage object (OpenAI web search
calls, Gemini grounded prompts) are not stored with the event, so an event
whose stored breakdown charged such a fee keeps its cost and is counted as
``kept``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from llmledger.core.billing import FEES
from llmledger.core.errors import LedgerError
from llmledger.core.events import UsageEvent
from llmledger.normalize import PROVIDERS, read_usage
from llmledger.pricing import PriceResolver
from llmledger.pricing.model import with_price
from llmledger.pricing.resolver import KEPT_COST_SOURCES
from llmledger.query.spec import Query
from llmledger.store.protocol import Store
from llmledger.store.reprice import cost_changed

__all__ = ["DEFAULT_BATCH", "RepriceRow", "RepriceSummary", "reprice", "reprice_key", "repriced"]

#: Events per batch (one transaction each).
DEFAULT_BATCH = 500

_FEE_IN_REASON = re.compile(rf"\b({'|'.join(map(re.escape, FEES))})=(\d+)\b")
_ZERO = Decimal(0)


def _billing_facts(event: UsageEvent) -> tuple[tuple[Any, ...], dict[str, int]] | None:
    """The billed steps and per-use fee counts of a stored event, or None when a fee
    it was charged cannot be counted again."""
    parts: tuple[Any, ...] = ()
    fees: dict[str, int] = {}
    if event.usage_raw is not None and event.provider in PROVIDERS:
        try:
            reading = read_usage(
                event.usage_raw,
                provider=event.provider,
                operation=event.operation,
                response_model=event.response_model,
            )
        except (LedgerError, ValueError, TypeError):
            reading = None
        if reading is not None:
            if reading.usage == event.usage:
                parts = reading.usage_parts
            fees.update({str(fee): uses for fee, uses in reading.fee_counts.items()})
    # A fee the price had no rate for is named with its count in the reason.
    for fee, count in _FEE_IN_REASON.findall(event.incomplete_reason or ""):
        fees.setdefault(fee, int(count))
    charged = set(event.cost_breakdown or ()) & set(FEES)
    if not charged <= set(fees):
        return None
    return parts, fees


def repriced(resolver: PriceResolver, event: UsageEvent) -> UsageEvent:
    """``event`` priced again from ``resolver`` at its own time (the same event when
    its cost is kept; see the module's notes).

    Example:
        >>> from datetime import UTC, datetime
        >>> from decimal import Decimal
        >>> from llmledger.core.usage import Usage
        >>> e = UsageEvent(provider="openai", model="gpt-4o", ts=datetime(2025, 1, 1, tzinfo=UTC),
        ...                usage=Usage(input_tokens=1_000_000), cost=Decimal("9"),
        ...                cost_source="file", price_ref="old")
        >>> repriced(PriceResolver(), e).cost
        Decimal('2.500000000')
        >>> repriced(PriceResolver(), e.replace(cost_source="manual")).cost
        Decimal('9')
    """
    if event.cost is not None and (
        event.cost_source is None or event.cost_source in KEPT_COST_SOURCES
    ):
        return event
    facts = _billing_facts(event)
    if facts is None:
        return event
    parts, fees = facts
    bare = event.replace(
        cost=None,
        cost_breakdown=None,
        cost_source=None,
        price_ref=None,
        unpriced_reason=None,
        incomplete_reason=None,
        usage_parts=parts,
        fee_counts=fees,
    )
    result = with_price(bare, resolver.event_price(bare))
    # The steps and fees are not stored: hand back the event as the store has it.
    return result.replace(usage_parts=event.usage_parts, fee_counts=event.fee_counts)


@dataclass(slots=True)
class RepriceRow:
    """The difference a reprice makes for one provider and model.

    Attributes:
        provider: The provider.
        model: The model as requested.
        calls: Events examined.
        changed: Events whose stored cost changed.
        before: Their total cost before (unpriced events count as nothing).
        after: Their total cost after.
        newly_priced: Events unpriced before and priced after.
        unpriced: Events still unpriced after.
        incomplete: Events priced incompletely after.
        kept: Events whose cost is kept as charged (see the module's notes).
    """

    provider: str
    model: str
    calls: int = 0
    changed: int = 0
    before: Decimal = _ZERO
    after: Decimal = _ZERO
    newly_priced: int = 0
    unpriced: int = 0
    incomplete: int = 0
    kept: int = 0

    @property
    def difference(self) -> Decimal:
        """``after - before``."""
        return self.after - self.before

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values (money as decimal text)."""
        return {
            "provider": self.provider,
            "model": self.model,
            "calls": self.calls,
            "changed": self.changed,
            "before": format(self.before, "f"),
            "after": format(self.after, "f"),
            "difference": format(self.difference, "f"),
            "newly_priced": self.newly_priced,
            "unpriced": self.unpriced,
            "incomplete": self.incomplete,
            "kept": self.kept,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RepriceRow:
        """A row back from :meth:`to_dict`."""
        return cls(
            provider=str(data["provider"]),
            model=str(data["model"]),
            calls=int(data["calls"]),
            changed=int(data["changed"]),
            before=Decimal(data["before"]),
            after=Decimal(data["after"]),
            newly_priced=int(data["newly_priced"]),
            unpriced=int(data["unpriced"]),
            incomplete=int(data["incomplete"]),
            kept=int(data["kept"]),
        )


@dataclass(slots=True)
class RepriceSummary:
    """What a reprice found (a dry run) or did.

    Attributes:
        dry_run: True when nothing was changed.
        spec: The range and filters, as text.
        rows: Per provider and model, most changed cost first.
        batches: Batches of this job (a resumed job counts the earlier ones).
        resumed: True when the job went on from an earlier, interrupted run.
        finished: True when every event of the range was done; False when the
            run stopped at its time limit (run it again to go on).
        cursor: Where an unfinished dry run stopped (``(ts_us, id)`` of the last
            event it read), to go on from with ``after``.
    """

    dry_run: bool
    spec: str
    rows: list[RepriceRow] = field(default_factory=list)
    batches: int = 0
    resumed: bool = False
    finished: bool = False
    cursor: tuple[int, str] | None = None

    @property
    def total(self) -> RepriceRow:
        """Every row added up."""
        total = RepriceRow(provider="", model="")
        for row in self.rows:
            for name in RepriceRow.__dataclass_fields__:
                if name not in ("provider", "model"):
                    setattr(total, name, getattr(total, name) + getattr(row, name))
        return total

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready values."""
        total = self.total.to_dict()
        del total["provider"], total["model"]
        return {
            "dry_run": self.dry_run,
            "range": self.spec,
            "batches": self.batches,
            "resumed": self.resumed,
            "finished": self.finished,
            "cursor": None if self.cursor is None else f"{self.cursor[0]}:{self.cursor[1]}",
            "rows": [row.to_dict() for row in self.rows],
            "total": total,
        }


class _Tally:
    """Running totals per provider and model, serialised into the job's state."""

    def __init__(self, state: str | None = None) -> None:
        self.rows: dict[tuple[str, str], RepriceRow] = {}
        for item in json.loads(state) if state else ():
            row = RepriceRow.from_dict(item)
            self.rows[row.provider, row.model] = row

    def add(self, old: UsageEvent, new: UsageEvent, *, kept: bool) -> None:
        row = self.rows.get((old.provider, old.model))
        if row is None:
            row = self.rows[old.provider, old.model] = RepriceRow(old.provider, old.model)
        row.calls += 1
        row.kept += kept
        if cost_changed(old, new):
            row.changed += 1
            row.before += old.cost or _ZERO
            row.after += new.cost or _ZERO
            row.newly_priced += old.cost is None and new.cost is not None
        row.unpriced += new.cost is None
        row.incomplete += new.price_status == "incomplete"

    def state(self) -> str:
        return json.dumps([row.to_dict() for row in self.rows.values()])

    def sorted_rows(self) -> list[RepriceRow]:
        return sorted(
            self.rows.values(), key=lambda r: (-abs(r.difference), -r.changed, r.provider, r.model)
        )


def _step(
    resolver: PriceResolver,
) -> Callable[[Sequence[UsageEvent], str | None], tuple[list[UsageEvent], str]]:
    def step(page: Sequence[UsageEvent], state: str | None) -> tuple[list[UsageEvent], str]:
        tally = _Tally(state)
        out = []
        for event in page:
            new = repriced(resolver, event)
            kept = new is event and event.cost is not None and _is_priced_from_list(event)
            tally.add(event, new, kept=kept)
            out.append(new)
        return out, tally.state()

    return step


def _is_priced_from_list(event: UsageEvent) -> bool:
    return event.cost_source is not None and event.cost_source not in KEPT_COST_SOURCES


def describe(query: Query) -> str:
    """A reprice's range and filters as text, the same for the same range and filters.

    Example:
        >>> describe(Query())
        'all events'
    """
    parts = []
    if query.since is not None:
        parts.append(f"since {query.since.isoformat()}")
    if query.until is not None:
        parts.append(f"until {query.until.isoformat()}")
    parts += [f"where {f.to_text()}" for f in query.where]
    return ", ".join(parts) or "all events"


def reprice_key(query: Query) -> str:
    """The job key of a range and filters: a rerun of the same ones resumes the job.

    Example:
        >>> len(reprice_key(Query()))
        32
    """
    return hashlib.sha256(describe(query).encode()).hexdigest()[:32]


def reprice(
    store: Store,
    resolver: PriceResolver,
    query: Query,
    *,
    now: datetime,
    dry_run: bool = True,
    batch_size: int = DEFAULT_BATCH,
    restart: bool = False,
    clock: Callable[[], datetime] | None = None,
    time_limit: float | None = None,
    after: tuple[int, str] | None = None,
) -> RepriceSummary:
    """Price the events of a query's range and filters again.

    Args:
        store: The ledger's store.
        resolver: The price source (database rows, price files, catalog,
            supplementary rows), read fresh by the caller.
        query: Its range (``since``, ``until``) and filters (``where``) select the events.
        now: The time the run starts.
        dry_run: Only report what would change (the default).
        batch_size: Events per batch and transaction.
        restart: Start over rather than resume an interrupted run of the same range.
        clock: The time each batch commits (``now`` each time when None).
        time_limit: Seconds after which no new batch starts; the summary then
            says ``finished=False`` and the same call goes on where it stopped
            (a dry run from its ``cursor``, given as ``after``).
        after: For a dry run, go on after this ``(ts_us, id)`` (a cursor).

    Returns:
        The difference per provider and model; for a resumed run, of the whole job.

    Raises:
        ValueError: on a batch size below 1.
        StoreError: when the database fails; the batches committed stay, and
            the same call resumes after them.

    Example:
        >>> from datetime import UTC
        >>> from llmledger.store import open_store
        >>> store = open_store("sqlite://")
        >>> reprice(store, PriceResolver(), Query(), now=datetime(2025, 1, 1, tzinfo=UTC)).rows
        []
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    spec = describe(query)
    step = _step(resolver)
    stop_at = None if time_limit is None else time.monotonic() + time_limit
    if dry_run:
        state: str | None = None
        before = after
        batches = 0
        while True:
            page = store.event_page(query, limit=batch_size, before=before)
            _, state = step(page, state)
            batches += 1
            if len(page) < batch_size:
                rows = _Tally(state).sorted_rows()
                return RepriceSummary(True, spec, rows, batches, after is not None, True)
            last = page[-1]
            before = (_micros(last.ts), last.id)
            if stop_at is not None and time.monotonic() >= stop_at:
                rows = _Tally(state).sorted_rows()
                return RepriceSummary(True, spec, rows, batches, after is not None, False, before)
    key = reprice_key(query)
    job = store.start_reprice(key, spec, now=now, restart=restart)
    resumed = job.batches > 0
    while job.finished is None:
        batch = store.reprice_batch(
            key, query, step, limit=batch_size, now=clock() if clock else now
        )
        job = batch.job
        if stop_at is not None and time.monotonic() >= stop_at:
            break
    rows = _Tally(job.state).sorted_rows()
    return RepriceSummary(False, spec, rows, job.batches, resumed, job.finished is not None)


def _micros(ts: datetime) -> int:
    from llmledger.store.codec import to_micros

    return to_micros(ts)
