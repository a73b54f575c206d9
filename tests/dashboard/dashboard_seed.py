"""Data for the dashboard tests: a two-hour conversation log run through the real flow into a real Redis.

Rows are built here, and the figures the dashboard should show are computed from the rows with plain
arithmetic (:func:`expected_figures`), independently of the flow and of ``dashboard/``.
"""

from __future__ import annotations

import statistics
from typing import Any

import orjson
import polars as pl
import redis
from bytewax.testing import TestingSource, run_main

from connectors.outbox import ENCODING
from connectors.records import RawRecord
from crm import (
    SAMPLE_KB,
    SAMPLE_RULES,
    CrmProcessor,
    CrmSettings,
    KnowledgeBase,
    import_customers,
    load_articles,
    load_rules,
    make_store,
)
from crm.assignment import Agent, add_agent
from crm.sla import iso_ms
from stream.flow import build_flow
from stream.keys import Keys
from stream.settings import Settings
from stream.sinks import RedisSink

__all__ = ["NASTY_TEXT", "add_mentions", "clean_prefix", "conversation", "expected_figures", "seed_redis"]

#: A mention that would be bold text and a script if anything rendered user text as Markdown/HTML.
NASTY_TEXT = "**bold** <script>alert(1)</script> awful service, I hate this"
T0_MS = 1_704_103_200_000  # 2024-01-01 10:00 UTC
MINUTES = 120
BAD_RECORDS = [b'{"id": "broken", "channel": ', b"\xff\xfe not utf-8",
               orjson.dumps({"id": "x1", "brand": "acme", "author": "a", "text": "no channel", "ts": T0_MS})]


def conversation() -> list[dict[str, Any]]:
    """Customer mentions every minute for two hours (2-4 a minute), brand replies to every other query.

    Replies never land after the last customer mention, so the newest window is that mention's minute.
    """
    rows: list[dict[str, Any]] = []
    channels = ("twitter", "forum", "facebook", "twitter")
    last_ms = T0_MS + (MINUTES - 1) * 60_000 + 50_000
    for m in range(MINUTES):
        for k in range(2 + m % 3):
            ts = T0_MS + m * 60_000 + k * 10_000
            brand = "acme" if (m + k) % 2 == 0 else "globex"
            channel = channels[k]
            query = k % 2 == 0
            mid = f"{channel}:m{m}k{k}"
            rows.append({"id": mid, "channel": channel, "brand": brand, "author": f"user{(m * 7 + k) % 150}",
                         "text": "how do I reset my router?" if query else "love the new app, great job",
                         "ts": ts})
            delay_ms = (m % 20 + 1) * 60_000 + k * 7_000
            if query and (m + k) % 4 < 2 and ts + delay_ms <= last_ms:
                rows.append({"id": f"{channel}:r{m}k{k}", "channel": channel, "brand": brand,
                             "author": f"{brand}_care", "text": "sorry about that, please DM us",
                             "ts": ts + delay_ms, "from_brand": True, "in_reply_to": mid})
    rows.append({"id": "twitter:nasty", "channel": "twitter", "brand": "acme", "author": "mallory",
                 "text": NASTY_TEXT, "ts": last_ms})
    rows.sort(key=lambda d: d["ts"])
    return rows


def seed_redis(redis_url: str, prefix: str) -> list[dict[str, Any]]:
    """Run the rows, three bad records and one duplicate through the real flow into Redis; return the rows."""
    rows = conversation()
    payloads = [orjson.dumps(r) for r in rows] + BAD_RECORDS + [orjson.dumps(rows[0])]
    records = [RawRecord("test:dashboard", i, p, "jsonl") for i, p in enumerate(payloads)]
    settings = Settings(prefix=prefix, flush_seconds=0.05)
    run_main(build_flow(TestingSource(records, batch_size=100), settings, RedisSink(redis_url, Keys(prefix))))
    return rows


def add_mentions(redis_url: str, prefix: str, rows: list[dict[str, Any]], source: str = "test:late") -> None:
    """Run more rows through a separate flow run (its own source name, so the first run's counts stay)."""
    records = [RawRecord(source, i, orjson.dumps(r), "jsonl") for i, r in enumerate(rows)]
    settings = Settings(prefix=prefix, flush_seconds=0.05)
    run_main(build_flow(TestingSource(records), settings, RedisSink(redis_url, Keys(prefix))))


def clean_prefix(client: redis.Redis, prefix: str) -> None:
    """Delete every key under ``prefix``."""
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i:i + 500])


def expected_figures(rows: list[dict[str, Any]], minutes: int = 60, brand: str | None = None) -> dict[str, Any]:
    """What the command centre should show for the last ``minutes`` of the rows (plain arithmetic)."""
    newest = max(r["ts"] for r in rows)
    end = newest // 60_000 * 60_000
    lo, hi = end - (minutes - 1) * 60_000, end + 60_000
    by_id = {r["id"]: r for r in rows}
    mine = [r for r in rows if brand is None or r["brand"] == brand]
    customers = [r for r in mine if not r.get("from_brand") and lo <= r["ts"] < hi]
    replies = [r for r in mine if r.get("from_brand") and lo <= r["ts"] < hi]
    waits = sorted(r["ts"] - by_id[r["in_reply_to"]]["ts"] for r in replies)
    queries = sum(r["text"].startswith("how do I") for r in customers)
    authors = sum(len({r["author"] for r in customers if r["brand"] == b}) for b in {r["brand"] for r in customers})
    return {
        "mentions": len(customers),
        # A rate over the event time elapsed so far: the newest minute is still filling.
        "mentions_per_min": len(customers) / ((newest - lo) / 60_000),
        "authors": authors,
        "mean_response_min": statistics.fmean(waits) / 60_000,
        "p90_response_min": statistics.quantiles(waits, n=10, method="inclusive")[8] / 60_000,
        "answer_rate": len(replies) / queries,
        "dead_letters": len(BAD_RECORDS),
    }


# -- the service desk -------------------------------------------------------------------------------
T0 = 1_714_557_600_000  # 2024-05-01T10:00:00Z
MIN = 60_000


def mention(i: int, author: str, **kw: object) -> dict:
    d = {"id": f"twitter:{i}", "channel": "twitter", "owned": False, "brand": "acme", "author": author,
         "text": "my bag is lost, no sign of my luggage", "ts": iso_ms(T0 + i * MIN), "in_reply_to": None,
         "from_brand": False, "url": None, "lang": "en", "meta": {}, "customer_id": None, "intent": "query",
         "sentiment": "neutral", "sentiment_score": 0.0, "department": "service", "keywords": [],
         "churn_risk": 0.1, "case_id": None}
    d.update(kw)
    return d


def seed_service_desk(r: redis.Redis, prefix: str) -> None:
    """A small service desk: two agents (one offline), five cases (one resolved, two waiting, an escalation)."""
    store = make_store(r, prefix)
    import_customers(store, pl.DataFrame({"customer_id": ["C-G"], "name": ["Gil"], "tier": ["gold"],
                                          "twitter": ["gil"]}), now_ms=T0)
    add_agent(store, Agent.create("ann", capacity=2, departments="service"), online=True, now_ms=T0)
    add_agent(store, Agent.create("bob", capacity=3, departments="sales"), online=False, now_ms=T0)
    kb = KnowledgeBase(store)
    kb.import_articles(load_articles(SAMPLE_KB)[0])
    proc = CrmProcessor(store, load_rules(SAMPLE_RULES), kb, settings=CrmSettings(prefix=prefix, auto_tick_ms=0),
                        outbox=ENCODING)
    proc.process_batch([mention(i, f"u{i}") for i in range(4)])  # ann takes two, two wait in `service`
    proc.reply("C-twitter:0", text="Found it, on its way", now_ms=T0 + 30 * MIN)
    proc.resolve("C-twitter:0", now_ms=T0 + 40 * MIN)  # ann's slot goes to the oldest waiting case
    proc.process(mention(9, "gil", sentiment="negative", sentiment_score=-0.7, text="third time my bill is wrong"))
