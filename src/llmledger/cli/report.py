"""``llmledger report``: totals, breakdowns, trends, timelines and forecasts from the query engine.

The command parses options into a :class:`~llmledger.query.Query`, runs it with
:meth:`llmledger.store.SqlStore.report` and renders the one report shape as a
table, JSON, CSV, XLSX or Markdown.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import click

from llmledger.cli.common import echo_json, ledger_from, money, print_table
from llmledger.core.usage import BUCKETS
from llmledger.pricing.fx import ExchangeRates
from llmledger.query import (
    FORMATS,
    TIME_BUCKETS,
    Forecast,
    Query,
    Report,
    SourceMode,
    build_query,
    export,
    month_forecast,
)
from llmledger.query.export import write_text
from llmledger.query.periods import parse_time_in_zone
from llmledger.query.spec import NONE_VALUE

__all__ = ["COMMANDS", "print_report", "rebuild_rollups_command", "render_chart"]

_COUNTS = frozenset(
    {"calls", "successes", "errors", "unpriced_calls", "incomplete_calls", "total_tokens", *BUCKETS}
)
_SHORT = {
    "input_tokens": "input",
    "output_tokens": "output",
    "cache_read_tokens": "cached",
    "cache_write_tokens": "cache write",
    "reasoning_tokens": "reasoning",
    "total_tokens": "tokens",
    "unpriced_calls": "unpriced",
    "incomplete_calls": "incomplete",
    "api_key_fingerprint": "key",
}
_BAR = "█"
_PARTIAL = " ▏▎▍▌▋▊▉"


def _amount(value: Decimal | None, currency: str, places: int = 4) -> str:
    if value is None:
        return "unpriced"
    return money(value, places) if currency == "USD" else f"{value:,.{places}f} {currency}"


def _format(name: str, value: Any, currency: str) -> str:
    if value is None:
        return "" if name not in ("cost", "cost_per_call") else "unpriced"
    if name in ("cost", "cost_per_call"):
        return _amount(value, currency, 4 if name == "cost" else 6)
    if name in _COUNTS:
        return f"{int(value):,}"
    if name.endswith("_rate"):
        return f"{value:.1%}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S %z")
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


def _bucket_label(value: datetime | None, every: str) -> str:
    if value is None:
        return ""
    if every == "hour":
        return value.strftime("%Y-%m-%d %H:00 %z")
    if every == "month":
        return value.strftime("%Y-%m")
    if every == "week":
        year, week, _ = value.isocalendar()
        return f"{year}-W{week:02d} ({value:%m-%d})"
    return value.strftime("%Y-%m-%d")


def render_chart(points: Sequence[tuple[str, float]], width: int = 40) -> list[str]:
    """Horizontal bars, one per labelled value, scaled to the largest.

    Example:
        >>> render_chart([("mon", 2.0), ("tue", 1.0)], width=4)
        ['mon ████ 2', 'tue ██   1']
    """
    if not points:
        return []
    top = max(v for _, v in points) or 1.0
    label_width = max(len(label) for label, _ in points)
    lines = []
    for label, value in points:
        eighths = round(value / top * width * 8)
        bar = _BAR * (eighths // 8) + (_PARTIAL[eighths % 8] if eighths % 8 else "")
        shown = f"{value:,.4f}".rstrip("0").rstrip(".") if value else "0"
        lines.append(f"{label.ljust(label_width)} {bar.ljust(width)} {shown}")
    return lines


def _cell(value: Any, names: Mapping[str, str] | None) -> str:
    if value is None:
        return NONE_VALUE
    shown = names.get(value) if names else None
    return f"{shown} ({value})" if shown and shown != value else str(value)


def print_report(
    report: Report, *, chart: bool = True, features: Mapping[str, str] | None = None
) -> None:
    """Render a report for people: a summary line, the table, a trend chart, notes.

    Args:
        report: The report.
        chart: Draw a trend chart under tables by time bucket.
        features: Display names of declared features (the ``features`` setting),
            shown beside each feature's name.

    Example:
        >>> from llmledger.query import Query, Report
        >>> print_report(Report(Query(), {"calls": 0}, []))
        no calls in this period
    """
    query = report.query
    total = report.total
    currency = report.currency
    calls = int(total.get("calls") or 0)
    if not calls:
        click.echo("no calls in this period")
        return
    summary = [f"{calls:,} calls"]
    if "cost" in total:
        summary.append(_amount(total["cost"], currency))
    if total.get("unpriced_calls"):
        summary.append(f"{total['unpriced_calls']:,} unpriced")
    if total.get("incomplete_calls"):
        # Their cost is in the total but leaves out units no price had a rate for.
        summary.append(f"{total['incomplete_calls']:,} priced incompletely")
    click.echo(", ".join(summary) + f" ({_describe_range(query)})")
    heads = [*([query.every] if query.every else []), *query.by]
    if heads:
        columns = [*heads, *query.metrics]
        table = []
        for row in report.rows:
            cells = [_bucket_label(row[query.every], query.every)] if query.every else []
            cells += [_cell(row[d], features if d == "feature" else None) for d in query.by]
            cells += [_format(m, row.get(m), currency) for m in query.metrics]
            table.append(cells)
        for label, values in (("other", report.other), ("total", total)):
            if values is not None:
                table.append(
                    [
                        label,
                        *([""] * (len(heads) - 1)),
                        *(_format(m, values.get(m), currency) for m in query.metrics),
                    ]
                )
        title = " and ".join(
            ([f"by {query.every}"] if query.every else [])
            + ([f"by {', '.join(query.by)}"] if query.by else [])
        )
        print_table(
            title,
            [_SHORT.get(c, c) for c in columns],
            table,
            right=[_SHORT.get(m, m) for m in query.metrics],
        )
    else:
        print_table(
            None,
            ("metric", "value"),
            [(m, _format(m, total.get(m), currency)) for m in query.metrics],
            right=("value",),
        )
    if chart and query.every and report.rows:
        _print_trend(report)
    for note in report.notes:
        click.echo(f"note: {note}")


def _print_trend(report: Report) -> None:
    query = report.query
    metric = "cost" if "cost" in query.metrics else "calls"
    every = query.every or "day"
    sums: dict[str, float] = {}
    for row in report.rows:
        label = _bucket_label(row[every], every)
        sums[label] = sums.get(label, 0.0) + float(row.get(metric) or 0)
    click.echo(f"\n{metric} per {every}" + (f" ({report.currency})" if metric == "cost" else ""))
    for line in render_chart(sorted(sums.items())):
        click.echo(line)


def _describe_range(query: Query) -> str:
    def show(moment: datetime) -> str:
        return moment.astimezone(query.zone).strftime("%Y-%m-%d %H:%M %Z")

    if query.since and query.until:
        return f"{show(query.since)} to {show(query.until)}"
    if query.since:
        return f"since {show(query.since)}"
    if query.until:
        return f"until {show(query.until)}"
    return "all time"


def _print_forecast(forecast: Forecast) -> None:
    c = forecast.currency
    click.echo(
        f"\nforecast for {forecast.month}: {_amount(forecast.spent, c)} so far; at "
        f"{_amount(forecast.run_rate_per_day, c)}/day (mean of the last {forecast.basis_days} "
        f"days) the month ends near {_amount(forecast.projected, c, 2)}"
    )


def _print_timeline(
    calls: list[dict[str, Any]], currency: str, features: Mapping[str, str]
) -> None:
    rows = [
        (
            call["ts"].strftime("%Y-%m-%d %H:%M:%S"),
            call["provider"],
            call["model"],
            _cell(call["feature"], features),
            call["status"],
            f"{call['input_tokens']:,}",
            f"{call['output_tokens']:,}",
            _amount(call["cost"], currency, 6),
            "" if call["duration_ms"] is None else f"{call['duration_ms']:,.0f}",
        )
        for call in calls
    ]
    print_table(
        f"timeline ({len(rows)} calls)",
        ("time", "provider", "model", "feature", "status", "input", "output", "cost", "ms"),
        rows,
        right=("input", "output", "cost", "ms"),
    )


def _rates(ctx: click.Context) -> ExchangeRates:
    settings = ledger_from(ctx).settings
    return ExchangeRates.load(*settings.all_price_files())


@click.command("report")
@click.option(
    "--by",
    "by",
    multiple=True,
    metavar="DIM[,DIM…]",
    help="Group by dimensions: provider, model, response_model, operation, status, "
    "tenant, user, feature, session, api_key_fingerprint (or key), tag:KEY, or "
    "tag (every tag; a call with several tags counts in each).",
)
@click.option("--every", type=click.Choice(TIME_BUCKETS), help="Time buckets (with a trend chart).")
@click.option(
    "--tz",
    default="UTC",
    show_default=True,
    help="IANA time zone for bucket boundaries, periods and dates without an offset.",
)
@click.option("--since", help="Start of the range: ISO 8601 time or date (in --tz without offset).")
@click.option("--until", help="End of the range, exclusive (ISO 8601).")
@click.option("--last", help="The span ending now (or at --until): 30m, 12h, 7d, 2w.")
@click.option(
    "--period",
    help="A calendar period in --tz: today, yesterday, this-week, "
    "last-week, this-month, last-month, this-year, YYYY, YYYY-MM, "
    "YYYY-MM-DD, YYYY-Www.",
)
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="DIM=V[,V…]",
    help="Keep calls whose DIM is one of the values (DIM!=V drops them; (none) means "
    "not set; tag:KEY=V for tags). Repeat to combine.",
)
@click.option(
    "--metrics",
    "metrics",
    multiple=True,
    metavar="M[,M…]",
    help="Metrics to show ('all' for every one; see docs/reports.md).",
)
@click.option(
    "--sort",
    "sort",
    multiple=True,
    metavar="NAME[:asc|:desc]",
    help="Order groups by a metric or dimension (default: cost, then calls).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="Keep the top N groups; the rest are summed in an 'other' row.",
)
@click.option(
    "--currency",
    help="Show costs in this currency, converted with the dated exchange "
    "rates of your price files (default: the currency setting).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("text", *FORMATS)),
    default="text",
    show_default=True,
    help="Output format.",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of the terminal (required for xlsx).",
)
@click.option(
    "--timeline",
    "with_timeline",
    is_flag=True,
    help="Per-entity view: totals, breakdown by feature (unless --by) and every call.",
)
@click.option(
    "--forecast",
    "with_forecast",
    is_flag=True,
    help="Add a month-end forecast from the last 7 days' run rate.",
)
@click.option(
    "--chart/--no-chart",
    default=True,
    show_default=True,
    help="Draw the trend chart under --every tables.",
)
@click.option(
    "--source",
    type=click.Choice(("auto", "hourly", "rollups", "events")),
    default="auto",
    show_default=True,
    help="Read daily and hourly rollups where exact (auto), hourly rollups only "
    "(hourly), rollups or fail (rollups), or raw events only (events).",
)
@click.pass_context
def report_command(
    ctx: click.Context,
    by: tuple[str, ...],
    every: str | None,
    tz: str,
    since: str | None,
    until: str | None,
    last: str | None,
    period: str | None,
    where: tuple[str, ...],
    metrics: tuple[str, ...],
    sort: tuple[str, ...],
    limit: int | None,
    currency: str | None,
    fmt: str,
    as_json: bool,
    output: Path | None,
    with_timeline: bool,
    with_forecast: bool,
    chart: bool,
    source: str,
) -> None:
    """What was spent, on what, for whom: totals, breakdowns, trends and forecasts.

    \b
    Examples:
      llmledger report                                  summary
      llmledger report --by model --last 30d            by model
      llmledger report --by user --period this-month    by user
      llmledger report --every day --last 14d           trend with a chart
      llmledger report --where tag:podcast_id=rec123 --timeline
      llmledger report --by model --format csv -o models.csv
    """
    ledger = ledger_from(ctx)
    now = datetime.now(UTC)
    query = build_query(
        now=now,
        by=by,
        every=every,
        tz=tz,
        since=since,
        until=until,
        last=last,
        period=period,
        where=where,
        metrics=metrics,
        sort=sort,
        limit=limit,
        currency=currency or ledger.settings.currency,
    )
    if with_timeline and not query.by:
        query = replace(query, by=("feature",))
    rates = _rates(ctx) if query.currency != "USD" else None
    report = ledger.store.report(query, rates=rates, mode=cast(SourceMode, source))
    calls = ledger.store.timeline(query, rates=rates) if with_timeline else None
    forecast = month_forecast(ledger.store, query, now, rates=rates) if with_forecast else None
    fmt = "json" if as_json else fmt
    if fmt == "json":
        data = report.to_dict()
        if calls is not None:
            data["timeline"] = [{k: _plain(v) for k, v in call.items()} for call in calls]
        if forecast is not None:
            data["forecast"] = forecast.to_dict()
        if output is None:
            echo_json(data)
        else:
            write_text(output, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return
    if fmt != "text":
        text = export(report, fmt, output)
        if output is None:
            click.echo(text, nl=False)
        return
    if output is not None:
        rendered = io.StringIO()
        with contextlib.redirect_stdout(rendered):
            _print_all(report, calls, forecast, chart, ledger.settings.features)
        write_text(output, rendered.getvalue())
        return
    _print_all(report, calls, forecast, chart, ledger.settings.features)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _print_all(
    report: Report,
    calls: list[dict[str, Any]] | None,
    forecast: Forecast | None,
    chart: bool,
    features: Mapping[str, str],
) -> None:
    print_report(report, chart=chart, features=features)
    if calls is not None:
        click.echo()
        _print_timeline(calls, report.currency, features)
    if forecast is not None:
        _print_forecast(forecast)


@click.command("rebuild-rollups")
@click.option("--since", help="Start of the range (ISO 8601; UTC without offset); default: all.")
@click.option("--until", help="End of the range, exclusive (ISO 8601).")
@click.pass_context
def rebuild_rollups_command(ctx: click.Context, since: str | None, until: str | None) -> None:
    """Recompute the report rollups from the raw events (whole UTC hours and days).

    Needed only after changing events outside llmledger; llmledger keeps
    rollups up to date as it writes and as it reprices.
    """
    start = parse_time_in_zone(since, UTC, "--since")
    end = parse_time_in_zone(until, UTC, "--until")
    rows = ledger_from(ctx).store.rebuild_rollups(start, end)
    click.echo(f"rollups rebuilt: {rows:,} rows")


COMMANDS = [report_command]
