"""Fault test: the service down while an application records (10 s here, the same path
as a longer outage), then only ``flush()`` in a new process once it is back."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tests.fault_support import child_env, journal_segments, run_flusher, start_recorder
from tests.test_remote_content import free_port, serving

COUNT = 2_000


def test_the_service_down_then_only_flush_in_a_new_process(db_url: str, tmp_path: Path) -> None:
    home = tmp_path / "app"
    port = free_port()
    env = child_env(
        home, url=f"http://127.0.0.1:{port}", api_key="llk_unused", shutdown_timeout="1"
    )
    recorder = start_recorder(env, COUNT, "flush:10")  # tries for 10 s, nothing listens
    out, err = recorder.finish(240)
    assert out.strip() == "not flushed", err[-3000:]
    assert f"{COUNT} left in the journal" in err, err[-3000:]
    assert journal_segments(home)
    with serving(db_url, port) as service:
        key = service.keys.create("ingest", tenant="acme", now=datetime.now(UTC)).secret
        env["LLMLEDGER_API_KEY"] = key
        out = run_flusher(env, 120)
        assert out.startswith("flushed"), out
        stored = [e.request_id for e in service.store.events()]
    assert not journal_segments(home)
    assert len(stored) == COUNT and set(stored) == {str(i) for i in range(COUNT)}
