"""What ``pulse demo`` sets up before the simulator starts: the key prefix of this demo run, the CRM's customers,
a team and the KB, and the story the simulated world tells.

Each demo run has its own prefix, ``demo:<n>:`` (``n`` counts the runs in this Redis, :func:`choose_demo_prefix`),
so a new demo never shows the last one's cases; ``pulse demo --continue`` goes on with the newest run. The
CRM import is idempotent: continuing imports the same records again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import polars as pl
import redis

from connectors.simulator import World
from crm import SAMPLE_KB, Agent, KnowledgeBase, add_agent, import_customers, load_articles, make_store
from stream.demo_agents import StaffPlan

__all__ = ["DEMO_AGENTS", "DEMO_CRM_CONFIG", "DEMO_HISTORY_HOURS", "DEMO_RUNS_KEY", "DEMO_STORY", "DemoRun",
           "choose_demo_prefix", "seed_demo_crm"]

log = logging.getLogger(__name__)

#: A small service team: (id, departments, channels, capacity).
DEMO_AGENTS = (
    ("ava", "service", "twitter,instagram", 8),
    ("ben", "service", "facebook,forum,review", 8),
    ("chloe", "service", "twitter,facebook,linkedin", 6),
    ("dev", "sales", "twitter,facebook,linkedin,instagram", 6),
    ("eli", "marketing,pr", "twitter,facebook,instagram,linkedin,review,forum,blog", 6),
    ("fay", "service,sales", "forum,review,linkedin", 5),
    ("gus", "supervisor", "", 6),  # escalations the sample rules route to the supervisor queue, any channel
)
#: The demo's CRM settings when none are configured: replied cases close after two idle event hours (two
#: minutes at the demo's 60x), so agents free up and the queue moves while you watch.
DEMO_CRM_CONFIG = SAMPLE_KB.parent / "crm_demo.toml"


#: Event hours of history a fresh live demo emits at once before it runs with the wall clock: the dashboard has a
#: past to show and the spike detector a baseline (a series' first hour only chooses its interval, and what it sees
#: then is learned as normal), so the outage 40 minutes into the live part is caught as it starts.
DEMO_HISTORY_HOURS = 6.0
#: The world options of the demo's story (:class:`connectors.simulator.World`): the staff answer the cases (no
#: replies from inside the world), no incident in the history, an outage on the busiest brand's Twitter 40 event
#: minutes after it (40 s at 60x), and a slang wave six event hours after it that the models have to learn (drift
#: on the Models page).
DEMO_STORY: dict[str, Any] = {"brand_replies": False, "first_incident_hours": DEMO_HISTORY_HOURS + 40 / 60,
                              "slang_after_hours": DEMO_HISTORY_HOURS + 6.0, "warmup_hours": DEMO_HISTORY_HOURS}
#: Counts the demo runs of a Redis server: run ``n`` writes under ``demo:<n>:``.
DEMO_RUNS_KEY = "demo:runs"
_KEEP_RUNS = 2  # a fresh run removes the keys of the runs before the previous one


@dataclass(frozen=True)
class DemoRun:
    """Which prefix a demo writes under, whether it starts fresh, and the line that says so."""

    prefix: str
    fresh: bool
    message: str


def choose_demo_prefix(client: redis.Redis, *, resume: bool, given: str | None = None) -> DemoRun:
    """The prefix of this demo run: a fresh ``demo:<n>:`` (``n`` one more than the last run's), or the last run's
    with ``resume``; a ``given`` prefix (``--prefix``, ``PULSE_PREFIX``) is used as it is.

    A fresh run removes the keys of runs older than the previous one (the previous one stays to compare with).
    """
    if given:
        has_data = next(iter(client.scan_iter(match=f"{given}*", count=1000)), None) is not None
        what = "continuing what is there" if has_data else "empty so far"
        return DemoRun(given, not has_data, f"demo on the prefix you gave, {given} ({what})")
    last = int(client.get(DEMO_RUNS_KEY) or 0)
    if resume and last:
        return DemoRun(f"demo:{last}:", False, f"continuing demo run {last} (prefix demo:{last}:): its counts, cases "
                       "and models go on; start without --continue for a fresh run")
    n = int(client.incr(DEMO_RUNS_KEY))
    removed = _remove_old_runs(client, n)
    note = "no earlier run to continue, so " if resume else ""
    older = f"; run {n - 1} stays under demo:{n - 1}: (pulse demo --continue goes on with this one)" if n > 1 else ""
    gone = f"; removed {removed} keys of older runs" if removed else ""
    return DemoRun(f"demo:{n}:", True, f"{note}starting demo run {n} fresh on prefix demo:{n}:{older}{gone}")


def _remove_old_runs(client: redis.Redis, current: int) -> int:
    removed = 0
    batch: list[Any] = []
    for key in client.scan_iter(match="demo:*", count=2000):
        name = key.decode() if isinstance(key, bytes) else str(key)
        run, sep, _ = name[len("demo:"):].partition(":")
        if sep and run.isdigit() and int(run) <= current - _KEEP_RUNS:
            batch.append(key)
            if len(batch) >= 500:
                removed += int(client.unlink(*batch))
                batch.clear()
    if batch:
        removed += int(client.unlink(*batch))
    return removed


def seed_demo_crm(redis_url: str, prefix: str, world: World, now_ms: int,
                  staff: StaffPlan | None = None) -> dict[str, int]:
    """Import the simulated world's customers, the sample KB and a team of agents; returns counts.

    Without ``staff`` the team is :data:`DEMO_AGENTS`, all online; with it, the plan's roster, offline until
    their shifts start (the simulated staff bring them online in event time).
    """
    store = make_store(redis_url, prefix)
    report = import_customers(store, pl.DataFrame(world.customers()), now_ms=now_ms)
    articles, problems = load_articles(SAMPLE_KB)
    KnowledgeBase(store).import_articles(articles)
    if staff is not None:
        n_agents = staff.hire(store, now_ms)
    else:
        for agent_id, departments, channels, capacity in DEMO_AGENTS:
            add_agent(store, Agent.create(agent_id, name=agent_id.title(), capacity=capacity,
                                          departments=departments, channels=channels, languages="en"),
                      online=True, now_ms=now_ms)
        n_agents = len(DEMO_AGENTS)
    counts = {"customers": store.count_customers(), "rejected": len(report.rejected), "articles": len(articles),
              "agents": n_agents}
    log.info("demo CRM: %s (KB problems: %s)", counts, problems or "none")
    return counts
