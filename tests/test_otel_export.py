"""OpenTelemetry export: events recorded by the ledger leave as GenAI spans and metrics,
from the writer's thread; and llmledger's own exporter into a real ``llmledger serve``
gives back the same events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import llmledger
from llmledger.core.events import UsageEvent
from llmledger.otel.export import build_exporter
from llmledger.otel.reading import SpanRecord, event_json_from_span
from llmledger.otel.semconv import SCHEMA_URL
from llmledger.runtime.ledger import shutdown
from tests.test_server_e2e import cli, free_port, serve


def test_events_leave_as_genai_spans_and_metrics_from_the_writer_thread(tmp_path: Path) -> None:
    spans = InMemorySpanExporter()
    metrics = InMemoryMetricReader()
    ledger = llmledger.configure(home=tmp_path, strict=True)
    settings = ledger.settings
    exporter = build_exporter(settings, span_exporter=spans, metric_reader=metrics)
    threads: list[str] = []

    def note_thread(events: Sequence[UsageEvent]) -> None:
        threads.append(threading.current_thread().name)

    ledger.after_commit.add(note_thread)
    ledger.after_commit.add(exporter, on_close=exporter.close)
    ts = datetime.now(UTC) - timedelta(minutes=1)
    with llmledger.attribute(tenant="acme", user="ana", feature="search", tags={"env": "prod"}):
        recorded = llmledger.record(
            provider="anthropic",
            model="claude-sonnet-4-5-20250929",
            input_tokens=1200,
            cache_read_tokens=1000,
            output_tokens=300,
            reasoning_tokens=100,
            duration_ms=1500,
            ts=ts,
        )
    llmledger.record(
        provider="openai",
        model="gpt-4o",
        status="error",
        error_type="RateLimitError",
        ts=ts,
    )
    assert ledger.flush(10)
    metrics_data = metrics.get_metrics_data()
    shutdown()  # closes the exporter: every span is exported

    assert set(threads) == {"llmledger-writer"}
    finished = {
        (span.attributes or {})["gen_ai.request.model"]: span for span in spans.get_finished_spans()
    }
    span = finished["claude-sonnet-4-5-20250929"]
    assert span.name == "chat claude-sonnet-4-5-20250929"
    assert span.kind is SpanKind.CLIENT
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.schema_url == SCHEMA_URL
    assert span.start_time == int(ts.timestamp() * 1_000_000) * 1000
    assert span.end_time is not None and span.end_time - span.start_time == 1_500_000_000
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.provider.name"] == "anthropic"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.usage.input_tokens"] == 1200
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 1000
    assert attributes["gen_ai.usage.output_tokens"] == 300
    assert attributes["gen_ai.usage.reasoning.output_tokens"] == 100
    assert "gen_ai.usage.cache_creation.input_tokens" not in attributes
    assert attributes["user.id"] == "ana"
    assert attributes["llmledger.tenant"] == "acme"
    assert attributes["llmledger.feature"] == "search"
    assert attributes["llmledger.tag.env"] == "prod"
    assert attributes["llmledger.event.id"] == recorded.id
    assert attributes["llmledger.price_status"] == "priced"
    cost = Decimal(str(attributes["llmledger.cost"]))
    assert cost > 0 and attributes["llmledger.cost_usd"] == float(cost)
    failed = finished["gpt-4o"]
    assert failed.status.status_code is StatusCode.ERROR
    assert (failed.attributes or {})["error.type"] == "RateLimitError"

    assert metrics_data is not None
    points: dict[str, list[tuple[dict[str, object], object]]] = {}
    for resource_metrics in metrics_data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                points[metric.name] = [
                    (dict(p.attributes or {}), getattr(p, "sum", getattr(p, "value", None)))
                    for p in metric.data.data_points
                ]
    usage = {
        (a["gen_ai.request.model"], a["gen_ai.token.type"]): total
        for a, total in points["gen_ai.client.token.usage"]
    }
    assert usage[("claude-sonnet-4-5-20250929", "input")] == 1200
    assert usage[("claude-sonnet-4-5-20250929", "output")] == 300
    durations = points["gen_ai.client.operation.duration"]
    assert [total for a, total in durations if a["gen_ai.provider.name"] == "anthropic"] == [1.5]
    ((cost_attributes, cost_total),) = [
        point
        for point in points["llmledger.cost"]
        if point[0]["gen_ai.provider.name"] == "anthropic"
    ]
    assert cost_attributes["llmledger.tenant"] == "acme"
    assert cost_attributes["llmledger.feature"] == "search"
    assert cost_total == pytest.approx(float(cost))


def test_a_span_read_back_is_the_event_it_was_made_from() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from llmledger.otel.export import OtelExporter
    from llmledger.wire.parse import parse_event

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    now = datetime.now(UTC)
    event = UsageEvent(
        provider="google",
        model="gemini-2.5-flash",
        ts=now - timedelta(seconds=5),
        duration_ms=250.0,
        operation="chat",
        tenant="t1",
        user="u1",
        feature="f1",
        session="s1",
        tags={"k": "v"},
        request_id="resp-1",
        finish_reason="stop",
        service_tier="flex",
    ).replace(usage=llmledger.Usage(input_tokens=10, output_tokens=20, reasoning_tokens=5))
    OtelExporter(provider)([event])
    (span,) = spans.get_finished_spans()
    assert span.context is not None
    record = SpanRecord(
        trace_id=f"{span.context.trace_id:032x}",
        span_id=f"{span.context.span_id:016x}",
        name=span.name,
        start_ns=span.start_time or 0,
        end_ns=span.end_time or 0,
        attributes=dict(span.attributes or {}),
    )
    wire = event_json_from_span(record)
    assert isinstance(wire, dict)
    back = parse_event(wire, now=now)
    for name in (
        "id", "ts", "provider", "model", "duration_ms", "operation", "tenant", "user",
        "feature", "session", "tags", "request_id", "finish_reason", "service_tier", "usage",
    ):  # fmt: skip
        assert getattr(back, name) == getattr(event, name), name


def test_the_ledger_exports_into_a_real_service(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = json.loads(cli(db_url, "keys", "create", "--role", "admin", "--json"))["secret"]
    with serve(db_url, free_port()) as url:
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"})
        key = client.post("/v1/keys", json={"role": "ingest", "tenant": "acme"}).json()["secret"]
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer {key}")
        ledger = llmledger.configure(
            home=tmp_path / "app", otel=True, otel_endpoint=url, otel_metrics=False
        )
        with llmledger.attribute(user="ana", feature="search"):
            events = [
                llmledger.record(
                    provider="openai",
                    model="gpt-4o-mini",
                    input_tokens=100 + i,
                    output_tokens=10,
                    cache_read_tokens=50,
                )
                for i in range(3)
            ]
        assert ledger.flush(10)
        local = {e.id: e for e in ledger.store.events()}
        shutdown()  # closes the exporter: its spans are sent
        answer = client.get("/v1/events", params={"limit": 10}).json()["events"]
        assert {e["id"] for e in answer} == {e.id for e in events}
        for received in answer:
            mine = local[received["id"]]
            assert received["usage"]["input_tokens"] == mine.usage.input_tokens
            assert received["usage"]["cache_read_tokens"] == 50
            assert Decimal(received["cost"]) == mine.cost
            assert (received["tenant"], received["user"], received["feature"]) == (
                "acme",
                "ana",
                "search",
            )
        # A process that records and exits without closing anything: its spans still go.
        script = textwrap.dedent("""
            import llmledger
            llmledger.configure(otel=True, otel_metrics=False)
            print(llmledger.record(provider="anthropic", model="claude-haiku-4-5",
                                   input_tokens=500, output_tokens=50).id)
        """)
        done = subprocess.run(
            [sys.executable, "-c", script],
            env={
                **os.environ,
                "LLMLEDGER_HOME": str(tmp_path / "exiting"),
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{url}/v1/traces",
                "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer {key}",
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        sent = client.get(f"/v1/events/{done.stdout.strip()}").json()
        assert sent["model"] == "claude-haiku-4-5" and sent["usage"]["input_tokens"] == 500
        client.close()
