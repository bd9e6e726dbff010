"""The Anthropic-compatible endpoint: ``/v1/messages``, streaming and not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from llmledger.sim.base import Responder, answer_text, chunks, count_tokens, seed_of, text_of

__all__ = ["AnthropicRoutes"]


class AnthropicRoutes(Responder):
    """Answers ``/v1/messages`` with Anthropic's shapes, prompt caching and thinking."""

    def _messages(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", "claude-sonnet-4-5"))
        system = body.get("system") or ""
        system_blocks: list[dict[str, Any]] = (
            [{"type": "text", "text": system}] if isinstance(system, str) else list(system)
        )
        messages_text = " ".join(text_of(m.get("content")) for m in body.get("messages", []))
        n = self._begin(messages_text, anthropic=True)
        if n is None:
            return
        request_id = f"req_sim{n:06d}"
        cached_text = " ".join(b.get("text", "") for b in system_blocks if b.get("cache_control"))
        plain_text = " ".join(
            b.get("text", "") for b in system_blocks if not b.get("cache_control")
        )
        cache_read = cache_write_5m = cache_write_1h = 0
        if cached_text:
            ttl = next(
                (
                    b["cache_control"].get("ttl", "5m")
                    for b in system_blocks
                    if b.get("cache_control")
                ),
                "5m",
            )
            key = f"{model}:{cached_text}"
            with self.server.state.lock:
                seen = key in self.server.state.anthropic_cached
                self.server.state.anthropic_cached.add(key)
            if seen:
                cache_read = count_tokens(cached_text)
            elif ttl == "1h":
                cache_write_1h = count_tokens(cached_text)
            else:
                cache_write_5m = count_tokens(cached_text)
        input_tokens = count_tokens(f"{plain_text} {messages_text}") + 8
        seed = seed_of(model, messages_text)
        answer = answer_text(seed, 12 + seed % 50)
        thinking = body.get("thinking") or {}
        thinking_tokens = 0
        if thinking.get("type") == "enabled":
            thinking_tokens = min(int(thinking.get("budget_tokens", 1024)), 200 + seed % 600)
        output_tokens = count_tokens(answer) + thinking_tokens
        usage = {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": cache_write_5m + cache_write_1h,
            "cache_read_input_tokens": cache_read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": cache_write_5m,
                "ephemeral_1h_input_tokens": cache_write_1h,
            },
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }
        message_id = f"msg_sim{n:06d}"
        headers = {"request-id": request_id}
        content: list[dict[str, Any]] = []
        if thinking_tokens:
            content.append(
                {"type": "thinking", "thinking": "Considering the question.", "signature": "sim"}
            )
        content.append({"type": "text", "text": answer})
        message = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            self._send_json(200, message, headers)
            return

        def events() -> Iterator[tuple[str | None, str]]:
            start = {
                **message,
                "content": [],
                "stop_reason": None,
                "usage": {**usage, "output_tokens": 1},
            }
            yield "message_start", json.dumps({"type": "message_start", "message": start})
            index = 0
            if thinking_tokens:
                yield (
                    "content_block_start",
                    json.dumps(
                        {
                            "type": "content_block_start",
                            "index": 0,
                            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                        }
                    ),
                )
                yield (
                    "content_block_delta",
                    json.dumps(
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {
                                "type": "thinking_delta",
                                "thinking": "Considering the question.",
                            },
                        }
                    ),
                )
                yield (
                    "content_block_delta",
                    json.dumps(
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "signature_delta", "signature": "sim"},
                        }
                    ),
                )
                yield "content_block_stop", json.dumps({"type": "content_block_stop", "index": 0})
                index = 1
            yield (
                "content_block_start",
                json.dumps(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    }
                ),
            )
            yield "ping", json.dumps({"type": "ping"})
            for piece in chunks(answer):
                yield (
                    "content_block_delta",
                    json.dumps(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": piece},
                        }
                    ),
                )
            yield "content_block_stop", json.dumps({"type": "content_block_stop", "index": index})
            yield (
                "message_delta",
                json.dumps(
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": {
                            "output_tokens": output_tokens,
                            "input_tokens": input_tokens,
                            "cache_creation_input_tokens": cache_write_5m + cache_write_1h,
                            "cache_read_input_tokens": cache_read,
                        },
                    }
                ),
            )
            yield "message_stop", json.dumps({"type": "message_stop"})

        self._send_sse(events(), headers)
