"""Real LiteLLM against the simulated provider: each call recorded once, by the right hook.

LiteLLM calls Anthropic with its own HTTP client, so the llmledger callback records those
calls; it calls OpenAI through the ``openai`` SDK, so with :func:`llmledger.instrument`
active the SDK hook records them and the callback only lends them its attribution.
LiteLLM pins openai<3, so this file runs in the previous-SDK environment of .ci/run
(tests/conftest.py leaves it out where LiteLLM is not installed).

Nothing leaves the machine: LiteLLM reads its bundled price map and Anthropic settings
(tests/conftest.py sets that before anything imports it), the provider is
:class:`llmledger.sim.SimulatedProvider` on loopback, and every test refuses a connection
or name lookup for any other host.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import litellm
import pytest

import llmledger
from llmledger.capture import Instrumentation
from llmledger.capture._core import current_scope
from llmledger.capture.litellm import callback_class
from llmledger.core.events import UsageEvent
from llmledger.sim import SimulatedProvider
from llmledger.sim.base import count_tokens
from tests.test_capture_support import KeepingLedger, instrumented, ledger

__all__ = ["instrumented", "ledger"]

pytestmark = [
    # LiteLLM's own types, as pydantic builds their schemas on first use.
    pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning"),
    pytest.mark.filterwarnings(
        "ignore:Accessing the 'model_.*' attribute on the instance:DeprecationWarning"
    ),
]

ANTHROPIC_MODEL = "claude-sonnet-4-5"
OPENAI_MODEL = "gpt-4o-mini"
# A system prompt long enough to cache, sent with Anthropic's cache_control.
INSTRUCTIONS = "You answer questions about invoices, politely and in one sentence. " * 100
DELIVERY_DEADLINE = 15.0  # seconds LiteLLM is given to deliver a call's outcome to callbacks
SETTLE = 0.3  # then how long a late, second delivery of the same call is given to show up

# LiteLLM's module-level callback lists: a callback set in litellm.callbacks is copied
# into the others on the first call, and would stay there for later tests.
CALLBACK_LISTS = (
    "callbacks",
    "input_callback",
    "success_callback",
    "failure_callback",
    "service_callback",
    "_async_input_callback",
    "_async_success_callback",
    "_async_failure_callback",
)


class ObservedCallback(callback_class()):  # type: ignore[misc]
    """llmledger's LiteLLM callback, counting the outcome events LiteLLM delivers to it.

    LiteLLM delivers a call's success from a background thread (or a task), after the
    call has returned: tests wait for that delivery instead of guessing how long it takes.
    """

    def __init__(self, **attribution: Any) -> None:
        super().__init__(**attribution)
        self.outcomes = 0
        self._delivered = threading.Condition()

    def _count(self) -> None:
        with self._delivered:
            self.outcomes += 1
            self._delivered.notify_all()

    def wait_for_outcomes(self, outcomes: int) -> None:
        """Block until LiteLLM has delivered ``outcomes`` outcome events in all."""
        with self._delivered:
            delivered = self._delivered.wait_for(
                lambda: self.outcomes >= outcomes, timeout=DELIVERY_DEADLINE
            )
        assert delivered, f"{self.outcomes} of {outcomes} outcome events delivered"

    def log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        try:
            super().log_success_event(kwargs, response_obj, start_time, end_time)
        finally:
            self._count()

    def log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        try:
            super().log_failure_event(kwargs, response_obj, start_time, end_time)
        finally:
            self._count()

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        try:
            await super().async_log_success_event(kwargs, response_obj, start_time, end_time)
        finally:
            self._count()

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        try:
            await super().async_log_failure_event(kwargs, response_obj, start_time, end_time)
        finally:
            self._count()


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if host is None or host == "localhost":
        return True  # None: a lookup of a local address to bind
    try:
        return ipaddress.ip_address(str(host).partition("%")[0]).is_loopback
    except ValueError:
        return False


_refused: list[str] | None = None  # while a test of this module runs: the hosts refused


def _loopback_only(event: str, args: tuple[Any, ...]) -> None:
    """An audit hook: in any thread, refuse a connection or lookup for a host but loopback."""
    refused = _refused
    if refused is None:
        return
    if event in ("socket.connect", "socket.sendto"):
        sock, address = args
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        host = address[0]
    elif event in ("socket.getaddrinfo", "socket.gethostbyname"):
        host = args[0]
    else:
        return
    if not _is_loopback(host):
        refused.append(repr(host))
        raise OSError(f"the tests stay on this machine: refused {host!r}")


sys.addaudithook(_loopback_only)  # audit hooks cannot be removed: the fixture switches it


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    """Refuse, and fail the test on, any connection or lookup for a host but loopback."""
    global _refused
    refused: list[str] = []
    _refused = refused
    try:
        yield
    finally:
        _refused = None
    assert refused == [], f"non-loopback hosts were asked for: {refused}"


@pytest.fixture(autouse=True)
def thread_event_loop() -> Iterator[None]:
    """An event loop for the test's thread, closed after it.

    LiteLLM's sync path reports to its service hooks on ``asyncio.get_event_loop()``,
    which makes a thread that has no loop one it never closes.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()


@pytest.fixture
def callback(ledger: KeepingLedger, monkeypatch: pytest.MonkeyPatch) -> ObservedCallback:
    """The llmledger callback, the only one LiteLLM has during the test."""
    made = ObservedCallback(tenant="acme", tags={"team": "billing"})
    for name in CALLBACK_LISTS:
        monkeypatch.setattr(litellm, name, [])
    litellm.callbacks.append(made)
    monkeypatch.setattr(litellm, "suppress_debug_info", True)
    return made


@pytest.fixture
def sim() -> Iterator[SimulatedProvider]:
    with SimulatedProvider() as provider:
        yield provider


def _request(
    sim: SimulatedProvider, provider: str, question: str, **options: Any
) -> dict[str, Any]:
    """The arguments of one LiteLLM chat call to the simulated ``provider``."""
    if provider == "anthropic":
        where: dict[str, object] = {
            "model": f"anthropic/{ANTHROPIC_MODEL}",
            "api_base": sim.anthropic_base_url,
            "api_key": "sk-ant-test",
        }
    else:
        where = {
            "model": f"openai/{OPENAI_MODEL}",
            "api_base": sim.openai_base_url,
            "api_key": "sk-test",
            "max_retries": 0,
        }
        if options.get("stream"):
            # LiteLLM asks for the usage chunk itself only when it talks to api.openai.com.
            options.setdefault("stream_options", {"include_usage": True})
    return {**where, "messages": [{"role": "user", "content": question}], **options}


def _recorded(ledger: KeepingLedger, callback: ObservedCallback, outcomes: int) -> list[UsageEvent]:
    """Every event recorded so far, once LiteLLM has delivered ``outcomes`` outcome events.

    A settle after the deliveries gives a duplicate (LiteLLM's sync and async success
    events for one call, say) time to add an event the caller would then count.
    """
    callback.wait_for_outcomes(outcomes)
    time.sleep(SETTLE)
    return ledger.events()


def _priced(ledger: KeepingLedger, event: UsageEvent) -> Decimal:
    priced = ledger.prepare(event)
    assert priced.cost_source == "catalog", priced.unpriced_reason
    assert isinstance(priced.cost, Decimal) and priced.cost > 0
    return priced.cost


def _stream_usage(chunks: list[Any], question: str) -> Any:
    messages = [{"role": "user", "content": question}]
    return litellm.stream_chunk_builder(chunks, messages=messages).usage


@pytest.mark.parametrize("lifetime", ["5m", "1h"])
def test_an_anthropic_call_is_recorded_once_by_the_callback(
    ledger: KeepingLedger, callback: ObservedCallback, sim: SimulatedProvider, lifetime: str
) -> None:
    cache_control = {"type": "ephemeral", "ttl": lifetime}
    system = {
        "role": "system",
        "content": [{"type": "text", "text": INSTRUCTIONS, "cache_control": cache_control}],
    }
    responses = []
    with llmledger.attribute(feature="invoices", session="s-1"):
        for calls, question in enumerate(("What is due?", "And next month?"), start=1):
            request = _request(sim, "anthropic", question)
            request["messages"].insert(0, system)
            responses.append(
                litellm.completion(**request, metadata={"user": "u42", "tags": {"ticket": "9"}})
            )
            callback.wait_for_outcomes(calls)  # keeps the events in call order
    write, read = _recorded(ledger, callback, 2)

    for event, response in ((write, responses[0]), (read, responses[1])):
        assert (event.provider, event.model, event.operation) == (
            "anthropic",
            ANTHROPIC_MODEL,
            "chat",
        )
        assert (event.status, event.stream, event.usage_source) == ("ok", False, "provider")
        assert (event.usage.input_tokens, event.usage.output_tokens) == (
            response.usage.prompt_tokens,
            response.usage.completion_tokens,
        )
        assert (event.tenant, event.user, event.feature, event.session, event.tags) == (
            "acme",
            "u42",
            "invoices",
            "s-1",
            {"team": "billing", "ticket": "9"},
        )
        assert event.duration_ms is not None and event.duration_ms > 0
    # The provider's request id, from the response headers LiteLLM keeps.
    assert write.request_id and read.request_id and write.request_id != read.request_id
    assert write.request_id.startswith("req_sim")
    cached = count_tokens(INSTRUCTIONS)
    assert write.usage.input_tokens > cached  # the cached part is counted in the input
    assert (write.usage.cache_write_tokens, write.usage.cache_read_tokens) == (cached, 0)
    assert (write.usage.cache_write_5m_tokens, write.usage.cache_write_1h_tokens) == (
        (cached, 0) if lifetime == "5m" else (0, cached)
    )
    assert (read.usage.cache_write_tokens, read.usage.cache_read_tokens) == (0, cached)
    # Writing the cache costs more than reading it back; a one-hour write has its own price.
    assert _priced(ledger, write) > _priced(ledger, read)
    assert write.cost_breakdown is not None
    assert ("cache_write_1h_tokens" in write.cost_breakdown) is (lifetime == "1h")


def test_an_openai_call_is_recorded_once_by_the_sdk_hook(
    ledger: KeepingLedger,
    instrumented: Instrumentation,
    callback: ObservedCallback,
    sim: SimulatedProvider,
) -> None:
    with llmledger.attribute(session="s-2"):
        response = litellm.completion(
            **_request(sim, "openai", "Which plan am I on?"), metadata={"feature": "plans"}
        )
    (event,) = _recorded(ledger, callback, 1)
    # The hook's event: it carries the provider's request id, which the callback never reads.
    assert event.request_id is not None and event.request_id.startswith("req_sim")
    assert (event.provider, event.model, event.status) == ("openai", OPENAI_MODEL, "ok")
    assert (event.usage.input_tokens, event.usage.output_tokens) == (
        response.usage.prompt_tokens,
        response.usage.completion_tokens,
    )
    # ... with the callback's attribution and the call's metadata lent to it.
    assert (event.tenant, event.feature, event.session, event.tags) == (
        "acme",
        "plans",
        "s-2",
        {"team": "billing"},
    )
    _priced(ledger, event)


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_a_streamed_call_is_recorded_once_with_its_usage(
    ledger: KeepingLedger,
    instrumented: Instrumentation,
    callback: ObservedCallback,
    sim: SimulatedProvider,
    provider: str,
) -> None:
    question = "Stream me the total."
    chunks = list(litellm.completion(**_request(sim, provider, question, stream=True)))
    (event,) = _recorded(ledger, callback, 1)
    usage = _stream_usage(chunks, question)
    assert (event.provider, event.stream, event.status) == (provider, True, "ok")
    assert event.usage_source == "provider"
    assert (event.usage.input_tokens, event.usage.output_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    assert event.usage.output_tokens > 0
    assert event.ttft_ms is not None and event.ttft_ms >= 0
    assert event.tenant == "acme"
    _priced(ledger, event)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_an_async_call_is_recorded_once(
    ledger: KeepingLedger,
    instrumented: Instrumentation,
    callback: ObservedCallback,
    sim: SimulatedProvider,
    provider: str,
    stream: bool,
) -> None:
    question = "Is the invoice paid?"

    async def call() -> Any:
        with llmledger.attribute(user="u7"):
            response = await litellm.acompletion(
                **_request(sim, provider, question, stream=stream),
                metadata={"tags": {"ticket": "12"}},
            )
            if stream:
                response = _stream_usage([chunk async for chunk in response], question)
            else:
                response = response.usage
        # The success event is delivered by a task of this loop: wait while it runs.
        await asyncio.to_thread(callback.wait_for_outcomes, 1)
        return response

    usage = asyncio.run(call())
    (event,) = _recorded(ledger, callback, 1)
    assert (event.provider, event.stream, event.status) == (provider, stream, "ok")
    assert (event.usage.input_tokens, event.usage.output_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    assert (event.tenant, event.user, event.tags) == (
        "acme",
        "u7",
        {"team": "billing", "ticket": "12"},
    )
    _priced(ledger, event)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_a_failed_call_is_recorded_once_as_an_error(
    ledger: KeepingLedger,
    instrumented: Instrumentation,
    callback: ObservedCallback,
    sim: SimulatedProvider,
    provider: str,
    asynchronous: bool,
) -> None:
    # The simulated provider answers a message containing "[fail]" with an HTTP 500.
    request = _request(sim, provider, "Please [fail] now.", metadata={"user": "u13"})

    def fail() -> None:
        with pytest.raises(litellm.InternalServerError):
            litellm.completion(**request)
        # LiteLLM does not call log_post_api_call for a failed call: no scope is left behind.
        assert current_scope.get() is None

    async def fail_async() -> None:
        with pytest.raises(litellm.InternalServerError):
            await litellm.acompletion(**request)
        assert current_scope.get() is None

    if asynchronous:
        asyncio.run(fail_async())
    else:
        fail()
    (event,) = _recorded(ledger, callback, 1)
    assert (event.provider, event.status, event.error_type) == (
        provider,
        "error",
        "InternalServerError",
    )
    assert event.error_message is not None
    assert "simulated" in event.error_message
    assert (event.usage_source, event.usage.input_tokens) == ("missing", 0)
    assert (event.tenant, event.user) == ("acme", "u13")
    assert event.request_id is not None and event.request_id.startswith("req_sim")


def test_importing_litellm_opens_no_connection() -> None:
    # Another test may import LiteLLM before any guard is in place: check a fresh import.
    code = """if True:
        import socket, sys
        asked = []
        def audit(event, args):
            if event in ("socket.connect", "socket.getaddrinfo", "socket.sendto"):
                asked.append((event, args[0] if event == "socket.getaddrinfo" else args[1]))
        sys.addaudithook(audit)
        import litellm
        assert litellm.model_cost, "no price map"
        print(asked)
    """
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout
