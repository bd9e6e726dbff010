"""The dashboard's pages: server-side HTML (Jinja2) over the data of :mod:`.data`.

Every page needs a signed-in session (:mod:`.session`); without one it
redirects to the sign-in form.  Forms that change anything are POSTs carrying
the session's CSRF token.  Charts are drawn in the browser by plotly.js, served
from the installed ``plotly`` package (nothing is fetched from elsewhere).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from importlib import metadata, resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from llmledger.core.errors import LedgerError
from llmledger.query import InvalidQueryError
from llmledger.query.export import calls_to_csv, write_calls_xlsx
from llmledger.query.periods import from_us
from llmledger.query.spec import COLUMN_DIMENSIONS, METRICS, TIME_BUCKETS
from llmledger.server.auth import get_service
from llmledger.server.dashboard import data
from llmledger.server.dashboard.budgets import budget_statuses
from llmledger.server.dashboard.render import (
    HERE,
    Signed,
    attempt,
    error_text,
    feature_colours,
    render,
)
from llmledger.server.routers.reports import run_report, spec_query
from llmledger.server.schemas import ReportQueryIn

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
STATUSES = ("ok", "error", "incomplete", "abandoned", "blocked")


# -- overview --------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def overview_page(
    request: Request, signed: Signed, tz: str = "UTC", stack: str = "provider"
) -> HTMLResponse:
    """Spend, forecast, trend, top groups, health."""
    service = get_service(request)
    found, status, error = attempt(
        lambda: data.overview(service, signed.principal, datetime.now(UTC), tz=tz, stack=stack)
    )
    statuses, _, budget_error = attempt(lambda: {"all": budget_statuses(request, signed)})
    return render(
        request,
        "overview.html",
        signed,
        status,
        data=found,
        error=error,
        budgets=None if statuses is None else statuses["all"],
        budget_error=budget_error,
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
        "colours": feature_colours(s["name"] for s in trend["series"])
        if found["stack"] == "feature"
        else {},
    }


# -- calls -----------------------------------------------------------------------------


@router.get("/calls", response_class=HTMLResponse)
def calls(request: Request, signed: Signed, cursor: str | None = None) -> HTMLResponse:
    """The log browser: newest first, filtered, paginated, live."""
    service = get_service(request)
    filters = data.CallFilters.from_params(request.query_params)
    found, status, error = attempt(
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
    found, status, error = attempt(
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
        status, message = error_text(exc)
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
    path = write_calls_xlsx(events, folder / "calls.xlsx", about=sorted(filters.params().items()))

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
    found, status, error = attempt(lambda: data.call_detail(service, signed.principal, event_id))
    raw = None
    if found is not None and found["event"].usage_raw is not None:
        raw = json.dumps(found["event"].usage_raw, indent=2, ensure_ascii=False, default=str)
    return render(request, "call.html", signed, status, data=found, error=error, raw=raw, tz=tz)


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
    every = params.get("every", "day")
    tz = params.get("tz", "UTC")
    currency = params.get("currency", "") or service.settings.currency
    last = params.get("last", "30d")
    since = params.get("since", "")
    until = params.get("until", "")
    where = [w for w in params.getlist("where") if w.strip()]
    limit = params.get("limit", "10")
    form = {
        "by": by,
        "tag": tag,
        "every": every,
        "tz": tz,
        "currency": currency,
        "last": last,
        "since": since,
        "until": until,
        "where": where,
        "metrics": metrics,
        "limit": limit,
        "chart": chart_metric,
    }

    def build() -> dict[str, Any]:
        if limit.strip() and not limit.strip().isdigit():
            raise InvalidQueryError(f"top groups takes a whole number, got {limit!r}")
        spec = ReportQueryIn(
            by=by,
            every=every or None,  # type: ignore[arg-type]  # checked by ReportQueryIn
            tz=tz or "UTC",
            since=since or None,
            until=until or None,
            last=None if since or until else (last or None),
            where=where,
            metrics=metrics,
            limit=int(limit) if limit.strip() else None,
            currency=currency or None,
        )
        query = spec_query(service, spec, datetime.now(UTC))
        return {"report": run_report(service, signed.principal, query)}

    found, status, error = attempt(build)
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
    colours = feature_colours(_label(r, dims) for r in report.rows) if dims == ("feature",) else {}

    def value(row: Mapping[str, Any]) -> float:
        found = row.get(metric)
        return float(found) if isinstance(found, int | float | Decimal) else 0.0

    if every is None:
        return {
            "kind": "bar",
            "x": [_label(r, dims) for r in report.rows],
            "series": [{"name": metric, "y": [value(r) for r in report.rows]}],
            "ytitle": metric,
            "barcolours": [colours.get(_label(r, dims), "") for r in report.rows],
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
        "colours": colours,
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
        found, status, error = attempt(
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
                "colours": feature_colours(calls_by_feature),
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


# -- assets ----------------------------------------------------------------------------


@router.get("/static/plotly.min.js")
def plotly_js() -> Response:
    """plotly.js as the installed ``plotly`` package ships it."""
    shipped = resources.files("plotly") / "package_data" / "plotly.min.js"
    return FileResponse(
        str(shipped),
        media_type="text/javascript",
        headers={
            "Cache-Control": "public, max-age=86400",
            "ETag": f'"plotly-{metadata.version("plotly")}"',
        },
    )


_ASSETS = {"app.css": "text/css", "app.js": "text/javascript"}


@router.get("/static/{name}")
def asset(name: str) -> Response:
    """The dashboard's own stylesheet and script."""
    if name not in _ASSETS:
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(
        HERE / "static" / name,
        media_type=_ASSETS[name],
        headers={"Cache-Control": "public, max-age=300"},
    )
