"""CRM throughput: cases opened and assigned per second with 100 agents and 100k customers.

Runs against ``REDIS_URL`` (else an embedded redis-server under ``.pulse/bench``) under a throw-away
key prefix that is deleted at the end. Prints one ``name=value`` line per figure:

- ``customers_import_per_s``: 100k customers (CSV-shaped rows with handles) imported;
- ``cases_per_s``: query mentions -> ``CrmProcessor.process_batch`` (256 per batch) with the sample
  rules and KB: identity, rules, priority, SLA, KB top-3, case opened and assigned (every one is);
- ``cases_per_s_single``: the same through ``process()`` one mention at a time;
- ``steady_cases_per_s``: agents with capacity 10, every case later resolved: opening, assigning,
  queueing and draining as slots free up (each opened case counted once, resolves included in the time);
- ``baseline_writes_per_s``: the floor of Redis work per case in this process: one pipelined
  HSET (the case's fields) + ZADD + SET per case, no logic; ``ratio_vs_baseline`` = cases_per_s / it;
- ``cpu_us_per_case_python`` / ``cpu_us_per_case_redis``: CPU time per case in this process and in the
  redis-server during the ``cases_per_s`` run (stable on a shared machine, unlike rates);
- ``kb_search_per_s`` and ``rules_eval_per_s``: the two in-process parts alone.

Usage: ``.venv/bin/python benchmarks/crm.py [--cases 20000] [--customers 100000] [--agents 100]``
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.outbox import ENCODING  # noqa: E402
from crm import (  # noqa: E402
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
from crm.assignment import Agent, add_agent, list_agents  # noqa: E402
from crm.rules import history_summary  # noqa: E402
from crm.sla import iso_ms  # noqa: E402
from stream.redisconn import connect, ensure_redis_url  # noqa: E402

T0 = 1_714_557_600_000
TEXTS = (
    "I forgot my password and can't log in, please help",
    "where is my parcel? tracking shows nothing for days",
    "you charged me twice this month, I want a refund",
    "my bag is lost, no sign of my luggage at the airport",
    "how do I cancel my subscription?",
    "the router keeps rebooting and the wifi is slow",
    "my flight is delayed 4 hours, can I rebook?",
    "the app crashes every time I open it",
    "no signal at home since yesterday, what is going on",
    "my gems vanished after the update",
)
CHANNELS = ("twitter", "facebook", "instagram", "review", "forum")
DEPTS = ("service", "service", "service", "sales", "marketing", "pr")


def customers_frame(n: int, rng: random.Random) -> pl.DataFrame:
    tiers = ("platinum", "gold", "silver", "bronze", "basic")
    return pl.DataFrame({
        "customer_id": [f"C{i:06d}" for i in range(n)],
        "name": [f"Customer {i}" for i in range(n)],
        "email": [f"c{i}@example.com" for i in range(n)],
        "tier": [rng.choice(tiers) for _ in range(n)],
        "value": [str(round(rng.lognormvariate(6, 1), 2)) for _ in range(n)],
        "tenure_months": [str(rng.randrange(1, 120)) for _ in range(n)],
        "products": [rng.choice(("A;B", "B", "C", "A", "B;C")) for _ in range(n)],
        "twitter": [f"tw_user{i}" for i in range(n)],
        "instagram": [f"ig.user{i}" for i in range(n)],
    })


def mentions(n: int, n_customers: int, rng: random.Random, tag: str) -> list[dict]:
    out = []
    for i in range(n):
        known = rng.random() < 0.8
        channel = rng.choice(("twitter", "instagram")) if known else rng.choice(CHANNELS)
        cid = rng.randrange(n_customers)
        author = (f"tw_user{cid}" if channel == "twitter" else f"ig.user{cid}") if known else f"anon{tag}{i}"
        sentiment = rng.choice(("negative", "negative", "neutral", "positive"))
        out.append({
            "id": f"{channel}:{tag}{i}", "channel": channel, "owned": channel == "forum", "brand": "acme",
            "author": author, "text": rng.choice(TEXTS), "ts": iso_ms(T0 + i * 50), "in_reply_to": None,
            "from_brand": False, "url": None, "lang": rng.choice(("en", "en", "en", "es")), "meta": {},
            "customer_id": None, "intent": "query", "sentiment": sentiment,
            "sentiment_score": {"negative": -0.6, "neutral": 0.0, "positive": 0.6}[sentiment],
            "department": rng.choice(DEPTS), "keywords": [], "churn_risk": round(rng.random(), 3), "case_id": None,
        })
    return out


def add_agents(store, n: int, capacity: int, rng: random.Random) -> None:
    for i in range(n):
        dept = ("service", "service,supervisor", "sales", "marketing", "pr")[i % 5]
        add_agent(store, Agent.create(f"agent{i:03d}", capacity=capacity, departments=dept,
                                      channels="" if i % 3 else "twitter,instagram,facebook",
                                      languages="en,es" if i % 4 else "en"), online=True, now_ms=T0)


def redis_cpu(client) -> float:
    """CPU seconds the redis-server process has used (user + sys)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def cleanup(client, prefix: str) -> None:
    batch = []
    for key in client.scan_iter(match=prefix + "*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=20_000)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    rng = random.Random(7)
    client = connect(ensure_redis_url(None, ROOT / ".pulse" / "bench"))
    prefix = f"bench:crm:{uuid.uuid4().hex[:10]}:"
    store = make_store(client, prefix)
    settings = CrmSettings(prefix=prefix, auto_tick_ms=60_000,
                           assignment={"default": "least_loaded", "service": "skill_based", "pr": "round_robin"})
    try:
        df = customers_frame(args.customers, rng)
        t = time.perf_counter()
        report = import_customers(store, df, now_ms=T0)
        el = time.perf_counter() - t
        assert report.created == args.customers and not report.rejected, report.to_dict()
        print(f"customers_import_per_s={args.customers / el:.0f}")

        kb = KnowledgeBase(store)
        kb.import_articles(load_articles(SAMPLE_KB)[0])
        rules = load_rules(SAMPLE_RULES)
        per_agent = args.cases // args.agents * 3 + 50  # room for every case: nothing queues here
        add_agents(store, args.agents, per_agent, rng)
        proc = CrmProcessor(store, rules, kb, settings, outbox=ENCODING)

        # baseline: the bare Redis writes a case needs, pipelined the same way
        base = mentions(args.cases, args.customers, rng, "b")
        t = time.perf_counter()
        for i in range(0, len(base), args.batch):
            pipe = client.pipeline(transaction=False)
            for m in base[i:i + args.batch]:
                pipe.hset(f"{prefix}base:{m['id']}", mapping={"id": m["id"], "text": m["text"], "author": m["author"],
                                                              "channel": m["channel"], "status": "open"})
                pipe.zadd(f"{prefix}base:open", {m["id"]: T0})
                pipe.set(f"{prefix}base:thread:{m['id']}", m["id"])
            pipe.execute()
        baseline = len(base) / (time.perf_counter() - t)

        batch = mentions(args.cases, args.customers, rng, "q")
        cpu0, rcpu0 = time.process_time(), redis_cpu(client)
        t = time.perf_counter()
        opened = 0
        for i in range(0, len(batch), args.batch):
            for res in proc.process_batch(batch[i:i + args.batch]):
                opened += res.get("case_event") == "opened" and res.get("assigned_agent") is not None
        el = time.perf_counter() - t
        cpu, rcpu = time.process_time() - cpu0, redis_cpu(client) - rcpu0
        assert opened == len(batch), f"only {opened} of {len(batch)} opened and assigned"
        cases_per_s = len(batch) / el
        print(f"cases_per_s={cases_per_s:.0f}")
        # CPU per case does not depend on how busy the shared machine is
        print(f"cpu_us_per_case_python={cpu / len(batch) * 1e6:.0f}")
        print(f"cpu_us_per_case_redis={rcpu / len(batch) * 1e6:.0f}")

        single = mentions(min(3000, args.cases), args.customers, rng, "s")
        t = time.perf_counter()
        for m in single:
            proc.process(m)
        print(f"cases_per_s_single={len(single) / (time.perf_counter() - t):.0f}")
        print(f"baseline_writes_per_s={baseline:.0f}")
        print(f"ratio_vs_baseline={cases_per_s / baseline:.3f}")
        assert all(a.load <= a.capacity for a in list_agents(store))

        # steady state: capacity 10, each case resolved a little later (queues fill and drain)
        steady_prefix = prefix + "steady:"
        sstore = make_store(client, steady_prefix)
        import_customers(sstore, df.head(10_000), now_ms=T0)
        add_agents(sstore, args.agents, 10, rng)
        sproc = CrmProcessor(sstore, rules, KnowledgeBase(sstore), settings.with_changes(prefix=steady_prefix),
                             outbox=ENCODING)
        steady = mentions(min(10_000, args.cases), 10_000, rng, "t")
        t = time.perf_counter()
        pending: list[str] = []
        for i in range(0, len(steady), args.batch):
            chunk = steady[i:i + args.batch]
            pending.extend(r["case_id"] for r in sproc.process_batch(chunk) if r.get("case_event") == "opened")
            now = T0 + (i + len(chunk)) * 50
            while len(pending) > args.agents * 8:
                sproc.resolve(pending.pop(0), now_ms=now)
        print(f"steady_cases_per_s={len(steady) / (time.perf_counter() - t):.0f}")
        assert all(a.load <= a.capacity for a in list_agents(sstore))

        # the in-process parts alone
        texts = [m["text"] for m in batch[:5000]]
        t = time.perf_counter()
        for text in texts:
            kb.search(text, 3)
        print(f"kb_search_per_s={len(texts) / (time.perf_counter() - t):.0f}")
        customer = {"tier": "gold", "products": ["A"], "name": "x", "churn_risk": 0.2, "mentions": 3}
        hist = history_summary(customer, [{"sentiment": "negative", "channel": "twitter", "intent": "query"}] * 10)
        t = time.perf_counter()
        for m in batch[:5000]:
            rules.evaluate(m, customer, hist)
        print(f"rules_eval_per_s={5000 / (time.perf_counter() - t):.0f}")
    finally:
        cleanup(client, prefix)


if __name__ == "__main__":
    main()
