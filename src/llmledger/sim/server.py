"""A small HTTP server that answers like OpenAI, Anthropic and Gemini, with realistic usage.

It serves ``/v1/chat/completions``, ``/v1/responses``, ``/v1/embeddings`` (OpenAI
shapes), ``/v1/messages`` (Anthropic) and ``/v1beta/models/{model}:generateContent``
and ``:streamGenerateContent`` (Gemini), streaming and not. Token counts follow
the text sent; a long prompt seen before is served partly from a prompt cache, as
the real services do; reasoning models spend reasoning tokens. Answers are
deterministic for a given request, so a demo gives the same ledger every run.

A message containing ``[fail]`` gets an HTTP 500 in the provider's error shape, so
failed calls can be shown too.
"""

from __future__ import annotations

import json
import re
import threading

from llmledger.sim.anthropic_api import AnthropicRoutes
from llmledger.sim.base import SimServer, State
from llmledger.sim.gemini_api import GeminiRoutes
from llmledger.sim.openai_api import OpenAIRoutes

__all__ = ["SimulatedProvider"]

# The google-genai SDK names the API version in the path (v1beta by default, v1 with a base URL).
_GEMINI_PATH = re.compile(
    r"/v1(?:beta|alpha)?/models/([^/:]+):(generateContent|streamGenerateContent)"
)


class _Handler(OpenAIRoutes, AnthropicRoutes, GeminiRoutes):
    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._send_json(
                400,
                {"error": {"message": "invalid JSON body", "type": "invalid_request_error"}},
                {},
            )
            return
        path = self.path.split("?", 1)[0].rstrip("/")
        gemini = _GEMINI_PATH.fullmatch(path)
        if gemini is not None:
            model, method = gemini.groups()
            self._gemini(model, body, stream=method == "streamGenerateContent")
            return
        routes = {
            "/v1/chat/completions": self._chat,
            "/v1/responses": self._responses,
            "/v1/embeddings": self._embeddings,
            "/v1/messages": self._messages,
        }
        handler = routes.get(path)
        if handler is None:
            self._send_json(
                404, {"error": {"message": f"no route {path}", "type": "not_found"}}, {}
            )
            return
        handler(body)


class SimulatedProvider:
    """Run the simulated provider on a free loopback port, in a background thread.

    Example:
        >>> with SimulatedProvider() as sim:
        ...     sim.openai_base_url.startswith("http://127.0.0.1:")
        True
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = SimServer((host, port), _Handler)
        self._server.state = State()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The server's root URL."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_base_url(self) -> str:
        """The ``base_url`` to give an ``openai`` client."""
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """The ``base_url`` to give an ``anthropic`` client."""
        return self.url

    @property
    def gemini_base_url(self) -> str:
        """The ``base_url`` of a ``google-genai`` client's ``http_options``."""
        return self.url

    def start(self) -> SimulatedProvider:
        """Start serving in a daemon thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="llmledger-sim", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> SimulatedProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
