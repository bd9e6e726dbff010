"""``llmledger sim``: the simulated provider as a server of its own, for your tests."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from llmledger.cli.common import settings_from

__all__ = ["COMMANDS", "sim_command"]


@click.command("sim")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=8765,
    show_default=True,
    help="Port to listen on (0: any free port, printed at start).",
)
@click.pass_context
def sim_command(ctx: click.Context, host: str, port: int) -> None:
    """Run the simulated OpenAI-, Anthropic- and Gemini-compatible provider until stopped.

    Point the real SDKs at it (no API key, no network): chat completions, Responses
    and embeddings (OpenAI), messages (Anthropic) and generateContent (Gemini),
    streaming and not, with realistic usage: prompt caching, reasoning and thinking
    tokens, and an HTTP 500 for any message containing "[fail]". Answers are
    deterministic. Stop it with Ctrl-C or SIGTERM.

    \b
    Examples:
      llmledger sim --port 8765
      OPENAI_BASE_URL=http://127.0.0.1:8765/v1 OPENAI_API_KEY=sim pytest
    """
    from llmledger.sim import SimulatedProvider

    settings_from(ctx)  # a broken config file is an error here too
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    try:
        sim = SimulatedProvider(host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    previous = signal.signal(signal.SIGTERM, on_signal)
    with sim:
        click.echo(f"simulated provider listening on {sim.url}")
        click.echo(f"  openai:    OpenAI(base_url='{sim.openai_base_url}', api_key='sim')")
        click.echo(f"  anthropic: Anthropic(base_url='{sim.anthropic_base_url}', api_key='sim')")
        click.echo(
            "  gemini:    genai.Client(api_key='sim', "
            f"http_options=types.HttpOptions(base_url='{sim.gemini_base_url}'))"
        )
        click.echo("Ctrl-C to stop", nl=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    signal.signal(signal.SIGTERM, previous)
    click.echo("stopped")


COMMANDS = [sim_command]
