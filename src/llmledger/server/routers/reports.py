"""``/v1/report``, ``/v1/report/batch`` and ``/v1/stats``: views over the one query engine."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Query, Request

from llmledger.core.errors import InvalidEventError
from llmledger.query import InvalidQueryError, Report, SourceMode, build_query
from llmledger.query import Query as LedgerQuery
from llmledger.server.auth import Principal, Reader, get_service
from llmledger.server.schemas import (
    FeatureStats,
    ReportBatchIn,
    ReportBatchOut,
    ReportOut,
    ReportQueryIn,
    StatsOut,
)
from llmledger.server.state import Service

__all__ = ["router", "run_report", "spec_query"]

router = APIRouter(prefix="/v1", tags=["reports"])


def run_report(
    service: Service, principal: Principal, query: LedgerQuery, mode: SourceMode = "auto"
) -> Report:
    """Answer a query within the key's scope, under the service's query time budget.

    The one way the API and the dashboard ask the store for a report.
    """
    query = principal.scoped(query)
    rates = service.exchange_rates if query.currency != "USD" else None
    try:
        with service.report_budget():
            return service.store.report(query, rates=rates, mode=mode)
    except ValueError as exc:
        if isinstance(exc, InvalidEventError | InvalidQueryError):
            raise
        raise InvalidQueryError(str(exc)) from None  # e.g. rollups cannot answer this query


def spec_query(service: Service, spec: ReportQueryIn, now: datetime) -> LedgerQuery:
    """The query a report request's parameters ask for."""
    return build_query(
        now=now,
        by=spec.by,
        every=spec.every,
        tz=spec.tz,
        since=spec.since,
        until=spec.until,
        last=spec.last,
        period=spec.period,
        where=spec.where,
        metrics=spec.metrics,
        sort=spec.sort,
        limit=spec.limit,
        currency=spec.currency or service.settings.currency,
    )


def _report(service: Service, principal: Principal, spec: ReportQueryIn) -> dict[str, Any]:
    query = spec_query(service, spec, datetime.now(UTC))
    return run_report(service, principal, query, cast(SourceMode, spec.source)).to_dict()


@router.get("/report", summary="A report: the query engine", response_model=ReportOut)
def report(
    request: Request, principal: Reader, params: Annotated[ReportQueryIn, Query()]
) -> dict[str, Any]:
    """The same parameters as `llmledger report`, the same JSON shape as `--json`.

    List parameters (`by`, `where`, `metrics`, `sort`) repeat or take commas.
    """
    return _report(get_service(request), principal, params)


@router.post(
    "/report/batch", summary="Several reports in one request", response_model=ReportBatchOut
)
def report_batch(request: Request, principal: Reader, body: ReportBatchIn) -> dict[str, Any]:
    """Answer up to 20 report queries at once; an invalid query fails the request, naming it."""
    service = get_service(request)
    reports = []
    for index, spec in enumerate(body.queries):
        try:
            reports.append(_report(service, principal, spec))
        except InvalidQueryError as exc:
            raise InvalidQueryError(f"queries[{index}]: {exc}") from None
    return {"reports": reports}


@router.get("/stats", summary="Totals of the last N days", response_model=StatsOut)
def stats(
    request: Request,
    principal: Reader,
    days: Annotated[int, Query(ge=1, le=3660, description="How many days back from now.")] = 30,
) -> dict[str, Any]:
    """Requests, tokens, success rate, mean response time and cost, by feature, in your scope."""
    service = get_service(request)
    now = datetime.now(UTC)
    query = build_query(
        now=now,
        by=["feature"],
        last=f"{days}d",
        metrics=["calls", "total_tokens", "success_rate", "latency_mean", "cost"],
        sort=["calls"],
    )
    result = run_report(service, principal, query)
    total = result.to_dict()["total"]
    features = [
        FeatureStats(
            feature=row["feature"],
            requests=row["calls"],
            total_tokens=row["total_tokens"],
            success_rate=row["success_rate"],
            mean_response_ms=row["latency_mean"],
            cost=row["cost"],
        )
        for row in result.to_dict()["rows"]
    ]
    assert result.query.since is not None
    return StatsOut(
        days=days,
        since=result.query.since,
        until=now,
        total_requests=total["calls"],
        total_tokens=total["total_tokens"],
        success_rate=total["success_rate"],
        mean_response_ms=total["latency_mean"],
        cost=total["cost"],
        by_feature=features,
    ).model_dump(mode="json")
