"""Server-side scripts of the Redis CRM store: every decision that must be atomic across workers.

Assignment (pick an agent, bump its load), case transitions, link-code redemption and prospect merges
run inside Redis as Lua, so two flow workers can never over-assign an agent or open a case twice.
Each script's ``ARGV[1]`` is the key prefix; key names match :class:`crm.keys.CrmKeys`.
The policy (priorities, SLA minutes, which strategy) is decided in Python and passed in.
"""

from __future__ import annotations

__all__ = [
    "AGENT_STATUS",
    "AGENT_UPSERT",
    "AUTO_RESOLVE",
    "CAPACITY",
    "COMMIT",
    "CONTEXT",
    "DRAIN",
    "EXPIRE_STALE",
    "IMPORT_CUSTOMER",
    "KEEP_TICK",
    "LINK_PUT",
    "MERGE",
    "REDEEM",
    "REPLY",
    "REPLY_CASE",
    "RESOLVE",
    "REMEMBER_TICK",
    "RETIRE_CASES",
    "SLA_SCAN",
    "TICK",
    "TIMER_STATE",
]

#: XADD with an id that follows the stream's last entry, not the server's clock: the same Lua as
#: ``connectors.redis_streams.XADD_NEXT_LUA`` (crm/ and connectors/ do not import each other; a test keeps the two equal).
_XADD_NEXT = """
local function xadd_next(stream, maxlen, fields)
  local id = '0-1'
  local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if #top > 0 then
    local ms, seq = string.match(top[1][1], '^(%d+)-(%d+)$')
    id = ms .. '-' .. string.format('%d', tonumber(seq) + 1)
  end
  local r = redis.pcall('XADD', stream, 'MAXLEN', '~', maxlen, id, unpack(fields))
  if type(r) == 'table' and r.err then r = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(fields)) end
  return r
end
"""

_LIB = _XADD_NEXT + r"""
local P = ARGV[1]
local function K(...) return P .. table.concat({...}, ':') end
local function ms(x) return string.format('%d', tonumber(x)) end
-- the CRM's watermark: its newest processed mention time (event time, ms), what every retention follows
local function wm() return tonumber(redis.call('GET', K('crm', 'wm')) or '-1') end
-- the stored outcome of processing mention id, unless it is past its event-time retention (ret ms behind the
-- CRM's watermark): then as if never processed, whether RETIRE_CASES deleted it yet or not
local function processed(id, ret)
  local rec = redis.call('GET', K('crm', 'done', id))
  if not rec or not ret or ret <= 0 then return rec end
  local t = tonumber(redis.call('ZSCORE', K('crm', 'donet'), id) or '')
  local w = tonumber(redis.call('GET', K('crm', 'wm')) or '-1')
  if t ~= nil and t + ret < w then return false end
  return rec
end

-- links from a mention or reply to its case live this long (seconds of event time behind the CRM's watermark
-- crm:wm; crm.keys.KEEP_LINKS_SECONDS): a follow-up to a message half a year old starts a new case. A link past
-- it counts as gone whether RETIRE_CASES deleted it yet or not. The marks that make outbox writes happen once
-- live as long, indexed by event time in outbox:sentt (a mark without an index entry, set by another writer,
-- lives by its own TTL).
local KEEP_S = 15552000
local function link_thread(id, cid, t)
  redis.call('SET', K('thread', id), cid)
  redis.call('ZADD', K('threadt'), ms(t), id)
end
local function thread_of(id)
  local cid = redis.call('GET', K('thread', id))
  if not cid then return false end
  local t = tonumber(redis.call('ZSCORE', K('threadt'), id) or '')
  local w = tonumber(redis.call('GET', K('crm', 'wm')) or '-1')
  if t ~= nil and t + KEEP_S * 1000 < w then return false end
  return cid
end
local function first_send(id, ts)
  local key = K('outbox', 'sent', id)
  if redis.call('EXISTS', key) == 1 then
    local t = tonumber(redis.call('ZSCORE', K('outbox', 'sentt'), id) or '')
    if t == nil or t + KEEP_S * 1000 >= wm() then return false end
  end
  redis.call('SET', key, '1')
  redis.call('ZADD', K('outbox', 'sentt'), ms(ts), id)
  return true
end

-- unresolved cases by last activity (opened, a customer mention, a reply): cases:active. One without activity
-- for `stale` ms of event time behind the watermark `w` is stale: expired by EXPIRE_STALE, and treated as expired
-- by whoever meets it first (a follow-up, a brand reply), so nothing depends on when the scan ran
local function touch(cid, ts)
  local z = K('cases', 'active')
  local cur = tonumber(redis.call('ZSCORE', z, cid) or '')
  if cur == nil or tonumber(ts) > cur then redis.call('ZADD', z, ms(ts), cid) end
end
local function stale_since(cid, stale, w)
  if not stale or stale <= 0 then return nil end
  local t = tonumber(redis.call('ZSCORE', K('cases', 'active'), cid) or '')
  if t ~= nil and t + stale < w then return t end
  return nil
end
local function closed(status) return status == 'resolved' or status == 'expired' end
-- append one outbox entry (a flat field/value list from the encoder) to a stream capped near maxlen
local function post(stream, maxlen, fields)
  xadd_next(stream, maxlen, fields)
end
-- the case and customer a message belongs to are known for sure only here (a thread may have joined a case,
-- a prospect may have been linked meanwhile): fill them into the encoded fields by name
local function with_ids(fields, cid, cust)
  for i = 1, #fields - 1, 2 do
    if fields[i] == 'case_id' then fields[i + 1] = cid elseif fields[i] == 'customer_id' then fields[i + 1] = cust end
  end
  return fields
end

local function ev_json(ts, name, extra)
  local parts = {'{"ts":' .. ms(ts), '"event":' .. cjson.encode(name)}
  if extra then
    local names = {}
    for k2, _ in pairs(extra) do table.insert(names, k2) end
    table.sort(names)
    for _, k2 in ipairs(names) do
      table.insert(parts, cjson.encode(k2) .. ':' .. cjson.encode(extra[k2]))
    end
  end
  return table.concat(parts, ',') .. '}'
end

local function event(cid, ts, name, extra)
  redis.call('RPUSH', K('case', cid, 'events'), ev_json(ts, name, extra))
end

local function stat(name, by)
  redis.call('HINCRBY', K('cases', 'stats'), name, by or 1)
end

local function has_skill(list, v)
  if not list or list == '' or list == '*' then return true end
  if not v or v == '' then return true end
  return string.find(',' .. list .. ',', ',' .. v .. ',', 1, true) ~= nil
end

local function depts_of(depts)
  if not depts or depts == '' or depts == '*' then return {'*'} end
  local out = {}
  for d in string.gmatch(depts, '[^,]+') do table.insert(out, d) end
  return out
end

-- keep the zsets of agents with room (online, load < capacity) in step with the agent's hash: per
-- department (``*`` for agents serving every queue) agents:avail:{dept} scored by load (least loaded
-- first) and agents:rr:{dept} scored by last-assignment stamp (round robin)
local function set_room(id, status, cap, load, seq, depts_field, avail_in)
  local room = status == 'online' and load < cap
  local depts = depts_of(depts_field)
  local now_in = ''
  if room then now_in = table.concat(depts, ',') end
  if avail_in and avail_in ~= '' and avail_in ~= now_in then
    for d in string.gmatch(avail_in, '[^,]+') do
      redis.call('ZREM', K('agents', 'avail', d), id)
      redis.call('ZREM', K('agents', 'rr', d), id)
    end
  end
  if room then
    for _, d in ipairs(depts) do
      redis.call('ZADD', K('agents', 'avail', d), load, id)
      redis.call('ZADD', K('agents', 'rr', d), seq, id)
    end
  end
  if (avail_in or '') ~= now_in then redis.call('HSET', K('agent', id), 'avail_in', now_in) end
end

local function refresh_agent(id)
  local a = redis.call('HMGET', K('agent', id), 'status', 'capacity', 'load', 'seq', 'departments', 'avail_in')
  set_room(id, a[1], tonumber(a[2]) or 0, tonumber(a[3]) or 0, tonumber(a[4]) or 0, a[5], a[6])
end

-- the agent's side of an assignment: one more case, a new round-robin stamp
local function agent_take(agent, cid, now)
  local ak = K('agent', agent)
  local a = redis.call('HMGET', ak, 'status', 'capacity', 'load', 'departments', 'avail_in', 'assigned_total')
  local seq = redis.call('INCR', K('agents', 'seq'))
  local load = (tonumber(a[3]) or 0) + 1
  redis.call('HSET', ak, 'load', load, 'seq', seq, 'last_assigned_ms', ms(now), 'assigned_total',
    (tonumber(a[6]) or 0) + 1)
  redis.call('ZADD', K('agents', 'load'), load, agent)
  redis.call('SADD', K('agent', agent, 'cases'), cid)
  set_room(agent, a[1], tonumber(a[2]) or 0, load, seq, a[4], a[5])
end

local function has_room(id)
  local a = redis.call('HMGET', K('agent', id), 'status', 'capacity', 'load')
  return a[1] == 'online' and (tonumber(a[3]) or 0) < (tonumber(a[2]) or 0)
end

-- the agent a case goes to, or nil: an agent with room who serves the queue (and, for skill_based,
-- the channel and language); least_loaded / skill_based walk the queue's agents by load, round_robin
-- by oldest last assignment; ties go to the smaller id, so the choice is deterministic.
local function pick_agent(queue, channel, lang, strategy, prefer)
  if prefer and prefer ~= '' and has_room(prefer) then
    if has_skill(redis.call('HGET', K('agent', prefer), 'departments'), queue) then return prefer end
  end
  local kind = 'avail'
  if strategy == 'round_robin' then kind = 'rr' end
  local skills = strategy == 'skill_based'
  -- merge two sorted walks: the queue's own agents and the agents who serve every queue
  -- pages start small (usually the first agent is the one) and grow while skills filter agents out
  local walks = {{key = K('agents', kind, queue), items = {}, pos = 1, start = 0, size = 1},
                 {key = K('agents', kind, '*'), items = {}, pos = 1, start = 0, size = 1}}
  local function peek(w)
    if w.pos > #w.items then
      if w.done then return nil, nil end
      w.items = redis.call('ZRANGE', w.key, w.start, w.start + w.size - 1, 'WITHSCORES')
      w.pos = 1
      w.start = w.start + w.size
      if #w.items < 2 * w.size then w.done = true end
      if w.size < 32 then w.size = w.size * 4 end
      if #w.items == 0 then return nil, nil end
    end
    return w.items[w.pos], tonumber(w.items[w.pos + 1])
  end
  while true do
    local best, bid, bscore = nil, nil, nil
    for _, w in ipairs(walks) do
      local id, score = peek(w)
      if id and (bid == nil or score < bscore or (score == bscore and id < bid)) then
        best, bid, bscore = w, id, score
      end
    end
    if not best then return nil end
    best.pos = best.pos + 2
    if not skills then return bid end
    local a = redis.call('HMGET', K('agent', bid), 'channels', 'languages')
    if has_skill(a[1], channel) and has_skill(a[2], lang) then return bid end
  end
end

local function assign_to(cid, agent, now)
  agent_take(agent, cid, now)
  local ck = K('case', cid)
  local f = redis.call('HMGET', ck, 'queue', 'status', 'assigned_ms', 'queued')
  if f[4] == '1' then redis.call('ZREM', K('queue', f[1]), cid) end
  local set = {'agent', agent, 'queued', '0', 'last_assigned_ms', ms(now)}
  if not f[3] or f[3] == '' then table.insert(set, 'assigned_ms'); table.insert(set, ms(now)) end
  if f[2] == 'open' then table.insert(set, 'status'); table.insert(set, 'assigned') end
  redis.call('HSET', ck, unpack(set))
  stat('assigned')
  event(cid, now, 'assigned', {agent = agent})
end

-- take a case off its agent's load (the agent field is kept as history unless clear is set)
local function release(cid, agent, clear)
  if agent and agent ~= '' then
    local ak = K('agent', agent)
    if redis.call('SREM', K('agent', agent, 'cases'), cid) == 1 then
      local load = redis.call('HINCRBY', ak, 'load', -1)
      if load < 0 then redis.call('HSET', ak, 'load', 0); load = 0 end
      redis.call('ZADD', K('agents', 'load'), load, agent)
      refresh_agent(agent)
    end
  end
  if clear then redis.call('HSET', K('case', cid), 'agent', '') end
end

local function enqueue(cid, queue, score)
  redis.call('ZADD', K('queue', queue), score, cid)
  redis.call('SADD', K('queues'), queue)
  redis.call('HSET', K('case', cid), 'queued', '1')
end

local function try_assign(cid, now, prefer)
  local f = redis.call('HMGET', K('case', cid), 'queue', 'channel', 'lang', 'strategy', 'created_ms')
  local agent = pick_agent(f[1], f[2], f[3], f[4], prefer)
  if agent then
    assign_to(cid, agent, now)
    return agent
  end
  enqueue(cid, f[1], tonumber(f[5]) or tonumber(now))
  return false
end

-- walk waiting cases oldest first across the given queues (a k-way merge of their heads) and give each
-- to choose(case fields) if it names an agent; stops after `limit` cases looked at or when done() says so
local function walk_queues(queues, now, limit, out, choose, done)
  local heads = {}
  for _, q in ipairs(queues) do table.insert(heads, {q = q, items = {}, pos = 1, skipped = 0, done = false}) end
  local function peek(h)
    if h.done then return nil, nil end
    if h.pos > #h.items then
      -- cases before `skipped` were looked at and left; assigned ones are gone from the queue
      h.items = redis.call('ZRANGE', K('queue', h.q), h.skipped, h.skipped + 15, 'WITHSCORES')
      h.pos = 1
      if #h.items == 0 then h.done = true; return nil, nil end
    end
    return h.items[h.pos], tonumber(h.items[h.pos + 1])
  end
  local examined = 0
  while examined < limit and not done() do
    local best, bid, bscore = nil, nil, nil
    for _, h in ipairs(heads) do
      local id, score = peek(h)
      if id and (bid == nil or score < bscore or (score == bscore and id < bid)) then
        best, bid, bscore = h, id, score
      end
    end
    if not best then break end
    best.pos = best.pos + 2
    examined = examined + 1
    local agent = choose(redis.call('HMGET', K('case', bid), 'queue', 'channel', 'lang', 'strategy'))
    if agent then
      assign_to(bid, agent, now)
      table.insert(out, bid)
      table.insert(out, agent)
    else
      best.skipped = best.skipped + 1
    end
  end
  return out
end

-- assign waiting cases to any agent with room, oldest first
local function drain(now, limit, out)
  return walk_queues(redis.call('SMEMBERS', K('queues')), now, limit, out,
    function(f) return pick_agent(f[1], f[2], f[3], f[4], nil) end,
    function() return false end)
end

-- one agent got room (a case resolved, back online, more capacity): the oldest waiting cases it can
-- take go to it. Nobody else's room changed, and nothing waits that someone with room could take,
-- so only this agent needs looking at.
local function drain_agent(agent, now, limit, out)
  if not has_room(agent) then return out end
  local a = redis.call('HMGET', K('agent', agent), 'departments', 'channels', 'languages')
  local queues = {}
  for _, q in ipairs(redis.call('SMEMBERS', K('queues'))) do
    if has_skill(a[1], q) then table.insert(queues, q) end
  end
  return walk_queues(queues, now, limit, out,
    function(f)
      if f[4] ~= 'skill_based' or (has_skill(a[2], f[2]) and has_skill(a[3], f[3])) then return agent end
      return nil
    end,
    function() return not has_room(agent) end)
end

local function set_deadline(cid, now, sla_ms, warn_frac)
  local due = tonumber(now) + tonumber(sla_ms)
  local warn = due - math.floor(tonumber(sla_ms) * tonumber(warn_frac))
  redis.call('HSET', K('case', cid), 'awaiting_since', ms(now), 'due_ms', ms(due), 'warn_ms', ms(warn),
    'sla_ms', ms(sla_ms))
  redis.call('ZADD', K('cases', 'open'), due, cid)
  redis.call('ZADD', K('cases', 'sla'), warn, cid)
end

local function apply_reply(cid, rid, ts, by)
  local ck = K('case', cid)
  if redis.call('SADD', K('case', cid, 'replies'), rid) == 0 then return {'duplicate', ''} end
  link_thread(rid, cid, ts)
  local f = redis.call('HMGET', ck, 'status', 'awaiting_since', 'first_reply_ms')
  if closed(f[1]) then
    event(cid, ts, 'reply_after_resolve', {reply_id = rid})
    return {f[1], ''}
  end
  touch(cid, ts)
  local resp = ''
  redis.call('HINCRBY', ck, 'replies', 1)
  stat('replies')
  if f[2] and f[2] ~= '' then
    local d = tonumber(ts) - tonumber(f[2])
    if d < 0 then d = 0 end
    resp = ms(d)
    if not f[3] or f[3] == '' then
      redis.call('HSET', ck, 'first_reply_ms', ms(ts), 'first_response_ms', resp)
      stat('first_responses')
      stat('first_response_ms_sum', d)
    else
      redis.call('HINCRBY', ck, 'next_response_ms_sum', d)
      redis.call('HINCRBY', ck, 'next_response_count', 1)
      stat('next_responses')
      stat('next_response_ms_sum', d)
    end
    redis.call('HSET', ck, 'last_response_ms', resp)
  end
  redis.call('HSET', ck, 'status', 'replied', 'replied_ms', ms(ts), 'awaiting_since', '', 'due_ms', '',
    'warn_ms', '', 'last_reply_id', rid)
  redis.call('ZADD', K('cases', 'open'), 'inf', cid)
  redis.call('ZREM', K('cases', 'sla'), cid)
  redis.call('ZADD', K('cases', 'replied'), ts, cid)
  event(cid, ts, 'replied', {reply_id = rid, by = by or '', response_ms = resp})
  return {'replied', resp}
end

-- close a case, resolved (by an agent or auto-resolve) or expired (stale: no activity for stale_case_days): its
-- agent's slot goes to the oldest waiting case the agent can take ((case, agent) pairs appended to moved);
-- returns 'unknown', 'already' or moved
local function close_case(cid, ts, by, dlimit, moved, how)
  local ck = K('case', cid)
  local f = redis.call('HMGET', ck, 'status', 'created_ms', 'agent', 'queue', 'customer_id')
  if not f[1] then return 'unknown' end
  if closed(f[1]) then return 'already' end
  release(cid, f[3], false)
  redis.call('ZREM', K('queue', f[4]), cid)
  redis.call('ZREM', K('cases', 'open'), cid)
  redis.call('ZREM', K('cases', 'sla'), cid)
  redis.call('ZREM', K('cases', 'replied'), cid)
  redis.call('ZREM', K('cases', 'active'), cid)
  local res = tonumber(ts) - tonumber(f[2])
  if res < 0 then res = 0 end
  if how == 'expired' then
    redis.call('HSET', ck, 'status', 'expired', 'expired_ms', ms(ts), 'awaiting_since', '', 'due_ms', '',
      'warn_ms', '', 'queued', '0')
  else
    redis.call('HSET', ck, 'status', 'resolved', 'resolved_ms', ms(ts), 'resolution_ms', ms(res), 'awaiting_since', '',
      'due_ms', '', 'warn_ms', '', 'queued', '0', 'resolved_by', by or '')
  end
  redis.call('ZADD', K('cases', 'closed'), ms(ts), cid)  -- retired case_retention_days later (RETIRE_CASES)
  if f[5] and f[5] ~= '' and redis.call('EXISTS', K('customer', f[5])) == 1 then
    local n = redis.call('HINCRBY', K('customer', f[5]), 'cases_open', -1)
    if n < 0 then redis.call('HSET', K('customer', f[5]), 'cases_open', 0) end
  end
  if how == 'expired' then
    stat('expired')
    event(cid, ts, 'expired', {by = by})
  else
    stat('resolved')
    stat('resolution_ms_sum', res)
    event(cid, ts, 'resolved', {by = by})
  end
  if f[3] and f[3] ~= '' then moved = drain_agent(f[3], ts, dlimit, moved) end
  return moved
end
local function resolve(cid, ts, by, dlimit, moved) return close_case(cid, ts, by, dlimit, moved, 'resolved') end
-- expire a stale case at the moment it went stale (its last activity + stale ms)
local function expire_case(cid, since, stale, dlimit, moved)
  return close_case(cid, since + stale, 'stale', dlimit, moved, 'expired')
end

local function trim_history(cust, keep)
  local z = K('customer', cust, 'mentions')
  local n = redis.call('ZCARD', z)
  if n > keep then
    local old = redis.call('ZRANGE', z, 0, n - keep - 1)
    redis.call('ZREMRANGEBYRANK', z, 0, n - keep - 1)
    redis.call('HDEL', K('customer', cust, 'mdata'), unpack(old))
  end
end

local function follow_merges(cust)
  local hops = 0
  while cust ~= '' and hops < 8 do
    local m = redis.call('HGET', K('customer', cust), 'merged_into')
    if m and m ~= '' then cust = m; hops = hops + 1 else break end
  end
  return cust
end

-- move a prospect's handles, mentions, cases, counters and tags to a customer; the prospect record
-- stays as a pointer (kind=merged, merged_into) so late events about it still land on the customer
local function merge_prospect(pid, cid, now, keep)
  local pk, ck = K('customer', pid), K('customer', cid)
  if pid == cid or redis.call('HGET', pk, 'kind') ~= 'prospect' then return 0 end
  for _, h in ipairs(redis.call('SMEMBERS', K('customer', pid, 'handles'))) do
    redis.call('SET', P .. 'identity:' .. h, cid)
    redis.call('SADD', K('customer', cid, 'handles'), h)
  end
  local mz = K('customer', pid, 'mentions')
  if redis.call('EXISTS', mz) == 1 then
    redis.call('ZUNIONSTORE', K('customer', cid, 'mentions'), 2, K('customer', cid, 'mentions'), mz,
      'AGGREGATE', 'MAX')
    local md = redis.call('HGETALL', K('customer', pid, 'mdata'))
    if #md > 0 then redis.call('HSET', K('customer', cid, 'mdata'), unpack(md)) end
  end
  local cz = K('customer', pid, 'cases')
  local cases = redis.call('ZRANGE', cz, 0, -1)
  for _, c in ipairs(cases) do redis.call('HSET', K('case', c), 'customer_id', cid) end
  if #cases > 0 then
    redis.call('ZUNIONSTORE', K('customer', cid, 'cases'), 2, K('customer', cid, 'cases'), cz, 'AGGREGATE', 'MAX')
  end
  local names = {'mentions', 'negative', 'neutral', 'positive', 'queries', 'reach', 'cases_total', 'cases_open'}
  local p = redis.call('HMGET', pk, unpack(names))
  for i, name in ipairs(names) do
    local v = tonumber(p[i])
    if v and v ~= 0 then redis.call('HINCRBY', ck, name, v) end
  end
  local q = redis.call('HMGET', pk, 'sentiment_sum', 'followers', 'last_seen_ms')
  if tonumber(q[1]) then redis.call('HINCRBYFLOAT', ck, 'sentiment_sum', q[1]) end
  local c2 = redis.call('HMGET', ck, 'followers', 'last_seen_ms')
  if (tonumber(q[2]) or 0) > (tonumber(c2[1]) or 0) then redis.call('HSET', ck, 'followers', q[2]) end
  if (tonumber(q[3]) or 0) > (tonumber(c2[2]) or 0) then redis.call('HSET', ck, 'last_seen_ms', q[3]) end
  local tz = K('customer', pid, 'tags')
  if redis.call('EXISTS', tz) == 1 then
    redis.call('SUNIONSTORE', K('customer', cid, 'tags'), K('customer', cid, 'tags'), tz)
  end
  trim_history(cid, keep)
  redis.call('DEL', K('customer', pid, 'handles'), mz, K('customer', pid, 'mdata'), cz, tz,
    K('rules', 'pending', pid))
  redis.call('HSET', pk, 'kind', 'merged', 'merged_into', cid, 'merged_ms', ms(now))
  redis.call('ZREM', K('prospects'), pid)
  redis.call('SADD', K('customer', cid, 'merged'), pid)
  return 1
end

-- a prospect silent for prospect_retention_days (event time behind crm:wm; the prospects zset scores the last
-- mention) is forgotten whole: profile, handles, history, tags, pending rule outcomes, its identity links.
-- A prospect past it counts as gone whether RETIRE_CASES deleted it yet or not (its next mention starts afresh).
local function prospect_stale(pid, ret, w)
  if not ret or ret <= 0 then return false end
  local t = tonumber(redis.call('ZSCORE', K('prospects'), pid) or '')
  return t ~= nil and t + ret < w
end
-- the event-time indexes RETIRE_CASES walks, each with its retention (an index of rets: case, processed, prospect,
-- task, early reply; 0 = the fixed KEEP_S of links and sent-once marks)
local RETIRED = {{'cases', 'closed', 1}, {'threadt', 0}, {'outbox', 'sentt', 0}, {'crm', 'donet', 2},
  {'crm', 'tickt', 2}, {'prospects', 3}, {'tasks', 'open', 4}, {'crm', 'earlyt', 5}}
local INF = 1e300
local SLA_AHEAD = 8  -- the SLA timers TIMER_STATE names (crm.ticks.DueBound.fired)
-- the n-th lowest score of sorted set z (INF when it has fewer members)
local function lowest(z, n)
  local at = redis.call('ZRANGE', z, n - 1, n - 1, 'WITHSCORES')
  if #at == 0 then return INF end
  return tonumber(at[2]) or INF
end
-- the earliest watermark at which RETIRE_CASES has something to delete, and the earliest at which one index has
-- `full` entries to delete (INF: never); rets as in RETIRED
local function retire_due(rets, full)
  local due, due_full = INF, INF
  for _, r in ipairs(RETIRED) do
    local ret = KEEP_S * 1000
    if r[#r] > 0 then ret = tonumber(rets[r[#r]]) or 0 end
    if ret > 0 then
      local parts = {}
      for i = 1, #r - 1 do parts[i] = r[i] end
      local z = K(unpack(parts))
      due = math.min(due, lowest(z, 1) + ret)
      if full > 0 then due_full = math.min(due_full, lowest(z, full) + ret) end
    end
  end
  return due, due_full
end
-- whether a sweep `slack` ms late is due at watermark w: some entry is that far past its retention, or some index
-- has `full` entries past theirs (0: only the first)
-- (in one TICK, RETIRE_CASES' check that found no sweep due, after which it writes nothing, is reused by the
-- TIMER_STATE right after it: sweep_seen holds it; the batch clears it before every other call)
local sweep_seen = nil
-- store a timer tick's record (JSON; '' for none: only move the newest period), indexed for retirement by event
-- time with the processed marks, and make its period the newest ticked (never moving it back)
local function store_tick(p, rec)
  if rec ~= '' then
    redis.call('SET', K('crm', 'tick', p), rec)
    redis.call('ZADD', K('crm', 'tickt'), p, p)
  end
  local last = tonumber(redis.call('GET', K('crm', 'tick', 'last')) or '')
  if last == nil or tonumber(p) > last then redis.call('SET', K('crm', 'tick', 'last'), p) end
end
local function sweep_due(rets, slack, full)
  local key = table.concat(rets, ',') .. '|' .. slack .. '|' .. full
  if sweep_seen ~= nil and sweep_seen[1] == key then return sweep_seen[2], key end
  local due, due_full = retire_due(rets, full)
  return math.min(due + slack, due_full), key
end
local function forget_prospect(pid)
  if redis.call('HGET', K('customer', pid), 'kind') == 'prospect' then
    for _, h in ipairs(redis.call('SMEMBERS', K('customer', pid, 'handles'))) do
      if redis.call('GET', P .. 'identity:' .. h) == pid then redis.call('DEL', P .. 'identity:' .. h) end
    end
    redis.call('DEL', K('customer', pid), K('customer', pid, 'handles'), K('customer', pid, 'mentions'),
      K('customer', pid, 'mdata'), K('customer', pid, 'cases'), K('customer', pid, 'tags'), K('rules', 'pending', pid))
    -- (its churn score, if the flow's churn step kept one, stays with the step's size cap and its reasons)
  end
  redis.call('ZREM', K('prospects'), pid)
end
"""

#: ARGV: prefix, mention id, channel, handle, given customer id, in_reply_to, want history (0/1), history n,
#: processed-mark retention (ms).
CONTEXT = _LIB + r"""
local mid, channel, handle, given, irt = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local prev = processed(mid, tonumber(ARGV[9] or '0'))
if prev then return {'duplicate', prev} end
local cust = ''
if given ~= '' and redis.call('EXISTS', K('customer', given)) == 1 then
  cust = given
elseif handle ~= '' then
  cust = redis.call('GET', K('identity', channel, handle)) or ''
end
cust = follow_merges(cust)
local rec = {}
if cust ~= '' then rec = redis.call('HGETALL', K('customer', cust)) end
local tc, tstatus, tcust = '', '', ''
if irt ~= '' then
  tc = thread_of(irt) or ''
  if tc ~= '' then
    local f = redis.call('HMGET', K('case', tc), 'status', 'customer_id')
    tstatus, tcust = f[1] or '', f[2] or ''
  end
end
local hist = {}
if ARGV[7] == '1' and cust ~= '' then
  local ids = redis.call('ZREVRANGE', K('customer', cust, 'mentions'), 0, tonumber(ARGV[8]) - 1)
  if #ids > 0 then hist = redis.call('HMGET', K('customer', cust, 'mdata'), unpack(ids)) end
end
-- the author's latest churn risk (the flow's churn step scores after the CRM and writes it here)
local risk = ''
if cust ~= '' then risk = redis.call('ZSCORE', K('churn'), cust) or '' end
-- the watermark and, for a prospect, its last mention: the processor tells whether the prospect is past its
-- retention when this mention commits (then it plans as for an unknown author)
local pls = ''
if cust ~= '' then pls = redis.call('ZSCORE', K('prospects'), cust) or '' end
return {'ok', cust, rec, tc, tstatus, tcust, hist, risk, ms(wm()), pls}
"""

#: ARGV: prefix, plan JSON (see ``crm.processor``), the mention's result JSON (stored as is), its history
#: summary JSON. Applies one processed mention atomically, once.
COMMIT = _LIB + r"""
local plan = cjson.decode(ARGV[2])
local mid, ts = plan.mid, tonumber(plan.ts)
local done = K('crm', 'done', mid)
local prev = processed(mid, tonumber(plan.done_ret or 0))
if prev then return {'duplicate', prev} end
-- the CRM's watermark (newest event time processed, in input order): a resolved case closed more than
-- case_ret before it is retired (RETIRE_CASES) and is never joined again, whether or not it is deleted yet
local CRET = tonumber(plan.case_ret or 0)
local PRET, STALE, ERET = tonumber(plan.prospect_ret or 0), tonumber(plan.stale or 0), tonumber(plan.early_ret or 0)
local W = math.max(ts, tonumber(redis.call('GET', K('crm', 'wm')) or '0'))
redis.call('SET', K('crm', 'wm'), ms(W))

-- who: an unknown author becomes a prospect unless someone linked the handle meanwhile
local cust = plan.cust or ''
if plan.prospect == 1 then
  local owner = redis.call('GET', K('identity', plan.channel, plan.author))
  if owner and owner ~= cust then cust = owner end
end
cust = follow_merges(cust)
local is_prospect = false
local cset = {}          -- customer fields written once at the end
local c = {}
local fresh = false      -- a prospect past its retention: forgotten, this mention starts a new profile
if cust ~= '' and prospect_stale(cust, PRET, W) then
  forget_prospect(cust)
  fresh = true
end
if cust ~= '' then
  local ck = K('customer', cust)
  if (fresh or (plan.prospect == 1 and cust == plan.cust)) and redis.call('HSETNX', ck, 'kind', 'prospect') == 1 then
    cset = {'id', cust, 'channel', plan.channel, 'handle', plan.author, 'first_seen_ms', ms(ts)}
    redis.call('ZADD', K('prospects'), ts, cust)
    redis.call('SET', K('identity', plan.channel, plan.author), cust, 'NX')
    redis.call('SADD', K('customer', cust, 'handles'), plan.channel .. ':' .. plan.author)
  end
  c = redis.call('HMGET', ck, 'kind', 'mentions', plan.sentiment, 'queries', 'sentiment_sum', 'reach',
    'last_seen_ms', 'followers', 'churn_ts', 'pending', 'cases_total', 'cases_open')
  is_prospect = c[1] == 'prospect'
  -- rule outcomes: the customer's next mention after a hit tells whether the initiative landed
  if c[10] == '1' then
    local pk = K('rules', 'pending', cust)
    local pend = redis.call('HGETALL', pk)
    local left = 0
    for i = 1, #pend, 2 do
      if tonumber(pend[i + 1]) < ts then
        redis.call('HINCRBY', K('rules', 'stats'), pend[i] .. '|next_' .. plan.sentiment, 1)
        redis.call('HDEL', pk, pend[i])
      else
        left = left + 1
      end
    end
    if left == 0 then table.insert(cset, 'pending'); table.insert(cset, '0') end
  end
  redis.call('ZADD', K('customer', cust, 'mentions'), ts, mid)
  redis.call('HSET', K('customer', cust, 'mdata'), mid, ARGV[4])
  trim_history(cust, tonumber(plan.keep))
end

-- which case: a follow-up in the thread of this customer's case joins it (reopening it when resolved)
local cid, cev = '', 'none'
local agent, status, prio, queue = '', '', '', ''
local known = false
local cases_total, cases_open = 0, 0
if plan.in_reply_to ~= '' and cust ~= '' then
  local tc = thread_of(plan.in_reply_to)
  if tc then
    local ck = K('case', tc)
    local f = redis.call('HMGET', ck, 'status', 'customer_id', 'agent', 'priority', 'awaiting_since', 'resolved_ms')
    local retired = f[1] == 'resolved' and CRET > 0 and (tonumber(f[6]) or 0) + CRET < W
    if f[1] and not closed(f[1]) then
      -- a case without activity for stale_case_days expires now if the tick has not expired it yet
      local since = stale_since(tc, STALE, W)
      if since then
        expire_case(tc, since, STALE, 500, {})
        f[1] = 'expired'
      end
    end
    -- an expired case is closed for good: a follow-up to it opens a new case
    if f[1] and f[1] ~= 'expired' and f[2] == cust and not retired then
      cid = tc
      link_thread(mid, cid, ts)
      redis.call('HINCRBY', ck, 'mentions', 1)
      redis.call('HSET', ck, 'last_customer_ms', ms(ts), 'last_mention_id', mid)
      local sla = plan.sla[f[4]] or plan.sla['medium']
      if f[1] == 'resolved' then
        cev = 'reopened'
        redis.call('HSET', ck, 'status', 'open', 'resolved_ms', '')
        redis.call('ZREM', K('cases', 'closed'), cid)
        redis.call('HINCRBY', ck, 'reopened', 1)
        cases_open = 1
        stat('reopened')
        touch(cid, ts)
        set_deadline(cid, ts, sla, plan.warn)
        event(cid, ts, 'reopened', {mention_id = mid})
        try_assign(cid, ts, f[3])
      else
        cev = 'appended'
        touch(cid, ts)
        event(cid, ts, 'followup', {mention_id = mid})
        if not f[5] or f[5] == '' then
          set_deadline(cid, ts, sla, plan.warn)
          if f[3] and f[3] ~= '' then redis.call('HSET', ck, 'status', 'assigned')
          else redis.call('HSET', ck, 'status', 'open') end
        end
      end
    end
  end
end
if cid == '' and plan.open == 1 then
  cid = plan.case.id
  local ck = K('case', cid)
  if redis.call('EXISTS', ck) == 0 then
    cev = 'opened'
    local pc = plan.case
    local sla = tonumber(pc.sla_ms)
    local due = ts + sla
    local warn = due - math.floor(sla * tonumber(plan.warn))
    local picked = pick_agent(pc.queue, pc.channel, pc.lang, pc.strategy, nil)
    agent, status, prio, queue = picked or '', 'open', pc.priority, pc.queue
    local args = {'created_ms', ms(ts), 'customer_id', cust, 'mentions', 1, 'agent', agent,
      'last_customer_ms', ms(ts), 'last_mention_id', mid, 'awaiting_since', ms(ts), 'due_ms', ms(due),
      'warn_ms', ms(warn)}
    if picked then
      status = 'assigned'
      for _, v in ipairs({'status', 'assigned', 'queued', '0', 'assigned_ms', ms(ts), 'last_assigned_ms', ms(ts)}) do
        table.insert(args, v)
      end
    else
      for _, v in ipairs({'status', 'open', 'queued', '1'}) do table.insert(args, v) end
    end
    for k2, v in pairs(pc) do table.insert(args, k2); table.insert(args, v) end
    redis.call('HSET', ck, unpack(args))
    link_thread(mid, cid, ts)
    redis.call('ZADD', K('cases', 'all'), ts, cid)
    touch(cid, ts)
    redis.call('ZADD', K('cases', 'open'), due, cid)
    redis.call('ZADD', K('cases', 'sla'), warn, cid)
    if cust ~= '' then
      redis.call('ZADD', K('customer', cust, 'cases'), ts, cid)
      cases_total, cases_open = 1, 1
    end
    stat('opened')
    local evs = {ev_json(ts, 'opened', {mention_id = mid, priority = pc.priority, queue = pc.queue})}
    if picked then
      agent_take(picked, cid, ts)
      stat('assigned')
      table.insert(evs, ev_json(ts, 'assigned', {agent = picked}))
    else
      redis.call('ZADD', K('queue', pc.queue), ts, cid)
      redis.call('SADD', K('queues'), pc.queue)
    end
    redis.call('RPUSH', K('case', cid, 'events'), unpack(evs))
    known = true
    local early = redis.call('GET', K('crm', 'early', mid))
    if early and ERET > 0 then  -- a held reply past its event-time retention counts as gone
      local et = tonumber(redis.call('ZSCORE', K('crm', 'earlyt'), mid) or '')
      if et ~= nil and et + ERET < W then early = false end
    end
    if early then
      local e = cjson.decode(early)
      apply_reply(cid, e.id, e.ts, e.by)
      redis.call('DEL', K('crm', 'early', mid))
      redis.call('ZREM', K('crm', 'earlyt'), mid)
      known = false
    end
  else
    cev = 'exists'
  end
end

if cid ~= '' and #plan.tags > 0 then redis.call('SADD', K('case', cid, 'tags'), unpack(plan.tags)) end
if cust ~= '' and #plan.tags > 0 then redis.call('SADD', K('customer', cust, 'tags'), unpack(plan.tags)) end
for _, r in ipairs(plan.hits) do
  redis.call('HINCRBY', K('rules', 'stats'), r .. '|hits', 1)
  xadd_next(K('rules', 'hits'), 10000, {'rule', r, 'mention_id', mid, 'customer_id', cust, 'case_id', cid,
    'ts', ms(ts)})
  if cust ~= '' then redis.call('HSET', K('rules', 'pending', cust), r, ms(ts)) end
end
for _, t in ipairs(plan.tasks) do
  local tk = K('task', t.id)
  if redis.call('HSETNX', tk, 'id', t.id) == 1 then
    redis.call('HSET', tk, 'rule', t.rule, 'title', t.title, 'queue', t.queue, 'due_ms', ms(t.due_ms),
      'created_ms', ms(ts), 'mention_id', mid, 'customer_id', cust, 'case_id', cid, 'status', 'open')
    redis.call('ZADD', K('tasks', 'open'), t.due_ms, t.id)
  end
end
-- outbound messages (rule replies, DM requests, webhooks), entries encoded by the injected outbox encoder
for _, o in ipairs(plan.outbox) do
  if first_send(o.id, ts) then
    post(o.stream, plan.outbox_maxlen, with_ids(o.fields, cid, cust))
  end
  if cid ~= '' and o.thread == 1 then link_thread(o.id, cid, ts) end
end

-- the customer's counters, in one write
if cust ~= '' then
  local ck = K('customer', cust)
  local function put(name, value) table.insert(cset, name); table.insert(cset, value) end
  put('mentions', (tonumber(c[2]) or 0) + 1)
  put(plan.sentiment, (tonumber(c[3]) or 0) + 1)
  if plan.query == 1 then put('queries', (tonumber(c[4]) or 0) + 1) end
  put('sentiment_sum', string.format('%.10g', (tonumber(c[5]) or 0) + tonumber(plan.score)))
  put('reach', (tonumber(c[6]) or 0) + tonumber(plan.reach))
  if ts > (tonumber(c[7]) or 0) then put('last_seen_ms', ms(ts)) end
  if plan.followers ~= '' and tonumber(plan.followers) > (tonumber(c[8]) or -1) then put('followers', plan.followers) end
  if plan.churn ~= '' and not is_prospect and ts >= (tonumber(c[9]) or 0) then
    put('churn_risk', plan.churn)
    put('churn_ts', ms(ts))
    redis.call('ZADD', K('churn'), plan.churn, cust)
  end
  if cases_total > 0 then put('cases_total', (tonumber(c[11]) or 0) + cases_total) end
  if cases_open > 0 then put('cases_open', (tonumber(c[12]) or 0) + cases_open) end
  if #plan.hits > 0 then put('pending', '1') end
  redis.call('HSET', ck, unpack(cset))
  -- an anonymous author's profile lives while they keep posting: indexed by their newest mention (event time)
  if is_prospect then redis.call('ZADD', K('prospects'), 'GT', ms(ts), cust) end
end

if cid ~= '' and not known then
  local f = redis.call('HMGET', K('case', cid), 'agent', 'status', 'priority', 'queue')
  agent, status, prio, queue = f[1] or '', f[2] or '', f[3] or '', f[4] or ''
end
local pflag = '0'
if is_prospect then pflag = '1' end
local rec = cjson.encode({r = ARGV[3], case_id = cid, case_event = cev, agent = agent, status = status,
  customer_id = cust, prospect = pflag, priority = prio, queue = queue})
redis.call('SET', done, rec)
-- forgotten processed_ttl_seconds of event time behind the CRM's watermark (RETIRE_CASES)
redis.call('ZADD', K('crm', 'donet'), ms(ts), mid)
return {'ok', rec}
"""

#: ARGV: prefix, reply id, in_reply_to, ts, by, early-reply retention (s, event time), processed-mark retention (ms),
#: stale-case time (ms). A brand reply seen on a channel.
REPLY = _LIB + r"""
local rid, irt, ts, by = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local cid = thread_of(irt)
if not cid then
  -- the mention was processed and opened no case: nothing to answer for (unless its processed mark is past
  -- its event-time retention, ARGV[7] ms behind crm:wm: then as if never seen, deleted yet or not)
  if processed(irt, tonumber(ARGV[7] or '0')) then return {'no_case', ''} end
  -- held for its mention ARGV[6] seconds of event time behind crm:wm (crm:earlyt, RETIRE_CASES)
  local existing = redis.call('GET', K('crm', 'early', irt))
  if existing then
    local et = tonumber(redis.call('ZSCORE', K('crm', 'earlyt'), irt) or '')
    if et ~= nil and et + tonumber(ARGV[6]) * 1000 < wm() then existing = false end
  end
  if not existing then
    redis.call('SET', K('crm', 'early', irt), cjson.encode({id = rid, ts = ts, by = by}))
    redis.call('ZADD', K('crm', 'earlyt'), ms(ts), irt)
  end
  return {'pending', ''}
end
-- a case stale for ARGV[8] ms (stale_case_days) behind crm:wm expires before the reply is counted
local since = stale_since(cid, tonumber(ARGV[8] or '0'), wm())
if since and not closed(redis.call('HGET', K('case', cid), 'status')) then
  expire_case(cid, since, tonumber(ARGV[8]), 500, {})
end
local r = apply_reply(cid, rid, ts, by)
return {r[1], cid, r[2]}
"""

#: ARGV: prefix, case id, reply id, ts, by, outbox stream, stream cap, then the encoded entry's field/value
#: pairs. An agent's reply: checked, posted once, counted, in one step.
REPLY_CASE = _LIB + r"""
local cid, rid, ts, by = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local st = redis.call('HGET', K('case', cid), 'status')
if not st then return {'unknown', ''} end
if redis.call('SISMEMBER', K('case', cid, 'replies'), rid) == 1 then return {'duplicate', ''} end
if closed(st) then return {st, ''} end
if first_send(rid, ts) then
  local fields = {}
  for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
  post(ARGV[6], ARGV[7], fields)
end
local r = apply_reply(cid, rid, ts, by)
return {r[1], r[2]}
"""

#: ARGV: prefix, case id, ts, by, drain limit. Closes a case, frees its agent, assigns waiting cases.
RESOLVE = _LIB + r"""
local res = resolve(ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), {})
if res == 'unknown' or res == 'already' then return {res} end
return {'resolved', res}
"""

#: ARGV: prefix, cutoff (ms: replied at or before it), idle (ms), limit, drain limit. Resolves replied cases the
#: customer has not come back to for ``idle`` ms, at the moment that idle time ran out; returns case ids
#: resolved and (case, agent) pairs assigned from the queues with the freed slots.
AUTO_RESOLVE = _LIB + r"""
local cutoff, idle, limit, dlimit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local done, moved = {}, {}
for _, cid in ipairs(redis.call('ZRANGEBYSCORE', K('cases', 'replied'), '-inf', ms(cutoff), 'WITHSCORES',
    'LIMIT', 0, limit * 2)) do
  table.insert(done, cid)
end
local resolved = {}
for i = 1, #done, 2 do
  local cid, at = done[i], tonumber(done[i + 1])
  if redis.call('HGET', K('case', cid), 'status') == 'replied' then
    local r = resolve(cid, at + idle, 'auto', dlimit, moved)
    if r ~= 'unknown' and r ~= 'already' then table.insert(resolved, cid) end
  end
  redis.call('ZREM', K('cases', 'replied'), cid)  -- resolved, or the customer came back (a new reply re-adds it)
end
return {resolved, moved}
"""

#: ARGV: prefix, now (ms), stale time (ms), limit, drain limit. Expires unresolved cases without activity (opened,
#: customer mention, reply) for the stale time behind max(now, crm:wm), each at the moment it went stale, oldest
#: first; returns the case ids expired and (case, agent) pairs assigned from the queues with the freed slots.
EXPIRE_STALE = _LIB + r"""
local now, stale, limit, dlimit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if stale <= 0 then return {{}, {}} end
local W = math.max(now, wm())
local old = redis.call('ZRANGEBYSCORE', K('cases', 'active'), '-inf', '(' .. ms(W - stale), 'WITHSCORES',
  'LIMIT', 0, limit)
local expired, moved = {}, {}
for i = 1, #old, 2 do
  local cid, since = old[i], tonumber(old[i + 1])
  local st = redis.call('HGET', K('case', cid), 'status')
  if st and not closed(st) then
    expire_case(cid, since, stale, dlimit, moved)
    table.insert(expired, cid)
  end
  redis.call('ZREM', K('cases', 'active'), cid)
end
return {expired, moved}
"""

#: ARGV: prefix, agent id, name, capacity, departments, channels, languages.
AGENT_UPSERT = _LIB + r"""
local ak = K('agent', ARGV[2])
local created = redis.call('HSETNX', ak, 'id', ARGV[2])
redis.call('HSET', ak, 'name', ARGV[3], 'capacity', ARGV[4], 'departments', ARGV[5], 'channels', ARGV[6],
  'languages', ARGV[7])
redis.call('HSETNX', ak, 'load', 0)
redis.call('HSETNX', ak, 'seq', 0)
redis.call('HSETNX', ak, 'status', 'offline')
redis.call('SADD', K('agents', 'all'), ARGV[2])
redis.call('ZADD', K('agents', 'load'), redis.call('HGET', ak, 'load'), ARGV[2])
refresh_agent(ARGV[2])
return created
"""

#: ARGV: prefix, agent id, 'online'|'offline', ts, drain limit. Offline hands the agent's cases on.
AGENT_STATUS = _LIB + r"""
local id, st, ts, limit = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local ak = K('agent', id)
if redis.call('EXISTS', ak) == 0 then return {'unknown', {}} end
redis.call('HSET', ak, 'status', st, 'status_ms', ts)
if st == 'online' then
  redis.call('SADD', K('agents', 'online'), id)
  refresh_agent(id)
  return {'online', drain_agent(id, ts, limit, {})}
end
redis.call('SREM', K('agents', 'online'), id)
refresh_agent(id)
local cases = redis.call('SMEMBERS', K('agent', id, 'cases'))
local order = {}
for _, cid in ipairs(cases) do
  local f = redis.call('HMGET', K('case', cid), 'queue', 'created_ms', 'status')
  release(cid, id, true)
  if f[3] == 'assigned' then redis.call('HSET', K('case', cid), 'status', 'open') end
  enqueue(cid, f[1], tonumber(f[2]) or tonumber(ts))
  event(cid, ts, 'unassigned', {agent = id, reason = 'agent_offline'})
  table.insert(order, {cid, tonumber(f[2]) or 0})
end
-- cases already waiting could not go to anyone with room; only the released ones need placing
table.sort(order, function(x, y) if x[2] ~= y[2] then return x[2] < y[2] end return x[1] < y[1] end)
local moved = {}
for _, c in ipairs(order) do
  local f = redis.call('HMGET', K('case', c[1]), 'queue', 'channel', 'lang', 'strategy')
  local agent = pick_agent(f[1], f[2], f[3], f[4], nil)
  if agent then
    assign_to(c[1], agent, ts)
    table.insert(moved, c[1]); table.insert(moved, agent)
  end
end
return {'offline', moved, cases}
"""

#: ARGV: prefix, agent id, capacity, ts, drain limit.
CAPACITY = _LIB + r"""
local ak = K('agent', ARGV[2])
if redis.call('EXISTS', ak) == 0 then return {'unknown', {}} end
redis.call('HSET', ak, 'capacity', ARGV[3])
refresh_agent(ARGV[2])
return {'ok', drain_agent(ARGV[2], ARGV[4], tonumber(ARGV[5]), {})}
"""

#: ARGV: prefix, ts, drain limit.
DRAIN = _LIB + r"""
return drain(ARGV[2], tonumber(ARGV[3]), {})
"""

#: ARGV: prefix, now (ms), limit[, memo key, memo ttl s]. Fires each SLA timer that is due: a warning first, then
#: the breach. With a memo key, the first scan's result is kept there and a second scan returns it unchanged.
SLA_SCAN = _LIB + r"""
local now, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local memo = ARGV[4] or ''
if memo ~= '' then
  local prev = redis.call('GET', memo)
  if prev then return cjson.decode(prev) end
end
local out = {}
for _, cid in ipairs(redis.call('ZRANGEBYSCORE', K('cases', 'sla'), '-inf', ms(now), 'LIMIT', 0, limit)) do
  local ck = K('case', cid)
  local f = redis.call('HMGET', ck, 'status', 'due_ms', 'warn_ms', 'sla_warned', 'sla_breached')
  if not f[1] or closed(f[1]) or not f[2] or f[2] == '' then
    redis.call('ZREM', K('cases', 'sla'), cid)
  else
    local due = tonumber(f[2])
    if now >= due then
      redis.call('ZREM', K('cases', 'sla'), cid)
      if f[5] ~= f[2] then
        redis.call('HSET', ck, 'sla_breached', f[2])
        redis.call('HINCRBY', ck, 'sla_breaches', 1)
        stat('sla_breaches')
        event(cid, now, 'sla_breach', {due_ms = f[2]})
        table.insert(out, cid); table.insert(out, 'breach')
      end
    else
      redis.call('ZADD', K('cases', 'sla'), due, cid)
      if f[4] ~= f[2] then
        redis.call('HSET', ck, 'sla_warned', f[2])
        event(cid, now, 'sla_warning', {due_ms = f[2]})
        table.insert(out, cid); table.insert(out, 'warning')
      end
    end
  end
end
-- kept like processed marks: retired by event time with its tick (crm:tickt), or a TTL if given. A scan that fired
-- nothing writes nothing (run again, it fires nothing again: nothing else changed), so a tick that had nothing to
-- do leaves no trace and skipping it (crm.processor does when no timer can be due) gives the same keys
if memo ~= '' and #out > 0 then
  local ttl = tonumber(ARGV[5] or '0')
  if ttl > 0 then redis.call('SET', memo, cjson.encode(out), 'EX', ttl) else redis.call('SET', memo, cjson.encode(out)) end
end
return out
"""

#: ARGV: prefix, code, channel, handle, mention id, now (ms), history keep.
REDEEM = _LIB + r"""
local code, channel, handle, mid, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local lk = K('linkcode', code)
local f = redis.call('HMGET', lk, 'customer_id', 'expires_ms', 'used_by')
if not f[1] then return {'unknown', ''} end
local who = channel .. ':' .. handle
if f[3] and f[3] ~= '' then
  -- the same redemption again (a replay, a retry after an outage): the same answer
  if f[3] == who then return {'linked', f[1], redis.call('HGET', lk, 'merged') or ''} end
  return {'used', f[1], f[3]}
end
if tonumber(now) > tonumber(f[2]) then return {'expired', f[1], f[2]} end
local cur = redis.call('GET', K('identity', channel, handle))
cur = follow_merges(cur or '')
if cur ~= '' and cur ~= f[1] and redis.call('HGET', K('customer', cur), 'kind') ~= 'prospect' then
  return {'taken', f[1], cur}
end
redis.call('HSET', lk, 'used_by', who, 'used_mention', mid, 'used_ms', now)
redis.call('SET', K('identity', channel, handle), f[1])
redis.call('SADD', K('customer', f[1], 'handles'), who)
local merged = ''
if cur ~= '' and cur ~= f[1] and merge_prospect(cur, f[1], now, tonumber(ARGV[7])) == 1 then merged = cur end
if merged ~= '' then redis.call('HSET', lk, 'merged', merged) end
return {'linked', f[1], merged}
"""

#: ARGV: prefix, prospect id, customer id, now, history keep.
MERGE = _LIB + r"""
return merge_prospect(ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]))
"""

#: ARGV: prefix, customer id, fields JSON (object of strings), handles JSON (list of channel:handle), now, keep,
#: soft handles JSON. Stores the row only if none of its handles belongs to another customer (soft handles
#: owned by someone else are skipped instead); prospects on them are merged.
IMPORT_CUSTOMER = _LIB + r"""
local cid = ARGV[2]
local fields = cjson.decode(ARGV[3])
local handles = cjson.decode(ARGV[4])
local soft = cjson.decode(ARGV[7])
local ck = K('customer', cid)
local kind = redis.call('HGET', ck, 'kind')
if kind == 'prospect' or kind == 'merged' then return {'conflict', 'id ' .. cid .. ' names a prospect profile'} end
local prospects, link, skipped = {}, {}, {}
local function owner_of(h)
  return follow_merges(redis.call('GET', P .. 'identity:' .. h) or '')
end
for _, h in ipairs(handles) do
  local owner = owner_of(h)
  if owner ~= '' and owner ~= cid then
    if redis.call('HGET', K('customer', owner), 'kind') == 'prospect' then
      table.insert(prospects, owner)
    else
      return {'conflict', 'handle ' .. h .. ' already belongs to customer ' .. owner}
    end
  end
  table.insert(link, h)
end
local soft_linked = 0
for _, h in ipairs(soft) do
  local owner = owner_of(h)
  if owner ~= '' and owner ~= cid and redis.call('HGET', K('customer', owner), 'kind') ~= 'prospect' then
    table.insert(skipped, h); table.insert(skipped, owner)
  else
    if owner ~= '' and owner ~= cid then table.insert(prospects, owner) end
    table.insert(link, h)
    soft_linked = soft_linked + 1
  end
end
local created = 0
if not kind then created = 1 end
local args = {}
for k2, v in pairs(fields) do table.insert(args, k2); table.insert(args, v) end
redis.call('HSET', ck, 'id', cid, 'kind', 'customer', unpack(args))
redis.call('SADD', K('customers'), cid)
for _, h in ipairs(link) do
  redis.call('SET', P .. 'identity:' .. h, cid)
  redis.call('SADD', K('customer', cid, 'handles'), h)
end
local merged = {}
for _, pid in ipairs(prospects) do
  if merge_prospect(pid, cid, ARGV[5], tonumber(ARGV[6])) == 1 then table.insert(merged, pid) end
end
return {'ok', created, merged, soft_linked, skipped}
"""

#: ARGV: prefix, code, customer id, created (ms), expires (ms), keep for (ms of wall time). 0 when the code exists.
LINK_PUT = _LIB + r"""
local lk = K('linkcode', ARGV[2])
if redis.call('EXISTS', lk) == 1 then return 0 end
redis.call('HSET', lk, 'code', ARGV[2], 'customer_id', ARGV[3], 'created_ms', ARGV[4], 'expires_ms', ARGV[5])
redis.call('PEXPIRE', lk, ARGV[6])
return 1
"""

#: ARGV: prefix, case retention (ms), limit, processed-mark retention (ms), prospect retention (ms), task retention
#: (ms), early-reply retention (ms). Deletes, behind the CRM's watermark (``crm:wm``, event time): closed
#: (resolved or expired) cases closed more than the case retention before it (their hash, events, replies, tags
#: and index entries); the processed marks of mentions and the timer ticks older than the mark retention; thread
#: links and outbox sent-once marks older than ``KEEP_S``; prospects silent longer than the prospect retention;
#: rule tasks due longer ago than the task retention; early replies held longer than theirs (0: keep).
#: Returns the largest number of entries one of these walks took (at most ``limit``: more may be left).
#: With a sweep slack (ARGV[8], ms > 0) it does all that only once some entry is that far past its retention or
#: one index has ARGV[9] entries past theirs, and nothing before (the automatic ticks sweep in bursts at moments
#: that follow from the data, not at every tick).
RETIRE_CASES = _LIB + r"""
local W = wm()
local RET, RETP = tonumber(ARGV[2]), tonumber(ARGV[4] or '0')
local PRET, TRET, ERET = tonumber(ARGV[5] or '0'), tonumber(ARGV[6] or '0'), tonumber(ARGV[7] or '0')
local LIMIT = tonumber(ARGV[3])
local SLACK, FULL = tonumber(ARGV[8] or '0'), tonumber(ARGV[9] or '0')
if W < 0 then return 0 end
if SLACK > 0 then
  local due, key = sweep_due({RET, RETP, PRET, TRET, ERET}, SLACK, FULL)
  if due >= W then
    sweep_seen = {key, due}
    return 0
  end
end
local most = 0
-- the members of index z scored before W - ret (oldest first, at most LIMIT), handed to gone(id), then unindexed
local function walk(z, ret, gone)
  if ret <= 0 then return end
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', '(' .. ms(W - ret), 'LIMIT', 0, LIMIT)
  for _, id in ipairs(old) do gone(id) end
  if #old > 0 then redis.call('ZREM', z, unpack(old)) end
  if #old > most then most = #old end
end
walk(K('threadt'), KEEP_S * 1000, function(id) redis.call('DEL', K('thread', id)) end)
walk(K('outbox', 'sentt'), KEEP_S * 1000, function(id) redis.call('DEL', K('outbox', 'sent', id)) end)
walk(K('crm', 'donet'), RETP, function(mid) redis.call('DEL', K('crm', 'done', mid)) end)
walk(K('crm', 'tickt'), RETP, function(p) redis.call('DEL', K('crm', 'tick', p), K('crm', 'tickscan', p)) end)
walk(K('prospects'), PRET, forget_prospect)
walk(K('tasks', 'open'), TRET, function(id) redis.call('DEL', K('task', id)) end)
walk(K('crm', 'earlyt'), ERET, function(id) redis.call('DEL', K('crm', 'early', id)) end)
if RET <= 0 then return most end
local closedz = K('cases', 'closed')
local gone = redis.call('ZRANGEBYSCORE', closedz, '-inf', '(' .. ms(W - RET), 'LIMIT', 0, tonumber(ARGV[3]))
for _, cid in ipairs(gone) do
  local f = redis.call('HMGET', K('case', cid), 'status', 'customer_id')
  if closed(f[1]) then
    redis.call('DEL', K('case', cid), K('case', cid, 'events'), K('case', cid, 'replies'), K('case', cid, 'tags'))
    redis.call('ZREM', K('cases', 'all'), cid)
    if f[2] and f[2] ~= '' then redis.call('ZREM', K('customer', f[2], 'cases'), cid) end
  end
  redis.call('ZREM', closedz, cid)
end
if #gone > most then most = #gone end
return most
"""

#: ARGV: prefix, auto-resolve idle (ms), stale time (ms), sweep slack (ms), sweep count, then the five retentions of
#: RETIRE_CASES (case, processed, prospect, task, early reply; ms), a memo key of SLA_SCAN (or ''), then tick periods.
#: What the automatic ticks need to know, in one call: {newest tick period ('' if none), crm:wm, the earliest event
#: time at which a tick can do anything ('' if nothing can ever be due), the flat HGETALL of each case the memo's
#: scan fired (in its order), the stored tick of each period ('' if none), the earliest event time at which a tick
#: can do more than fire SLA warnings and breaches ('' if never)}. A tick before the first time has nothing to
#: fire (SLA_SCAN), resolve (AUTO_RESOLVE), expire (EXPIRE_STALE) or sweep (RETIRE_CASES with that slack); one
#: before the last changes nothing but its cases' SLA marks (nothing a mention's context reads). A sweep slack < 0
#: asks for the SLA timers alone (the state after an SLA-only tick): the third is then the next SLA timer, the sixth
#: '-'. Then the next SLA_AHEAD SLA timers, flat (time, their case's due_ms or ''), and the time of the one after
#: them ('' if none): enough for crm.ticks.DueBound.fired to follow a few SLA-only ticks without asking again.
TIMER_STATE = _LIB + r"""
local idle, stale, slack, full = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local rets = {tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])}
-- the next SLA timers (their time and their case's deadline: a warning's timer moves there) and the one after them
local nxt, sched, rest = redis.call('ZRANGE', K('cases', 'sla'), 0, SLA_AHEAD, 'WITHSCORES'), {}, ''
for i = 1, #nxt - 1, 2 do
  if i > 2 * SLA_AHEAD then rest = nxt[i + 1] else
    sched[#sched + 1] = nxt[i + 1]
    sched[#sched + 1] = redis.call('HGET', K('case', nxt[i]), 'due_ms') or ''
  end
end
local sla = INF
if #nxt > 0 then sla = tonumber(nxt[2]) end
local due = INF  -- what changes more than a case's SLA marks: resolve, expire, sweep
local change = ''
if slack < 0 then
  change = '-'  -- after an SLA-only tick: the caller keeps its own bound of the rest (the tick did not move it)
else
  local early = lowest(K('crm', 'earlyt'), 1)  -- a held reply joins its case when the mention comes: replied, active
  if idle > 0 then due = math.min(due, lowest(K('cases', 'replied'), 1) + idle, early + idle) end
  if stale > 0 then due = math.min(due, lowest(K('cases', 'active'), 1) + stale, early + stale) end
  if slack > 0 then due = math.min(due, (sweep_due(rets, slack, full))) else due = math.min(due, retire_due(rets, 0)) end
  if due < INF / 2 then change = ms(math.floor(due)) end
end
due = math.min(due, sla)
local cases = {}
if ARGV[11] ~= '' then
  local memo = redis.call('GET', ARGV[11])
  if memo then
    local fired = cjson.decode(memo)
    for i = 1, #fired - 1, 2 do cases[#cases + 1] = redis.call('HGETALL', K('case', fired[i])) end
  end
end
local ticks = {}
for i = 12, #ARGV do ticks[#ticks + 1] = redis.call('GET', K('crm', 'tick', ARGV[i])) or '' end
local d = ''
if due < INF / 2 then d = ms(math.floor(due)) end
return {redis.call('GET', K('crm', 'tick', 'last')) or '', ms(wm()), d, cases, ticks, change, sched, rest}
"""

#: ARGV: prefix, period (ms), the tick's record JSON (or '' to only move the newest period). Stores a tick that
#: fired alerts (who triggered it, when, the alerts) so a replay returns them, indexed for retirement, and makes its
#: period the newest one ticked (never moving it back).
REMEMBER_TICK = _LIB + r"""
store_tick(ARGV[2], ARGV[3])
return 1
"""

#: ARGV: prefix, period (ms), the mention that ticked, the tick's event time (ms), the SLA scan's memo key. Run last
#: in a TICK: when the scan fired anything (its memo exists), stores the tick as the JSON array [mention, time,
#: the memo's flat (case, stage) list, each fired case's fields now, by name], indexed for retirement, and makes its
#: period the newest ticked; returns those fields (none when nothing fired): the live alerts are built from them.
#: Stored in the same atomic call as the timers ran, so a replay after a crash at any point returns the same alerts
#: (crm.processor builds them from the record) and does not tick again.
KEEP_TICK = _LIB + r"""
local p, memo = ARGV[2], ARGV[5]
local raw = false
if memo ~= '' then raw = redis.call('GET', memo) end
if not raw then return {} end
local fired = cjson.decode(raw)
local cases = {}
for i = 1, #fired - 1, 2 do
  -- fields by name: a hash's own order depends on its encoding and the server's hash seed, not on the input
  local h, names, by = redis.call('HGETALL', K('case', fired[i])), {}, {}
  for j = 1, #h - 1, 2 do names[#names + 1] = h[j]; by[h[j]] = h[j + 1] end
  table.sort(names)
  local flat = {}
  for _, f in ipairs(names) do flat[#flat + 1] = f; flat[#flat + 1] = by[f] end
  cases[#cases + 1] = flat
end
store_tick(p, cjson.encode({ARGV[3], ARGV[4], fired, cases}))
return cases
"""


def batch(*names: str) -> str:
    """One script running the bodies of the scripts ``names`` in the order its call lists them: ARGV is the prefix,
    then per call its script's name, its argument count and its arguments (each script's own ARGV after the
    prefix); it returns the list of their replies. One call instead of several: the timers of a tick in one
    round of the server's script machinery (:data:`TICK`).

    >>> "RUN['SLA_SCAN'] = function(ARGV)" in batch("SLA_SCAN")
    True
    """
    parts = [_LIB, "local RUN = {}\n"]
    for name in names:
        parts.append(f"RUN['{name}'] = function(ARGV)\n{globals()[name][len(_LIB):]}\nend\n")
    parts.append(r"""
local out, i = {}, 2
while i <= #ARGV do
  local name, n = ARGV[i], tonumber(ARGV[i + 1])
  local a = {P}
  for j = 1, n do a[j + 1] = ARGV[i + 1 + j] end
  if name ~= 'TIMER_STATE' then sweep_seen = nil end
  local r = RUN[name](a)
  if r == nil then r = false end
  out[#out + 1] = r
  i = i + 2 + n
end
return out
""")
    return "".join(parts)


#: ARGV: prefix, then calls of AUTO_RESOLVE, SLA_SCAN, EXPIRE_STALE, RETIRE_CASES, TIMER_STATE and KEEP_TICK as :func:`batch`
#: takes them: one automatic tick of the timers (``crm.store.RedisCrmStore.timers``) in one script call.
TICK = batch("AUTO_RESOLVE", "SLA_SCAN", "EXPIRE_STALE", "RETIRE_CASES", "TIMER_STATE", "KEEP_TICK")
