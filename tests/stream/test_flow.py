"""The whole flow on TestingSource into a real Redis, single-worker and in a 2-worker cluster."""

from __future__ import annotations

import socket
from collections import defaultdict

import orjson
import pytest
import redis
from bytewax.testing import TestingSource, cluster_main, run_main
from pulse_testkit import make_mentions

from connectors.records import RawRecord
from stream.flow import build_flow
from stream.keys import Keys
from stream.metrics import snapshot, totals
from stream.settings import Settings
from stream.sinks import RedisSink


def _records(rows: list) -> list[RawRecord]:
    return [RawRecord("test:src", i, row if isinstance(row, bytes) else orjson.dumps(row), "jsonl")
            for i, row in enumerate(rows)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(records: list[RawRecord], redis_url: str, prefix: str, workers: int) -> None:
    settings = Settings(prefix=prefix, flush_seconds=0.05)
    flow = build_flow(TestingSource(records, batch_size=50), settings, RedisSink(redis_url, Keys(prefix)),
                      redis_url=redis_url)
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [f"127.0.0.1:{_free_port()}"], 0, worker_count_per_proc=workers)


def _expected(rows: list[dict]) -> dict:
    """Independent arithmetic over the generated rows."""
    by_id = {r["id"]: r for r in rows}
    exp: dict = defaultdict(lambda: {"mentions": 0, "queries": 0, "rts": []})
    for r in rows:
        if r.get("from_brand"):
            m = by_id[r["in_reply_to"]]
            exp[r["brand"]]["rts"].append(r["ts"] - m["ts"])
        else:
            exp[r["brand"]]["mentions"] += 1
            exp[r["brand"]]["queries"] += "how do i" in r["text"].lower()
    return exp


@pytest.mark.parametrize("workers", [1, 2])
def test_flow_counts_and_response_times(workers: int, r: redis.Redis, redis_url: str, key_prefix: str) -> None:
    rows = make_mentions(600)
    bad = [b'{"id": "broken"', b"\xff\xfe", orjson.dumps({"id": "x", "channel": "twitter"})]
    dupes = rows[:5]
    records = _records(rows + bad + dupes)
    _run(records, redis_url, key_prefix, workers)
    keys = Keys(key_prefix)
    t = totals(r, keys)
    assert t["offered"] == len(records)
    assert t["accepted"] == len(rows)
    assert t["dead_letters"] == len(bad)
    assert t["duplicates"] == len(dupes)
    assert t["accepted"] + t["dead_letters"] + t["duplicates"] == t["offered"]
    reasons = [f[b"reason"].decode() for _, f in r.xrange(keys.dlq)]
    assert len(reasons) == 3
    assert any(x.startswith("json:") for x in reasons) and any(x.startswith("encoding:") for x in reasons)
    doc = snapshot(r, keys)
    exp = _expected(rows)
    for brand, e in exp.items():
        b = doc["brands"][brand]
        assert b["mentions"] == e["mentions"]
        assert b["queries"] == e["queries"]
        rts = sorted(e["rts"])
        assert b["first_response"]["count"] == len(rts)
        assert b["first_response"]["mean_ms"] == pytest.approx(sum(rts) / len(rts))
        assert b["response_count"] == len(rts)  # window counters agree with the exact sorted sets
        assert b["authors"] == len({x["author"] for x in rows if x["brand"] == brand and not x.get("from_brand")})


def test_replaying_the_same_input_twice_does_not_double_count(r: redis.Redis, redis_url: str, key_prefix: str) -> None:
    records = _records(make_mentions(300) + [b"not json"])
    _run(records, redis_url, key_prefix, 1)
    first = snapshot(r, Keys(key_prefix))
    dlq_len = r.xlen(Keys(key_prefix).dlq)
    _run(records, redis_url, key_prefix, 1)
    second = snapshot(r, Keys(key_prefix))
    for doc in (first, second):
        doc.pop("generated_at")
    assert first == second
    assert r.xlen(Keys(key_prefix).dlq) == dlq_len == 1


def test_reply_before_its_mention_still_counts(r: redis.Redis, redis_url: str, key_prefix: str) -> None:
    mention = {"id": "t:1", "channel": "twitter", "brand": "acme", "author": "ann", "text": "help?",
               "ts": "2024-01-01T10:00:00Z"}
    reply = {"id": "t:2", "channel": "twitter", "brand": "acme", "author": "acme", "text": "sure",
             "ts": "2024-01-01T10:04:00Z", "from_brand": True, "in_reply_to": "t:1"}
    _run(_records([reply, mention]), redis_url, key_prefix, 1)
    fr = snapshot(r, Keys(key_prefix))["brands"]["acme"]["first_response"]
    assert fr["count"] == 1 and fr["mean_ms"] == 240_000


def test_unanswered_queries_are_counted_not_dropped(r: redis.Redis, redis_url: str, key_prefix: str) -> None:
    rows = [{"id": f"t:{i}", "channel": "twitter", "brand": "acme", "author": f"u{i}", "text": "can you help me?",
             "ts": 1_704_103_200_000 + i * 1000} for i in range(4)]
    rows.append({"id": "t:r0", "channel": "twitter", "brand": "acme", "author": "acme", "text": "yes",
                 "ts": 1_704_103_260_000, "from_brand": True, "in_reply_to": "t:0"})
    _run(_records(rows), redis_url, key_prefix, 1)
    b = snapshot(r, Keys(key_prefix))["brands"]["acme"]
    assert b["queries"] == 4 and b["unanswered"] == 3 and b["first_response"]["count"] == 1
    assert b["answer_rate"] == pytest.approx(0.25)
