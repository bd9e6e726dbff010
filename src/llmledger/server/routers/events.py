"""``/v1/events``: ingest (one event or a batch, idempotent), list with filters, get one,
and the prompt and response text kept with one."""

from __future__ import annotations

import base64
import binascii
import time
import zlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from llmledger.core.errors import InvalidEventError
from llmledger.core.events import UsageEvent
from llmledger.query import Query as LedgerQuery
from llmledger.query import build_query
from llmledger.query.periods import to_us
from llmledger.server.auth import Principal, Reader, Writer, get_service
from llmledger.server.errors import ApiError, NotFoundError
from llmledger.server.schemas import BatchAnswer, ContentOut, EventOut, EventPage
from llmledger.server.state import Service
from llmledger.store import ContentRecord
from llmledger.store.budget import time_budget
from llmledger.wire.parse import (
    MAX_BATCH,
    MAX_COST,
    ContentIn,
    EventIn,
    cost_over_limit,
    parse_body_with_content,
)
from llmledger.wire.serialize import event_to_json

__all__ = ["page_of_events", "router", "store_parsed", "visible_event"]

router = APIRouter(prefix="/v1/events", tags=["events"])

#: Largest and default page of ``GET /v1/events``.
MAX_PAGE = 1000
DEFAULT_PAGE = 100

_INGEST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"$ref": "#/components/schemas/EventIn"},
                    {
                        "type": "object",
                        "properties": {
                            "events": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/EventIn"},
                                "maxItems": MAX_BATCH,
                            }
                        },
                        "required": ["events"],
                        "additionalProperties": False,
                    },
                ]
            }
        }
    },
}


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, gunzipped when sent with ``Content-Encoding: gzip``, at most ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the body is larger than {limit} bytes; send smaller batches")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is larger than {limit} bytes; send smaller batches")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise ApiError(400, f"the body is not valid gzip: {exc}") from None
        if len(body) > limit or inflater.unconsumed_tail:
            raise ApiError(413, f"the body is larger than {limit} bytes once decompressed")
        # One whole gzip member: a truncated stream or a second member (which
        # zlib would leave unread) is refused rather than read in part.
        if not inflater.eof:
            raise ApiError(400, "the body is not valid gzip: the stream is truncated")
        if inflater.unused_data:
            raise ApiError(400, "the body is not valid gzip: send one gzip member, not several")
    elif encoding != "identity":
        raise ApiError(415, f"Content-Encoding {encoding!r} is not supported (use gzip)")
    return body


def _ingest(
    service: Service, principal: Principal, body: bytes
) -> tuple[bool, list[dict[str, Any]]]:
    # Each event is made in the key's tenant (store_parsed would otherwise copy it).
    read = parse_body_with_content(
        body, now=datetime.now(UTC), features=service.settings.features, tenant=principal.tenant
    )
    batch, parsed = read.batch, read.parsed
    if not batch and isinstance(parsed[0], InvalidEventError):  # pragma: no cover - raised
        raise parsed[0]
    sent = {id(event): text for event, text in read.content}
    return batch, store_parsed(service, principal, parsed, sent)


def store_parsed(
    service: Service,
    principal: Principal,
    parsed: Sequence[UsageEvent | InvalidEventError],
    sent: Mapping[int, ContentIn] | None = None,
) -> list[dict[str, Any]]:
    """Price and store events read from a request; one answer per item, in order.

    Each answer is ``{"id", "status", "reason"}`` with status ``accepted``,
    ``duplicate`` or ``rejected``.  ``sent`` maps ``id(event)`` to the text kept
    with it.  Every ingest route (``/v1/events``, ``/v1/traces``) stores this way.
    """
    pricer = service.pricer
    price = pricer.priced
    tenant = principal.tenant
    results: list[dict[str, Any]] = []
    to_write: list[UsageEvent] = []
    # The text goes with the occurrence of its id that the store keeps (the first).
    texts: dict[str, ContentRecord] = {}
    seen: set[str] = set()
    for item in parsed:
        if isinstance(item, InvalidEventError):
            results.append({"id": None, "status": "rejected", "reason": str(item)})
            continue
        # The service is authoritative: it prices every event it receives with its
        # own price source, keeping only costs the caller or the provider gave.
        # An event priced as the sender did comes back as it is, not copied.
        priced = price(item)
        cost = priced.cost
        if cost is not None and cost > MAX_COST:
            # Never a total out of range, never $0: the call is stored unpriced.
            priced = priced.replace(
                cost=None,
                cost_breakdown=None,
                cost_source=None,
                price_ref=None,
                unpriced_reason=cost_over_limit(cost),
            )
        if tenant is not None and priced.tenant != tenant:
            priced = priced.replace(tenant=tenant)
        if sent:
            text = sent.get(id(item))
            if text is not None and priced.id not in seen:
                texts[priced.id] = ContentRecord(priced.id, priced.ts, text.prompt, text.response)
            seen.add(priced.id)
        to_write.append(priced)
        results.append({"id": priced.id, "status": "accepted", "reason": None})
    refused: dict[str, str] = {}

    def reject(event: UsageEvent, exc: Exception) -> None:
        refused[event.id] = str(exc)

    with time_budget(service.settings.ingest_timeout, setting="ingest_timeout"):
        written = service.store.write(to_write, on_error=reject, content=texts)
    if written.inserted:
        service.wrote()
    if len(written.inserted) == len(to_write):
        return results  # every event was new (a repeated id is never inserted twice)
    inserted = {event.id for event in written.inserted}
    hidden = _hidden_duplicates(service, tenant, written.duplicates)
    for result in results:
        event_id = result["id"]
        if result["status"] != "accepted":
            continue
        if event_id in refused:
            result.update(status="rejected", reason=refused[event_id])
        elif event_id in inserted:
            inserted.discard(event_id)  # a repeat within the batch is a duplicate
        elif event_id not in hidden:
            result["status"] = "duplicate"
    return results


def _hidden_duplicates(
    service: Service, tenant: str | None, duplicates: tuple[str, ...]
) -> set[str]:
    """The duplicate ids a key of ``tenant`` may not learn are stored (one query per batch).

    A key scoped to a tenant is told ``duplicate`` only for its tenant's own
    events; an id stored in another tenant gets the answer a new id gets, so
    ingest cannot be used to probe other tenants' ids.
    """
    if tenant is None or not duplicates:
        return set()
    owners = service.store.event_tenants(duplicates)
    return {event_id for event_id, owner in owners.items() if owner != tenant}


@router.post(
    "",
    summary="Record one event or a batch of up to 1,000",
    response_model=BatchAnswer,
    openapi_extra={"requestBody": _INGEST_BODY},
    responses={413: {"description": "Body too large"}, 422: {"description": "Invalid event"}},
)
async def ingest(request: Request, principal: Writer) -> JSONResponse:
    """Store events sent in the JSON shape of `llmledger logs --json`.

    Idempotent on the event id: an id already stored is answered `duplicate`
    (to a key scoped to a tenant, only an id of its own tenant; another tenant's
    id is answered as a new one is, and nothing is written).
    In a batch each invalid event is answered `rejected` with the reason and the
    valid ones are stored in one transaction; a single invalid event is a 422.
    Events sent with an ingest key are put in the key's tenant.  An event may
    carry `content` (`{"prompt": …, "response": …}`): it is kept, in the same
    transaction, for the events stored, never for a duplicate.  The body may be
    gzip-compressed (`Content-Encoding: gzip`).
    """
    service = get_service(request)
    started = time.perf_counter()
    try:
        body = await _read_body(request, service.settings.max_body_bytes)
        batch, results = await anyio.to_thread.run_sync(
            _ingest, service, principal, body, limiter=service.ingest_threads
        )
    except Exception:
        service.metrics.record_failure()
        raise
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    for result in results:
        counts[result["status"]] += 1
    service.metrics.record_ingest(**counts, seconds=time.perf_counter() - started)
    if not batch and results[0]["status"] == "rejected":
        raise ApiError(422, results[0]["reason"], code="invalid_event")
    return JSONResponse({"results": results})


def _encode_cursor(event: UsageEvent) -> str:
    text = f"{to_us(event.ts)}:{event.id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        micros, _, event_id = text.partition(":")
        return int(micros), event_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(
            400, f"not a cursor from this API: {cursor!r}", code="invalid_query"
        ) from None


@router.get("", summary="List events, newest first", response_model=EventPage)
def list_events(
    request: Request,
    principal: Reader,
    since: Annotated[
        str | None, Query(description="Start (ISO 8601; in `tz` without offset).")
    ] = None,
    until: Annotated[str | None, Query(description="End, exclusive.")] = None,
    last: Annotated[str | None, Query(description="Span ending now: 30m, 12h, 7d.")] = None,
    period: Annotated[str | None, Query(description="Calendar period: today, 2025-03, …")] = None,
    tz: Annotated[str, Query(description="IANA time zone of periods and local times.")] = "UTC",
    where: Annotated[
        list[str], Query(description="`DIM=V1,V2`, `DIM!=V`, `tag:KEY=V` (repeatable).")
    ] = [],  # noqa: B006 - FastAPI copies defaults
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
) -> JSONResponse:
    """Every filter of the report query model; cursor pagination, newest first."""
    query = build_query(
        now=datetime.now(UTC),
        since=since,
        until=until,
        last=last,
        period=period,
        tz=tz,
        where=where,
    )
    page, next_cursor = page_of_events(get_service(request), principal, query, limit, cursor)
    return JSONResponse(
        {"events": [event_to_json(event) for event in page], "next_cursor": next_cursor}
    )


def page_of_events(
    service: Service, principal: Principal, query: LedgerQuery, limit: int, cursor: str | None
) -> tuple[list[UsageEvent], str | None]:
    """A page of the events of a query within the key's scope, newest first, and the
    cursor of the next (older) page, None on the last.

    The one way the API and the dashboard list events.
    """
    before = None if cursor is None else _decode_cursor(cursor)
    with service.report_budget():
        found = service.store.event_page(principal.scoped(query), limit=limit + 1, before=before)
    more = len(found) > limit
    page = found[:limit]
    return page, _encode_cursor(page[-1]) if more else None


@router.get(
    "/{event_id}",
    summary="One event",
    response_model=EventOut,
    responses={404: {"description": "No such event in your scope"}},
)
def get_event(request: Request, principal: Reader, event_id: str) -> JSONResponse:
    """The event with this id; an event outside the key's scope is answered 404."""
    return JSONResponse(event_to_json(visible_event(get_service(request), principal, event_id)))


@router.get(
    "/{event_id}/content",
    summary="The prompt and response text kept with one event",
    response_model=ContentOut,
    responses={404: {"description": "No such event in your scope, or no text kept with it"}},
)
def get_event_content(request: Request, principal: Reader, event_id: str) -> JSONResponse:
    """The text kept with the event (sent as its `content`); 404 for an event
    outside the key's scope and for one kept without text."""
    service = get_service(request)
    event = visible_event(service, principal, event_id)
    record = service.store.get_content(event.id)
    if record is None:
        raise NotFoundError(f"no text was kept with event {event_id!r}")
    return JSONResponse(
        {"event_id": record.event_id, "prompt": record.prompt, "response": record.response}
    )


def visible_event(service: Service, principal: Principal, event_id: str) -> UsageEvent:
    """The event with this id when the key may see it.

    Raises:
        NotFoundError: when there is none in the key's scope (the same answer
            whether it exists elsewhere or not).
    """
    event = service.store.get(event_id.upper())
    if event is None or not principal.can_see(event):
        raise NotFoundError(f"no event {event_id!r}")
    return event


# EventIn appears in the OpenAPI document through the ingest body above.
EVENT_SCHEMAS = (EventIn,)
