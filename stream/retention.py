"""Event-time retention of the flow's keys: what is older than the watermark minus its retention is deleted.

Nothing the flow writes expires by the wall clock: a key's lifetime is a function of the input alone. The
windows step reports each brand x channel's confirmed newest event time (its watermark, ``("watermark", brand,
channel, ms)``); the sink hands these to :class:`Retention`, which, in one script per series and one for the
whole flow, deletes:

- per brand x channel, the windows (minute, hour, day hashes), their author HyperLogLogs, the hour/day
  response-time sketches and active-customer HyperLogLogs, and their index entries, once the window ended
  more than its retention (``minute_retention_seconds``; hours 30x, days 365x) before the series' watermark;
- against the flow's watermark (the newest of all series): the per-hour model inputs of feedback
  (``features_retention_seconds``), the calls feed's minutes (``calls_retention_seconds``), the current state
  of alerts (``alert_retention_seconds`` after their window) and the mentions of customers' sentiment
  timelines more than twice ``timeline_retention_seconds`` behind it (:data:`TIMELINE_FLOW_RETENTION`).

A sentiment timeline keeps a mention while it is within ``timeline_retention_seconds`` of the customer's newest
mention and within twice that of the flow's watermark (so a customer active within the retention keeps the whole
retention behind their newest mention). Both rules are per mention, so what remains does not depend on when a
mention arrives relative to the watermarks: :meth:`Retention.add_to_timelines` leaves out a mention already
behind the flow's watermark and trims against the customer's newest mention kept, and :data:`_FLOW` retires, by
an index of each timeline's oldest mention, every mention that fell behind (a whole timeline once its newest
did). A rule on whole timelines ("gone once the newest mention is old") is not enough: a timeline retired
before a customer's next mention arrives, or kept because it arrived first, would end different.

Watermarks only move forward (kept in ``{prefix}wm``: ``brand|channel`` and ``*`` for the flow). Writers that
may touch an old window (reply matching) check the series' watermark first and leave a retired window alone,
so once a window is retired it stays gone: the keys that remain after a run are those within retention of
the final watermarks, whatever the batching. Keys that are bounded by a size cap instead (streams with
MAXLEN, capped sorted sets) are trimmed where they are written.

>>> import os, redis as r_
>>> from stream.redisconn import ensure_redis_url
>>> client = r_.Redis.from_url(ensure_redis_url(os.environ.get("REDIS_URL")))
>>> keys = Keys("doctest:retention:")
>>> day = 86_400_000
>>> for d in (0, 10):
...     _ = client.hset(keys.window("acme", "x", Keys.bucket_id("m", d * day), "m"), "mentions@0", 1)
...     _ = client.zadd(keys.windows_index("acme", "x", "m"), {Keys.bucket_id("m", d * day): d * day})
>>> ret = Retention(client, keys, minute_retention_s=7 * 86400)
>>> ret.apply({("acme", "x"): 10 * day})
>>> client.zrange(keys.windows_index("acme", "x", "m"), 0, -1)
[b'197001110000']
>>> client.exists(keys.window("acme", "x", "197001010000", "m"))
0
>>> for k in client.scan_iter("doctest:retention:*"):
...     _ = client.delete(k)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
import redis

from stream.keys import Keys
from stream.settings import Settings

__all__ = ["ROLLUP_RETENTION", "TIMELINE_FLOW_RETENTION", "Retention", "retention_of"]

log = logging.getLogger(__name__)

#: Retention of hour and day windows relative to minute windows.
ROLLUP_RETENTION = {"m": 1, "h": 30, "d": 365}

#: How far behind the flow's watermark a timeline mention is kept, relative to the timeline retention.
TIMELINE_FLOW_RETENTION = 2

# ARGV: prefix, brand, channel, watermark (ms), minute retention (ms). Returns the number of windows retired.
_SERIES = r"""
local P, brand, c, wm, RET = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local WM, field = P .. 'wm', brand .. '|' .. c
local old = tonumber(redis.call('HGET', WM, field) or '-1')
if wm <= old then return 0 end
redis.call('HSET', WM, field, string.format('%d', wm))
local top = tonumber(redis.call('HGET', WM, '*') or '-1')
if wm > top then redis.call('HSET', WM, '*', string.format('%d', wm)) end
local LEN = {m = 60000, h = 3600000, d = 86400000}
local TIMES = {m = 1, h = 30, d = 365}
local HLL = {m = 'hll', h = 'hllh', d = 'hlld'}
local tag = ':{' .. brand .. '}:' .. c
local n = 0
for _, g in ipairs({'m', 'h', 'd'}) do
  local idx = P .. g .. 'i' .. tag
  local cut = string.format('%d', wm - RET * TIMES[g] - LEN[g])
  local gone = redis.call('ZRANGEBYSCORE', idx, '-inf', cut)
  for _, b in ipairs(gone) do
    redis.call('DEL', P .. g .. tag .. ':' .. b, P .. HLL[g] .. tag .. ':' .. b)
    if g ~= 'm' then redis.call('DEL', P .. 'sk' .. g .. tag .. ':' .. b, P .. 'hllk' .. g .. tag .. ':' .. b) end
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', idx, '-inf', cut) end
  n = n + #gone
end
return n
"""

# ARGV: prefix, features retention, calls retention, alert retention, timeline mentions' retention behind the
# flow's watermark (all ms; 0 keeps).
# Uses the flow's watermark (field '*' of {prefix}wm). Returns the number of entries retired.
_FLOW = r"""
local P = ARGV[1]
local wm = tonumber(redis.call('HGET', P .. 'wm', '*') or '-1')
if wm < 0 then return 0 end
local FEAT, CALLS, ALERTS, TL = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n = 0
local function cut(ret) return string.format('%d', wm - ret) end
if FEAT > 0 then  -- an hour's hash goes once the hour ended FEAT before the watermark
  local hours = redis.call('ZRANGEBYSCORE', P .. 'x:hours', '-inf', cut(FEAT + 3600000))
  for _, h in ipairs(hours) do redis.call('DEL', P .. 'x:' .. h) end
  if #hours > 0 then redis.call('ZREMRANGEBYSCORE', P .. 'x:hours', '-inf', cut(FEAT + 3600000)) end
  n = n + #hours
end
local function indexed_hash(hash, idx, ret)
  if ret <= 0 then return end
  local gone = redis.call('ZRANGEBYSCORE', idx, '-inf', '(' .. cut(ret))
  for i = 1, #gone, 5000 do
    redis.call('HDEL', hash, unpack(gone, i, math.min(i + 4999, #gone)))
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', idx, '-inf', '(' .. cut(ret)) end
  n = n + #gone
end
indexed_hash(P .. 'calls', P .. 'calls:t', CALLS)
indexed_hash(P .. 'alerts:current', P .. 'alerts:current:t', ALERTS)
if TL > 0 then  -- timeline mentions older than TL go; snti (customer -> oldest mention) finds the timelines
  local behind = redis.call('ZRANGEBYSCORE', P .. 'snti', '-inf', '(' .. cut(TL))
  for _, who in ipairs(behind) do
    local key = P .. 'snt:' .. who
    n = n + redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. cut(TL))
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if #first > 0 then redis.call('ZADD', P .. 'snti', first[2], who) else redis.call('ZREM', P .. 'snti', who) end
  end
end
return n
"""


# ARGV: prefix, retention behind the customer's newest mention, retention behind the flow's watermark (ms; 0
# keeps), JSON [[customer, [ts, member, ts, member, ...]], ...]. Adds the mentions not already behind the flow's
# watermark, trims each timeline behind its newest mention and indexes its oldest (snti). Returns mentions added.
_TIMELINES = r"""
local P, KEEP, FLOW = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local wm = tonumber(redis.call('HGET', P .. 'wm', '*') or '-1')
local floor = nil
if FLOW > 0 and wm >= 0 then floor = wm - FLOW end
local n = 0
for _, entry in ipairs(cjson.decode(ARGV[4])) do
  local who, items, add = entry[1], entry[2], {}
  for i = 1, #items, 2 do
    if floor == nil or items[i] >= floor then
      add[#add + 1] = string.format('%d', items[i])
      add[#add + 1] = items[i + 1]
    end
  end
  if #add > 0 then
    local key = P .. 'snt:' .. who
    redis.call('ZADD', key, unpack(add))
    n = n + #add / 2
    if KEEP > 0 then
      local newest = redis.call('ZREVRANGE', key, 0, 0, 'WITHSCORES')
      redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%d', tonumber(newest[2]) - KEEP))
    end
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    redis.call('ZADD', P .. 'snti', first[2], who)
  end
end
return n
"""


def retention_of(settings: Settings) -> dict[str, int]:
    """The retentions (ms) :class:`Retention` takes, from the flow's settings.

    >>> retention_of(Settings())["minute_retention_ms"]
    604800000
    """
    return {
        "minute_retention_ms": int(settings.minute_retention_seconds * 1000),
        "features_retention_ms": int(settings.features_retention_seconds * 1000),
        "calls_retention_ms": int(settings.calls_retention_seconds * 1000),
        "alert_retention_ms": int(settings.alert_retention_seconds * 1000),
        "timeline_retention_ms": int(settings.timeline_retention_seconds * 1000),
    }


class Retention:
    """Deletes what is past its event-time retention, given the series' watermarks.

    ``minute_retention_s`` 0 keeps windows forever (and so do the other retentions at 0).
    """

    def __init__(self, client: redis.Redis, keys: Keys, *, minute_retention_s: float = 7 * 86400,
                 features_retention_s: float = 2 * 86400, calls_retention_s: float = 210 * 86400,
                 alert_retention_s: float = 90 * 86400, timeline_retention_s: float = 60 * 86400) -> None:
        self.keys = keys
        self.minute_ms = int(minute_retention_s * 1000)
        #: How much of a customer's sentiment timeline is kept behind their newest mention (ms; 0: all).
        self.timeline_ms = int(timeline_retention_s * 1000)
        #: How far behind the flow's watermark a timeline mention is kept (ms; 0: all).
        self.timeline_flow_ms = self.timeline_ms * TIMELINE_FLOW_RETENTION
        self.flow_args: list[Any] = [keys.prefix, int(features_retention_s * 1000), int(calls_retention_s * 1000),
                                     int(alert_retention_s * 1000), self.timeline_flow_ms]
        self._series = client.register_script(_SERIES)
        self._flow = client.register_script(_FLOW)
        self._timelines = client.register_script(_TIMELINES)
        self.client = client

    @classmethod
    def from_settings(cls, client: redis.Redis, keys: Keys, settings: Settings) -> Retention:
        return cls(client, keys, minute_retention_s=settings.minute_retention_seconds,
                   features_retention_s=settings.features_retention_seconds,
                   calls_retention_s=settings.calls_retention_seconds,
                   alert_retention_s=settings.alert_retention_seconds,
                   timeline_retention_s=settings.timeline_retention_seconds)

    def window_cutoff(self, gran: str) -> int:
        """How far (ms) behind its series' watermark a window of ``gran`` may start and still be kept."""
        return self.minute_ms * ROLLUP_RETENTION[gran]

    def apply(self, watermarks: Mapping[tuple[str, str], int], client: Any = None) -> None:
        """Move the watermarks of the given series forward and retire what fell behind (on ``client``, e.g. a
        pipeline, else at once)."""
        if not watermarks:
            return
        target = client if client is not None else self.client.pipeline(transaction=False)
        for (brand, channel), wm in sorted(watermarks.items()):
            self._series(args=[self.keys.prefix, brand, channel, int(wm),
                               self.minute_ms if self.minute_ms > 0 else 10**15], client=target)
        self._flow(args=self.flow_args, client=target)
        if client is None:
            target.execute()

    def add_to_timelines(self, timelines: Mapping[str, Mapping[str, int]], client: Any = None) -> None:
        """Add mentions (``customer -> {"mention id|score": event ms}``) to the customers' sentiment timelines,
        under the same per-mention retention that :meth:`apply` enforces (on ``client``, e.g. a pipeline, else
        at once): whatever the order of mentions and watermarks, the timelines end the same."""
        if not timelines:
            return
        entries = [[who, [part for member, ts in sorted(by_member.items()) for part in (int(ts), member)]]
                   for who, by_member in sorted(timelines.items())]
        self._timelines(args=[self.keys.prefix, self.timeline_ms, self.timeline_flow_ms, orjson.dumps(entries)],
                        client=client if client is not None else self.client)
