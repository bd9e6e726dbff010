"""A process spending against the limits from several threads: the worker of the
concurrency tests (``python -m tests.limits_worker THREADS CALLS``).

Its ledger comes from the environment (``LLMLEDGER_DATABASE_URL``, or ``LLMLEDGER_URL``
and ``LLMLEDGER_API_KEY`` for the service); every call is a guarded call of the real
``openai`` client to a provider (``httpx.MockTransport``) that counts the requests
reaching it.  Prints one JSON line: requests, allowed and blocked calls.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import httpx
import openai

import llmledger
from llmledger.capture import instrument

#: What the provider answers: 10 input and 20 output tokens, always less than the
#: estimate (request bytes at one byte per token, and max_tokens=20).
RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-limits",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Paris."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
}


def _any(client: Any) -> Any:
    """The SDK's own annotations name its vendored httpx; the client is httpx's."""
    return client


def main(threads: int, calls: int) -> dict[str, int]:
    """Run ``threads`` threads of ``calls`` guarded calls each; the counts."""
    llmledger.configure(limits=True, limit_bytes_per_token=1)
    lock = threading.Lock()
    counts = {"requests": 0, "allowed": 0, "blocked": 0}

    def count(name: str) -> None:
        with lock:
            counts[name] += 1

    def handle(request: httpx.Request) -> httpx.Response:
        count("requests")
        return httpx.Response(200, json=RESPONSE)

    client = openai.OpenAI(
        api_key="sk-test",
        base_url="https://api.openai.com/v1",
        max_retries=0,
        http_client=_any(httpx.Client(transport=httpx.MockTransport(handle))),
    )

    def spend() -> None:
        for _ in range(calls):
            with llmledger.attribute(tenant="acme", user="ana"):
                try:
                    client.chat.completions.create(
                        model="gpt-4o",
                        messages=[{"role": "user", "content": "The capital of France?"}],
                        max_tokens=20,
                    )
                    count("allowed")
                except llmledger.LimitExceededError:
                    count("blocked")

    with instrument():
        workers = [threading.Thread(target=spend) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    if not llmledger.flush(120):
        raise SystemExit("the events were not all written")
    return counts


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]))))
