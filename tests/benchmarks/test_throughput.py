"""``benchmarks/throughput.py``: its streams span what they say, and the work a run reaches is read back."""

from __future__ import annotations

import redis
from pulse_testkit import load_benchmark

tp = load_benchmark("throughput")
DAY = 86_400_000


def test_conversations_span_the_days_asked_and_dense_keeps_their_order() -> None:
    for days in (274, 1096):
        rows = tp.conversations(3000, days=days)
        assert len(rows) == 3000
        span = rows[-1]["ts"] - rows[0]["ts"]
        assert 0.9 * days * DAY < span <= (days + 1) * DAY
        assert [r["ts"] for r in rows] == sorted(r["ts"] for r in rows)
    dense = tp.as_records(rows, "bench:dense", True)
    assert [d.offset for d in dense] == list(range(3000))


def test_reached_counts_the_timers_work_a_sparse_stream_reaches(redis_url: str, key_prefix: str,
                                                                  r: redis.Redis) -> None:
    rows = tp.conversations(600, days=400)
    tp.full_flow(tp.as_records(rows, "bench:sparse", False), redis_url, key_prefix + "s:", crm=True)
    tp.full_flow(tp.as_records(rows, "bench:dense", True), redis_url, key_prefix + "d:", crm=True)
    sparse, dense = tp.reached(r, key_prefix + "s:"), tp.reached(r, key_prefix + "d:")
    # 400 days reach every SLA and most 30-day stale expiries; one packed hour reaches none of them
    assert sparse["sla_breaches"] > 100 and sparse["cases_expired"] > 100 and sparse["alerts"] >= sparse["sla_breaches"] // 2
    assert dense == {"alerts": 0, "sla_breaches": 0, "cases_expired": 0, "cases_resolved": 0}
