"""``/v1/alerts``: the alert history (list, one alert, acknowledge).

A key confined to a tenant sees only its tenant's alerts (budget alerts of its
budgets, spikes of its tenant); alerts about the whole ledger are for keys of
every tenant.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from llmledger.alerts import Alert
from llmledger.server.alert_schemas import AckIn, AlertOut
from llmledger.server.auth import Admin, Principal, Reader, get_service
from llmledger.server.errors import NotFoundError
from llmledger.server.state import Service

__all__ = ["router"]

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])


def _visible(service: Service, principal: Principal, alert_id: str) -> Alert:
    alert = service.store.get_alert(alert_id)
    if alert is None or (principal.tenant is not None and alert.tenant != principal.tenant):
        raise NotFoundError(f"no alert {alert_id!r}")
    return alert


@router.get("", summary="List alerts", response_model=list[AlertOut])
def list_alerts(
    request: Request,
    principal: Reader,
    state: Annotated[
        Literal["firing", "resolved"] | None, Query(description="Only firing or resolved.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Most alerts returned.")] = 100,
    before: Annotated[str | None, Query(description="Page: alerts older than this id.")] = None,
) -> list[dict[str, Any]]:
    """Alerts newest first."""
    tenant = "*" if principal.tenant is None else principal.tenant
    found = get_service(request).store.list_alerts(
        tenant=tenant, state=state, limit=limit, before=before
    )
    return [alert.to_dict() for alert in found]


@router.get("/{alert_id}", summary="One alert", response_model=AlertOut)
def show_alert(request: Request, principal: Reader, alert_id: str) -> dict[str, Any]:
    """An alert with its figures."""
    return _visible(get_service(request), principal, alert_id).to_dict()


@router.post("/{alert_id}/ack", summary="Acknowledge an alert", response_model=AlertOut)
def ack_alert(
    request: Request, principal: Admin, alert_id: str, body: AckIn | None = None
) -> dict[str, Any]:
    """Mark an alert as seen (a second acknowledgement keeps the first)."""
    service = get_service(request)
    _visible(service, principal, alert_id)
    by = body.by if body is not None and body.by else principal.key.prefix
    acked = service.store.ack_alert(alert_id, by=by, now=datetime.now(UTC))
    if acked is None:
        raise NotFoundError(f"no alert {alert_id!r}")
    return acked.to_dict()
