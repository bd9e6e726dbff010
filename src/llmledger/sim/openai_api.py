"""The OpenAI-compatible endpoints: chat completions, Responses and embeddings."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from llmledger.sim.base import (
    CACHE_BLOCK,
    CACHE_MIN_TOKENS,
    Responder,
    answer_text,
    chunks,
    count_tokens,
    is_reasoning_model,
    seed_of,
    text_of,
)

__all__ = ["OpenAIRoutes"]


class OpenAIRoutes(Responder):
    """Answers ``/v1/chat/completions``, ``/v1/responses`` and ``/v1/embeddings``."""

    def _openai_prompt(self, text: str, model: str) -> tuple[int, int]:
        """Prompt tokens and the part served from cache."""
        prompt_tokens = count_tokens(text) + 7
        cached = 0
        if prompt_tokens >= CACHE_MIN_TOKENS:
            prefix = f"{model}:{text[:4096]}"
            with self.server.state.lock:
                if prefix in self.server.state.openai_prefixes:
                    cached = (prompt_tokens - 64) // CACHE_BLOCK * CACHE_BLOCK
                self.server.state.openai_prefixes.add(prefix)
        return prompt_tokens, cached

    def _chat(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", "gpt-4o-mini"))
        text = " ".join(text_of(m.get("content")) for m in body.get("messages", []))
        n = self._begin(text, anthropic=False)
        if n is None:
            return
        request_id = f"req_sim{n:06d}"
        seed = seed_of(model, text)
        answer = answer_text(seed, 8 + seed % 40)
        prompt_tokens, cached = self._openai_prompt(text, model)
        reasoning = 64 + seed % 512 if is_reasoning_model(model) else 0
        completion_tokens = count_tokens(answer) + reasoning
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
            self._send_json(
                200,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "service_tier": tier,
                    "system_fingerprint": "fp_sim",
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "logprobs": None,
                            "message": {"role": "assistant", "content": answer, "refusal": None},
                        }
                    ],
                    "usage": usage,
                },
                headers,
            )
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def events() -> Iterator[tuple[str | None, str]]:
            base = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": tier,
                "system_fingerprint": "fp_sim",
            }
            extra = {"usage": None} if include_usage else {}
            first = {"role": "assistant", "content": ""}
            yield (
                None,
                json.dumps(
                    {
                        **base,
                        "choices": [
                            {"index": 0, "delta": first, "logprobs": None, "finish_reason": None}
                        ],
                        **extra,
                    }
                ),
            )
            for piece in chunks(answer):
                yield (
                    None,
                    json.dumps(
                        {
                            **base,
                            "choices": [
                                {
                                    "index": 0,
                                    "delta": {"content": piece},
                                    "logprobs": None,
                                    "finish_reason": None,
                                }
                            ],
                            **extra,
                        }
                    ),
                )
            yield (
                None,
                json.dumps(
                    {
                        **base,
                        "choices": [
                            {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
                        ],
                        **extra,
                    }
                ),
            )
            if include_usage:
                yield None, json.dumps({**base, "choices": [], "usage": usage})
            yield None, "[DONE]"

        self._send_sse(events(), headers)

    def _responses(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", "gpt-4o-mini"))
        raw_input = body.get("input", "")
        text = (
            raw_input
            if isinstance(raw_input, str)
            else " ".join(
                text_of(item.get("content")) for item in raw_input if isinstance(item, dict)
            )
        )
        text = f"{body.get('instructions') or ''} {text}".strip()
        n = self._begin(text, anthropic=False)
        if n is None:
            return
        request_id = f"req_sim{n:06d}"
        seed = seed_of(model, text)
        answer = answer_text(seed, 10 + seed % 30)
        input_tokens, cached = self._openai_prompt(text, model)
        reasoning = 128 + seed % 768 if is_reasoning_model(model) else 0
        output_tokens = count_tokens(answer) + reasoning
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
            "id": response_id,
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": model,
            "output": [],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "service_tier": body.get("service_tier") or "default",
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "metadata": {},
            "temperature": 1.0,
            "top_p": 1.0,
            "usage": None,
        }
        message = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": answer, "annotations": []}],
        }
        headers = {"x-request-id": request_id}
        if not body.get("stream"):
            self._send_json(200, {**response, "output": [message], "usage": usage}, headers)
            return

        def events() -> Iterator[tuple[str | None, str]]:
            seq = iter(range(10_000))
            started = {**response, "status": "in_progress"}
            yield (
                "response.created",
                json.dumps(
                    {"type": "response.created", "sequence_number": next(seq), "response": started}
                ),
            )
            yield (
                "response.in_progress",
                json.dumps(
                    {
                        "type": "response.in_progress",
                        "sequence_number": next(seq),
                        "response": started,
                    }
                ),
            )
            empty = {**message, "status": "in_progress", "content": []}
            yield (
                "response.output_item.added",
                json.dumps(
                    {
                        "type": "response.output_item.added",
                        "sequence_number": next(seq),
                        "output_index": 0,
                        "item": empty,
                    }
                ),
            )
            part = {"type": "output_text", "text": "", "annotations": []}
            yield (
                "response.content_part.added",
                json.dumps(
                    {
                        "type": "response.content_part.added",
                        "sequence_number": next(seq),
                        "item_id": message_id,
                        "output_index": 0,
                        "content_index": 0,
                        "part": part,
                    }
                ),
            )
            for piece in chunks(answer):
                yield (
                    "response.output_text.delta",
                    json.dumps(
                        {
                            "type": "response.output_text.delta",
                            "sequence_number": next(seq),
                            "item_id": message_id,
                            "output_index": 0,
                            "content_index": 0,
                            "delta": piece,
                            "logprobs": [],
                        }
                    ),
                )
            yield (
                "response.output_text.done",
                json.dumps(
                    {
                        "type": "response.output_text.done",
                        "sequence_number": next(seq),
                        "item_id": message_id,
                        "output_index": 0,
                        "content_index": 0,
                        "text": answer,
                        "logprobs": [],
                    }
                ),
            )
            yield (
                "response.content_part.done",
                json.dumps(
                    {
                        "type": "response.content_part.done",
                        "sequence_number": next(seq),
                        "item_id": message_id,
                        "output_index": 0,
                        "content_index": 0,
                        "part": {**part, "text": answer},
                    }
                ),
            )
            yield (
                "response.output_item.done",
                json.dumps(
                    {
                        "type": "response.output_item.done",
                        "sequence_number": next(seq),
                        "output_index": 0,
                        "item": message,
                    }
                ),
            )
            yield (
                "response.completed",
                json.dumps(
                    {
                        "type": "response.completed",
                        "sequence_number": next(seq),
                        "response": {**response, "output": [message], "usage": usage},
                    }
                ),
            )

        self._send_sse(events(), headers)

    def _embeddings(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", "text-embedding-3-small"))
        inputs = body.get("input", "")
        items = [inputs] if isinstance(inputs, str) else list(inputs)
        tokens = sum(count_tokens(str(item)) for item in items)
        n = self.server.state.next_id()
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": [((seed_of(str(item)) >> k) % 1000) / 1000 for k in range(8)],
            }
            for i, item in enumerate(items)
        ]
        self._send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            {"x-request-id": f"req_sim{n:06d}"},
        )

    # -- Anthropic -----------------------------------------------------------------------
