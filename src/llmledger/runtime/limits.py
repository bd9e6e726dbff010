"""Limits at run time: the pre-call check, reserve before a call and settle after it.

A guarded call (an instrumented SDK call while the ``limits`` setting is on, or
the app's own code through :func:`check`) asks the limit store, in one atomic
step, whether its estimated spend fits under every limit it counts for, and
reserves it when it does.  Once the call ends, its real spend replaces the
reservation (:meth:`LimitCheck.settle`); a call that failed settles its zero
usage, which releases the reservation.  A reservation never settled (the
process was killed) stops counting after ``limit_ttl`` seconds.

The limit store is the ledger's own database, or the service (``/v1/limits/…``)
when ``url`` is set.  When it cannot be reached, ``limit_policy`` decides: ``open``
(the default) lets the call through, ``closed`` refuses it; the event says which.

Example:
    >>> import llmledger
    >>> ledger = llmledger.configure(home="/tmp/limits-doc", database_url="sqlite://")
    >>> llmledger.check(user="ana").allowed
    True
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from llmledger.core.attribution import current_attribution
from llmledger.core.errors import InvalidLimitError, LedgerError, LimitExceededError
from llmledger.core.ids import fingerprint, new_id
from llmledger.core.limits import NOTE_TAG, Amounts, Decision, Policy, Subject, estimate_tokens
from llmledger.core.usage import Usage
from llmledger.runtime.threads import leave_signals_to_the_main_thread

if TYPE_CHECKING:
    import httpx

    from llmledger.core.events import UsageEvent
    from llmledger.runtime.ledger import Ledger

__all__ = [
    "NOTE_TAG",
    "LimitBackend",
    "LimitCheck",
    "LimitGuard",
    "RemoteLimits",
    "StoreLimits",
    "check",
    "warning_listeners",
]

log = logging.getLogger("llmledger.limits")

#: Called with each check in which a ``warn`` limit was passed, in the process that
#: made the call; a listener that fails is logged, never raised into the call.  (The
#: alert rule ``limit`` reads the ledger instead: see docs/limits.md.)
warning_listeners: list[Callable[[LimitCheck], object]] = []


class LimitBackend(Protocol):
    """Where limits are decided: the ledger's database or the service."""

    def reserve(
        self,
        subject: Subject,
        needed: Amounts,
        *,
        now: datetime,
        ttl: float,
        reservation: str | None,
    ) -> list[Decision]:
        """Decide (and reserve under ``reservation`` when none blocks)."""
        ...

    def settle(self, reservation: str, spent: Amounts, *, now: datetime) -> None:
        """Replace the reservation by what was spent."""
        ...


class StoreLimits:
    """Limits decided in the ledger's own database."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def reserve(
        self,
        subject: Subject,
        needed: Amounts,
        *,
        now: datetime,
        ttl: float,
        reservation: str | None,
    ) -> list[Decision]:
        """Decide and reserve in one transaction of the store."""
        return self._ledger.store.reserve_limits(
            subject, needed, now=now, ttl=ttl, reservation=reservation
        )

    def settle(self, reservation: str, spent: Amounts, *, now: datetime) -> None:
        """Settle in the store."""
        self._ledger.store.settle_limits(reservation, spent, now=now)


class RemoteLimits:
    """Limits decided by an llmledger service (``/v1/limits/reserve`` and ``/settle``).

    Args:
        url: The service's base URL.
        api_key: A key of the service (an ingest key: its tenant is forced on every call).
        transport: An httpx transport (tests).
        timeout: Seconds per request; past it the store counts as unreachable.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 2.0,
    ) -> None:
        import httpx

        self._client = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "llmledger-limits"},
            timeout=timeout,
            transport=transport,
        )

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        from llmledger.core.errors import ServiceUnavailable

        try:
            answer = self._client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"cannot reach the service: {exc}") from None
        if answer.status_code != 200:
            raise ServiceUnavailable(
                f"the service answered {answer.status_code} to {path}: {answer.text[:200]}"
            )
        data: dict[str, Any] = answer.json()
        return data

    def reserve(
        self,
        subject: Subject,
        needed: Amounts,
        *,
        now: datetime,
        ttl: float,
        reservation: str | None,
    ) -> list[Decision]:
        """Ask the service (``/reserve``, or ``/check`` without a reservation)."""
        from llmledger.wire.limits import decision_from_json

        body: dict[str, Any] = {
            "tenant": subject.tenant,
            "user": subject.user,
            "feature": subject.feature,
            "api_key": subject.api_key,
            "cost": _usd(needed.cost),
            "tokens": needed.tokens,
            "requests": needed.requests,
        }
        if reservation is None:
            data = self._post("/v1/limits/check", body)
        else:
            data = self._post(
                "/v1/limits/reserve", {**body, "reservation": reservation, "ttl": ttl}
            )
        return [decision_from_json(d) for d in data["decisions"]]

    def settle(self, reservation: str, spent: Amounts, *, now: datetime) -> None:
        """Tell the service what the call spent, trying up to three times (a settle
        counts once however often it is sent)."""
        body = {
            "reservation": reservation,
            "cost": _usd(spent.cost),
            "tokens": spent.tokens,
            "requests": spent.requests,
        }
        for attempt in range(3):
            try:
                self._post("/v1/limits/settle", body)
                return
            except LedgerError:
                if attempt == 2:
                    raise

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()


def _usd(nanos: int) -> str:
    return format(Decimal(nanos).scaleb(-9), "f")


@dataclass(frozen=True)
class LimitCheck:
    """What the limits said about one call.

    Attributes:
        decisions: One per limit the call counts for.
        reservation: The reservation's id, when the call's estimate was reserved.
        unavailable: Why the limit store could not be reached (then ``policy`` decided).
        policy: ``open`` or ``closed``.

    Example:
        >>> LimitCheck().allowed, LimitCheck(unavailable="down", policy="closed").allowed
        (True, False)
    """

    decisions: tuple[Decision, ...] = ()
    reservation: str | None = None
    unavailable: str | None = None
    policy: Policy = "open"
    guard: LimitGuard | None = field(default=None, compare=False, repr=False)
    _settled: list[bool] = field(default_factory=list, compare=False, repr=False)

    @property
    def blocking(self) -> tuple[Decision, ...]:
        """The decisions that refuse the call."""
        return tuple(d for d in self.decisions if d.outcome == "block")

    @property
    def warnings(self) -> tuple[Decision, ...]:
        """The ``warn`` limits the call passes."""
        return tuple(d for d in self.decisions if d.outcome == "warn")

    @property
    def allowed(self) -> bool:
        """Whether the call may go: no limit blocks (and the store answered, or fails open)."""
        if self.unavailable is not None:
            return self.policy == "open"
        return not self.blocking

    def note(self) -> str | None:
        """What the call's event records under :data:`NOTE_TAG`, or None.

        Example:
            >>> LimitCheck(unavailable="down").note()
            'unavailable:open'
        """
        if self.unavailable is not None:
            return f"unavailable:{self.policy}"
        if self.blocking:
            return "block:" + ",".join(d.limit.id for d in self.blocking)
        if self.warnings:
            return "warn:" + ",".join(d.limit.id for d in self.warnings)
        return None

    def error(self) -> LimitExceededError:
        """The error a refused call raises."""
        if self.unavailable is not None:
            return LimitExceededError(
                f"the limit store cannot be reached and the policy is to fail closed: "
                f"{self.unavailable}",
                reason="unavailable",
            )
        return LimitExceededError(
            "refused by " + "; ".join(d.describe() for d in self.blocking),
            decisions=self.blocking,
        )

    def settle(self, *, cost: Decimal | None = None, tokens: int = 0, requests: int = 1) -> None:
        """Replace the reservation by what the call spent (once; later calls do nothing).

        Call it with nothing (zero cost and tokens) when the call failed: that
        releases the reservation.  The settle is handed to a thread of the ledger
        and returns at once (``llmledger.flush()`` waits for it): until it lands, the
        call's estimate counts in its place.  Never raises: a settle that cannot
        reach the store is logged, and the reservation expires after ``limit_ttl``.
        """
        if self.reservation is None or self.guard is None or self._settled:
            return
        self._settled.append(True)
        self.guard.settle_later(
            self.reservation, Amounts.of_call(cost=cost, tokens=tokens, requests=requests)
        )

    def settle_event(self, event: UsageEvent) -> None:
        """Settle with what a recorded call's event says it spent (priced as the ledger prices)."""
        if self.reservation is None or self.guard is None:
            return
        cost: Decimal | None = None
        try:
            cost = self.guard.ledger.pricer.event_price(event).cost
        except LedgerError:
            log.warning("llmledger: could not price a guarded call to settle it", exc_info=True)
        usage = event.usage
        self.settle(cost=cost, tokens=usage.input_tokens + usage.output_tokens)

    def settling(self, build: Callable[[], UsageEvent]) -> Callable[[], UsageEvent]:
        """``build`` (the deferred work making the call's event), settling this check after it.

        If ``build`` fails, the reservation is released before the error goes on.
        """

        def settled() -> UsageEvent:
            try:
                event = build()
            except BaseException:
                self.settle()
                raise
            self.settle_event(event)
            return event

        return settled


class LimitGuard:
    """The limits of one ledger: estimate, reserve, settle, following its settings."""

    def __init__(self, ledger: Ledger, backend: LimitBackend | None = None) -> None:
        self.ledger = ledger
        settings = ledger.settings
        self.policy: Policy = "closed" if settings.limit_policy == "closed" else "open"
        self.ttl = settings.limit_ttl
        self._backend = backend
        self._lock = threading.Lock()
        self._settler = _Settler(self.settle)
        _live_guards.add(self)
        _install_exit_hook()

    @property
    def backend(self) -> LimitBackend:
        """The service's limits when ``url`` is set, else the ledger's database."""
        if self._backend is None:
            with self._lock:
                if self._backend is None:
                    settings = self.ledger.settings
                    if settings.url:
                        if not settings.api_key:
                            raise InvalidLimitError(
                                "LLMLEDGER_URL is set without LLMLEDGER_API_KEY"
                            )
                        self._backend = RemoteLimits(settings.url, settings.api_key)
                    else:
                        self._backend = StoreLimits(self.ledger)
        return self._backend

    def estimate(
        self,
        provider: str | None,
        model: str | None,
        prompt_bytes: int,
        max_tokens: int | None,
        now: datetime,
    ) -> Amounts:
        """What a call is expected to spend at most (see ``estimate_tokens``).

        The cost is the tokens priced as input and output at the model's price in
        force now; an unknown model or price counts 0 (only its tokens and
        requests are limited then).
        """
        settings = self.ledger.settings
        input_tokens, output_tokens = estimate_tokens(
            prompt_bytes,
            max_tokens,
            bytes_per_token=settings.limit_bytes_per_token,
            default_output_tokens=settings.limit_output_tokens,
        )
        cost: Decimal | None = None
        if provider and model:
            try:
                usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
                cost = self.ledger.pricer.price(provider, model, usage, now).cost
            except LedgerError:
                cost = None
        return Amounts.of_call(cost=cost, tokens=input_tokens + output_tokens)

    def decide(
        self, subject: Subject, needed: Amounts, *, reserve: bool, now: datetime | None = None
    ) -> LimitCheck:
        """Decide a call; reserve its estimate when ``reserve`` and nothing blocks.

        Never raises for an unreachable store: the check then says ``unavailable``.
        """
        now = now or datetime.now(UTC)
        reservation = new_id() if reserve else None
        try:
            decisions = self.backend.reserve(
                subject, needed, now=now, ttl=self.ttl, reservation=reservation
            )
        except LedgerError as exc:
            log.warning(
                "llmledger: the limit store cannot be reached (fail %s): %s", self.policy, exc
            )
            return LimitCheck(unavailable=str(exc), policy=self.policy, guard=self)
        found = tuple(decisions)
        blocked = any(d.outcome == "block" for d in found)
        result = LimitCheck(
            decisions=found,
            reservation=reservation if found and not blocked else None,
            policy=self.policy,
            guard=self,
        )
        if result.warnings:
            for decision in result.warnings:
                log.warning("llmledger: %s", decision.describe())
            for listener in list(warning_listeners):
                try:
                    listener(result)
                except Exception:
                    log.exception("llmledger: a limit warning listener failed")
        return result

    def guard_request(
        self, subject: Subject, provider: str | None, model: str | None, body: Any
    ) -> LimitCheck:
        """Check and reserve for an SDK request body (its JSON size and ``max_tokens``)."""
        now = datetime.now(UTC)
        prompt_bytes = 0
        max_tokens: int | None = None
        if body is not None:
            prompt_bytes = len(json.dumps(body, ensure_ascii=False, default=str).encode())
            if isinstance(body, dict):
                max_tokens = _output_cap(body)
        needed = self.estimate(provider, model, prompt_bytes, max_tokens, now)
        return self.decide(subject, needed, reserve=True, now=now)

    def settle_later(self, reservation: str, spent: Amounts) -> None:
        """Settle a reservation in the guard's settling thread, off the caller's path.

        Settles are applied in the order given; :meth:`flush` waits for them.
        """
        self._settler.submit(reservation, spent, datetime.now(UTC))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every settle handed over so far is applied (or ``timeout`` passes).

        Returns:
            True when none is left.
        """
        return self._settler.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Apply the settles left (for at most ``timeout`` seconds) and stop the thread."""
        _live_guards.discard(self)
        self._settler.close(timeout)
        if isinstance(self._backend, RemoteLimits):
            self._backend.close()

    def settle(self, reservation: str, spent: Amounts, now: datetime | None = None) -> None:
        """Settle a reservation now; a store that cannot be reached is logged (the TTL frees it)."""
        # Never raises: it runs where the call's event is built, which must not be lost.
        try:
            self.backend.settle(reservation, spent, now=now or datetime.now(UTC))
        except LedgerError:
            log.warning("llmledger: could not settle a limit reservation", exc_info=True)
        except Exception:
            log.exception("llmledger: settling a limit reservation failed")
            if self.ledger.settings.strict:
                raise


_live_guards: weakref.WeakSet[LimitGuard] = weakref.WeakSet()
_exit_hook = threading.Lock()
_exit_hook_installed = False


def _install_exit_hook() -> None:
    global _exit_hook_installed
    with _exit_hook:
        if not _exit_hook_installed:
            atexit.register(_settle_all_at_exit)
            _exit_hook_installed = True


def _settle_all_at_exit() -> None:
    """At exit, the settles left are applied: the ledger's flush builds the events still
    queued (which hands over their settles) and then waits for the settles."""
    for guard in list(_live_guards):
        try:
            guard.ledger.flush(guard.ledger.settings.shutdown_timeout)
        except Exception:
            log.exception("llmledger: could not apply the limit settles left at exit")


class _Settler:
    """A thread that applies settles in the order they are handed over.

    Settling is the one part of a guarded call that may wait: while it waits,
    the call's reservation (its estimate) keeps counting, which never lets more
    through.  The thread starts on the first settle (again after a fork) and
    ends once idle for a while.
    """

    _IDLE = 30.0

    def __init__(self, settle: Callable[[str, Amounts, datetime], None]) -> None:
        self._settle = settle
        self._queue: deque[tuple[str, Amounts, datetime]] = deque()
        self._ready = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def submit(self, reservation: str, spent: Amounts, now: datetime) -> None:
        with self._ready:
            self._queue.append((reservation, spent, now))
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="llmledger-limits-settle", daemon=True
                )
                self._thread.start()
            self._ready.notify_all()

    def _run(self) -> None:
        leave_signals_to_the_main_thread()
        while True:
            with self._ready:
                if not self._queue and not self._ready.wait_for(
                    lambda: bool(self._queue), timeout=self._IDLE
                ):
                    self._thread = None
                    return
                reservation, spent, now = self._queue.popleft()
            try:
                self._settle(reservation, spent, now)
            except BaseException as exc:  # strict mode: seen by the next flush
                self._failure = exc
            finally:
                with self._ready:
                    self._pending -= 1
                    self._ready.notify_all()

    def flush(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._ready:
            while self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._ready.wait(left)
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure
        return True

    def close(self, timeout: float | None) -> None:
        if not self.flush(timeout):
            log.warning("llmledger: %d limit settles were left unapplied", self._pending)


_OUTPUT_CAPS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "maxOutputTokens")


def _output_cap(body: dict[str, Any]) -> int | None:
    """The output cap a request body sets: top level (OpenAI, Anthropic) or in its
    generation config (Gemini).

    Example:
        >>> gemini = {"generationConfig": {"maxOutputTokens": 9}}
        >>> _output_cap({"max_tokens": 5}), _output_cap(gemini)
        (5, 9)
    """
    for holder in (body, body.get("generationConfig"), body.get("generation_config")):
        if isinstance(holder, dict):
            for name in _OUTPUT_CAPS:
                value = holder.get(name)
                if type(value) is int:
                    return value
    return None


def check(
    *,
    provider: str | None = None,
    model: str | None = None,
    prompt: str | None = None,
    max_tokens: int | None = None,
    cost: Decimal | None = None,
    tokens: int | None = None,
    tenant: str | None = None,
    user: str | None = None,
    feature: str | None = None,
    api_key: str | None = None,
    reserve: bool = False,
    raise_on_block: bool = False,
    ledger: Ledger | None = None,
) -> LimitCheck:
    """Check a call against the limits before making it.

    Who makes the call comes from the attribution in force
    (:func:`llmledger.attribute`), overridden by the arguments.  What it needs is
    ``cost`` and ``tokens`` when given, else estimated from ``prompt`` (its
    UTF-8 size), ``max_tokens`` and the price of ``provider``/``model``.

    Args:
        provider, model: Price the estimate.
        prompt: The text to be sent.
        max_tokens: The output cap of the call.
        cost: The call's expected cost in USD (instead of the estimate).
        tokens: The call's expected tokens (instead of the estimate).
        tenant, user, feature: Who the call is for (default: the attribution in force).
        api_key: The provider key the call is paid with (only its fingerprint is used).
        reserve: Reserve the estimate (settle it with :meth:`LimitCheck.settle`).
        raise_on_block: Raise instead of returning a refusal.
        ledger: The ledger whose limits apply (default: the process ledger).

    Raises:
        LimitExceededError: with ``raise_on_block`` when the call is refused.

    Example:
        >>> import llmledger
        >>> c = llmledger.check(user="ana", provider="openai", model="gpt-4o",
        ...                     prompt="Hello", max_tokens=100, reserve=True)
        >>> c.allowed, c.decisions
        (True, ())
        >>> c.settle(cost=Decimal("0.001"), tokens=120)
    """
    from llmledger.runtime.ledger import get_ledger

    ledger = ledger or get_ledger()
    attribution = current_attribution()
    subject = Subject(
        tenant=tenant if tenant is not None else attribution.tenant,
        user=user if user is not None else attribution.user,
        feature=feature if feature is not None else attribution.feature,
        api_key=fingerprint(api_key),
    )
    guard = ledger.limits
    now = datetime.now(UTC)
    estimate = guard.estimate(
        provider, model, len(prompt.encode()) if prompt else 0, max_tokens, now
    )
    needed = Amounts.of_call(
        cost=cost if cost is not None else Decimal(estimate.cost) / 10**9,
        tokens=tokens if tokens is not None else estimate.tokens,
    )
    result = guard.decide(subject, needed, reserve=reserve, now=now)
    if raise_on_block and not result.allowed:
        raise result.error()
    return result
