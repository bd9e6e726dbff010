"""Kept prompt and response text in the real ledger database, on SQLite and PostgreSQL:
only when asked, redacted first, in ``event_content``, found by event id."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
import sqlalchemy as sa

import llmledger
from llmledger.capture import capture_content, instrument
from llmledger.runtime.content import (
    ContentRecord,
    PendingContent,
    SqlContentStore,
    content_store,
)
from llmledger.runtime.ledger import Ledger, shutdown
from llmledger.store import SqlStore
from llmledger.store.content import event_content
from llmledger.store.migrator import current_revision, head_revision, upgrade_connection
from tests.test_capture_support import JSON, Replay, recorded

MESSAGES: Any = [{"role": "user", "content": "my secret question"}]


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    ledger = llmledger.configure(database_url=db_url)
    yield ledger
    shutdown()


@pytest.fixture
def client() -> openai.OpenAI:
    replay = Replay(
        {"/chat/completions": (200, recorded("openai_chat_prompt_cache_hit.json"), JSON)}
    )
    return openai.OpenAI(api_key="sk-test", http_client=replay.sync_client(), max_retries=0)


def _engine(ledger: Ledger) -> sa.Engine:
    """The ledger's database, for tests that check what the tables themselves hold."""
    assert isinstance(ledger.store, SqlStore)
    return ledger.store.engine


def _rows(ledger: Ledger) -> list[dict[str, Any]]:
    with _engine(ledger).connect() as conn:
        return [dict(row) for row in conn.execute(sa.select(event_content)).mappings()]


def test_the_ledger_keeps_text_in_the_journal_then_its_own_database(ledger: Ledger) -> None:
    # Held until its event is appended, then written in the event's record.
    assert isinstance(ledger.content_store, PendingContent)
    assert content_store(ledger) is ledger.content_store is ledger.writer.texts


def test_text_is_kept_only_when_asked_and_found_by_event_id(
    ledger: Ledger, client: openai.OpenAI
) -> None:
    with instrument():
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        with capture_content():
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert llmledger.flush(10)
    plain, kept = sorted(ledger.store.events(), key=lambda e: e.ts)
    rows = _rows(ledger)
    assert [row["event_id"] for row in rows] == [kept.id]
    store = SqlContentStore(ledger)
    assert store.get(plain.id) is None
    record = store.get(kept.id)
    assert record is not None
    assert "my secret question" in (record.prompt or "")
    assert record.response
    assert record.ts == kept.ts
    # The usage ledger itself holds no text.
    with _engine(ledger).connect() as conn:
        stored = conn.execute(sa.text("SELECT * FROM events")).mappings().all()
    assert all("secret" not in str(dict(row)) for row in stored)


def test_text_is_redacted_before_it_is_kept(ledger: Ledger, client: openai.OpenAI) -> None:
    def redact(kind: str, text: str) -> str:
        return text.replace("secret", "[redacted]") if kind == "prompt" else "[response]"

    with instrument(store_content=True, redact=redact):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert llmledger.flush(10)
    (row,) = _rows(ledger)
    assert "secret" not in row["prompt"] and "[redacted]" in row["prompt"]
    assert row["response"] == "[response]"


def test_the_store_content_setting_turns_it_on(db_url: str, client: openai.OpenAI) -> None:
    ledger = llmledger.configure(database_url=db_url, store_content=True)
    try:
        with instrument():
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            with capture_content(False):
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert llmledger.flush(10)
        assert len(_rows(ledger)) == 1
    finally:
        shutdown()


def test_saving_again_replaces_the_record(ledger: Ledger) -> None:
    from datetime import UTC, datetime

    store = SqlContentStore(ledger)
    ts = datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    store.save(ContentRecord("01JCONTENT", ts, "first", None))
    store.save(ContentRecord("01JCONTENT", ts, "second", "answer"))
    assert store.get("01JCONTENT") == ContentRecord("01JCONTENT", ts, "second", "answer")


@pytest.mark.unmigrated
def test_migration_adds_the_table_to_a_database_at_the_previous_revision(db_url: str) -> None:
    with SqlStore(db_url) as store:
        with store.engine.begin() as conn:
            upgrade_connection(conn, "0004")
        assert "event_content" not in sa.inspect(store.engine).get_table_names()
        store.migrate()
        assert "event_content" in sa.inspect(store.engine).get_table_names()
        with store.engine.connect() as conn:
            assert current_revision(conn) == head_revision()
