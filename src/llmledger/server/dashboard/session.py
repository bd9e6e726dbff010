"""Signing in to the dashboard: a signed session cookie, CSRF tokens, the page principal.

Signing in takes an API key.  The session cookie (HttpOnly, SameSite=Lax,
Secure over HTTPS) is signed with the ``session_secret`` setting and holds the
key's id, a proof of the token (:meth:`KeyStore.session_proof`, never the token)
and the session's CSRF token.  Every page reads the key again from the database,
so a revoked key ends its sessions at once, and the key's role and tenant scope
apply to every page as they do to the API (:class:`~llmledger.server.auth.Principal`).

Forms that change anything carry the session's CSRF token; the sign-in form,
which has no session yet, a token in a cookie of its own (double submit).
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from llmledger.core.errors import ConfigError, LedgerError
from llmledger.core.settings import Settings
from llmledger.server.auth import Principal, get_service

__all__ = [
    "CSRF_COOKIE",
    "SESSION_COOKIE",
    "SESSION_SECONDS",
    "NotSignedInError",
    "Session",
    "check_csrf",
    "cookie_options",
    "new_session",
    "read_session",
    "session_secret",
]

SESSION_COOKIE = "llmledger_session"
CSRF_COOKIE = "llmledger_signin"
#: How long a session lasts after signing in.
SESSION_SECONDS = 12 * 3600
_SALT = "llmledger.dashboard.session"


class NotSignedInError(LedgerError, PermissionError):
    """The request has no valid session: the page redirects to the sign-in form."""


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in session: who it is, and the token its forms must carry."""

    principal: Principal
    csrf: str


def session_secret(settings: Settings) -> str:
    """The key that signs session cookies: the setting, else one kept in ``home``.

    The kept one is made once (readable by its owner only), so the workers of
    ``llmledger serve --workers N``, which share ``home``, sign alike.

    Raises:
        ConfigError: when the kept secret cannot be read or written.
    """
    if settings.session_secret:
        return settings.session_secret
    path = Path(settings.home) / "session-secret"
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fresh = secrets.token_hex(32)
            temporary = path.with_name(f".session-secret-{os.getpid()}")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(fresh)
            # A link fails when another process made the file first: both then read it.
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass
            finally:
                temporary.unlink()
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot keep the dashboard's session secret in {path}: {exc.strerror}; "
            "set LLMLEDGER_SESSION_SECRET"
        ) from None


def _serializer(request: Request) -> URLSafeTimedSerializer:
    found: URLSafeTimedSerializer | None = getattr(request.app.state, "session_serializer", None)
    if found is None:
        secret = session_secret(get_service(request).settings)
        found = URLSafeTimedSerializer(secret, salt=_SALT)
        request.app.state.session_serializer = found
    return found


def cookie_options(request: Request) -> dict[str, Any]:
    """Attributes of the dashboard's cookies: HttpOnly, SameSite=Lax, Secure over HTTPS."""
    return {
        "httponly": True,
        "samesite": "lax",
        "secure": request.url.scheme == "https",
        "path": "/",
    }


def new_session(request: Request, key_id: str, token: str) -> str:
    """The cookie value of a session opened with ``token``."""
    service = get_service(request)
    payload = {
        "k": key_id,
        "p": service.keys.session_proof(token),
        "c": secrets.token_urlsafe(24),
    }
    return _serializer(request).dumps(payload)


def read_session(request: Request) -> Session:
    """The request's session.

    Raises:
        NotSignedInError: without a cookie, with one that is forged or expired, or
            when its key was revoked.
    """
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        raise NotSignedInError
    try:
        payload = _serializer(request).loads(raw, max_age=SESSION_SECONDS)
    except BadSignature:
        raise NotSignedInError from None
    if not isinstance(payload, dict) or not all(
        isinstance(payload.get(name), str) for name in ("k", "p", "c")
    ):
        raise NotSignedInError
    key = get_service(request).keys.verify_session(payload["k"], payload["p"])
    if key is None or key.role not in ("admin", "reader"):
        raise NotSignedInError
    return Session(Principal(key), payload["c"])


def check_csrf(expected: str | None, sent: str | None) -> bool:
    """Whether a form's CSRF token matches the one it must carry."""
    if not expected or not sent:
        return False
    return hmac.compare_digest(expected.encode(), sent.encode())
