"""API keys of the service: bearer tokens with a visible prefix, stored hashed.

A key looks like ``llk_0ABCDEFGH1JK_<secret>``: ``llk_`` and the key's id are
the visible prefix (shown in listings and logs), the secret is 256 random bits.
Only the SHA-256 of the whole token is stored (by the store,
:mod:`llmledger.store.keys`); a presented token is looked up
by its id and its hash compared in constant time.  The token is shown once, when
the key is created.

A :class:`KeyStore` remembers the keys it verified, by the hash of their token,
for a few seconds (``cache_seconds``), so a client sending many requests with
one key does not cost a database query each.  Revoking through the same store
takes effect at once; another store over the same database (another service
instance, the ``llmledger keys`` command) sees the revoke within ``cache_seconds``.

Roles:

- ``admin``: everything, across tenants.
- ``reader``: reads, within its tenant; with ``user`` set, only that user's calls.
- ``ingest``: writes events only; every event is put in the key's tenant.

Example:
    >>> from datetime import UTC, datetime, timedelta
    >>> from llmledger.store import open_store
    >>> keys = KeyStore(open_store("sqlite://"))
    >>> new = keys.create("reader", tenant="acme", now=datetime(2025, 1, 1, tzinfo=UTC))
    >>> new.secret.startswith(new.key.prefix + "_"), keys.verify(new.secret) == new.key
    (True, True)
    >>> keys.verify(new.secret + "x") is None
    True
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, get_args

from llmledger.core.errors import ConfigError, LedgerError
from llmledger.store.keys import TOKEN_PREFIX, ApiKey
from llmledger.store.protocol import Store

__all__ = [
    "CACHE_SECONDS",
    "CACHE_SIZE",
    "ROLES",
    "TOKEN_PREFIX",
    "ApiKey",
    "KeyStore",
    "NewKey",
    "Role",
    "UnknownKeyError",
    "check_scope",
    "hash_token",
]

Role = Literal["admin", "reader", "ingest"]
ROLES: tuple[str, ...] = get_args(Role)
_ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ID_LENGTH = 12

#: Seconds a verified key is trusted without asking the database again, by default.
CACHE_SECONDS = 5.0
#: Verified keys a :class:`KeyStore` remembers at most, by default.
CACHE_SIZE = 1024


class UnknownKeyError(LedgerError, LookupError):
    """No API key has this id."""


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just created, with the token to hand to its holder (shown only once)."""

    key: ApiKey
    secret: str


def hash_token(token: str) -> str:
    """The stored form of a token: its SHA-256 in hex.

    The secret has 256 random bits, so a fast hash is enough: there is nothing
    to guess.

    Example:
        >>> len(hash_token("llk_X_secret"))
        64
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# Compared against when the id is unknown, so a miss costs what a hit does.
_NO_KEY_HASH = hash_token("llk_none")


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ConfigError(f"times must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC)


def check_scope(role: str, tenant: str | None, user: str | None) -> None:
    """Refuse a role and scope that do not go together.

    Raises:
        ConfigError: on an unknown role, an admin key with a tenant, a reader or
            ingest key without one, or a user on a key that is not a reader.

    Example:
        >>> check_scope("reader", "acme", "ana")
    """
    if role not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if role == "admin" and (tenant is not None or user is not None):
        raise ConfigError("an admin key sees every tenant: give no --tenant or --user")
    if role != "admin" and not tenant:
        raise ConfigError(f"a {role} key needs a --tenant: keys never see other tenants' data")
    if user is not None and role != "reader":
        raise ConfigError("only reader keys can be limited to one --user")


class _VerifiedKeys:
    """Keys verified lately, by the SHA-256 of their token, each until a deadline.

    Only the hash is kept, never the token.  A caller cannot steer the hash of
    what it sends, so looking one up tells it nothing about a stored one.
    Thread-safe.  Every entry lives as long, so the oldest is also the next to
    expire: it is the one dropped when the cache is full.
    """

    def __init__(self, seconds: float, size: int, clock: Callable[[], float]) -> None:
        self.seconds = seconds
        self.size = size
        self.clock = clock
        self._entries: OrderedDict[str, tuple[ApiKey, float]] = OrderedDict()
        self._revocations = 0
        self._lock = threading.Lock()

    def get(self, digest: str) -> ApiKey | None:
        """The key cached for this token hash, unless it has expired."""
        now = self.clock()
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if now < entry[1]:
                return entry[0]
            del self._entries[digest]
            return None

    def ticket(self) -> tuple[float, int]:
        """The time and revocation count to hand to :meth:`put`, taken before the database read."""
        now = self.clock()
        with self._lock:
            return now, self._revocations

    def put(self, digest: str, key: ApiKey, ticket: tuple[float, int]) -> None:
        """Remember a key read from the database after ``ticket`` was taken."""
        read_at, revocations = ticket
        with self._lock:
            # A revoke that ran during the read may have been missed by it.
            if self.seconds <= 0 or revocations != self._revocations:
                return
            self._entries.pop(digest, None)
            self._entries[digest] = (key, read_at + self.seconds)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def forget(self, key_id: str) -> None:
        """Drop the key with this id, and anything being read while it is revoked."""
        with self._lock:
            self._revocations += 1
            for digest in [d for d, (key, _) in self._entries.items() if key.id == key_id]:
                del self._entries[digest]


class KeyStore:
    """Create, list, revoke and verify API keys kept in the ledger's store.

    Keys that verify are remembered for ``cache_seconds``, so a busy client does
    not cost a database query per request.  A revoke through this store takes
    effect at once; one through another store (another service instance, the
    ``llmledger keys`` command) is seen here within ``cache_seconds``.

    Args:
        store: The ledger's store (migrated).
        cache_seconds: How long a verified key is trusted without asking the
            database again; 0 asks every time.
        cache_size: How many verified keys are remembered at most (the oldest go first).
        clock: Seconds on a clock that never goes back (for tests: a fake one).

    Raises:
        ConfigError: when ``cache_seconds`` or ``cache_size`` is negative.

    Example:
        >>> from llmledger.store import open_store
        >>> keys = KeyStore(open_store("sqlite://"), cache_seconds=0)
    """

    def __init__(
        self,
        store: Store,
        *,
        cache_seconds: float = CACHE_SECONDS,
        cache_size: int = CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if cache_seconds < 0 or cache_size < 0:
            raise ConfigError(
                f"cache_seconds and cache_size cannot be negative, "
                f"got {cache_seconds!r} and {cache_size!r}"
            )
        self.store = store
        self._verified = _VerifiedKeys(cache_seconds, cache_size, clock)

    def create(
        self,
        role: str,
        *,
        now: datetime,
        tenant: str | None = None,
        user: str | None = None,
        name: str | None = None,
    ) -> NewKey:
        """Make a key; the returned token is the only time its secret is known.

        Raises:
            ConfigError: when the role and scope do not go together (see :func:`check_scope`).
        """
        check_scope(role, tenant, user)
        key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))
        token = f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        key = ApiKey(key_id, role, tenant, user, name, _aware(now))
        self.store.add_key(key, hash_token(token))
        return NewKey(key, token)

    def list(self, *, include_revoked: bool = False) -> list[ApiKey]:
        """Every key, oldest first."""
        return self.store.list_keys(include_revoked=include_revoked)

    def get(self, key_id: str) -> ApiKey:
        """The key with this id (or visible prefix).

        Raises:
            UnknownKeyError: when there is none.
        """
        key_id = key_id.removeprefix(TOKEN_PREFIX)
        stored = self.store.get_key(key_id)
        if stored is None:
            raise UnknownKeyError(f"no API key {key_id!r}")
        return stored.key

    def revoke(self, key_id: str, *, now: datetime) -> ApiKey:
        """Revoke a key (revoking twice keeps the first time).

        This store stops accepting the key at once; other stores over the same
        database stop within their ``cache_seconds``.

        Raises:
            UnknownKeyError: when there is no such key.
        """
        key_id = key_id.removeprefix(TOKEN_PREFIX)
        key = self.store.revoke_key(key_id, now=_aware(now))
        self._verified.forget(key_id)
        if key is None:
            raise UnknownKeyError(f"no API key {key_id!r}")
        return key

    def verify(self, token: str) -> ApiKey | None:
        """The active key this token belongs to, or None.

        The stored hash is compared in constant time; an unknown id is compared
        against a dummy hash so it takes as long.  A key that verifies is
        remembered for ``cache_seconds``; a token that does not is asked about
        every time, so a key made since works at once.
        """
        digest = hash_token(token)
        cached = self._verified.get(digest)
        if cached is not None:
            return cached
        ticket = self._verified.ticket()
        key = self._verify_in_database(token, digest)
        if key is not None:
            self._verified.put(digest, key, ticket)
        return key

    @staticmethod
    def session_proof(token: str) -> str:
        """What a signed-in session keeps instead of the token: a hash of its stored hash.

        It proves the session was opened with the token, cannot be turned back
        into the token, and stops matching when the key is revoked or replaced.

        Example:
            >>> len(KeyStore.session_proof("llk_X_secret"))
            64
        """
        return hash_token(hash_token(token))

    def verify_session(self, key_id: str, proof: str) -> ApiKey | None:
        """The active key a session made by :meth:`session_proof` belongs to, or None.

        Read from the database on every call, so a revoke ends the session at once.
        """
        stored = self.store.get_key(key_id)
        expected = _NO_KEY_HASH if stored is None else hash_token(stored.secret_hash)
        matches = hmac.compare_digest(proof, expected)
        if stored is None or not matches:
            return None
        return stored.key if stored.key.active else None

    def _verify_in_database(self, token: str, digest: str) -> ApiKey | None:
        key_id = _token_id(token)
        stored = None if key_id is None else self.store.get_key(key_id)
        expected = _NO_KEY_HASH if stored is None else stored.secret_hash
        matches = hmac.compare_digest(digest, expected)
        if stored is None or not matches:
            return None
        return stored.key if stored.key.active else None


def _token_id(token: str) -> str | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    key_id, sep, secret = token[len(TOKEN_PREFIX) :].partition("_")
    if not sep or len(key_id) != _ID_LENGTH or not secret:
        return None
    return key_id
