"""Real receivers on loopback for the alerting tests: an SMTP server (aiosmtpd) and a
webhook endpoint (the standard library's HTTP server), each recording what arrives."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.test_server_e2e import free_port


@dataclass
class Mailbox:
    """What the SMTP server received (and whether each mail came over TLS)."""

    mails: list[Message] = field(default_factory=list)
    encrypted: list[bool] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        with self.lock:
            self.mails.append(message_from_bytes(content))
            transport = server.transport
            tls = transport is not None and transport.get_extra_info("ssl_object") is not None
            self.encrypted.append(tls)
        return "250 OK"


@contextmanager
def smtp_server(
    tls: ssl.SSLContext | None = None, *, implicit: bool = False
) -> Iterator[tuple[int, Mailbox]]:
    """A real SMTP server on loopback; yields its port and mailbox.

    With ``tls`` (a server context) it requires STARTTLS before any mail, or with
    ``implicit`` speaks TLS from the first byte.
    """
    box = Mailbox()
    port = free_port()
    options: dict[str, Any] = {}
    if tls is not None and implicit:
        options = {"ssl_context": tls}
    elif tls is not None:
        options = {"tls_context": tls, "require_starttls": True}
    controller = Controller(box, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port, box
    finally:
        controller.stop()


@dataclass
class Hook:
    """What the webhook endpoint received, and how it answers."""

    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    #: Status codes to answer first (then 200).
    answers: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for _, body in self.calls]


@contextmanager
def webhook_server() -> Iterator[tuple[str, Hook]]:
    """A real HTTP endpoint on loopback; yields its URL and what it received."""
    hook = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with hook.lock:
                status = hook.answers.pop(0) if hook.answers else 200
                if status == 200:
                    hook.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll until ``condition()`` holds (a deadline, never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
