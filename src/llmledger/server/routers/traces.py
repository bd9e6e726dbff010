"""``/v1/traces``: OTLP/HTTP trace ingest.  GenAI spans become priced, attributed events.

Any OpenTelemetry SDK or Collector can export here (``OTEL_EXPORTER_OTLP_ENDPOINT``
set to the service, ``Authorization: Bearer`` an ingest key in
``OTEL_EXPORTER_OTLP_HEADERS``).  Each span that is a model call is read by
:mod:`llmledger.otel.reading`, validated like any event, priced and stored, with an
id made from its trace and span ids, so an exporter's retry stores nothing twice.
Spans that are not model calls are counted and dropped.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from llmledger.core.errors import InvalidEventError, MissingDependencyError
from llmledger.core.events import UsageEvent
from llmledger.otel.otlp import Encoding, OtlpError, decode_request, encode_response, spans_of
from llmledger.otel.reading import Skipped, event_json_from_span
from llmledger.server.auth import Principal, Writer, get_service
from llmledger.server.errors import ApiError
from llmledger.server.routers.events import _read_body, store_parsed
from llmledger.server.state import Service
from llmledger.wire.parse import parse_event

__all__ = ["router"]

router = APIRouter(prefix="/v1/traces", tags=["traces"])

_CONTENT_TYPES: dict[str, Encoding] = {
    "application/x-protobuf": "protobuf",
    "application/protobuf": "protobuf",
    "application/json": "json",
}

_BODY = {
    "required": True,
    "content": {
        "application/x-protobuf": {
            "schema": {"type": "string", "format": "binary"},
        },
        "application/json": {
            "schema": {
                "type": "object",
                "description": "An OTLP ExportTraceServiceRequest in OTLP's JSON encoding.",
                "properties": {"resourceSpans": {"type": "array", "items": {"type": "object"}}},
            }
        },
    },
}


def _encoding(request: Request) -> Encoding:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    encoding = _CONTENT_TYPES.get(content_type)
    if encoding is None:
        raise ApiError(
            415,
            f"Content-Type {content_type or '(none)'!r} is not an OTLP encoding; "
            "send application/x-protobuf or application/json",
        )
    return encoding


def _ingest_spans(
    service: Service, principal: Principal, body: bytes, encoding: Encoding
) -> dict[str, Any]:
    try:
        spans = list(spans_of(decode_request(body, encoding)))
    except OtlpError as exc:
        raise ApiError(400, str(exc), code="invalid_otlp") from None
    except MissingDependencyError as exc:  # pragma: no cover - the server extra installs it
        raise ApiError(501, str(exc), code="not_installed") from None
    now = datetime.now(UTC)
    ignored: Counter[str] = Counter()
    parsed: list[UsageEvent | InvalidEventError] = []
    for span in spans:
        read = event_json_from_span(span)
        if isinstance(read, Skipped):
            ignored[read.reason] += 1
            continue
        try:
            parsed.append(parse_event(read, now=now, features=service.settings.features))
        except InvalidEventError as exc:
            parsed.append(InvalidEventError(f"span {span.span_id} ({span.name[:80]!r}): {exc}"))
    results = store_parsed(service, principal, parsed) if parsed else []
    counts = Counter(result["status"] for result in results)
    return {
        "spans": len(spans),
        "accepted": counts["accepted"],
        "duplicate": counts["duplicate"],
        "rejected": counts["rejected"],
        "ignored": sum(ignored.values()),
        "ignored_reasons": dict(ignored),
        "results": results,
    }


@router.post(
    "",
    summary="Ingest OTLP/HTTP traces; GenAI spans become events",
    openapi_extra={"requestBody": _BODY},
    responses={
        400: {"description": "Not an OTLP trace request"},
        413: {"description": "Body too large"},
        415: {"description": "Not protobuf or JSON, or an unknown Content-Encoding"},
    },
)
async def ingest_traces(request: Request, principal: Writer) -> Response:
    """An OTLP `ExportTraceServiceRequest` (protobuf or JSON, optionally gzip).

    Spans following the GenAI semantic conventions (and OpenLLMetry, OpenLIT,
    Logfire and Langfuse spellings) are stored as events in the key's tenant;
    other spans are ignored and counted.  The answer is an
    `ExportTraceServiceResponse` in the request's encoding; refused spans are
    reported in its `partialSuccess`.  A JSON answer also carries `llmledger`:
    the counts of spans accepted, duplicate, rejected and ignored.
    """
    service = get_service(request)
    encoding = _encoding(request)
    started = time.perf_counter()
    try:
        body = await _read_body(request, service.settings.max_body_bytes)
        outcome = await anyio.to_thread.run_sync(
            _ingest_spans, service, principal, body, encoding, limiter=service.ingest_threads
        )
    except Exception:
        service.metrics.record_failure()
        raise
    service.metrics.record_ingest(
        accepted=outcome["accepted"],
        duplicate=outcome["duplicate"],
        rejected=outcome["rejected"],
        seconds=time.perf_counter() - started,
    )
    service.metrics.record_spans_ignored(outcome["ignored"])
    reasons = "; ".join(
        sorted({r["reason"] for r in outcome["results"] if r["status"] == "rejected"})
    )
    if encoding == "json":
        answer = json.loads(encode_response("json", outcome["rejected"], reasons[:2000]))
        answer["llmledger"] = {k: v for k, v in outcome.items() if k != "results"}
        answer["llmledger"]["rejected_reasons"] = [
            r["reason"] for r in outcome["results"] if r["status"] == "rejected"
        ][:100]
        return JSONResponse(answer)
    return Response(
        encode_response("protobuf", outcome["rejected"], reasons[:2000]),
        media_type="application/x-protobuf",
    )
