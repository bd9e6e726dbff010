"""Usage normalisation: read any provider's response or stream into canonical token buckets.

Pure functions: no I/O, no clock, no globals. Every reader returns a
:class:`Reading` whose :class:`~llmledger.core.usage.Usage` follows DESIGN §3 (totals
include their parts) and whose ``usage_raw`` keeps the provider's usage object.

Example:
    >>> from llmledger.normalize import read_response
    >>> reading = read_response({"type": "message", "id": "msg_1", "model": "claude-x",
    ...                          "usage": {"input_tokens": 3, "cache_read_input_tokens": 1111,
    ...                                    "output_tokens": 406}})
    >>> reading.usage.input_tokens, reading.usage.cache_read_tokens
    (1114, 1111)
"""

from __future__ import annotations

from llmledger.normalize._tiers import TierField, read_tier
from llmledger.normalize.base import Reading
from llmledger.normalize.readers import (
    OPENAI_COMPATIBLE,
    OPERATIONS_BY_PROVIDER,
    PROVIDERS,
    detect_provider,
    read_response,
    read_stream,
    read_stream_events,
    read_usage,
)

__all__ = [
    "OPENAI_COMPATIBLE",
    "OPERATIONS_BY_PROVIDER",
    "PROVIDERS",
    "Reading",
    "TierField",
    "detect_provider",
    "read_response",
    "read_stream",
    "read_stream_events",
    "read_tier",
    "read_usage",
]
