"""LiteLLM's reading and cost of each recorded response, for bench/accuracy.

Runs in LiteLLM's own virtual environment (bench/accuracy/run makes it), never in
llmledger's. Each case's recorded body is served by an HTTP server on 127.0.0.1 and
LiteLLM calls it as it would call the provider, so what is measured is LiteLLM's own
parsing and pricing of that body. The price map is LiteLLM's bundled copy
(``LITELLM_LOCAL_MODEL_COST_MAP=True``): nothing leaves the machine.

Reads the cases as JSON on stdin and writes one JSON result per case to the file named
as its argument (LiteLLM prints to stdout itself).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ.setdefault("LITELLM_LOG", "CRITICAL")

import litellm  # the variable above must be set before the import

litellm.suppress_debug_info = True

CONTENT_TYPES = {
    ".json": "application/json",
    ".sse": "text/event-stream",
    ".jsonl": "application/x-ndjson",
    ".bin": "application/vnd.amazon.eventstream",
}


class _Served:
    body = b""
    content_type = "application/json"


class _Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(200)
        self.send_header("content-type", _Served.content_type)
        self.send_header("content-length", str(len(_Served.body)))
        self.end_headers()
        self.wfile.write(_Served.body)

    do_POST = _answer
    do_GET = _answer

    def log_message(self, format: str, *args: Any) -> None:
        return


def _get(obj: Any, *names: str) -> Any:
    for name in names:
        if obj is None:
            return None
        obj = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
    return obj


def _buckets(usage: Any) -> dict[str, int]:
    """LiteLLM's usage object (chat or Responses shape) in llmledger's bucket names."""
    found = {
        "input_tokens": _get(usage, "prompt_tokens") or _get(usage, "input_tokens"),
        "cache_read_tokens": _get(usage, "prompt_tokens_details", "cached_tokens")
        or _get(usage, "input_tokens_details", "cached_tokens")
        or _get(usage, "cache_read_input_tokens"),
        "cache_write_tokens": _get(usage, "cache_creation_input_tokens")
        or _get(usage, "prompt_tokens_details", "cache_creation_tokens"),
        "input_audio_tokens": _get(usage, "prompt_tokens_details", "audio_tokens")
        or _get(usage, "input_tokens_details", "audio_tokens"),
        "input_image_tokens": _get(usage, "prompt_tokens_details", "image_tokens")
        or _get(usage, "input_tokens_details", "image_tokens"),
        "output_tokens": _get(usage, "completion_tokens") or _get(usage, "output_tokens"),
        "reasoning_tokens": _get(usage, "completion_tokens_details", "reasoning_tokens")
        or _get(usage, "output_tokens_details", "reasoning_tokens"),
        "output_audio_tokens": _get(usage, "completion_tokens_details", "audio_tokens")
        or _get(usage, "output_tokens_details", "audio_tokens"),
    }
    return {name: int(value) for name, value in found.items() if isinstance(value, int) and value}


def _call(case: dict[str, Any], base: str) -> Any:
    peer = case["litellm"]
    kwargs: dict[str, Any] = {"api_key": "sk-bench", "api_base": base, **peer.get("kwargs", {})}
    kind = peer.get("call", "completion")
    messages = [{"role": "user", "content": "hello"}]
    if kind == "embedding":
        return litellm.embedding(model=peer["model"], input=["hello"], **kwargs)
    if kind == "responses":
        if case["stream"]:
            stream = litellm.responses(model=peer["model"], input="hello", stream=True, **kwargs)
            events = list(stream)
            done = [e for e in events if _get(e, "type") == "response.completed"]
            return _get(done[-1], "response") if done else None
        return litellm.responses(model=peer["model"], input="hello", **kwargs)
    if case["stream"]:
        chunks = list(
            litellm.completion(model=peer["model"], messages=messages, stream=True, **kwargs)
        )
        return litellm.stream_chunk_builder(chunks, messages=messages)
    return litellm.completion(model=peer["model"], messages=messages, **kwargs)


def _cost(response: Any) -> float | None:
    hidden = getattr(response, "_hidden_params", None) or {}
    cost = hidden.get("response_cost") if isinstance(hidden, dict) else None
    if cost is None:
        cost = litellm.completion_cost(completion_response=response)
    return None if cost is None else float(cost)


def main() -> None:
    cases = json.load(sys.stdin)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    results: dict[str, Any] = {}
    for case in cases:
        peer = case.get("litellm") or {}
        if not peer or peer.get("unsupported"):
            why = peer.get("unsupported") or "no LiteLLM call for this shape"
            results[case["id"]] = {"supported": False, "why": why}
            continue
        path = Path(case["path"])
        _Served.body = path.read_bytes()
        _Served.content_type = CONTENT_TYPES[path.suffix]
        try:
            response = _call(case, base)
            buckets = _buckets(_get(response, "usage"))
            if not buckets:
                # Every count zero: LiteLLM did not find the usage in this shape.
                why = f"read no usage from it (cost {_cost(response)})"
                results[case["id"]] = {"supported": False, "why": why}
                continue
            cost = _cost(response)
            results[case["id"]] = {
                "supported": True,
                "buckets": buckets,
                "cost": cost,
                "note": "a cost of $0, with no error or warning" if cost == 0 else "",
            }
        except Exception as exc:  # a peer's failure is a result to report, not a crash
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            results[case["id"]] = {"supported": False, "why": last[:300]}
    server.shutdown()
    Path(sys.argv[1]).write_text(json.dumps({"version": _version(), "results": results}))


def _version() -> str:
    from importlib.metadata import version

    return version("litellm")


if __name__ == "__main__":
    main()
