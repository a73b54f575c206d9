"""De-duplication by record identity, across runs: the first run to accept an id owns it.

Redis keeps, per event day, which run accepted each record id and at which position of its input
(``{prefix}seen:{YYYYmmdd}``: ``id -> run/offset``). A record is fresh when its id is new, or when the
owner is this very record (the same run replaying the same position: a replay, or a resume after a
crash); anything else is a duplicate: a second copy in the same input, a redelivery after a restart
(at-least-once sources), or a record another run already counted. Because the decision is made in one
ordered, stateless batch step (no keyed state), the flow keeps its input order, and it depends on the
input alone, never on timing.

Memory is bounded in event time: days more than ``horizon_ms`` before the newest day seen are forgotten
(a copy arriving later than that is counted again). Records without an event time (labels) are filed
under the newest day.

>>> import os, redis as r_
>>> from stream.keys import Keys
>>> from stream.redisconn import ensure_redis_url
>>> client = r_.Redis.from_url(ensure_redis_url(os.environ.get("REDIS_URL")))
>>> d = Deduplicator(client, Keys("doctest:dedupe:"), run_id="r1", horizon_ms=86_400_000)
>>> d.check([("t:1", 1704103200000, "0"), ("t:2", 1704103200000, "1"), ("t:1", 1704103200000, "2")])
[False, False, True]
>>> d.check([("t:1", 1704103200000, "0")])                     # the same record again: a replay
[False]
>>> Deduplicator(client, Keys("doctest:dedupe:"), run_id="r2").check([("t:2", 1704103200000, "7")])
[True]
>>> for k in client.scan_iter("doctest:dedupe:*"):
...     _ = client.delete(k)
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import redis

from stream.keys import Keys

__all__ = ["Deduplicator"]

# ARGV[1] prefix, ARGV[2] horizon ms, ARGV[3] run id, ARGV[4] JSON [[id, ts_ms or null, offset], ...];
# returns one 0/1 (1 = duplicate) per record.
_CHECK = r"""
local P, HORIZON, RUN = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local DAYS = P .. 'seen:days'
local DAY = 86400000
local records = cjson.decode(ARGV[4])
local newest = redis.call('ZREVRANGE', DAYS, 0, 0, 'WITHSCORES')
local newest_start = newest[2] and tonumber(newest[2]) or nil
local out = {}
local function civil(ms)  -- YYYYmmdd of a UTC epoch ms (Howard Hinnant's days -> civil)
  local z = math.floor(ms / DAY) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return string.format('%04d%02d%02d', y, m, d)
end
for i, rec in ipairs(records) do
  local id, ts, owner = rec[1], rec[2], RUN .. '/' .. rec[3]
  local start
  if type(ts) == 'number' then start = ts - ts % DAY else start = newest_start or 0 end
  local key = P .. 'seen:' .. civil(start)
  if redis.call('HSETNX', key, id, owner) == 1 then
    out[i] = 0
    if redis.call('ZADD', DAYS, 'NX', string.format('%d', start), civil(start)) == 1 then
      if newest_start == nil or start > newest_start then newest_start = start end
    end
  elseif redis.call('HGET', key, id) == owner then
    out[i] = 0
  else
    out[i] = 1
  end
end
if newest_start ~= nil then
  local old = redis.call('ZRANGEBYSCORE', DAYS, '-inf', '(' .. string.format('%d', newest_start - HORIZON))
  for _, day in ipairs(old) do redis.call('DEL', P .. 'seen:' .. day) end
  if #old > 0 then redis.call('ZREM', DAYS, unpack(old)) end
end
return out
"""


class Deduplicator:
    """Decides, for a batch of records ``(id, event ms or None, offset)``, which are duplicates."""

    def __init__(self, client: redis.Redis, keys: Keys, run_id: str, horizon_ms: int = 7 * 86_400_000) -> None:
        self.client = client
        self.keys = keys
        self.run_id = run_id
        self.horizon_ms = horizon_ms
        self._script = client.register_script(_CHECK)

    def check(self, records: Sequence[tuple[str, int | None, str]]) -> list[bool]:
        """One flag per record, True for a duplicate (one script call for the whole batch)."""
        if not records:
            return []
        flags = self._script(args=[self.keys.prefix, self.horizon_ms, self.run_id,
                                   orjson.dumps([list(r) for r in records])])
        return [bool(f) for f in flags]  # type: ignore[union-attr]
