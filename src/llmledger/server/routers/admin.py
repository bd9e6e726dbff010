"""``/v1/admin/reprice``: price stored events again from the prices in force (admin keys)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request

from llmledger.query import InvalidQueryError, build_query
from llmledger.runtime.reprice import reprice
from llmledger.server.auth import Admin, get_service
from llmledger.server.schemas import RepriceIn, RepriceOut

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post("/reprice", summary="Price stored events again", response_model=RepriceOut)
def reprice_events(request: Request, principal: Admin, body: RepriceIn) -> dict[str, Any]:
    """Recompute the cost of the events of a range from the prices in force at each
    event's time (database rows, price files, catalog, supplementary rows).

    A dry run (the default) shows the difference per provider and model and
    changes nothing. With `dry_run: false` events and rollups are updated batch
    by batch, each in one transaction; a request cut short resumes where it
    stopped when sent again with the same range and filters, and a second run
    changes nothing. No batch starts after `max_seconds`: an unfinished run
    answers `finished: false`, and the same request goes on (a dry run from
    its `cursor`; the totals are then of that part).
    """
    service = get_service(request)
    service.prices_changed()  # the newest price rows, whichever instance added them
    now = datetime.now(UTC)
    query = principal.scoped(
        build_query(now=now, since=body.since, until=body.until, tz="UTC", where=body.where)
    )
    summary = reprice(
        service.store,
        service.pricer,
        query,
        now=now,
        dry_run=body.dry_run,
        batch_size=body.batch_size,
        restart=body.restart,
        clock=lambda: datetime.now(UTC),
        time_limit=body.max_seconds,
        after=None if body.cursor is None else _cursor(body.cursor),
    )
    return summary.to_dict()


def _cursor(text: str) -> tuple[int, str]:
    micros, sep, event_id = text.partition(":")
    if not sep or not event_id or not micros.isdigit() or len(micros) > 19:
        raise InvalidQueryError(f"not a cursor of a reprice: {text!r}")
    return int(micros), event_id
