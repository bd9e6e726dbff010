"""``llmledger sim``: a real process the real SDKs (OpenAI, Anthropic, Gemini) talk to."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anthropic
import openai
from google import genai
from google.genai import types

from tests.test_server_e2e import free_port

LLMLEDGER = str(Path(sys.executable).with_name("llmledger"))


@contextmanager
def sim_process(port: int) -> Iterator[str]:
    process = subprocess.Popen(
        [LLMLEDGER, "sim", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # printed once the port is bound
        assert first.startswith("simulated provider listening on http://127.0.0.1:"), first
        yield first.rsplit(" ", 1)[1].strip()
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=20)
    assert process.returncode == 0, out
    assert out.rstrip().endswith("stopped")


def test_the_sdks_run_against_llmledger_sim() -> None:
    port = free_port()
    with sim_process(port) as url:
        assert url == f"http://127.0.0.1:{port}"
        with openai.OpenAI(base_url=f"{url}/v1", api_key="sim", max_retries=0) as oc:
            chat = oc.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
            )
        assert chat.usage is not None and chat.usage.prompt_tokens > 0
        with anthropic.Anthropic(base_url=url, api_key="sim", max_retries=0) as ac:
            message = ac.messages.create(
                model="claude-haiku-4-5",
                max_tokens=100,
                messages=[{"role": "user", "content": "Hi"}],
            )
        assert message.usage.output_tokens > 0
        gc = genai.Client(
            api_key="sim",
            http_options=types.HttpOptions(
                base_url=url, retry_options=types.HttpRetryOptions(attempts=1)
            ),
        )
        answer = gc.models.generate_content(model="gemini-2.5-flash", contents="Hi")
        assert answer.usage_metadata is not None
        assert (answer.usage_metadata.thoughts_token_count or 0) > 0
        streamed = list(gc.models.generate_content_stream(model="gemini-2.0-flash", contents="Hi"))
        assert len(streamed) > 1
        assert streamed[-1].candidates and streamed[-1].candidates[0].finish_reason == "STOP"
        failing = gc.models.generate_content
        try:
            failing(model="gemini-2.0-flash", contents="please [fail]")
        except genai.errors.ServerError as exc:
            assert exc.code == 500
        else:  # pragma: no cover - the simulated failure must fail
            raise AssertionError("the [fail] marker did not fail")
        finally:
            gc.close()


def test_a_busy_port_is_a_one_line_error() -> None:
    port = free_port()
    with sim_process(port):
        done = subprocess.run(
            [LLMLEDGER, "sim", "--port", str(port)], capture_output=True, text=True, timeout=30
        )
    assert done.returncode == 1
    assert done.stderr.startswith(f"Error: cannot listen on 127.0.0.1:{port}")
