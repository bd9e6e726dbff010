"""Client-made ULIDs: sortable by time, unique without a round trip to the store."""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import time

from llmledger.core.errors import InvalidEventError

__all__ = ["derived_id", "fingerprint", "id_entropy", "id_time_ms", "new_id", "ulid_of"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_CROCKFORD)}
# Every 10-bit value as its two base32 digits: a ULID is 13 such pairs.
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]


_SHIFTS = tuple(range(120, -1, -10))
_TIME_SHIFTS = _SHIFTS[-5:]
# Each byte as one base32 digit (its low five bits): 256 is a multiple of 32, so
# sixteen random bytes make sixteen evenly drawn digits, the ULID's 80 random bits.
_DIGIT_OF_BYTE = bytes(ord(_CROCKFORD[b & 31]) for b in range(256))

# The random part comes from a generator of our own, seeded from os.urandom():
# os.urandom() is a system call that lets go of the GIL, so on a busy process every
# id would hand the interpreter to another thread. Ids need to be unique, not secret.
# A child process reseeds, or it would repeat its parent's ids.
_random = random.Random()
_getrandbits = _random.getrandbits
os.register_at_fork(after_in_child=_random.seed)
# The last millisecond and its encoding, as one value so threads never see halves.
_last: tuple[int, str] = (-1, "")


def new_id(now_ms: int | None = None) -> str:
    """A new ULID string: 48 bits of milliseconds, then 80 random bits.

    The time part is encoded once per millisecond and the random part by one
    byte translation, which is several times faster than generic ULID packages;
    ids are made on the caller's thread, so this matters.

    Example:
        >>> len(new_id())
        26
        >>> new_id(1751431368925)[:10]
        '01JZ4Q3M6X'
    """
    global _last
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    last_ms, prefix = _last
    if ms != last_ms:
        pairs = _PAIRS
        prefix = "".join([pairs[(ms >> shift) & 0x3FF] for shift in _TIME_SHIFTS])
        _last = (ms, prefix)
    # _random.randbytes(16), without its Python frame: the same bytes.
    return prefix + _getrandbits(128).to_bytes(16, "little").translate(_DIGIT_OF_BYTE).decode()


# Ids whose text is made later, off the caller's thread: this process's 48 random bits
# and a counter make the 80 random bits of each (a child process draws its own bits).
_process_bits = _random.getrandbits(48) << 32
_sequence = itertools.count()


def _new_process_bits() -> None:
    global _process_bits, _sequence
    _process_bits = _random.getrandbits(48) << 32
    _sequence = itertools.count()


os.register_at_fork(after_in_child=_new_process_bits)


def id_entropy() -> int:
    """The 80 random bits of an id to be written later by :func:`ulid_of`: unique in this
    process (a counter) and across processes (48 random bits drawn per process).

    An integer and a counter step: a fraction of :func:`new_id`'s cost, for the caller's
    thread, which keeps the id's parts and leaves the text to the background.

    Example:
        >>> id_entropy() != id_entropy()
        True
    """
    return _process_bits | (next(_sequence) & 0xFFFFFFFF)


def ulid_of(ms: int, entropy: int) -> str:
    """The ULID of a millisecond and 80 bits of entropy (:func:`id_entropy`).

    Example:
        >>> ulid_of(1751431368925, 0)
        '01JZ4Q3M6X0000000000000000'
    """
    value = (ms << 80) | (entropy & _ENTROPY_MASK)
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 0x3FF] for shift in _SHIFTS])


_ENTROPY_MASK = (1 << 80) - 1


def derived_id(ms: int, entropy: bytes) -> str:
    """A ULID of ``ms`` whose 80 random bits are ``entropy`` instead (10 bytes):
    the same inputs give the same id, so an event read twice from the same
    source (a span, a log row) is stored once.

    Example:
        >>> derived_id(0, bytes(10))
        '00000000000000000000000000'
    """
    if len(entropy) != 10:
        raise ValueError("a derived id needs exactly 10 bytes of entropy")
    return ulid_of(ms, int.from_bytes(entropy))


def id_time_ms(ulid: str) -> int:
    """The millisecond timestamp carried by a ULID.

    Raises:
        InvalidEventError: when the string is not a ULID.

    Example:
        >>> id_time_ms("01JZ4Q3M6X2V8K9T0B1C2D3E4F")
        1751431368925
    """
    if len(ulid) != 26:
        raise InvalidEventError(f"not a ULID: {ulid!r}")
    value = 0
    try:
        for char in ulid.upper():
            value = (value << 5) | _DECODE[char]
    except KeyError:
        raise InvalidEventError(f"not a ULID: {ulid!r}") from None
    return value >> 80


def fingerprint(api_key: str | None) -> str | None:
    """A short, stable hash naming which key paid; never the key itself.

    Example:
        >>> fingerprint("sk-test-123")
        'sha256:e0dbaa0c6455'
    """
    if not api_key:
        return None
    # Every captured call names its client's key: hash each key once (a process uses few).
    found = _fingerprints.get(api_key)
    if found is None:
        found = "sha256:" + hashlib.sha256(api_key.encode()).hexdigest()[:12]
        if len(_fingerprints) >= _FINGERPRINTS_KEPT:
            _fingerprints.clear()
        _fingerprints[api_key] = found
    return found


#: The fingerprints of the keys seen lately (cleared when it grows past its bound).
_fingerprints: dict[str, str] = {}
_FINGERPRINTS_KEPT = 256
