"""A local simulated LLM provider: OpenAI- and Anthropic-compatible endpoints."""

from llmledger.sim.server import SimulatedProvider

__all__ = ["SimulatedProvider"]
