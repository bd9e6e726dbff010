"""What holds for every SDK: tracking failures stay inside, attribution follows threads
and tasks, content is kept only when asked and after redaction."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

import llmledger
import llmledger.capture._core as core
from llmledger.capture import Instrumentation, capture_content, capture_stats, instrument
from llmledger.runtime.content import MemoryContentStore, set_content_store
from tests.test_capture_support import JSON, KeepingLedger, Replay, instrumented, ledger, recorded

__all__ = ["instrumented", "ledger"]

MESSAGES: Any = [{"role": "user", "content": "secret question"}]


@pytest.fixture
def client() -> openai.OpenAI:
    replay = Replay(
        {"/chat/completions": (200, recorded("openai_chat_prompt_cache_hit.json"), JSON)}
    )
    return openai.OpenAI(api_key="sk-test", http_client=replay.sync_client(), max_retries=0)


@pytest.fixture
def lenient(monkeypatch: pytest.MonkeyPatch, ledger: KeepingLedger) -> KeepingLedger:
    """Production behaviour: internal errors are logged, not raised."""
    monkeypatch.setenv("LLMLEDGER_STRICT", "false")
    ledger.settings = llmledger.load_settings()
    return ledger


def test_a_bug_in_the_hook_never_reaches_the_caller(
    client: openai.OpenAI, lenient: KeepingLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> Any:
        raise RuntimeError("bug in the hook")

    monkeypatch.setattr(core, "attribution_in_force", broken)
    before = capture_stats()["internal_errors"]
    with instrument():
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.usage is not None
    assert capture_stats()["internal_errors"] == before + 1


def test_a_store_that_is_down_never_reaches_the_caller(
    client: openai.OpenAI, lenient: KeepingLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(item: Any) -> None:
        raise ConnectionError("store down")

    monkeypatch.setattr(lenient, "submit", down)
    with instrument():
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        stream.close()
    assert completion.choices


def test_under_strict_settings_hook_bugs_are_raised(
    client: openai.OpenAI, ledger: KeepingLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core, "attribution_in_force", lambda: 1 / 0)
    with instrument(), pytest.raises(ZeroDivisionError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def test_attribution_follows_executor_threads_and_asyncio_tasks(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    def call() -> None:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    with llmledger.attribute(user="threaded"), ThreadPoolExecutor(2) as pool:
        pool.submit(llmledger.propagate(call)).result()

    async def main() -> None:
        async def in_task() -> None:
            await asyncio.to_thread(call)

        with llmledger.attribute(user="tasked"):
            await asyncio.create_task(in_task())

    asyncio.run(main())
    assert [e.user for e in ledger.events()] == ["threaded", "tasked"]


def test_attribution_is_taken_at_call_start(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    with llmledger.attribute(feature="start"):
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    with llmledger.attribute(feature="later"):
        stream.close()
    assert ledger.one().feature == "start"


def test_content_is_not_kept_unless_asked(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    kept = MemoryContentStore()
    set_content_store(kept)
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        with capture_content():
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        events = ledger.events()
    finally:
        set_content_store(None)
    assert len(kept.records) == 1
    assert kept.records[0].event_id == events[1].id
    assert "secret question" in (kept.records[0].prompt or "")
    assert kept.records[0].response


def test_kept_content_is_redacted_first(client: openai.OpenAI, ledger: KeepingLedger) -> None:
    kept = MemoryContentStore()
    set_content_store(kept)
    try:
        with instrument(
            store_content=True, redact=lambda kind, text: text.replace("secret", "***")
        ):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        ledger.events()
    finally:
        set_content_store(None)
    (record,) = kept.records
    assert "secret" not in (record.prompt or "") and "***" in (record.prompt or "")


def test_instrument_as_a_context_manager_removes_the_hooks(
    client: openai.OpenAI, ledger: KeepingLedger
) -> None:
    with instrument() as handle:
        assert handle.active and "openai" in handle.sdks
    assert not handle.active
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert ledger.events() == []
