"""The checks: budgets and alert rules read through the store, alerts fired and delivered.

:class:`Monitor` joins the pure rules (:mod:`llmledger.alerts`), the store and
the senders (:mod:`llmledger.notify`).  Every figure comes from the query
engine (``store.report``: rollups where they answer), except the
authentication failures (a store listing) and price staleness (the price source).

Example:
    >>> from datetime import UTC, datetime
    >>> from decimal import Decimal
    >>> from llmledger.alerts import Budget
    >>> from llmledger.core.settings import load_settings
    >>> from llmledger.store import open_store
    >>> store = open_store("sqlite://")
    >>> from llmledger.pricing import PriceResolver
    >>> monitor = Monitor(store, load_settings(), PriceResolver)
    >>> b = Budget(name="all", amount=Decimal(10), period="month")
    >>> [s.spent for s in monitor.budget_statuses([b], datetime(2025, 3, 1, tzinfo=UTC))]
    [Decimal('0')]
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from llmledger.alerts import (
    Alert,
    AlertSettings,
    Budget,
    BudgetStatus,
    Condition,
    Message,
    alert_messages,
    budget_conditions,
    digest_messages,
    limit_conditions,
    plan_budgets,
    retry_delay,
    statuses,
    test_messages,
    transition,
    windows,
)
from llmledger.alerts.limits import NOTED
from llmledger.alerts.messages import MAX_ATTEMPTS
from llmledger.alerts.rules import (
    AUTH_ERROR_TYPES,
    auth_conditions,
    error_rate_conditions,
    latency_conditions,
    price_gap_conditions,
    spike_conditions,
    stale_price_conditions,
)
from llmledger.core.errors import LedgerError, NotificationError
from llmledger.core.ids import new_id
from llmledger.core.settings import Settings
from llmledger.monitor.refresh import refresh_catalog
from llmledger.notify import send
from llmledger.pricing import PriceResolver
from llmledger.query import Filter, Query
from llmledger.store import Store

__all__ = ["CheckResult", "Delivery", "Monitor", "alert_settings"]

log = logging.getLogger("llmledger.monitor")

#: How long a latency baseline (a week of raw durations) is reused before it is read again.
BASELINE_REFRESH = timedelta(hours=1)
#: The window in which a model seen without a price keeps its alert open.
PRICE_GAP_WINDOW = timedelta(days=1)


def alert_settings(settings: Settings) -> AlertSettings:
    """The rules' thresholds from the settings.

    Example:
        >>> from llmledger.core.settings import load_settings
        >>> alert_settings(load_settings(error_rate_threshold=0.1)).error_rate
        0.1
    """
    return AlertSettings(
        error_rate=settings.error_rate_threshold,
        error_window=timedelta(seconds=settings.error_rate_window),
        min_calls=settings.alert_min_calls,
        spike_factor=settings.spike_factor,
        spike_window=timedelta(seconds=settings.spike_window),
        baseline_days=settings.baseline_days,
        spike_min_cost=Decimal(str(settings.spike_min_cost)),
        spike_min_tokens=settings.spike_min_tokens,
        latency_factor=settings.latency_factor,
        latency_window=timedelta(seconds=settings.latency_window),
        stale_days=settings.stale_price_days,
        cooldown=timedelta(seconds=settings.alert_cooldown),
        recipients=settings.alert_recipients,
    )


@dataclass(slots=True)
class CheckResult:
    """What one check found and did.

    Attributes:
        statuses: Every active budget's status.
        fired: Alerts fired by this check.
        resolved: Alerts resolved by this check.
        errors: Rules that could not be evaluated, with why (their alerts are left as they were).
    """

    statuses: list[BudgetStatus] = field(default_factory=list)
    fired: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Delivery:
    """What one pass over the outbox did: messages delivered, to retry, given up."""

    delivered: list[Message] = field(default_factory=list)
    retrying: list[Message] = field(default_factory=list)
    failed: list[Message] = field(default_factory=list)


class Monitor:
    """Budget and alert checks over one store.

    Args:
        store: The ledger.
        settings: Thresholds, recipients, the mail server and the webhook secret.
        pricer: Gives the price source (for exchange rates and stale prices):
            the service's or the ledger's, composed from the same layers.
        sender: Delivers one message (:func:`llmledger.notify.send` by default).
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        pricer: Callable[[], PriceResolver],
        sender: Callable[[Message, Settings], None] = send,
    ) -> None:
        self.store = store
        self.settings = settings
        self.rules = alert_settings(settings)
        self._pricer = pricer
        self._send = sender
        self._baseline: tuple[datetime, list[dict[str, object]]] | None = None
        self._lock = threading.Lock()

    def pricer(self) -> PriceResolver:
        """The price source."""
        return self._pricer()

    # -- budgets ---------------------------------------------------------------------

    def budget_statuses(
        self, budgets: Sequence[Budget], now: datetime, *, errors: list[str] | None = None
    ) -> list[BudgetStatus]:
        """The status of each budget at ``now``, from as few reports as they allow.

        Budgets are answered per currency: when a currency's spend cannot be
        reported (no exchange rate), its budgets are left out and the reason is
        appended to ``errors``; without ``errors`` the error is raised.
        """
        by_currency: dict[str, list[Budget]] = {}
        for budget in budgets:
            by_currency.setdefault(budget.currency, []).append(budget)
        found: dict[str, BudgetStatus] = {}
        for currency, members in by_currency.items():
            try:
                plan = plan_budgets(members, now)
                rates = self.pricer().exchange_rates if currency != "USD" else None
                answers = [self.store.report(query, rates=rates).rows for query in plan.queries]
            except LedgerError as exc:
                if errors is None:
                    raise
                names = ", ".join(b.name for b in members)
                errors.append(f"budgets in {currency} ({names}): {exc}")
                continue
            found.update((s.budget.id, s) for s in statuses(plan, members, answers))
        return [found[b.id] for b in budgets if b.id in found]

    # -- the check -------------------------------------------------------------------

    def check(self, now: datetime) -> CheckResult:
        """Evaluate every active budget and rule, fire and resolve alerts, queue messages.

        A rule that fails (the database, a bad rate) is reported in the result and
        leaves its alerts as they were; the others go on.
        """
        with self._lock:
            return self._check(now)

    def _check(self, now: datetime) -> CheckResult:
        result = CheckResult()
        holding: list[Condition] = []
        checked: set[str] = set()

        def attempt(rule: str, find: Callable[[], list[Condition]]) -> None:
            try:
                holding.extend(find())
            except LedgerError as exc:
                log.error("llmledger: the %s check failed: %s", rule, exc)
                result.errors.append(f"{rule}: {exc}")
                return
            checked.add(rule)

        budget_errors: list[str] = []
        try:
            active = self.store.list_budgets(active_only=True)
            result.statuses = self.budget_statuses(active, now, errors=budget_errors)
            holding.extend(budget_conditions(result.statuses))
        except LedgerError as exc:
            budget_errors.append(str(exc))
        # Budgets that could not be evaluated keep their alerts: nothing of the rule resolves.
        if budget_errors:
            for error in budget_errors:
                log.error("llmledger: the budget check failed: %s", error)
            result.errors.extend(f"budget: {error}" for error in budget_errors)
        else:
            checked.add("budget")
        for rule, find in self._rules(now).items():
            attempt(rule, find)
        open_alerts = self.store.open_alerts()
        last = self.store.last_resolved(now - self.rules.cooldown)
        change = transition(open_alerts, last, holding, checked, now, self.rules.cooldown)
        fired = []
        for condition in change.fire:
            alert = Alert(
                id=new_id(),
                rule=condition.rule,
                key=condition.key,
                tenant=condition.tenant,
                title=condition.title,
                message=condition.message,
                details=condition.details,
                recipients=condition.recipients,
                fired=now,
            )
            fired.append((alert, alert_messages(alert, now)))
        result.fired = self.store.record_alerts(fired, [a.id for a in change.resolve], now=now)
        result.resolved = list(change.resolve)
        return result

    def _rules(self, now: datetime) -> dict[str, Callable[[], list[Condition]]]:
        cfg = self.rules
        w = windows(now, cfg)
        report = self.store.report

        def rows(
            window: tuple[datetime, datetime], by: str, *metrics: str
        ) -> list[dict[str, object]]:
            query = Query(since=window[0], until=window[1], by=(by,), metrics=metrics)
            return report(query).rows

        def spikes(kind: str) -> list[Condition]:
            metric = "cost" if kind == "cost" else "total_tokens"
            return spike_conditions(
                kind,
                rows(w.spike, "tenant", metric),
                rows(w.spike_baseline, "tenant", metric),
                cfg,
            )

        def latency() -> list[Condition]:
            current = rows(w.latency, "provider", "calls", "latency_p95")
            if not current:
                return []
            if self._baseline is None or now - self._baseline[0] >= BASELINE_REFRESH:
                self._baseline = (now, rows(w.latency_baseline, "provider", "calls", "latency_p95"))
            return latency_conditions(current, self._baseline[1], cfg)

        def gaps() -> list[Condition]:
            found = report(
                Query(
                    since=now - PRICE_GAP_WINDOW,
                    until=now,
                    by=("provider", "model"),
                    metrics=("unpriced_calls", "incomplete_calls"),
                )
            ).rows
            listed = []
            for row in found:
                for status in ("unpriced", "incomplete"):
                    calls = int(row.get(f"{status}_calls") or 0)
                    if calls:
                        listed.append((row["provider"], row["model"], status, calls))
            return price_gap_conditions(listed, cfg)

        def limits() -> list[Condition]:
            found = self.store.list_limits()
            if not found:
                return []
            states = self.store.limit_states(found, now=now)
            noted = report(
                Query(
                    since=min(window for window, _, _ in states.values()),
                    until=now,
                    by=(NOTED,),
                    every="hour",
                    where=(Filter(NOTED, (None,), negate=True),),
                    metrics=("calls",),
                )
            ).rows
            return limit_conditions(found, states, noted, cfg.recipients)

        def stale() -> list[Condition]:
            today = now.date()
            before = today - timedelta(days=cfg.stale_days - 1)
            found = [(p.provider, p.model, p.checked) for p in self.pricer().stale(before)]
            return stale_price_conditions(found, today, cfg)

        return {
            "error_rate": lambda: error_rate_conditions(
                rows(w.errors, "provider", "calls", "errors"), cfg
            ),
            "cost_spike": lambda: spikes("cost"),
            "token_spike": lambda: spikes("tokens"),
            "latency": latency,
            "auth_failure": lambda: auth_conditions(
                self.store.auth_failures(*w.errors, AUTH_ERROR_TYPES), cfg
            ),
            "price_gap": gaps,
            "stale_prices": stale,
            "limit": limits,
        }

    # -- delivery --------------------------------------------------------------------

    def deliver(self, now: datetime | None = None, *, limit: int = 100) -> Delivery:
        """Send the messages that are due; a failure is retried with backoff, then given up."""
        done = Delivery()
        moment = now or datetime.now(UTC)
        for message in self.store.due_messages(moment, limit=limit):
            try:
                self._send(message, self.settings)
            except (NotificationError, LedgerError) as exc:
                attempts = message.attempts + 1
                retry_at = None if attempts >= MAX_ATTEMPTS else moment + retry_delay(attempts)
                after = self.store.message_attempted(
                    message, now=moment, error=str(exc), retry_at=retry_at
                )
                log.warning("llmledger: delivery %s failed: %s", message.id, exc)
                (done.retrying if retry_at is not None else done.failed).append(after)
                continue
            done.delivered.append(self.store.message_attempted(message, now=moment))
        return done

    def send_test(
        self, recipients: Sequence[str], origin: str, now: datetime
    ) -> list[tuple[str, str | None]]:
        """Send a test notification to each recipient now; ``(recipient, error or None)``."""
        results: list[tuple[str, str | None]] = []
        for message in test_messages(recipients, now, origin):
            try:
                self._send(message, self.settings)
            except (NotificationError, LedgerError) as exc:
                results.append((message.recipient, str(exc)))
            else:
                results.append((message.recipient, None))
        return results

    # -- the weekly price check ------------------------------------------------------

    def price_check(self, now: datetime) -> list[Message]:
        """The weekly digest: stale price rows, models seen without a price, and where
        the user's prices differ from the catalog; queued for the alert recipients
        once per ISO week (a restart does not queue it again).

        With ``price_refresh`` on, the catalog is first refreshed from
        ``price_catalog_url`` (:func:`~llmledger.monitor.refresh.refresh_catalog`)
        and the digest says what changed, or why it was not refreshed."""
        pricer = self.pricer()
        refreshed = None
        if self.settings.price_refresh:
            refreshed = refresh_catalog(
                self.store,
                pricer.catalog,
                url=self.settings.price_catalog_url,
                timeout=self.settings.price_catalog_timeout,
                now=now,
            )
            if refreshed.stored and refreshed.catalog is not None:
                # The differences below are against the catalog prices use from now on.
                pricer = PriceResolver(
                    catalog=refreshed.catalog,
                    user_prices=pricer.book,
                    database=pricer.database,
                    supplement=pricer.supplement,
                )
        if not self.rules.recipients:
            self.store.job_ran("price_check", now=now)  # nobody to tell: nothing to read
            return []
        today = now.date()
        stale = [
            f"{p.provider}/{p.model} ({p.source}, "
            f"{'never checked' if p.checked is None else f'checked {p.checked.isoformat()}'})"
            for p in pricer.stale(today - timedelta(days=self.rules.stale_days - 1))
        ]
        gaps = [
            f"{provider}/{model}: {calls} call(s) {status}"
            for provider, model, status, calls in self.store.price_gaps()
        ]
        sections: list[tuple[str, Sequence[str]]] = [
            (f"Price rows not checked for {self.rules.stale_days} days", stale),
            ("Models seen without a complete price", gaps),
            ("Your prices that differ from the catalog", catalog_differences(pricer, now)),
        ]
        if refreshed is not None:
            sections.insert(0, ("Catalog refresh", refreshed.lines()))
        year, week, _ = today.isocalendar()
        messages = digest_messages(
            f"Weekly price check, {year}-W{week:02d}",
            sections,
            self.rules.recipients,
            now,
            f"price-check:{year}-W{week:02d}",
        )
        self.store.queue_messages(messages, job=("price_check", now))
        return messages


def catalog_differences(pricer: PriceResolver, now: datetime) -> list[str]:
    """User price rows (files, database) whose rates differ from the catalog's for the
    same model, one line each."""
    rows = pricer.list_prices(at=now)
    catalog = {(p.provider, p.model): p for p in rows if p.source == "catalog"}
    lines = []
    for price in rows:
        if price.source not in ("file", "database") or price.service_tier:
            continue
        base = catalog.get((price.provider, price.model))
        if base is None:
            continue
        differ = [
            f"{bucket} {price.rates.get(bucket, '-')} vs {base.rates.get(bucket, '-')}"
            for bucket in sorted(set(price.rates) | set(base.rates))
            if price.rates.get(bucket) != base.rates.get(bucket)
        ]
        if differ:
            lines.append(
                f"{price.provider}/{price.model} ({price.source}): "
                + ", ".join(differ)
                + " USD/Mtok (yours vs catalog)"
            )
    return lines
