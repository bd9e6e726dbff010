"""What the simulated provider's endpoints share: token counting, canned text,
the prompt-cache memory, and the HTTP plumbing of a JSON or event-stream answer."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "CACHE_BLOCK",
    "CACHE_MIN_TOKENS",
    "Responder",
    "SimServer",
    "State",
    "answer_text",
    "chunks",
    "count_tokens",
    "is_reasoning_model",
    "seed_of",
    "text_of",
]

WORDS = [
    "the",
    "ledger",
    "records",
    "each",
    "call",
    "with",
    "its",
    "tokens",
    "and",
    "cost",
    "so",
    "every",
    "team",
    "can",
    "see",
    "what",
    "it",
    "spends",
    "on",
    "which",
    "feature",
    "and",
    "for",
    "which",
    "customer",
    "while",
    "budgets",
    "keep",
    "the",
    "monthly",
    "bill",
    "inside",
    "the",
    "plan",
    "and",
    "nobody",
    "is",
    "surprised",
    "at",
    "the",
    "end",
    "of",
    "the",
    "month",
]

CACHE_MIN_TOKENS = 1024  # OpenAI caches prompts of at least this many tokens
CACHE_BLOCK = 128  # ... in blocks of this size


def count_tokens(text: str) -> int:
    """Roughly four characters a token, as the providers' own rule of thumb says."""
    return max(1, (len(text) + 3) // 4)


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(text_of(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def seed_of(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x00".join(parts).encode()).digest()[:8])


def answer_text(seed: int, words: int) -> str:
    return " ".join(WORDS[(seed + i * 7) % len(WORDS)] for i in range(words)).capitalize() + "."


def chunks(text: str, size: int = 3) -> Iterator[str]:
    words = text.split(" ")
    for i in range(0, len(words), size):
        yield (" " if i else "") + " ".join(words[i : i + size])


def is_reasoning_model(model: str) -> bool:
    return model.startswith(("o1", "o3", "o4", "gpt-5"))


class State:
    """What the simulated provider remembers between calls: its prompt caches."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.openai_prefixes: set[str] = set()
        self.anthropic_cached: set[str] = set()
        self.counter = 0

    def next_id(self) -> int:
        with self.lock:
            self.counter += 1
            return self.counter


class SimServer(ThreadingHTTPServer):
    """The HTTP server, carrying the simulated provider's memory."""

    daemon_threads = True
    state: State


class Responder(BaseHTTPRequestHandler):
    """Sends answers the way the providers do."""

    server: SimServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the demo prints its own report."""

    # -- plumbing ------------------------------------------------------------------

    def _send_json(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_sse(self, events: Iterator[tuple[str | None, str]], headers: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.close_connection = True
        try:
            for event, data in events:
                frame = (f"event: {event}\n" if event else "") + f"data: {data}\n\n"
                self.wfile.write(frame.encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return  # the client stopped reading: a stream closed early

    def _begin(self, text: str, *, anthropic: bool) -> int | None:
        """Number a new call; answer it with an HTTP 500 instead when the text asks to fail.

        Returns:
            The call's number, or None when the failure was already sent.
        """
        n = self.server.state.next_id()
        request_id = f"req_sim{n:06d}"
        if "[fail]" not in text:
            return n
        if anthropic:
            body = {
                "type": "error",
                "error": {"type": "api_error", "message": "simulated overload"},
            }
            self._send_json(500, body, {"request-id": request_id})
        else:
            body = {
                "error": {"message": "simulated server error", "type": "server_error", "code": None}
            }
            self._send_json(500, body, {"x-request-id": request_id})
        return None
