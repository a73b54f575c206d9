"""Plumbing shared by every ``pulse`` command: common options, settings, Redis, one-line errors, progress."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import redis
import typer
from bytewax.errors import BytewaxRuntimeError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from stream.redisconn import RedisUnavailable, connect, ensure_redis_url
from stream.settings import Settings
from stream.stopping import STOP, ignore_late_signals

__all__ = [
    "ConfigOpt",
    "PrefixOpt",
    "RedisUrlOpt",
    "VerboseOpt",
    "cluster_addresses",
    "err",
    "fail",
    "guard",
    "load_settings",
    "progress_bar",
    "redis_for",
]

err = Console(stderr=True, emoji=False, highlight=False)

RedisUrlOpt = Annotated[str | None, typer.Option("--redis-url", help="Redis URL (default: $REDIS_URL, else an embedded redis-server under .pulse/).", show_default=False)]
PrefixOpt = Annotated[str | None, typer.Option("--prefix", help="Key prefix for everything written to Redis (default 'pulse:', or $PULSE_PREFIX).", show_default=False)]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML settings file (default: $PULSE_CONFIG or ./pulse.toml if present).", show_default=False)]
MetricsPortOpt = Annotated[int | None, typer.Option("--metrics-port", help="Expose the engine's health for Prometheus on http://0.0.0.0:PORT/metrics while the flow runs: records in and out per step, dead letters, event-time lag, Redis write latency, open incidents (README, 'Monitoring the engine'). In a cluster, process i listens on PORT + i.", min=1, max=65535, show_default=False)]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens (connections, progress, results) at INFO level.")]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one clear error line and return the exit to raise (``raise fail(...) from None``)."""
    print(f"pulse: error: {message}", file=sys.stderr)
    return typer.Exit(code)


def load_settings(config: Path | None, verbose: bool, *, for_flow: bool = False, **overrides: Any) -> Settings:
    """Configure logging and build the settings (flags > environment > TOML file).

    ``for_flow`` also checks the files the flow's CRM step reads (rules, CRM settings), so a command that
    runs the flow refuses to start on a malformed one before it starts anything.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG
    try:
        settings = Settings.load(overrides, config_path=config if config is not None else True)
        from stream.insights import parse_business_hours

        parse_business_hours(settings.business_hours)  # a malformed spec is one line, before anything starts
        if for_flow:
            from stream.runner import check_crm

            check_crm(settings)
        return settings
    except ValueError as exc:  # SettingsError, crm's RuleError and CrmError: messages that name the culprit
        raise fail(str(exc)) from None


def redis_for(settings: Settings) -> tuple[str, redis.Redis]:
    """The Redis URL (embedded server if none is configured) and a checked client."""
    try:
        url = ensure_redis_url(settings.redis_url, Path(settings.data_dir))
        return url, connect(url)
    except RedisUnavailable as exc:
        raise fail(str(exc)) from None


def progress_bar(label: str, unit: str = "records") -> tuple[Progress, Callable[[int, int], None]]:
    """A Rich progress bar on stderr and a thread-safe, rate-limited ``update(done, total)``."""
    progress = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                        TimeElapsedColumn(), console=err, transient=False)
    task = progress.add_task(label, total=None)
    lock = threading.Lock()
    last = [0.0]

    def update(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 0.1 and done < total:
            return
        with lock:
            last[0] = now
            progress.update(task, completed=done, total=total)

    return progress, update


def cluster_addresses(process_id: int | None, addresses: str | None) -> list[str] | None:
    """``--addresses`` as Bytewax wants them, checked against ``--process-id`` (a clear error otherwise).

    >>> cluster_addresses(1, "127.0.0.1:2101;127.0.0.1:2102")
    ['127.0.0.1:2101', '127.0.0.1:2102']
    >>> cluster_addresses(None, None) is None
    True
    """
    if addresses is None and process_id is None:
        return None
    if addresses is None or process_id is None:
        raise fail("--process-id and --addresses go together (one process per address)")
    found = [a.strip() for a in addresses.split(";") if a.strip()]
    for a in found:
        host, _, port = a.rpartition(":")
        if not host or not port.isdigit():
            raise fail(f"--addresses: expected host:port, got {a!r}")
    if process_id >= len(found):
        raise fail(f"--process-id {process_id} is not an index of the {len(found)} --addresses")
    return found


def guard(fn: Callable[[], None]) -> None:
    """Run ``fn`` turning the errors a user can cause into one line and exit code 2."""
    try:
        fn()
    # ValueError covers settings, schema, connectors' SourceError, crm's RuleError: all clear messages.
    except (ValueError, RedisUnavailable, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        print("pulse: stopped", file=sys.stderr)
        raise typer.Exit(130) from None
    except BytewaxRuntimeError as exc:
        if not STOP.is_set():
            raise
        # interrupted by a second Ctrl-C / SIGTERM while finishing: Bytewax reports the signal as its error
        print(f"pulse: interrupted before the current batch finished ({exc})", file=sys.stderr)
        raise typer.Exit(130) from None
    finally:
        ignore_late_signals()
