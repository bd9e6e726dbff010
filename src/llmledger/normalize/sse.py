"""Turn a saved stream transcript into the JSON events it carries.

Three text framings are met in practice: server-sent events (``data:`` lines,
OpenAI, Anthropic, Gemini ``alt=sse``, Mistral, Cohere v2), newline-delimited
JSON (curl transcripts, Cohere v1) and one JSON array (Gemini
``streamGenerateContent`` without ``alt=sse``). The SSE parser follows the
WHATWG event-stream rules that matter here: ``data`` lines of one event are
joined with ``\\n``, a blank line dispatches, ``:`` starts a comment, one space
after the colon is dropped, and any of CRLF, LF or CR ends a line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, NamedTuple

from llmledger.errors import ResponseParseError

__all__ = ["ServerSentEvent", "iter_sse", "transcript_events"]

_LINE_END = re.compile(r"\r\n|\r|\n")
_DONE = "[DONE]"


class ServerSentEvent(NamedTuple):
    """One dispatched server-sent event: its ``event:`` name (if any) and data."""

    event: str | None
    data: str


def iter_sse(text: str) -> Iterator[ServerSentEvent]:
    """Yield the events of an SSE transcript in order.

    Example:
        >>> list(iter_sse("event: ping\\ndata: {}\\n\\n: keep-alive\\ndata: a\\ndata: b\\n\\n"))
        [ServerSentEvent(event='ping', data='{}'), ServerSentEvent(event=None, data='a\\nb')]
    """
    event: str | None = None
    data: list[str] = []
    for line in _LINE_END.split(text):
        if not line:
            if data:
                yield ServerSentEvent(event, "\n".join(data))
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    # A transcript saved without its final blank line still ends with a whole
    # event; a live client would wait for more, a saved one never gets it.
    if data:
        yield ServerSentEvent(event, "\n".join(data))


def _looks_like_sse(text: str) -> bool:
    for line in _LINE_END.split(text, maxsplit=64):
        if line.startswith(("data:", "event:", ":")):
            return True
        if line.strip():
            return False
    return False


def _parse(data: str, index: int) -> dict[str, Any]:
    try:
        value = json.loads(data, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ResponseParseError(f"stream event {index} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ResponseParseError(
            f"stream event {index} must be a JSON object, got {type(value).__name__}"
        )
    return value


def transcript_events(text: str) -> list[dict[str, Any]]:
    """Every JSON event of a stream transcript, in order (``[DONE]`` and pings' framing dropped).

    Raises:
        ResponseParseError: when an event's data is not a JSON object.

    Example:
        >>> transcript_events('data: {"a": 1}\\n\\ndata: [DONE]\\n\\n')
        [{'a': 1}]
    """
    text = text.removeprefix("\ufeff")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            array = json.loads(stripped, parse_float=Decimal)
        except json.JSONDecodeError as exc:
            raise ResponseParseError(
                f"stream transcript is not a valid JSON array: {exc}"
            ) from None
        if not isinstance(array, list):  # pragma: no cover - "[" always parses to a list
            raise ResponseParseError("stream transcript is not a JSON array")
        events = []
        for index, item in enumerate(array):
            if not isinstance(item, dict):
                raise ResponseParseError(
                    f"stream event {index} must be a JSON object, got {type(item).__name__}"
                )
            events.append(item)
        return events
    if _looks_like_sse(text):
        return [
            _parse(sse.data, index)
            for index, sse in enumerate(iter_sse(text))
            if sse.data.strip() != _DONE
        ]
    return [
        _parse(line, index)
        for index, line in enumerate(_LINE_END.split(text))
        if line.strip() and line.strip() != _DONE
    ]
