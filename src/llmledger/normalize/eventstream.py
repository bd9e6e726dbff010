"""A decoder for the AWS event-stream binary framing (``application/vnd.amazon.eventstream``).

Bedrock's ConverseStream and InvokeModelWithResponseStream send their events in
this framing. Each message is::

    total length (u32) | headers length (u32) | prelude CRC32 (u32)
    headers ...        | payload ...          | message CRC32 (u32)

All integers are big-endian; the prelude CRC covers the first 8 bytes and the
message CRC everything before it. A header is a 1-byte name length, the name, a
1-byte value type and the value. Both CRCs are checked: a transcript that fails
one was cut or corrupted, and its numbers cannot be trusted.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Iterator
from typing import NamedTuple

from llmledger.core.errors import ResponseParseError

__all__ = ["EventStreamMessage", "iter_messages", "looks_like_event_stream"]

_PRELUDE = struct.Struct(">III")
_U32 = struct.Struct(">I")
_MIN_MESSAGE = _PRELUDE.size + 4  # prelude plus the trailing message CRC

HeaderValue = bool | int | bytes | str | uuid.UUID


class EventStreamMessage(NamedTuple):
    """One decoded message: its headers and raw payload bytes."""

    headers: dict[str, HeaderValue]
    payload: bytes


def looks_like_event_stream(data: bytes) -> bool:
    """True when ``data`` starts with a well-formed prelude (length sane, CRC matching).

    Example:
        >>> looks_like_event_stream(b'data: {"type": "ping"}\\n\\n')
        False
    """
    if len(data) < _MIN_MESSAGE:
        return False
    total, headers_length, prelude_crc = _PRELUDE.unpack_from(data, 0)
    return bool(
        zlib.crc32(data[:8]) == prelude_crc
        and total >= _MIN_MESSAGE
        and headers_length <= total - _MIN_MESSAGE
    )


def _headers(raw: bytes, at: int) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    pos = 0
    try:
        while pos < len(raw):
            name_length = raw[pos]
            name = raw[pos + 1 : pos + 1 + name_length].decode("utf-8")
            pos += 1 + name_length
            kind = raw[pos]
            pos += 1
            value: HeaderValue
            if kind in (0, 1):
                value = kind == 0
            elif kind == 2:
                value = struct.unpack_from(">b", raw, pos)[0]
                pos += 1
            elif kind == 3:
                value = struct.unpack_from(">h", raw, pos)[0]
                pos += 2
            elif kind == 4:
                value = struct.unpack_from(">i", raw, pos)[0]
                pos += 4
            elif kind in (5, 8):  # 8 is a timestamp in epoch milliseconds
                value = struct.unpack_from(">q", raw, pos)[0]
                pos += 8
            elif kind in (6, 7):
                (length,) = struct.unpack_from(">H", raw, pos)
                chunk = raw[pos + 2 : pos + 2 + length]
                if len(chunk) != length:
                    raise IndexError
                value = chunk.decode("utf-8") if kind == 7 else chunk
                pos += 2 + length
            elif kind == 9:
                chunk = raw[pos : pos + 16]
                if len(chunk) != 16:
                    raise IndexError
                value = uuid.UUID(bytes=chunk)
                pos += 16
            else:
                raise ResponseParseError(
                    f"event-stream message at byte {at}: unknown header value type {kind}"
                )
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError):
        raise ResponseParseError(
            f"event-stream message at byte {at}: headers are truncated or malformed"
        ) from None
    return headers


def iter_messages(data: bytes) -> Iterator[EventStreamMessage]:
    """Yield every message of a whole event-stream transcript, checking both CRCs.

    Raises:
        ResponseParseError: on a truncated message, a bad length or a CRC mismatch.

    Example:
        >>> list(iter_messages(b""))
        []
    """
    view = memoryview(data)
    pos = 0
    end = len(data)
    while pos < end:
        if end - pos < _MIN_MESSAGE:
            raise ResponseParseError(
                f"event-stream truncated: {end - pos} trailing bytes at byte {pos}"
            )
        total, headers_length, prelude_crc = _PRELUDE.unpack_from(view, pos)
        if zlib.crc32(view[pos : pos + 8]) != prelude_crc:
            raise ResponseParseError(f"event-stream prelude CRC mismatch at byte {pos}")
        if total < _MIN_MESSAGE or headers_length > total - _MIN_MESSAGE:
            raise ResponseParseError(
                f"event-stream message at byte {pos} has impossible lengths "
                f"(total {total}, headers {headers_length})"
            )
        if pos + total > end:
            raise ResponseParseError(
                f"event-stream truncated: message at byte {pos} needs {total} bytes, "
                f"{end - pos} left"
            )
        (message_crc,) = _U32.unpack_from(view, pos + total - 4)
        if zlib.crc32(view[pos : pos + total - 4]) != message_crc:
            raise ResponseParseError(f"event-stream message CRC mismatch at byte {pos}")
        headers_start = pos + _PRELUDE.size
        payload_start = headers_start + headers_length
        yield EventStreamMessage(
            _headers(bytes(view[headers_start:payload_start]), pos),
            bytes(view[payload_start : pos + total - 4]),
        )
        pos += total
