"""The dashboard's pages: server-side HTML (Jinja2) over the data of :mod:`.data`.

Every page needs a signed-in session (:mod:`.session`); without one it
redirects to the sign-in form.  Forms that change anything are POSTs carrying
the session's CSRF token.  Charts are drawn in the browser by plotly.js, served
from the installed ``plotly`` package (nothing is fetched from elsewhere).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import pydantic
import secrets
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from llmledger.core.errors import LedgerError
from llmledger.query.export import calls_to_csv, write_calls_xlsx
from llmledger.query.periods import from_us, to_us
from llmledger.query.spec import COLUMN_DIMENSIONS, METRICS, TIME_BUCKETS, zone
from llmledger.server.auth import get_service
from llmledger.server.dashboard import data
from llmledger.server.dashboard.session import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Session,
    check_csrf,
    cookie_options,
    new_session,
    read_session,
)
from llmledger.server.errors import ApiError, classify_error
from llmledger.server.routers.reports import run_report, spec_query
from llmledger.server.schemas import PriceIn, ReportQueryIn

__all__ = ["router", "templates"]

_HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(_HERE / "templates"))
router = APIRouter(include_in_schema=False)
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
STATUSES = ("ok", "error", "incomplete", "abandoned", "blocked")
PAGES = (
    ("overview", "/", "Overview"),
    ("calls", "/calls", "Calls"),
    ("breakdowns", "/breakdowns", "Breakdowns"),
    ("entity", "/entity", "Entity"),
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
        return f"{value:,.1f}"
    return f"{int(value):,}"


def _percent(value: Any) -> str:
    return "—" if value is None else f"{float(value) * 100:.1f}%"


def _when(value: Any, tz: str = "UTC") -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return str(value.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M:%S"))


def _hue(name: Any) -> int:
    """A stable colour for a name (feature badges)."""
    return int(hashlib.sha256(str(name).encode()).hexdigest()[:4], 16) % 360


templates.env.filters.update(us=to_us, money=_money, number=_number, percent=_percent, when=_when, hue=_hue)


# -- sessions and rendering ------------------------------------------------------------


def session(request: Request) -> Session:
    """The signed-in session (raises ``NotSignedIn``: the app redirects to sign in)."""
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
            "pages": [p for p in PAGES if p[0] != "keys" or _is_admin(signed)],
            "page": page,
            "features": service.settings.features,
            **context,
        },
        status_code=status,
    )
    response.headers.update(HEADERS)
    return response


def _is_admin(signed: Session | None) -> bool:
    return signed is not None and signed.principal.role == "admin"


def _error_text(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, ApiError):
        return exc.status, exc.message
    if isinstance(exc, pydantic.ValidationError):
        return 400, "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
    status, _, _ = classify_error(exc)
    return status, (str(exc) if status < 500 or status == 503 else "internal error")


def _attempt(build: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any] | None, int, str | None]:
    """The data of a page, or the status and message of why it could not be read."""
    try:
        return build(), 200, None
    except (LedgerError, pydantic.ValidationError) as exc:
        status, message = _error_text(exc)
        return None, status, message


def _forbidden(request: Request, signed: Session) -> HTMLResponse:
    return render(
        request,
        "error.html",
        signed,
        403,
        message=f"the {signed.principal.role} key {signed.principal.key.prefix} cannot see this "
        "page (it needs an admin key)",
    )


def _params(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items()}


def _safe_next(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


# -- signing in and out ----------------------------------------------------------------


@router.get("/signin", response_class=HTMLResponse)
def signin_form(request: Request, next: str = "/") -> HTMLResponse:  # noqa: A002
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
    next: Annotated[str, Form()] = "/",  # noqa: A002
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


# -- overview --------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def overview_page(
    request: Request, signed: Signed, tz: str = "UTC", stack: str = "provider"
) -> HTMLResponse:
    """Spend, forecast, trend, top groups, health."""
    service = get_service(request)
    found, status, error = _attempt(
        lambda: data.overview(service, signed.principal, datetime.now(UTC), tz=tz, stack=stack)
    )
    return render(
        request,
        "overview.html",
        signed,
        status,
        data=found,
        error=error,
        tz=tz,
        stack=stack,
        stacks=data.STACKS,
        chart=None if found is None else json.dumps(_trend_chart(found)),
    )


def _trend_chart(found: Mapping[str, Any]) -> dict[str, Any]:
    trend = found["trend"]
    return {
        "kind": "bar",
        "barmode": "stack",
        "x": trend["x"],
        "series": trend["series"],
        "ytitle": f"cost ({found['currency']})",
    }


# -- calls -----------------------------------------------------------------------------


@router.get("/calls", response_class=HTMLResponse)
def calls(request: Request, signed: Signed, cursor: str | None = None) -> HTMLResponse:
    """The log browser: newest first, filtered, paginated, live."""
    service = get_service(request)
    filters = data.CallFilters.from_params(request.query_params)
    found, status, error = _attempt(
        lambda: data.calls_page(
            service, signed.principal, datetime.now(UTC), filters, cursor=cursor
        )
    )
    params = filters.params()
    return render(
        request,
        "calls.html",
        signed,
        status,
        data=found,
        error=error,
        filters=filters,
        dimensions=[d for d in COLUMN_DIMENSIONS if d != "status"],
        statuses=STATUSES,
        query=urlencode(params),
        first_page=cursor is None,
        next_url=None
        if not found or not found["next_cursor"]
        else "/calls?" + urlencode({**params, "cursor": found["next_cursor"]}),
    )


@router.get("/calls/new", response_class=HTMLResponse)
def calls_new(request: Request, signed: Signed, after_ts: int, after_id: str) -> HTMLResponse:
    """Rows of the calls newer than the newest shown (the calls page polls it)."""
    service = get_service(request)
    filters = data.CallFilters.from_params(request.query_params)
    found, status, error = _attempt(
        lambda: {
            "events": data.new_calls(
                service, signed.principal, datetime.now(UTC), filters, (from_us(after_ts), after_id)
            )
        }
    )
    return render(
        request,
        "_call_rows.html",
        signed,
        status,
        events=[] if found is None else found["events"],
        filters=filters,
        error=error,
    )


@router.get("/calls/export.{fmt}")
def calls_export(request: Request, signed: Signed, fmt: str) -> Response:
    """The filtered calls (not aggregates) as CSV or XLSX, formulas escaped."""
    service = get_service(request)
    filters = data.CallFilters.from_params(request.query_params)
    now = datetime.now(UTC)
    if fmt not in ("csv", "xlsx"):
        return render(request, "error.html", signed, 404, message=f"no export as {fmt!r}")
    try:
        if filters.search_id() is None:
            filters.query(now)  # a bad filter is refused before the answer starts
    except LedgerError as exc:
        status, message = _error_text(exc)
        return render(request, "error.html", signed, status, message=message)
    stamp = now.strftime("%Y%m%d-%H%M%S")
    events = data.export_events(service, signed.principal, now, filters)
    if fmt == "csv":
        return StreamingResponse(
            calls_to_csv(events),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="calls-{stamp}.csv"'},
        )
    folder = Path(tempfile.mkdtemp(prefix="llmledger-export-"))
    path = write_calls_xlsx(
        events, folder / "calls.xlsx", about=sorted(filters.params().items())
    )

    def remove() -> None:
        path.unlink(missing_ok=True)
        folder.rmdir()

    return FileResponse(
        path,
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        filename=f"calls-{stamp}.xlsx",
        background=BackgroundTask(remove),
    )


@router.get("/calls/{event_id}", response_class=HTMLResponse)
def call_page(request: Request, signed: Signed, event_id: str, tz: str = "UTC") -> HTMLResponse:
    """One call: usage buckets, price used, raw usage, kept text."""
    service = get_service(request)
    found, status, error = _attempt(lambda: data.call_detail(service, signed.principal, event_id))
    raw = None
    if found is not None and found["event"].usage_raw is not None:
        raw = json.dumps(found["event"].usage_raw, indent=2, ensure_ascii=False, default=str)
    return render(
        request, "call.html", signed, status, data=found, error=error, raw=raw, tz=tz
    )


# -- breakdowns ------------------------------------------------------------------------


@router.get("/breakdowns", response_class=HTMLResponse)
def breakdowns(request: Request, signed: Signed) -> HTMLResponse:
    """Any group-by, bucket, zone and currency; chart and table; the state in the URL."""
    service = get_service(request)
    params = request.query_params
    by = [d for d in params.getlist("by") if d]
    tag = params.get("tag", "").strip()
    if tag:
        by.append(f"tag:{tag}")
    chart_metric = params.get("chart", "cost")
    metrics = [m for m in params.getlist("metrics") if m] or ["calls", "cost", "total_tokens"]
    if chart_metric not in metrics:
        chart_metric = metrics[0]
    form = {
        "by": by,
        "tag": tag,
        "every": params.get("every", "day"),
        "tz": params.get("tz", "UTC"),
        "currency": params.get("currency", "") or service.settings.currency,
        "last": params.get("last", "30d"),
        "since": params.get("since", ""),
        "until": params.get("until", ""),
        "where": [w for w in params.getlist("where") if w.strip()],
        "metrics": metrics,
        "limit": params.get("limit", "10"),
        "chart": chart_metric,
    }

    def build() -> dict[str, Any]:
        spec = ReportQueryIn(
            by=[d for d in by],
            every=form["every"] or None,
            tz=form["tz"] or "UTC",
            since=form["since"] or None,
            until=form["until"] or None,
            last=None if form["since"] or form["until"] else (form["last"] or None),
            where=form["where"],
            metrics=metrics,
            limit=int(form["limit"]) if str(form["limit"]).strip() else None,
            currency=form["currency"] or None,
        )
        query = spec_query(service, spec, datetime.now(UTC))
        return {"report": run_report(service, signed.principal, query)}

    found, status, error = _attempt(build)
    chart = None
    if found is not None:
        chart = _breakdown_chart(found["report"], chart_metric)
    return render(
        request,
        "breakdowns.html",
        signed,
        status,
        data=found,
        error=error,
        form=form,
        dimensions=COLUMN_DIMENSIONS,
        buckets=TIME_BUCKETS,
        all_metrics=METRICS,
        chart=None if chart is None else json.dumps(chart),
    )


def _label(row: Mapping[str, Any], dims: tuple[str, ...]) -> str:
    return " · ".join("(none)" if row.get(d) is None else str(row[d]) for d in dims) or "all"


def _breakdown_chart(report: Any, metric: str) -> dict[str, Any]:
    dims = report.query.by
    every = report.query.every

    def value(row: Mapping[str, Any]) -> float:
        found = row.get(metric)
        return float(found) if isinstance(found, int | float | Decimal) else 0.0

    if every is None:
        return {
            "kind": "bar",
            "x": [_label(r, dims) for r in report.rows],
            "series": [{"name": metric, "y": [value(r) for r in report.rows]}],
            "ytitle": metric,
        }
    xs = sorted({r[every].isoformat() for r in report.rows if r.get(every) is not None})
    series: dict[str, dict[str, float]] = {}
    for row in report.rows:
        if row.get(every) is None:
            continue
        series.setdefault(_label(row, dims), {})[row[every].isoformat()] = value(row)
    return {
        "kind": "bar" if metric in ("cost", "calls") or metric.endswith("tokens") else "line",
        "barmode": "stack",
        "x": xs,
        "series": [{"name": n, "y": [p.get(x, 0.0) for x in xs]} for n, p in series.items()],
        "ytitle": metric,
    }


# -- entity ----------------------------------------------------------------------------


@router.get("/entity", response_class=HTMLResponse)
def entity_page(
    request: Request, signed: Signed, tag: str = "", last: str = "", tz: str = "UTC"
) -> HTMLResponse:
    """A tagged thing: its cost by feature and the timeline of its calls."""
    service = get_service(request)
    found, status, error = None, 200, None
    chart = None
    if tag.strip():
        found, status, error = _attempt(
            lambda: data.entity(service, signed.principal, datetime.now(UTC), tag, last=last, tz=tz)
        )
    if found is not None:
        calls_by_feature: dict[str, dict[str, list[Any]]] = {}
        for call in found["timeline"]:
            name = call["feature"] or "(none)"
            points = calls_by_feature.setdefault(name, {"x": [], "y": []})
            points["x"].append(call["ts"].isoformat())
            points["y"].append(float(call["cost"] or 0))
        chart = json.dumps(
            {
                "kind": "scatter",
                "series": [
                    {"name": n, "x": p["x"], "y": p["y"]} for n, p in calls_by_feature.items()
                ],
                "ytitle": f"cost per call ({found['report'].currency})",
            }
        )
    return render(
        request,
        "entity.html",
        signed,
        status,
        data=found,
        error=error,
        tag=tag,
        last=last,
        tz=tz,
        chart=chart,
    )


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
) -> HTMLResponse:
    service = get_service(request)
    found, read_status, error = _attempt(
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
        admin=_is_admin(signed),
    )


_PRICE_FIELDS = ("input", "output", "cache_read", "cache_write")


@router.post("/prices", response_class=HTMLResponse)
async def add_price(request: Request, signed: Signed) -> HTMLResponse:
    """Add a dated price row (admins)."""
    form = await request.form()
    if not check_csrf(signed.csrf, str(form.get("csrf", ""))):
        return render(request, "error.html", signed, 403, message="the form expired: try again")
    if not _is_admin(signed):
        return _forbidden(request, signed)
    body: dict[str, Any] = {
        name: str(form.get(name, "")).strip()
        for name in ("provider", "model", "from", "service_tier", *_PRICE_FIELDS)
    }
    body = {k: v for k, v in body.items() if v}
    service = get_service(request)
    try:
        row = PriceIn.model_validate(body)
        service.prices.add_price(
            row.file_row(), now=datetime.now(UTC), by=signed.principal.key.id
        )
    except (LedgerError, pydantic.ValidationError) as exc:
        status, message = _error_text(exc)
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
    if not _is_admin(signed):
        return _forbidden(request, signed)
    try:
        row = get_service(request).prices.verify_price(price_id, datetime.now(UTC).date())
    except LedgerError as exc:
        status, message = _error_text(exc)
        return _prices(request, signed, status, form_error=message)
    return _prices(request, signed, message=f"{row.provider}/{row.model} checked today")


# -- keys ------------------------------------------------------------------------------


@router.get("/keys", response_class=HTMLResponse)
def keys_page(request: Request, signed: Signed) -> HTMLResponse:
    """Every key (admins)."""
    if not _is_admin(signed):
        return _forbidden(request, signed)
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
    if not _is_admin(signed):
        return _forbidden(request, signed)
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
        status, form_error = _error_text(exc)
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
    if not _is_admin(signed):
        return _forbidden(request, signed)
    service = get_service(request)
    try:
        key = service.keys.revoke(key_id, now=datetime.now(UTC))
    except LedgerError as exc:
        status, message = _error_text(exc)
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


# -- assets ----------------------------------------------------------------------------


def _plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@router.get("/static/plotly.min.js")
def plotly_js() -> Response:
    """plotly.js as the installed ``plotly`` package ships it."""
    import plotly

    return FileResponse(
        _plotly_js(),
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=86400, immutable", "ETag": plotly.__version__},
    )


_ASSETS = {"app.css": "text/css", "app.js": "text/javascript"}


@router.get("/static/{name}")
def asset(name: str) -> Response:
    """The dashboard's own stylesheet and script."""
    if name not in _ASSETS:
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(
        _HERE / "static" / name,
        media_type=_ASSETS[name],
        headers={"Cache-Control": "public, max-age=300"},
    )
