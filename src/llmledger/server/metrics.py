"""Counters of one service instance, in the Prometheus text format.

No client library: a handful of counters and one histogram, guarded by a lock,
rendered by :meth:`Metrics.render`.
"""

from __future__ import annotations

import bisect
import threading

__all__ = ["LATENCY_BUCKETS", "Metrics"]

#: Upper bounds (seconds) of the ingest latency histogram.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class Metrics:
    """What this instance has ingested and how long it took.

    Example:
        >>> m = Metrics()
        >>> m.record_ingest(accepted=3, duplicate=1, rejected=0, seconds=0.02)
        >>> "llmledger_events_ingested_total 3" in m.render()
        True
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ingested = 0
        self.duplicates = 0
        self.rejected = 0
        self.requests = 0
        self.failed_requests = 0
        self.spans_ignored = 0
        self._bucket_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0

    def record_ingest(
        self, *, accepted: int, duplicate: int, rejected: int, seconds: float
    ) -> None:
        """Count one ingest request that was answered."""
        with self._lock:
            self.ingested += accepted
            self.duplicates += duplicate
            self.rejected += rejected
            self.requests += 1
            self._bucket_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            self._latency_sum += seconds

    def record_failure(self, *, rejected: int = 0) -> None:
        """Count an ingest request refused as a whole (bad body, database down)."""
        with self._lock:
            self.failed_requests += 1
            self.rejected += rejected

    def record_spans_ignored(self, count: int) -> None:
        """Count OTLP spans that were not model calls (``/v1/traces``)."""
        with self._lock:
            self.spans_ignored += count

    def render(self) -> str:
        """The metrics in the Prometheus text exposition format."""
        with self._lock:
            counts = list(self._bucket_counts)
            total_seconds = self._latency_sum
            values = (
                self.ingested,
                self.duplicates,
                self.rejected,
                self.requests,
                self.failed_requests,
                self.spans_ignored,
            )
        ingested, duplicates, rejected, requests, failed, ignored = values
        lines = [
            "# HELP llmledger_events_ingested_total Events stored by this instance.",
            "# TYPE llmledger_events_ingested_total counter",
            f"llmledger_events_ingested_total {ingested}",
            "# HELP llmledger_events_duplicate_total Events received again (already stored).",
            "# TYPE llmledger_events_duplicate_total counter",
            f"llmledger_events_duplicate_total {duplicates}",
            "# HELP llmledger_events_rejected_total Events refused as invalid.",
            "# TYPE llmledger_events_rejected_total counter",
            f"llmledger_events_rejected_total {rejected}",
            "# HELP llmledger_ingest_failed_requests_total Ingest requests refused as a whole.",
            "# TYPE llmledger_ingest_failed_requests_total counter",
            f"llmledger_ingest_failed_requests_total {failed}",
            "# HELP llmledger_spans_ignored_total OTLP spans received that were not model calls.",
            "# TYPE llmledger_spans_ignored_total counter",
            f"llmledger_spans_ignored_total {ignored}",
            "# HELP llmledger_ingest_duration_seconds Time to answer an ingest request.",
            "# TYPE llmledger_ingest_duration_seconds histogram",
        ]
        cumulative = 0
        for bound, count in zip(LATENCY_BUCKETS, counts, strict=False):
            cumulative += count
            lines.append(f'llmledger_ingest_duration_seconds_bucket{{le="{bound}"}} {cumulative}')
        cumulative += counts[-1]
        lines.append(f'llmledger_ingest_duration_seconds_bucket{{le="+Inf"}} {cumulative}')
        lines.append(f"llmledger_ingest_duration_seconds_sum {total_seconds}")
        lines.append(f"llmledger_ingest_duration_seconds_count {requests}")
        return "\n".join(lines) + "\n"
