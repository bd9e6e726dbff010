"""Reads cannot starve ingest: a report waits for one of ``report_slots``, and an ingest
batch has a time budget of its own (``ingest_timeout``), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from llmledger.core.settings import load_settings
from llmledger.query import Query
from llmledger.server.state import Service
from llmledger.store import open_store
from llmledger.store.budget import QueryTimeoutError
from tests.test_server_e2e import cli, free_port, serve
from tests.test_server_outage import _event


def test_a_report_beyond_the_slots_waits_and_gives_up_within_its_budget(db_url: str) -> None:
    service = Service(load_settings(database_url=db_url, report_slots=1, query_timeout=0.3))
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with service.report_budget():
            service.store.report(Query())
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(30)
        waiting = service.report_budget()
        with pytest.raises(QueryTimeoutError, match="1 report queries were running"):
            waiting.__enter__()
    finally:
        release.set()
        holder.join(30)
    # The slot is free again.
    with service.report_budget():
        assert service.store.report(Query()).total["calls"] == 0
    service.close()


def test_an_ingest_batch_over_its_budget_stores_nothing_and_is_503(
    db_url: str, tmp_path: Path
) -> None:
    env = {"LLMLEDGER_HOME": str(tmp_path / "home"), "LLMLEDGER_INGEST_TIMEOUT": "0.001"}
    admin = json.loads(cli(db_url, "keys", "create", "--role", "admin", "--json", env=env))
    with (
        serve(db_url, free_port(), env) as url,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {admin['secret']}"}, timeout=60
        ) as client,
    ):
        events = [_event(user=f"u{i}", tags={"t": str(i)}) for i in range(1000)]
        answer = client.post("/v1/events", json={"events": events})
        assert answer.status_code == 503, answer.text
        data = answer.json()
        assert data["error"] == "query_timeout" and "ingest_timeout" in data["message"]
        assert answer.headers["retry-after"].isdigit()
    with open_store(db_url) as store:
        assert store.count() == 0
