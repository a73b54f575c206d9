"""The flow's Redis sink: idempotent, pipelined writes of everything the flow produces.

Every write is safe to repeat (replays, resumes after a crash): window counters are absolute ``HSET``s,
authors go into HyperLogLogs, response times into sorted sets keyed by mention id, and stream appends
(dead letters, alerts) go through a Lua script that appends only the first time a record key is seen.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

import orjson
import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from stream.keys import Keys
from stream.schema import Alert, CallVolume, DeadLetter

__all__ = ["RedisSink", "RedisWriter"]

log = logging.getLogger(__name__)

# KEYS[1] stream, KEYS[2] seen-set; ARGV[1] record key, ARGV[2] maxlen, ARGV[3..] field/value pairs.
_APPEND_ONCE = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
  local fields = {}
  for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
  return 1
end
return 0
"""

# KEYS[1] response times, KEYS[2] their mention times, KEYS[3] unanswered; ARGV[1] cutoff (event ms).
# Forgets the series' entries for mentions older than the cutoff, a bounded number per call.
_TRIM_RESPONSES = """
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, 2000)
if #old > 0 then
  redis.call('ZREM', KEYS[1], unpack(old))
  redis.call('ZREM', KEYS[2], unpack(old))
end
return #old + redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[1])
"""

#: How often (wall seconds) one brand x channel's response series is trimmed to its retention.
TRIM_EVERY_S = 60.0

#: Customers kept in the churn risk sorted set and its reasons hash; the lowest risks go first beyond it.
CHURN_KEEP = 200_000

#: Retention of hour and day roll-ups relative to minute windows.
_ROLLUP_RETENTION = {"m": 1, "h": 30, "d": 365}


class RedisWriter:
    """Turns flow outputs into Redis commands on a pipeline; one instance per sink partition.

    >>> import os, redis as r_
    >>> from stream.redisconn import ensure_redis_url
    >>> client = r_.Redis.from_url(ensure_redis_url(os.environ.get("REDIS_URL")))
    >>> w = RedisWriter(client, Keys("doctest:writer:"))
    >>> w.write([("stats", "file:x", {"offered": 2, "accepted": 2, "dead_letters": 0, "duplicates": 0})])
    >>> client.hget("doctest:writer:stats", "file:x|offered")
    b'2'
    >>> _ = client.delete("doctest:writer:stats", "doctest:writer:stats:sources")
    """

    def __init__(self, client: redis.Redis, keys: Keys, minute_retention_s: float = 7 * 86400,
                 latest_keep: int = 200, dlq_maxlen: int = 1_000_000,
                 features_retention_s: float = 2 * 86400, response_retention_s: float = 90 * 86400,
                 churn_keep: int = CHURN_KEEP) -> None:
        self.client = client
        self.churn_keep = max(1, churn_keep)
        self.response_retention_ms = int(response_retention_s * 1000)
        self._trimmed_at: dict[tuple[str, str], float] = {}
        self._trim = client.register_script(_TRIM_RESPONSES)
        self.features_ttl = max(1, int(features_retention_s))
        self.keys = keys
        self.retention = int(minute_retention_s)
        self.latest_keep = latest_keep
        self.dlq_maxlen = dlq_maxlen
        self._append_once = client.register_script(_APPEND_ONCE)

    def write(self, items: list[Any]) -> None:
        k = self.keys
        pipe = self.client.pipeline(transaction=False)
        latest: list[tuple[bytes, int]] = []
        # Many small writes to the same key in one batch become one command per key.
        zadds: dict[str, dict[str, float]] = defaultdict(dict)
        zrems: dict[str, list[str]] = defaultdict(list)
        features: dict[int, dict[str, bytes]] = defaultdict(dict)
        newest: dict[tuple[str, str], int] = {}  # per response series: the newest mention time in this batch
        churn_reasons: dict[str, bytes] = {}
        for item in items:
            kind = item[0]
            if kind == "window":
                _, brand, channel, gran, start, counters, new_authors, first = item
                bucket = k.bucket_id(gran, start)
                ttl = self.retention * _ROLLUP_RETENTION[gran]
                wkey = k.window(brand, channel, bucket, gran)
                hkey = k.authors(brand, channel, bucket, gran)
                pipe.hset(wkey, mapping=counters)
                if new_authors:
                    pipe.pfadd(hkey, *new_authors)
                    pipe.expire(hkey, ttl)
                    if gran == "d":
                        pipe.pfadd(k.brand_authors(brand), *new_authors)
                if first:  # a rewrite keeps the expiry and index entry set by the first write
                    pipe.expire(wkey, ttl)
                    zadds[k.windows_index(brand, channel, gran)][bucket] = start
                    if gran == "d":
                        pipe.sadd(k.brands, brand)
                        pipe.sadd(k.channels(brand), channel)
            elif kind == "response":
                _, brand, channel, mention_id, mention_ts, _reply_ts, response_ms, _ = item
                zadds[k.response_times(brand, channel)][mention_id] = response_ms
                zadds[k.response_times_at(brand, channel)][mention_id] = mention_ts
                newest[brand, channel] = max(newest.get((brand, channel), mention_ts), mention_ts)
            elif kind == "unanswered":
                _, brand, channel, mention_id, mention_ts, sign = item
                newest[brand, channel] = max(newest.get((brand, channel), mention_ts), mention_ts)
                ua = k.unanswered(brand, channel)
                if sign > 0:
                    zadds[ua][mention_id] = mention_ts
                    if mention_id in zrems.get(ua, ()):
                        zrems[ua].remove(mention_id)
                else:
                    zadds.get(ua, {}).pop(mention_id, None)
                    zrems[ua].append(mention_id)
            elif kind == "mention":
                _, body, ts_ms, mention_id, feats = item
                latest.append((body, ts_ms))
                features[ts_ms - ts_ms % 3_600_000][mention_id] = feats
            elif kind == "stats":
                _, source, counts = item
                pipe.hset(k.stats, mapping={f"{source}|{name}": n for name, n in counts.items()})
                pipe.sadd(f"{k.stats}:sources", source)
            elif kind == "dlq":
                self._dead_letter(pipe, item[1])
            elif kind == "late":
                _, brand, channel, mention_id, ts_ms = item
                pipe.sadd(k.late, mention_id)
                self._dead_letter(pipe, DeadLetter(
                    raw=orjson.dumps({"id": mention_id, "brand": brand, "channel": channel, "ts_ms": ts_ms}),
                    reason="late: its minute window was already final", source="flow", key=f"late:{mention_id}"))
            elif kind == "calls":
                calls: CallVolume = item[1]
                minute = k.minute_id(int(calls.ts.timestamp() * 1000))
                pipe.hset(k.calls, f"{calls.brand}|{calls.queue}|{minute}", calls.calls)
            elif kind == "alert":
                self.alert(pipe, item[1])
            elif kind == "churn":
                zadds[k.churn][item[1]] = item[2]
                if len(item) > 3:
                    churn_reasons[item[1]] = item[3]
            else:
                log.error("unknown sink item kind %r dropped into the dead-letter stream", kind)
                self._dead_letter(pipe, DeadLetter(raw=repr(item)[:10_000], reason=f"sink: unknown kind {kind!r}",
                                                   source="flow", key=f"sink:{hash(repr(item))}"))
        for key, members in zadds.items():
            if members:
                pipe.zadd(key, members)
        for key, gone in zrems.items():
            if gone:
                pipe.zrem(key, *gone)
        for hour_ms, by_id in features.items():
            hour = k.bucket_id("h", hour_ms)
            pipe.hset(k.features(hour), mapping=by_id)  # type: ignore[arg-type]
            pipe.expire(k.features(hour), self.features_ttl)
            pipe.zadd(k.features_hours, {hour: hour_ms})
            pipe.zremrangebyscore(k.features_hours, "-inf", hour_ms - self.features_ttl * 1000)
        if self.response_retention_ms > 0 and newest:
            self._trim_responses(pipe, newest)
        if latest:
            latest = latest[-self.latest_keep:]
            pipe.zadd(k.latest, {member: ts for member, ts in latest})
            pipe.zremrangebyrank(k.latest, 0, -self.latest_keep - 1)
        if churn_reasons:
            pipe.hset(k.churn_reasons, mapping=churn_reasons)  # type: ignore[arg-type]
        if k.churn in zadds:
            pipe.zcard(k.churn)
        results = pipe.execute()
        if k.churn in zadds and int(results[-1]) > self.churn_keep:
            self._cap_churn(int(results[-1]) - self.churn_keep)

    def _cap_churn(self, excess: int) -> None:
        """Forget the lowest churn risks (and their reasons) beyond ``churn_keep`` customers."""
        gone: list[tuple[bytes, float]] = self.client.zpopmin(self.keys.churn, excess)  # type: ignore[assignment]
        if gone:
            self.client.hdel(self.keys.churn_reasons, *[pair[0] for pair in gone])

    def _trim_responses(self, pipe: redis.client.Pipeline, newest: dict[tuple[str, str], int]) -> None:
        """Forget response times and unanswered queries of mentions older than the retention (event time,
        counted back from the newest mention of the series), once a minute per series at most."""
        now = time.monotonic()
        k = self.keys
        for (brand, channel), ts in newest.items():
            if now - self._trimmed_at.get((brand, channel), -TRIM_EVERY_S) < TRIM_EVERY_S:
                continue
            self._trimmed_at[brand, channel] = now
            self._trim(keys=[k.response_times(brand, channel), k.response_times_at(brand, channel),
                             k.unanswered(brand, channel)], args=[ts - self.response_retention_ms], client=pipe)

    def _dead_letter(self, pipe: redis.client.Pipeline, dl: DeadLetter) -> None:
        raw = dl.raw if isinstance(dl.raw, bytes) else dl.raw.encode("utf-8", "surrogateescape")
        self._append_once(
            keys=[self.keys.dlq, self.keys.dlq_seen],
            args=[dl.key, self.dlq_maxlen, "raw", raw, "reason", dl.reason, "source", dl.source,
                  "key", dl.key, "ts_received", dl.ts_received],
            client=pipe,
        )

    def alert(self, pipe: redis.client.Pipeline, alert: Alert) -> None:
        """Append an alert's state once to the alerts stream, keep it current by id, publish it live."""
        body = alert.to_json()
        state = alert.message.split(":", 1)[0]
        self._append_once(keys=[self.keys.alerts, self.keys.alerts_seen],
                          args=[f"{alert.id}|{state}|{alert.observed}", 100_000, "alert", body], client=pipe)
        pipe.hset(self.keys.alerts_current, alert.id, body)
        pipe.publish(self.keys.alerts_live, body)


class _RedisSinkPartition(StatelessSinkPartition[Any]):
    def __init__(self, writer: RedisWriter) -> None:
        self.writer = writer

    def write_batch(self, items: list[Any]) -> None:
        self.writer.write(items)

    def close(self) -> None:
        self.writer.client.close()


class RedisSink(DynamicSink[Any]):
    """Writes flow outputs to Redis; one connection per worker.

    Delivery: at-least-once from Bytewax, made exactly-once in effect by idempotent writes.
    """

    def __init__(self, url: str, keys: Keys, minute_retention_s: float = 7 * 86400, latest_keep: int = 200,
                 features_retention_s: float = 2 * 86400, response_retention_s: float = 90 * 86400) -> None:
        self.url = url
        self.keys = keys
        self.minute_retention_s = minute_retention_s
        self.latest_keep = latest_keep
        self.features_retention_s = features_retention_s
        self.response_retention_s = response_retention_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RedisSinkPartition:
        client = redis.Redis.from_url(self.url)
        return _RedisSinkPartition(RedisWriter(client, self.keys, self.minute_retention_s, self.latest_keep,
                                               features_retention_s=self.features_retention_s,
                                               response_retention_s=self.response_retention_s))
