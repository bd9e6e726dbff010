"""What the scanners look for inside strings and comments: provider hosts, key names."""

from __future__ import annotations

import re

from llmledger.core.providers import provider_of_host

__all__ = ["IGNORE_MARK", "KEY_NAME", "provider_in_text"]

#: A comment holding this accepts the findings of its line.
IGNORE_MARK = "llmledger: ignore"

#: Names of provider API keys, as environment variables and settings spell them.
KEY_NAME = re.compile(
    r"^(OPENAI|AZURE_OPENAI|ANTHROPIC|CLAUDE|GEMINI|GOOGLE|GOOGLE_GENAI|GOOGLE_AI|MISTRAL|"
    r"COHERE|CO|GROQ|DEEPSEEK|XAI|GROK|TOGETHER|FIREWORKS|PERPLEXITY|OPENROUTER|CEREBRAS)"
    r"_(API_)?KEY$"
)

_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*\.[A-Za-z]{2,}")


def provider_in_text(text: str) -> str | None:
    """The provider whose API host a string names (a URL or a bare host), or None.

    Example:
        >>> provider_in_text("https://api.anthropic.com/v1/messages")
        'anthropic'
        >>> provider_in_text("see api.openai.com.example.org") is None
        True
    """
    for match in _HOST.finditer(text):
        provider = provider_of_host(match.group(0))
        if provider is not None:
            return provider
    return None
