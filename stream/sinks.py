"""The flow's Redis sink: idempotent, pipelined writes of everything the flow produces.

Every write is safe to repeat (replays, resumes after a crash) and adds up across runs: window counters
are absolute ``HSET``s of this run's own fields (``name@run``; readers sum the runs), authors go into
HyperLogLogs, reply matching applies each batch's mention, reply and SLA events in one script whose
effects depend on the set of events only (:mod:`stream.replies`), and stream appends (dead letters,
alerts) go through a Lua script that appends only the first time a record key is seen; the marks of what
was seen are capped like the streams they guard.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

import orjson
import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.redis_streams import XADD_NEXT_LUA
from stream import health
from stream.keys import GRANULARITIES, Keys
from stream.redisconn import with_retry
from stream.replies import ReplyMatcher
from stream.retention import Retention
from stream.schema import Alert, CallVolume, DeadLetter, SchemaError, parse_ts
from stream.settings import Settings

__all__ = ["RedisSink", "RedisWriter"]

log = logging.getLogger(__name__)

# KEYS[1] stream, KEYS[2] seen marks (a sorted set, oldest first); ARGV[1] record key, ARGV[2] maxlen (of
# both), ARGV[3..] field/value pairs.
_APPEND_ONCE = XADD_NEXT_LUA + """
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
xadd_next(KEYS[1], ARGV[2], fields)
-- the marks in the order appended (the newest mark's score + 1), trimmed oldest first
local newest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
local score = 1
if #newest > 0 then score = tonumber(newest[2]) + 1 end
redis.call('ZADD', KEYS[2], score, ARGV[1])
if redis.call('ZCARD', KEYS[2]) > tonumber(ARGV[2]) + 1000 then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -tonumber(ARGV[2]) - 1)
end
-- KEYS[3], if given, is a pub/sub channel announcing the entry (its last field's value): only when appended
if KEYS[3] then redis.call('PUBLISH', KEYS[3], ARGV[#ARGV]) end
return 1
"""

# ARGV[1]: a JSON list of commands, each a list [name, key, args...], run in order. Window and audience
# writes touch many small keys: one script call per batch instead of one round-trip command each (the
# client's packing and parsing of thousands of tiny commands cost more than Redis running them).
_COMMANDS = """
local cmds = cjson.decode(ARGV[1])
for i = 1, #cmds do redis.call(unpack(cmds[i])) end
return #cmds
"""

#: Customers kept in the churn risk sorted set and its reasons hash; the lowest risks go first beyond it.
CHURN_KEEP = 200_000

#: How many mention ids the ``late`` set keeps (the newest by event time).
LATE_KEEP = 1_000_000

#: Window bucket ids (``YYYYmmddHHMM``...) remembered by a writer; all are forgotten beyond this.
_BUCKETS_KEPT = 100_000


class RedisWriter:
    """Turns flow outputs into Redis commands on a pipeline; one instance per sink partition.

    >>> import os, redis as r_
    >>> from stream.redisconn import ensure_redis_url
    >>> client = r_.Redis.from_url(ensure_redis_url(os.environ.get("REDIS_URL")))
    >>> w = RedisWriter(client, Keys("doctest:writer:"))
    >>> w.write([("stats", "file:x", {"offered": 2, "accepted": 2, "dead_letters": 0, "duplicates": 0})])
    >>> client.hget("doctest:writer:stats", "file:x@0|offered")
    b'2'
    >>> _ = client.delete("doctest:writer:stats", "doctest:writer:stats:sources")
    """

    def __init__(self, client: redis.Redis, keys: Keys, minute_retention_s: float = 7 * 86400,
                 latest_keep: int = 200, dlq_maxlen: int = 1_000_000,
                 features_retention_s: float = 2 * 86400, response_retention_s: float = 90 * 86400,
                 run_id: str = "0", sla_s: float = 3600.0, pending_keep: int = 500_000,
                 author_retention_s: float = 400 * 86400, churn_keep: int = CHURN_KEEP,
                 retention: Retention | None = None) -> None:
        self.client = client
        self.churn_keep = max(1, churn_keep)
        self.keys = keys
        self.run_id = run_id
        # Event-time retention (stream/retention.py): nothing written here expires by the wall clock.
        self.retention = retention or Retention(client, keys, minute_retention_s=minute_retention_s,
                                                features_retention_s=features_retention_s)
        self.latest_keep = latest_keep
        self.dlq_maxlen = dlq_maxlen
        self._append_once = client.register_script(_APPEND_ONCE)
        self._commands = client.register_script(_COMMANDS)
        self._buckets: dict[tuple[str, int], str] = {}
        self._fields: dict[str, str] = {}
        self.replies = ReplyMatcher(client, keys, sla_ms=int(sla_s * 1000),
                                    response_retention_ms=int(response_retention_s * 1000),
                                    pending_keep=pending_keep, minute_retention_s=int(minute_retention_s),
                                    author_retention_ms=int(author_retention_s * 1000))

    def write(self, items: list[Any]) -> None:
        k = self.keys
        run = self.run_id
        pipe = self.client.pipeline(transaction=False)
        latest: list[tuple[bytes, int]] = []
        facts: list[list[Any]] = []
        checks: list[list[Any]] = []
        late: dict[str, int] = {}
        owners: dict[tuple[str, str], int] = {}
        # Many small writes to the same key in one batch become one command per key.
        zadds: dict[str, dict[str, float]] = defaultdict(dict)
        features: dict[int, dict[str, bytes]] = defaultdict(dict)
        churn_reasons: dict[str, bytes] = {}
        cmds: list[list[Any]] = []
        watermarks: dict[tuple[str, str], int] = {}
        timelines: dict[str, dict[str, int]] = defaultdict(dict)
        calls_at: dict[str, int] = {}
        for item in items:
            kind = item[0]
            if kind == "windows":  # the windows step's: all windows of a brand x channel at one flush
                _, brand, channel, windows = item
                for window in windows:
                    self._window(cmds, zadds, brand, channel, *window)
            elif kind == "fact":
                facts.append(item[1])
            elif kind == "sla":
                checks.append(["s", item[1]])
            elif kind == "audience":
                _, brand, channel, owned, ts_ms, mention_id, customer_id, score, who = item
                owners[brand, channel] = int(bool(owned))
                if customer_id:
                    for gran in ("h", "d"):
                        start = ts_ms - ts_ms % GRANULARITIES[gran]
                        hkey = k.customers_active(brand, channel, self._bucket_id(gran, start), gran)
                        cmds.append(["PFADD", hkey, customer_id])
                timelines[who][f"{mention_id}|{score:.4f}"] = ts_ms
            elif kind == "mention":
                _, body, ts_ms, mention_id, feats = item
                latest.append((body, ts_ms))
                features[ts_ms - ts_ms % 3_600_000][mention_id] = feats
            elif kind == "stats":
                _, source, counts = item
                pipe.hset(k.stats, mapping={f"{source}@{run}|{name}": n for name, n in counts.items()})
                pipe.sadd(f"{k.stats}:sources", source)
            elif kind == "dlq":
                self._dead_letter(pipe, item[1])
            elif kind == "late":
                _, brand, channel, mention_id, ts_ms = item
                late[mention_id] = ts_ms
                self._dead_letter(pipe, DeadLetter(
                    raw=orjson.dumps({"id": mention_id, "brand": brand, "channel": channel, "ts_ms": ts_ms}),
                    reason="late: its minute window was already final", source="flow", key=f"late:{mention_id}"))
            elif kind == "calls":
                calls: CallVolume = item[1]
                calls_ms = int(calls.ts.timestamp() * 1000)
                field = f"{calls.brand}|{calls.queue}|{k.minute_id(calls_ms)}"
                pipe.hset(k.calls, field, calls.calls)
                calls_at[field] = calls_ms
            elif kind == "alert":
                self.alert(pipe, item[1])
            elif kind == "watermark":
                _, brand, channel, ts_ms = item
                watermarks[brand, channel] = max(watermarks.get((brand, channel), 0), ts_ms)
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
                cmds.append(["ZADD", key, *[part for member, score in members.items() for part in (score, member)]])
        # per-mention retention, whatever the order of mentions and watermarks (stream/retention.py)
        self.retention.add_to_timelines(timelines, client=pipe)
        if calls_at:
            pipe.zadd(k.calls_at, calls_at)  # type: ignore[arg-type]
        if cmds:
            self._commands(args=[orjson.dumps(cmds)], client=pipe)
        for (brand, channel), owned in owners.items():
            pipe.hset(k.channel_owned(brand), channel, owned)
        for hour_ms, by_id in features.items():
            hour = self._bucket_id("h", hour_ms)
            pipe.hset(k.features(hour), mapping=by_id)  # type: ignore[arg-type]
            pipe.zadd(k.features_hours, {hour: hour_ms})
        if facts or checks:
            # mentions first, then replies, then SLA checks: the script's result does not depend on the
            # order, but a check that finds its mention already there does less work
            facts.sort(key=lambda e: e[0] not in ("m", "b"))
            self.replies.apply(facts + checks, client=pipe)
        if late:
            pipe.zadd(k.late, late)  # type: ignore[arg-type]
            pipe.zremrangebyrank(k.late, 0, -LATE_KEEP - 1)
        if latest:
            latest = latest[-self.latest_keep:]
            pipe.zadd(k.latest, {member: ts for member, ts in latest})
            pipe.zremrangebyrank(k.latest, 0, -self.latest_keep - 1)
        if watermarks:  # after this batch's writes: what fell behind its retention goes
            self.retention.apply(watermarks, client=pipe)
        if churn_reasons:
            pipe.hset(k.churn_reasons, mapping=churn_reasons)  # type: ignore[arg-type]
        if k.churn in zadds:
            pipe.zcard(k.churn)
        results = pipe.execute()
        if k.churn in zadds and int(results[-1]) > self.churn_keep:
            self._cap_churn(int(results[-1]) - self.churn_keep)

    def _window(self, cmds: list[list[Any]], zadds: dict[str, dict[str, float]], brand: str, channel: str,
                gran: str, start: int, counters: dict[str, int], new_authors: list[str], first: bool) -> None:
        """The commands of one window: this run's counters, its new authors, its index entry the first time."""
        k = self.keys
        bucket = self._bucket_id(gran, start)
        fields = self._fields
        mine = [part for name, n in counters.items() if n for part in (fields.get(name) or self._field(name), n)]
        if mine:
            cmds.append(["HSET", k.window(brand, channel, bucket, gran), *mine])
        if new_authors:
            cmds.append(["PFADD", k.authors(brand, channel, bucket, gran), *new_authors])
            if gran == "d":
                cmds.append(["PFADD", k.brand_authors(brand), *new_authors])
        if first:  # the index entry is what event-time retention retires the window by
            zadds[k.windows_index(brand, channel, gran)][bucket] = start
            if gran == "d":
                cmds.append(["SADD", k.brands, brand])
                cmds.append(["SADD", k.channels(brand), channel])

    def _field(self, name: str) -> str:
        """A window counter's field of this run (``name@run``), remembered."""
        found = self._fields[name] = f"{name}@{self.run_id}"
        return found

    def _bucket_id(self, gran: str, start_ms: int) -> str:
        """:meth:`Keys.bucket_id`, remembered: a window, its hour and its day are written again at every flush
        while they fill, and the audience of every mention names its hour and day."""
        key = (gran, start_ms)
        found = self._buckets.get(key)
        if found is None:
            if len(self._buckets) >= _BUCKETS_KEPT:
                self._buckets.clear()
            found = self._buckets[key] = self.keys.bucket_id(gran, start_ms)
        return found

    def _cap_churn(self, excess: int) -> None:
        """Forget the lowest churn risks (and their reasons) beyond ``churn_keep`` customers."""
        gone: list[tuple[bytes, float]] = self.client.zpopmin(self.keys.churn, excess)  # type: ignore[assignment]
        if gone:
            self.client.hdel(self.keys.churn_reasons, *[pair[0] for pair in gone])

    def _dead_letter(self, pipe: redis.client.Pipeline, dl: DeadLetter) -> None:
        """Append a dead letter once per record key and run (``key@run``), as the runs' counters count them: a replay
        or resume of the same input appends nothing twice, another input (an edited file at the same path, whose
        records reuse the same keys) appends its own."""
        raw = dl.raw if isinstance(dl.raw, bytes) else dl.raw.encode("utf-8", "surrogateescape")
        self._append_once(
            keys=[self.keys.dlq, self.keys.dlq_seen],
            args=[f"{dl.key}@{self.run_id}", self.dlq_maxlen, "raw", raw, "reason", dl.reason, "source", dl.source,
                  "key", dl.key, *(("origin", dl.origin) if dl.origin else ()), "run", self.run_id,
                  "ts_received", dl.ts_received],
            client=pipe,
        )

    def alert(self, pipe: redis.client.Pipeline, alert: Alert) -> None:
        """Append an alert's state once to the alerts stream (announced on ``alerts:live`` when appended, so a
        replay or retry announces nothing twice), keep it current by id."""
        body = alert.to_json()
        state = alert.message.split(":", 1)[0]
        # written_ms: when it was written (wall clock, for the incident timeline's time to acknowledge), the one field
        # that is not a function of the input; the entry's id is (it follows the stream's last entry)
        self._append_once(keys=[self.keys.alerts, self.keys.alerts_seen, self.keys.alerts_live],
                          args=[f"{alert.id}|{state}|{alert.observed}", 100_000, "written_ms",
                                str(int(time.time() * 1000)), "alert", body], client=pipe)
        pipe.hset(self.keys.alerts_current, alert.id, body)
        # retired by event time (its window), never before the newest state of an open incident
        try:
            at = int(parse_ts(alert.window_start, "window_start").timestamp() * 1000)
        except SchemaError:  # no readable window start (the flow always writes one): left out of the index
            pass
        else:
            pipe.zadd(self.keys.alerts_current_at, {alert.id: at}, gt=True)


class _RedisSinkPartition(StatelessSinkPartition[Any]):
    def __init__(self, writer: RedisWriter) -> None:
        self.writer = writer

    def write_batch(self, items: list[Any]) -> None:
        started = time.perf_counter()
        # every write of a batch is idempotent, so a batch that partly applied before Redis went away is re-sent whole
        with_retry(lambda: self.writer.write(items), "write_redis")
        health.observe_sink_batch(items, time.perf_counter() - started)  # a no-op unless --metrics-port

    def close(self) -> None:
        self.writer.client.close()


class RedisSink(DynamicSink[Any]):
    """Writes flow outputs to Redis; one connection per worker. ``settings`` gives the retentions, the SLA and
    the run id (``run_id``: this run's fields in every window; see :mod:`stream.runs`).

    Delivery: at-least-once from Bytewax, made exactly-once in effect by idempotent writes.
    """

    def __init__(self, url: str, keys: Keys, settings: Settings | None = None, run_id: str = "0") -> None:
        self.url = url
        self.keys = keys
        self.settings = settings or Settings(prefix=keys.prefix)
        self.run_id = run_id

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RedisSinkPartition:
        s = self.settings
        client = redis.Redis.from_url(self.url)
        return _RedisSinkPartition(RedisWriter(
            client, self.keys, s.minute_retention_seconds, s.latest_keep,
            features_retention_s=s.features_retention_seconds, response_retention_s=s.response_retention_seconds,
            run_id=self.run_id, sla_s=s.sla_seconds, pending_keep=s.pending_keep,
            author_retention_s=s.author_retention_seconds,
            retention=Retention.from_settings(client, self.keys, s)))
