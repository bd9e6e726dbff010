"""Authentication and scope, as FastAPI dependencies.

Every route under ``/v1`` names the roles it admits (``Admin``, ``Reader``,
``Writer`` below).  A key's scope becomes forced filters on every read: a reader
key sees its tenant only (and only its user when it has one), so no route can
forget to scope a query.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from llmledger.core.events import UsageEvent
from llmledger.query import Filter, Query
from llmledger.server.errors import ApiError
from llmledger.server.keys import ApiKey
from llmledger.server.state import Service

__all__ = [
    "Admin",
    "Anyone",
    "Principal",
    "Reader",
    "Writer",
    "get_service",
    "require",
]

_bearer = HTTPBearer(auto_error=False, description="An API key: `llk_…` (see `llmledger keys`).")


def get_service(request: Request) -> Service:
    """The service instance of the app handling the request."""
    service: Service = request.app.state.service
    return service


@dataclass(frozen=True, slots=True)
class Principal:
    """The key a request was made with, and what it may see."""

    key: ApiKey

    @property
    def role(self) -> str:
        """``admin``, ``reader`` or ``ingest``."""
        return self.key.role

    @property
    def tenant(self) -> str | None:
        """The tenant the key is confined to (None: every tenant)."""
        return self.key.tenant

    def filters(self) -> tuple[Filter, ...]:
        """The filters every read by this key carries."""
        forced: list[Filter] = []
        if self.key.tenant is not None:
            forced.append(Filter("tenant", (self.key.tenant,)))
        if self.key.user is not None:
            forced.append(Filter("user", (self.key.user,)))
        return tuple(forced)

    def scoped(self, query: Query) -> Query:
        """The query with this key's scope added to its filters."""
        forced = self.filters()
        return replace(query, where=query.where + forced) if forced else query

    def can_see(self, event: UsageEvent) -> bool:
        """Whether the event is inside this key's scope."""
        if self.key.tenant is not None and event.tenant != self.key.tenant:
            return False
        return self.key.user is None or event.user == self.key.user


def _authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise ApiError(
            401,
            "an API key is required: Authorization: Bearer llk_…",
            headers={"WWW-Authenticate": "Bearer"},
        )
    key = get_service(request).keys.verify(credentials.credentials)
    if key is None:
        raise ApiError(
            401, "the API key is unknown or revoked", headers={"WWW-Authenticate": "Bearer"}
        )
    return Principal(key)


def require(*roles: str) -> object:
    """A dependency admitting keys of these roles (403 for the others)."""

    def dependency(principal: Annotated[Principal, Depends(_authenticate)]) -> Principal:
        if principal.role not in roles:
            raise ApiError(
                403,
                f"the {principal.role} key {principal.key.prefix} cannot do this "
                f"(needs {' or '.join(roles)})",
            )
        return principal

    return Depends(dependency)


Admin = Annotated[Principal, require("admin")]
Reader = Annotated[Principal, require("admin", "reader")]
Writer = Annotated[Principal, require("admin", "ingest")]
Anyone = Annotated[Principal, require("admin", "reader", "ingest")]
