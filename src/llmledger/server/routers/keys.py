"""``/v1/keys``: create, list and revoke API keys (admin only)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from llmledger.server.auth import Admin, get_service
from llmledger.server.keys import ApiKey
from llmledger.server.schemas import KeyIn, KeyOut, NewKeyOut

__all__ = ["key_out", "router"]

router = APIRouter(prefix="/v1/keys", tags=["keys"])


def key_out(key: ApiKey) -> dict[str, Any]:
    """A key as JSON (never its secret)."""
    return KeyOut(
        id=key.id,
        prefix=key.prefix,
        role=key.role,
        tenant=key.tenant,
        user=key.user,
        name=key.name,
        created=key.created,
        revoked=key.revoked,
    ).model_dump(mode="json")


@router.post("", summary="Create a key", status_code=201, response_model=NewKeyOut)
def create_key(request: Request, _principal: Admin, body: KeyIn) -> dict[str, Any]:
    """Make a key; the answer holds its token, which is never shown again."""
    new = get_service(request).keys.create(
        body.role, tenant=body.tenant, user=body.user, name=body.name, now=datetime.now(UTC)
    )
    return {**key_out(new.key), "secret": new.secret}


@router.get("", summary="List keys", response_model=list[KeyOut])
def list_keys(
    request: Request,
    _principal: Admin,
    revoked: Annotated[bool, Query(description="Include revoked keys.")] = False,
) -> list[dict[str, Any]]:
    """Every key, oldest first (prefixes only; secrets are stored hashed)."""
    return [key_out(k) for k in get_service(request).keys.list(include_revoked=revoked)]


@router.delete("/{key_id}", summary="Revoke a key", response_model=KeyOut)
def revoke_key(request: Request, _principal: Admin, key_id: str) -> dict[str, Any]:
    """Revoke a key at once, on every instance (keys are checked on each request)."""
    return key_out(get_service(request).keys.revoke(key_id, now=datetime.now(UTC)))
