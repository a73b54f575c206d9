"""Per-mention facts in Redis, across runs: each customer mention paired with the brand's first reply to it,
and each author's first mention of a brand.

The pairs a run can see are not always in that run: a question may be replayed from one file and its
answer from the next, or a live ``pulse run`` may restart between them. So the matching state lives in
Redis, not in the flow: one record per mention id in the hash ``{prefix}pend`` (the mention's brand,
channel, time and whether it is a query; or the earliest reply seen before its mention), and one Lua
script (:data:`MATCH`) applies a batch of events atomically:

- ``("m", id, brand, channel, ts_ms, minute_id, is_query, unattributed[, author, sentiment, in_reply_to])``:
  a customer mention (``unattributed``: counted under the brand ``unknown`` because its source could not
  tell, as for a Customer Support on Twitter question whose answer is in another file);
- ``("r", target_id, ts_ms, brand)``: a brand's reply to ``target_id``;
- ``("b", post_id, brand, ts_ms)``: a brand's own post (what replies to it is about that brand);
- ``("s", id)``: the query's SLA has passed (the flow's event-time watermark of its brand x channel went
  past ``ts + sla``, or its input ended): from now on it counts as unanswered unless a reply within the
  SLA is known.

Everything the script writes is a function of the set of events, never of their order or of which run sent
them (stored values too, not only what readers count: a record's fields in a fixed order, a counter that comes
back to 0 deleted, a record kept by its mention's own time): the first response is the *earliest* reply (a
later-arriving earlier reply retracts the one counted before), counters move by exact deltas recorded in the
mention's record (so an event seen twice changes nothing), and a query is unanswered exactly when its SLA
check happened and no reply came within the SLA. Per mention it maintains, in the mention's minute, hour and
day windows (ARCHITECTURE.md, "Metrics"): ``response_count`` and ``response_ms_sum`` of the replying brand,
``answered`` and ``unanswered`` of the mention's brand; the exact response time in ``rt``/``rtt`` (while
within ``response_retention``) and a DDSketch bucket (:mod:`stream.sketch`) in the hour and day sketches. An
unattributed mention is moved to its brand when the evidence is known, with the precedence the twcs reader
applies to a whole file (the brand that replied to it, else the brand whose post it replies to, else its
conversation's brand), through the ``@x`` correction fields of both brands' windows and the author into the
brand's HyperLogLogs, so the brand counts match those of a run that saw the whole conversation.

Two more facts ride along, for the audience insights (:mod:`stream.insights`): the first mention of each
author for a brand (``{prefix}af:{brand}``; its window counts ``new_authors``, and an earlier mention
arriving later moves the count: attraction rate), and each first response as ``mention, customer,
channel, agent`` scored by the reply time (``{prefix}rp:{brand}``: behaviour after interaction).

Memory stays bounded: at most ``pending_keep`` records are kept, the oldest by event time forgotten first
(a reply arriving after its mention was forgotten is not matched). It is a count, not an event-time
horizon, because a later run may go back in time: the odd rows of a file replayed first must still find
their answers in the even rows replayed next. Exact response times and unanswered ids of mentions older than ``response_retention`` behind their series'
newest mention (``{prefix}rnew``) are forgotten. The cut-off (``{prefix}rcut``) and the oldest mention
that got a response (``{prefix}rmin``) tell readers whether the exact values are complete for a range, or
the sketches must answer; both depend on the set of events only, never on when trimming ran.
"""

from __future__ import annotations

from typing import Any

import orjson
import redis

from stream.keys import Keys
from stream.sketch import _LOG_GAMMA

__all__ = ["MATCH", "UNKNOWN_BRAND", "ReplyMatcher", "brand_post_event", "mention_event", "reply_event", "sla_event"]

#: The brand a mention is counted under when its source cannot tell (see :mod:`connectors.files`, twcs).
UNKNOWN_BRAND = "unknown"

#: Retention of hour and day windows (and sketches) relative to minute windows (as the sink's).
ROLLUP_RETENTION = {"m": 1, "h": 30, "d": 365}

MATCH = r"""
local P, SLA, RET, KEEP, LG = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
-- window retention (ms) per granularity (stream/retention.py); 0: kept forever
local RETW = {m = tonumber(ARGV[6]) * 1000, h = tonumber(ARGV[6]) * 30000, d = tonumber(ARGV[6]) * 365000}
local UNKNOWN = ARGV[7]
local events = cjson.decode(ARGV[8])
local AUTHOR_RET = tonumber(ARGV[9])
local PEND, PEND_T, RCUT, HW = P .. 'pend', P .. 'pend:t', P .. 'rcut', P .. 'hw'
local LEN = {m = 60000, h = 3600000, d = 86400000}
local GRANS = {'m', 'h', 'd'}

local function int(x) return string.format('%d', x) end
local function bucket_id(g, mid) if g == 'm' then return mid elseif g == 'h' then return string.sub(mid, 1, 10) end
  return string.sub(mid, 1, 8) end
local function wkey(g, brand, c, mid) return P .. g .. ':{' .. brand .. '}:' .. c .. ':' .. bucket_id(g, mid) end

-- a window that event-time retention already retired (behind the series' watermark by its retention) is
-- never written again, so what remains after a run does not depend on when the retention ran
local wms = {}
local function retired(g, brand, c, t)
  if RETW[g] <= 0 then return false end
  local f = brand .. '|' .. c
  if wms[f] == nil then wms[f] = tonumber(redis.call('HGET', P .. 'wm', f) or '-1') end
  return wms[f] >= 0 and t - t % LEN[g] + LEN[g] <= wms[f] - RETW[g]
end

-- add deltas {field, n, ...} to a brand x channel's minute, hour and day windows of a mention;
-- a window made here gets the index entry the flow's sink gives the windows it makes
-- a counter that comes back to 0 is deleted, and a window left empty unindexed: what remains is the same
-- whether a count was made and retracted or never made (a check before or after its reply)
local function add(brand, c, t, mid, deltas)
  for _, g in ipairs(GRANS) do
    if not retired(g, brand, c, t) then
    local k = wkey(g, brand, c, mid)
    local zeroed = false
    for i = 1, #deltas, 2 do
      if redis.call('HINCRBY', k, deltas[i], int(deltas[i + 1])) == 0 then
        redis.call('HDEL', k, deltas[i])
        zeroed = true
      end
    end
    local index = P .. g .. 'i:{' .. brand .. '}:' .. c
    if zeroed and redis.call('EXISTS', k) == 0 then
      redis.call('ZREM', index, bucket_id(g, mid))
    elseif redis.call('ZADD', index, 'NX', int(t - t % LEN[g]), bucket_id(g, mid)) == 1 then
      if g == 'd' then
        redis.call('SADD', P .. 'brands', brand)
        redis.call('SADD', P .. 'channels:{' .. brand .. '}', c)
      end
    end
    end
  end
end

local function bucket(x) if x <= 0 then return 'z' end return int(math.ceil(math.log(x) / LG)) end
local function sketch(brand, c, t, mid, x, n)
  for _, g in ipairs({'h', 'd'}) do
    if not retired(g, brand, c, t) then
      local k = P .. 'sk' .. g .. ':{' .. brand .. '}:' .. c .. ':' .. bucket_id(g, mid)
      if redis.call('HINCRBY', k, bucket(x), n) == 0 then redis.call('HDEL', k, bucket(x)) end
    end
  end
end

local newest = tonumber(redis.call('GET', HW) or '0')
local touched = {}
-- per series (brand|channel): exact values of mentions older than its newest mention minus RET are
-- forgotten; rcut holds that cut-off and rmin the oldest mention that got a response, so readers know
-- whether the exact values are complete for a range (both depend on the set of events only)
local RNEW, RMIN = P .. 'rnew', P .. 'rmin'
local newest_of = {}
local function cutoff(brand, c)
  if RET <= 0 then return -1 end
  local f = brand .. '|' .. c
  if newest_of[f] == nil then newest_of[f] = tonumber(redis.call('HGET', RNEW, f) or '-1') end
  return newest_of[f] - RET
end
local function see(brand, c, t)
  if RET <= 0 then return end
  local f = brand .. '|' .. c
  cutoff(brand, c)
  if t > newest_of[f] then
    newest_of[f] = t
    redis.call('HSET', RNEW, f, int(t))
    redis.call('HSET', RCUT, f, int(t - RET))
  end
end
local function responded(brand, c, t)
  local f = brand .. '|' .. c
  local m = redis.call('HGET', RMIN, f)
  if m == false or t < tonumber(m) then redis.call('HSET', RMIN, f, int(t)) end
end

-- a brand's new authors: each author's first mention of the brand (event time) and the channel and minute it
-- came in; that window counts it in new_authors, and an earlier mention arriving later moves the count
local first_touched = {}
local function first_seen(brand, c, author, t, mid)
  if author == nil or author == '' then return end
  local af, aft = P .. 'af:{' .. brand .. '}', P .. 'aft:{' .. brand .. '}'
  local old = redis.call('HGET', af, author)
  local ot, oc, om
  if old then
    local i, j = string.find(old, '\t', 1, true)
    ot = tonumber(string.sub(old, 1, i - 1))
    local k = string.find(old, '\t', j + 1, true)
    oc, om = string.sub(old, j + 1, k - 1), string.sub(old, k + 1)
    if ot <= t then return end
    add(brand, oc, ot, om, {'new_authors', -1})
  end
  redis.call('HSET', af, author, int(t) .. '\t' .. c .. '\t' .. mid)
  redis.call('ZADD', aft, int(t), author)
  add(brand, c, t, mid, {'new_authors', 1})
  first_touched[brand] = true
end

-- the brand's first responses, for behaviour after interaction: customer, mention, channel, agent (score: reply ms)
local function replied_member(r, agent) return r.ck .. '\t' .. r.c .. '\t' .. (agent or '') end
local function replied(id, r, old_rb, old_ag)
  if r.ck == nil then return end
  if old_rb ~= nil then redis.call('ZREM', P .. 'rp:{' .. old_rb .. '}', id .. '\t' .. replied_member(r, old_ag)) end
  redis.call('ZADD', P .. 'rp:{' .. r.rb .. '}', int(r.rt), id .. '\t' .. replied_member(r, r.ag))
end

-- records are read once per script and written back once at the end; was[id]: what the stored record had
-- ('t' its mention, 'n' not yet), so its time in PEND_T is written only when it changes
local cache, dirty, was, lo = {}, {}, {}, {}
local function load(id)
  local r = cache[id]
  if r == nil then
    local raw = redis.call('HGET', PEND, id)
    if not raw then return nil end
    r = cjson.decode(raw)
    cache[id] = r
    was[id] = r.t ~= nil and 't' or 'n'
  end
  return r
end
-- ts: the time of the event that changed the record (a reply, a brand's post, a reply to it), which
-- dates the record until its mention is known
local function store(id, r, ts)
  cache[id] = r
  dirty[id] = true
  if ts ~= nil and (lo[id] == nil or ts < lo[id]) then lo[id] = ts end
end

-- a record is written with its fields in a fixed order (its reply list sorted), and kept by its own time:
-- the mention's, else the earliest of the events that made it (0 for an SLA check alone), so both are the
-- same whatever the order the events came in
local FIELDS = {'b', 'c', 't', 'm', 'q', 'u', 'a', 'ck', 's', 'p', 'x', 'bp', 'rt', 'rb', 'ag', 'an', 'sc', 'ua', 'k'}
local NUMBER = {t = true, q = true, u = true, x = true, rt = true, an = true, sc = true, ua = true}
local HEAD = {}
for _, f in ipairs(FIELDS) do HEAD[f] = ',"' .. f .. '":' end
local function encode(r)
  local parts, n = {}, 0
  for _, f in ipairs(FIELDS) do
    local v = r[f]
    if v ~= nil then
      if f == 'k' then
        table.sort(v)
        local uniq = {}
        for _, kid in ipairs(v) do if uniq[#uniq] ~= kid then uniq[#uniq + 1] = kid end end
        v = cjson.encode(uniq)
      elseif NUMBER[f] and v == math.floor(v) then
        v = int(v)
      else
        v = cjson.encode(v)
      end
      n = n + 1
      parts[n] = HEAD[f] .. v
    end
  end
  return '{' .. string.sub(table.concat(parts), 2) .. '}'
end
local function keep_at(id, r)
  if r.t ~= nil then
    if was[id] ~= 't' then redis.call('ZADD', PEND_T, int(r.t), id) end
  elseif was[id] == nil then
    redis.call('ZADD', PEND_T, int(lo[id] or 0), id)
  elseif lo[id] ~= nil then
    local cur = tonumber(redis.call('ZSCORE', PEND_T, id) or '0')
    if cur == 0 or lo[id] < cur then redis.call('ZADD', PEND_T, int(lo[id]), id) end
  end
end

local function ua_key(r) return P .. 'ua:{' .. r.b .. '}:' .. r.c end
-- a query is unanswered once its SLA check happened, unless a reply came within the SLA; the record
-- remembers whether it is counted (r.ua), the sorted set only lists the ids (and forgets old ones)
local function judge(id, r)
  if r.q ~= 1 or r.sc ~= 1 then return end
  touched[r.b .. '|' .. r.c] = true
  local want = (r.rt == nil or r.rt - r.t > SLA) and 1 or 0
  if want == (r.ua or 0) then return end
  r.ua = want == 1 and 1 or nil  -- only a counted one is marked: no 0 left behind
  if want == 1 then
    add(r.b, r.c, r.t, r.m, {'unanswered', 1})
    if r.t >= cutoff(r.b, r.c) then redis.call('ZADD', ua_key(r), int(r.t), id) end
  else
    add(r.b, r.c, r.t, r.m, {'unanswered', -1})
    redis.call('ZREM', ua_key(r), id)
  end
end

-- an unattributed mention (counted under UNKNOWN) moves to its brand once the evidence is known, with the
-- precedence the twcs reader uses on a whole file: 1 the brand replied to it, 2 it replies to the brand's
-- post, 4 its conversation's brand (a mention it replies to, or one replying to it); better evidence moves
-- it again, and each move carries the mention's conversation along
local attribute
local function propagate(id, r, brand)
  for _, kid in ipairs(r.k or {}) do
    local kr = load(kid)
    if kr ~= nil and kr.t ~= nil then attribute(kid, kr, brand, 4) end
  end
  if r.p ~= nil then
    local pr = load(r.p)
    if pr ~= nil and pr.t ~= nil then attribute(r.p, pr, brand, 4) end
  end
end
attribute = function(id, r, brand, level)
  if r.u ~= 1 or brand == nil or brand == UNKNOWN or (r.x ~= nil and r.x <= level) then return end
  local from = r.b
  r.x = level
  store(id, r)
  if from ~= brand then
    local kind = r.q == 1 and 'queries@x' or 'comments@x'
    add(from, r.c, r.t, r.m, {'mentions@x', -1, kind, -1, r.s .. '@x', -1})
    add(brand, r.c, r.t, r.m, {'mentions@x', 1, kind, 1, r.s .. '@x', 1})
    for _, g in ipairs(GRANS) do
      if not retired(g, brand, r.c, r.t) then
        local hll = P .. ((g == 'm') and 'hll' or ('hll' .. g)) .. ':{' .. brand .. '}:' .. r.c .. ':' .. bucket_id(g, r.m)
        redis.call('PFADD', hll, r.a)
      end
    end
    redis.call('PFADD', P .. 'hll:{' .. brand .. '}:all', r.a)
    first_seen(brand, r.c, r.a, r.t, r.m)
    if r.ua == 1 then  -- counted unanswered under the old brand: judged again under the new one
      add(from, r.c, r.t, r.m, {'unanswered', -1})
      redis.call('ZREM', ua_key(r), id)
      r.ua = nil
    end
    if r.q == 1 and r.rt ~= nil and r.an == 1 then
      add(from, r.c, r.t, r.m, {'answered', -1})
      add(brand, r.c, r.t, r.m, {'answered', 1})
    end
    r.b = brand
    judge(id, r)
  end
  propagate(id, r, brand)
end

-- a new unattributed mention looks for its brand in what it replies to; unless that is a brand's post (whose
-- brand never changes), it is listed there (k), whether it found a brand yet or not, so a better brand found
-- for the conversation later reaches it, and the record is the same in any order
local function link(id, r)
  if r.p == nil then return end
  local pr = load(r.p)
  if pr ~= nil and pr.bp ~= nil then
    attribute(id, r, pr.bp, 2)
    return
  end
  pr = pr or {}
  pr.k = pr.k or {}
  table.insert(pr.k, id)
  store(r.p, pr, r.t)
  if pr.t ~= nil and (pr.u ~= 1 or pr.x ~= nil) then attribute(id, r, pr.b, 4) end
end

local function rt_keys(brand, c) return P .. 'rt:{' .. brand .. '}:' .. c, P .. 'rtt:{' .. brand .. '}:' .. c end

-- count the reply r.rt/r.rb as the first response of mention id, retracting an earlier count (old_rt, old_rb)
local function respond(id, r, old_rt, old_rb, old_ag)
  attribute(id, r, r.rb, 1)
  replied(id, r, old_rt ~= nil and old_rb or nil, old_ag)
  if old_rt ~= nil then
    local old = math.max(0, old_rt - r.t)
    add(old_rb, r.c, r.t, r.m, {'response_count', -1, 'response_ms_sum', -old})
    sketch(old_rb, r.c, r.t, r.m, old, -1)
    if old_rb ~= r.rb then
      local a, b = rt_keys(old_rb, r.c)
      redis.call('ZREM', a, id)
      redis.call('ZREM', b, id)
    end
  elseif r.q == 1 then
    add(r.b, r.c, r.t, r.m, {'answered', 1})
    r.an = 1
  end
  local x = math.max(0, r.rt - r.t)
  touched[r.rb .. '|' .. r.c] = true
  add(r.rb, r.c, r.t, r.m, {'response_count', 1, 'response_ms_sum', x})
  sketch(r.rb, r.c, r.t, r.m, x, 1)
  see(r.rb, r.c, r.t)
  responded(r.rb, r.c, r.t)
  if r.t >= cutoff(r.rb, r.c) then
    local a, b = rt_keys(r.rb, r.c)
    redis.call('ZADD', a, int(x), id)
    redis.call('ZADD', b, int(r.t), id)
  end
  judge(id, r)
end

for _, e in ipairs(events) do
  local kind, id = e[1], e[2]
  local r = load(id)
  if kind == 'm' then
    if r == nil or r.t == nil then
      local t = e[5]
      r = r or {}
      r.b, r.c, r.t, r.m, r.q, r.u, r.a, r.ck = e[3], e[4], t, e[6], e[7], e[8], e[9], e[12]
      if r.u == 1 then
        r.s = e[10]
        if e[11] ~= cjson.null then r.p = e[11] end
      end
      store(id, r)
      if t > newest then newest = t end
      see(r.b, r.c, t)
      touched[r.b .. '|' .. r.c] = true
      first_seen(r.b, r.c, r.a, t, r.m)
      if r.rt ~= nil then respond(id, r, nil, nil, nil) else judge(id, r) end
      if r.u == 1 then
        link(id, r)
        for _, kid in ipairs(r.k or {}) do  -- replies to it that found their brand before it came
          local kr = load(kid)
          if kr ~= nil and kr.t ~= nil and (kr.u ~= 1 or kr.x ~= nil) then attribute(id, r, kr.b, 4) end
        end
      end
      if r.k ~= nil and (r.u ~= 1 or r.x ~= nil) then propagate(id, r, r.b) end
    end
  elseif kind == 'r' then
    local ts, brand, agent = e[3], e[4], e[5] or ''
    if ts > newest then newest = ts end
    if r == nil then
      store(id, {rt = ts, rb = brand, ag = agent}, ts)
    elseif r.rt == nil or ts < r.rt or (ts == r.rt and (brand < r.rb or (brand == r.rb and agent < (r.ag or '')))) then
      -- the earliest reply is the first response (ties: the smallest brand, then agent), whatever the order
      local old_rt, old_rb, old_ag = r.rt, r.rb, r.ag
      r.rt, r.rb, r.ag = ts, brand, agent
      store(id, r, ts)
      if r.t ~= nil then respond(id, r, old_rt, old_rb, old_ag) end
    end
  elseif kind == 'b' then  -- a brand's own post: what replies to it is about that brand
    if r == nil or r.bp == nil then
      r = r or {}
      r.bp = e[3]
      store(id, r, e[4])
      for _, kid in ipairs(r.k or {}) do
        local kr = load(kid)
        if kr ~= nil and kr.t ~= nil then attribute(kid, kr, r.bp, 2) end
      end
      r.k = nil  -- a post's replies take its brand as they come
    end
  elseif kind == 's' then
    r = r or {}
    if r.sc ~= 1 then
      r.sc = 1
      store(id, r)  -- a check that overtook its mention waits for it
      if r.t ~= nil then judge(id, r) end
    end
  end
end
for id, _ in pairs(dirty) do
  redis.call('HSET', PEND, id, encode(cache[id]))
  keep_at(id, cache[id])
end
redis.call('SET', HW, int(newest))

-- forget what is past the horizons (bounded work per call; a later call goes on)
local budget = 2 * #events + 100
local over = redis.call('ZCARD', PEND_T) - KEEP
if over > 0 then  -- beyond the cap, the oldest mentions (event time) stop waiting for their replies
  local old = redis.call('ZRANGE', PEND_T, 0, over - 1)
  redis.call('HDEL', PEND, unpack(old))
  redis.call('ZREM', PEND_T, unpack(old))
end
-- authors whose first mention is older than AUTHOR_RET behind the brand's newest first mention are forgotten
-- (if they come back they count as new again)
for brand, _ in pairs(first_touched) do
  if AUTHOR_RET > 0 then
    local aft = P .. 'aft:{' .. brand .. '}'
    local top = redis.call('ZREVRANGE', aft, 0, 0, 'WITHSCORES')
    local gone = redis.call('ZRANGEBYSCORE', aft, '-inf', '(' .. int(tonumber(top[2]) - AUTHOR_RET), 'LIMIT', 0, budget)
    if #gone > 0 then
      redis.call('HDEL', P .. 'af:{' .. brand .. '}', unpack(gone))
      redis.call('ZREM', aft, unpack(gone))
    end
  end
end
for f, _ in pairs(touched) do
  local sep = string.find(f, '|', 1, true)
  local brand, c = string.sub(f, 1, sep - 1), string.sub(f, sep + 1)
  if RET > 0 then
    local cut = '(' .. int(cutoff(brand, c))
    local a, b = rt_keys(brand, c)
    local gone = redis.call('ZRANGEBYSCORE', b, '-inf', cut, 'LIMIT', 0, budget)
    if #gone > 0 then
      redis.call('ZREM', a, unpack(gone))
      redis.call('ZREM', b, unpack(gone))
    end
    local ua = P .. 'ua:{' .. brand .. '}:' .. c
    local late = redis.call('ZRANGEBYSCORE', ua, '-inf', cut, 'LIMIT', 0, budget)
    if #late > 0 then redis.call('ZREM', ua, unpack(late)) end
    redis.call('ZREMRANGEBYSCORE', P .. 'rp:{' .. brand .. '}', '-inf', cut)
  end
end
return #events
"""


def mention_event(mention_id: str, brand: str, channel: str, ts_ms: int, is_query: bool, author: str,
                  sentiment: str, in_reply_to: str | None = None, customer: str | None = None) -> list[Any]:
    """The event of a customer mention (see the module docs); ``customer`` is the CRM customer id, else the
    author's ``channel:handle``."""
    return ["m", mention_id, brand, channel, ts_ms, Keys.minute_id(ts_ms), int(is_query),
            int(brand == UNKNOWN_BRAND), author, sentiment, in_reply_to, customer or f"{channel}:{author}"]


def brand_post_event(post_id: str, brand: str, ts_ms: int) -> list[Any]:
    """The event of a brand's own post: a mention replying to it is about that brand."""
    return ["b", post_id, brand, ts_ms]


def reply_event(target_id: str, ts_ms: int, brand: str, agent: str = "") -> list[Any]:
    """The event of a brand's reply to ``target_id`` (``agent``: who wrote it, when known)."""
    return ["r", target_id, ts_ms, brand, agent]


def sla_event(mention_id: str) -> list[Any]:
    """The event "this query's SLA has passed"."""
    return ["s", mention_id]


class ReplyMatcher:
    """Applies reply-matching events to Redis with :data:`MATCH`, on a pipeline or a client.

    >>> import os, redis as r_
    >>> from stream.redisconn import ensure_redis_url
    >>> client = r_.Redis.from_url(ensure_redis_url(os.environ.get("REDIS_URL")))
    >>> keys = Keys("doctest:replies:")
    >>> m = ReplyMatcher(client, keys, sla_ms=3_600_000)
    >>> m.apply([reply_event("t:1", 1704103500000, "acme"),                      # the reply first
    ...          mention_event("t:1", "acme", "twitter", 1704103200000, True, "bob", "negative")])
    2
    >>> client.zscore(keys.response_times("acme", "twitter"), "t:1")
    300000.0
    >>> client.hget(keys.window("acme", "twitter", "2024010110", "h"), "answered")
    b'1'
    >>> for k in client.scan_iter("doctest:replies:*"):
    ...     _ = client.delete(k)
    """

    def __init__(self, client: redis.Redis, keys: Keys, *, sla_ms: int, response_retention_ms: int = 0,
                 pending_keep: int = 500_000, minute_retention_s: int = 7 * 86400,
                 author_retention_ms: int = 400 * 86_400_000) -> None:
        self.keys = keys
        self._script = client.register_script(MATCH)
        self._header: list[Any] = [keys.prefix, sla_ms, response_retention_ms, pending_keep, repr(_LOG_GAMMA),
                                   int(minute_retention_s), UNKNOWN_BRAND]
        self._author_retention_ms = author_retention_ms

    def apply(self, events: list[list[Any]], client: Any = None) -> Any:
        """Apply ``events`` (in one script call); on a pipeline the result comes with its ``execute()``."""
        if not events:
            return 0
        return self._script(args=[*self._header, orjson.dumps(events), self._author_retention_ms], client=client)
