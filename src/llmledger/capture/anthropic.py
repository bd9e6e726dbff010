"""Capture of the ``anthropic`` SDK: Messages (``create``, ``parse``, the ``.stream()``
helper, and the beta Messages), sync and async, on Anthropic and on Bedrock."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from llmledger.capture._core import Call, CaptureOptions
from llmledger.capture._patch import Patch
from llmledger.capture._stainless import (
    StainlessSDK,
    as_dict,
    field_of,
    optional,
    patches,
    raw_response_types,
    usage_as_dict,
)
from llmledger.capture._streams import StreamSpec

__all__ = ["available", "body_text", "make_patches"]


def _resolve(client: Any, call: Call) -> None:
    # Claude through Bedrock is billed by AWS; the body is Anthropic's either way.
    call.reader = "anthropic"
    if "Bedrock" in type(client).__name__:
        call.provider = "bedrock"


def _has_output(event: Mapping[str, Any]) -> bool:
    return event.get("type") == "content_block_delta"


def _keep(event: Any) -> bool:
    # What the reading takes past the first events: the start and the cumulative usage.
    return getattr(event, "type", None) in ("message_start", "message_delta")


def _event_fields(event: Any) -> Mapping[str, Any] | None:
    """What the stream reading and ``_has_output`` read of a stream event: the same
    values its JSON dump has, without dumping its content.

    The reading takes ``message_start``'s message (its id, model, stop reason and
    usage) and ``message_delta``'s usage and stop reason; of the other events only
    their type is read. An event without a type is left to the full dump.
    """
    kind = getattr(event, "type", None)
    if type(kind) is not str:
        return None
    if kind == "message_start":
        message = getattr(event, "message", None)
        if message is None or field_of(message, "error") is not None:
            return None
        return {
            "type": kind,
            "message": {
                "id": getattr(message, "id", None),
                "model": getattr(message, "model", None),
                "stop_reason": getattr(message, "stop_reason", None),
                "usage": usage_as_dict(getattr(message, "usage", None)),
            },
        }
    if kind == "message_delta":
        delta = getattr(event, "delta", None)
        if delta is None:
            return None
        return {
            "type": kind,
            "delta": {"stop_reason": getattr(delta, "stop_reason", None)},
            "usage": usage_as_dict(getattr(event, "usage", None)),
        }
    return {"type": kind}


def _stream_text(events: Sequence[Mapping[str, Any]]) -> str | None:
    parts = [
        str((event.get("delta") or {}).get("text") or "")
        for event in events
        if event.get("type") == "content_block_delta"
    ]
    return "".join(parts) or None


def body_text(operation: str, body: Mapping[str, Any]) -> str | None:
    """The text blocks of a Messages response.

    Example:
        >>> body_text("chat", {"content": [{"type": "text", "text": "Hello"}]})
        'Hello'
    """
    texts = [
        str(block.get("text") or "")
        for block in body.get("content") or ()
        if isinstance(block, Mapping) and block.get("type") == "text"
    ]
    return "".join(texts) or None


def _request_id(response: Any) -> str | None:
    value = response.headers.get("request-id")
    return value if isinstance(value, str) else None


def available() -> bool:
    """Whether the ``anthropic`` SDK can be imported."""
    try:
        importlib.import_module("anthropic")
    except ImportError:
        return False
    return True


def _message_body(message: type | None) -> Any:
    """What the reader reads of a ``Message``: the same values its JSON dump has.

    The reader needs ``id``, ``model``, ``stop_reason`` and ``usage``, not the content
    blocks; anything unusual (another class, an ``error`` field) is left to the full dump.
    """

    def read_body(operation: str, response: Any) -> Mapping[str, Any] | None:
        if (
            operation != "chat"
            or message is None
            or type(response) is not message
            or field_of(response, "error") is not None
        ):
            return None
        usage = getattr(response, "usage", None)
        return {
            "id": getattr(response, "id", None),
            "model": getattr(response, "model", None),
            "stop_reason": getattr(response, "stop_reason", None),
            "usage": usage_as_dict(usage),
        }

    return read_body


def make_patches(options: CaptureOptions) -> list[Patch]:
    """The patches that capture the ``anthropic`` SDK's calls, with these options."""
    base = importlib.import_module("anthropic._base_client")
    streaming = importlib.import_module("anthropic._streaming")
    # ``with_raw_response`` returns a ``LegacyAPIResponse`` in the 0.x releases.
    raw_types = raw_response_types("anthropic")
    sdk = StainlessSDK(
        provider="anthropic",
        routes={"/v1/messages": "chat", "/v1/messages?beta=true": "chat"},
        streams={
            "chat": StreamSpec(
                as_dict, _has_output, _stream_text, _request_id, _keep, _event_fields
            )
        },
        body_text=body_text,
        request_id_header="request-id",
        resolve=_resolve,
        hide_usage_chunk=None,
        sync_client=base.SyncAPIClient,
        async_client=base.AsyncAPIClient,
        stream_types=(streaming.Stream, streaming.AsyncStream),
        raw_types=raw_types,
        # The ``.stream()`` helpers close their raw stream, so hooking its close() is enough.
        stream_classes=(
            (streaming.Stream, lambda stream: stream),
            (streaming.AsyncStream, lambda stream: stream),
        ),
        read_body=_message_body(optional("anthropic.types", "Message")),
    )
    return patches(sdk, options)
