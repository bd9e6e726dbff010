"""Provider names: the other spellings of llmledger's provider names, in one table.

Frameworks and people name providers their own way (LiteLLM's ``vertex_ai``,
LangChain's ``google_genai``, ``aws-bedrock`` in a price file).  Capture, pricing
and price files all turn such a name into llmledger's with :func:`provider_name`,
so a spelling added here is understood everywhere at once.
"""

from __future__ import annotations

__all__ = [
    "OPENAI_COMPATIBLE_HOSTS",
    "PROVIDER_ALIASES",
    "PROVIDER_HOSTS",
    "provider_name",
    "provider_of_host",
]

#: Hosts of providers that speak OpenAI's API -> llmledger's provider name.
OPENAI_COMPATIBLE_HOSTS: dict[str, str] = {
    "api.openai.com": "openai",
    "openrouter.ai": "openrouter",
    "api.mistral.ai": "mistral",
    "api.deepseek.com": "deepseek",
    "api.groq.com": "groq",
    "api.together.xyz": "together",
    "api.together.ai": "together",
    "api.fireworks.ai": "fireworks",
    "api.x.ai": "xai",
    "api.perplexity.ai": "perplexity",
    "api.cerebras.ai": "cerebras",
}
#: Every provider API host known by name -> llmledger's provider name.
PROVIDER_HOSTS: dict[str, str] = {
    **OPENAI_COMPATIBLE_HOSTS,
    "api.anthropic.com": "anthropic",
    "generativelanguage.googleapis.com": "google",
    "aiplatform.googleapis.com": "google",
    "api.cohere.ai": "cohere",
    "api.cohere.com": "cohere",
}
#: Host suffixes of providers with a host per region or resource.
_HOST_SUFFIXES: dict[str, str] = {
    ".openai.azure.com": "azure",
    ".services.ai.azure.com": "azure",
    "-aiplatform.googleapis.com": "google",
}

#: Another spelling (lower case) -> llmledger's provider name.
PROVIDER_ALIASES: dict[str, str] = {
    # Google's Gemini API, as SDKs, LiteLLM and LangChain name it.
    "gemini": "google",
    "google-genai": "google",
    "google_genai": "google",
    # Vertex AI (Google Cloud) is a provider of its own: its list prices differ from
    # the Gemini API's for some models, so a call must say where it ran.
    "vertexai": "vertex",
    "vertex_ai": "vertex",
    "vertex_ai_beta": "vertex",
    "google_vertexai": "vertex",
    "google_anthropic_vertex": "vertex",
    # AWS Bedrock.
    "aws": "bedrock",
    "aws-bedrock": "bedrock",
    "amazon-bedrock": "bedrock",
    "amazon_bedrock": "bedrock",
    "bedrock_converse": "bedrock",
    # Azure OpenAI and Azure AI.
    "azure-openai": "azure",
    "azure_openai": "azure",
    "azure_ai": "azure",
    "azure_text": "azure",
    # OpenAI-compatible providers, by LiteLLM's and LangChain's names.
    "text-completion-openai": "openai",
    "x-ai": "xai",
    "together-ai": "together",
    "together_ai": "together",
    "fireworks-ai": "fireworks",
    "fireworks_ai": "fireworks",
    "mistralai": "mistral",
    "codestral": "mistral",
    "ollama_chat": "ollama",
    "cohere_chat": "cohere",
    # OpenTelemetry GenAI conventions: gen_ai.provider.name (and gen_ai.system before it).
    "aws.bedrock": "bedrock",
    "gcp.gen_ai": "google",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "vertex",
    "azure.ai.openai": "azure",
    "az.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "mistral_ai": "mistral",
    "x_ai": "xai",
}


def provider_name(name: str) -> str:
    """llmledger's name for a provider, however it was spelled.

    Example:
        >>> provider_name("vertex_ai"), provider_name("AWS-Bedrock"), provider_name("acme")
        ('vertex', 'bedrock', 'acme')
    """
    lowered = name.strip().lower()
    return PROVIDER_ALIASES.get(lowered, lowered)


def provider_of_host(host: str) -> str | None:
    """The provider whose API a host serves, or None for any other host.

    Example:
        >>> provider_of_host("API.OpenAI.com"), provider_of_host("acme.openai.azure.com")
        ('openai', 'azure')
        >>> provider_of_host("bedrock-runtime.eu-west-1.amazonaws.com"), provider_of_host("x.org")
        ('bedrock', None)
    """
    host = host.strip().lower().rstrip(".")
    if host in PROVIDER_HOSTS:
        return PROVIDER_HOSTS[host]
    for suffix, provider in _HOST_SUFFIXES.items():
        if host.endswith(suffix):
            return provider
    if host.startswith("bedrock-runtime.") and host.endswith(".amazonaws.com"):
        return "bedrock"
    return None
