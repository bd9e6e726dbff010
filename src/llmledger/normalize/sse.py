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

import codecs
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, NamedTuple

from llmledger.core.errors import ResponseParseError

__all__ = ["SSEDecoder", "ServerSentEvent", "iter_sse", "transcript_events"]

_LINE_END = re.compile(r"\r\n|\r|\n")
_DONE = "[DONE]"


class ServerSentEvent(NamedTuple):
    """One dispatched server-sent event: its ``event:`` name (if any) and data."""

    event: str | None
    data: str


class SSEDecoder:
    """Incremental SSE decoder: feed chunks split anywhere, get whole events.

    Chunks may cut a line, a CRLF pair or (for bytes) a UTF-8 character in two;
    the result is the same as decoding the joined text at once.

    Example:
        >>> decoder = SSEDecoder()
        >>> decoder.feed(b'data: {"a"')
        []
        >>> decoder.feed(b": 1}\\r")
        []
        >>> decoder.feed(b"\\n\\r\\n")
        [ServerSentEvent(event=None, data='{"a": 1}')]
    """

    __slots__ = ("_buffer", "_data", "_event", "_utf8")

    def __init__(self) -> None:
        self._buffer = ""
        self._event: str | None = None
        self._data: list[str] = []
        self._utf8 = codecs.getincrementaldecoder("utf-8")()

    def _line(self, line: str, out: list[ServerSentEvent]) -> None:
        if not line:
            if self._data:
                out.append(ServerSentEvent(self._event, "\n".join(self._data)))
            self._event, self._data = None, []
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value

    def feed(self, chunk: str | bytes) -> list[ServerSentEvent]:
        """Take the next piece of the stream; return the events it completed."""
        if isinstance(chunk, (bytes, bytearray)):
            chunk = self._utf8.decode(bytes(chunk))
        text = self._buffer + chunk
        # A trailing CR may be the first half of CRLF: wait for the next chunk.
        hold = ""
        if text.endswith("\r"):
            text, hold = text[:-1], "\r"
        lines = _LINE_END.split(text)
        self._buffer = lines.pop() + hold
        out: list[ServerSentEvent] = []
        for line in lines:
            self._line(line, out)
        return out

    def close(self) -> list[ServerSentEvent]:
        """End of stream: return the last event even without its closing blank line.

        A live client would wait for the blank line; a saved transcript never
        gets it, and its last event is still whole.
        """
        out: list[ServerSentEvent] = []
        tail = self._buffer + self._utf8.decode(b"", final=True)
        self._buffer = ""
        for line in _LINE_END.split(tail):
            if line:
                self._line(line, out)
        self._line("", out)
        return out


def iter_sse(text: str) -> Iterator[ServerSentEvent]:
    """Yield the events of a whole SSE transcript in order.

    Example:
        >>> list(iter_sse("event: ping\\ndata: {}\\n\\n: keep-alive\\ndata: a\\ndata: b\\n\\n"))
        [ServerSentEvent(event='ping', data='{}'), ServerSentEvent(event=None, data='a\\nb')]
    """
    decoder = SSEDecoder()
    yield from decoder.feed(text)
    yield from decoder.close()


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
