"""The error a malformed report request raises (shared with the store's reads)."""

from __future__ import annotations

from llmledger.core.errors import InvalidQueryError

__all__ = ["InvalidQueryError"]
