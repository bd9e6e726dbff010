"""``POST /v1/events/delete``: delete events by filter (admins), with a dry run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pydantic
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from llmledger.query import build_query
from llmledger.server.auth import Admin, get_service
from llmledger.server.errors import ApiError

__all__ = ["DeleteIn", "DeleteOut", "router"]

router = APIRouter(prefix="/v1/events", tags=["events"])


class DeleteIn(pydantic.BaseModel):
    """Which events to delete: a range and filters of the report query model."""

    model_config = pydantic.ConfigDict(extra="forbid")

    since: str | None = pydantic.Field(default=None, description="Start (ISO 8601).")
    until: str | None = pydantic.Field(default=None, description="End, exclusive (ISO 8601).")
    last: str | None = pydantic.Field(default=None, description="Span ending now: 30m, 7d.")
    period: str | None = pydantic.Field(default=None, description="this-month, 2025-03, …")
    tz: str = pydantic.Field(default="UTC", description="IANA zone of periods and local times.")
    where: list[str] = pydantic.Field(
        default_factory=list, max_length=32, description="Filters: DIM=V, DIM!=V, tag:K=V."
    )
    dry_run: bool = pydantic.Field(default=False, description="Only count what would go.")


class DeleteOut(pydantic.BaseModel):
    """What a delete matched, and whether it removed it."""

    count: int
    cost: str = pydantic.Field(description="Summed cost of the matched events, USD.")
    first: datetime | None
    last: datetime | None
    dry_run: bool


@router.post(
    "/delete",
    summary="Delete events by filter (admins), with a dry run",
    response_model=DeleteOut,
    responses={400: {"description": "No range or filter given"}},
)
async def delete_events(request: Request, principal: Admin, body: DeleteIn) -> dict[str, Any]:
    """Delete the events of a range and filters (an admin key scoped to a tenant deletes
    only that tenant's). Each deleted id is kept as a tombstone, so a replay of the
    same events is answered `duplicate` and never stores them again; the rollups are
    rebuilt in the same transaction. With `dry_run` nothing is deleted."""
    if not (body.where or body.since or body.until or body.last or body.period):
        raise ApiError(400, "give a range or a filter: a delete never takes every event by default")
    now = datetime.now(UTC)
    query = principal.scoped(
        build_query(
            now=now,
            since=body.since,
            until=body.until,
            last=body.last,
            period=body.period,
            tz=body.tz,
            where=body.where,
        )
    )
    store = get_service(request).store
    result = await run_in_threadpool(store.delete_events, query, now=now, dry_run=body.dry_run)
    return result.to_dict()
