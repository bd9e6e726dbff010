"""The provider's own figures: organisation usage and cost APIs, read with an admin key.

- OpenAI: the Usage API ``GET /v1/organization/usage/completions`` (``group_by=model``,
  daily buckets) and the Costs API ``GET /v1/organization/costs``
  (``group_by=line_item``; a line item reads ``"<model>, <kind>"``), paged with
  ``next_page`` → ``page``.  Costs are a number in ``amount.value`` (USD).
- Anthropic: the Usage and Cost Admin API ``GET /v1/organizations/usage_report/messages``
  (``group_by[]=model``) and ``GET /v1/organizations/cost_report``
  (``group_by[]=description``, which adds ``model`` to each result), paged the same
  way.  Costs are decimal text in cents (``amount``).

Each answer becomes :class:`~llmledger.reconcile.compare.UsageRow` per day and model,
in the ledger's buckets (input counts cached input too).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import httpx

from llmledger.core.errors import LedgerError
from llmledger.reconcile.compare import UsageRow, model_key

__all__ = [
    "DEFAULT_BASE_URLS",
    "DEFAULT_KEY_ENVS",
    "ProviderAPIError",
    "ReconcileProvider",
    "fetch_provider_rows",
    "rows_from_anthropic",
    "rows_from_openai",
]

ReconcileProvider = Literal["openai", "anthropic"]

DEFAULT_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com",
    "anthropic": "https://api.anthropic.com",
}
DEFAULT_KEY_ENVS: dict[str, str] = {
    "openai": "OPENAI_ADMIN_KEY",
    "anthropic": "ANTHROPIC_ADMIN_KEY",
}
#: Most pages read from one endpoint before giving up (a cursor that never ends).
MAX_PAGES = 1000


class ProviderAPIError(LedgerError, RuntimeError):
    """The provider's usage or cost API refused the request or answered something unreadable."""


def _pages(
    client: httpx.Client, path: str, params: Mapping[str, Any]
) -> Iterator[Mapping[str, Any]]:
    """Every page of a paged endpoint (``has_more`` / ``next_page``)."""
    page: str | None = None
    for _ in range(MAX_PAGES):
        query = dict(params)
        if page is not None:
            query["page"] = page
        try:
            answer = client.get(path, params=query)
        except httpx.HTTPError as exc:
            raise ProviderAPIError(f"{path}: {exc}") from None
        if answer.status_code != 200:
            raise ProviderAPIError(f"{path} answered {answer.status_code}: {_error_text(answer)}")
        try:
            body = answer.json()
        except ValueError:
            raise ProviderAPIError(f"{path} answered something that is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise ProviderAPIError(f"{path} answered JSON without a data list")
        yield body
        page = body.get("next_page")
        if not body.get("has_more") or not page:
            return
    raise ProviderAPIError(f"{path}: more than {MAX_PAGES} pages")


def _error_text(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:200]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return answer.text[:200]


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _decimal(value: Any, where: str) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ProviderAPIError(f"{where}: {value!r} is not an amount") from None


def _day_of_unix(seconds: Any) -> date:
    return datetime.fromtimestamp(int(seconds), UTC).date()


def _day_of_text(text: Any) -> date:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC).date()


def _add(rows: dict[tuple[date, str], UsageRow], row: UsageRow) -> None:
    key = (row.day, model_key(row.model))
    rows[key] = rows[key].plus(row) if key in rows else row


def rows_from_openai(
    usage_pages: Iterator[Mapping[str, Any]] | list[Mapping[str, Any]],
    cost_pages: Iterator[Mapping[str, Any]] | list[Mapping[str, Any]],
) -> list[UsageRow]:
    """Day-by-model rows from OpenAI's Usage and Costs API pages.

    Example:
        >>> usage = [{"data": [{"start_time": 1735689600, "results": [{"model":
        ...     "gpt-4o-mini-2024-07-18", "input_tokens": 100, "input_cached_tokens": 40,
        ...     "output_tokens": 10, "num_model_requests": 2}]}]}]
        >>> costs = [{"data": [{"start_time": 1735689600, "results": [{"amount": {"value": 0.5,
        ...     "currency": "usd"}, "line_item": "gpt-4o-mini-2024-07-18, input"}]}]}]
        >>> row, = rows_from_openai(usage, costs)
        >>> row.day.isoformat(), row.input_tokens, row.cache_read_tokens, row.calls, row.cost
        ('2025-01-01', 100, 40, 2, Decimal('0.5'))
    """
    rows: dict[tuple[date, str], UsageRow] = {}
    for page in usage_pages:
        for bucket in page["data"]:
            day = _day_of_unix(bucket.get("start_time"))
            for result in bucket.get("results") or []:
                tier = result.get("service_tier")
                _add(
                    rows,
                    UsageRow(
                        day=day,
                        model=str(result.get("model") or "(unknown)"),
                        input_tokens=_int(result.get("input_tokens")),
                        output_tokens=_int(result.get("output_tokens")),
                        cache_read_tokens=_int(result.get("input_cached_tokens")),
                        calls=_int(result.get("num_model_requests")),
                        tiers=(str(tier),) if tier else (),
                    ),
                )
    for page in cost_pages:
        for bucket in page["data"]:
            day = _day_of_unix(bucket.get("start_time"))
            for result in bucket.get("results") or []:
                amount = result.get("amount") or {}
                currency = str(amount.get("currency") or "usd").lower()
                if currency != "usd":
                    raise ProviderAPIError(f"a cost in {currency!r}; only USD is compared")
                line = str(result.get("line_item") or "(unknown)")
                model = line.rsplit(", ", 1)[0] if ", " in line else line
                _add(
                    rows,
                    UsageRow(
                        day=day,
                        model=model,
                        calls=None,
                        cost=_decimal(amount.get("value", 0), "amount.value"),
                    ),
                )
    return [rows[key] for key in sorted(rows)]


def rows_from_anthropic(
    usage_pages: Iterator[Mapping[str, Any]] | list[Mapping[str, Any]],
    cost_pages: Iterator[Mapping[str, Any]] | list[Mapping[str, Any]],
) -> list[UsageRow]:
    """Day-by-model rows from Anthropic's usage report and cost report pages.

    Anthropic counts input without the cache (``uncached_input_tokens``); the row's
    ``input_tokens`` adds the cache reads and writes back, as the ledger does.

    Example:
        >>> usage = [{"data": [{"starting_at": "2025-01-01T00:00:00Z", "results": [{"model":
        ...     "claude-sonnet-4-5-20250929", "uncached_input_tokens": 100,
        ...     "cache_read_input_tokens": 1000, "cache_creation": {
        ...     "ephemeral_5m_input_tokens": 50, "ephemeral_1h_input_tokens": 0},
        ...     "output_tokens": 10}]}]}]
        >>> costs = [{"data": [{"starting_at": "2025-01-01T00:00:00Z", "results": [{
        ...     "amount": "12.5", "currency": "USD", "model": "claude-sonnet-4-5-20250929"}]}]}]
        >>> row, = rows_from_anthropic(usage, costs)
        >>> row.input_tokens, row.cache_read_tokens, row.cache_write_tokens, row.cost
        (1150, 1000, 50, Decimal('0.125'))
    """
    rows: dict[tuple[date, str], UsageRow] = {}
    for page in usage_pages:
        for bucket in page["data"]:
            day = _day_of_text(bucket.get("starting_at"))
            for result in bucket.get("results") or []:
                creation = result.get("cache_creation") or {}
                written = _int(creation.get("ephemeral_5m_input_tokens")) + _int(
                    creation.get("ephemeral_1h_input_tokens")
                )
                read = _int(result.get("cache_read_input_tokens"))
                tier = result.get("service_tier")
                _add(
                    rows,
                    UsageRow(
                        day=day,
                        model=str(result.get("model") or "(unknown)"),
                        input_tokens=_int(result.get("uncached_input_tokens")) + read + written,
                        output_tokens=_int(result.get("output_tokens")),
                        cache_read_tokens=read,
                        cache_write_tokens=written,
                        tiers=(str(tier),) if tier else (),
                    ),
                )
    for page in cost_pages:
        for bucket in page["data"]:
            day = _day_of_text(bucket.get("starting_at"))
            for result in bucket.get("results") or []:
                currency = str(result.get("currency") or "USD").upper()
                if currency != "USD":
                    raise ProviderAPIError(f"a cost in {currency!r}; only USD is compared")
                cents = _decimal(result.get("amount", "0"), "amount")
                _add(
                    rows,
                    UsageRow(
                        day=day,
                        model=str(result.get("model") or result.get("description") or "(unknown)"),
                        cost=cents / 100,
                    ),
                )
    return [rows[key] for key in sorted(rows)]


def fetch_provider_rows(
    provider: ReconcileProvider,
    *,
    admin_key: str,
    since: datetime,
    until: datetime,
    base_url: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> list[UsageRow]:
    """The provider's day-by-model usage and cost over ``[since, until)``.

    Raises:
        ProviderAPIError: when an API refuses (a wrong or non-admin key) or answers
            something unreadable.
    """
    url = (base_url or DEFAULT_BASE_URLS[provider]).rstrip("/")
    if provider == "openai":
        headers = {"Authorization": f"Bearer {admin_key}"}
    else:
        headers = {"x-api-key": admin_key, "anthropic-version": "2023-06-01"}
    with httpx.Client(base_url=url, headers=headers, timeout=60, transport=transport) as client:
        if provider == "openai":
            window = {
                "start_time": int(since.timestamp()),
                "end_time": int(until.timestamp()),
                "bucket_width": "1d",
                "limit": 31,
            }
            usage = list(
                _pages(
                    client, "/v1/organization/usage/completions", {**window, "group_by": "model"}
                )
            )
            costs = list(
                _pages(client, "/v1/organization/costs", {**window, "group_by": "line_item"})
            )
            return rows_from_openai(usage, costs)
        window_text = {
            "starting_at": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ending_at": until.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "bucket_width": "1d",
            "limit": 31,
        }
        usage = list(
            _pages(
                client,
                "/v1/organizations/usage_report/messages",
                {**window_text, "group_by[]": "model"},
            )
        )
        costs = list(
            _pages(
                client,
                "/v1/organizations/cost_report",
                {k: v for k, v in window_text.items() if k != "limit"}
                | {"group_by[]": "description"},
            )
        )
        return rows_from_anthropic(usage, costs)
