"""``/healthz`` and ``/metrics``: for load balancers and Prometheus (no key needed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from llmledger.server.auth import get_service
from llmledger.server.errors import error_response
from llmledger.server.schemas import HealthOut

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    summary="Liveness and database reachability",
    response_model=HealthOut,
    responses={503: {"description": "The database cannot be reached"}},
)
def healthz(request: Request) -> Any:
    """`ok` when the instance can reach its database."""
    store = get_service(request).store
    try:
        version = store.schema_version()
    except Exception as exc:  # the answer is the health check
        return error_response(503, f"database unreachable: {type(exc).__name__}")
    return {"ok": True, "database": store.dialect, "schema_version": version}


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> PlainTextResponse:
    """Events ingested, duplicate and rejected, and ingest latency, of this instance."""
    return PlainTextResponse(
        get_service(request).metrics.render(), media_type="text/plain; version=0.0.4"
    )
