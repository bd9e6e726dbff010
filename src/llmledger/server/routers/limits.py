"""``/v1/limits``: limits (admins manage them; a tenant's keys see their tenant's), and the
pre-call check, reserve and settle of guarded calls."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request

from llmledger.core.ids import new_id
from llmledger.core.limits import Amounts, Decision, Limit, Subject
from llmledger.server.auth import Admin, Anyone, Principal, Writer, get_service
from llmledger.server.errors import NotFoundError
from llmledger.server.schemas import (
    LimitAnswer,
    LimitCallIn,
    LimitIn,
    LimitOut,
    ReserveIn,
    SettleIn,
)
from llmledger.wire.limits import decision_json, limit_json

__all__ = ["router"]

router = APIRouter(prefix="/v1/limits", tags=["limits"])


def _out(limit: Limit, state: tuple[datetime, int, int] | None) -> LimitOut:
    window, used, reserved = state if state is not None else (None, None, None)
    return LimitOut.model_validate(
        {**limit_json(limit), "window": window, "used": used, "reserved": reserved}
    )


def _visible(principal: Principal, limit: Limit | None) -> Limit | None:
    if limit is None or principal.tenant is None or limit.tenant == principal.tenant:
        return limit
    return None


def _subject(principal: Principal, body: LimitCallIn) -> Subject:
    # A tenant's key decides for its tenant (and a user's key for its user), whatever
    # the body says, as its events are put in its tenant.
    return Subject(
        tenant=principal.tenant if principal.tenant is not None else body.tenant,
        user=principal.key.user if principal.key.user is not None else body.user,
        feature=body.feature,
        api_key=body.api_key,
    )


def _answer(principal: Principal, decisions: list[Decision], reservation: str | None) -> Any:
    blocked = any(d.outcome == "block" for d in decisions)
    return LimitAnswer(
        allowed=not blocked,
        reservation=reservation if decisions and not blocked else None,
        decisions=[
            # A tenant's key sees no counter of a limit over every tenant.
            decision_json(d, counters=principal.tenant is None or d.limit.tenant is not None)
            for d in decisions
        ],
    )


def _needed(body: LimitCallIn | SettleIn) -> Amounts:
    return Amounts.of_call(cost=body.cost, tokens=body.tokens, requests=body.requests)


@router.get("", summary="List limits", response_model=list[LimitOut])
def list_limits(request: Request, principal: Anyone) -> list[LimitOut]:
    """Every limit with its current window's counters (a tenant's key: its tenant's)."""
    store = get_service(request).store
    found = store.list_limits(tenant=principal.tenant)
    states = store.limit_states(found, now=datetime.now(UTC))
    return [_out(limit, states.get(limit.id)) for limit in found]


@router.post("", summary="Add a limit", status_code=201, response_model=LimitOut)
def add_limit(request: Request, _principal: Admin, body: LimitIn) -> LimitOut:
    """Add a limit; it applies to the next guarded call."""
    limit = Limit(
        scope=body.scope,
        value=body.value,
        metric=body.metric,
        amount=body.amount,
        period=body.period,
        mode=body.mode,
        tenant=body.tenant,
        name=body.name,
        created=datetime.now(UTC),
    ).validate()
    get_service(request).store.add_limit(limit)
    return _out(limit, None)


@router.post("/check", summary="Decide a call without reserving", response_model=LimitAnswer)
def check(request: Request, principal: Anyone, body: LimitCallIn) -> Any:
    """What each limit the call counts for says, reserving nothing."""
    decisions = get_service(request).store.reserve_limits(
        _subject(principal, body), _needed(body), now=datetime.now(UTC), ttl=1, reservation=None
    )
    return _answer(principal, decisions, None)


@router.post(
    "/reserve", summary="Decide a call and reserve its estimate", response_model=LimitAnswer
)
def reserve(request: Request, principal: Writer, body: ReserveIn) -> Any:
    """Reserve the call's expected spend when no limit blocks; settle it with `/settle`."""
    service = get_service(request)
    reservation = body.reservation or new_id()
    decisions = service.store.reserve_limits(
        _subject(principal, body),
        _needed(body),
        now=datetime.now(UTC),
        ttl=body.ttl or service.settings.limit_ttl,
        reservation=reservation,
    )
    return _answer(principal, decisions, reservation)


@router.post("/settle", summary="Settle a reservation with what the call spent")
def settle(request: Request, principal: Writer, body: SettleIn) -> dict[str, int]:
    """Replace the reservation by the call's real spend (zero releases it); once only."""
    settled = get_service(request).store.settle_limits(
        body.reservation, _needed(body), now=datetime.now(UTC), tenant=principal.tenant
    )
    return {"settled": settled}


@router.get("/{limit_id}", summary="Show a limit", response_model=LimitOut)
def show_limit(request: Request, principal: Anyone, limit_id: str) -> LimitOut:
    """One limit with its current window's counters."""
    store = get_service(request).store
    limit = _visible(principal, store.get_limit(limit_id))
    if limit is None:
        raise NotFoundError(f"no limit {limit_id!r}")
    return _out(limit, store.limit_states([limit], now=datetime.now(UTC)).get(limit.id))


@router.delete("/{limit_id}", summary="Remove a limit", response_model=LimitOut)
def remove_limit(request: Request, _principal: Admin, limit_id: str) -> LimitOut:
    """Remove a limit with its counters and reservations."""
    limit = get_service(request).store.remove_limit(limit_id)
    if limit is None:
        raise NotFoundError(f"no limit {limit_id!r}")
    return _out(limit, None)
