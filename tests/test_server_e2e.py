"""End to end: a real ``llmledger serve`` process (SQLite and PostgreSQL), keys made with
``llmledger keys``, events from the SDK's remote sink through a service outage."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from llmledger.store import open_store

LLMLEDGER = str(Path(sys.executable).with_name("llmledger"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def cli(db_url: str, *args: str, env: Mapping[str, str] | None = None) -> str:
    done = subprocess.run(
        [LLMLEDGER, "--database-url", db_url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=None if env is None else {**os.environ, **env},
    )
    return done.stdout


@contextmanager
def serve(db_url: str, port: int, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """``llmledger serve`` on loopback (with ``env`` added to its environment), stopped
    afterwards."""
    # The log goes to a file: a pipe nobody reads while the test runs fills up, and the
    # server would then block on its next log line.
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [
                LLMLEDGER,
                "--database-url",
                db_url,
                "serve",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=None if env is None else {**os.environ, **env},
        )

        def output() -> str:
            log.seek(0)
            return log.read()

        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, output()
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the service did not start"
                time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server
                process.kill()
                process.wait()


def test_a_real_service_ingests_reports_and_scopes(db_url: str) -> None:
    admin = json.loads(cli(db_url, "keys", "create", "--role", "admin", "--json"))["secret"]
    with serve(db_url, free_port()) as url:
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"})
        ingest = client.post("/v1/keys", json={"role": "ingest", "tenant": "acme"}).json()
        reader = client.post("/v1/keys", json={"role": "reader", "tenant": "other"}).json()
        now = time.time()
        batch = [
            {
                "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60 - i)),
                "provider": "anthropic",
                "model": "claude-sonnet-4-5-20250929",
                "usage": {"input_tokens": 1000 + i, "output_tokens": 50},
                "feature": "chat",
                "id": f"01J{i:023d}",
            }
            for i in range(1000)
        ]
        answer = httpx.post(
            f"{url}/v1/events",
            json={"events": batch},
            headers={"Authorization": f"Bearer {ingest['secret']}"},
            timeout=60,
        )
        assert answer.status_code == 200
        assert {r["status"] for r in answer.json()["results"]} == {"accepted"}
        report = client.get("/v1/report", params={"by": "tenant", "metrics": "calls,cost"}).json()
        assert report["rows"][0]["tenant"] == "acme" and report["rows"][0]["calls"] == 1000
        assert report["total"]["cost"] is not None
        stranger = httpx.get(
            f"{url}/v1/report", headers={"Authorization": f"Bearer {reader['secret']}"}
        ).json()
        assert stranger["total"]["calls"] == 0
        assert "llmledger_events_ingested_total 1000" in httpx.get(f"{url}/metrics").text
        client.close()


def _record_in_a_new_process(home: Path, url: str, key: str, count: int, tag: str) -> list[str]:
    """Run a fresh Python process that records ``count`` events and exits."""
    script = textwrap.dedent(f"""
        import llmledger
        ids = [llmledger.record(provider="openai", model="gpt-4o", input_tokens=100,
                                output_tokens=10, feature="spool", tags={{"run": "{tag}"}}).id
               for _ in range({count})]
        print("\\n".join(ids))
    """)
    env = {
        **os.environ,
        "LLMLEDGER_HOME": str(home),
        "LLMLEDGER_URL": url,
        "LLMLEDGER_API_KEY": key,
        "LLMLEDGER_STRICT": "false",
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30, "flushing at exit took too long"
    return done.stdout.split()


def test_events_recorded_while_the_service_is_down_arrive_exactly_once(
    db_url: str, tmp_path: Path
) -> None:
    key = json.loads(
        cli(db_url, "keys", "create", "--role", "ingest", "--tenant", "acme", "--json")
    )["secret"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    home = tmp_path / "app-home"
    # 1. the service is down: the app records, exits, and its events wait in the journal
    first = _record_in_a_new_process(home, url, key, 1500, "while-down")
    assert list((home / "spool").glob("j-*/*.seg")), "nothing waits in the journal"
    with open_store(db_url) as store:
        assert store.count() == 0
    # 2. the service comes back; the app restarts and records more: the journal goes too
    with serve(db_url, port):
        second = _record_in_a_new_process(home, url, key, 20, "after-restart")
        # 3. once more: nothing is left to replay, nothing is sent twice
        third = _record_in_a_new_process(home, url, key, 1, "again")
    assert list((home / "spool").glob("j-*/*.seg")) == []
    expected = set(first) | set(second) | set(third)
    assert len(expected) == 1521
    with open_store(db_url) as store:
        assert store.count() == 1521
        stored = {e.id for e in store.events()}
        assert {e.tenant for e in store.events()} == {"acme"}
    assert stored == expected
