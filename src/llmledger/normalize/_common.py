"""Small helpers every provider reader shares: JSON loading, safe field access, counts.

Bodies are parsed with ``parse_float=Decimal`` so a gateway's reported cost
(``"cost": 0.00353025``) keeps the digits it was sent with; token counts are
integers on the wire and stay integers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from llmledger.core.billing import Fee
from llmledger.core.errors import ResponseParseError
from llmledger.normalize.base import Reading

__all__ = [
    "JSONDict",
    "StreamAccumulator",
    "count",
    "count_first",
    "fee_counts",
    "finish",
    "has_any",
    "load_json",
    "obj",
    "text",
    "to_decimal",
]

JSONDict = dict[str, Any]

_EMPTY: Mapping[str, Any] = {}


def load_json(body: object, *, what: str = "response body") -> JSONDict:
    """Turn a dict, or JSON text/bytes, into a dict; anything else is a parse error."""
    if isinstance(body, dict):
        return body
    if isinstance(body, (bytes, bytearray, memoryview)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ResponseParseError(f"{what} is not UTF-8 text: {exc}") from None
    if not isinstance(body, str):
        raise ResponseParseError(f"{what} must be a dict, str or bytes, got {type(body).__name__}")
    try:
        parsed = json.loads(body, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ResponseParseError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ResponseParseError(f"{what} must be a JSON object, got {type(parsed).__name__}")
    return parsed


def obj(container: Mapping[str, Any] | None, key: str) -> Mapping[str, Any]:
    """The mapping at ``key``, or an empty one when it is absent, null or not a mapping."""
    if container is None:
        return _EMPTY
    value = container.get(key)
    return value if isinstance(value, Mapping) else _EMPTY


def text(container: Mapping[str, Any] | None, key: str) -> str | None:
    """The string at ``key``, or None."""
    if container is None:
        return None
    value = container.get(key)
    return value if isinstance(value, str) else None


def _as_int(value: object, field: str) -> int:
    # bool is an int subclass; a true/false count is malformed, not 1/0.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, (Decimal, float)) and not isinstance(value, bool):
        try:
            if value == int(value):
                return int(value)
        except (ValueError, OverflowError, InvalidOperation):
            pass
    raise ResponseParseError(f"token count {field} is not an integer: {value!r}")


def count(container: Mapping[str, Any] | None, key: str, *, where: str = "usage") -> int:
    """The integer count at ``key``; absent or null counts are 0, non-numbers an error.

    Negative counts are returned as they are: invariant checks flag them later,
    nothing here clamps or "fixes" a provider's numbers.
    """
    if container is None:
        return 0
    value = container.get(key)
    if value is None:
        return 0
    return _as_int(value, f"{where}.{key}")


def count_first(container: Mapping[str, Any] | None, *keys: str, where: str = "usage") -> int:
    """The count of the first key present (for providers that renamed a field)."""
    if container is None:
        return 0
    for key in keys:
        if container.get(key) is not None:
            return count(container, key, where=where)
    return 0


def has_any(container: Mapping[str, Any] | None, *keys: str) -> bool:
    """True when any of ``keys`` is present with a non-null value."""
    return container is not None and any(container.get(k) is not None for k in keys)


def to_decimal(value: object, field: str) -> Decimal | None:
    """A reported money amount as Decimal, without passing through binary floating point.

    JSON parsed here already yields Decimal; a float (from a dict built by an SDK)
    goes through ``repr``, the shortest text that round-trips, so 0.00353025 stays
    exactly that.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            pass
    raise ResponseParseError(f"{field} is not a number: {value!r}")


def fee_counts(*, web_searches: int, output_image_tokens: int = 0) -> dict[Fee, int]:
    """The units of a reading priced apart from its buckets, zero counts left out.

    Example:
        >>> fee_counts(web_searches=2), fee_counts(web_searches=0)
        ({'web_searches': 2}, {})
        >>> fee_counts(web_searches=0, output_image_tokens=1120)
        {'output_image_tokens': 1120}
    """
    counts: dict[Fee, int] = {}
    if web_searches:
        counts["web_searches"] = web_searches
    if output_image_tokens:
        counts["output_image_tokens"] = output_image_tokens
    return counts


def finish(reading: Reading) -> Reading:
    """Record broken usage invariants as warnings (the numbers are kept as sent)."""
    for problem in reading.usage.problems():
        if problem not in reading.warnings:
            reading.warnings.append(problem)
    return reading


class StreamAccumulator(Protocol):
    """Folds parsed stream events, one at a time, into a final :class:`Reading`.

    ``feed`` runs once per streamed chunk (often on a background thread fed by a
    capture hook), so implementations keep it to a few dict look-ups and defer
    all arithmetic to ``result``.
    """

    def feed(self, event: Mapping[str, Any]) -> None:
        """Take one parsed event (a JSON object from the stream)."""

    def result(self) -> Reading:
        """The reading for everything fed so far."""
