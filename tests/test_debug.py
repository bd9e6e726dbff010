"""The debug switch: each captured call logged at DEBUG with how its usage was read and
priced, and never the prompt or the response."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import anthropic
import openai
import pytest

import llmledger
from llmledger.sim import SimulatedProvider

SECRET = "purple elephant 7731 wants a refund"


def _calls(sim: SimulatedProvider) -> None:
    with openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-x", max_retries=0) as oc:
        oc.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": SECRET}]
        )
        for _ in oc.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": SECRET + " again"}],
            stream=True,
            stream_options={"include_usage": True},
        ):
            pass
        with pytest.raises(openai.InternalServerError):
            oc.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": SECRET + " [fail]"}]
            )
    with anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key="x", max_retries=0) as ac:
        ac.messages.create(
            model="claude-haiku-4-5",
            max_tokens=50,
            messages=[{"role": "user", "content": SECRET}],
        )


def test_debug_logs_each_call_its_usage_and_price_but_no_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    llmledger.configure(home=tmp_path / "home", debug=True, store_content=True)
    caplog.set_level(logging.DEBUG, logger="llmledger")
    with SimulatedProvider() as sim, llmledger.instrument():
        _calls(sim)
        llmledger.flush()
    captured = [r.getMessage() for r in caplog.records if r.getMessage().startswith("captured ")]
    priced = [r.getMessage() for r in caplog.records if r.getMessage().startswith("priced ")]
    assert len(captured) == 4 and len(priced) == 4
    chat = next(m for m in captured if "(stream)" not in m and "(ok" in m and "openai" in m)
    assert "usage provider by the openai reader from response body" in chat
    assert '"prompt_tokens":' in chat and "input_tokens=" in chat
    assert any("from stream events" in m for m in captured)
    failed = next(m for m in captured if "(error" in m)
    assert "InternalServerError" in failed and "usage missing" in failed
    claude = next(m for m in priced if "anthropic/claude-haiku-4-5" in m)
    assert "from catalog (genai-prices@" in claude and claude.endswith(", priced")
    # the prompt, the answer and the provider's error message never reach the log
    stored = llmledger.get_ledger().store
    kept = [stored.get_content(e.id) for e in stored.recent(10)]
    answers = [c.response for c in kept if c is not None and c.response]
    assert len(answers) >= 2 and all(c is not None and SECRET in (c.prompt or "") for c in kept)
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "elephant" not in text
    assert not any(answer and answer in text for answer in answers)
    assert "simulated server error" not in text


def test_the_environment_turns_debug_on_and_it_is_off_by_default(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import openai, llmledger
        from llmledger.sim import SimulatedProvider
        with SimulatedProvider() as sim, llmledger.instrument():
            with openai.OpenAI(base_url=sim.openai_base_url, api_key="x") as client:
                client.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "hello"}])
            llmledger.flush()
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMLEDGER_")}
    env["LLMLEDGER_HOME"] = str(tmp_path)
    quiet = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert quiet.returncode == 0, quiet.stderr
    assert "captured" not in quiet.stderr
    loud = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**env, "LLMLEDGER_DEBUG": "1"},
        timeout=120,
    )
    assert loud.returncode == 0, loud.stderr
    assert "llmledger.debug captured openai chat gpt-4o" in loud.stderr
    assert "llmledger.debug priced event" in loud.stderr
