"""A local simulated LLM provider: OpenAI-, Anthropic- and Gemini-compatible endpoints."""

from llmledger.sim.server import SimulatedProvider

__all__ = ["SimulatedProvider"]
