"""A simulated organisation billing API: OpenAI's Usage and Costs API and Anthropic's
Usage and Cost Admin API, answering from calls planted in it.

It serves the documented response shapes, paged (``has_more``, ``next_page``,
``page``), one day per page by default so a reader has to follow the cursor:

- ``GET /v1/organization/usage/completions`` and ``GET /v1/organization/costs``
  (``Authorization: Bearer <admin key>``);
- ``GET /v1/organizations/usage_report/messages`` and
  ``GET /v1/organizations/cost_report`` (``x-api-key: <admin key>``).

Usage is grouped by model (snapshot names, as the providers report them); costs by
line item (OpenAI: ``"<model>, input"`` and ``"<model>, output"``) or description
(Anthropic: amounts in cents, as decimal text).  Used by the tests of
``llmledger reconcile``; point ``--base-url`` at it to try the command.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["BilledCall", "SimulatedBilling"]


@dataclass(frozen=True)
class BilledCall:
    """One call as the provider bills it.

    ``input_tokens`` counts every input token, cached or not; ``input_cost`` and
    ``output_cost`` are USD.
    """

    provider: str
    day: date
    model: str
    input_tokens: int
    output_tokens: int
    input_cost: Decimal
    output_cost: Decimal
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    service_tier: str = "standard"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    calls: list[BilledCall]
    admin_key: str
    page_days: int


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        routes = {
            "/v1/organization/usage/completions": ("openai", self._openai_usage),
            "/v1/organization/costs": ("openai", self._openai_costs),
            "/v1/organizations/usage_report/messages": ("anthropic", self._anthropic_usage),
            "/v1/organizations/cost_report": ("anthropic", self._anthropic_costs),
        }
        route = routes.get(parts.path.rstrip("/"))
        if route is None:
            self._send(404, {"error": {"message": f"no route {parts.path}", "type": "not_found"}})
            return
        provider, handler = route
        if provider == "openai":
            given = self.headers.get("authorization", "").removeprefix("Bearer ").strip()
        else:
            given = self.headers.get("x-api-key", "")
        if given != self.server.admin_key:
            self._send(
                401,
                {"error": {"message": "an admin key is required", "type": "authentication_error"}},
            )
            return
        try:
            self._send(200, handler(query))
        except (KeyError, ValueError) as exc:
            self._send(400, {"error": {"message": str(exc), "type": "invalid_request_error"}})

    # -- paging over days ------------------------------------------------------------

    def _days(self, provider: str, start: datetime, end: datetime) -> list[date]:
        first, last = start.date(), (end - timedelta(microseconds=1)).date()
        days = []
        day = first
        while day <= last:
            days.append(day)
            day += timedelta(days=1)
        return days

    def _page(self, days: list[date], query: dict[str, list[str]]) -> tuple[list[date], str | None]:
        offset = int(base64.urlsafe_b64decode(query["page"][0]).decode()) if "page" in query else 0
        limit = int(query.get("limit", ["7"])[0])
        size = max(1, min(limit, self.server.page_days))
        chunk = days[offset : offset + size]
        following = offset + size
        cursor = (
            base64.urlsafe_b64encode(str(following).encode()).decode()
            if following < len(days)
            else None
        )
        return chunk, cursor

    def _calls(self, provider: str, day: date) -> dict[str, list[BilledCall]]:
        by_model: dict[str, list[BilledCall]] = defaultdict(list)
        for call in self.server.calls:
            if call.provider == provider and call.day == day:
                by_model[call.model].append(call)
        return by_model

    # -- OpenAI --------------------------------------------------------------------------

    def _openai_window(self, query: dict[str, list[str]]) -> tuple[list[date], str | None]:
        start = datetime.fromtimestamp(int(query["start_time"][0]), UTC)
        end = (
            datetime.fromtimestamp(int(query["end_time"][0]), UTC)
            if "end_time" in query
            else start + timedelta(days=7)
        )
        return self._page(self._days("openai", start, end), query)

    def _openai_usage(self, query: dict[str, list[str]]) -> dict[str, Any]:
        days, cursor = self._openai_window(query)
        buckets = []
        for day in days:
            results: list[dict[str, Any]] = [
                {
                    "object": "organization.usage.completions.result",
                    "input_tokens": sum(c.input_tokens for c in calls),
                    "output_tokens": sum(c.output_tokens for c in calls),
                    "input_cached_tokens": sum(c.cached_tokens for c in calls),
                    "input_audio_tokens": 0,
                    "output_audio_tokens": 0,
                    "num_model_requests": len(calls),
                    "project_id": None,
                    "user_id": None,
                    "api_key_id": None,
                    "model": model,
                    "batch": None,
                }
                for model, calls in sorted(self._calls("openai", day).items())
            ]
            buckets.append(_openai_bucket(day, results))
        return _openai_page(buckets, cursor)

    def _openai_costs(self, query: dict[str, list[str]]) -> dict[str, Any]:
        days, cursor = self._openai_window(query)
        buckets = []
        for day in days:
            results: list[dict[str, Any]] = []
            for model, calls in sorted(self._calls("openai", day).items()):
                for kind, amount in (
                    ("input", sum((c.input_cost for c in calls), Decimal(0))),
                    ("output", sum((c.output_cost for c in calls), Decimal(0))),
                ):
                    results.append(
                        {
                            "object": "organization.costs.result",
                            "amount": {"value": float(amount), "currency": "usd"},
                            "line_item": f"{model}, {kind}",
                            "project_id": None,
                        }
                    )
            buckets.append(_openai_bucket(day, results))
        return _openai_page(buckets, cursor)

    # -- Anthropic -------------------------------------------------------------------------

    def _anthropic_window(self, query: dict[str, list[str]]) -> tuple[list[date], str | None]:
        start = datetime.fromisoformat(query["starting_at"][0].replace("Z", "+00:00"))
        end = (
            datetime.fromisoformat(query["ending_at"][0].replace("Z", "+00:00"))
            if "ending_at" in query
            else start + timedelta(days=7)
        )
        return self._page(self._days("anthropic", start, end), query)

    @staticmethod
    def _bucket_times(day: date) -> dict[str, str]:
        start = _day_start(day)
        return {
            "starting_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ending_at": (start + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    def _anthropic_usage(self, query: dict[str, list[str]]) -> dict[str, Any]:
        days, cursor = self._anthropic_window(query)
        data = []
        for day in days:
            results = [
                {
                    "uncached_input_tokens": sum(
                        c.input_tokens - c.cached_tokens - c.cache_write_tokens for c in calls
                    ),
                    "cache_read_input_tokens": sum(c.cached_tokens for c in calls),
                    "cache_creation": {
                        "ephemeral_5m_input_tokens": sum(c.cache_write_tokens for c in calls),
                        "ephemeral_1h_input_tokens": 0,
                    },
                    "output_tokens": sum(c.output_tokens for c in calls),
                    "server_tool_use": {"web_search_requests": 0},
                    "api_key_id": None,
                    "workspace_id": None,
                    "model": model,
                    "service_tier": calls[0].service_tier,
                    "context_window": "0-200k",
                }
                for model, calls in sorted(self._calls("anthropic", day).items())
            ]
            data.append({**self._bucket_times(day), "results": results})
        return {"data": data, "has_more": cursor is not None, "next_page": cursor}

    def _anthropic_costs(self, query: dict[str, list[str]]) -> dict[str, Any]:
        days, cursor = self._anthropic_window(query)
        data = []
        for day in days:
            results = []
            for model, calls in sorted(self._calls("anthropic", day).items()):
                for token_type, amount in (
                    ("uncached_input_tokens", sum((c.input_cost for c in calls), Decimal(0))),
                    ("output_tokens", sum((c.output_cost for c in calls), Decimal(0))),
                ):
                    results.append(
                        {
                            "currency": "USD",
                            "amount": str(amount * 100),
                            "workspace_id": None,
                            "description": f"{model} Usage - {token_type}",
                            "cost_type": "tokens",
                            "context_window": "0-200k",
                            "model": model,
                            "service_tier": calls[0].service_tier,
                            "token_type": token_type,
                        }
                    )
            data.append({**self._bucket_times(day), "results": results})
        return {"data": data, "has_more": cursor is not None, "next_page": cursor}


class SimulatedBilling:
    """The billing APIs on a free loopback port, answering from ``calls``.

    Example:
        >>> with SimulatedBilling([], admin_key="sk-admin") as billing:
        ...     billing.url.startswith("http://127.0.0.1:")
        True
    """

    def __init__(
        self,
        calls: list[BilledCall],
        *,
        admin_key: str,
        page_days: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._server = _Server((host, port), _Handler)
        self._server.calls = list(calls)
        self._server.admin_key = admin_key
        self._server.page_days = page_days
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL to give ``llmledger reconcile --base-url``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> SimulatedBilling:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="llmledger-sim-billing", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()


def _openai_bucket(day: date, results: list[dict[str, Any]]) -> dict[str, Any]:
    """One day's bucket of an OpenAI usage or costs page."""
    start = _day_start(day)
    return {
        "object": "bucket",
        "start_time": int(start.timestamp()),
        "end_time": int((start + timedelta(days=1)).timestamp()),
        "results": results,
    }


def _openai_page(buckets: list[dict[str, Any]], cursor: str | None) -> dict[str, Any]:
    """An OpenAI usage or costs page of buckets, with the cursor of the next."""
    return {"object": "page", "data": buckets, "has_more": cursor is not None, "next_page": cursor}
