"""The real ``google-genai`` client, instrumented, against recorded responses."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from google import genai
from google.genai import errors, types

import llmledger
from llmledger.capture import Instrumentation
from tests.test_capture_support import (
    JSON,
    SSE,
    KeepingLedger,
    Replay,
    instrumented,
    ledger,
    recorded,
)

__all__ = ["instrumented", "ledger"]

THOUGHTS = recorded("gemini_generate_thoughts.json")
STREAM = recorded("gemini_stream.sse")
EMBEDDINGS = json.dumps({"embeddings": [{"values": [0.1, 0.2, 0.3]}]}).encode()


@pytest.fixture
def replay() -> Replay:
    return Replay(
        {
            ":generateContent": (200, THOUGHTS, JSON),
            ":streamGenerateContent": (200, STREAM, SSE),
            ":batchEmbedContents": (200, EMBEDDINGS, JSON),
        }
    )


def _client(replay: Replay) -> genai.Client:
    options = types.HttpOptions(
        httpx_client=replay.sync_client("google"), httpx_async_client=replay.async_client("google")
    )
    return genai.Client(api_key="AIza-test", http_options=options)


def test_generate_content_counts_thoughts_as_output(
    replay: Replay, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    with llmledger.attribute(user="g1"):
        response = _client(replay).models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert isinstance(response, types.GenerateContentResponse)
    event = ledger.one()
    assert (event.provider, event.model, event.operation, event.user) == (
        "google",
        "gemini-2.5-flash",
        "chat",
        "g1",
    )
    assert (event.usage.input_tokens, event.usage.output_tokens, event.usage.reasoning_tokens) == (
        9,
        9 + 34,
        34,
    )


def test_generate_content_stream_endings(
    replay: Replay, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    client = _client(replay)
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="count"))
    assert chunks and all(isinstance(c, types.GenerateContentResponse) for c in chunks)
    for _chunk in client.models.generate_content_stream(model="gemini-2.5-flash", contents="count"):
        break
    done, broken = ledger.events()
    assert (done.status, done.stream, done.usage_source) == ("ok", True, "provider")
    last = json.loads(STREAM.strip().splitlines()[-1].removeprefix(b"data: "))["usageMetadata"]
    assert done.usage.output_tokens == last["candidatesTokenCount"] + last["thoughtsTokenCount"]
    assert done.ttft_ms is not None
    assert broken.status == "incomplete"


def test_async_generate_stream_and_embeddings(
    replay: Replay, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    client = _client(replay)

    async def main() -> None:
        await client.aio.models.generate_content(model="gemini-2.5-flash", contents="hi")
        async for _chunk in await client.aio.models.generate_content_stream(
            model="gemini-2.5-flash", contents="count"
        ):
            pass

    asyncio.run(main())
    client.models.embed_content(model="text-embedding-004", contents="hello")
    generate, stream, embed = ledger.events()
    assert (generate.status, generate.stream) == ("ok", False)
    assert (stream.status, stream.stream) == ("ok", True)
    assert (embed.operation, embed.model, embed.usage_source) == (
        "embeddings",
        "text-embedding-004",
        "missing",
    )


def test_failed_call_is_recorded(
    replay: Replay, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    body: dict[str, Any] = {
        "error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}
    }
    replay.routes[":generateContent"] = (429, json.dumps(body).encode(), JSON)
    with pytest.raises(errors.ClientError):
        _client(replay).models.generate_content(model="gemini-2.5-flash", contents="hi")
    event = ledger.one()
    assert (event.status, event.error_type, event.model) == (
        "error",
        "ClientError",
        "gemini-2.5-flash",
    )
