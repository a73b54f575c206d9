"""``pulse replay``, ``pulse run``, ``pulse metrics`` and ``pulse report``: the dataflow and what it wrote."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from connectors.records import DEFAULT_MAX_WAIT_S
from stream.cli.common import (
    ConfigOpt,
    MetricsPortOpt,
    PrefixOpt,
    RedisUrlOpt,
    VerboseOpt,
    cluster_addresses,
    err,
    fail,
    guard,
    load_settings,
    progress_bar,
    redis_for,
)
from stream.keys import Keys
from stream.schema import parse_ts
from stream.settings import Settings
from stream.stopping import install_stop_handlers

__all__ = ["register"]

log = logging.getLogger("pulse")


def replay(
    path: Annotated[Path, typer.Argument(help="File to replay (.gz read transparently).", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", "-f", help="Record format: twcs (Customer Support on Twitter CSV), jsonl (one Mention per line), csv (needs --mapping), calls (call-centre volume).")] = "jsonl",
    mapping: Annotated[Path | None, typer.Option("--mapping", help="TOML column mapping for --format csv (e.g. connectors/mappings/airline.toml).", show_default=False)] = None,
    speed: Annotated[float, typer.Option("--speed", help="0 = as fast as possible; X = replay in event time X times faster than real time.")] = 0.0,
    max_wait: Annotated[float, typer.Option("--max-wait", help="With --speed X: wait at most this many seconds between two records (a silence of days, or a record dated years off, is shortened instead of stalling the replay); 0 = never shorten. Pacing never changes what the flow writes.", min=0.0)] = DEFAULT_MAX_WAIT_S,
    recovery_dir: Annotated[Path | None, typer.Option("--recovery-dir", help="Bytewax recovery directory: a killed replay started again with the same directory resumes where it was.", show_default=False)] = None,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Bytewax worker threads in this process.", min=1)] = 1,
    metrics_port: MetricsPortOpt = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Do not show the progress bar.")] = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run a bounded file through the flow (in event-time order) and exit when it is done."""
    from connectors.files import FileSource
    from stream.runner import run_flow

    settings = load_settings(config, verbose, redis_url=redis_url, prefix=prefix, for_flow=True)
    url, client = redis_for(settings)
    if fmt == "csv" and mapping is None:
        raise fail("--format csv needs --mapping FILE.toml (see connectors/mappings/airline.toml)")
    fmt_arg = "csv" if fmt == "csv" else fmt

    def go() -> None:
        install_stop_handlers()
        progress, update = progress_bar(f"replay {path.name}")
        source = FileSource(path.resolve(), fmt_arg, mapping=mapping, speed=speed, max_wait_s=max_wait,
                            on_progress=None if no_progress else update)
        started = time.monotonic()
        if no_progress:
            run_id = run_flow(source, settings, url, workers=workers, recovery_dir=recovery_dir,
                              metrics_port=metrics_port)
        else:
            with progress:
                run_id = run_flow(source, settings, url, workers=workers, recovery_dir=recovery_dir,
                                  metrics_port=metrics_port)
        counts = _source_counts(client, settings, f"file:{path.resolve()}", run_id)
        log.info("replay of %s finished in %.1fs", path, time.monotonic() - started)
        err.print(f"replayed {path} (run {run_id}): offered {counts['offered']}, accepted {counts['accepted']}, "
                  f"dead letters {counts['dead_letters']}, duplicates {counts['duplicates']} "
                  f"(see 'pulse metrics' for every source under prefix {settings.prefix!r})")
        if counts["dead_letters"]:
            _print_dead_letters(client, settings, f"file:{path.resolve()}", run_id, counts["dead_letters"])

    guard(go)


def _print_dead_letters(client: Any, settings: Settings, source: str, run: str, total: int, n: int = 5) -> None:
    """Where the first dead letters of a file are and why (the rest: the dead-letter stream, or the dashboard)."""
    from stream.metrics import dead_letters_of

    keys = Keys(settings.prefix)
    for d in dead_letters_of(client, keys, source, run, n):
        err.print(f"  {d.get('origin') or d.get('key', '?')}: {d.get('reason', '')}", markup=False, highlight=False)
    more = f"all {total}, " if total > n else ""
    err.print(f"  ({more}with their raw records: redis-cli XRANGE {keys.dlq} - +, or the dashboard's Dead letters "
              "panel)", markup=False, highlight=False)


def _source_counts(client: Any, settings: Settings, source: str, run_id: str) -> dict[str, int]:
    """Offered, accepted, dead letters and duplicates of one source in one run (the counters are per both)."""
    names = ("offered", "accepted", "dead_letters", "duplicates")
    values = client.hmget(Keys(settings.prefix).stats, [f"{source}@{run_id}|{n}" for n in names])
    return {n: int(v or 0) for n, v in zip(names, values, strict=True)}


def run(
    source: Annotated[str, typer.Option("--source", "-s", help="Where mentions come from: sim or sim:SEED (the simulator), file:PATH (bounded; see --format), ws://HOST:PORT/… or wss://… (WebSocket firehose), redis://HOST:PORT[/DB]/PREFIX (Redis input streams PREFIXin:N).")] = "sim",
    fmt: Annotated[str, typer.Option("--format", "-f", help="Record format of a file: source: jsonl, twcs, csv (needs --mapping), calls.")] = "jsonl",
    mapping: Annotated[Path | None, typer.Option("--mapping", help="TOML column mapping for --format csv.", show_default=False)] = None,
    speed: Annotated[float, typer.Option("--speed", help="For sim and file sources: 0 = as fast as possible, X = X times real time.")] = 60.0,
    seed: Annotated[int, typer.Option("--seed", help="Simulator seed for a bare 'sim' (same seed, same world).")] = 7,
    limit: Annotated[int | None, typer.Option("--limit", help="Stop the simulator after this many events (default: endless).", show_default=False)] = None,
    bounded: Annotated[bool, typer.Option("--bounded", help="Redis Streams: stop once the streams are drained and the producer marked the end (pulse ingest --eof).")] = False,
    recovery_dir: Annotated[Path | None, typer.Option("--recovery-dir", help="Bytewax recovery directory (resume after a crash).", show_default=False)] = None,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Bytewax worker threads in this process.", min=1)] = 1,
    process_id: Annotated[int | None, typer.Option("--process-id", "-i", help="This process's index in a cluster of processes (with --addresses; start one process per address, same options otherwise).", min=0, show_default=False)] = None,
    metrics_port: MetricsPortOpt = None,
    addresses: Annotated[str | None, typer.Option("--addresses", "-a", help="host:port of every process of the cluster, separated by ';' (index = --process-id). Threads share the GIL: scale out with processes.", show_default=False)] = None,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run the flow on a source; unbounded sources run until stopped (Ctrl-C)."""
    from stream.runner import run_flow
    from stream.sources import build_source, is_endless, live_inputs

    settings = load_settings(config, verbose, redis_url=redis_url, prefix=prefix, for_flow=True)
    cluster = cluster_addresses(process_id, addresses)

    def go() -> None:
        src = build_source(source, speed=speed, seed=seed, limit=limit, fmt=fmt,
                           mapping=str(mapping) if mapping else None, bounded=bounded, settings=settings)
        url, _ = redis_for(settings)
        live = is_endless(source, limit=limit, bounded=bounded)
        install_stop_handlers()
        log.info("running the flow on %s%s", source, " with the live inputs (labels, replies)" if live else "")
        run_flow(src, settings, url, workers=workers, recovery_dir=recovery_dir,
                 live=live_inputs(url, settings) if live else (), process_id=process_id, addresses=cluster,
                 metrics_port=metrics_port)

    guard(go)


def metrics(
    as_json: Annotated[bool, typer.Option("--json", help="Print the snapshot as JSON (the documented contract).")] = False,
    since: Annotated[str | None, typer.Option("--since", help="Only windows from this time on (ISO 8601, UTC if no offset).", show_default=False)] = None,
    until: Annotated[str | None, typer.Option("--until", help="Only windows before this time (ISO 8601).", show_default=False)] = None,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Print a snapshot of the analytics over the retained range, or the given one."""
    from stream.metrics import snapshot

    settings = load_settings(config, verbose, redis_url=redis_url, prefix=prefix)

    def go() -> None:
        lo = parse_ts(since, "--since") if since else None
        hi = parse_ts(until, "--until") if until else None
        _, client = redis_for(settings)
        from stream.insights import parse_business_hours

        doc = snapshot(client, Keys(settings.prefix), lo, hi, business_hours=parse_business_hours(settings.business_hours),
                       after_reply_days=settings.after_reply_days)
        if as_json:
            sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
            return
        _print_metrics(doc)

    guard(go)


def report(
    since: Annotated[str | None, typer.Option("--from", help="First period (ISO 8601, UTC if no offset); default: the oldest retained.", show_default=False)] = None,
    until: Annotated[str | None, typer.Option("--to", help="End of the range, exclusive (ISO 8601); default: the newest data.", show_default=False)] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv or parquet (one row per period x brand x channel), or html (a management report: brands, channels, periods).")] = "html",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write; default: standard output (csv, html).", show_default=False)] = None,
    per: Annotated[str, typer.Option("--per", help="Period length: hour or day.")] = "day",
    brand: Annotated[list[str] | None, typer.Option("--brand", help="Only this brand (repeat for more).", show_default=False)] = None,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Management report with polars: mentions, authors, sentiment, answer rate, first response, unanswered."""
    from stream.report import FORMATS, build_report, write_report

    settings = load_settings(config, verbose, redis_url=redis_url, prefix=prefix)
    if fmt not in FORMATS:
        raise fail(f"--format: unknown format {fmt!r} (use {', '.join(FORMATS)})")
    if per not in ("hour", "day"):
        raise fail(f"--per: expected hour or day, got {per!r}")

    def go() -> None:
        lo = parse_ts(since, "--from") if since else None
        hi = parse_ts(until, "--to") if until else None
        if lo and hi and hi <= lo:
            raise ValueError("--to must be after --from")
        _, client = redis_for(settings)
        rep = build_report(client, Keys(settings.prefix), lo, hi, "h" if per == "hour" else "d", brand or None)
        text = write_report(rep, fmt, output)
        if text is not None:
            sys.stdout.write(text)
        log.info("report: %d period rows, %d brands", rep.periods.height, rep.brands.height)
        if output is not None:
            err.print(f"report written to {output} ({rep.periods.height} rows, {rep.brands.height} brands)")

    guard(go)


def _print_metrics(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(emoji=False, highlight=False, width=None if sys.stdout.isatty() else 200)
    out.print(f"offered {doc['offered']}  accepted {doc['accepted']}  dead letters {doc['dead_letters']}  "
              f"duplicates {doc['duplicates']}  late {doc['late']}")
    table = Table("brand", "mentions", "authors", "queries", "negative", "first resp. n", "mean", "p50", "p90",
                  "answer rate", "unanswered", "attraction", "participation", title="per brand")

    def fmt_ms(v: float | None) -> str:
        return "-" if v is None else f"{v / 60000:.1f} min"

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v * 100:.1f} %"

    for brand, b in sorted(doc["brands"].items(), key=lambda kv: -kv[1]["mentions"]):
        fr = b["first_response"]
        table.add_row(brand, str(b["mentions"]), str(b["authors"]), str(b["queries"]),
                      str(b["sentiment"]["negative"]), str(fr["count"]), fmt_ms(fr["mean_ms"]),
                      fmt_ms(fr["p50_ms"]), fmt_ms(fr["p90_ms"]), pct(b.get("answer_rate")), str(b["unanswered"]),
                      pct(b.get("attraction_rate")), pct(b.get("participation_rate")))
    out.print(table)
    out.print("quantiles from DDSketches (within 1 %) where exact values are no longer kept; --json for everything")


def register(app: typer.Typer) -> None:
    """Add ``replay``, ``run``, ``metrics`` and ``report`` to the ``pulse`` app."""
    for command in (replay, run, metrics, report):
        app.command()(command)
