"""``llmledger demo``: a real ledger filled by real SDK calls against a local simulated provider."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from llmledger.cli.common import ledger_from, settings_from
from llmledger.core.errors import MissingDependencyError

__all__ = ["COMMANDS", "DEMO_ENVIRONMENT", "run_scenario"]

#: The ``environment`` tag of every demo call: how a later run finds them in a ledger.
DEMO_ENVIRONMENT = "demo"

TENANTS = {
    "acme": ["ana", "bruno"],
    "globex": ["carla", "davi", "eva"],
    "initech": ["fabio"],
}
FEATURES = ("support-chat", "summarise", "search", "draft-email", "research")

# A long, fixed instruction block: long enough for the providers' prompt caches.
POLICY = " ".join(
    f"Rule {i}: answer politely, cite the knowledge base article, never promise refunds, "
    "and escalate to a human when the customer mentions a legal matter."
    for i in range(1, 70)
)


def run_scenario(
    openai_client: Any,
    anthropic_client: Any,
    calls: int,
    seed: int = 7,
    on_call: Callable[[], None] | None = None,
) -> int:
    """Make ``calls`` realistic calls for several tenants, users and features.

    Every call goes through the real SDK clients given (pointed at any compatible
    server); recording is left to :func:`llmledger.instrument`.

    Returns:
        How many calls failed (the scenario includes some on purpose).
    """
    import anthropic
    import openai

    from llmledger.core.attribution import attribute

    rng = random.Random(seed)
    failures = 0
    for i in range(calls):
        tenant = rng.choice(sorted(TENANTS))
        user = rng.choice(TENANTS[tenant])
        feature = FEATURES[i % len(FEATURES)]
        question = (
            f"Question {i} from {user}: what is the status of order {rng.randint(1000, 9999)}?"
        )
        if i % 17 == 16:
            question += " [fail]"
        with attribute(
            tenant=tenant,
            user=user,
            feature=feature,
            session=f"s-{tenant}-{i // 4}",
            tags={"environment": DEMO_ENVIRONMENT, "ticket": f"T-{100 + i % 9}"},
        ):
            try:
                _one_call(openai_client, anthropic_client, feature, question, i)
            except (openai.APIError, anthropic.APIError):
                failures += 1
        if on_call is not None:
            on_call()
    return failures


def _one_call(oc: Any, ac: Any, feature: str, question: str, i: int) -> None:
    if feature == "support-chat":
        messages = [{"role": "system", "content": POLICY}, {"role": "user", "content": question}]
        if i % 2:
            stream = oc.chat.completions.create(
                model="gpt-4o-mini",
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
            )
            for _ in stream:
                pass
        else:
            oc.chat.completions.create(model="gpt-4o-mini", messages=messages)
    elif feature == "summarise":
        system = [{"type": "text", "text": POLICY, "cache_control": {"type": "ephemeral"}}]
        if i % 2:
            with ac.messages.stream(
                model="claude-haiku-4-5",
                max_tokens=400,
                system=system,
                messages=[{"role": "user", "content": question}],
            ) as stream:
                for _ in stream.text_stream:
                    pass
        else:
            ac.messages.create(
                model="claude-sonnet-4-6",
                max_tokens=400,
                system=system,
                messages=[{"role": "user", "content": question}],
            )
    elif feature == "search":
        oc.embeddings.create(model="text-embedding-3-small", input=[question, POLICY[:400]])
    elif feature == "draft-email":
        oc.responses.create(
            model="gpt-4.1-mini", instructions="Write a short, kind email.", input=question
        )
    else:
        oc.responses.create(model="o4-mini", input=question, reasoning={"effort": "medium"})


@click.command("demo")
@click.option(
    "--calls",
    type=click.IntRange(min=1, max=10_000),
    default=60,
    show_default=True,
    help="How many provider calls to make.",
)
@click.option(
    "--db",
    help="Ledger database URL to fill instead of the demo's own (home/demo.db, made anew "
    "each run); the events of an earlier demo run there are deleted first.",
)
@click.pass_context
def demo_command(ctx: click.Context, calls: int, db: str | None) -> None:
    """Fill a demo ledger from real SDK calls to a local simulated provider, then report.

    Starts an OpenAI- and Anthropic-compatible server on 127.0.0.1, drives the real
    ``openai`` and ``anthropic`` clients against it for several tenants, users and
    features (chat, streams, cached prompts, reasoning, embeddings, a few failures),
    records every call with :func:`llmledger.instrument`, and prints the report. No
    API key and no network are needed. The demo writes into a ledger of its own
    (``demo.db`` in the home folder, printed at the end), never into your ledger,
    unless ``--db`` names one; running it again does not double it.
    """
    try:
        import anthropic
        import openai
    except ImportError:
        raise MissingDependencyError(
            "the demo needs the openai and anthropic packages: pip install 'llmledger[demo]'"
        ) from None

    from llmledger.capture import instrument
    from llmledger.cli.report import print_report
    from llmledger.query import Query, parse_where
    from llmledger.sim import SimulatedProvider

    if db is None:
        home = settings_from(ctx).home
        _remove_sqlite(home / "demo.db")
        home.mkdir(parents=True, exist_ok=True)
        ledger = ledger_from(ctx, database_url=f"sqlite:///{home / 'demo.db'}")
    else:
        ledger = ledger_from(ctx, database_url=db)
        earlier = ledger.store.delete_events(
            Query(where=parse_where([f"tag:environment={DEMO_ENVIRONMENT}"])),
            now=datetime.now(UTC),
        )
        if earlier.count:
            click.echo(f"deleted the {earlier.count} events of an earlier demo run")
    started = datetime.now(UTC)
    clock = time.perf_counter()
    with SimulatedProvider() as sim, instrument():
        oc = openai.OpenAI(
            base_url=sim.openai_base_url, api_key="sk-demo-not-a-real-key", max_retries=0
        )
        ac = anthropic.Anthropic(
            base_url=sim.anthropic_base_url, api_key="sk-ant-demo", max_retries=0
        )
        from rich.progress import Progress

        with Progress(transient=True) as progress:
            task = progress.add_task("calling the simulated provider", total=calls)
            failures = run_scenario(oc, ac, calls, on_call=lambda: progress.advance(task))
        ledger.flush()
    elapsed = time.perf_counter() - clock
    click.echo(
        f"{calls} calls ({failures} failed on purpose) in {elapsed:.1f}s "
        f"against {sim.url}; ledger: {ledger.settings.resolved_database_url}\n"
    )
    for by in ("feature", "model", "tenant"):
        print_report(ledger.store.report(Query(since=started, by=(by,))))
        click.echo()
    url = ledger.settings.resolved_database_url
    click.echo(f"demo ledger: {url}")
    click.echo(
        f"next: llmledger --database-url {url} logs -n 5; "
        f"llmledger --database-url {url} report --by user"
    )


def _remove_sqlite(path: Path) -> None:
    """A SQLite file and its journal files, removed (the demo's ledger starts empty)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


COMMANDS = [demo_command]
