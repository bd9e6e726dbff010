"""A local simulated LLM provider: OpenAI- and Anthropic-compatible endpoints for demos and tests."""

from llmledger.sim.server import SimulatedProvider

__all__ = ["SimulatedProvider"]
