"""API keys in the ledger database: the ``api_keys`` table (migration 0003).

Only the hash of a key's token is stored; making tokens, hashing them, the
verification cache and the role and scope rules live with the service
(``llmledger.server.keys``), which keeps its keys here through the store.

Example:
    >>> from datetime import UTC, datetime
    >>> from llmledger.store import open_store
    >>> store = open_store("sqlite://")
    >>> key = ApiKey("0ABCDEFGH1JK", "admin", None, None, "ops", datetime(2025, 1, 1, tzinfo=UTC))
    >>> store.add_key(key, "9f86d0…")
    >>> store.get_key("0ABCDEFGH1JK").key == key
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmledger.store.codec import from_micros, to_micros
from llmledger.store.errors import RowExistsError, database_errors
from llmledger.store.schema import metadata

__all__ = ["TOKEN_PREFIX", "ApiKey", "KeyRows", "StoredKey", "api_keys"]

#: The start of every token, before the key's id: ``llk_0ABCDEFGH1JK_<secret>``.
TOKEN_PREFIX = "llk_"

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("secret_hash", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("tenant", sa.Text),
    sa.Column("user", sa.Text),
    sa.Column("name", sa.Text),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("revoked_us", sa.BigInteger),
)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as stored (never its secret).

    Attributes:
        id: The key's id, part of its visible prefix.
        role: ``admin``, ``reader`` or ``ingest``.
        tenant: The tenant the key is confined to (None for admin keys).
        user: For reader keys, the one user whose calls it sees, or None.
        name: A label for people.
        created: When the key was made.
        revoked: When it was revoked, or None while it works.

    Example:
        >>> from datetime import UTC, datetime
        >>> ApiKey("0ABCDEFGH1JK", "admin", None, None, None, datetime.now(UTC)).prefix
        'llk_0ABCDEFGH1JK'
    """

    id: str
    role: str
    tenant: str | None
    user: str | None
    name: str | None
    created: datetime
    revoked: datetime | None = None

    @property
    def prefix(self) -> str:
        """The visible start of the token: ``llk_`` and the id."""
        return TOKEN_PREFIX + self.id

    @property
    def active(self) -> bool:
        """True until the key is revoked."""
        return self.revoked is None


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A key's row: the key and the SHA-256 (hex) of its token, to verify a token against."""

    key: ApiKey
    secret_hash: str


def _key(m: Any) -> ApiKey:
    revoked = m["revoked_us"]
    return ApiKey(
        id=str(m["id"]),
        role=str(m["role"]),
        tenant=m["tenant"],
        user=m["user"],
        name=m["name"],
        created=from_micros(int(m["created_us"])),
        revoked=None if revoked is None else from_micros(int(revoked)),
    )


class KeyRows:
    """The store's statements on ``api_keys`` (a part of :class:`~llmledger.store.SqlStore`)."""

    def _connect(self, *, write: bool = False) -> Connection:  # pragma: no cover - SqlStore's
        raise NotImplementedError

    def add_key(self, key: ApiKey, secret_hash: str) -> None:
        """Store a new key with the hash of its token.

        Raises:
            RowExistsError: when a key has this id already.
            StoreError: when the database cannot be written.

        Example:
            >>> from datetime import UTC, datetime
            >>> from llmledger.store import open_store
            >>> open_store("sqlite://").add_key(
            ...     ApiKey("0ABCDEFGH1JK", "admin", None, None, None, datetime.now(UTC)), "ab12")
        """
        values = {
            "id": key.id,
            "secret_hash": secret_hash,
            "role": key.role,
            "tenant": key.tenant,
            "user": key.user,
            "name": key.name,
            "created_us": to_micros(key.created),
            "revoked_us": None if key.revoked is None else to_micros(key.revoked),
        }
        with database_errors("store the key"), self._connect(write=True) as conn, conn.begin():
            try:
                conn.execute(api_keys.insert().values(**values))
            except sa.exc.IntegrityError:
                raise RowExistsError(f"an API key {key.id} exists", existing=key.id) from None

    def get_key(self, key_id: str) -> StoredKey | None:
        """The key with this id and its token's hash, or None.

        Example:
            >>> from llmledger.store import open_store
            >>> open_store("sqlite://").get_key("0ABCDEFGH1JK") is None
            True
        """
        with database_errors("read the key"), self._connect() as conn:
            row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).first()
        if row is None:
            return None
        return StoredKey(_key(row._mapping), str(row._mapping["secret_hash"]))

    def list_keys(self, *, include_revoked: bool = False) -> list[ApiKey]:
        """Every key (active ones only unless ``include_revoked``), oldest first.

        Example:
            >>> from llmledger.store import open_store
            >>> open_store("sqlite://").list_keys(include_revoked=True)
            []
        """
        query = sa.select(api_keys).order_by(api_keys.c.created_us, api_keys.c.id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_us.is_(None))
        with database_errors("list the keys"), self._connect() as conn:
            return [_key(row._mapping) for row in conn.execute(query)]

    def revoke_key(self, key_id: str, *, now: datetime) -> ApiKey | None:
        """Mark a key revoked at ``now`` (a key revoked before keeps its first time).

        Returns:
            The key as stored after the revoke, or None when there is no such key.

        Example:
            >>> from datetime import UTC, datetime
            >>> from llmledger.store import open_store
            >>> open_store("sqlite://").revoke_key("0ABCDEFGH1JK", now=datetime.now(UTC)) is None
            True
        """
        with database_errors("revoke the key"), self._connect(write=True) as conn, conn.begin():
            conn.execute(
                api_keys.update()
                .where(api_keys.c.id == key_id, api_keys.c.revoked_us.is_(None))
                .values(revoked_us=to_micros(now))
            )
            row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).first()
        return None if row is None else _key(row._mapping)
