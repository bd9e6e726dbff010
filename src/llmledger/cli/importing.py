"""``llmledger import``: the logs of home-grown loggers (CSV, JSON Lines) into the ledger."""

from __future__ import annotations

from pathlib import Path

import click

from llmledger.cli.common import echo_json, ledger_from, print_table

__all__ = ["COMMANDS", "import_command"]

#: Rejections listed on the terminal (all of them are in the rejects file).
_SHOWN = 20


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--map",
    "maps",
    multiple=True,
    metavar="COLUMN=FIELD",
    help="Map a column onto an event field: section=feature, location_id=tenant, "
    "podcast_id=tag:podcast_id, prompt_tokens=input_tokens (dotted COLUMN for nested "
    "JSON). Columns named like a field map to it. Repeatable.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Give every row this value where it has none: provider=anthropic. Repeatable.",
)
@click.option(
    "--mapping",
    "mapping_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A YAML mapping file (map:, set:, tz:, source:); --map and --set win over it.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("csv", "jsonl")),
    help="The log's format (default: jsonl for .jsonl/.ndjson/.json, else csv).",
)
@click.option("--tz", help="IANA zone of times written without an offset (else refused).")
@click.option(
    "--source",
    help="Name the derived event ids are made from (default: the file's name); keep it "
    "when the same log is imported again under another name.",
)
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where rejected rows are written (default: NAME.rejected.EXT beside the file).",
)
@click.option("--dry-run", is_flag=True, help="Validate and price, write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def import_command(
    ctx: click.Context,
    file: Path,
    maps: tuple[str, ...],
    sets: tuple[str, ...],
    mapping_file: Path | None,
    fmt: str | None,
    tz: str | None,
    source: str | None,
    rejects: Path | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Import a CSV or JSON Lines log of LLM calls, mapping its columns onto events.

    Each row is validated as llmledger.record() validates a call; rejected rows are
    written, unchanged, to a rejects file with their line number and reason. Rows
    without a cost are priced from the price source; a cost in the row is kept as
    reported. Event ids come from the row (or a column mapped to id), so running
    the same import twice stores nothing new.

    \b
    Examples:
      llmledger import usage.csv --map section=feature --map location_id=tenant \\
          --map prompt_tokens=input_tokens --map completion_tokens=output_tokens \\
          --set provider=openai --tz UTC
      llmledger import calls.jsonl --mapping mapping.yaml --dry-run
    """
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from llmledger.runtime.importer import ColumnMapping, import_file, load_mapping

    base = load_mapping(mapping_file) if mapping_file is not None else None
    mapping = ColumnMapping.build(maps, sets, tz=tz, source=source, base=base)
    ledger = ledger_from(ctx)
    if ledger.settings.url:
        raise click.ClickException(
            "import writes into a ledger database; unset LLMLEDGER_URL or give --database-url"
        )
    size = file.stat().st_size
    with Progress(
        TextColumn("importing {task.description}"),
        BarColumn(),
        DownloadColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(file.name, total=size or None)
        result = import_file(
            ledger,
            file,
            mapping,
            fmt=fmt,  # type: ignore[arg-type]  # click.Choice
            rejects=rejects,
            dry_run=dry_run,
            progress=lambda done: progress.update(task, completed=done),
        )
    if as_json:
        echo_json({**result.to_dict(), "dry_run": dry_run})
    else:
        verb = "would import" if dry_run else "imported"
        click.echo(
            f"{result.rows} rows: {verb} {result.imported}, "
            f"{result.duplicates} already in the ledger, {len(result.rejected)} rejected "
            f"({result.priced} priced, {result.reported} with their own cost, "
            f"{result.unpriced} unpriced)"
        )
        if result.rejected:
            print_table(
                "rejected rows",
                ("line", "reason"),
                [(r.line, r.reason) for r in result.rejected[:_SHOWN]],
                right=("line",),
            )
            more = len(result.rejected) - _SHOWN
            if more > 0:
                click.echo(f"... and {more} more")
        if result.rejects_file is not None:
            click.echo(f"rejected rows written to {result.rejects_file}")
    if result.rejected:
        raise SystemExit(1)


COMMANDS = [import_command]
