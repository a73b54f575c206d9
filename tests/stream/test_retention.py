"""Event-time retention (stream/retention.py): every bounded key of the flow stays bounded over a long span of
event time, what remains is a function of the input alone, and what the metrics read within retention is the
same as without retention."""

from __future__ import annotations

import orjson
import redis
from bytewax.testing import TestingSource, run_main
from pulse_testkit import stored_values

from connectors.records import RawRecord
from stream.flow import build_flow
from stream.keys import GRANULARITIES, Keys
from stream.metrics import totals
from stream.replies import ReplyMatcher, mention_event, reply_event
from stream.retention import ROLLUP_RETENTION, TIMELINE_FLOW_RETENTION, Retention
from stream.settings import Settings
from stream.sinks import RedisSink, RedisWriter

T0 = 1_704_067_200_000  # 2024-01-01
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
SPAN_DAYS = 40
RETENTION_S = 3600.0  # minutes 1 h, hours 30 h, days 365 h (~15 days)


def _rows() -> list[dict]:
    """Two brands x two channels, a mention every 20 minutes each for 40 days, a third of them answered."""
    rows = []
    i = 0
    for t in range(T0, T0 + SPAN_DAYS * DAY, 20 * MIN):
        for brand in ("acme", "globex"):
            for channel in ("twitter", "forum"):
                i += 1
                rows.append({"id": f"{channel}:{i}", "channel": channel, "brand": brand, "author": f"u{i % 301}",
                             "text": "my router keeps dropping, any fix?" if i % 2 else "love the app",
                             "ts": t + i % 7 * 1000})
                if i % 3 == 0:
                    rows.append({"id": f"{channel}:r{i}", "channel": channel, "brand": brand,
                                 "author": f"{brand}_care", "text": "we're on it", "from_brand": True,
                                 "in_reply_to": f"{channel}:{i}", "ts": t + (i % 40 + 1) * MIN})
    rows.sort(key=lambda d: d["ts"])
    return rows


ROWS = _rows()


def _run(redis_url: str, prefix: str, *, retention: bool, batch: int = 500) -> Settings:
    settings = Settings(prefix=prefix, crm=False, minute_retention_seconds=RETENTION_S if retention else 0.0,
                        features_retention_seconds=DAY / 1000, timeline_retention_seconds=5 * DAY / 1000,
                        alert_retention_seconds=10 * DAY / 1000, flush_seconds=0.0)
    records = [RawRecord("file:ret", n, orjson.dumps(row), "jsonl") for n, row in enumerate(ROWS)]
    run_main(build_flow(TestingSource(records, batch_size=batch), settings,
                        RedisSink(redis_url, Keys(prefix), settings), redis_url=redis_url))
    return settings


#: Run bookkeeping and the models (their prediction counters are flushed on a timer; their signed state
#: carries a nonce) are left out of the comparisons.
_SKIP = ("runs", "pend", "seen", "model", "flow")


def test_windows_and_flow_keys_stay_bounded_over_a_long_event_time_span(
        redis_url: str, key_prefix: str, r: redis.Redis) -> None:
    _run(redis_url, key_prefix, retention=True)
    k = Keys(key_prefix)
    newest = max(row["ts"] for row in ROWS if not row.get("from_brand"))
    assert abs(int(r.hget(k.watermarks, "*")) - newest) < HOUR
    for brand in ("acme", "globex"):
        for channel in ("twitter", "forum"):
            wm = int(r.hget(k.watermarks, f"{brand}|{channel}"))
            for gran, length in GRANULARITIES.items():
                keep_ms = int(RETENTION_S * 1000) * ROLLUP_RETENTION[gran]
                starts = [int(s) for _, s in r.zrange(k.windows_index(brand, channel, gran), 0, -1, withscores=True)]
                assert starts, (brand, channel, gran)
                # nothing older than the retention is left, and the index is as long as the retention allows
                assert min(starts) + length > wm - keep_ms
                assert len(starts) <= keep_ms // length + 2
            # every window key has its index entry: no orphan outlives its window
            for gran in GRANULARITIES:
                indexed = {b.decode() for b in r.zrange(k.windows_index(brand, channel, gran), 0, -1)}
                on_disk = {key.decode().rsplit(":", 1)[1]
                           for key in r.scan_iter(match=k.window(brand, channel, "*", gran), count=5000)}
                assert on_disk <= indexed, gran
    hours = r.zrange(k.features_hours, 0, -1, withscores=True)
    assert 0 < len(hours) <= 26
    assert sum(1 for _ in r.scan_iter(match=k.features("*"), count=5000)) == len(hours) + 1  # + the index
    # a timeline keeps 5 days behind its customer's newest mention and nothing 2 x 5 days behind the flow's
    timelines = r.zrange(k.sentiment_timelines_at, 0, -1, withscores=True)
    assert timelines and min(t for _, t in timelines) >= int(r.hget(k.watermarks, "*")) - TIMELINE_FLOW_RETENTION * 5 * DAY
    for who, oldest in timelines:  # the index holds each timeline's oldest mention
        entries = r.zrange(k.sentiment_timeline(who.decode()), 0, -1, withscores=True)
        assert entries[0][1] == oldest and entries[-1][1] - oldest <= 5 * DAY
    assert sum(1 for _ in r.scan_iter(match=key_prefix + "snt:*", count=5000)) == len(timelines)


def test_what_remains_is_the_same_however_the_input_is_batched(redis_url: str, r: redis.Redis) -> None:
    a, b = "test:reta:", "test:retb:"
    try:
        _run(redis_url, a, retention=True, batch=500)
        _run(redis_url, b, retention=True, batch=37)
        dump_a, dump_b = stored_values(r, a, _SKIP), stored_values(r, b, _SKIP)
        assert dump_a and set(dump_a) == set(dump_b)
        assert dump_a == dump_b
    finally:
        for p in (a, b):
            for key in r.scan_iter(match=p + "*", count=5000):
                r.delete(key)


def test_metrics_within_retention_are_unchanged(redis_url: str, r: redis.Redis) -> None:
    kept, full = "test:retk:", "test:retf:"
    try:
        _run(redis_url, kept, retention=True)
        _run(redis_url, full, retention=False)
        assert totals(r, Keys(kept)) == totals(r, Keys(full))
        dump_kept, dump_full = stored_values(r, kept, _SKIP), stored_values(r, full, _SKIP)
        windows = [name for name in dump_kept if name.split(":", 1)[0] in ("m", "h", "d", "hll", "hllh", "hlld",
                                                                             "skh", "skd")]
        assert len(windows) > 100
        for name in windows:  # every window within retention holds what it holds without retention
            assert dump_kept[name] == dump_full[name], name
        assert len(dump_full) > 3 * len(dump_kept)  # and without retention the flow's keys grow with the span
    finally:
        for p in (kept, full):
            for key in r.scan_iter(match=p + "*", count=5000):
                r.delete(key)


def test_reply_matching_never_writes_a_retired_window(r: redis.Redis, key_prefix: str) -> None:
    k = Keys(key_prefix)
    old = T0
    Retention(r, k, minute_retention_s=3600).apply({("acme", "twitter"): T0 + 30 * DAY})
    matcher = ReplyMatcher(r, k, sla_ms=HOUR, minute_retention_s=3600)
    matcher.apply([mention_event("t:1", "acme", "twitter", old, True, "bob", "negative")])
    matcher.apply([reply_event("t:1", old + 5 * MIN, "acme", "ann")])
    for gran in GRANULARITIES:
        assert r.zcard(k.windows_index("acme", "twitter", gran)) == 0
        assert not r.exists(k.window("acme", "twitter", Keys.bucket_id(gran, old), gran))


def _timeline_items(seed: int = 3) -> tuple[list[tuple], list[tuple]]:
    """Sink items of a small sparse stream: thirty customers' mentions on three series over 40 days (bursts of a
    customer days apart), and each series' watermark after each of its mentions, as the windows report them."""
    import random
    rng = random.Random(seed)
    mentions, marks = [], []
    newest: dict[str, int] = {}
    for i in range(120):
        brand, channel = rng.choice([("acme", "x"), ("acme", "forum"), ("globex", "x")])
        ts = T0 + rng.randrange(40 * DAY)
        who = f"x:u{rng.randrange(30)}"
        mentions.append(("audience", brand, channel, True, ts, f"x:{i}", None, round(rng.uniform(-1, 1), 4), who))
        newest[f"{brand}|{channel}"] = max(newest.get(f"{brand}|{channel}", 0), ts)
        marks.append(("watermark", brand, channel, newest[f"{brand}|{channel}"]))
    return mentions, marks


def _timelines(r: redis.Redis, prefix: str) -> dict[str, object]:
    return {key.decode()[len(prefix):]: r.zrange(key, 0, -1, withscores=True)
            for key in sorted(r.scan_iter(match=prefix + "snt*", count=1000))}


def test_sentiment_timelines_are_the_same_whatever_the_order_of_mentions_and_watermarks(
        redis_url: str, r: redis.Redis) -> None:
    """The sink sees a mention and the watermarks of the windows step in an order that follows the wall clock
    (two branches of the flow, flushes on a timer): a timeline must not depend on it. A 20k sparse replay
    once ended with a customer's older mention kept in one run and dropped in the other (its whole timeline
    retired by the watermark before, or after, the customer's next mention arrived)."""
    mentions, marks = _timeline_items()
    tl_days = 5
    orders = {
        "marks_last": [mentions, marks],  # every mention before any watermark
        "marks_first": [marks, mentions],  # the final watermarks before any mention
        "one_by_one": [[m, w] for m, w in zip(mentions, marks, strict=True)],  # each mention, then its watermark
        "marks_ahead": [[*mentions[i:i + 7], *marks[i + 7:i + 14]] for i in range(0, len(mentions), 7)],
        "batches_of_3": [(mentions + marks)[i:i + 3] for i in range(0, 2 * len(mentions), 3)],
    }
    prefixes = {name: f"test:rett{n}:" for n, name in enumerate(orders)}
    try:
        found = {}
        for name, batches in orders.items():
            k = Keys(prefixes[name])
            writer = RedisWriter(r, k, retention=Retention(r, k, timeline_retention_s=tl_days * DAY / 1000))
            for batch in batches:
                writer.write(list(batch))
            found[name] = _timelines(r, prefixes[name])
        for name, got in found.items():  # the same whatever the order
            assert got == found["marks_last"], name
        # the rule: a mention stays while within the retention of its customer's newest mention and within
        # twice that of the flow's watermark (the newest of all)
        wm = max(m[4] for m in mentions)
        by_who: dict[str, list[tuple]] = {}
        for m in mentions:
            by_who.setdefault(m[8], []).append(m)
        expected: dict[str, object] = {}
        for who, mine in sorted(by_who.items()):
            top = max(m[4] for m in mine)
            kept = sorted(((f"{m[5]}|{m[7]:.4f}".encode(), float(m[4])) for m in mine
                           if m[4] >= top - tl_days * DAY and m[4] >= wm - 2 * tl_days * DAY), key=lambda e: (e[1], e[0]))
            if kept:
                expected[f"snt:{who}"] = kept
        expected["snti"] = sorted(((who.encode(), v[0][1]) for who, v in
                                   ((name[4:], v) for name, v in expected.items())), key=lambda e: (e[1], e[0]))
        assert 2 <= len(expected) - 1 < len(by_who)  # some timelines kept, some retired whole
        assert any(len(v) > 1 for name, v in expected.items() if name != "snti")
        for name, got in found.items():
            assert got == expected, name
    finally:
        for p in prefixes.values():
            for key in r.scan_iter(match=p + "*", count=5000):
                r.delete(key)
