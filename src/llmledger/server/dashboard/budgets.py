"""The dashboard's budgets and alerts page: status, history, create and edit (admins),
acknowledge, send a test.

Each action calls the function of the matching ``/v1/budgets`` or ``/v1/alerts``
route, so the rules (who may see and change which budget) are the API's.
"""

from __future__ import annotations

from typing import Any

import pydantic
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from llmledger.core.errors import LedgerError
from llmledger.server.alert_schemas import BudgetIn, BudgetPatch
from llmledger.server.dashboard.render import (
    Signed,
    attempt,
    error_text,
    forbidden,
    is_admin,
    render,
)
from llmledger.server.dashboard.session import Session, check_csrf
from llmledger.server.routers import alerts as alert_routes
from llmledger.server.routers import budgets as budget_routes

__all__ = ["budget_statuses", "router"]

router = APIRouter(include_in_schema=False)
PERIODS = ("day", "week", "month", "rolling")
#: The create form's fields, given back as typed when the budget is refused.
_CREATE_FIELDS = (
    "name",
    "amount",
    "currency",
    "period",
    "rolling_days",
    "tz",
    "where",
    "thresholds",
    "recipients",
    "tenant",
)
#: The edit form's fields (a budget's tenant stays), given back as typed when refused.
_EDIT_FIELDS = (*(name for name in _CREATE_FIELDS if name != "tenant"), "active")


def budget_statuses(request: Request, signed: Session) -> list[dict[str, Any]]:
    """Where each active budget the key may see stands (the overview's bars too)."""
    return budget_routes.check_budgets(request, signed.principal)


def _page(
    request: Request,
    signed: Session,
    status: int = 200,
    message: str | None = None,
    form_error: str | None = None,
    tests: list[dict[str, Any]] | None = None,
    draft: dict[str, str] | None = None,
    editing: dict[str, str] | None = None,
) -> HTMLResponse:
    def build() -> dict[str, Any]:
        return {
            "statuses": budget_statuses(request, signed),
            "budgets": budget_routes.list_budgets(request, signed.principal),
            "alerts": alert_routes.list_alerts(
                request, signed.principal, state=None, limit=100, before=None
            ),
        }

    found, read_status, error = attempt(build)
    return render(
        request,
        "budgets.html",
        signed,
        status if read_status == 200 else read_status,
        data=found,
        error=error,
        message=message,
        form_error=form_error,
        tests=tests,
        draft=draft,
        editing=editing,
        admin=is_admin(signed),
        periods=PERIODS,
    )


@router.get("/budgets", response_class=HTMLResponse)
def budgets_page(request: Request, signed: Signed) -> HTMLResponse:
    """Budgets, where they stand, and the alert history."""
    return _page(request, signed)


def _lines(text: str) -> list[str]:
    return [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]


def _budget_fields(form: Any, *, creating: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in ("name", "amount", "currency", "period", "tz", "tenant"):
        value = str(form.get(name, "")).strip()
        if value:
            fields[name] = value
    rolling = str(form.get("rolling_days", "")).strip()
    # The days only apply to a rolling period: a switch to a calendar one leaves them aside.
    if rolling and fields.get("period", "rolling") == "rolling":
        fields["rolling_days"] = rolling
    where = [w.strip() for w in str(form.get("where", "")).splitlines() if w.strip()]
    # An edit form sent with an empty scope widens the budget to every call (of its tenant).
    if where or creating or "where" in form:
        fields["where"] = where
    thresholds = _lines(str(form.get("thresholds", "")))
    if thresholds:
        fields["thresholds"] = thresholds
    recipients = _lines(str(form.get("recipients", "")))
    if recipients or "recipients" in form:
        fields["recipients"] = recipients
    if not creating:
        fields.pop("tenant", None)
        fields["active"] = form.get("active") == "on"
    return fields


async def _checked_form(request: Request, signed: Session) -> tuple[Any, HTMLResponse | None]:
    form = await request.form()
    if not check_csrf(signed.csrf, str(form.get("csrf", ""))):
        return form, render(
            request, "error.html", signed, 403, message="the form expired: try again"
        )
    if not is_admin(signed):
        return form, forbidden(request, signed)
    return form, None


@router.post("/budgets", response_class=HTMLResponse)
async def create_budget(request: Request, signed: Signed) -> HTMLResponse:
    """Create a budget (admins)."""
    form, refused = await _checked_form(request, signed)
    if refused is not None:
        return refused
    try:
        body = BudgetIn.model_validate(_budget_fields(form, creating=True))
        made = budget_routes.create_budget(request, signed.principal, body)
    except (LedgerError, pydantic.ValidationError) as exc:
        status, text = error_text(exc)
        draft = {name: str(form.get(name, "")) for name in _CREATE_FIELDS}
        return _page(request, signed, status, form_error=text, draft=draft)
    return _page(request, signed, 201, message=f"budget {made['name']} created")


@router.post("/budgets/{budget_id}/edit", response_class=HTMLResponse)
async def edit_budget(request: Request, signed: Signed, budget_id: str) -> HTMLResponse:
    """Change a budget (admins)."""
    form, refused = await _checked_form(request, signed)
    if refused is not None:
        return refused
    try:
        body = BudgetPatch.model_validate(_budget_fields(form, creating=False))
        changed = budget_routes.change_budget(request, signed.principal, budget_id, body)
    except (LedgerError, pydantic.ValidationError) as exc:
        status, text = error_text(exc)
        if status == 404:
            return _page(request, signed, status, form_error=text)
        # The budget's form opens again with what was typed and why it was refused.
        editing = {name: str(form.get(name, "")) for name in _EDIT_FIELDS}
        editing.update(id=budget_id, error=text)
        return _page(request, signed, status, editing=editing)
    return _page(request, signed, message=f"budget {changed['name']} saved")


@router.post("/budgets/{budget_id}/test", response_class=HTMLResponse)
async def test_budget(request: Request, signed: Signed, budget_id: str) -> HTMLResponse:
    """Send a test notification to each of a budget's recipients (admins)."""
    _, refused = await _checked_form(request, signed)
    if refused is not None:
        return refused
    try:
        results = budget_routes.test_budget(request, signed.principal, budget_id)
    except LedgerError as exc:
        status, text = error_text(exc)
        return _page(request, signed, status, form_error=text)
    if not results:
        return _page(request, signed, form_error="this budget has no recipients to send a test to")
    return _page(request, signed, tests=results, message="test notifications sent")


@router.post("/alerts/{alert_id}/ack", response_class=HTMLResponse)
async def ack_alert(request: Request, signed: Signed, alert_id: str) -> HTMLResponse:
    """Acknowledge an alert (admins)."""
    _, refused = await _checked_form(request, signed)
    if refused is not None:
        return refused
    try:
        alert_routes.ack_alert(request, signed.principal, alert_id, None)
    except LedgerError as exc:
        status, text = error_text(exc)
        return _page(request, signed, status, form_error=text)
    return _page(request, signed, message="alert acknowledged")
