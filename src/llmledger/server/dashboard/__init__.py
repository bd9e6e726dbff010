"""The web dashboard, served by the service itself at ``/``.

Server-side HTML (Jinja2 templates) over the same functions the API's routes
use, a small script of our own, and plotly.js from the installed ``plotly``
package: no second server, nothing to build, nothing fetched from elsewhere.
See docs/dashboard.md.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse

from llmledger.server.dashboard import admin, budgets, views
from llmledger.server.dashboard.session import NotSignedInError

__all__ = ["install"]


def install(app: FastAPI) -> None:
    """Add the dashboard's pages to the service's app."""
    app.include_router(views.router)
    app.include_router(admin.router)
    app.include_router(budgets.router)

    @app.exception_handler(NotSignedInError)
    async def _sign_in(request: Request, _exc: NotSignedInError) -> RedirectResponse:
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        if request.method != "GET":
            target = "/"
        return RedirectResponse(f"/signin?next={quote(target, safe='')}", status_code=303)
