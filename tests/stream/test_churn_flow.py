"""Churn in the flow: outcomes are learned, risks and their reasons land in Redis (bounded), CRM tenure is
read through the CRM, and the Customers page's read functions return them."""

from __future__ import annotations

import orjson
import polars as pl
import redis
from bytewax.testing import TestingSource, run_main

from connectors.records import RawRecord
from crm import import_customers, make_store
from stream.churn import churn_candidates, churn_reasons
from stream.flow import build_flow
from stream.keys import Keys
from stream.settings import Settings
from stream.sinks import RedisSink, RedisWriter

T0 = 1_709_510_400_000  # 2024-03-04, ms
ANGRY = "this is terrible, my internet is down again and nobody helps"
CALM = "love the new app, great service"


def _customers(n: int) -> pl.DataFrame:
    return pl.DataFrame([{"customer_id": f"C{i:03d}", "name": f"Cus Tomer{i}", "tier": "silver", "value": 500.0,
                          "tenure_months": 3 if i % 2 == 0 else 60, "twitter": f"cust{i:03d}"}
                         for i in range(n)])


def _records(n: int) -> list[RawRecord]:
    """Two rounds of posts by n customers (every third angry; every second new), renewals in between."""
    rows: list[tuple[str, dict]] = []
    t = T0
    for round_ in range(2):
        for i in range(n):
            for k in range(2):
                t += 2000
                rows.append(("jsonl", {"id": f"twitter:{round_}-{i}-{k}", "channel": "twitter", "brand": "acme",
                                       "author": f"cust{i:03d}", "text": ANGRY if i % 3 == 0 else CALM, "ts": t}))
        if round_ == 0:
            for i in range(n):
                t += 1000
                churned = i % 3 == 0 or i % 2 == 0  # the angry and the new leave
                rows.append(("jsonl", {"type": "churn", "customer_id": f"C{i:03d}", "ts": t, "churned": churned}))
    return [RawRecord("churn-test", i, orjson.dumps(x), fmt) for i, (fmt, x) in enumerate(rows)]


def test_flow_learns_churn_and_stores_risks_with_reasons(r: redis.Redis, redis_url: str, key_prefix: str) -> None:
    n = 90
    import_customers(make_store(redis_url, key_prefix), _customers(n), now_ms=T0)
    settings = Settings(prefix=key_prefix, flush_seconds=0.05, rules="none")
    run_main(build_flow(TestingSource(_records(n)), settings, RedisSink(redis_url, Keys(key_prefix)),
                        redis_url=redis_url))
    keys = Keys(key_prefix)
    assert r.zcard(keys.churn) == n and r.hlen(keys.churn_reasons) == n  # scored under their CRM ids
    risk = {m.decode(): s for m, s in r.zrange(keys.churn, 0, -1, withscores=True)}
    angry_and_new = [risk[f"C{i:03d}"] for i in range(n) if i % 6 == 0]
    calm_and_loyal = [risk[f"C{i:03d}"] for i in range(n) if i % 3 and i % 2]
    assert min(angry_and_new) > max(calm_and_loyal) + 0.2, "the outcomes were learned"
    top = churn_candidates(r, keys, 5)
    assert [c["risk"] for c in top] == sorted((c["risk"] for c in top), reverse=True)
    assert all(int(c["customer_id"][1:]) % 6 == 0 and c["reasons"] for c in top)
    reason = top[0]["reasons"][0]
    assert set(reason) == {"feature", "value", "contribution", "text"} and reason["contribution"] > 0
    features = {x["feature"] for c in top for x in c["reasons"]}
    assert features & {"negative", "neg_share", "sentiment_mean", "complaints_90d"}
    assert features & {"tenure_years", "new_customer"}, "tenure came from the CRM record"
    assert churn_reasons(r, keys, top[0]["customer_id"]) == top[0]["reasons"]
    assert churn_reasons(r, keys, "nobody") == [] and churn_candidates(r, keys, 0) == []


def test_churn_keys_are_capped(r: redis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    writer = RedisWriter(r, keys, churn_keep=3)
    writer.write([("churn", f"c{i}", i / 10, orjson.dumps([{"feature": "negative"}])) for i in range(5)])
    writer.write([("churn", "c9", 0.05, b"[]")])
    assert [m.decode() for m in r.zrange(keys.churn, 0, -1)] == ["c2", "c3", "c4"]
    assert sorted(k.decode() for k in r.hkeys(keys.churn_reasons)) == ["c2", "c3", "c4"]
