"""``/v1/budgets``: money budgets, their status and a test notification.

Admins manage every budget; a key confined to a tenant sees (and an admin key
confined to one manages) only its tenant's budgets: another tenant's budget is
answered 404, as if it did not exist.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request

from llmledger.alerts import Budget
from llmledger.server.alert_schemas import BudgetIn, BudgetOut, BudgetPatch, StatusOut, TestOut
from llmledger.server.auth import Admin, Principal, Reader, get_service
from llmledger.server.errors import ConflictError, NotFoundError
from llmledger.server.state import Service
from llmledger.store import RowExistsError

__all__ = ["router", "visible_budget"]

router = APIRouter(prefix="/v1/budgets", tags=["budgets"])


def _tenant_scope(principal: Principal) -> str | None:
    return "*" if principal.tenant is None else principal.tenant


def visible_budget(service: Service, principal: Principal, budget_id: str) -> Budget:
    """The budget if the key may see it (404 otherwise)."""
    budget = service.store.get_budget(budget_id)
    if budget is None or (principal.tenant is not None and budget.tenant != principal.tenant):
        raise NotFoundError(f"no budget {budget_id!r}")
    return budget


def _statuses(
    service: Service, budgets: list[Budget], errors: list[str] | None = None
) -> list[dict[str, Any]]:
    with service.report_budget():
        found = service.monitor.budget_statuses(budgets, datetime.now(UTC), errors=errors)
    return [status.to_dict() for status in found]


@router.post("", summary="Create a budget", status_code=201, response_model=BudgetOut)
def create_budget(request: Request, principal: Admin, body: BudgetIn) -> dict[str, Any]:
    """A new budget; a key confined to a tenant makes budgets of its tenant only."""
    service = get_service(request)
    tenant = principal.tenant if principal.tenant is not None else body.tenant
    now = datetime.now(UTC)
    budget = Budget(
        name=body.name,
        amount=body.amount,
        currency=body.currency,
        period=body.period,
        rolling_days=body.rolling_days,
        tz=body.tz,
        where=tuple(body.where),
        thresholds=tuple(body.thresholds),
        recipients=tuple(body.recipients),
        tenant=tenant,
        active=body.active,
        created=now,
    )
    try:
        service.store.add_budget(budget, now=now)
    except RowExistsError as exc:
        raise ConflictError(str(exc)) from None
    return budget.to_dict()


@router.get("", summary="List budgets", response_model=list[BudgetOut])
def list_budgets(request: Request, principal: Reader) -> list[dict[str, Any]]:
    """Every budget the key may see, by name."""
    store = get_service(request).store
    return [b.to_dict() for b in store.list_budgets(tenant=_tenant_scope(principal))]


@router.get("/check", summary="Every visible budget's status", response_model=list[StatusOut])
def check_budgets(request: Request, principal: Reader) -> list[dict[str, Any]]:
    """Spent, remaining, % used, forecast and thresholds crossed of each active budget
    the key may see (alerts are fired by the scheduled check, not here)."""
    service = get_service(request)
    budgets = service.store.list_budgets(tenant=_tenant_scope(principal), active_only=True)
    return _statuses(service, budgets)


@router.get("/{budget_id}", summary="One budget's status", response_model=StatusOut)
def show_budget(request: Request, principal: Reader, budget_id: str) -> dict[str, Any]:
    """A budget (by id or name) and where it stands now."""
    service = get_service(request)
    return _statuses(service, [visible_budget(service, principal, budget_id)])[0]


@router.patch("/{budget_id}", summary="Change a budget", response_model=BudgetOut)
def change_budget(
    request: Request, principal: Admin, budget_id: str, body: BudgetPatch
) -> dict[str, Any]:
    """Change the fields given; the budget's tenant stays."""
    service = get_service(request)
    budget = visible_budget(service, principal, budget_id)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    for name in ("where", "thresholds", "recipients"):
        if changes.get(name) is not None:
            changes[name] = tuple(changes[name])
    if changes.get("period") not in (None, "rolling") and "rolling_days" not in changes:
        changes["rolling_days"] = None
    kept = {k: v for k, v in changes.items() if v is not None or k == "rolling_days"}
    updated = replace(budget, **kept)
    try:
        stored = service.store.update_budget(updated, now=datetime.now(UTC))
    except RowExistsError as exc:
        raise ConflictError(str(exc)) from None
    if stored is None:
        raise NotFoundError(f"no budget {budget_id!r}")
    return stored.to_dict()


@router.delete("/{budget_id}", summary="Remove a budget", response_model=BudgetOut)
def remove_budget(request: Request, principal: Admin, budget_id: str) -> dict[str, Any]:
    """Delete a budget; its alerts stay in the history."""
    service = get_service(request)
    budget = visible_budget(service, principal, budget_id)
    service.store.remove_budget(budget.id)
    return budget.to_dict()


@router.post("/{budget_id}/test", summary="Send a test notification", response_model=list[TestOut])
def test_budget(request: Request, principal: Admin, budget_id: str) -> list[dict[str, Any]]:
    """A test notification to each of the budget's recipients, sent now."""
    service = get_service(request)
    budget = visible_budget(service, principal, budget_id)
    origin = f"budget {budget.name}"
    results = service.monitor.send_test(budget.recipients, origin, datetime.now(UTC))
    return [
        {"recipient": recipient, "delivered": error is None, "error": error}
        for recipient, error in results
    ]
