"""The ``pulse`` command line: run, replay and inspect the Social Pulse engine.

Settings come from flags, then ``PULSE_*`` / ``REDIS_URL`` environment variables, then a TOML file
(``--config``, ``PULSE_CONFIG`` or ``./pulse.toml``).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

try:  # Typer >= 0.20 ships its own copy of click
    from typer._click import exceptions as _cx
except ImportError:  # pragma: no cover - older Typer uses click itself
    from click import exceptions as _cx  # type: ignore[no-redef]

from stream.cmdline import (
    ConfigOpt,
    PrefixOpt,
    RedisUrlOpt,
    VerboseOpt,
    cluster_addresses,
    err,
    fail,
    load_settings,
    progress_bar,
    redis_for,
)
from stream.keys import Keys
from stream.redisconn import RedisUnavailable
from stream.schema import parse_ts
from stream.settings import Settings
from stream.stopping import install_stop_handlers

__all__ = ["app", "main"]

log = logging.getLogger("pulse")

ROOT = Path(__file__).resolve().parents[1]


class _PulseTyper(typer.Typer):
    """Typer app whose usage errors are one clear line (and exit code 2), never a traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        command = typer.main.get_command(self)
        try:
            rv = command.main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
            # Without standalone mode click returns an Exit's code instead of exiting.
            if isinstance(rv, int) and rv:
                sys.exit(rv)
            return rv
        except _cx.UsageError as exc:
            if type(exc).__name__.startswith("NoArgsIsHelp"):
                sys.exit(0)  # Typer has printed the help already
            where = exc.ctx.command_path if exc.ctx else "pulse"
            print(f"{where}: error: {exc.format_message()} (see '{where} --help')", file=sys.stderr)
            sys.exit(2)
        except _cx.ClickException as exc:
            print(f"pulse: error: {exc.format_message()}", file=sys.stderr)
            sys.exit(exc.exit_code)
        except typer.Abort:
            print("pulse: aborted", file=sys.stderr)
            sys.exit(130)
        except typer.Exit as exc:
            sys.exit(exc.exit_code)


app = _PulseTyper(
    name="pulse",
    help="Social Pulse: social mentions -> CRM -> live analytics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)

# ---- helpers ------------------------------------------------------------------------------------
def _guard(fn: Callable[[], None]) -> None:
    """Run ``fn`` turning the errors a user can cause into one line and exit code 2."""
    try:
        fn()
    # ValueError covers settings, schema, connectors' SourceError, crm's RuleError: all clear messages.
    except (ValueError, RedisUnavailable, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        print("pulse: stopped", file=sys.stderr)
        raise typer.Exit(130) from None


# ---- commands ------------------------------------------------------------------------------------
@app.command()
def replay(
    path: Annotated[Path, typer.Argument(help="File to replay (.gz read transparently).", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", "-f", help="Record format: twcs (Customer Support on Twitter CSV), jsonl (one Mention per line), csv (needs --mapping), calls (call-centre volume).")] = "jsonl",
    mapping: Annotated[Path | None, typer.Option("--mapping", help="TOML column mapping for --format csv (e.g. connectors/mappings/airline.toml).", show_default=False)] = None,
    speed: Annotated[float, typer.Option("--speed", help="0 = as fast as possible; X = replay in event time X times faster than real time.")] = 0.0,
    recovery_dir: Annotated[Path | None, typer.Option("--recovery-dir", help="Bytewax recovery directory: a killed replay started again with the same directory resumes where it was.", show_default=False)] = None,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Bytewax worker threads in this process.", min=1)] = 1,
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
        source = FileSource(path.resolve(), fmt_arg, mapping=mapping, speed=speed,
                            on_progress=None if no_progress else update)
        started = time.monotonic()
        if no_progress:
            run_flow(source, settings, url, workers=workers, recovery_dir=recovery_dir)
        else:
            with progress:
                run_flow(source, settings, url, workers=workers, recovery_dir=recovery_dir)
        counts = _source_counts(client, settings, f"file:{path.resolve()}")
        log.info("replay of %s finished in %.1fs", path, time.monotonic() - started)
        err.print(f"replayed {path}: offered {counts['offered']}, accepted {counts['accepted']}, "
                  f"dead letters {counts['dead_letters']}, duplicates {counts['duplicates']} "
                  f"(see 'pulse metrics' for every source under prefix {settings.prefix!r})")

    _guard(go)


def _source_counts(client: Any, settings: Settings, source: str) -> dict[str, int]:
    """Offered, accepted, dead letters and duplicates of one source (the counters are per source)."""
    names = ("offered", "accepted", "dead_letters", "duplicates")
    values = client.hmget(Keys(settings.prefix).stats, [f"{source}|{n}" for n in names])
    return {n: int(v or 0) for n, v in zip(names, values, strict=True)}


@app.command()
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
                 live=live_inputs(url, settings) if live else (), process_id=process_id, addresses=cluster)

    _guard(go)


@app.command()
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
        doc = snapshot(client, Keys(settings.prefix), lo, hi)
        if as_json:
            sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
            return
        _print_metrics(doc)

    _guard(go)


@app.command()
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

    _guard(go)


def _print_metrics(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console()
    out.print(f"offered {doc['offered']}  accepted {doc['accepted']}  dead letters {doc['dead_letters']}  "
              f"duplicates {doc['duplicates']}  late {doc['late']}")
    table = Table("brand", "mentions", "authors", "queries", "negative", "first resp. n", "mean", "p50", "p90",
                  "unanswered", title="per brand")

    def fmt_ms(v: float | None) -> str:
        return "-" if v is None else f"{v / 60000:.1f} min"

    for brand, b in sorted(doc["brands"].items(), key=lambda kv: -kv[1]["mentions"]):
        fr = b["first_response"]
        table.add_row(brand, str(b["mentions"]), str(b["authors"]), str(b["queries"]),
                      str(b["sentiment"]["negative"]), str(fr["count"]), fmt_ms(fr["mean_ms"]),
                      fmt_ms(fr["p50_ms"]), fmt_ms(fr["p90_ms"]), str(b["unanswered"]))
    out.print(table)


@app.command()
def feedback(
    mention_id: Annotated[str, typer.Argument(help="Id of the mention the label is for (e.g. twitter:1234).", show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", help="Which model the label corrects: intent, sentiment or department.")],
    label: Annotated[str, typer.Option("--label", "-l", help="The right answer, e.g. query, negative, sales.")],
    author: Annotated[str, typer.Option("--author", help="Who gives the label (agent or analyst id).")] = "",
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Send a label to the running flow (pulse run / pulse demo): the models learn from it.

    Labels the flow cannot use (unknown mention id, model or class) land in the dead-letter stream.
    """
    from connectors.redis_streams import FMT_FIELD, PAYLOAD_FIELD
    from stream.schema import Feedback

    settings = load_settings(config, verbose, redis_url=redis_url, prefix=prefix)
    _, client = redis_for(settings)
    body = orjson.dumps(Feedback(mention_id=mention_id, model=model, label=label, author=author).to_dict())
    entry = client.xadd(Keys(settings.prefix).feedback, {PAYLOAD_FIELD: body, FMT_FIELD: "jsonl"})
    entry_id = entry.decode() if isinstance(entry, bytes) else entry
    err.print(f"feedback queued as {Keys(settings.prefix).feedback} {entry_id}")


@app.command()
def dashboard(
    port: Annotated[int | None, typer.Option("--port", help="Port to serve the dashboard on (default 8501).", show_default=False)] = None,
    headless: Annotated[bool, typer.Option("--headless/--browser", help="Do not / do open a browser window.")] = True,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Serve the Streamlit dashboard (command centre) on http://localhost:PORT."""
    settings = load_settings(config, verbose, redis_url=redis_url, prefix=prefix, dashboard_port=port)
    url, _ = redis_for(settings)
    proc = _start_dashboard(settings, url, headless)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        code = 130
    finally:
        _stop_children([proc])
    raise typer.Exit(code)


def _interrupt(*_: Any) -> None:
    """SIGTERM handler: unwind like Ctrl-C so child processes are stopped too."""
    raise KeyboardInterrupt


def _stop_children(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def _start_dashboard(settings: Settings, url: str, headless: bool = True) -> subprocess.Popen[bytes]:
    env = dict(os.environ, REDIS_URL=url, PULSE_PREFIX=settings.prefix)
    if settings.crm_config:  # the service desk's replies use the CRM's settings (brand handles, ...)
        env["PULSE_CRM_CONFIG"] = settings.crm_config
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
           "--server.port", str(settings.dashboard_port), "--server.headless", str(headless).lower(),
           "--browser.gatherUsageStats", "false"]
    log.info("starting the dashboard: %s", " ".join(cmd))
    return subprocess.Popen(cmd, env=env)


@app.command()
def demo(
    speed: Annotated[float, typer.Option("--speed", help="Simulated time runs this many times faster than real time.")] = 60.0,
    seed: Annotated[int, typer.Option("--seed", help="Simulator seed.")] = 7,
    port: Annotated[int | None, typer.Option("--port", help="Dashboard port (default 8501).", show_default=False)] = None,
    no_dashboard: Annotated[bool, typer.Option("--no-dashboard", help="Run the simulator and flow only.")] = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Embedded Redis (if REDIS_URL is unset) + simulator -> flow -> Redis + the dashboard, until Ctrl-C."""
    from stream.demo_setup import DEMO_CRM_CONFIG, seed_demo_crm
    from stream.runner import run_flow
    from stream.sources import build_source, live_inputs

    settings = load_settings(config, verbose, redis_url=redis_url, prefix=prefix, dashboard_port=port, for_flow=True)
    if not settings.crm_config:  # demo pace: replied cases close after two idle event hours
        settings = dataclasses.replace(settings, crm_config=str(DEMO_CRM_CONFIG))
    url, _ = redis_for(settings)
    procs: list[subprocess.Popen[bytes]] = []
    if not no_dashboard:
        procs.append(_start_dashboard(settings, url))
        err.print(f"[bold green]dashboard:[/] http://localhost:{settings.dashboard_port}   (Ctrl-C stops the demo)")
    from connectors.simulator import World
    from stream.alert_push import AlertPushServer

    if settings.crm:
        counts = seed_demo_crm(url, settings.prefix, World(seed=seed), int(time.time() * 1000))
        err.print(f"CRM: {counts['customers']} customers, {counts['agents']} agents, {counts['articles']} KB articles")
    push = AlertPushServer(url, Keys(settings.prefix), port=settings.alerts_port).start()
    err.print(f"redis: {url}  prefix: {settings.prefix}  alert push: {push.url}")

    install_stop_handlers()

    def go() -> None:
        # The first simulated incident comes after ten minutes of event time: the wall display shows
        # normal traffic, then a spike and its alert.
        run_flow(build_source("sim", speed=speed, seed=seed, warmup_hours=1 / 6, settings=settings), settings, url,
                 live=live_inputs(url, settings))

    try:
        _guard(go)
    finally:
        push.stop()
        _stop_children(procs)


# Commands contributed by other areas, each a module with ``register(app)``.
for _module in ("stream.cmd_models", "stream.cmd_spikes", "stream.cmd_crm", "stream.cmd_connectors"):
    try:
        _mod = importlib.import_module(_module)
    except ModuleNotFoundError as _exc:
        if _exc.name != _module:
            raise
        continue
    _mod.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
