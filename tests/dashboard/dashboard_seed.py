"""Data for the dashboard tests: a two-hour conversation log run through the real flow into a real Redis.

Rows are built here, and the figures the dashboard should show are computed from the rows with plain
arithmetic (:func:`expected_figures`), independently of the flow and of ``dashboard/``.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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
from stream.redisconn import connect, delete_prefix
from stream.settings import Settings
from stream.sinks import RedisSink

__all__ = ["HOSTILE", "NASTY_TEXT", "add_mentions", "clean_prefix", "conversation", "expected_figures",
           "seed_demo_like", "seed_redis"]

#: What a customer may write that must never become markup: a script, bold, an image and a javascript link.
HOSTILE = "<script>alert(1)</script> **bold** ![x](http://example.com/x.png) [click](javascript:alert(1))"
#: A mention that would be bold text, an image, a link and a script if anything rendered user text as
#: Markdown/HTML (a negative comment).
NASTY_TEXT = f"{HOSTILE} awful service, I hate this"
T0_MS = 1_704_103_200_000  # 2024-01-01 10:00 UTC
MINUTES = 120
BAD_RECORDS = [b'{"id": "broken", "channel": ', b"\xff\xfe not utf-8",
               orjson.dumps({"id": "x1", "brand": "acme", "author": "a", "text": "no channel", "ts": T0_MS})]


#: The agents who write the brands' replies (a reply's ``meta.agent``).
AGENTS = ("ann", "bob")


def conversation() -> list[dict[str, Any]]:
    """Customer mentions every minute for two hours (2-4 a minute), brand replies to every other query
    (written by ann and bob in turn, four minutes each).

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
                             "ts": ts + delay_ms, "from_brand": True, "in_reply_to": mid,
                             "meta": {"agent": AGENTS[m // 4 % 2]}})
    rows.append({"id": "twitter:nasty", "channel": "twitter", "brand": "acme", "author": "mallory",
                 "text": NASTY_TEXT, "ts": last_ms})
    rows.sort(key=lambda d: d["ts"])
    return rows


def seed_redis(redis_url: str, prefix: str) -> list[dict[str, Any]]:
    """Run the rows, three bad records and one duplicate through the real flow into Redis; return the rows."""
    rows = conversation()
    payloads = [orjson.dumps(r) for r in rows] + BAD_RECORDS + [orjson.dumps(rows[0])]
    records = [RawRecord("test:dashboard", i, p, "jsonl", f"line {i + 1}") for i, p in enumerate(payloads)]
    settings = Settings(prefix=prefix, flush_seconds=0.05)
    run_main(build_flow(TestingSource(records, batch_size=100), settings, RedisSink(redis_url, Keys(prefix))))
    return rows


def add_mentions(redis_url: str, prefix: str, rows: list[dict[str, Any]], source: str = "test:late") -> None:
    """Run more rows through a separate flow run (its own source name, so the first run's counts stay)."""
    records = [RawRecord(source, i, orjson.dumps(r), "jsonl") for i, r in enumerate(rows)]
    settings = Settings(prefix=prefix, flush_seconds=0.05)
    run_main(build_flow(TestingSource(records), settings, RedisSink(redis_url, Keys(prefix))))


def clean_prefix(client: redis.Redis, prefix: str) -> None:
    """Delete every key under ``prefix`` (after the flows' model hosts wrote what they still held, so a later
    flush does not bring keys back)."""
    from stream.learning import flush_all

    flush_all()
    delete_prefix(client, prefix)


@contextmanager
def seeded_demo_like(redis_url: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A fresh prefix holding the demo-like dataset, as ``(prefix, rows)``; deleted afterwards."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    client = connect(redis_url)
    try:
        yield prefix, seed_demo_like(redis_url, prefix)
    finally:
        clean_prefix(client, prefix)
        client.close()


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
    asked = [r for r in customers if r["text"].startswith("how do I")]
    queries = len(asked)
    replied_to = {r["in_reply_to"] for r in rows if r.get("from_brand")}
    authors = sum(len({r["author"] for r in customers if r["brand"] == b}) for b in {r["brand"] for r in customers})
    return {
        "mentions": len(customers),
        # A rate over the event time elapsed so far: the newest minute is still filling.
        "mentions_per_min": len(customers) / ((newest - lo) / 60_000),
        "authors": authors,
        "mean_response_min": statistics.fmean(waits) / 60_000,
        "p90_response_min": statistics.quantiles(waits, n=10, method="inclusive")[8] / 60_000,
        # answered queries / queries: a query of the range counts as answered whenever its reply came
        "answer_rate": sum(r["id"] in replied_to for r in asked) / queries,
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


# -- a demo-like dataset: the conversation, the CRM, incidents and model versions, with hostile user text ------
#: A query (it opens a case) from an author whose handle is hostile too.
HOSTILE_QUERY = f"how do I get my money back? {HOSTILE}"
HOSTILE_AUTHOR = "eve_[x](javascript:alert(1))"
#: The name mallory has in the CRM.
HOSTILE_NAME = f"Mallory {HOSTILE}"
#: A knowledge-base article whose title is hostile (suggested for refund questions).
HOSTILE_ARTICLE = {"id": "refunds", "title": f"Refunds {HOSTILE}",
                   "body": "How to get your money back: a refund goes to the card you paid with within 5 days.",
                   "tags": '["refund","money","back"]', "url": "https://help.example.com/refunds"}
#: The live spike (acme on twitter) and a past one (globex on the forum).
LIVE_SPIKE = "spike:acme:twitter:202401011140"
PAST_SPIKE = "spike:globex:forum:202401011020"


#: Customers of the CRM beside mallory and gil: the conversation's twitter handles user0, user5, ... user145.
LOYAL = [f"C-U{n}" for n in range(0, 150, 5)]
#: Gil's thread: a question, an answer by ann, a follow-up, a second answer (a next response of 8 minutes).
THREAD = [
    {"id": "twitter:g1", "channel": "twitter", "brand": "acme", "author": "user3", "text": "how do I change my plan?",
     "ts": T0_MS + 5 * 60_000},
    {"id": "twitter:g1r", "channel": "twitter", "brand": "acme", "author": "acme_care", "from_brand": True,
     "text": "In the app, under Account > Plan", "ts": T0_MS + 8 * 60_000, "in_reply_to": "twitter:g1",
     "meta": {"agent": "ann"}},
    {"id": "twitter:g2", "channel": "twitter", "brand": "acme", "author": "user3", "in_reply_to": "twitter:g1r",
     "text": "still not working, how do I fix it?", "ts": T0_MS + 12 * 60_000},
    {"id": "twitter:g2r", "channel": "twitter", "brand": "acme", "author": "acme_care", "from_brand": True,
     "text": "Fixed on our side, try again", "ts": T0_MS + 20 * 60_000, "in_reply_to": "twitter:g2",
     "meta": {"agent": "ann"}},
]
#: Cases resolved after the flow, at known times: case id -> resolution in minutes (acme's on twitter, globex's on
#: facebook). Resolving C-U70's unanswered question (twitter:m10k0, due before it) keeps mallory's escalation the
#: most urgent open case.
RESOLVED = {"C-twitter:g1": 35, "C-twitter:m0k0": 50, "C-twitter:m10k0": 45, "C-facebook:m1k2": 20}


def churn_outcomes() -> list[dict[str, Any]]:
    """What the CRM learned an hour in: a third of the loyal customers left (the churn model's labels)."""
    return [{"type": "churn", "customer_id": cid, "churned": (i % 3 == 0), "ts": T0_MS + 70 * 60_000}
            for i, cid in enumerate(LOYAL)]


def demo_like_rows() -> list[dict[str, Any]]:
    """The conversation, gil's thread and the hostile query in its last minute (a query: it opens a case)."""
    rows = conversation() + [dict(r) for r in THREAD]
    last = max(r["ts"] for r in rows)
    rows.append({"id": "twitter:hostile-q", "channel": "twitter", "brand": "acme", "author": HOSTILE_AUTHOR,
                 "text": HOSTILE_QUERY, "ts": last - 5_000})
    rows.sort(key=lambda d: d["ts"])
    return rows


#: Model versions of the sentiment model: what each was trained on (as ``pulse train`` and the flow record it).
_AIRLINE = {"name": "Tweets.csv", "path": "../shared/data/airline/Tweets.csv", "rows": 14640, "rows_used": 14640,
            "sha256": "5e1d0c4a" * 8}
_SANDERS = {"name": "sanders.csv", "path": "../shared/data/sanders/sanders.csv", "rows": 5113, "rows_used": 3424,
            "sha256": "a3b2c1d0" * 8}
SENTIMENT_VERSIONS = (
    ({"train_rows": 14640, "train_prequential_accuracy": 0.62, "train_prequential_macro_f1": 0.57,
      "prediction_drift": 0.1, "label_drift": 0.2},
     {"command": "pulse train", "files": [_AIRLINE], "rows": 14640, "label_map": "", "text_col": "text",
      "label_col": "airline_sentiment", "epochs": 1, "started_from": "default (warm-started)", "parent_version": None,
      "trained_at": "2024-01-01T09:00:00+00:00", "trained_on": [_AIRLINE]}),
    ({"n_labels": 40, "accuracy": 0.71, "macro_f1": 0.66, "prediction_drift": 0.05, "label_drift": 0.1},
     {"command": "pulse train", "files": [_SANDERS], "rows": 3424, "label_map": "irrelevant=neutral",
      "text_col": "TweetText", "label_col": "Sentiment", "epochs": 2, "started_from": "checkpoint v1",
      "parent_version": 1, "trained_at": "2024-01-01T09:30:00+00:00", "trained_on": [_AIRLINE, _SANDERS]}),
)
#: The drift guard's alert on the sentiment model (the flow writes one when its prequential error rises).
MODEL_DRIFT = "model_drift:sentiment:37"


def seed_demo_like(redis_url: str, prefix: str) -> list[dict[str, Any]]:
    """Everything every page shows, under ``prefix``: customers (mallory's name is hostile; 30 loyal ones
    with handles in the conversation), agents, the KB (one hostile title), two hours of conversations through
    the real flow with the CRM on (replies written by ann and bob; gil's thread with a next response; churn
    outcomes an hour in, so later risks carry reasons), three cases resolved at known times (:data:`RESOLVED`),
    a live and a past spike incident (hostile top terms, the hostile mention among the samples), a model
    drift alert and two checkpoints of the sentiment model with their provenance. Returns the mentions that
    went through the flow (not the churn outcomes)."""
    from models import registry
    from stream.learning import model_signing_key
    from stream.schema import Alert
    from stream.sinks import RedisWriter

    client = redis.Redis.from_url(redis_url)
    store = make_store(client, prefix)
    import_customers(store, pl.DataFrame({
        "customer_id": ["C-M", "C-G", *LOYAL], "name": [HOSTILE_NAME, "Gil Grant", *[f"Loyal {c}" for c in LOYAL]],
        "tier": ["gold", "silver", *["bronze"] * len(LOYAL)],
        "value": [1200.0, 300.0, *[40.0 + i for i in range(len(LOYAL))]],
        "email": ["mallory@example.com", "gil@example.com", *[f"{c.lower()}@example.com" for c in LOYAL]],
        "tenure_months": [30, 12, *[i % 30 for i in range(len(LOYAL))]],
        "twitter": ["mallory", "user3", *[f"user{c[3:]}" for c in LOYAL]]}), now_ms=T0_MS)
    for agent, departments in (("ann", "service"), ("bob", "sales,marketing,pr")):
        add_agent(store, Agent.create(agent, capacity=50, departments=departments), online=True, now_ms=T0_MS)
    kb = KnowledgeBase(store)
    kb.import_articles([*load_articles(SAMPLE_KB)[0], HOSTILE_ARTICLE])
    rows = demo_like_rows()
    # the churn outcomes ride in the same run, in event-time order, so the mentions after them are scored
    # by a model that learned them (with reasons)
    stream_rows = sorted([*rows, *churn_outcomes()], key=lambda d: d["ts"])
    records = [RawRecord("test:demo", i, orjson.dumps(r), "jsonl") for i, r in enumerate(stream_rows)]
    settings = Settings(prefix=prefix, flush_seconds=0.05)
    run_main(build_flow(TestingSource(records, batch_size=100), settings, RedisSink(redis_url, Keys(prefix)),
                        redis_url=redis_url))
    crm = CrmProcessor(store, settings=CrmSettings(prefix=prefix, auto_tick_ms=0))
    created = {cid: int(store.get_case(cid)["created_ms"]) for cid in RESOLVED}
    for cid, minutes in RESOLVED.items():
        crm.resolve(cid, now_ms=created[cid] + minutes * 60_000, by=AGENTS[0])
    writer = RedisWriter(client, Keys(prefix))
    live = dict(id=LIVE_SPIKE, kind="spike", brand="acme", channel="twitter", topic=None,
                window_start="2024-01-01T11:40:00+00:00", expected=2.0, score=0.99, severity="high", interval_s=300.0,
                sample_ids=("twitter:nasty", "twitter:m100k0", "twitter:m101k3"),
                top_terms=("refund", *HOSTILE.split(" ")))
    writer.write([("alert", Alert(**live, observed=9, message="open: acme twitter at 9 mentions, 2.0 expected"))])
    writer.write([("alert", Alert(**live, observed=14, message="update: acme twitter at 14 mentions, 2.0 expected"))])
    past = dict(id=PAST_SPIKE, kind="spike", brand="globex", channel="forum", topic=None,
                window_start="2024-01-01T10:20:00+00:00", expected=1.5, score=0.95, severity="medium",
                sample_ids=("forum:m20k1",), top_terms=("app", "crash"))
    writer.write([("alert", Alert(**past, observed=6, message="open: globex forum at 6 mentions, 1.5 expected"))])
    writer.write([("alert", Alert(**past, observed=6, message="resolved: globex forum back to 1 mentions"))])
    drift = dict(id=MODEL_DRIFT, kind="model_drift", brand="", channel=None, topic="sentiment",
                 window_start="2024-01-01T11:10:00+00:00", expected=0.21, severity="high")
    writer.write([("alert", Alert(**drift, observed=0.52, score=0.31, sample_ids=("twitter:m70k0",),
                                  message="open: sentiment error rose from 21% to 52%; serving version 1 until the "
                                          "learning copy recovers"))])
    key = model_signing_key(settings)
    for metrics, provenance in SENTIMENT_VERSIONS:
        registry.save(client, prefix, "sentiment", registry.new_model("sentiment"), metrics, key=key,
                      provenance=provenance)
    client.close()
    return rows
