"""Reply matching in Redis (stream/replies.py): the result is a function of the set of events, on a real Redis."""

from __future__ import annotations

import random
import uuid

import pytest
import redis
from pulse_testkit import stored_values

from stream.keys import GRANULARITIES, Keys
from stream.metrics import counters_of, snapshot
from stream.replies import ReplyMatcher, brand_post_event, mention_event, reply_event, sla_event
from stream.sinks import RedisWriter
from stream.windows import RUN_COUNTERS

H = 3_600_000
T0 = 1_704_103_200_000  # 2024-01-01 10:00 UTC
SLA = H


def _events(n: int, seed: int) -> list[list]:
    """Queries and comments of two brands, most answered (some twice, some late, some before their mention)."""
    rng = random.Random(seed)
    out: list[list] = []
    for i in range(n):
        brand = ("acme", "globex")[i % 2]
        t = T0 + i * 7 * 60_000
        out.append(mention_event(f"t:{i}", brand, "twitter", t, i % 3 != 0, f"u{i % 11}", "negative"))
        if i % 5:
            delay = rng.choice([60_000, 20 * 60_000, 2 * H, 30 * 60_000])
            out.append(reply_event(f"t:{i}", t + delay, brand))
            if i % 7 == 0:
                out.append(reply_event(f"t:{i}", t + delay + 5 * 60_000, brand))  # a second reply: not first
        if i % 3 != 0:
            out.append(sla_event(f"t:{i}"))
        if i % 13 == 0:  # conversations whose brand the source could not tell
            out += [brand_post_event(f"b:{i}", brand, t),
                    mention_event(f"u:{i}", "unknown", "twitter", t + 60_000, True, "ann", "neutral", f"b:{i}"),
                    sla_event(f"u:{i}"),
                    mention_event(f"c1:{i}", "unknown", "twitter", t + 90_000, True, "bob", "negative"),
                    mention_event(f"c2:{i}", "unknown", "twitter", t + 95_000, False, "cy", "positive", f"c1:{i}"),
                    reply_event(f"c2:{i}", t + 100_000, brand), sla_event(f"c1:{i}")]
    return out


def _state(r: redis.Redis, prefix: str) -> dict:
    """Everything readers see: windows, sketches, cut-offs, and the exact values and unanswered ids not
    older than their series' cut-off (older ones are forgotten a bounded number at a time)."""
    out = {}
    cut = {k.decode(): int(v) for k, v in r.hgetall(prefix + "rcut").items()}
    for key in r.scan_iter(match=prefix + "*", count=1000):
        name = key.decode()[len(prefix):]
        if name.startswith(("pend", "hw", "rt:", "mi:", "hi:", "di:")):
            continue  # internals, and window indexes (an all-zero window indexed in one order only reads as 0)
        kind = r.type(key).decode()
        if kind == "hash":
            h = r.hgetall(key)
            if name[:2] in ("m:", "h:", "d:"):
                if not any(counters_of(h).values()):
                    continue
                out[name] = counters_of(h)
            else:
                out[name] = h
        elif kind == "zset":
            series = name.split(":", 1)[1].replace("{", "").replace("}", "").replace(":", "|")
            entries = r.zrange(key, 0, -1, withscores=True)
            if name.startswith(("rtt:", "ua:")):
                entries = [(m, s) for m, s in entries if s >= cut.get(series, -1)]
            if name.startswith("rtt:"):
                exact = r.zmscore(prefix + "rt:" + name[4:], [m for m, _ in entries]) if entries else []
                out["rt:" + name[4:]] = list(zip([m for m, _ in entries], exact, strict=True))
            out[name] = entries
        elif kind == "set":
            out[name] = sorted(r.smembers(key))
    return out


def _apply(r: redis.Redis, prefix: str, events: list[list], batch: int, retention_ms: int = 0) -> None:
    m = ReplyMatcher(r, Keys(prefix), sla_ms=SLA, response_retention_ms=retention_ms)
    for i in range(0, len(events), batch):
        m.apply(events[i:i + batch])


@pytest.mark.parametrize("retention_ms", [0, 24 * H])
def test_any_order_and_batching_gives_the_same_state(r: redis.Redis, key_prefix: str, retention_ms: int) -> None:
    events = _events(400, seed=1)
    _apply(r, key_prefix, events, batch=50, retention_ms=retention_ms)
    reference = _state(r, key_prefix)
    for seed, batch in ((2, 1), (3, 17), (4, 400)):
        prefix = f"test:{uuid.uuid4().hex[:12]}:"
        shuffled = list(events)
        random.Random(seed).shuffle(shuffled)
        try:
            _apply(r, prefix, shuffled, batch=batch, retention_ms=retention_ms)
            _apply(r, prefix, shuffled[: len(shuffled) // 3], batch=batch, retention_ms=retention_ms)  # replayed
            assert _state(r, prefix) == {k.replace(key_prefix, prefix): v for k, v in reference.items()}
        finally:
            for key in r.scan_iter(match=prefix + "*"):
                r.delete(key)


def test_first_response_answered_and_unanswered(r: redis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    events = [
        mention_event("t:1", "acme", "twitter", T0, True, "ann", "negative"),
        reply_event("t:1", T0 + 30 * 60_000, "acme"),
        reply_event("t:1", T0 + 10 * 60_000, "acme"),  # an earlier reply arriving later is the first one
        mention_event("t:2", "acme", "twitter", T0 + 60_000, True, "bob", "neutral"),
        sla_event("t:2"),  # no reply within the SLA: unanswered
        mention_event("t:3", "acme", "twitter", T0 + 2 * 60_000, True, "cy", "neutral"),
        sla_event("t:3"),
        reply_event("t:3", T0 + 2 * 60_000 + 3 * H, "acme"),  # answered, but too late: still unanswered
        mention_event("t:4", "acme", "twitter", T0 + 3 * 60_000, False, "dee", "positive"),
        reply_event("t:4", T0 + 4 * 60_000, "acme"),  # a comment answered: a response, not an answered query
    ]
    _apply(r, key_prefix, events, batch=3)
    b = snapshot(r, keys)["brands"]["acme"]
    assert b["first_response"]["count"] == 3
    assert b["first_response"]["mean_ms"] == pytest.approx((10 * 60_000 + 3 * H + 60_000) / 3)
    assert b["answered"] == 2 and b["unanswered"] == 2
    assert r.zrange(keys.unanswered("acme", "twitter"), 0, -1) == [b"t:2", b"t:3"]


def test_an_unattributed_mention_moves_to_the_brand_that_answered(r: redis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    counted = dict.fromkeys(RUN_COUNTERS, 0) | {"mentions": 1, "queries": 1, "negative": 1, "authors": 1}
    RedisWriter(r, keys, run_id="f1").write(  # what the flow's window step writes for it
        [("windows", "unknown", "twitter", [(g, T0 - T0 % n, counted, ["ann"], True) for g, n in GRANULARITIES.items()])])
    _apply(r, key_prefix, [mention_event("t:9", "unknown", "twitter", T0, True, "ann", "negative"),
                           sla_event("t:9")], batch=10)
    assert snapshot(r, keys)["brands"]["unknown"]["unanswered"] == 1
    _apply(r, key_prefix, [reply_event("t:9", T0 + 60_000, "AcmeCare")], batch=10)
    doc = snapshot(r, keys)
    assert "unknown" not in doc["brands"]
    b = doc["brands"]["AcmeCare"]
    assert (b["mentions"], b["queries"], b["answered"], b["unanswered"]) == (1, 1, 1, 0)
    assert b["sentiment"]["negative"] == 1 and b["authors"] == 1 and b["first_response"]["count"] == 1


def test_conversations_carry_their_brand(r: redis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    _apply(r, key_prefix, _events(14, seed=5), batch=3)
    # u:0 replies to acme's post (path 2); c2:0 is answered by acme (path 1) and carries c1:0 along (path 4):
    # all three (10:01) move from unknown to acme, the two unanswered queries with them
    moved = counters_of(r.hgetall(keys.window("acme", "twitter", Keys.minute_id(T0 + 60_000))))
    assert (moved["mentions"], moved["queries"], moved["comments"], moved["unanswered"], moved["answered"]) == (3, 2, 1, 2, 0)
    left = counters_of(r.hgetall(keys.window("unknown", "twitter", Keys.minute_id(T0 + 60_000))))
    assert (left["mentions"], left["unanswered"]) == (-3, 0)  # the flow's own counts (+3) are not written here
    assert r.pfcount(keys.authors("acme", "twitter", Keys.minute_id(T0 + 60_000))) == 3


def test_exact_values_beyond_retention_are_forgotten_and_sketches_answer(r: redis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    events = []
    for i in range(48):  # one answered query an hour for two days; keep ten hours of exact values
        t = T0 + i * H
        events += [mention_event(f"t:{i}", "acme", "twitter", t, True, "ann", "neutral"),
                   reply_event(f"t:{i}", t + (i + 1) * 60_000, "acme")]
    _apply(r, key_prefix, events, batch=7, retention_ms=10 * H)
    assert r.zcard(keys.response_times("acme", "twitter")) == 11  # hours 37..47
    fr = snapshot(r, keys)["brands"]["acme"]["first_response"]
    assert fr["count"] == 48 and fr["quantiles"] == "sketch"
    exact = sorted((i + 1) * 60_000 for i in range(48))
    assert fr["p50_ms"] == pytest.approx((exact[23] + exact[24]) / 2, rel=0.01)
    assert fr["p90_ms"] == pytest.approx(exact[42] + 0.3 * (exact[43] - exact[42]), rel=0.01)


def test_any_order_and_batching_stores_the_same_values(r: redis.Redis, key_prefix: str) -> None:
    # not only what readers count: every stored value (a window's zero counter present or not, a record's
    # fields and their order, the time a record is kept by) is a function of the set of events
    events = _events(400, seed=1)
    _apply(r, key_prefix, events, batch=50)
    reference = stored_values(r, key_prefix)
    assert reference["pend"] and reference["pend:t"]
    for seed, batch in ((2, 1), (3, 17), (4, 400)):
        prefix = f"test:{uuid.uuid4().hex[:12]}:"
        shuffled = list(events)
        random.Random(seed).shuffle(shuffled)
        try:
            _apply(r, prefix, shuffled, batch=batch)
            _apply(r, prefix, shuffled[: len(shuffled) // 3], batch=batch)  # replayed
            got = stored_values(r, prefix)
            assert sorted(got) == sorted(reference)
            assert [k for k in reference if got[k] != reference[k]] == []
        finally:
            for key in r.scan_iter(match=prefix + "*"):
                r.delete(key)
