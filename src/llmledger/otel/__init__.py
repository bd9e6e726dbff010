"""OpenTelemetry, both ways: events exported as GenAI spans and metrics, and GenAI spans
from other instrumentations read into events (``/v1/traces``).

:mod:`llmledger.otel.semconv` and :mod:`llmledger.otel.reading` (the attribute
mapping both ways) and :mod:`llmledger.otel.otlp` (decoding) are pure;
:mod:`llmledger.otel.export` drives the OpenTelemetry SDK (``llmledger[otel]``).
"""

from llmledger.otel.semconv import SEMCONV_VERSION

__all__ = ["SEMCONV_VERSION"]
