"""A small HTTP server that answers like OpenAI and Anthropic, with realistic usage.

It serves ``/v1/chat/completions``, ``/v1/responses``, ``/v1/embeddings`` (OpenAI
shapes) and ``/v1/messages`` (Anthropic), streaming and not. Token counts follow
the text sent; a long prompt seen before is served partly from a prompt cache, as
the real services do; reasoning models spend reasoning tokens. Answers are
deterministic for a given request, so a demo gives the same ledger every run.

A message containing ``[fail]`` gets an HTTP 500 in the provider's error shape, so
failed calls can be shown too.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["SimulatedProvider"]

_WORDS = (
    "the ledger records each call with its tokens and cost so every team can see what it "
    "spends on which feature and for which customer while budgets keep the monthly bill "
    "inside the plan and nobody is surprised at the end of the month"
).split()

_CACHE_MIN_TOKENS = 1024  # OpenAI caches prompts of at least this many tokens
_CACHE_BLOCK = 128  # ... in blocks of this size


def _count_tokens(text: str) -> int:
    """Roughly four characters a token, as the providers' own rule of thumb says."""
    return max(1, (len(text) + 3) // 4)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_text_of(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x00".join(parts).encode()).digest()[:8])


def _answer(seed: int, words: int) -> str:
    return " ".join(_WORDS[(seed + i * 7) % len(_WORDS)] for i in range(words)).capitalize() + "."


def _chunks(text: str, size: int = 3) -> Iterator[str]:
    words = text.split(" ")
    for i in range(0, len(words), size):
        yield (" " if i else "") + " ".join(words[i : i + size])


def _is_reasoning_model(model: str) -> bool:
    return model.startswith(("o1", "o3", "o4", "gpt-5"))


class _State:
    """What the simulated provider remembers between calls: its prompt caches."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.openai_prefixes: set[str] = set()
        self.anthropic_cached: set[str] = set()
        self.counter = 0

    def next_id(self) -> int:
        with self.lock:
            self.counter += 1
            return self.counter


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: the demo prints its own report."""

    # -- plumbing ------------------------------------------------------------------

    def _send_json(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_sse(self, events: Iterator[tuple[str | None, str]], headers: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.close_connection = True
        try:
            for event, data in events:
                frame = (f"event: {event}\n" if event else "") + f"data: {data}\n\n"
                self.wfile.write(frame.encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return  # the client stopped reading: a stream closed early

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._send_json(400, {"error": {"message": "invalid JSON body", "type": "invalid_request_error"}}, {})
            return
        path = self.path.split("?", 1)[0].rstrip("/")
        routes = {
            "/v1/chat/completions": self._chat,
            "/v1/responses": self._responses,
            "/v1/embeddings": self._embeddings,
            "/v1/messages": self._messages,
        }
        handler = routes.get(path)
        if handler is None:
            self._send_json(404, {"error": {"message": f"no route {path}", "type": "not_found"}}, {})
            return
        handler(body)

    def _fail_if_asked(self, text: str, anthropic: bool, request_id: str) -> bool:
        if "[fail]" not in text:
            return False
        if anthropic:
            body = {"type": "error", "error": {"type": "api_error", "message": "simulated overload"}}
            self._send_json(500, body, {"request-id": request_id})
        else:
            body = {"error": {"message": "simulated server error", "type": "server_error", "code": None}}
            self._send_json(500, body, {"x-request-id": request_id})
        return True

    # -- OpenAI ----------------------------------------------------------------------

    def _openai_prompt(self, text: str, model: str) -> tuple[int, int]:
        """Prompt tokens and the part served from cache."""
        prompt_tokens = _count_tokens(text) + 7
        cached = 0
        if prompt_tokens >= _CACHE_MIN_TOKENS:
            prefix = f"{model}:{text[:4096]}"
            with self.server.state.lock:
                if prefix in self.server.state.openai_prefixes:
                    cached = (prompt_tokens - 64) // _CACHE_BLOCK * _CACHE_BLOCK
                self.server.state.openai_prefixes.add(prefix)
        return prompt_tokens, cached

    def _chat(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", "gpt-4o-mini"))
        text = " ".join(_text_of(m.get("content")) for m in body.get("messages", []))
        n = self.server.state.next_id()
        request_id = f"req_sim{n:06d}"
        if self._fail_if_asked(text, anthropic=False, request_id=request_id):
            return
        seed = _seed(model, text)
        answer = _answer(seed, 8 + seed % 40)
        prompt_tokens, cached = self._openai_prompt(text, model)
        reasoning = 64 + seed % 512 if _is_reasoning_model(model) else 0
        completion_tokens = _count_tokens(answer) + reasoning
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": reasoning,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        completion_id = f"chatcmpl-sim{n:06d}"
        created = int(time.time())
        tier = body.get("service_tier") or "default"
        headers = {"x-request-id": request_id}
        if not body.get("stream"):
            self._send_json(200, {
                "id": completion_id, "object": "chat.completion", "created": created,
                "model": model, "service_tier": tier, "system_fingerprint": "fp_sim",
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": answer, "refusal": None}}],
                "usage": usage,
            }, headers)
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def events() -> Iterator[tuple[str | None, str]]:
            base = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                    "model": model, "service_tier": tier, "system_fingerprint": "fp_sim"}
            extra = {"usage": None} if include_usage else {}
            first = {"role": "assistant", "content": ""}
            yield None, json.dumps({**base, "choices": [
                {"index": 0, "delta": first, "logprobs": None, "finish_reason": None}], **extra})
            for piece in _chunks(answer):
                yield None, json.dumps({**base, "choices": [
                    {"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}],
                    **extra})
            yield None, json.dumps({**base, "choices": [
                {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}], **extra})
            if include_usage:
                yield None, json.dumps({**base, "choices": [], "usage": usage})
            yield None, "[DONE]"

        self._send_sse(events(), headers)

    def _responses(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", "gpt-4o-mini"))
        raw_input = body.get("input", "")
        text = raw_input if isinstance(raw_input, str) else " ".join(
            _text_of(item.get("content")) for item in raw_input if isinstance(item, dict))
        text = f"{body.get('instructions') or ''} {text}".strip()
        n = self.server.state.next_id()
        request_id = f"req_sim{n:06d}"
        if self._fail_if_asked(text, anthropic=False, request_id=request_id):
            return
        seed = _seed(model, text)
        answer = _answer(seed, 10 + seed % 30)
        input_tokens, cached = self._openai_prompt(text, model)
        reasoning = 128 + seed % 768 if _is_reasoning_model(model) else 0
        output_tokens = _count_tokens(answer) + reasoning
        usage = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": input_tokens + output_tokens,
        }
        response_id = f"resp_sim{n:06d}"
        message_id = f"msg_sim{n:06d}"
        response: dict[str, Any] = {
            "id": response_id, "object": "response", "created_at": int(time.time()),
            "status": "completed", "model": model, "output": [], "parallel_tool_calls": True,
            "tool_choice": "auto", "tools": [], "service_tier": body.get("service_tier") or "default",
            "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
            "metadata": {}, "temperature": 1.0, "top_p": 1.0, "usage": None,
        }
        message = {"id": message_id, "type": "message", "role": "assistant", "status": "completed",
                   "content": [{"type": "output_text", "text": answer, "annotations": []}]}
        headers = {"x-request-id": request_id}
        if not body.get("stream"):
            self._send_json(200, {**response, "output": [message], "usage": usage}, headers)
            return

        def events() -> Iterator[tuple[str | None, str]]:
            seq = iter(range(10_000))
            started = {**response, "status": "in_progress"}
            yield "response.created", json.dumps(
                {"type": "response.created", "sequence_number": next(seq), "response": started})
            yield "response.in_progress", json.dumps(
                {"type": "response.in_progress", "sequence_number": next(seq), "response": started})
            empty = {**message, "status": "in_progress", "content": []}
            yield "response.output_item.added", json.dumps({
                "type": "response.output_item.added", "sequence_number": next(seq),
                "output_index": 0, "item": empty})
            part = {"type": "output_text", "text": "", "annotations": []}
            yield "response.content_part.added", json.dumps({
                "type": "response.content_part.added", "sequence_number": next(seq),
                "item_id": message_id, "output_index": 0, "content_index": 0, "part": part})
            for piece in _chunks(answer):
                yield "response.output_text.delta", json.dumps({
                    "type": "response.output_text.delta", "sequence_number": next(seq),
                    "item_id": message_id, "output_index": 0, "content_index": 0,
                    "delta": piece, "logprobs": []})
            yield "response.output_text.done", json.dumps({
                "type": "response.output_text.done", "sequence_number": next(seq),
                "item_id": message_id, "output_index": 0, "content_index": 0,
                "text": answer, "logprobs": []})
            yield "response.content_part.done", json.dumps({
                "type": "response.content_part.done", "sequence_number": next(seq),
                "item_id": message_id, "output_index": 0, "content_index": 0,
                "part": {**part, "text": answer}})
            yield "response.output_item.done", json.dumps({
                "type": "response.output_item.done", "sequence_number": next(seq),
                "output_index": 0, "item": message})
            yield "response.completed", json.dumps({
                "type": "response.completed", "sequence_number": next(seq),
                "response": {**response, "output": [message], "usage": usage}})

        self._send_sse(events(), headers)

    def _embeddings(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", "text-embedding-3-small"))
        inputs = body.get("input", "")
        items = [inputs] if isinstance(inputs, str) else list(inputs)
        tokens = sum(_count_tokens(str(item)) for item in items)
        n = self.server.state.next_id()
        data = [{"object": "embedding", "index": i,
                 "embedding": [((_seed(str(item)) >> k) % 1000) / 1000 for k in range(8)]}
                for i, item in enumerate(items)]
        self._send_json(200, {"object": "list", "data": data, "model": model,
                              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
                        {"x-request-id": f"req_sim{n:06d}"})

    # -- Anthropic -----------------------------------------------------------------------

    def _messages(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", "claude-sonnet-4-5"))
        system = body.get("system") or ""
        system_blocks = [{"type": "text", "text": system}] if isinstance(system, str) else system
        messages_text = " ".join(_text_of(m.get("content")) for m in body.get("messages", []))
        n = self.server.state.next_id()
        request_id = f"req_sim{n:06d}"
        if self._fail_if_asked(messages_text, anthropic=True, request_id=request_id):
            return
        cached_text = " ".join(b.get("text", "") for b in system_blocks if b.get("cache_control"))
        plain_text = " ".join(b.get("text", "") for b in system_blocks if not b.get("cache_control"))
        cache_read = cache_write_5m = cache_write_1h = 0
        if cached_text:
            ttl = next((b["cache_control"].get("ttl", "5m") for b in system_blocks
                        if b.get("cache_control")), "5m")
            key = f"{model}:{cached_text}"
            with self.server.state.lock:
                seen = key in self.server.state.anthropic_cached
                self.server.state.anthropic_cached.add(key)
            if seen:
                cache_read = _count_tokens(cached_text)
            elif ttl == "1h":
                cache_write_1h = _count_tokens(cached_text)
            else:
                cache_write_5m = _count_tokens(cached_text)
        input_tokens = _count_tokens(f"{plain_text} {messages_text}") + 8
        seed = _seed(model, messages_text)
        answer = _answer(seed, 12 + seed % 50)
        thinking = body.get("thinking") or {}
        thinking_tokens = 0
        if thinking.get("type") == "enabled":
            thinking_tokens = min(int(thinking.get("budget_tokens", 1024)), 200 + seed % 600)
        output_tokens = _count_tokens(answer) + thinking_tokens
        usage = {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": cache_write_5m + cache_write_1h,
            "cache_read_input_tokens": cache_read,
            "cache_creation": {"ephemeral_5m_input_tokens": cache_write_5m,
                               "ephemeral_1h_input_tokens": cache_write_1h},
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }
        message_id = f"msg_sim{n:06d}"
        headers = {"request-id": request_id}
        content: list[dict[str, Any]] = []
        if thinking_tokens:
            content.append({"type": "thinking", "thinking": "Considering the question.",
                            "signature": "sim"})
        content.append({"type": "text", "text": answer})
        message = {"id": message_id, "type": "message", "role": "assistant", "model": model,
                   "content": content, "stop_reason": "end_turn", "stop_sequence": None,
                   "usage": usage}
        if not body.get("stream"):
            self._send_json(200, message, headers)
            return

        def events() -> Iterator[tuple[str | None, str]]:
            start = {**message, "content": [], "stop_reason": None,
                     "usage": {**usage, "output_tokens": 1}}
            yield "message_start", json.dumps({"type": "message_start", "message": start})
            index = 0
            if thinking_tokens:
                yield "content_block_start", json.dumps({
                    "type": "content_block_start", "index": 0,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
                yield "content_block_delta", json.dumps({
                    "type": "content_block_delta", "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": "Considering the question."}})
                yield "content_block_delta", json.dumps({
                    "type": "content_block_delta", "index": 0,
                    "delta": {"type": "signature_delta", "signature": "sim"}})
                yield "content_block_stop", json.dumps({"type": "content_block_stop", "index": 0})
                index = 1
            yield "content_block_start", json.dumps({
                "type": "content_block_start", "index": index,
                "content_block": {"type": "text", "text": ""}})
            yield "ping", json.dumps({"type": "ping"})
            for piece in _chunks(answer):
                yield "content_block_delta", json.dumps({
                    "type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": piece}})
            yield "content_block_stop", json.dumps({"type": "content_block_stop", "index": index})
            yield "message_delta", json.dumps({
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": output_tokens, "input_tokens": input_tokens,
                          "cache_creation_input_tokens": cache_write_5m + cache_write_1h,
                          "cache_read_input_tokens": cache_read}})
            yield "message_stop", json.dumps({"type": "message_stop"})

        self._send_sse(events(), headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State


class SimulatedProvider:
    """Run the simulated provider on a free loopback port, in a background thread.

    Example:
        >>> with SimulatedProvider() as sim:
        ...     sim.openai_base_url.startswith("http://127.0.0.1:")
        True
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port), _Handler)
        self._server.state = _State()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The server's root URL."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_base_url(self) -> str:
        """The ``base_url`` to give an ``openai`` client."""
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """The ``base_url`` to give an ``anthropic`` client."""
        return self.url

    def start(self) -> SimulatedProvider:
        """Start serving in a daemon thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="llmledger-sim",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> SimulatedProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
