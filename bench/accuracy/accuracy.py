"""Billing accuracy: llmledger, genai-prices and LiteLLM against hand-derived bills.

For every recorded response and stream in tests/fixtures/recorded/, the truth is in
bench/accuracy/cases.yaml: the billed buckets and cost, derived by hand from the
provider's counting rules and published prices. Each tool reads the same recorded body:

- llmledger: ``llmledger.normalize.read_response`` / ``read_stream``, then
  ``PriceResolver.event_price`` on the event those facts make;
- genai-prices (the pinned catalog llmledger depends on): ``genai_prices.extract_usage``
  and ``genai_prices.calc_price``; it reads no streams;
- LiteLLM: run by bench/accuracy/litellm_peer.py in its own virtual environment, calling
  a loopback server that replays the recorded body, with its bundled price map.

Writes docs/accuracy.md. Run it with bench/accuracy/run, which also makes LiteLLM's
environment; ``--litellm-python`` names that environment's interpreter (without it,
LiteLLM's columns say it was not run).

    python bench/accuracy/accuracy.py --litellm-python .venv-accuracy/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import Any, cast

import yaml

from llmledger.core.events import Operation, UsageEvent, UsageSource
from llmledger.core.usage import Usage
from llmledger.normalize import read_response, read_stream
from llmledger.pricing import PriceResolver

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
FIXTURES = ROOT / "tests" / "fixtures" / "recorded"
NANO = Decimal("0.000000001")
BUCKETS = tuple(Usage.__dataclass_fields__)
#: The buckets each peer has a notion of; the others are not compared for it.
GENAI_BUCKETS = {
    "input_tokens": "input_tokens",
    "cache_read_tokens": "cache_read_tokens",
    "cache_write_tokens": "cache_write_tokens",
    "cache_write_5m_tokens": "cache_write_5m_tokens",
    "cache_write_1h_tokens": "cache_write_1h_tokens",
    "input_audio_tokens": "input_audio_tokens",
    "input_image_tokens": "input_image_tokens",
    "output_tokens": "output_tokens",
    "reasoning_tokens": "output_reasoning_tokens",
    "output_audio_tokens": "output_audio_tokens",
}
LITELLM_BUCKETS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "input_audio_tokens",
    "input_image_tokens",
    "output_tokens",
    "reasoning_tokens",
    "output_audio_tokens",
)
STREAMS_UNREAD = "reads no streams"
SHORT = {
    "input_tokens": "in",
    "output_tokens": "out",
    "cache_read_tokens": "cache read",
    "cache_write_tokens": "cache write",
    "cache_write_5m_tokens": "write 5m",
    "cache_write_1h_tokens": "write 1h",
    "input_audio_tokens": "audio in",
    "input_image_tokens": "image in",
    "reasoning_tokens": "reasoning",
    "output_audio_tokens": "audio out",
    "tool_use_prompt_tokens": "tool prompt",
}


@dataclass
class Case:
    """One recorded call and its hand-derived bill."""

    file: str
    provider: str
    model: str
    at: datetime
    buckets: dict[str, int]
    cost: Decimal
    raw: Mapping[str, Any]
    tier: str | None = None
    unknown: tuple[str, ...] = ()

    @property
    def stream(self) -> bool:
        return not self.file.endswith(".json")

    @property
    def path(self) -> Path:
        return FIXTURES / self.file


@dataclass
class Outcome:
    """What one tool made of one case."""

    supported: bool
    buckets: dict[str, int] = field(default_factory=dict)
    compared: tuple[str, ...] = BUCKETS
    cost: Decimal | None = None
    note: str = ""


def load_cases(path: Path) -> list[Case]:
    data = yaml.safe_load(path.read_text())
    cases = []
    for raw in data["cases"]:
        at = raw["at"]
        if isinstance(at, str):
            at = datetime.fromisoformat(at.replace("Z", "+00:00"))
        cases.append(
            Case(
                file=raw["file"],
                provider=raw["provider"],
                model=raw["model"],
                at=at.astimezone(UTC),
                buckets={k: int(v) for k, v in raw["buckets"].items()},
                cost=Decimal(str(raw["cost"])),
                raw=raw,
                tier=raw.get("tier"),
                unknown=tuple(raw.get("unknown", ())),
            )
        )
    for case in cases:
        lacking = [k for k in ("derivation", "sources") if not case.raw.get(k)]
        if lacking:
            raise SystemExit(f"{case.file}: the truth needs its {' and '.join(lacking)}")
    recorded = {p.name for p in FIXTURES.iterdir() if p.name != "SOURCES.md"}
    missing = recorded - {c.file for c in cases}
    if missing:
        raise SystemExit(f"cases.yaml has no truth for: {', '.join(sorted(missing))}")
    return cases


# -- llmledger ------------------------------------------------------------------


def run_llmledger(case: Case, resolver: PriceResolver) -> Outcome:
    body = case.path.read_bytes()
    try:
        if case.stream:
            reading = read_stream(body, provider=case.provider)
        else:
            reading = read_response(body, provider=case.provider)
    except Exception as exc:  # a failure to read is a result of the bench, not a crash
        return Outcome(True, note=f"read failed: {exc}")
    usage = reading.usage
    event = UsageEvent(
        provider=reading.provider,
        model=case.model,
        ts=case.at,
        response_model=reading.response_model,
        operation=cast(Operation, reading.operation),
        stream=reading.stream,
        service_tier=reading.service_tier or case.tier,
        usage=usage,
        usage_raw=reading.usage_raw,
        usage_source=cast(UsageSource, reading.usage_source),
        warnings=tuple(reading.warnings),
        usage_parts=reading.usage_parts,
        fee_counts={str(fee): count for fee, count in reading.fee_counts.items()},
    )
    result = resolver.event_price(event, reported_cost=reading.reported_cost)
    notes = []
    # The price status (priced / incomplete) is read by name so that the table says
    # whether a wrong figure at least carried a flag.
    status = getattr(result, "price_status", None) or getattr(result, "status", None)
    if status not in (None, "priced"):
        reason = next(
            (
                getattr(result, name)
                for name in ("incomplete_reason", "status_reason", "reason")
                if getattr(result, name, None)
            ),
            None,
        )
        notes.append(f"flagged {status}" + (f": {reason}" if reason else ""))
    if result.cost is None:
        notes.append(f"unpriced: {result.unpriced_reason}")
    return Outcome(
        True,
        buckets={b: getattr(usage, b) for b in BUCKETS if getattr(usage, b)},
        cost=result.cost,
        note="; ".join(notes),
    )


# -- genai-prices -----------------------------------------------------------------


def run_genai_prices(case: Case) -> Outcome:
    import genai_prices

    spec = case.raw.get("genai_prices")
    if case.stream or not spec:
        return Outcome(False, note=STREAMS_UNREAD if case.stream else "no extractor")
    body = json.loads(case.path.read_text())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            extracted = genai_prices.extract_usage(
                body, provider_id=spec["provider_id"], api_flavor=spec["api_flavor"]
            )
    except Exception as exc:
        return Outcome(False, note=f"extract_usage failed: {exc}")
    usage = extracted.usage
    buckets = {}
    for ours, theirs in GENAI_BUCKETS.items():
        value = _genai_value(usage, theirs)
        if value:
            buckets[ours] = value
    model = extracted.model.id if extracted.model is not None else case.model
    context = {"service_tier": case.tier} if case.tier else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            price = genai_prices.calc_price(
                usage,
                model,
                provider_id=extracted.provider.id,
                genai_request_timestamp=case.at,
                price_context=context,
            )
        cost: Decimal | None = price.total_price
        note = ""
    except Exception as exc:
        cost, note = None, f"calc_price failed: {exc}"
    return Outcome(True, buckets=buckets, compared=tuple(GENAI_BUCKETS), cost=cost, note=note)


def _genai_value(usage: Any, name: str) -> int:
    # Only what the extraction reported: the Usage object infers missing keys on access.
    reported = getattr(usage, "_reported_values", None)
    values = reported() if callable(reported) else None
    value = values.get(name) if isinstance(values, Mapping) else usage.__dict__.get(name)
    return int(value) if isinstance(value, int) else 0


# -- LiteLLM ------------------------------------------------------------------------


def run_litellm(cases: list[Case], python: str | None) -> tuple[str, dict[str, Outcome]]:
    if python is None:
        return "not run", {c.file: Outcome(False, note="LiteLLM not run") for c in cases}
    payload = [
        {
            "id": c.file,
            "path": str(c.path),
            "stream": c.stream,
            "litellm": c.raw.get("litellm"),
        }
        for c in cases
    ]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "litellm.json"
        done = subprocess.run(
            [python, str(HERE / "litellm_peer.py"), str(out)],
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0 or not out.exists():
            raise SystemExit(f"LiteLLM's run failed:\n{done.stderr[-3000:]}")
        answer = json.loads(out.read_text())
    outcomes = {}
    for c in cases:
        found = answer["results"][c.file]
        if not found["supported"]:
            outcomes[c.file] = Outcome(False, note=found["why"])
            continue
        cost = found["cost"]
        outcomes[c.file] = Outcome(
            True,
            buckets=found["buckets"],
            compared=LITELLM_BUCKETS,
            cost=None if cost is None else Decimal(repr(cost)),
            note=found.get("note", ""),
        )
    return answer["version"], outcomes


# -- judging and the table ------------------------------------------------------------


def bucket_errors(case: Case, outcome: Outcome) -> list[str]:
    errors = []
    for name in outcome.compared:
        if name in case.unknown:
            continue
        want, got = case.buckets.get(name, 0), outcome.buckets.get(name, 0)
        if want != got:
            errors.append(f"{SHORT[name]} {got:,} (want {want:,})")
    return errors


def cost_exact(case: Case, cost: Decimal | None) -> bool:
    if cost is None:
        return False
    # LiteLLM's costs are floats: a difference below a millionth of a nano-USD is its
    # binary rounding, not a different bill.
    return abs(cost - case.cost) < Decimal("1e-15") or cost.quantize(NANO) == case.cost


def fmt_cost(cost: Decimal | None) -> str:
    if cost is None:
        return "none"
    text = f"{cost.quantize(Decimal('1e-12')).normalize():f}"
    return f"${text}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=HERE / "cases.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "accuracy.md")
    parser.add_argument("--litellm-python", default=None)
    args = parser.parse_args()

    cases = load_cases(args.cases)
    resolver = PriceResolver()
    ours = {c.file: run_llmledger(c, resolver) for c in cases}
    genai = {c.file: run_genai_prices(c) for c in cases}
    litellm_version, litellm = run_litellm(cases, args.litellm_python)
    tools = [
        ("llmledger", ours, "as of this commit"),
        ("genai-prices", genai, version("genai-prices")),
        ("LiteLLM", litellm, litellm_version),
    ]
    text = render(cases, tools)
    args.out.write_text(text)
    print(text.split("## Every case")[0])
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def render(cases: list[Case], tools: list[tuple[str, dict[str, Outcome], str]]) -> str:
    commit = _git("rev-parse", "--short", "HEAD")
    changed = [
        line
        for line in _git("status", "--porcelain", "--", "src", "bench").splitlines()
        if line.strip()
    ]
    if changed:
        commit += " with uncommitted changes"
    lines = [
        "# Billing accuracy",
        "",
        "Written by `bench/accuracy/run`; do not edit by hand. Each recorded provider response",
        "and stream in `tests/fixtures/recorded/` is read and priced by llmledger and by two",
        "peers, and compared with the bill derived by hand from the provider's documented",
        "counting rules and published prices on the day of the call. The derivations, with",
        "their sources, are in [`bench/accuracy/cases.yaml`](../bench/accuracy/cases.yaml)",
        "and repeated under each case below; none is taken from a tool's output.",
        "",
        f"Run on commit `{commit}`: "
        + ", ".join(f"{name} {ver}" for name, _, ver in tools)
        + ". LiteLLM runs in its own virtual environment with its bundled price map",
        "(`LITELLM_LOCAL_MODEL_COST_MAP=True`) and calls a server on 127.0.0.1 that replays",
        "the recording, so its own parsing of each body is what is measured.",
        "",
        "## Summary",
        "",
        "| tool | read | buckets exact | cost exact | both exact | not supported |",
        "|---|---|---|---|---|---|",
    ]
    n = len(cases)
    for name, outcomes, _ in tools:
        read = [c for c in cases if outcomes[c.file].supported]
        exact_b = sum(1 for c in read if not bucket_errors(c, outcomes[c.file]))
        exact_c = sum(1 for c in read if cost_exact(c, outcomes[c.file].cost))
        both = sum(
            1
            for c in read
            if cost_exact(c, outcomes[c.file].cost) and not bucket_errors(c, outcomes[c.file])
        )
        lines.append(
            f"| {name} | {len(read)} of {n} | {exact_b} | {exact_c} | {both} | {n - len(read)} |"
        )
    ours = tools[0][1]
    mine_exact = [c for c in cases if _exact(c, ours[c.file])]
    lines += [
        "",
        f"llmledger is exact (buckets and cost) on {len(mine_exact)} of {n} cases.",
        "",
        "Cases where a peer is right and llmledger is wrong:",
        "",
    ]
    beaten = []
    for c in cases:
        mine = ours[c.file]
        right = [
            name
            for name, outcomes, _ in tools[1:]
            if outcomes[c.file].supported and _better(c, outcomes[c.file], mine)
        ]
        if right:
            beaten.append(c.file)
            lines.append(
                f"- `{c.file}`: {' and '.join(right)} right; llmledger " + _verdict(c, mine)
            )
    if not beaten:
        lines.append("- none")
    lines += ["", "Other cases llmledger gets wrong (no peer right either):", ""]
    others = [c for c in cases if c not in mine_exact and c.file not in beaten]
    lines += [f"- `{c.file}`: llmledger " + _verdict(c, ours[c.file]) for c in others]
    if not others:
        lines.append("- none")
    lines += [
        "",
        "How to read the table: **buckets** are the billed token counts in llmledger's names",
        "([accounting.md](accounting.md)): in, out, cache read, cache write (5m / 1h), audio in,",
        "image in, reasoning, audio out, tool prompt. A tool is judged only on the buckets it",
        "has a notion of (genai-prices: all but tool prompt; LiteLLM: in, out, cache read,",
        "cache write, audio and image in, reasoning, audio out). **cost** is exact when it",
        "rounds to the same nano-USD (LiteLLM's float costs within 1e-15 USD). A bucket the",
        "provider does not report (Anthropic thinking inside `output_tokens` when no",
        "`thinking_tokens` is sent) is held against no tool. A tool that cannot read a shape",
        "(genai-prices reads no streams; LiteLLM cannot call Vertex AI offline) is *not",
        "supported*, not wrong; **read** counts the cases it could read.",
        "",
        "## Every case",
        "",
        "| case | expected buckets | expected cost | "
        + " | ".join(f"{name} buckets | {name} cost" for name, _, _ in tools)
        + " |",
        "|---|---|---|" + "---|---|" * len(tools),
    ]
    for c in cases:
        row = [f"`{c.file}`", _buckets_text(c.buckets), fmt_cost(c.cost)]
        for _, outcomes, _ in tools:
            row += _cells(c, outcomes[c.file])
        lines.append("| " + " | ".join(row) + " |")
    notes = [
        (c, name, outcomes[c.file].note)
        for c in cases
        for name, outcomes, _ in tools
        if outcomes[c.file].note and outcomes[c.file].note != STREAMS_UNREAD
    ]
    if notes:
        lines += ["", "## Notes from the tools", ""]
        lines += [f"- `{c.file}`, {name}: {note.replace('|', '/')}" for c, name, note in notes]
    lines += ["", "## Derivations", ""]
    for c in cases:
        lines += [f"### `{c.file}`", "", f"{c.provider}, `{c.model}`, {c.at:%Y-%m-%d %H:%M} UTC"]
        if c.tier:
            lines[-1] += f", tier {c.tier}"
        lines += ["", " ".join(str(c.raw["derivation"]).split())]
        if c.raw.get("note"):
            lines += ["", "Note: " + " ".join(str(c.raw["note"]).split()) + "."]
        lines += ["", "Sources: " + ", ".join(f"<{s}>" for s in c.raw["sources"]), ""]
    return "\n".join(lines).rstrip() + "\n"


def _exact(case: Case, outcome: Outcome) -> bool:
    return cost_exact(case, outcome.cost) and not bucket_errors(case, outcome)


def _better(case: Case, peer: Outcome, mine: Outcome) -> bool:
    """The peer has right what llmledger has wrong: the cost, or a bucket both count."""
    if cost_exact(case, peer.cost) and not cost_exact(case, mine.cost):
        return True
    shared = [b for b in peer.compared if b not in case.unknown]
    return not bucket_errors(case, peer) and any(
        mine.buckets.get(b, 0) != case.buckets.get(b, 0) for b in shared
    )


def _verdict(case: Case, outcome: Outcome) -> str:
    said = []
    errors = bucket_errors(case, outcome)
    if errors:
        said.append("buckets " + "; ".join(errors))
    if not cost_exact(case, outcome.cost):
        said.append(f"cost {fmt_cost(outcome.cost)} (want {fmt_cost(case.cost)})")
    return ", ".join(said)


def _buckets_text(buckets: Mapping[str, int]) -> str:
    return ", ".join(f"{SHORT[b]} {buckets[b]:,}" for b in BUCKETS if buckets.get(b))


def _cells(case: Case, outcome: Outcome) -> list[str]:
    if not outcome.supported:
        return ["not supported", "not supported"]
    errors = bucket_errors(case, outcome)
    buckets = "exact" if not errors else "**no**: " + "; ".join(errors)
    if outcome.cost is None:
        cost = "**none**"
    elif cost_exact(case, outcome.cost):
        cost = f"exact {fmt_cost(outcome.cost)}"
    else:
        cost = f"**no**: {fmt_cost(outcome.cost)}"
    return [buckets, cost]


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
