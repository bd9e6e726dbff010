"""Capture overhead on the caller's thread (DESIGN §8): per non-streamed call and per chunk.

Two measurements, each against the uninstrumented client in the same run:

1. The hook alone: the SDK's base-client ``request`` method, hooked as
   :func:`llmledger.instrument` hooks it, around a stand-in for the HTTP round
   trip that returns a ready response (a parsed ``ChatCompletion``, or a real
   ``openai.Stream`` over a canned SSE body), against the same stand-in called
   directly. This isolates the time the hook adds on the caller's thread, which
   is what the targets are about; it is precise to a fraction of a microsecond.
2. End to end: the real ``openai`` client over an in-process
   ``httpx2.MockTransport``, with and without instrumentation, interleaved in
   rounds. The SDK itself takes milliseconds per call here, so this figure is
   only as precise as the machine is quiet; it shows the order of magnitude.

The ledger's ``submit`` is a deque append, so what is measured is the hook (the
writer's queue is measured by ``bench_write.py``); building, pricing and
writing the events happen in the background writer.

Run:
    .venv/bin/python bench/bench_capture.py [--calls 3000] [--chunks 2000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import openai

import llmledger.runtime.ledger
from llmledger.capture import CaptureOptions, instrument
from llmledger.core.settings import load_settings
from llmledger.runtime.ledger import Ledger

RECORDED = Path(__file__).parent.parent / "tests" / "fixtures" / "recorded"
MESSAGES: Any = [{"role": "user", "content": "hi"}]


class QueueLedger(Ledger):
    """Submits into a deque, as cheap as a queue put, and never builds the events."""

    def __init__(self) -> None:
        super().__init__(load_settings(strict=False))
        self.queue: deque[Any] = deque(maxlen=1_000)  # the writer drains it

    def submit(self, item: Any) -> None:
        self.queue.append(item)


def _stream_body(chunks: int) -> bytes:
    first = RECORDED.joinpath("openai_chat_stream_include_usage.sse").read_bytes().split(b"\n\n")[1]
    return first + b"\n\n" + (first + b"\n\n") * (chunks - 1) + b"data: [DONE]\n\n"


def _client(stream_chunks: int) -> openai.OpenAI:
    chat = RECORDED.joinpath("openai_chat_prompt_cache_hit.json").read_bytes()
    stream = _stream_body(stream_chunks)

    def handler(request: httpx2.Request) -> httpx2.Response:
        if json.loads(request.content).get("stream"):
            return httpx2.Response(
                200, content=stream, headers={"content-type": "text/event-stream"}
            )
        return httpx2.Response(200, content=chat, headers={"content-type": "application/json"})

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    return openai.OpenAI(api_key="sk-bench", http_client=http, max_retries=0)


def _time_calls(client: openai.OpenAI, calls: int) -> list[float]:
    create = client.chat.completions.create
    times = []
    clock = time.perf_counter
    for _ in range(calls):
        started = clock()
        create(model="gpt-4o-mini", messages=MESSAGES)
        times.append(clock() - started)
    return times


def _interleaved(measure: Callable[[], Any], rounds: int) -> tuple[list[Any], list[Any]]:
    plain: list[Any] = []
    hooked: list[Any] = []
    for _ in range(rounds):
        for target, on in ((plain, False), (hooked, True)):
            handle = instrument() if on else None
            gc.collect()
            try:
                target.append(measure())
            finally:
                if handle is not None:
                    handle.uninstrument()
    return plain, hooked


def _hook_cost_per_call(client: openai.OpenAI, iterations: int, rounds: int) -> tuple[float, float]:
    """Median seconds per call of the stand-in alone and of the hooked stand-in."""
    from openai._models import FinalRequestOptions
    from openai.types.chat import ChatCompletion

    from llmledger.capture import openai as openai_capture
    from llmledger.capture._stainless import _sync_request

    completion = ChatCompletion.model_validate_json(
        RECORDED.joinpath("openai_chat_prompt_cache_hit.json").read_bytes()
    )
    options = FinalRequestOptions.construct(
        method="post",
        url="/chat/completions",
        json_data={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": False},
    )

    def stand_in(self: Any, cast_to: Any, request_options: Any, **kwargs: Any) -> Any:
        return completion

    hooked = _sync_request(openai_capture.sdk(), CaptureOptions(), stand_in)
    plain_runs: list[float] = []
    hooked_runs: list[float] = []
    clock = time.perf_counter
    for _ in range(rounds):
        for fn, runs in ((stand_in, plain_runs), (hooked, hooked_runs)):
            gc.collect()
            started = clock()
            for _ in range(iterations):
                fn(client, ChatCompletion, options, stream=False)
            runs.append((clock() - started) / iterations)
    return statistics.median(plain_runs), statistics.median(hooked_runs)


def _hook_cost_per_chunk(client: openai.OpenAI, chunks: int, rounds: int) -> tuple[float, float]:
    """Median seconds per chunk of reading a real ``openai.Stream``, plain and tracked."""
    from openai._models import FinalRequestOptions
    from openai.types.chat import ChatCompletionChunk

    from llmledger.capture import openai as openai_capture
    from llmledger.capture._stainless import _sync_request

    body = _stream_body(chunks)
    options = FinalRequestOptions.construct(
        method="post",
        url="/chat/completions",
        json_data={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
    )

    request = httpx2.Request("POST", "https://api.openai.com/v1/chat/completions")
    parsed = list(
        openai.Stream(
            cast_to=ChatCompletionChunk,
            client=client,
            response=httpx2.Response(
                200, content=body, request=request, headers={"content-type": "text/event-stream"}
            ),
        )
    )

    def stand_in(self: Any, cast_to: Any, request_options: Any, **kwargs: Any) -> Any:
        # A real ``openai.Stream`` whose chunks are already parsed: the SDK's own
        # parsing (hundreds of µs per chunk here) would drown the figure in noise.
        response = httpx2.Response(
            200, content=b"", request=request, headers={"content-type": "text/event-stream"}
        )
        stream = openai.Stream(cast_to=ChatCompletionChunk, response=response, client=client)
        stream._iterator = iter(parsed)
        return stream

    hooked = _sync_request(openai_capture.sdk(), CaptureOptions(), stand_in)
    plain_runs: list[float] = []
    hooked_runs: list[float] = []
    clock = time.perf_counter
    for _ in range(rounds):
        for fn, runs in ((stand_in, plain_runs), (hooked, hooked_runs)):
            stream = fn(client, ChatCompletionChunk, options, stream=True)
            gc.collect()
            started = clock()
            count = sum(1 for _ in stream)
            runs.append((clock() - started) / count)
            del stream
    return statistics.median(plain_runs), statistics.median(hooked_runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="hooked calls per round")
    parser.add_argument("--chunks", type=int, default=5_000, help="chunks per stream")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--e2e-calls", type=int, default=500, help="end-to-end calls per round")
    args = parser.parse_args()

    llmledger.runtime.ledger._ledger = QueueLedger()
    client = _client(200)

    plain, hooked = _hook_cost_per_call(client, args.calls, args.rounds)
    print(
        f"hook, non-streamed call: {plain * 1e6:7.2f} µs without, {hooked * 1e6:7.2f} µs with "
        f"-> added {(hooked - plain) * 1e6:.2f} µs per call (target <= 10)"
    )
    plain, hooked = _hook_cost_per_chunk(client, args.chunks, args.rounds)
    print(
        f"hook, streamed chunk:    {plain * 1e6:7.2f} µs without, {hooked * 1e6:7.2f} µs with "
        f"-> added {(hooked - plain) * 1e6:.3f} µs per chunk (target <= 1)"
    )

    _time_calls(client, 50)  # warm up
    runs_plain, runs_hooked = _interleaved(lambda: _time_calls(client, args.e2e_calls), args.rounds)
    e2e_plain = statistics.median(t for run in runs_plain for t in run)
    e2e_hooked = statistics.median(t for run in runs_hooked for t in run)
    print(
        f"end to end (noisy), call: {e2e_plain * 1e6:7.1f} µs without, "
        f"{e2e_hooked * 1e6:7.1f} µs with -> {(e2e_hooked - e2e_plain) * 1e6:+.1f} µs"
    )


if __name__ == "__main__":
    main()
