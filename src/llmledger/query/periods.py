"""Time in reports: spans, calendar periods, and bucket boundaries in a time zone.

Every function here is pure; "now" is an argument.  Times in the ledger are
integer microseconds since the epoch (UTC); buckets are computed in the
report's zone with :mod:`zoneinfo`, so a day in ``Europe/Lisbon`` is 23 or 25
hours long across a daylight-saving change, as it should be.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache

from llmledger.query.errors import InvalidQueryError

__all__ = [
    "DAY_US",
    "EARLIEST",
    "HOUR_US",
    "LATEST",
    "bucket_start_us",
    "from_us",
    "month_bounds",
    "parse_last",
    "parse_period",
    "parse_time_in_zone",
    "slot_size_us",
    "to_us",
    "utc_days",
]

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The range a report's times must fall in: the ledger holds nothing outside
#: it, and a wall-clock time in any zone inside it is a valid date.
EARLIEST = _EPOCH
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
_LAST = re.compile(r"^(\d+)\s*(m|min|h|d|w)$")
_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_YEAR = re.compile(r"^(\d{4})$")


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime.

    Example:
        >>> to_us(datetime(1970, 1, 1, 1, tzinfo=UTC))
        3600000000
    """
    return (moment - _EPOCH) // timedelta(microseconds=1)


def from_us(micros: int, zone: tzinfo = UTC) -> datetime:
    """The aware datetime, in ``zone``, of microseconds since the epoch.

    Example:
        >>> from_us(3_600_000_000).isoformat()
        '1970-01-01T01:00:00+00:00'
    """
    return (_EPOCH + timedelta(microseconds=micros)).astimezone(zone)


def parse_last(text: str) -> timedelta:
    """A span such as ``30m``, ``12h``, ``7d`` or ``2w``.

    Raises:
        InvalidQueryError: on any other text.

    Example:
        >>> parse_last("7d")
        datetime.timedelta(days=7)
    """
    match = _LAST.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise InvalidQueryError(f"--last takes a span like 30m, 12h, 7d or 2w, got {text!r}")
    try:
        return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    except OverflowError:
        raise InvalidQueryError(f"--last {text!r} is longer than any ledger") from None


def parse_time_in_zone(text: str | None, zone: tzinfo, name: str = "time") -> datetime | None:
    """An ISO 8601 time or date; without an offset it is a wall-clock time in ``zone``.

    Raises:
        InvalidQueryError: when the text is not a time.

    Example:
        >>> from zoneinfo import ZoneInfo
        >>> parse_time_in_zone("2025-07-01", ZoneInfo("Europe/Lisbon")).isoformat()
        '2025-07-01T00:00:00+01:00'
    """
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidQueryError(f"{name} is not an ISO 8601 time or date: {text!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)


def _local_midnight(day: date, zone: tzinfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def _month_start(year: int, month: int) -> date:
    year += (month - 1) // 12
    return date(year, (month - 1) % 12 + 1, 1)


def parse_period(text: str, now: datetime, zone: tzinfo) -> tuple[datetime, datetime]:
    """A calendar period in ``zone`` as ``(start, end)``, end exclusive.

    Accepts ``today``, ``yesterday``, ``this-week``, ``last-week``, ``this-month``,
    ``last-month``, ``this-year``, ``last-year``, ``YYYY``, ``YYYY-MM``,
    ``YYYY-MM-DD`` and ``YYYY-Www`` (ISO weeks start on Monday).

    Raises:
        InvalidQueryError: on any other text.

    Example:
        >>> from zoneinfo import ZoneInfo
        >>> s, e = parse_period("2025-03", datetime(2025, 5, 1, tzinfo=UTC),
        ...                     ZoneInfo("America/New_York"))
        >>> s.isoformat(), e.isoformat()
        ('2025-03-01T00:00:00-05:00', '2025-04-01T00:00:00-04:00')
    """
    try:
        return _period(text, now, zone)
    except InvalidQueryError:
        raise
    except (ValueError, OverflowError):
        raise InvalidQueryError(f"no such period: {text!r}") from None


def _period(text: str, now: datetime, zone: tzinfo) -> tuple[datetime, datetime]:
    today = now.astimezone(zone).date()
    name = text.strip().lower()
    first: date
    after: date
    if name in ("today", "yesterday"):
        first = today - timedelta(days=0 if name == "today" else 1)
        after = first + timedelta(days=1)
    elif name in ("this-week", "last-week"):
        first = today - timedelta(days=today.weekday() + (7 if name == "last-week" else 0))
        after = first + timedelta(days=7)
    elif name in ("this-month", "last-month"):
        shift = 0 if name == "this-month" else -1
        first = _month_start(today.year, today.month + shift)
        after = _month_start(first.year, first.month + 1)
    elif name in ("this-year", "last-year"):
        first = date(today.year - (name == "last-year"), 1, 1)
        after = date(first.year + 1, 1, 1)
    elif match := _WEEK.match(text.strip()):
        try:
            first = date.fromisocalendar(int(match.group(1)), int(match.group(2)), 1)
        except ValueError:
            raise InvalidQueryError(f"no such ISO week: {text!r}") from None
        after = first + timedelta(days=7)
    elif match := _MONTH.match(name):
        if not 1 <= int(match.group(2)) <= 12:
            raise InvalidQueryError(f"no such month: {text!r}")
        first = date(int(match.group(1)), int(match.group(2)), 1)
        after = _month_start(first.year, first.month + 1)
    elif match := _YEAR.match(name):
        first = date(int(match.group(1)), 1, 1)
        after = date(first.year + 1, 1, 1)
    else:
        try:
            first = date.fromisoformat(name)
        except ValueError:
            raise InvalidQueryError(
                f"unknown period {text!r}: use today, yesterday, this-week, last-week, "
                "this-month, last-month, this-year, last-year, YYYY, YYYY-MM, YYYY-MM-DD "
                "or YYYY-Www"
            ) from None
        after = first + timedelta(days=1)
    return _local_midnight(first, zone), _local_midnight(after, zone)


def month_bounds(moment: datetime, zone: tzinfo) -> tuple[datetime, datetime]:
    """The calendar month in ``zone`` that contains ``moment``.

    Example:
        >>> s, e = month_bounds(datetime(2025, 2, 10, tzinfo=UTC), UTC)
        >>> s.day, e.month
        (1, 3)
    """
    local = moment.astimezone(zone).date()
    first = date(local.year, local.month, 1)
    after = _month_start(local.year, local.month + 1)
    return _local_midnight(first, zone), _local_midnight(after, zone)


def _offset_seconds(zone: tzinfo, micros: int) -> int:
    offset = from_us(micros, zone).utcoffset()
    return 0 if offset is None else int(offset.total_seconds())


def slot_size_us(zone: tzinfo, start_us: int, end_us: int) -> int:
    """The coarsest slot, at most an hour, whose UTC boundaries are wall-clock boundaries.

    Local hours, days, weeks and months are unions of whole slots of this size.
    It is an hour when every offset of ``zone`` in ``[start_us, end_us)`` is a
    whole number of hours and every change of offset falls on a UTC hour (most
    zones); for ``Asia/Kolkata`` (UTC+5:30) it is half an hour.  Hourly rollups
    can serve a report exactly only when this is an hour.

    Example:
        >>> from zoneinfo import ZoneInfo
        >>> year = (to_us(datetime(2025, 1, 1, tzinfo=UTC)),
        ...         to_us(datetime(2026, 1, 1, tzinfo=UTC)))
        >>> slot_size_us(ZoneInfo("Europe/Berlin"), *year) // 60_000_000
        60
        >>> slot_size_us(ZoneInfo("Asia/Kolkata"), *year) // 60_000_000
        30
    """
    if zone is UTC or getattr(zone, "key", None) in ("UTC", "Etc/UTC"):
        return HOUR_US
    step = max(DAY_US, (end_us - start_us) // 4096)
    return _slot_size(zone, start_us - start_us % DAY_US, end_us + DAY_US, step)


@lru_cache(maxsize=256)
def _slot_size(zone: tzinfo, start_us: int, end_us: int, step: int) -> int:
    seconds = 3600
    previous = _offset_seconds(zone, start_us)
    seconds = math.gcd(seconds, previous)
    cursor = start_us
    while cursor < end_us:
        following = min(cursor + step, end_us)
        offset = _offset_seconds(zone, following)
        if offset != previous:
            # Find the exact second of the change; it must also be a slot boundary.
            low, high = cursor // 1_000_000, following // 1_000_000
            while high - low > 1:
                middle = (low + high) // 2
                if _offset_seconds(zone, middle * 1_000_000) == previous:
                    low = middle
                else:
                    high = middle
            seconds = math.gcd(seconds, math.gcd(offset, high % 3600))
            previous = offset
        cursor = following
    return max(seconds, 1) * 1_000_000


def utc_days(zone: tzinfo, start_us: int, end_us: int) -> bool:
    """Whether the days of ``zone`` are UTC days throughout ``[start_us, end_us)``.

    True for UTC, and for zones at UTC+0 all along the range (London in winter):
    their days, weeks and months are then unions of whole UTC days, which the
    daily rollups can serve.

    Example:
        >>> from zoneinfo import ZoneInfo
        >>> jan = (to_us(datetime(2025, 1, 1, tzinfo=UTC)), to_us(datetime(2025, 2, 1, tzinfo=UTC)))
        >>> utc_days(UTC, *jan), utc_days(ZoneInfo("Europe/London"), *jan)
        (True, True)
        >>> utc_days(ZoneInfo("Europe/London"), jan[0], to_us(datetime(2025, 6, 1, tzinfo=UTC)))
        False
    """
    if zone is UTC or getattr(zone, "key", None) in ("UTC", "Etc/UTC"):
        return True
    step = max(DAY_US, (end_us - start_us) // 4096)
    return _zero_offset(zone, start_us - start_us % DAY_US, end_us + DAY_US, step)


@lru_cache(maxsize=256)
def _zero_offset(zone: tzinfo, start_us: int, end_us: int, step: int) -> bool:
    cursor = start_us
    while cursor < end_us:
        if _offset_seconds(zone, cursor):
            return False
        cursor += step
    return not _offset_seconds(zone, end_us)


def bucket_start_us(slot_us: int, every: str, zone: tzinfo) -> int:
    """The start (µs since the epoch) of the ``every`` bucket in ``zone`` that holds ``slot_us``.

    Weeks start on Monday.

    Example:
        >>> from zoneinfo import ZoneInfo
        >>> t = to_us(datetime(2025, 3, 30, 23, 30, tzinfo=UTC))
        >>> from_us(bucket_start_us(t, "day", ZoneInfo("Europe/Lisbon"))).isoformat()
        '2025-03-30T23:00:00+00:00'
    """
    local = from_us(slot_us, zone)
    if every == "hour":
        return to_us(local.replace(minute=0, second=0, microsecond=0))
    day = local.date()
    if every == "week":
        day -= timedelta(days=day.weekday())
    elif every == "month":
        day = day.replace(day=1)
    elif every != "day":
        raise InvalidQueryError(f"unknown time bucket {every!r}")
    # A midnight skipped by a change of offset resolves (PEP 495, fold=0) to the
    # instant of the change: the first instant of that date.
    return to_us(_local_midnight(day, zone))
