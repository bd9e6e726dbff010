"""A real ``llmledger serve`` whose database stops answering (PostgreSQL cut off, a SQLite
file moved or removed), report queries and ingest batches over their time budget: 503 in
the one error shape, never a 500 or a closed connection."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from llmledger.core.ids import new_id
from tests.conftest import POSTGRES_URL_ENV, backends, fresh_database
from tests.test_server_e2e import cli, free_port, serve


class Proxy:
    """A TCP proxy on loopback in front of the database, which can be cut and restored."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Refuse new connections and drop every open one."""
        assert self._listener is not None
        # shutdown() wakes the thread blocked in accept(); close() alone would not.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                _close(sock)
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _event(**fields: Any) -> dict[str, Any]:
    return {
        "id": new_id(),
        "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60)),
        "provider": "openai",
        "model": "gpt-4o",
        "usage": {"input_tokens": 100, "output_tokens": 10},
        "duration_ms": 100.0,
    } | fields


def _unavailable(answer: httpx.Response, what: str) -> None:
    assert answer.status_code == 503, (what, answer.status_code, answer.text)
    data = answer.json()
    assert data["ok"] is False and data["status"] == 503, what
    assert data["error"] == "unavailable", (what, data)
    assert answer.headers["retry-after"].isdigit(), what


@pytest.fixture
def proxied_postgres(tmp_path: Path) -> Iterator[tuple[str, str, Proxy]]:
    """A fresh PostgreSQL schema: its URL, and a URL through a proxy that can be cut."""
    if not os.environ.get(POSTGRES_URL_ENV):
        pytest.skip(f"{POSTGRES_URL_ENV} is not set")
    with fresh_database("postgres", tmp_path) as db_url:
        url = sa.engine.make_url(db_url)
        proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
        proxy.start()
        through = url.set(host="127.0.0.1", port=proxy.port).update_query_dict(
            {"connect_timeout": "2"}
        )
        try:
            yield db_url, through.render_as_string(hide_password=False), proxy
        finally:
            proxy.stop()


def test_every_route_answers_503_while_the_database_is_down(
    proxied_postgres: tuple[str, str, Proxy], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db_url, through, proxy = proxied_postgres
    env = {"LLMLEDGER_HOME": str(tmp_path / "home"), "LLMLEDGER_KEY_CACHE_SECONDS": "0"}
    admin = json.loads(cli(db_url, "keys", "create", "--role", "admin", "--json", env=env))
    with serve(through, free_port(), env) as url:
        client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {admin['secret']}"}, timeout=30
        )
        request.addfinalizer(client.close)
        stored = _event()
        assert client.post("/v1/events", json={"events": [stored]}).status_code == 200
        proxy.stop()
        calls: list[tuple[str, str, Any]] = [
            ("GET", "/v1/report", None),
            ("GET", "/v1/stats", None),
            ("GET", "/v1/events", None),
            ("GET", f"/v1/events/{stored['id']}", None),
            ("GET", f"/v1/events/{stored['id']}/content", None),
            ("POST", "/v1/events", {"events": [_event()]}),
            ("POST", "/v1/events", _event()),
            ("POST", "/v1/report/batch", {"queries": [{"by": ["model"]}]}),
            ("GET", "/v1/prices", None),
            ("GET", "/v1/exchange-rates", None),
            ("POST", "/v1/prices", {"provider": "acme", "model": "m", "input": "1"}),
            ("GET", "/v1/keys", None),
            ("POST", "/v1/keys", {"role": "reader"}),
        ]
        for method, path, payload in calls:
            _unavailable(client.request(method, path, json=payload), f"{method} {path}")
        assert httpx.get(f"{url}/healthz").status_code == 503
        proxy.start()
        # Back: the next requests are answered again (stale connections are replaced).
        deadline = time.monotonic() + 60
        while client.get("/v1/report").status_code != 200:
            assert time.monotonic() < deadline, "the service did not recover"
            time.sleep(0.2)
        again = client.post("/v1/events", json={"events": [stored, _event()]}).json()
        assert [r["status"] for r in again["results"]] == ["duplicate", "accepted"]


@pytest.fixture
def busy_ledger(db_backend: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A ledger of 20,000 events and the settings of a service with a tiny query budget."""
    with fresh_database(db_backend, tmp_path) as db_url:
        yield db_url, {"LLMLEDGER_HOME": str(tmp_path / "home"), "LLMLEDGER_QUERY_TIMEOUT": "0.001"}


@pytest.mark.parametrize("db_backend", backends())
def test_a_report_over_its_time_budget_is_503_and_ingest_goes_on(
    busy_ledger: tuple[str, dict[str, str]], request: pytest.FixtureRequest
) -> None:
    db_url, env = busy_ledger
    admin = json.loads(cli(db_url, "keys", "create", "--role", "admin", "--json", env=env))
    with serve(db_url, free_port(), env) as url:
        client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {admin['secret']}"}, timeout=60
        )
        request.addfinalizer(client.close)
        for batch in range(20):
            events = [
                _event(user=f"u{i % 500}", duration_ms=float(i), session=uuid.uuid4().hex)
                for i in range(batch * 1000, (batch + 1) * 1000)
            ]
            assert client.post("/v1/events", json={"events": events}).status_code == 200
        heavy = {"by": "user,session", "metrics": "calls,latency_p50,latency_p99,ttft_p95"}
        batched = {key: value.split(",") for key, value in heavy.items()}
        for path, answer in (
            ("/v1/report", client.get("/v1/report", params=heavy)),
            ("/v1/report/batch", client.post("/v1/report/batch", json={"queries": [batched]})),
        ):
            assert answer.status_code == 503, (path, answer.text)
            data = answer.json()
            assert data["ok"] is False and data["error"] == "query_timeout", path
            assert "query_timeout" in data["message"] and answer.headers["retry-after"].isdigit()
        # Writes have no such budget: ingest goes on.
        last = client.post("/v1/events", json={"events": [_event() for _ in range(1000)]})
        assert last.status_code == 200
        assert {r["status"] for r in last.json()["results"]} == {"accepted"}


def test_a_sqlite_ledger_moved_or_removed_under_a_running_service_is_503(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Permissions cannot take a file away from root (CI runs as root): the ledger's
    # folder is moved away, then removed, as a lost or unmounted disk would be.
    folder = tmp_path / "ledger"
    folder.mkdir()
    db_url = f"sqlite:///{folder / 'ledger.db'}"
    env = {"LLMLEDGER_HOME": str(tmp_path / "home")}
    admin = json.loads(cli(db_url, "keys", "create", "--role", "admin", "--json", env=env))
    with serve(db_url, free_port(), env) as url:
        client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {admin['secret']}"}, timeout=30
        )
        request.addfinalizer(client.close)
        stored = _event()
        assert client.post("/v1/events", json={"events": [stored]}).status_code == 200
        calls: list[tuple[str, str, Any]] = [
            ("GET", "/v1/report", None),
            ("GET", "/v1/stats", None),
            ("GET", "/v1/events", None),
            ("GET", f"/v1/events/{stored['id']}", None),
            ("POST", "/v1/events", {"events": [_event()]}),
            ("POST", "/v1/report/batch", {"queries": [{"by": ["model"]}]}),
            ("GET", "/v1/prices", None),
            ("GET", "/v1/keys", None),
        ]
        aside = tmp_path / "aside"
        folder.rename(aside)
        for method, path, payload in calls:
            _unavailable(client.request(method, path, json=payload), f"moved: {method} {path}")
        assert httpx.get(f"{url}/healthz").status_code == 503
        aside.rename(folder)
        # Back where it was: the same file, so the same answers as before.
        again = client.post("/v1/events", json={"events": [stored, _event()]})
        assert [r["status"] for r in again.json()["results"]] == ["duplicate", "accepted"]
        assert client.get(f"/v1/events/{stored['id']}").status_code == 200

        # Removed for good, its folder made again empty: never a ghost ledger, never $0.
        for name in os.listdir(folder):
            (folder / name).unlink()
        for method, path, payload in calls:
            _unavailable(client.request(method, path, json=payload), f"removed: {method} {path}")
