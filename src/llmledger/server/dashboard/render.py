"""Rendering the dashboard's pages: templates, formats, the signed-in session, errors."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import pydantic
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from llmledger.core.errors import LedgerError
from llmledger.query.periods import to_us
from llmledger.query.spec import zone
from llmledger.server.auth import get_service
from llmledger.server.dashboard.session import Session, read_session
from llmledger.server.errors import ApiError, classify_error

__all__ = [
    "HEADERS",
    "PAGES",
    "Signed",
    "attempt",
    "error_text",
    "feature_colours",
    "forbidden",
    "hue",
    "is_admin",
    "render",
    "session",
    "templates",
]

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
#: Security headers of every dashboard answer: nothing loads from elsewhere.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
PAGES = (
    ("overview", "/", "Overview"),
    ("calls", "/calls", "Calls"),
    ("breakdowns", "/breakdowns", "Breakdowns"),
    ("entity", "/entity", "Entity"),
    ("budgets", "/budgets", "Budgets and alerts"),
    ("prices", "/prices", "Prices"),
    ("keys", "/keys", "Keys"),
)


# -- formatting ------------------------------------------------------------------------


def _money(value: Any, currency: str = "USD") -> str:
    if value is None or value == "":
        return "—"
    amount = Decimal(str(value))
    if not amount:
        amount = Decimal(0)
    places = 2 if abs(amount) >= 100 or not amount else 4 if abs(amount) >= Decimal("0.01") else 6
    text = f"{amount:,.{places}f}"
    return f"${text}" if currency == "USD" else f"{text} {currency}"


def _number(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"
    return f"{int(value):,}"


def _percent(value: Any) -> str:
    return "—" if value is None else f"{float(value) * 100:.1f}%"


def _when(value: Any, tz: str = "UTC") -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return str(value.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M:%S"))


def feature_colours(names: Any) -> dict[str, str]:
    """Chart colours of features, the hues of their badges."""
    return {str(n): f"hsl({hue(n)}, 60%, 50%)" for n in names if n not in (None, "(none)")}


def _bucket(value: Any, every: str, tz: str = "UTC") -> str:
    """A time bucket's start as its name: a day, week or month by its date."""
    text = _when(value, tz)
    return text if every == "hour" else text[:10] if every != "month" else text[:7]


def hue(name: Any) -> int:
    """A stable colour (hue) for a feature: its badges and its chart series share it."""
    return int(hashlib.sha256(str(name).encode()).hexdigest()[:4], 16) % 360


templates.env.filters.update(
    us=to_us, money=_money, number=_number, percent=_percent, when=_when, bucket=_bucket, hue=hue
)


# -- sessions and rendering ------------------------------------------------------------


def session(request: Request) -> Session:
    """The signed-in session (raises ``NotSignedInError``: the app redirects to sign in)."""
    return read_session(request)


Signed = Annotated[Session, Depends(session)]


def render(
    request: Request,
    name: str,
    signed: Session | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page of the dashboard with its navigation and security headers."""
    service = get_service(request)
    page = name.removesuffix(".html")
    response = templates.TemplateResponse(
        request,
        name,
        {
            "session": signed,
            "principal": None if signed is None else signed.principal,
            "pages": [p for p in PAGES if p[0] != "keys" or is_admin(signed)],
            "page": page,
            "features": service.settings.features,
            **context,
        },
        status_code=status,
    )
    response.headers.update(HEADERS)
    return response


def is_admin(signed: Session | None) -> bool:
    return signed is not None and signed.principal.role == "admin"


def error_text(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, ApiError):
        return exc.status, exc.message
    if isinstance(exc, pydantic.ValidationError):
        return 400, "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
    status, _, _ = classify_error(exc)
    return status, (str(exc) if status < 500 or status == 503 else "internal error")


def attempt(build: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any] | None, int, str | None]:
    """The data of a page, or the status and message of why it could not be read."""
    try:
        return build(), 200, None
    except (LedgerError, pydantic.ValidationError) as exc:
        status, message = error_text(exc)
        return None, status, message


def forbidden(request: Request, signed: Session) -> HTMLResponse:
    return render(
        request,
        "error.html",
        signed,
        403,
        message=f"the {signed.principal.role} key {signed.principal.key.prefix} cannot see this "
        "page (it needs an admin key)",
    )
