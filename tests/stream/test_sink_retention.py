"""The sink forgets response times and unanswered queries past their retention (event time), on a real Redis."""

from __future__ import annotations

import redis

from stream import sinks
from stream.keys import Keys
from stream.sinks import RedisWriter

H = 3_600_000
T0 = 1_704_103_200_000


def _responses(first: int, last: int) -> list[tuple]:
    return [("response", "acme", "twitter", f"twitter:{i}", T0 + i * H, T0 + i * H + 60_000, 60_000, None)
            for i in range(first, last)]


def test_old_responses_and_unanswered_queries_are_forgotten(r: redis.Redis, key_prefix: str, monkeypatch) -> None:
    keys = Keys(key_prefix)
    writer = RedisWriter(r, keys, response_retention_s=10 * 3600)  # ten event hours
    writer.write(_responses(0, 5) + [("unanswered", "acme", "twitter", "twitter:u0", T0, 1)])
    assert r.zcard(keys.response_times("acme", "twitter")) == 5
    # within a minute of the last trim nothing is trimmed again (the check costs Redis a script call)
    writer.write(_responses(5, 30) + [("unanswered", "acme", "twitter", "twitter:u20", T0 + 20 * H, 1)])
    assert r.zcard(keys.response_times("acme", "twitter")) == 30
    monkeypatch.setattr(sinks, "TRIM_EVERY_S", 0.0)
    writer.write(_responses(30, 31))  # newest mention at hour 30: keep hours 20..30
    kept = sorted(int(m.decode().split(":")[1]) for m in r.zrange(keys.response_times("acme", "twitter"), 0, -1))
    assert kept == list(range(20, 31))
    assert r.zcard(keys.response_times_at("acme", "twitter")) == 11
    assert r.zrange(keys.unanswered("acme", "twitter"), 0, -1) == [b"twitter:u20"]


def test_retention_zero_keeps_everything(r: redis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    RedisWriter(r, keys, response_retention_s=0).write(_responses(0, 5000)[::100])
    assert r.zcard(keys.response_times("acme", "twitter")) == 50
