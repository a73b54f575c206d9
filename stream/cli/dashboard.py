"""``pulse dashboard`` and ``pulse demo``: the Streamlit app, alone or with the simulator and the flow.

The dashboard listens on 127.0.0.1 unless ``--host`` says otherwise. Pages that act need a signed-in user:
OIDC when ``.streamlit/secrets.toml`` configures it, else the token in ``PULSE_DASHBOARD_TOKEN`` — made up
and printed at start when unset.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from stream.cli.common import (
    ConfigOpt,
    MetricsPortOpt,
    PrefixOpt,
    RedisUrlOpt,
    VerboseOpt,
    err,
    fail,
    guard,
    load_settings,
    redis_for,
)
from stream.keys import Keys
from stream.redisconn import mask_secrets
from stream.settings import Settings
from stream.stopping import install_stop_handlers

__all__ = ["register"]

log = logging.getLogger("pulse")

ROOT = Path(__file__).resolve().parents[2]


HostOpt = Annotated[str, typer.Option("--host", help="Address to listen on: 127.0.0.1 (this machine only, the default) or e.g. 0.0.0.0 for every interface (then use a sign-in and TLS in front).")]
WallOpt = Annotated[bool, typer.Option("--wall", help="Wall display only: every browser gets the dark, large-type, rotating wall (no sidebar, read only).")]
PublicReadOpt = Annotated[bool, typer.Option("--public-read/--sign-in-to-read", help="Read-only pages open without sign-in (default), or nothing is shown before sign-in.")]


def dashboard(
    port: Annotated[int | None, typer.Option("--port", help="Port to serve the dashboard on (default 8501).", show_default=False)] = None,
    host: HostOpt = "127.0.0.1",
    wall: WallOpt = False,
    public_read: PublicReadOpt = True,
    headless: Annotated[bool, typer.Option("--headless/--browser", help="Do not / do open a browser window.")] = True,
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Serve the Streamlit dashboard on http://HOST:PORT (127.0.0.1:8501 by default).

    Acting (reply, resolve, acknowledge, notices, rollback, labels) needs a sign-in: OIDC from
    .streamlit/secrets.toml when configured, else the token in PULSE_DASHBOARD_TOKEN (printed at start when
    made up here). Read-only pages stay open unless --sign-in-to-read.
    """
    settings = load_settings(config, verbose, redis_url=redis_url, prefix=prefix, dashboard_port=port)
    url, _ = redis_for(settings)
    access = _access(host, wall, public_read)
    proc = _start_dashboard(settings, url, headless, access)
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


@dataclasses.dataclass(frozen=True)
class DashboardAccess:
    """Where the dashboard listens and who may act: the address, wall-only mode, open reading, the token."""

    host: str = "127.0.0.1"
    wall: bool = False
    public_read: bool = True
    token: str = dataclasses.field(default="", repr=False)
    token_made_up: bool = False


def _access(host: str, wall: bool, public_read: bool) -> DashboardAccess:
    """The access settings; a sign-in token is made up when ``PULSE_DASHBOARD_TOKEN`` is unset."""
    if not host.strip():
        raise fail("--host: give an address, e.g. 127.0.0.1 or 0.0.0.0")
    token = os.environ.get("PULSE_DASHBOARD_TOKEN", "")
    if token and len(token) < 12:
        raise fail("PULSE_DASHBOARD_TOKEN: use at least 12 characters")
    made_up = not token
    return DashboardAccess(host=host.strip(), wall=wall, public_read=public_read,
                           token=token or secrets.token_urlsafe(18), token_made_up=made_up)


def _announce(settings: Settings, access: DashboardAccess) -> None:
    shown = "localhost" if access.host in ("127.0.0.1", "localhost") else access.host
    err.print(f"[bold green]dashboard:[/] http://{shown}:{settings.dashboard_port}"
              + ("   (wall display)" if access.wall else ""))
    if access.host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]listening on {access.host}: anyone who reaches this port sees the read-only pages"
                  + ("" if access.public_read else " sign-in page") + "; put TLS in front of it[/]")
    if access.token_made_up:
        err.print(f"sign in to act with the token [bold]{access.token}[/] (set PULSE_DASHBOARD_TOKEN to choose one)")


def _start_dashboard(settings: Settings, url: str, headless: bool = True,
                     access: DashboardAccess | None = None) -> subprocess.Popen[bytes]:
    access = access or _access("127.0.0.1", False, True)
    env = dict(os.environ, REDIS_URL=url, PULSE_PREFIX=settings.prefix, PULSE_DASHBOARD_TOKEN=access.token,
               PULSE_DASHBOARD_PUBLIC="1" if access.public_read else "0",
               PULSE_DASHBOARD_WALL="1" if access.wall else "0")
    if settings.crm_config:  # the service desk's replies use the CRM's settings (brand handles, ...)
        env["PULSE_CRM_CONFIG"] = settings.crm_config
    # the Channels page's insights as `pulse metrics` reads them; the Models page checks checkpoints with the key
    env.update(PULSE_BUSINESS_HOURS=settings.business_hours, PULSE_AFTER_REPLY_DAYS=str(settings.after_reply_days),
               PULSE_DATA_DIR=str(Path(settings.data_dir).resolve()))
    if settings.model_key:
        env["PULSE_MODEL_KEY"] = settings.model_key
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
           "--server.port", str(settings.dashboard_port), "--server.address", access.host,
           "--server.headless", str(headless).lower(), "--browser.gatherUsageStats", "false"]
    if access.wall:
        cmd += ["--theme.base", "dark"]
    log.info("starting the dashboard: %s", " ".join(cmd))
    _announce(settings, access)
    return subprocess.Popen(cmd, env=env)


def _event_span(minutes: int) -> str:
    """``40 event minutes``, ``6 event hours``, ``6 h 40 event minutes``."""
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"{rest} event minutes"
    return f"{hours} event hours" if not rest else f"{hours} h {rest} event minutes"


def demo(
    speed: Annotated[float, typer.Option("--speed", help="Simulated time runs this many times faster than real time (0: as fast as possible, with --limit).")] = 60.0,
    seed: Annotated[int, typer.Option("--seed", help="Simulator seed (the same seed, the same world and staff).")] = 7,
    rate: Annotated[float, typer.Option("--rate", help="Mean simulated posts per event hour; the simulated team is staffed for it.", min=1.0)] = 800.0,
    resume: Annotated[bool, typer.Option("--continue", help="Go on with the last demo run (its prefix, counts, cases and models) instead of starting a fresh one.")] = False,
    limit: Annotated[int | None, typer.Option("--limit", help="Stop after this many simulator records (default: run until Ctrl-C).", min=1, show_default=False)] = None,
    port: Annotated[int | None, typer.Option("--port", help="Dashboard port (default 8501).", show_default=False)] = None,
    host: HostOpt = "127.0.0.1",
    wall: WallOpt = False,
    no_dashboard: Annotated[bool, typer.Option("--no-dashboard", help="Run the simulator and flow only.")] = False,
    redis_url: RedisUrlOpt = None,
    metrics_port: MetricsPortOpt = None,
    prefix: PrefixOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Embedded Redis (if REDIS_URL is unset) + simulator -> flow -> Redis + the dashboard, until Ctrl-C.

    Each run starts fresh on its own prefix demo:<n>: (the previous run's data stays under its own), or goes on
    with the last run with --continue; --prefix picks one yourself. The story: six event hours of history at once
    (the dashboard has a past, the detectors a baseline), then in time with the clock: normal traffic, an outage on
    the busiest brand's Twitter 40 event minutes in (40 s at 60x), a slang wave after 6 event hours the models have
    to learn; a team in shifts answers the cases assigned to them and analysts label a trickle of mentions.
    The dashboard listens on 127.0.0.1 unless --host says otherwise; the sign-in token to act is printed.
    """
    from connectors.simulator import DEFAULT_START, SimulatorSource
    from stream.demo_agents import StaffPlan
    from stream.demo_setup import (
        DEMO_CRM_CONFIG,
        DEMO_HISTORY_HOURS,
        DEMO_STORY,
        choose_demo_prefix,
        seed_demo_crm,
    )
    from stream.runner import run_flow
    from stream.sources import live_inputs

    if speed < 0:
        raise fail(f"--speed: must be 0 (as fast as possible) or positive, got {speed}")
    if speed == 0 and limit is None:
        raise fail("--speed 0 runs as fast as possible: give --limit too")
    settings = load_settings(config, verbose, redis_url=redis_url, prefix=prefix, dashboard_port=port, for_flow=True)
    if not settings.crm_config:  # demo pace: replied cases close after two idle event hours
        settings = dataclasses.replace(settings, crm_config=str(DEMO_CRM_CONFIG))
    url, client = redis_for(settings)
    chosen = choose_demo_prefix(client, resume=resume,
                                given=settings.prefix if settings.prefix != Settings().prefix else None)
    plan = StaffPlan(rate_per_hour=rate, seed=seed)
    settings = dataclasses.replace(settings, prefix=chosen.prefix, demo_staff=settings.demo_staff or plan.spec())
    log.info("demo: %s", chosen.message)
    err.print(f"[bold]demo:[/] {chosen.message}")
    # a fresh live demo starts with its history (emitted at once); one that continues has it already
    history = DEMO_HISTORY_HOURS if speed > 0 and chosen.fresh else 0.0
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(hours=history) if speed > 0 else None
    source = SimulatorSource(seed=seed, speed=speed, limit=limit, start=start, rate_per_hour=rate,
                             backfill_hours=history, **DEMO_STORY)
    world = source.world_for(start or DEFAULT_START)
    if settings.crm:
        team = StaffPlan.parse(settings.demo_staff)
        counts = seed_demo_crm(url, settings.prefix, world, int((start or DEFAULT_START).timestamp() * 1000),
                               staff=team)
        shifts = ", ".join(f"{s.name} {s.start:02d}-{s.end:02d}" for s in team.shifts())
        err.print(f"CRM: {counts['customers']} customers, {counts['agents']} agents in shifts ({shifts} UTC), "
                  f"{counts['articles']} KB articles")
    outage_min = round((DEMO_STORY["first_incident_hours"] - history) * 60)
    when = f" ({outage_min * 60 / speed:.0f} s at --speed {speed:g})" if speed else ""
    past = f"{history:g} event hours of history at once, then " if history else ""
    err.print(f"story: {past}an outage on {max(world.brands, key=lambda b: b.weight).name}'s Twitter after "
              f"{_event_span(outage_min)}{when}, a slang wave after "
              f"{_event_span(round((DEMO_STORY['slang_after_hours'] - history) * 60))}; analysts label "
              f"~{StaffPlan.parse(settings.demo_staff).label_share:.1%} of mentions (Models page)")
    procs: list[subprocess.Popen[bytes]] = []
    if not no_dashboard:
        procs.append(_start_dashboard(settings, url, access=_access(host, wall, True)))
        err.print("Ctrl-C stops the demo")
    from stream.alert_push import AlertPushServer

    push: AlertPushServer | None = None

    def go() -> None:
        nonlocal push
        # a bounded run (--limit) is for trying things out: no live alert push to listen to
        push = AlertPushServer(url, Keys(settings.prefix), port=settings.alerts_port).start() if limit is None else None
        err.print(f"redis: {mask_secrets(url)}  prefix: {settings.prefix}" + (f"  alert push: {push.url}" if push else ""))
        install_stop_handlers()
        run_flow(source, settings, url, live=live_inputs(url, settings) if limit is None else (),
                 metrics_port=metrics_port)

    try:  # the dashboard child stops with the demo, whatever stops it (a taken port included)
        guard(go)
    finally:
        if push is not None:
            push.stop()
        _stop_children(procs)


def register(app: typer.Typer) -> None:
    """Add ``dashboard`` and ``demo`` to the ``pulse`` app."""
    for command in (dashboard, demo):
        app.command()(command)
