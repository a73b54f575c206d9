"""CLI commands for the network connectors: ``pulse firehose serve``, ``pulse ingest``, ``pulse ingest serve``,
``pulse outbox relay``. ``stream/cli/__init__.py`` calls :func:`register`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from connectors.records import DEFAULT_MAX_WAIT_S
from stream.cli.common import ConfigOpt, RedisUrlOpt, VerboseOpt, err, fail, load_settings, redis_for
from stream.redisconn import connect, ensure_redis_url
from stream.settings import Settings

__all__ = ["register"]

log = logging.getLogger(__name__)

PrefixOpt = Annotated[str | None, typer.Option("--prefix", help="Key prefix (default 'pulse:', or $PULSE_PREFIX); input streams are PREFIXin:N.", show_default=False)]
PartitionsOpt = Annotated[int, typer.Option("--partitions", help="Number of input streams PREFIXin:0..N-1 (must match the flow's redis://…?partitions=N).", min=1)]
MaxBacklogOpt = Annotated[int, typer.Option("--max-backlog", help="Refuse to append to an input stream that already holds this many entries (the flow trims what it has processed); producers retry later instead of unprocessed entries being dropped.", min=1)]


def _redis_url(settings: Settings, check: bool = True) -> str:
    if not check:
        return ensure_redis_url(settings.redis_url, Path(settings.data_dir))
    url, client = redis_for(settings)
    client.close()
    return url


def _serve_until_interrupted(serve: Callable[[], Any]) -> None:
    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        print("pulse: stopped", file=sys.stderr)
        raise typer.Exit(130) from None
    except OSError as exc:  # port in use, address not available
        raise fail(str(exc)) from None


# ---- firehose serve -------------------------------------------------------------------------------
def _timed_records(source: str, fmt: str, mapping: Path | None, limit: int | None) -> Callable[[], Iterable[Any]]:
    """A replayable sequence of (record, event time ms) for the firehose, from ``sim`` or ``file:PATH``."""
    from connectors.files import event_time_ms, read_timed_records
    from connectors.spec import FileSpec, SimSpec, parse_source

    spec = parse_source(source)
    if isinstance(spec, SimSpec):
        from connectors.simulator import World

        seed = spec.seed if source.startswith("sim:") else 7

        def sim() -> Iterator[Any]:
            for rec in World(seed).events(limit=limit):
                ts = rec.payload.get("ts") if isinstance(rec.payload, dict) else None
                yield rec, event_time_ms(ts)

        return sim
    if isinstance(spec, FileSpec):
        records, times = read_timed_records(spec.path, fmt, mapping)
        if limit is not None:
            records, times = records[:limit], times[:limit]
        pairs = list(zip(records, times, strict=True))
        return lambda: pairs
    raise ValueError(f"firehose serve streams sim, sim:SEED or file:PATH, not {source!r}")


def firehose_serve(
    source: Annotated[str, typer.Option("--source", "-s", help="What to stream: sim, sim:SEED (the simulator, endless unless --limit) or file:PATH (a bounded file, in event-time order).")] = "sim",
    fmt: Annotated[str, typer.Option("--format", "-f", help="Format of a file source: jsonl, twcs, csv (needs --mapping), calls.")] = "jsonl",
    mapping: Annotated[Path | None, typer.Option("--mapping", help="TOML column mapping for --format csv.", show_default=False)] = None,
    speed: Annotated[float, typer.Option("--speed", help="0 = as fast as the client reads; X = paced by event time, X times faster than real time.", min=0.0)] = 0.0,
    max_wait: Annotated[float, typer.Option("--max-wait", help="With --speed X: wait at most this many seconds between two records (a long silence, or a record dated years off, is shortened); 0 = never shorten.", min=0.0)] = DEFAULT_MAX_WAIT_S,
    limit: Annotated[int | None, typer.Option("--limit", help="Stream at most this many records.", min=1, show_default=False)] = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="TCP port to listen on.", min=0, max=65535)] = 8766,
    verbose: VerboseOpt = False,
) -> None:
    """Serve mentions as JSON frames over WebSocket (resume with ?after=ID), like a vendor's firehose."""
    from connectors.websocket import FirehoseServer

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if fmt == "csv" and mapping is None and source.startswith("file:"):
        raise fail("--format csv needs --mapping FILE.toml (see connectors/mappings/airline.toml)")
    try:
        records = _timed_records(source, fmt, mapping, limit)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    server = FirehoseServer(records, host=host, port=port, speed=speed, max_wait_s=max_wait)
    _serve_until_interrupted(lambda: server.serve(lambda: err.print(
        f"firehose: streaming {source} on ws://{host}:{server.port}/ (resume with ?after=ID; Ctrl-C stops)")))


# ---- ingest (push) ----------------------------------------------------------------------------------
def _lines(stream: Iterable[bytes], on_bytes: Callable[[int], None] | None) -> Iterator[bytes]:
    for line in stream:
        if on_bytes is not None:
            on_bytes(len(line))
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield line


def ingest_push(
    ctx: typer.Context,
    file: Annotated[str, typer.Option("--file", "-i", help="JSONL file to push ('-' = standard input; .gz read transparently).")] = "-",
    fmt: Annotated[str, typer.Option("--format", "-f", help="Record format stored with each entry for the flow's parser (jsonl: one Mention per line; twcs, mention, calls).")] = "jsonl",
    partitions: PartitionsOpt = 4,
    eof: Annotated[bool, typer.Option("--eof", help="Afterwards set PREFIXin:eof, so bounded readers stop once drained.")] = False,
    max_backlog: MaxBacklogOpt = 1_000_000,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Push JSONL lines (stdin or --file) into the input streams PREFIXin:N; subcommand 'serve' runs the endpoint."""
    if ctx.invoked_subcommand is not None:
        return
    import gzip

    from connectors.redis_streams import BacklogFull, append_records, mark_eof

    settings = load_settings(config, verbose, redis_url=redis_url, prefix=prefix)
    url = _redis_url(settings)
    client = connect(url)
    try:
        if file == "-":
            pushed = len(append_records(client, settings.prefix, _lines(sys.stdin.buffer, None),
                                        partitions=partitions, fmt=fmt, max_backlog=max_backlog))
        else:
            path = Path(file)
            if not path.is_file():
                raise fail(f"no such file: {file}")
            with path.open("rb") as probe:
                gz = probe.read(2) == b"\x1f\x8b"
            size = path.stat().st_size
            progress = Progress(TextColumn(f"[bold]ingest {path.name}"), BarColumn(), DownloadColumn(),
                                TimeElapsedColumn(), console=err, transient=False)
            task = progress.add_task("ingest", total=None if gz else size)
            lock = threading.Lock()

            def advance(n: int) -> None:
                with lock:
                    progress.advance(task, n)

            opener = gzip.open if gz else open
            with progress, opener(path, "rb") as stream:  # type: ignore[operator]
                pushed = len(append_records(client, settings.prefix, _lines(stream, advance),
                                            partitions=partitions, fmt=fmt, max_backlog=max_backlog))
        if eof:
            mark_eof(client, settings.prefix)
    except BacklogFull as exc:  # not a usage error: the flow is behind; push the rest later
        raise fail(str(exc), code=1) from None
    except OSError as exc:
        raise fail(str(exc)) from None
    finally:
        client.close()
    err.print(f"pushed {pushed} records to {settings.prefix}in:0..{partitions - 1}"
              + (f" and set {settings.prefix}in:eof" if eof else ""))


# ---- ingest serve -----------------------------------------------------------------------------------
def ingest_serve(
    token: Annotated[str | None, typer.Option("--token", envvar="PULSE_INGEST_TOKEN", help="Shared secret clients must present (Authorization: Bearer TOKEN or ?token=); default $PULSE_INGEST_TOKEN.", show_default=False)] = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="TCP port to listen on.", min=0, max=65535)] = 8767,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Record format stored with each frame (jsonl: one Mention-shaped JSON object per frame).")] = "jsonl",
    partitions: PartitionsOpt = 4,
    wait_replicas: Annotated[int, typer.Option("--wait-replicas", help="Acknowledge a frame only once this many Redis replicas have it (WAIT).", min=0)] = 0,
    max_backlog: MaxBacklogOpt = 1_000_000,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Accept events from the company's own forum or app over WebSocket (token required) into PREFIXin:N."""
    from connectors.ingest import IngestServer

    if not token:
        raise fail("an ingest token is required: set PULSE_INGEST_TOKEN or pass --token")
    settings = load_settings(config, verbose, redis_url=redis_url, prefix=prefix)
    url = _redis_url(settings)
    server = IngestServer(token=token, redis_url=url, prefix=settings.prefix, partitions=partitions, host=host,
                          port=port, fmt=fmt, wait_replicas=wait_replicas, max_backlog=max_backlog)
    _serve_until_interrupted(lambda: server.serve(lambda: err.print(
        f"ingest: ws://{host}:{server.port}/ -> {settings.prefix}in:0..{partitions - 1} (Ctrl-C stops)")))


# ---- outbox relay -----------------------------------------------------------------------------------
def outbox_relay(
    channel: Annotated[str, typer.Option("--channel", "-c", help="Outbox to deliver: PREFIXoutbox:CHANNEL ('webhook' for the business rules' webhooks, each posted to its own URL).")],
    url: Annotated[str | None, typer.Option("--url", help="Receiver of each message (HTTP POST of its JSON). Required, except for --channel webhook, whose messages carry their URL.", show_default=False)] = None,
    secret: Annotated[list[str] | None, typer.Option("--secret", envvar="PULSE_WEBHOOK_SECRET", help="HMAC-SHA256 signing secret (default $PULSE_WEBHOOK_SECRET). Repeat while rotating (in the variable: separated by spaces): each secret adds a v1 to X-Pulse-Signature.", show_default=False)] = None,
    attempts: Annotated[int, typer.Option("--attempts", help="Delivery attempts before a message goes to the dead-letter stream.", min=1)] = 5,
    backoff: Annotated[float, typer.Option("--backoff", help="Seconds before the first retry; doubled for each further retry.", min=0.0)] = 0.5,
    backoff_max: Annotated[float, typer.Option("--backoff-max", help="Longest wait between two attempts (seconds).", min=0.0)] = 30.0,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the receiver's answer to one attempt.", min=0.1)] = 10.0,
    group: Annotated[str, typer.Option("--group", help="Consumer group: one per receiver of the same outbox (each group gets every message).")] = "relay",
    consumer: Annotated[str, typer.Option("--consumer", help="This relay's name in the group; a restart under the same name re-sends what it had in flight.")] = "relay",
    once: Annotated[bool, typer.Option("--once", help="Deliver what is queued now (and what a previous run left unacknowledged), then exit.")] = False,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Deliver a channel's outbox over HTTP: signed (X-Pulse-Signature t=,v1=), retried with backoff, acknowledged
    after the receiver's 2xx, once per reply id (X-Pulse-Delivery); final failures go to the dead-letter stream."""
    from connectors.outbox import WEBHOOK_CHANNEL
    from connectors.webhook import OutboxRelay, RelayStats, Webhook

    secrets = [s for s in (secret or []) if s]
    if not secrets:
        raise fail("a webhook secret is required: set PULSE_WEBHOOK_SECRET or pass --secret")
    if url is None and channel != WEBHOOK_CHANNEL:
        raise fail(f"--url is required for --channel {channel} (only the '{WEBHOOK_CHANNEL}' outbox's messages "
                   "carry their own URL)")
    settings = load_settings(config, verbose, redis_url=redis_url, prefix=prefix)
    try:
        webhook = Webhook(url, secrets, max_attempts=attempts, backoff_initial=backoff, backoff_max=backoff_max,
                          timeout=timeout)
    except ValueError as exc:
        raise fail(str(exc)) from None
    client = connect(_redis_url(settings))
    total = RelayStats()
    try:
        relay = OutboxRelay(client, settings.prefix, channel, webhook, group=group, consumer=consumer)
        err.print(f"outbox relay: {settings.prefix}outbox:{channel} -> {url or 'each message URL'} "
                  f"(group {group}){'' if once else ' (Ctrl-C stops)'}")
        if once:
            total = relay.drain()
        else:
            while True:
                stats = relay.run_once(block_ms=1000)
                total.add(stats)
                if stats.handled:
                    log.info("outbox %s: %d delivered, %d dead-lettered", channel, stats.delivered, stats.dead)
    except KeyboardInterrupt:
        print("pulse: stopped", file=sys.stderr)
    finally:
        client.close()
        err.print(f"outbox {channel}: delivered {total.delivered}, dead-lettered {total.dead}"
                  + (f", {total.skipped} gone before delivery" if total.skipped else ""))


def register(app: typer.Typer) -> None:
    """Add ``firehose serve``, ``ingest`` (+ ``ingest serve``) and ``outbox relay`` to the ``pulse`` app."""
    firehose = typer.Typer(help="WebSocket firehose: stream mentions as a vendor's streaming API would.",
                           no_args_is_help=True)
    firehose.command("serve")(firehose_serve)
    app.add_typer(firehose, name="firehose")

    ingest = typer.Typer(help="Push events into the Redis input streams PREFIXin:N.")
    ingest.callback(invoke_without_command=True)(ingest_push)
    ingest.command("serve")(ingest_serve)
    app.add_typer(ingest, name="ingest")

    outbox = typer.Typer(help="Outbound messages (replies, DM requests, notices, rule webhooks): deliver the "
                              "per-channel outboxes PREFIXoutbox:CHANNEL.", no_args_is_help=True)
    outbox.command("relay")(outbox_relay)
    app.add_typer(outbox, name="outbox")
