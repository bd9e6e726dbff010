"""The app factory: ``create_app(settings)`` wires routers, auth, errors and limits."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from llmledger.core.settings import Settings, load_settings
from llmledger.server import dashboard
from llmledger.server.errors import error_response, install_error_handlers
from llmledger.server.routers import (
    admin,
    alerts,
    budgets,
    deletes,
    events,
    health,
    keys,
    limits,
    prices,
    reports,
    traces,
)
from llmledger.server.state import Service
from llmledger.store import Store
from llmledger.wire.parse import EventIn

__all__ = ["GC_THRESHOLDS", "create_app"]

#: The garbage collector's thresholds in a process of its own: at the default
#: (700 objects) a batch of 1,000 events sets off a collection every few dozen events.
GC_THRESHOLDS = (50_000, 20, 100)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413 (before and while reading).

    Compressed ingest bodies are also checked once decompressed, by the ingest route.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                response = error_response(
                    413, f"the body is larger than {self.limit} bytes; send smaller batches"
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RefuseNul:
    """Answer 400 to a request whose path or query holds a NUL character (``%00``).

    No name, id or value the service keeps can hold one (PostgreSQL refuses it
    in text), so such a request is refused here, the same on every database.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"")
        ):
            response = error_response(
                400, "the URL holds a NUL character (%00), which no parameter takes"
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        # The ingest body is read by hand (so each event of a batch gets its own
        # answer); its schema is added here.
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        event_schema = EventIn.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(event_schema.pop("$defs", {}))
        components["EventIn"] = event_schema
        app.openapi_schema = schema
    return app.openapi_schema


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    own_process: bool = False,
) -> FastAPI:
    """The llmledger service as an ASGI app.

    Args:
        settings: Database URL, price files and limits (from the environment when None).
        store: An open store to serve instead of the settings' database (tests).
        own_process: The app is the whole process (``llmledger serve``): at
            start-up it loads the price catalog, then moves everything alive
            out of the garbage collector's reach (``gc.freeze``), so collections
            during ingest walk only the objects of the requests in flight, and
            lets many more objects be made between two collections
            (:data:`GC_THRESHOLDS`): a batch of ingest makes tens of thousands,
            nearly all freed by their reference counts.  Leave it off when the
            app is mounted in a larger program.

    Example:
        >>> from llmledger.core.settings import load_settings
        >>> app = create_app(load_settings(database_url="sqlite://"))
        >>> sorted(path for path in app.openapi()["paths"] if path.startswith("/v1/events"))
        ... # doctest: +NORMALIZE_WHITESPACE
        ['/v1/events', '/v1/events/delete', '/v1/events/{event_id}',
         '/v1/events/{event_id}/content']
    """
    settings = settings if settings is not None else load_settings()
    service = Service(settings, store=store)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if own_process:
            service.pricer  # noqa: B018 - loads the catalog and the database prices
            gc.collect()
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
            if settings.run_jobs:
                service.start_jobs()
        yield
        if store is None:
            service.close()
        elif service.scheduler is not None:
            service.scheduler.stop()

    app = FastAPI(
        title="llmledger",
        version="1",
        description=(
            "Records every LLM provider call, prices it and attributes it. Authenticate with "
            "`Authorization: Bearer llk_…`; every error has one JSON shape "
            '`{"ok": false, "status", "error", "message", "details"}`.'
        ),
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    install_error_handlers(app)
    for module in (deletes, events, traces, reports, prices, keys, limits, admin, budgets):
        app.include_router(module.router)
    for module in (alerts, health):
        app.include_router(module.router)
    dashboard.install(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(RefuseNul)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def create_process_app() -> FastAPI:
    """:func:`create_app` from the environment's settings, as a process of its own.

    The factory each worker process of ``llmledger serve --workers N`` calls.
    """
    return create_app(own_process=True)
