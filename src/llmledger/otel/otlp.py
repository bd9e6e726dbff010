"""OTLP/HTTP trace requests decoded into :class:`~llmledger.otel.reading.SpanRecord`.

An ``ExportTraceServiceRequest`` arrives as protobuf (``application/x-protobuf``)
or as OTLP's JSON encoding (``application/json``), which differs from protobuf's
canonical JSON in one way that matters: trace and span ids are hex, not base64.
Both are read with the message classes of ``opentelemetry-proto``, so a payload
the OTel SDK or Collector sends is read exactly as they wrote it.  Pure: bytes
in, records out.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from llmledger.core.errors import LedgerError, MissingDependencyError
from llmledger.otel.reading import SpanRecord

if TYPE_CHECKING:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = ["Encoding", "OtlpError", "decode_request", "encode_response", "spans_of"]

Encoding = Literal["protobuf", "json"]

#: Deepest nesting of arrays and maps read from an attribute value.
MAX_DEPTH = 8


class OtlpError(LedgerError, ValueError):
    """The body is not an OTLP trace request."""


def _request_class() -> type[ExportTraceServiceRequest]:
    try:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )
    except ImportError:  # pragma: no cover - the server extra installs it
        raise MissingDependencyError(
            "OTLP ingest needs opentelemetry-proto: pip install 'llmledger[server]'"
        ) from None
    return ExportTraceServiceRequest


def _hex_ids_to_base64(value: Any, depth: int = 0) -> Any:
    """OTLP JSON's hex ids as the base64 protobuf's JSON reader expects."""
    if depth > 64:
        raise OtlpError("the JSON body is nested too deeply")
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in ("traceId", "spanId", "parentSpanId", "trace_id", "span_id") and isinstance(
                item, str
            ):
                try:
                    out[key] = base64.b64encode(bytes.fromhex(item)).decode()
                except ValueError:
                    raise OtlpError(f"{key} {item[:40]!r} is not hex") from None
            else:
                out[key] = _hex_ids_to_base64(item, depth + 1)
        return out
    if isinstance(value, list):
        return [_hex_ids_to_base64(item, depth + 1) for item in value]
    return value


def decode_request(body: bytes, encoding: Encoding) -> ExportTraceServiceRequest:
    """The request a body holds.

    Raises:
        OtlpError: when the body is not a trace request in that encoding.
    """
    request_class = _request_class()
    request = request_class()
    if encoding == "protobuf":
        from google.protobuf.message import DecodeError

        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise OtlpError(f"the body is not an OTLP protobuf trace request: {exc}") from None
        return request
    from google.protobuf.json_format import ParseDict, ParseError

    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise OtlpError(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise OtlpError("the body is not an OTLP JSON trace request (an object)")
    try:
        ParseDict(_hex_ids_to_base64(data), request, ignore_unknown_fields=True)
    except (ParseError, ValueError, TypeError) as exc:
        raise OtlpError(f"the body is not an OTLP JSON trace request: {exc}") from None
    return request


def _value(value: AnyValue, depth: int = 0) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        if depth >= MAX_DEPTH:
            return None
        return [_value(item, depth + 1) for item in value.array_value.values]
    if kind == "kvlist_value":
        if depth >= MAX_DEPTH:
            return None
        return {kv.key: _value(kv.value, depth + 1) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for pair in pairs:
        kv: KeyValue = pair
        found[kv.key] = _value(kv.value)
    return found


def spans_of(request: ExportTraceServiceRequest) -> Iterator[SpanRecord]:
    """Every span of a request, with its resource's attributes.

    Raises:
        OtlpError: on a span whose trace or span id has the wrong length.
    """
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    raise OtlpError(
                        f"span {span.name[:80]!r}: a trace id has 16 bytes and a span id 8 "
                        f"(got {len(span.trace_id)} and {len(span.span_id)})"
                    )
                yield SpanRecord(
                    trace_id=binascii.hexlify(span.trace_id).decode(),
                    span_id=binascii.hexlify(span.span_id).decode(),
                    name=span.name,
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano,
                    attributes=_attributes(span.attributes),
                    resource=resource,
                    status_code=span.status.code,
                    status_message=span.status.message,
                    scope=scope,
                )


def encode_response(encoding: Encoding, rejected: int, message: str) -> bytes:
    """An ``ExportTraceServiceResponse``, with ``partial_success`` when spans were refused."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    if encoding == "protobuf":
        serialized: bytes = response.SerializeToString()
        return serialized
    from google.protobuf.json_format import MessageToDict

    return json.dumps(MessageToDict(response)).encode()
