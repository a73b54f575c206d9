"""What ``pulse demo`` puts in the CRM before the simulator starts: its customers, a team, the KB.

Everything here is idempotent: starting the demo twice imports the same records again.
"""

from __future__ import annotations

import logging

import polars as pl

from connectors.simulator import World
from crm import SAMPLE_KB, Agent, KnowledgeBase, add_agent, import_customers, load_articles, make_store

__all__ = ["DEMO_AGENTS", "DEMO_CRM_CONFIG", "seed_demo_crm"]

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


def seed_demo_crm(redis_url: str, prefix: str, world: World, now_ms: int) -> dict[str, int]:
    """Import the simulated world's customers, the sample KB and a team of agents; returns counts."""
    store = make_store(redis_url, prefix)
    report = import_customers(store, pl.DataFrame(world.customers()), now_ms=now_ms)
    articles, problems = load_articles(SAMPLE_KB)
    KnowledgeBase(store).import_articles(articles)
    for agent_id, departments, channels, capacity in DEMO_AGENTS:
        add_agent(store, Agent.create(agent_id, name=agent_id.title(), capacity=capacity, departments=departments,
                                      channels=channels, languages="en"), online=True, now_ms=now_ms)
    counts = {"customers": store.count_customers(), "rejected": len(report.rejected), "articles": len(articles),
              "agents": len(DEMO_AGENTS)}
    log.info("demo CRM: %s (KB problems: %s)", counts, problems or "none")
    return counts
