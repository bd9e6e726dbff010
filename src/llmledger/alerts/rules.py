"""The alert rules: which conditions hold, from figures the caller has read (pure).

Each function takes rows of a report (or of a store listing) and returns the
:class:`~llmledger.alerts.state.Condition` objects that hold.  The formulas:

* **error rate**: per provider over the last ``error_window`` (15 min):
  ``errors / calls > error_rate`` (5 %) with at least ``min_calls`` calls (20).
* **spend and token spikes**: per tenant, the spend (or total tokens) of the
  last ``spike_window`` (1 h), ``current``, against the mean of the same length
  over the ``baseline_days`` (7) before it:
  ``baseline = spend(before) x spike_window / baseline_days``.  A spike is
  ``current > spike_factor x baseline`` (3x) and ``current ≥ spike_min_cost``
  ($1; ``spike_min_tokens``, 100,000, for tokens), so a quiet tenant's first
  dollar is no spike but a new tenant spending fast is.
* **latency**: per provider, the p95 duration of the last ``latency_window``
  (15 min) against the p95 of the ``baseline_days`` before it, each over at
  least ``min_calls`` calls: ``p95(now) > latency_factor x p95(baseline)`` (1.5x).
* **provider authentication failures**: any call in the last
  ``error_window`` that failed with an authentication or permission error
  (a revoked or wrong provider key), per provider and key fingerprint.
* **price gaps**: each model seen unpriced or priced incompletely.
* **stale prices**: price rows not checked for ``stale_days`` (30) days.

Example:
    >>> cfg = AlertSettings()
    >>> rows = [{"provider": "openai", "calls": 40, "errors": 4}]
    >>> [c.key for c in error_rate_conditions(rows, cfg)]
    ['error_rate:openai']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from llmledger.alerts.recipients import parse_recipients
from llmledger.alerts.state import Condition, Rule
from llmledger.core.errors import BudgetError

__all__ = [
    "AUTH_ERROR_TYPES",
    "AlertSettings",
    "Windows",
    "auth_conditions",
    "error_rate_conditions",
    "latency_conditions",
    "price_gap_conditions",
    "spike_conditions",
    "stale_price_conditions",
    "windows",
]

#: ``error_type`` values of a refused provider key (the SDKs' exception names and
#: the providers' error codes).
AUTH_ERROR_TYPES: frozenset[str] = frozenset(
    {
        "AuthenticationError",
        "PermissionDeniedError",
        "authentication_error",
        "permission_error",
        "invalid_api_key",
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
    }
)


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """The thresholds of every rule (settings ``LLMLEDGER_…``, see docs/alerts.md).

    Attributes:
        error_rate: Error share above which the error-rate alert fires.
        error_window: Window of the error-rate and authentication rules.
        min_calls: Fewest calls a window needs before its rate or p95 counts.
        spike_factor: How many times the baseline makes a spike.
        spike_window: Window of the spike rules.
        baseline_days: Days before the window the spike and latency baselines cover.
        spike_min_cost: Least spend (USD) in the window for a spend spike.
        spike_min_tokens: Least tokens in the window for a token spike.
        latency_factor: How many times the baseline p95 makes a latency alert.
        latency_window: Window of the latency rule.
        stale_days: Age in days after which a price row is stale.
        cooldown: How long a resolved alert stays quiet before it can fire again.
        recipients: Who is told of alerts other than budgets' (and the price check).
    """

    error_rate: float = 0.05
    error_window: timedelta = timedelta(minutes=15)
    min_calls: int = 20
    spike_factor: float = 3.0
    spike_window: timedelta = timedelta(hours=1)
    baseline_days: int = 7
    spike_min_cost: Decimal = Decimal(1)
    spike_min_tokens: int = 100_000
    latency_factor: float = 1.5
    latency_window: timedelta = timedelta(minutes=15)
    stale_days: int = 30
    cooldown: timedelta = timedelta(hours=1)
    recipients: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 < self.error_rate < 1:
            raise BudgetError("the error-rate threshold is a fraction between 0 and 1")
        if self.spike_factor <= 1 or self.latency_factor <= 1:
            raise BudgetError("spike and latency factors must be above 1")
        for name in ("min_calls", "baseline_days", "stale_days"):
            if getattr(self, name) < 1:
                raise BudgetError(f"{name} must be at least 1")
        object.__setattr__(self, "recipients", parse_recipients(list(self.recipients)))


@dataclass(frozen=True, slots=True)
class Windows:
    """The time ranges the rules read at one moment (each ``(since, until)``)."""

    errors: tuple[datetime, datetime]
    spike: tuple[datetime, datetime]
    spike_baseline: tuple[datetime, datetime]
    latency: tuple[datetime, datetime]
    latency_baseline: tuple[datetime, datetime]


def windows(now: datetime, cfg: AlertSettings) -> Windows:
    """The rules' windows ending at ``now``; each baseline ends where its window starts.

    Example:
        >>> from datetime import UTC
        >>> w = windows(datetime(2025, 3, 15, 12, tzinfo=UTC), AlertSettings())
        >>> w.spike_baseline[0].isoformat(), w.spike_baseline[1].isoformat()
        ('2025-03-08T11:00:00+00:00', '2025-03-15T11:00:00+00:00')
    """
    baseline = timedelta(days=cfg.baseline_days)
    spike_start = now - cfg.spike_window
    latency_start = now - cfg.latency_window
    return Windows(
        errors=(now - cfg.error_window, now),
        spike=(spike_start, now),
        spike_baseline=(spike_start - baseline, spike_start),
        latency=(latency_start, now),
        latency_baseline=(latency_start - baseline, latency_start),
    )


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def error_rate_conditions(rows: Iterable[Mapping[str, Any]], cfg: AlertSettings) -> list[Condition]:
    """Providers whose error rate over the window is above the threshold.

    ``rows``: one per provider with ``calls`` and ``errors``.
    """
    out = []
    minutes = int(cfg.error_window.total_seconds() // 60)
    for row in rows:
        calls, errors = int(row.get("calls") or 0), int(row.get("errors") or 0)
        if calls < cfg.min_calls or errors <= cfg.error_rate * calls:
            continue
        provider = row.get("provider")
        out.append(
            _condition(
                "error_rate",
                f"error_rate:{provider}",
                None,
                f"Error rate {_pct(errors / calls)} on {provider} over {minutes} min",
                f"{errors} of {calls} calls to {provider} failed in the last {minutes} minutes "
                f"(threshold {_pct(cfg.error_rate)}).",
                {"provider": provider, "calls": calls, "errors": errors},
                cfg.recipients,
            )
        )
    return out


def spike_conditions(
    kind: str,
    current: Iterable[Mapping[str, Any]],
    baseline: Iterable[Mapping[str, Any]],
    cfg: AlertSettings,
) -> list[Condition]:
    """Tenants whose spend (``kind="cost"``) or tokens (``"tokens"``) spiked.

    ``current`` and ``baseline``: one row per ``tenant`` with ``cost`` or
    ``total_tokens`` over the window and over the baseline before it.

    Example:
        >>> cfg = AlertSettings()
        >>> now = [{"tenant": "acme", "cost": Decimal("5")}]
        >>> week = [{"tenant": "acme", "cost": Decimal("168")}]  # $1 an hour
        >>> [c.details["baseline"] for c in spike_conditions("cost", now, week, cfg)]
        ['1']
    """
    metric = "cost" if kind == "cost" else "total_tokens"
    minimum = cfg.spike_min_cost if kind == "cost" else Decimal(cfg.spike_min_tokens)
    windows_per_baseline = Decimal(
        int(timedelta(days=cfg.baseline_days) / timedelta(seconds=1))
    ) / Decimal(int(cfg.spike_window.total_seconds()))
    before = {row.get("tenant"): Decimal(row.get(metric) or 0) for row in baseline}
    hours = cfg.spike_window.total_seconds() / 3600
    rule: Rule = "cost_spike" if kind == "cost" else "token_spike"
    out = []
    for row in current:
        tenant = row.get("tenant")
        value = Decimal(row.get(metric) or 0)
        mean = before.get(tenant, Decimal(0)) / windows_per_baseline
        if value < minimum or value <= mean * Decimal(str(cfg.spike_factor)):
            continue
        who = tenant if tenant is not None else "calls without a tenant"
        what = "Spend" if kind == "cost" else "Tokens"
        shown = f"${value:.2f}" if kind == "cost" else f"{value:,.0f} tokens"
        usual = f"${mean:.2f}" if kind == "cost" else f"{mean:,.0f} tokens"
        out.append(
            _condition(
                rule,
                f"{rule}:{tenant if tenant is not None else '-'}",
                tenant,
                f"{what} spike for {who}: {shown} in {hours:g} h",
                f"{shown} in the last {hours:g} h against {usual} per {hours:g} h over the "
                f"previous {cfg.baseline_days} days (threshold {cfg.spike_factor:g}x).",
                {
                    "tenant": tenant,
                    "current": format(value.normalize(), "f"),
                    "baseline": format(mean.normalize(), "f"),
                },
                cfg.recipients,
            )
        )
    return out


def latency_conditions(
    current: Iterable[Mapping[str, Any]],
    baseline: Iterable[Mapping[str, Any]],
    cfg: AlertSettings,
) -> list[Condition]:
    """Providers whose p95 latency is above ``latency_factor`` times their baseline p95.

    Rows: one per ``provider`` with ``calls`` and ``latency_p95`` (ms).
    """
    before = {
        row.get("provider"): float(row["latency_p95"])
        for row in baseline
        if int(row.get("calls") or 0) >= cfg.min_calls and row.get("latency_p95") is not None
    }
    out = []
    for row in current:
        provider = row.get("provider")
        p95 = row.get("latency_p95")
        if int(row.get("calls") or 0) < cfg.min_calls or p95 is None or provider not in before:
            continue
        usual = before[provider]
        if float(p95) <= cfg.latency_factor * usual:
            continue
        out.append(
            _condition(
                "latency",
                f"latency:{provider}",
                None,
                f"Latency p95 of {provider} at {float(p95):,.0f} ms",
                f"p95 {float(p95):,.0f} ms over the last "
                f"{int(cfg.latency_window.total_seconds() // 60)} minutes against "
                f"{usual:,.0f} ms over the previous {cfg.baseline_days} days "
                f"(threshold {cfg.latency_factor:g}x).",
                {"provider": provider, "p95_ms": float(p95), "baseline_p95_ms": usual},
                cfg.recipients,
            )
        )
    return out


def auth_conditions(rows: Iterable[Sequence[Any]], cfg: AlertSettings) -> list[Condition]:
    """Provider keys refused: rows of ``(provider, api_key_fingerprint, failures, message)``."""
    out = []
    for provider, fingerprint, failures, message in rows:
        key_text = f"key {fingerprint}" if fingerprint else "a key"
        out.append(
            _condition(
                "auth_failure",
                f"auth_failure:{provider}:{fingerprint or '-'}",
                None,
                f"{provider} refused {key_text}",
                f"{failures} call(s) to {provider} failed authentication with {key_text} in "
                f"the last {int(cfg.error_window.total_seconds() // 60)} minutes"
                + (f": {message}" if message else "."),
                {"provider": provider, "fingerprint": fingerprint, "failures": int(failures)},
                cfg.recipients,
            )
        )
    return out


def price_gap_conditions(gaps: Iterable[Sequence[Any]], cfg: AlertSettings) -> list[Condition]:
    """Models seen without a price or with an incomplete one: rows of
    ``(provider, model, price status, calls)``."""
    out = []
    for provider, model, status, calls in gaps:
        what = "no price" if status == "unpriced" else "an incomplete price"
        out.append(
            _condition(
                "price_gap",
                f"price_gap:{provider}:{model}:{status}",
                None,
                f"{provider}/{model} has {what}",
                f"{calls} call(s) to {provider}/{model} were recorded with {what}; add a price "
                "(llmledger prices) and reprice them.",
                {"provider": provider, "model": model, "status": status, "calls": int(calls)},
                cfg.recipients,
            )
        )
    return out


def stale_price_conditions(
    rows: Iterable[tuple[str, str, date | None]], today: date, cfg: AlertSettings
) -> list[Condition]:
    """One condition while any price row was last checked ``stale_days`` ago or more.

    ``rows``: ``(provider, model, checked)``; a row never checked counts as stale.

    Example:
        >>> old = [("openai", "gpt-4o", date(2025, 1, 1))]
        >>> [c.title for c in stale_price_conditions(old, date(2025, 3, 1), AlertSettings())]
        ['1 price row(s) not checked for 30 days or more']
    """
    stale = [
        (provider, model, checked)
        for provider, model, checked in rows
        if checked is None or (today - checked).days >= cfg.stale_days
    ]
    if not stale:
        return []
    listed = "; ".join(
        f"{p}/{m} ({'never checked' if c is None else f'checked {c.isoformat()}'})"
        for p, m, c in stale[:20]
    )
    more = f" and {len(stale) - 20} more" if len(stale) > 20 else ""
    return [
        _condition(
            "stale_prices",
            "stale_prices",
            None,
            f"{len(stale)} price row(s) not checked for {cfg.stale_days} days or more",
            f"Check them against the provider's price page, then `llmledger prices check`: "
            f"{listed}{more}.",
            {"rows": [[p, m, None if c is None else c.isoformat()] for p, m, c in stale]},
            cfg.recipients,
        )
    ]


def _condition(
    rule: Rule,
    key: str,
    tenant: str | None,
    title: str,
    message: str,
    details: Mapping[str, Any],
    recipients: tuple[str, ...],
) -> Condition:
    return Condition(rule, key, tenant, title, message, details, recipients)
