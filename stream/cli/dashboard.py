"""``pulse dashboard`` and ``pulse demo``: the Streamlit app, alone or with the simulator and the flow."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from stream.cli.common import (
    ConfigOpt,
    PrefixOpt,
    RedisUrlOpt,
    VerboseOpt,
    err,
    guard,
    load_settings,
    redis_for,
)
from stream.keys import Keys
from stream.settings import Settings
from stream.stopping import install_stop_handlers

__all__ = ["register"]

log = logging.getLogger("pulse")

ROOT = Path(__file__).resolve().parents[2]


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
        guard(go)
    finally:
        push.stop()
        _stop_children(procs)


def register(app: typer.Typer) -> None:
    """Add ``dashboard`` and ``demo`` to the ``pulse`` app."""
    for command in (dashboard, demo):
        app.command()(command)
