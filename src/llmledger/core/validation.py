"""The checks every entry point applies alike: :func:`llmledger.record`, ``llmledger record``
and the service's ingest.

An event's start time must carry an offset, be after 2000 and not lie in the
future beyond a small clock skew; a feature must be one of the declared ones
when features are declared.  The receiver's clock comes in as an argument.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from llmledger.core.errors import InvalidEventError, UnknownFeatureError

__all__ = ["EARLIEST", "MAX_CLOCK_SKEW", "check_feature", "check_time", "event_time"]

#: How far in the future an event's start time may be (client clocks drift).
MAX_CLOCK_SKEW = timedelta(minutes=5)
#: The earliest start time an event may have.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


def check_time(moment: datetime, now: datetime, name: str = "ts") -> datetime:
    """The start time in UTC, once it is known to be aware, after 2000 and not in the future.

    Args:
        moment: The event's start time.
        now: The receiver's clock (aware).
        name: The field's name in error messages.

    Raises:
        InvalidEventError: on a naive time, one before 2000, or one more than
            ``MAX_CLOCK_SKEW`` after ``now``.

    Example:
        >>> now = datetime(2025, 6, 1, tzinfo=UTC)
        >>> from datetime import timezone
        >>> brasilia = timezone(timedelta(hours=-3))
        >>> check_time(datetime(2025, 5, 31, 21, tzinfo=brasilia), now).isoformat()
        '2025-06-01T00:00:00+00:00'
        >>> check_time(datetime(2035, 1, 1, tzinfo=UTC), now)
        Traceback (most recent call last):
        ...
        llmledger.core.errors.InvalidEventError: ts: 2035-01-01T00:00:00+00:00 is in the future
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidEventError(
            f"{name}: needs a UTC offset such as Z or +00:00 (no time zone in {moment.isoformat()})"
        )
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # year 1 with an offset east of UTC, year 9999 west of it
        raise InvalidEventError(f"{name}: {moment.isoformat()} is out of range") from None
    if moment < EARLIEST:
        raise InvalidEventError(f"{name}: {moment.isoformat()} is before 2000")
    if moment > now + MAX_CLOCK_SKEW:
        raise InvalidEventError(f"{name}: {moment.isoformat()} is in the future")
    return moment


def event_time(value: Any, now: datetime, name: str = "ts") -> datetime:
    """A start time given as a datetime or ISO 8601 text, checked by :func:`check_time`.

    Raises:
        InvalidEventError: when the value is not a time, or fails :func:`check_time`.

    Example:
        >>> event_time("2025-01-01T09:30:00+01:00", datetime(2025, 6, 1, tzinfo=UTC))
        datetime.datetime(2025, 1, 1, 8, 30, tzinfo=datetime.timezone.utc)
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidEventError(f"{name}: not an ISO 8601 time: {value!r}") from None
    if not isinstance(value, datetime):
        raise InvalidEventError(f"{name}: must be a datetime or ISO 8601 text, got {value!r}")
    return check_time(value, now, name)


def check_feature(feature: str | None, declared: Collection[str]) -> None:
    """Refuse a feature that is not declared, when features are declared.

    Args:
        feature: The event's feature (None: no feature, always allowed).
        declared: The declared feature names (the ``features`` setting); empty
            means any feature is allowed.

    Raises:
        UnknownFeatureError: naming the feature and the declared ones.

    Example:
        >>> check_feature("chat", {"chat"})
        >>> check_feature("colour", {"chat"})
        Traceback (most recent call last):
        ...
        llmledger.core.errors.UnknownFeatureError: unknown feature 'colour'; declared features: chat
    """
    if feature is not None and declared and feature not in declared:
        raise UnknownFeatureError(
            f"unknown feature {feature!r}; declared features: {', '.join(sorted(declared))}"
        )
