"""One query model for reports: the CLI, the HTTP API, the dashboard and budgets use it.

Everything here is pure: the query spec, time periods, the plan of the sources
that answer a query, the mergeable aggregates, the :class:`Report` and its
exports, and the month-end forecast.  The store answers a query
(``store.report(query)``), running the plan's statements itself.

Example:
    >>> from datetime import UTC, datetime
    >>> from llmledger.store import open_store
    >>> query = build_query(now=datetime(2025, 3, 15, tzinfo=UTC), by=["model"],
    ...                     last="7d")
    >>> open_store("sqlite://").report(query).to_dict()["rows"]
    []
"""

from __future__ import annotations

from llmledger.query.errors import InvalidQueryError
from llmledger.query.export import (
    FORMATS,
    escape_formula,
    export,
    to_csv,
    to_json,
    to_markdown,
    write_xlsx,
)
from llmledger.query.forecast import Forecast, month_forecast, project_month
from llmledger.query.periods import parse_last, parse_period
from llmledger.query.plan import SourceMode, plan
from llmledger.query.report import Report
from llmledger.query.spec import (
    DEFAULT_METRICS,
    METRICS,
    TIME_BUCKETS,
    Filter,
    Query,
    SortKey,
    build_query,
    parse_dimensions,
    parse_metrics,
    parse_sort,
    parse_where,
)

__all__ = [
    "DEFAULT_METRICS",
    "FORMATS",
    "METRICS",
    "TIME_BUCKETS",
    "Filter",
    "Forecast",
    "InvalidQueryError",
    "Query",
    "Report",
    "SortKey",
    "SourceMode",
    "build_query",
    "escape_formula",
    "export",
    "month_forecast",
    "parse_dimensions",
    "parse_last",
    "parse_metrics",
    "parse_period",
    "parse_sort",
    "parse_where",
    "plan",
    "project_month",
    "to_csv",
    "to_json",
    "to_markdown",
    "write_xlsx",
]
