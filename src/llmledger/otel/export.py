"""OpenTelemetry export: each stored event as a span, and the GenAI client metrics.

Turned on by the ``otel`` setting (``configure(otel=True)`` or ``LLMLEDGER_OTEL=1``)
with ``llmledger[otel]`` installed.  The exporter is an after-commit listener of
the ledger (:mod:`llmledger.runtime.observers`): it runs in the writer's thread
once an event is priced and stored, never on the caller's thread, and hands the
spans to the SDK's batch processor, whose own thread sends them over OTLP/HTTP.

It has its own tracer and meter providers, so an application's OpenTelemetry
set-up (its sampler, its exporters) is neither used nor changed.  Each event is
a root span of its own trace, timed from the event's start and duration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Protocol

from llmledger.core.errors import ConfigError
from llmledger.core.events import UsageEvent
from llmledger.core.settings import Settings
from llmledger.otel.semconv import SCHEMA_URL, metric_attributes, span_attributes, span_name

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter


__all__ = ["OtelExporter", "add_exporter"]

#: Bucket boundaries the GenAI conventions advise for ``gen_ai.client.token.usage``.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
#: And for ``gen_ai.client.operation.duration`` (seconds).
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _version() -> str:
    try:
        return version("llmledger")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "0"


class OtelExporter:
    """Turns stored events into spans and metric points.

    Args:
        tracer_provider: Where the spans go (its processors export them).
        meter_provider: Where the metrics go; None: no metrics.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        ...     InMemorySpanExporter)
        >>> from datetime import UTC, datetime
        >>> spans = InMemorySpanExporter()
        >>> provider = TracerProvider()
        >>> provider.add_span_processor(SimpleSpanProcessor(spans))
        >>> OtelExporter(provider)([UsageEvent(provider="openai", model="gpt-4o",
        ...                                     ts=datetime(2025, 1, 1, tzinfo=UTC))])
        >>> spans.get_finished_spans()[0].name
        'chat gpt-4o'
    """

    def __init__(
        self, tracer_provider: TracerProvider, meter_provider: MeterProvider | None = None
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self._tracer = tracer_provider.get_tracer("llmledger", _version(), schema_url=SCHEMA_URL)
        self._token_usage: Any = None
        if meter_provider is not None:
            meter = meter_provider.get_meter("llmledger", _version(), schema_url=SCHEMA_URL)
            self._token_usage = meter.create_histogram(
                "gen_ai.client.token.usage",
                unit="{token}",
                description="Number of input and output tokens used.",
                explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
            )
            self._duration = meter.create_histogram(
                "gen_ai.client.operation.duration",
                unit="s",
                description="GenAI operation duration.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            )
            self._cost = meter.create_counter(
                "llmledger.cost",
                unit="USD",
                description="Cost of the calls, as llmledger priced them.",
            )

    def __call__(self, events: Sequence[UsageEvent]) -> None:
        """Export the events (the after-commit listener)."""
        from opentelemetry.trace import SpanKind, Status, StatusCode

        for event in events:
            start = (event.ts - _EPOCH) // _MICROSECOND * 1000
            end = start + round((event.duration_ms or 0) * 1_000_000)
            span = self._tracer.start_span(
                span_name(event),
                kind=SpanKind.CLIENT,
                attributes=span_attributes(event),
                start_time=start,
            )
            if event.status == "error":
                span.set_status(Status(StatusCode.ERROR, event.error_message or None))
            span.end(end_time=end)
            if self._token_usage is not None:
                self._measure(event)

    def _measure(self, event: UsageEvent) -> None:
        attributes = metric_attributes(event)
        for token_type, count in (
            ("input", event.usage.input_tokens),
            ("output", event.usage.output_tokens),
        ):
            self._token_usage.record(count, {**attributes, "gen_ai.token.type": token_type})
        if event.duration_ms is not None:
            self._duration.record(event.duration_ms / 1000, attributes)
        if event.cost is not None:
            attribution = {
                name: value
                for name in ("tenant", "feature")
                if (value := getattr(event, name)) is not None
            }
            self._cost.add(
                float(event.cost),
                {
                    **attributes,
                    **{f"llmledger.{name}": value for name, value in attribution.items()},
                },
            )

    def close(self) -> None:
        """Send what is waiting and stop the providers."""
        self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


def build_exporter(
    settings: Settings,
    *,
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
) -> OtelExporter:
    """An exporter sending over OTLP/HTTP as the settings say.

    Raises:
        ConfigError: when the OpenTelemetry SDK (``llmledger[otel]``) is missing.
    """
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigError(
            "the otel setting needs the OpenTelemetry SDK: pip install 'llmledger[otel]'"
        ) from None
    base = settings.otel_endpoint.rstrip("/") if settings.otel_endpoint else None
    if span_exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter = OTLPSpanExporter(endpoint=f"{base}/v1/traces" if base else None)
    resource = Resource.create()
    # The ledger closes the exporter at exit, after its last write (not the SDK's own hook).
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    meter_provider = None
    if metric_reader is None and settings.otel_metrics:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        metric_reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{base}/v1/metrics" if base else None)
        )
    if metric_reader is not None:
        meter_provider = MeterProvider(
            resource=resource, metric_readers=[metric_reader], shutdown_on_exit=False
        )
    return OtelExporter(tracer_provider, meter_provider)


class _Listeners(Protocol):
    def add(
        self,
        listener: Callable[[Sequence[UsageEvent]], None],
        *,
        on_close: Callable[[], None] | None = None,
    ) -> None: ...


def add_exporter(listeners: _Listeners, settings: Settings) -> OtelExporter:
    """Build the exporter the settings ask for and listen to each commit with it
    (``listeners``: a ledger's ``after_commit``)."""
    exporter = build_exporter(settings)
    listeners.add(exporter, on_close=exporter.close)
    return exporter
