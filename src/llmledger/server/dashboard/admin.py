"""The dashboard's forms: signing in and out, prices and keys (admins).

Every form that changes anything carries the session's CSRF token; the sign-in
form, which has no session yet, a token in a cookie of its own.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

import pydantic
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from llmledger.core.errors import LedgerError
from llmledger.server.auth import get_service
from llmledger.server.dashboard import data
from llmledger.server.dashboard.render import (
    Signed,
    attempt,
    error_text,
    forbidden,
    is_admin,
    render,
)
from llmledger.server.dashboard.session import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Session,
    check_csrf,
    cookie_options,
    new_session,
)
from llmledger.server.routers import admin as reprice_routes
from llmledger.server.schemas import PriceIn, RepriceIn

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


# -- signing in and out ----------------------------------------------------------------


@router.get("/signin", response_class=HTMLResponse)
def signin_form(request: Request, next: str = "/") -> HTMLResponse:
    """The sign-in form (it sets the cookie its CSRF token is checked against)."""
    token = secrets.token_urlsafe(24)
    response = render(request, "signin.html", None, next=_safe_next(next), csrf=token)
    response.set_cookie(CSRF_COOKIE, token, max_age=3600, **cookie_options(request))
    return response


@router.post("/signin", response_class=HTMLResponse)
def signin(
    request: Request,
    api_key: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Open a session with an admin or reader key."""
    if not check_csrf(request.cookies.get(CSRF_COOKIE), csrf):
        return render(
            request,
            "signin.html",
            None,
            403,
            next=_safe_next(next),
            csrf=csrf,
            error="the form expired: load the sign-in page again",
        )
    token = api_key.strip()
    key = get_service(request).keys.verify(token) if token else None
    error = None
    if key is None:
        error = "that API key is unknown or revoked"
    elif key.role not in ("admin", "reader"):
        error = f"an {key.role} key cannot read the ledger: sign in with an admin or reader key"
    if error is not None or key is None:
        return render(
            request, "signin.html", None, 401, next=_safe_next(next), csrf=csrf, error=error
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        new_session(request, key.id, token),
        max_age=SESSION_SECONDS,
        **cookie_options(request),
    )
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@router.post("/signout")
def signout(request: Request, signed: Signed, csrf: Annotated[str, Form()] = "") -> Response:
    """End the session."""
    if not check_csrf(signed.csrf, csrf):
        return render(request, "error.html", signed, 403, message="the form expired: try again")
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- prices ----------------------------------------------------------------------------


@router.get("/prices", response_class=HTMLResponse)
def prices_page(request: Request, signed: Signed) -> HTMLResponse:
    """Prices in force, stale rows, price gaps; adding and verifying rows (admins)."""
    return _prices(request, signed)


def _prices(
    request: Request,
    signed: Session,
    status: int = 200,
    message: str | None = None,
    form_error: str | None = None,
    repriced: dict[str, Any] | None = None,
    reprice_form: dict[str, str] | None = None,
) -> HTMLResponse:
    service = get_service(request)
    found, read_status, error = attempt(
        lambda: data.prices_page(service, signed.principal, datetime.now(UTC))
    )
    return render(
        request,
        "prices.html",
        signed,
        status if read_status == 200 else read_status,
        data=found,
        error=error,
        message=message,
        form_error=form_error,
        admin=is_admin(signed),
        repriced=repriced,
        reprice_form=reprice_form or {"since": "", "until": "", "where": ""},
    )


@router.post("/prices/reprice", response_class=HTMLResponse)
def reprice(
    request: Request,
    signed: Signed,
    since: Annotated[str, Form()] = "",
    until: Annotated[str, Form()] = "",
    where: Annotated[str, Form()] = "",
    apply: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """Price stored events again: a dry run shows the difference, applying it changes
    the costs (admins; the ``/v1/admin/reprice`` route does the work)."""
    if not check_csrf(signed.csrf, csrf):
        return render(request, "error.html", signed, 403, message="the form expired: try again")
    if not is_admin(signed):
        return forbidden(request, signed)
    form = {"since": since.strip(), "until": until.strip(), "where": where.strip()}
    try:
        body = RepriceIn(
            since=form["since"] or None,
            until=form["until"] or None,
            where=[line.strip() for line in form["where"].splitlines() if line.strip()],
            dry_run=apply != "yes",
        )
        summary = reprice_routes.reprice_events(request, signed.principal, body)
    except (LedgerError, pydantic.ValidationError) as exc:
        status, text = error_text(exc)
        return _prices(request, signed, status, form_error=text, reprice_form=form)
    return _prices(request, signed, repriced=summary, reprice_form=form)


_PRICE_FIELDS = ("input", "output", "cache_read", "cache_write")


@router.post("/prices", response_class=HTMLResponse)
async def add_price(request: Request, signed: Signed) -> HTMLResponse:
    """Add a dated price row (admins)."""
    form = await request.form()
    if not check_csrf(signed.csrf, str(form.get("csrf", ""))):
        return render(request, "error.html", signed, 403, message="the form expired: try again")
    if not is_admin(signed):
        return forbidden(request, signed)
    body: dict[str, Any] = {
        name: str(form.get(name, "")).strip()
        for name in ("provider", "model", "from", "service_tier", *_PRICE_FIELDS)
    }
    body = {k: v for k, v in body.items() if v}
    service = get_service(request)
    try:
        row = PriceIn.model_validate(body)
        service.prices.add_price(row.file_row(), now=datetime.now(UTC), by=signed.principal.key.id)
    except (LedgerError, pydantic.ValidationError) as exc:
        status, message = error_text(exc)
        return _prices(request, signed, status, form_error=message)
    service.prices_changed()
    return _prices(request, signed, 201, message=f"added a price for {row.provider}/{row.model}")


@router.post("/prices/{price_id}/verify", response_class=HTMLResponse)
def verify_price(
    request: Request, signed: Signed, price_id: str, csrf: Annotated[str, Form()] = ""
) -> HTMLResponse:
    """Mark a price row checked today (admins)."""
    if not check_csrf(signed.csrf, csrf):
        return render(request, "error.html", signed, 403, message="the form expired: try again")
    if not is_admin(signed):
        return forbidden(request, signed)
    try:
        row = get_service(request).prices.verify_price(price_id, datetime.now(UTC).date())
    except LedgerError as exc:
        status, message = error_text(exc)
        return _prices(request, signed, status, form_error=message)
    return _prices(request, signed, message=f"{row.provider}/{row.model} checked today")


# -- keys ------------------------------------------------------------------------------


@router.get("/keys", response_class=HTMLResponse)
def keys_page(request: Request, signed: Signed) -> HTMLResponse:
    """Every key (admins)."""
    if not is_admin(signed):
        return forbidden(request, signed)
    return render(request, "keys.html", signed, data=data.keys_page(get_service(request)))


@router.post("/keys", response_class=HTMLResponse)
def create_key(
    request: Request,
    signed: Signed,
    role: Annotated[str, Form()] = "",
    tenant: Annotated[str, Form()] = "",
    user: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """Make a key; its secret is shown on this answer only."""
    if not check_csrf(signed.csrf, csrf):
        return render(request, "error.html", signed, 403, message="the form expired: try again")
    if not is_admin(signed):
        return forbidden(request, signed)
    service = get_service(request)
    new = None
    form_error = None
    status = 201
    try:
        new = service.keys.create(
            role,
            tenant=tenant.strip() or None,
            user=user.strip() or None,
            name=name.strip() or None,
            now=datetime.now(UTC),
        )
    except LedgerError as exc:
        status, form_error = error_text(exc)
    return render(
        request,
        "keys.html",
        signed,
        status,
        data=data.keys_page(service),
        new=new,
        form_error=form_error,
    )


@router.post("/keys/{key_id}/revoke", response_class=HTMLResponse)
def revoke_key(
    request: Request, signed: Signed, key_id: str, csrf: Annotated[str, Form()] = ""
) -> Response:
    """Revoke a key at once."""
    if not check_csrf(signed.csrf, csrf):
        return render(request, "error.html", signed, 403, message="the form expired: try again")
    if not is_admin(signed):
        return forbidden(request, signed)
    service = get_service(request)
    try:
        key = service.keys.revoke(key_id, now=datetime.now(UTC))
    except LedgerError as exc:
        status, message = error_text(exc)
        return render(
            request, "keys.html", signed, status, data=data.keys_page(service), form_error=message
        )
    return render(
        request,
        "keys.html",
        signed,
        data=data.keys_page(service),
        message=f"revoked {key.prefix}",
    )
