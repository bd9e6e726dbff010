"""The Gemini-compatible endpoints: ``generateContent`` and ``streamGenerateContent``.

Shapes as the Gemini API (``generativelanguage.googleapis.com``) sends them: a
thinking model (``gemini-2.5-*``) spends ``thoughtsTokenCount`` outside
``candidatesTokenCount``, and a stream repeats the cumulative ``usageMetadata`` on
every chunk.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from llmledger.sim.base import Responder, answer_text, chunks, count_tokens, seed_of

__all__ = ["GeminiRoutes"]


def _contents_text(body: dict[str, Any]) -> str:
    parts: list[str] = []
    system = body.get("systemInstruction") or body.get("system_instruction") or {}
    for source in ([system] if isinstance(system, dict) else []) + list(body.get("contents", [])):
        if isinstance(source, dict):
            parts.extend(
                str(part.get("text", ""))
                for part in source.get("parts", [])
                if isinstance(part, dict)
            )
    return " ".join(parts)


class GeminiRoutes(Responder):
    """Answers ``/v1beta/models/{model}:generateContent`` and ``:streamGenerateContent``."""

    def _gemini(self, model: str, body: dict[str, Any], *, stream: bool) -> None:
        text = _contents_text(body)
        n = self._begin(text, anthropic=False)
        if n is None:
            return
        seed = seed_of(model, text)
        answer = answer_text(seed, 10 + seed % 40)
        prompt = count_tokens(text) + 4
        candidates = count_tokens(answer)
        config = body.get("generationConfig") or {}
        thinking = config.get("thinkingConfig") or {}
        budget = thinking.get("thinkingBudget")
        thoughts = 0
        if model.startswith("gemini-2.5") and budget != 0:
            thoughts = 40 + seed % 300
        response_id = f"sim{n:06d}"

        def usage(output: int) -> dict[str, Any]:
            meta: dict[str, Any] = {
                "promptTokenCount": prompt,
                "candidatesTokenCount": output,
                "totalTokenCount": prompt + output + thoughts,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
            }
            if thoughts:
                meta["thoughtsTokenCount"] = thoughts
            return meta

        def chunk(piece: str, output: int, last: bool) -> dict[str, Any]:
            candidate: dict[str, Any] = {
                "content": {"parts": [{"text": piece}], "role": "model"},
                "index": 0,
            }
            if last:
                candidate["finishReason"] = "STOP"
            return {
                "candidates": [candidate],
                "usageMetadata": usage(output),
                "modelVersion": model,
                "responseId": response_id,
            }

        if not stream:
            self._send_json(200, chunk(answer, candidates, True), {})
            return
        pieces = list(chunks(answer, size=6))

        def events() -> Iterator[tuple[str | None, str]]:
            sent = ""
            for i, piece in enumerate(pieces):
                sent += piece
                last = i == len(pieces) - 1
                output = candidates if last else count_tokens(sent)
                yield None, json.dumps(chunk(piece, output, last))

        self._send_sse(events(), {})
