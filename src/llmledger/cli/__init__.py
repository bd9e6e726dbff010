"""The ``llmledger`` command."""

from __future__ import annotations

import click

__all__ = ["main"]


@click.group()
def main() -> None:
    """Record, price and report LLM provider usage."""
