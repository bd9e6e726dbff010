"""Canonical token buckets and the invariants every usage must satisfy.

Totals include their parts (the OpenTelemetry GenAI convention): ``input_tokens``
counts every billed input token, cached or not, and ``cache_read_tokens`` is the
part of it served from cache.  Provider readers translate into these buckets;
nothing downstream needs to know how a provider counts.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = ["BUCKETS", "INPUT_PARTS", "OUTPUT_PARTS", "Usage"]

#: Buckets that are parts of ``input_tokens``.
INPUT_PARTS: tuple[str, ...] = (
    "cache_read_tokens",
    "cache_write_tokens",
    "input_audio_tokens",
    "input_image_tokens",
    "tool_use_prompt_tokens",
)

#: Buckets that are parts of ``output_tokens``.
OUTPUT_PARTS: tuple[str, ...] = ("reasoning_tokens", "output_audio_tokens")


# Not ``slots=True``: the counts live in the instance's ``__dict__``, so that
# :meth:`Usage.from_counts` makes one in a single step (a slotted frozen dataclass
# sets its eleven fields one call at a time, half of what record() spent building an
# event); buckets a usage leaves out read the class's default, 0.
@dataclass(frozen=True)
class Usage:
    """Token counts of one call in llmledger's canonical buckets.

    Example:
        >>> u = Usage(input_tokens=4020, cache_read_tokens=4012, output_tokens=12)
        >>> u.total_tokens
        4032
        >>> u.problems()
        []
    """

    # The buckets, in display order; BUCKETS is read from these fields.
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    input_audio_tokens: int = 0
    input_image_tokens: int = 0
    reasoning_tokens: int = 0
    output_audio_tokens: int = 0
    tool_use_prompt_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens (parts are already inside the totals)."""
        return self.input_tokens + self.output_tokens

    @property
    def uncached_input_tokens(self) -> int:
        """Input tokens billed at the plain input price."""
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens

    def problems(self) -> list[str]:
        """Every broken invariant, as readable sentences (empty when the usage is sound).

        A usage that breaks them is stored with a warning, never silently fixed.
        """
        counts = self.__dict__
        if _TOTALS.issuperset(counts):
            # Only totals counted (made by from_counts; the parts read the class's 0):
            # sound when both are non-negative integers.
            ins = counts.get("input_tokens", 0)
            outs = counts.get("output_tokens", 0)
            if type(ins) is int and type(outs) is int and ins >= 0 and outs >= 0:
                return []
        u = self
        ins, outs, cache_write = u.input_tokens, u.output_tokens, u.cache_write_tokens
        # The common case, a sound usage, in one expression: this runs for every
        # event, on the caller's thread for record().
        if (
            type(ins) is int
            and type(outs) is int
            and type(u.cache_read_tokens) is int
            and type(cache_write) is int
            and type(u.cache_write_5m_tokens) is int
            and type(u.cache_write_1h_tokens) is int
            and type(u.input_audio_tokens) is int
            and type(u.input_image_tokens) is int
            and type(u.reasoning_tokens) is int
            and type(u.output_audio_tokens) is int
            and type(u.tool_use_prompt_tokens) is int
            and u.cache_read_tokens + cache_write <= ins
            and u.input_audio_tokens <= ins
            and u.input_image_tokens <= ins
            and u.tool_use_prompt_tokens <= ins
            and u.reasoning_tokens <= outs
            and u.output_audio_tokens <= outs
            and u.cache_write_5m_tokens + u.cache_write_1h_tokens <= cache_write
            and min(
                u.cache_read_tokens,
                u.cache_write_5m_tokens,
                u.cache_write_1h_tokens,
                u.input_audio_tokens,
                u.input_image_tokens,
                u.tool_use_prompt_tokens,
                u.reasoning_tokens,
                u.output_audio_tokens,
                outs,
            )
            >= 0
        ):
            return []
        found: list[str] = []
        for name in BUCKETS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                found.append(f"{name} must be an integer, got {value!r}")
            elif value < 0:
                found.append(f"{name} is negative ({value})")
        if found:
            return found
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            found.append(
                f"cache_read_tokens + cache_write_tokens ({self.cache_read_tokens} + "
                f"{self.cache_write_tokens}) exceed input_tokens ({self.input_tokens})"
            )
        for part in INPUT_PARTS:
            if getattr(self, part) > self.input_tokens:
                found.append(
                    f"{part} ({getattr(self, part)}) exceeds input_tokens ({self.input_tokens})"
                )
        for part in OUTPUT_PARTS:
            if getattr(self, part) > self.output_tokens:
                found.append(
                    f"{part} ({getattr(self, part)}) exceeds output_tokens ({self.output_tokens})"
                )
        split = self.cache_write_5m_tokens + self.cache_write_1h_tokens
        if split > self.cache_write_tokens:
            found.append(
                f"cache_write_5m_tokens + cache_write_1h_tokens ({split}) exceed "
                f"cache_write_tokens ({self.cache_write_tokens})"
            )
        return found

    @classmethod
    def from_counts(cls, counts: dict[str, Any]) -> Usage:
        """A usage made in one step from a dict of bucket names (not checked) and counts.

        The dict becomes the usage's own state (do not change it afterwards);
        buckets it leaves out are 0. Nothing is checked: :meth:`problems` says
        whether the counts are sound.

        Example:
            >>> Usage.from_counts({"input_tokens": 10, "output_tokens": 2}) == Usage(10, 2)
            True
        """
        usage = _new_object(cls)
        _set_attribute(usage, "__dict__", counts)
        return usage

    def as_dict(self) -> dict[str, int]:
        """The buckets as a plain dict, in display order."""
        return {name: getattr(self, name) for name in BUCKETS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Usage:
        """Build from a mapping of bucket names; unknown keys are an error.

        Raises:
            InvalidUsageError: on an unknown bucket name.
        """
        from llmledger.core.errors import InvalidUsageError

        unknown = set(data) - set(BUCKETS)
        if unknown:
            raise InvalidUsageError(f"unknown usage bucket(s): {', '.join(sorted(unknown))}")
        return cls(**data)

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def is_empty(self) -> bool:
        """True when every bucket is zero."""
        return not any(getattr(self, name) for name in BUCKETS)


_new_object = object.__new__
_set_attribute = object.__setattr__
_TOTALS = frozenset({"input_tokens", "output_tokens"})

#: Every bucket name, in display order: the fields of :class:`Usage`, defined there once.
BUCKETS: tuple[str, ...] = tuple(f.name for f in fields(Usage))
