"""The CRM's store port (a ``typing.Protocol``) and its Redis adapter, chosen in one factory.

Domain code talks to :class:`CrmStore` only. :class:`RedisCrmStore` keeps everything under the key
layout of :mod:`crm.keys`; decisions that must be atomic across workers run as server-side scripts
(:mod:`crm._lua`), and reads/writes for many mentions go out in one pipelined round trip.

>>> from crm.keys import CrmKeys
>>> isinstance(CrmKeys("x:"), CrmKeys)
True
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import orjson
import redis

from crm import _lua
from crm.keys import CrmKeys

__all__ = ["CrmStore", "RedisCrmStore", "Retention", "TimerCall", "TimerRun", "TimerState", "make_store"]

log = logging.getLogger(__name__)

#: How many queued cases per queue one drain looks at (oldest first).
DRAIN_LIMIT = 500
#: How many script calls :meth:`RedisCrmStore.apply_ops` sends at a time while the caller plans the rest.
STREAM_CHUNK = 16
#: A retention sweep made late (a slack) still runs as soon as one index has this many entries past retention.
SWEEP_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Retention:
    """How long (ms of event time behind the CRM's watermark ``crm:wm``) each kind of CRM key is kept; 0 keeps it.

    Built from :class:`crm.settings.CrmSettings` by :meth:`crm.processor.CrmProcessor.retention`.

    >>> Retention(case_ms=1).args()
    (1, 0, 0, 0, 0)
    """

    #: closed (resolved or expired) cases, after closing
    case_ms: int = 0
    #: processed-mention marks and timer ticks
    processed_ms: int = 0
    #: prospects, after their newest mention
    prospect_ms: int = 0
    #: rule tasks, after their due time
    task_ms: int = 0
    #: brand replies held for a mention not seen yet
    early_ms: int = 0
    #: an unresolved case without activity (opened, customer mention, reply) this long expires
    stale_ms: int = 0

    def args(self) -> tuple[int, int, int, int, int]:
        """RETIRE_CASES' retention arguments after the limit: case, processed, prospect, task, early-reply."""
        return self.case_ms, self.processed_ms, self.prospect_ms, self.task_ms, self.early_ms


@dataclass(slots=True)
class TimerState:
    """What the automatic ticks know of the timers (:meth:`RedisCrmStore.timer_state`).

    >>> TimerState(None, -1, None).next_due is None
    True
    """

    #: the newest event-time period a tick was stored for (None: never)
    last: int | None
    #: the CRM's watermark ``crm:wm`` (-1: nothing processed)
    watermark: int
    #: the earliest event time at which a tick can fire, resolve, expire or sweep anything (None: never)
    next_due: int | None
    #: the stored ticks of the periods asked for
    ticks: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: the hashes of the cases the memo's SLA scan fired, in its order (None for a case gone)
    cases: list[dict[str, str] | None] = field(default_factory=list)
    #: the earliest event time at which a tick can do more than fire SLA warnings and breaches (resolve, expire,
    #: sweep: change what a mention's context reads); None: never, or not looked up: after an SLA-only run
    #: (:attr:`TimerCall.sla_only`, which cannot have moved it), whose ``next_due`` is the next SLA timer alone
    next_change: int | None = None
    #: the next SLA timers (event time, their case's deadline ``due_ms`` or None), soonest first, and the time of
    #: the one after them (None: no other): :meth:`crm.ticks.DueBound.fired` follows them through SLA-only ticks
    sla: list[tuple[int, int | None]] = field(default_factory=list)
    sla_rest: int | None = None


@dataclass(frozen=True, slots=True)
class TimerCall:
    """What one run of the timers does (:meth:`RedisCrmStore.timers`, or an ``("timers", call)`` op of
    :meth:`RedisCrmStore.apply_ops`): auto-resolve after ``idle_ms`` (0: off), the SLA scan (``memo``: see
    :meth:`RedisCrmStore.sla_scan`), stale expiry and retirement by ``retention`` (sweeping ``slack_ms`` late, or as
    soon as ``limit`` entries of one index are due), and, with ``state``, :meth:`RedisCrmStore.timer_state` right
    after."""

    now_ms: int
    idle_ms: int
    limit: int
    memo: str = ""
    memo_ttl_s: int = 0
    retention: Retention = Retention()
    slack_ms: int = 0
    state: bool = False
    #: an automatic tick's (period, mention): when the SLA scan fired anything, the call stores the tick's record
    #: itself (KEEP_TICK), so that a replay after a crash at any point returns the same alerts
    keep: tuple[int, str] | None = None
    #: the caller knows that nothing but SLA timers can be due (:class:`crm.ticks.DueBound`): only the SLA scan
    #: runs (auto-resolve, expiry and retirement would find nothing), and the state after it leaves out the rest
    sla_only: bool = False


@dataclass(slots=True)
class TimerRun:
    """One run of the timers (:meth:`RedisCrmStore.timers`)."""

    #: cases resolved or expired
    closed: list[str]
    #: (case, agent) pairs assigned from the queues with the freed slots
    assigned: list[tuple[str, str]]
    #: (case, "warning"|"breach") SLA timers fired
    fired: list[tuple[str, str]]
    #: the most entries one retirement walk took (``limit``: maybe more left)
    retired: int
    #: the timers' state right after the run (when asked for)
    state: TimerState | None = None


def _s(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    it = iter(flat)
    return {k: v if isinstance(v, str) else _s(v) for k, v in zip(it, it, strict=False)}


def _hash(raw: dict[Any, Any]) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in raw.items()}


def _tick_record(raw: Any) -> dict[str, Any]:
    """A stored tick: ``{"by", "at", "alerts"}`` (written by REMEMBER_TICK before 2026-11-30) or, as KEEP_TICK
    writes it, ``{"by", "at", "fired": [(case, stage)], "cases": [case hash or None]}``.

    >>> _tick_record('["twitter:3", "60000", ["C-1", "warning"], [["id", "C-1"]]]')["fired"]
    [('C-1', 'warning')]
    """
    rec = orjson.loads(raw)
    if isinstance(rec, dict):
        return rec
    by, at, fired, cases = rec
    return {"by": by, "at": int(at), "fired": _flat_pairs(fired),
            "cases": [_pairs(c) or None if isinstance(c, list) else None for c in cases]}


@runtime_checkable
class CrmStore(Protocol):
    """Everything the CRM reads and writes. Values are plain strings/dicts; times are epoch ms.

    >>> isinstance(object(), CrmStore)
    False
    """

    keys: CrmKeys

    # -- processing mentions ---------------------------------------------------------------
    def load_contexts(self, requests: Sequence[dict[str, Any]]) -> list[dict[str, Any]]: ...
    def apply_ops(self, ops: Iterable[tuple[str, Any]]) -> list[dict[str, Any]]: ...
    def record_reply(self, reply_id: str, in_reply_to: str, ts_ms: int, by: str, early_ttl_s: int,
                     processed_ms: int = 0, stale_ms: int = 0) -> dict[str, str]: ...

    # -- cases ------------------------------------------------------------------------------
    def reply_case(self, case_id: str, reply_id: str, ts_ms: int, by: str, channel: str, fields: Sequence[str],
                   maxlen: int) -> tuple[str, str]: ...
    def resolve_case(self, case_id: str, ts_ms: int, by: str) -> tuple[str, list[tuple[str, str]]]: ...
    def sla_scan(self, now_ms: int, limit: int, memo: str = "", memo_ttl_s: int = 0) -> list[tuple[str, str]]: ...
    def timer_state(self, retention: Retention, idle_ms: int, slack_ms: int, periods: Sequence[int] = (),
                    memo: str = "", limit: int = ...) -> TimerState: ...
    def remember_tick(self, period: int, record: dict[str, Any] | None) -> None: ...
    def retire_cases(self, retention: Retention, limit: int) -> int: ...
    def auto_resolve(self, now_ms: int, idle_ms: int, limit: int) -> tuple[list[str], list[tuple[str, str]]]: ...
    def expire_stale(self, now_ms: int, stale_ms: int, limit: int) -> tuple[list[str], list[tuple[str, str]]]: ...
    def timers(self, now_ms: int, idle_ms: int, limit: int, memo: str = "", memo_ttl_s: int = 0,
               retention: Retention | None = None, *, slack_ms: int = 0, state: bool = False) -> TimerRun: ...
    def get_case(self, case_id: str) -> dict[str, str] | None: ...
    def get_cases(self, case_ids: Sequence[str]) -> list[dict[str, str] | None]: ...
    def case_events(self, case_id: str) -> list[dict[str, Any]]: ...
    def case_tags(self, case_id: str) -> list[str]: ...
    def case_ids(self, *, open_only: bool, limit: int) -> list[str]: ...
    def case_stats(self) -> dict[str, int]: ...
    def case_count(self, *, open_only: bool) -> int: ...
    def newest_case_ms(self) -> int | None: ...

    # -- customers and identity ------------------------------------------------------------------
    def get_customer(self, customer_id: str) -> dict[str, str] | None: ...
    def get_customers(self, customer_ids: Sequence[str]) -> list[dict[str, str] | None]: ...
    def customer_handles(self, customer_id: str) -> list[str]: ...
    def customer_history(self, customer_id: str, n: int) -> list[dict[str, Any]]: ...
    def customer_case_ids(self, customer_id: str, n: int) -> list[str]: ...
    def customer_tags(self, customer_id: str) -> list[str]: ...
    def customer_merged(self, customer_id: str) -> list[str]: ...
    def churn_risk(self, customer_id: str) -> float | None: ...
    def lookup_identity(self, channel: str, handle: str) -> str | None: ...
    def resolve_identities(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str] | None]: ...
    def import_customers(self, rows: Sequence[tuple[str, dict[str, str], list[str], list[str]]], now_ms: int, keep: int) -> list[tuple[str, Any]]: ...
    def merge_prospect(self, prospect_id: str, customer_id: str, now_ms: int, keep: int) -> bool: ...
    def count_customers(self) -> int: ...

    # -- link codes -------------------------------------------------------------------------------
    def put_link_code(self, code: str, customer_id: str, created_ms: int, expires_ms: int) -> bool: ...
    def redeem_link_code(self, code: str, channel: str, handle: str, mention_id: str, now_ms: int, keep: int) -> tuple[str, str, str]: ...

    # -- agents and queues -----------------------------------------------------------------------------
    def upsert_agent(self, agent_id: str, name: str, capacity: int, departments: str, channels: str, languages: str) -> bool: ...
    def set_agent_status(self, agent_id: str, online: bool, ts_ms: int) -> tuple[str, list[tuple[str, str]], list[str]]: ...
    def set_agent_capacity(self, agent_id: str, capacity: int, ts_ms: int) -> tuple[str, list[tuple[str, str]]]: ...
    def drain_queues(self, ts_ms: int) -> list[tuple[str, str]]: ...
    def get_agent(self, agent_id: str) -> dict[str, str] | None: ...
    def list_agents(self) -> list[dict[str, str]]: ...
    def agent_case_ids(self, agent_id: str) -> list[str]: ...
    def queue_case_ids(self, queue: str) -> list[str]: ...
    def queue_names(self) -> list[str]: ...
    def queue_summary(self) -> list[tuple[str, int, int | None]]: ...

    # -- knowledge base ------------------------------------------------------------------------------
    def kb_put_articles(self, articles: Sequence[dict[str, str]]) -> int: ...
    def kb_articles(self) -> list[dict[str, str]]: ...
    def kb_versions(self) -> tuple[int, int]: ...
    def kb_add_feedback(self, article_id: str, terms: Iterable[str]) -> None: ...
    def kb_feedback(self) -> dict[tuple[str, str], int]: ...

    # -- rules, tasks ------------------------------------------------------------------------------
    def rule_stats(self) -> dict[str, int]: ...
    def record_rule_outcome(self, rule: str, outcome: str, n: int) -> None: ...
    def tasks(self, limit: int) -> list[dict[str, str]]: ...


class RedisCrmStore:
    """:class:`CrmStore` on Redis (standalone, or any server speaking the same commands and Lua).

    >>> RedisCrmStore.__name__
    'RedisCrmStore'
    """

    def __init__(self, client: redis.Redis, prefix: str = "pulse:") -> None:
        # the store reads text: a client on the same server that decodes replies (hiredis does it in C)
        pool = client.connection_pool
        self.client: Any
        if pool.connection_kwargs.get("decode_responses"):
            self.client = client
        else:
            kwargs = dict(pool.connection_kwargs, decode_responses=True)
            self.client = redis.Redis(connection_pool=redis.ConnectionPool(
                connection_class=pool.connection_class, max_connections=pool.max_connections, **kwargs))
        self.keys = CrmKeys(prefix)
        self.prefix = prefix
        self._scripts = {
            name: client.register_script(getattr(_lua, name))
            for name in _lua.__all__
        }
        self._loaded = False

    def _run(self, name: str, *args: Any, pipe: Any = None) -> Any:
        script = self._scripts[name]
        return script(keys=[], args=[self.prefix, *args], client=pipe or self.client)

    # -- processing mentions ---------------------------------------------------------------
    def load_contexts(self, requests: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """For each ``{mention_id, channel, handle, customer_id, in_reply_to, history}``: what is known."""
        if not requests:
            return []
        return self._contexts(self._stream_scripts(self._context_calls(requests)))

    @staticmethod
    def _context_calls(requests: Sequence[dict[str, Any]]) -> list[tuple[str, tuple[Any, ...]]]:
        return [("CONTEXT", (q["mention_id"], q["channel"], q["handle"], q.get("customer_id") or "",
                             q.get("in_reply_to") or "", "1" if q.get("history") else "0", q.get("history") or 0,
                             q.get("processed_ms") or 0))
                for q in requests]

    @staticmethod
    def _contexts(replies: Sequence[Any]) -> list[dict[str, Any]]:
        out = []
        for raw in replies:
            if raw[0] == "duplicate":
                out.append({"duplicate": orjson.loads(raw[1])})
                continue
            out.append({
                "customer_id": _s(raw[1]),
                "customer": _pairs(raw[2]),
                "thread_case": _s(raw[3]),
                "thread_status": _s(raw[4]),
                "thread_customer": _s(raw[5]),
                "history": [orjson.loads(h) for h in raw[6] if h],
                "churn_risk": float(raw[7]) if len(raw) > 7 and raw[7] else None,
                "wm": int(raw[8]) if len(raw) > 8 else -1,
                "prospect_seen": int(float(raw[9])) if len(raw) > 9 and raw[9] else None,
            })
        return out

    def apply_ops(self, ops: Iterable[tuple[str, Any]]) -> list[dict[str, Any]]:
        """Apply, in order and each atomically, ``("commit", plan)``, ``("reply", {...})``, ``("tick", {"period",
        "record"})`` (:meth:`remember_tick`) and ``("timers", TimerCall)`` operations.

        A commit whose mention was already done returns its stored record (``duplicate`` = ``"1"``);
        a reply returns ``{"outcome", "case_id", "response_ms"}`` like :meth:`record_reply`; a tick ``{}``; timers
        ``{"run": TimerRun}`` (all of it atomic, like :meth:`timers`).
        ``ops`` may be a generator: operations go to Redis in chunks as it yields them, so Redis applies
        the first ones while the caller is still planning the rest (one connection, so still in order).
        """
        kinds: list[tuple[str, Any]] = []

        def calls() -> Iterator[tuple[str, tuple[Any, ...]]]:
            for kind, payload in ops:
                kinds.append((kind, payload))
                if kind == "reply":
                    yield "REPLY", (payload["reply_id"], payload["in_reply_to"], payload["ts_ms"], payload["by"],
                                    payload["early_ttl_s"], payload.get("processed_ms", 0),
                                    payload.get("stale_ms", 0))
                elif kind == "tick":
                    yield "REMEMBER_TICK", (payload["period"], orjson.dumps(payload["record"]))
                elif kind == "timers":
                    yield self._tick_call(payload)
                else:
                    plan = dict(payload)
                    result, summary = plan.pop("result"), plan.pop("summary")
                    yield "COMMIT", (orjson.dumps(plan), result, summary)

        replies = self._stream_scripts(calls())
        out: list[dict[str, Any]] = []
        for (kind, payload), raw in zip(kinds, replies, strict=True):
            if kind == "reply":
                out.append(_reply_record(raw))
            elif kind == "tick":
                out.append({})
            elif kind == "timers":
                out.append({"run": self._timer_run(payload, raw)})
            else:
                rec = orjson.loads(raw[1])
                rec["duplicate"] = "1" if raw[0] == "duplicate" else "0"
                out.append(rec)
        return out

    def _stream_scripts(self, calls: Iterable[tuple[str, tuple[Any, ...]]], chunk: int = STREAM_CHUNK) -> list[Any]:
        """Run scripts in order on one connection, sending every ``chunk`` calls without waiting for replies.

        A pipeline sends only once every call is known; this sends while ``calls`` is still being produced,
        then reads the replies in order. Scripts the server lost (restart, ``SCRIPT FLUSH``) are loaded
        and the calls that failed for it are run again, in order; any other error reply is raised.
        """
        if not self._loaded:
            for script in self._scripts.values():
                self.client.script_load(script.script)
            self._loaded = True
        pool = self.client.connection_pool
        conn = pool.get_connection()
        sent: list[tuple[str, tuple[Any, ...]]] = []
        replies: list[Any] = []
        try:
            pending: list[tuple[Any, ...]] = []
            for name, args in calls:
                sent.append((name, args))
                pending.append(("EVALSHA", self._scripts[name].sha, 0, self.prefix, *args))
                if len(pending) >= chunk:
                    conn.send_packed_command(conn.pack_commands(pending))
                    pending.clear()
            if pending:
                conn.send_packed_command(conn.pack_commands(pending))
            for _ in sent:
                try:
                    replies.append(conn.read_response())
                except redis.exceptions.ResponseError as exc:
                    replies.append(exc)
        except BaseException:
            conn.disconnect()  # replies left unread must not reach the connection's next user
            raise
        finally:
            pool.release(conn)
        for i, reply in enumerate(replies):
            if isinstance(reply, redis.exceptions.NoScriptError):
                name, args = sent[i]
                replies[i] = self._run(name, *args)  # a Script loads itself again on NOSCRIPT
            elif isinstance(reply, redis.exceptions.ResponseError):
                raise reply
        return replies

    def record_reply(self, reply_id: str, in_reply_to: str, ts_ms: int, by: str, early_ttl_s: int,
                     processed_ms: int = 0, stale_ms: int = 0) -> dict[str, str]:
        """A brand reply to ``in_reply_to``; held ``early_ttl_s`` of event time when its mention is not seen yet;
        a case stale for ``stale_ms`` expires first (the outcome is then ``expired``)."""
        return _reply_record(self._run("REPLY", reply_id, in_reply_to, ts_ms, by, early_ttl_s, processed_ms,
                                       stale_ms))

    # -- cases ------------------------------------------------------------------------------
    def reply_case(self, case_id: str, reply_id: str, ts_ms: int, by: str, channel: str, fields: Sequence[str],
                   maxlen: int) -> tuple[str, str]:
        """Check, post (``fields``: the encoded outbox entry, on ``channel``'s stream capped near ``maxlen``) and
        count an agent's reply in one script: ``(outcome, response ms)``."""
        raw = self._run("REPLY_CASE", case_id, reply_id, ts_ms, by, self.keys.outbox(channel), maxlen, *fields)
        return _s(raw[0]), _s(raw[1])

    def resolve_case(self, case_id: str, ts_ms: int, by: str) -> tuple[str, list[tuple[str, str]]]:
        raw = self._run("RESOLVE", case_id, ts_ms, by, DRAIN_LIMIT)
        moved = _flat_pairs(raw[1]) if len(raw) > 1 else []
        return _s(raw[0]), moved

    def sla_scan(self, now_ms: int, limit: int, memo: str = "", memo_ttl_s: int = 0) -> list[tuple[str, str]]:
        """Fire the SLA timers due by ``now_ms``: ``(case id, "warning"|"breach")``; with ``memo`` (a key), a
        scan run again returns what the first one fired instead of nothing."""
        args = (memo, max(0, memo_ttl_s)) if memo else ()
        return _flat_pairs(self._run("SLA_SCAN", now_ms, limit, *args))

    def timer_state(self, retention: Retention, idle_ms: int, slack_ms: int, periods: Sequence[int] = (),
                    memo: str = "", limit: int = SWEEP_LIMIT) -> TimerState:
        """The newest tick period, the watermark, when a timer can next be due (auto-resolve after ``idle_ms``,
        the SLA timers, stale cases and retentions of ``retention``, sweeps ``slack_ms`` late or once ``limit``
        entries are due), the stored ticks of ``periods`` and the cases the SLA scan memo ``memo`` fired, in one
        round trip."""
        return self._timer_state(self._stream_scripts([self._state_call(retention, idle_ms, slack_ms, periods,
                                                                        memo, limit)])[0], periods)

    @staticmethod
    def _state_call(retention: Retention, idle_ms: int, slack_ms: int, periods: Sequence[int],
                    memo: str, limit: int = SWEEP_LIMIT, sla_only: bool = False) -> tuple[str, tuple[Any, ...]]:
        return "TIMER_STATE", (max(0, idle_ms), max(0, retention.stale_ms), -1 if sla_only else max(0, slack_ms),
                               limit, retention.case_ms, *retention.args()[1:], memo, *periods)

    @staticmethod
    def _timer_state(raw: Sequence[Any], periods: Sequence[int]) -> TimerState:
        return TimerState(
            last=int(raw[0]) if raw[0] else None, watermark=int(raw[1]), next_due=int(raw[2]) if raw[2] else None,
            ticks={p: _tick_record(v) for p, v in zip(periods, raw[4], strict=True) if v},
            cases=[_pairs(c) or None for c in raw[3]],
            next_change=int(raw[5]) if len(raw) > 5 and raw[5] and raw[5] != "-" else None,
            sla=[(int(float(raw[6][i])), int(raw[6][i + 1]) if raw[6][i + 1] else None)
                 for i in range(0, len(raw[6]) - 1, 2)] if len(raw) > 6 else [],
            sla_rest=int(float(raw[7])) if len(raw) > 7 and raw[7] else None)

    def remember_tick(self, period: int, record: dict[str, Any] | None) -> None:
        """Store a tick (who triggered it, when, its alerts), indexed for retirement, and make its period the newest,
        atomically; with ``record`` None, only make the period the newest (never moving it back)."""
        self._stream_scripts([("REMEMBER_TICK", (period, orjson.dumps(record) if record is not None else ""))])

    def retire_cases(self, retention: Retention, limit: int) -> int:
        """Delete, behind the CRM's watermark (its newest processed mention, event time), up to ``limit`` of each
        kind of key past its ``retention`` (closed cases, processed marks and ticks, thread links, sent-once
        marks, prospects, rule tasks, early replies); the most of one kind that went (``limit``: maybe more)."""
        return int(self._run("RETIRE_CASES", retention.case_ms, limit, *retention.args()[1:]))

    def auto_resolve(self, now_ms: int, idle_ms: int, limit: int) -> tuple[list[str], list[tuple[str, str]]]:
        """Resolve replied cases idle (no customer mention) for ``idle_ms`` by ``now_ms``: (resolved, assigned)."""
        raw = self._run("AUTO_RESOLVE", now_ms - idle_ms, idle_ms, limit, DRAIN_LIMIT)
        return [_s(c) for c in raw[0]], _flat_pairs(raw[1])

    def expire_stale(self, now_ms: int, stale_ms: int, limit: int) -> tuple[list[str], list[tuple[str, str]]]:
        """Expire up to ``limit`` unresolved cases without activity for ``stale_ms`` behind max(``now_ms``, the
        watermark): (expired, assigned from the queues with the freed slots)."""
        raw = self._run("EXPIRE_STALE", now_ms, stale_ms, limit, DRAIN_LIMIT)
        return [_s(c) for c in raw[0]], _flat_pairs(raw[1])

    def timers(self, now_ms: int, idle_ms: int, limit: int, memo: str = "", memo_ttl_s: int = 0,
               retention: Retention | None = None, *, slack_ms: int = 0, state: bool = False) -> TimerRun:
        """:meth:`auto_resolve` (when ``idle_ms`` > 0), :meth:`sla_scan`, :meth:`expire_stale` (when
        ``retention.stale_ms`` > 0), then :meth:`retire_cases` (sweeping ``slack_ms`` late), in one script call
        (TICK, atomic); with ``state``, :meth:`timer_state` right after (with the cases the scan fired, when
        ``memo`` is given). Sparse streams tick at almost every mention: the calls and round trips count (the
        processor runs its ticks in the round trip of the mentions before them, as ``("timers", call)`` ops of
        :meth:`apply_ops`, whose :class:`TimerCall` can also store a tick that fired: ``keep``)."""
        call = TimerCall(now_ms, idle_ms, limit, memo, memo_ttl_s, retention or Retention(), slack_ms, state)
        return self._timer_run(call, self._stream_scripts([self._tick_call(call)])[0])

    def _tick_call(self, t: TimerCall) -> tuple[str, tuple[Any, ...]]:
        """The timers of ``t`` as one call of the TICK script (:func:`crm._lua.batch`)."""
        args: list[Any] = []
        for name, call_args in self._timer_calls(t):
            args += [name, len(call_args), *call_args]
        return "TICK", tuple(args)

    def _timer_calls(self, t: TimerCall) -> list[tuple[str, tuple[Any, ...]]]:
        ret = t.retention
        calls: list[tuple[str, tuple[Any, ...]]] = []
        if t.idle_ms > 0 and not t.sla_only:
            calls.append(("AUTO_RESOLVE", (t.now_ms - t.idle_ms, t.idle_ms, t.limit, DRAIN_LIMIT)))
        # SLA timers before expiry: a deadline passes long before a case goes stale, so its breach fires first
        calls.append(("SLA_SCAN", (t.now_ms, t.limit, *((t.memo, max(0, t.memo_ttl_s)) if t.memo else ()))))
        if not t.sla_only:
            if ret.stale_ms > 0:
                calls.append(("EXPIRE_STALE", (t.now_ms, ret.stale_ms, t.limit, DRAIN_LIMIT)))
            calls.append(("RETIRE_CASES", (ret.case_ms, t.limit, *ret.args()[1:], max(0, t.slack_ms), t.limit)))
        keep = t.keep is not None and bool(t.memo)
        if t.state:  # (the fired cases come from KEEP_TICK when it runs)
            calls.append(self._state_call(ret, t.idle_ms, t.slack_ms, (), "" if keep else t.memo, t.limit,
                                          t.sla_only))
        if keep:
            assert t.keep is not None
            calls.append(("KEEP_TICK", (t.keep[0], t.keep[1], t.now_ms, t.memo)))
        return calls

    def _timer_run(self, t: TimerCall, raw: Sequence[Any]) -> TimerRun:
        kept = None
        if t.keep is not None and t.memo:
            kept, raw = raw[-1], raw[:-1]  # KEEP_TICK's reply: the fired cases' fields, as stored
        n = len(raw) - (1 if t.state else 0)  # the timers' own replies, then the state
        closed: list[str] = []
        assigned: list[tuple[str, str]] = []
        state = self._timer_state(raw[n], ()) if t.state else None
        if state is not None and kept is not None:
            state.cases = [_pairs(c) or None for c in kept]
        if t.sla_only:  # the SLA scan alone
            return TimerRun(closed, assigned, _flat_pairs(raw[0]), 0, state=state)
        parts = ([raw[0]] if t.idle_ms > 0 else []) + ([raw[n - 2]] if t.retention.stale_ms > 0 else [])
        for part in parts:
            closed.extend(_s(c) for c in part[0])
            assigned.extend(_flat_pairs(part[1]))
        fired = raw[1] if t.idle_ms > 0 else raw[0]
        return TimerRun(closed, assigned, _flat_pairs(fired), int(raw[n - 1]), state=state)

    def get_case(self, case_id: str) -> dict[str, str] | None:
        raw = self.client.hgetall(self.keys.case(case_id))
        return _hash(raw) if raw else None

    def get_cases(self, case_ids: Sequence[str]) -> list[dict[str, str] | None]:
        pipe = self.client.pipeline(transaction=False)
        for cid in case_ids:
            pipe.hgetall(self.keys.case(cid))
        return [_hash(raw) if raw else None for raw in pipe.execute()]

    def case_events(self, case_id: str) -> list[dict[str, Any]]:
        return [orjson.loads(e) for e in self.client.lrange(self.keys.case_events(case_id), 0, -1)]

    def case_tags(self, case_id: str) -> list[str]:
        return sorted(_s(t) for t in self.client.smembers(self.keys.case_tags(case_id)))

    def case_ids(self, *, open_only: bool, limit: int) -> list[str]:
        if open_only:
            return [_s(c) for c in self.client.zrange(self.keys.cases_open, 0, limit - 1)]
        return [_s(c) for c in self.client.zrevrange(self.keys.cases_all, 0, limit - 1)]

    def case_stats(self) -> dict[str, int]:
        return {k: int(v) for k, v in _hash(self.client.hgetall(self.keys.cases_stats)).items()}

    # -- customers and identity ------------------------------------------------------------------
    def get_customer(self, customer_id: str) -> dict[str, str] | None:
        raw = self.client.hgetall(self.keys.customer(customer_id))
        return _hash(raw) if raw else None

    def get_customers(self, customer_ids: Sequence[str]) -> list[dict[str, str] | None]:
        """The records of many customers in one pipelined read (``None`` for an unknown id)."""
        pipe = self.client.pipeline(transaction=False)
        for customer_id in customer_ids:
            pipe.hgetall(self.keys.customer(customer_id))
        return [_hash(raw) if raw else None for raw in pipe.execute()]

    def customer_handles(self, customer_id: str) -> list[str]:
        return sorted(_s(h) for h in self.client.smembers(self.keys.customer_handles(customer_id)))

    def customer_history(self, customer_id: str, n: int) -> list[dict[str, Any]]:
        ids = self.client.zrevrange(self.keys.customer_mentions(customer_id), 0, n - 1)
        if not ids:
            return []
        data = self.client.hmget(self.keys.customer_mention_data(customer_id), ids)
        return [orjson.loads(d) for d in data if d]

    def customer_case_ids(self, customer_id: str, n: int) -> list[str]:
        return [_s(c) for c in self.client.zrevrange(self.keys.customer_cases(customer_id), 0, n - 1)]

    def customer_tags(self, customer_id: str) -> list[str]:
        return sorted(_s(t) for t in self.client.smembers(self.keys.customer_tags(customer_id)))

    def customer_merged(self, customer_id: str) -> list[str]:
        return sorted(_s(t) for t in self.client.smembers(self.keys.customer_merged(customer_id)))

    def churn_risk(self, customer_id: str) -> float | None:
        """The newest churn risk the flow scored for a customer (the ``churn`` sorted set)."""
        score = self.client.zscore(self.keys.churn, customer_id)
        return None if score is None else float(score)

    def lookup_identity(self, channel: str, handle: str) -> str | None:
        value = self.client.get(self.keys.identity(channel, handle))
        return _s(value) if value is not None else None

    def resolve_identities(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str] | None]:
        """For each (channel, handle): (owner id after merges, its kind) or None, in two round trips."""
        pipe = self.client.pipeline(transaction=False)
        for channel, handle in pairs:
            pipe.get(self.keys.identity(channel, handle))
        owners = pipe.execute()
        out: list[tuple[str, str] | None] = [None] * len(pairs)
        todo = [(i, o) for i, o in enumerate(owners) if o]
        for _ in range(8):  # follow merges (a prospect merged into a customer points at it)
            if not todo:
                break
            pipe = self.client.pipeline(transaction=False)
            for _, owner in todo:
                pipe.hmget(self.keys.customer(owner), "kind", "merged_into")
            again = []
            for (i, owner), (kind, merged) in zip(todo, pipe.execute(), strict=True):
                if merged:
                    again.append((i, merged))
                else:
                    out[i] = (owner, kind or "customer")
            todo = again
        return out

    def import_customers(self, rows: Sequence[tuple[str, dict[str, str], list[str], list[str]]], now_ms: int,
                         keep: int) -> list[tuple[str, Any]]:
        """Store rows (id, CRM fields, handles, soft handles), each atomically.

        A handle owned by another customer rejects the row; a soft handle (an email) is then just not
        linked. Returns per row ``("created"|"updated", (merged prospects, soft linked, [(handle, owner)]))``
        or ``("conflict", reason)``.
        """
        pipe = self.client.pipeline(transaction=False)
        for cid, fields, handles, soft in rows:
            self._run("IMPORT_CUSTOMER", cid, orjson.dumps(fields), orjson.dumps(handles), now_ms, keep,
                      orjson.dumps(soft), pipe=pipe)
        out: list[tuple[str, Any]] = []
        for raw in pipe.execute():
            status = _s(raw[0])
            if status == "ok":
                skipped = [(_s(raw[4][i]), _s(raw[4][i + 1])) for i in range(0, len(raw[4]) - 1, 2)]
                out.append(("created" if int(raw[1]) else "updated",
                            ([_s(p) for p in raw[2]], int(raw[3]), skipped)))
            else:
                out.append((status, _s(raw[1])))
        return out

    def merge_prospect(self, prospect_id: str, customer_id: str, now_ms: int, keep: int) -> bool:
        return bool(self._run("MERGE", prospect_id, customer_id, now_ms, keep))

    def count_customers(self) -> int:
        return int(self.client.scard(self.keys.customers))

    # -- link codes -------------------------------------------------------------------------------
    def put_link_code(self, code: str, customer_id: str, created_ms: int, expires_ms: int) -> bool:
        # validity is event time; the key lives (wall time) its lifetime plus 30 days, so a late use
        # says "expired" rather than "unknown"
        keep_for = max(0, expires_ms - created_ms) + 30 * 86400 * 1000
        return bool(self._run("LINK_PUT", code, customer_id, created_ms, expires_ms, keep_for))

    def redeem_link_code(self, code: str, channel: str, handle: str, mention_id: str, now_ms: int, keep: int) -> tuple[str, str, str]:
        raw = [*self._run("REDEEM", code, channel, handle, mention_id, now_ms, keep), "", ""]
        return _s(raw[0]), _s(raw[1]), _s(raw[2])

    # -- agents and queues -----------------------------------------------------------------------------
    def upsert_agent(self, agent_id: str, name: str, capacity: int, departments: str, channels: str, languages: str) -> bool:
        return bool(self._run("AGENT_UPSERT", agent_id, name, capacity, departments, channels, languages))

    def set_agent_status(self, agent_id: str, online: bool, ts_ms: int) -> tuple[str, list[tuple[str, str]], list[str]]:
        raw = self._run("AGENT_STATUS", agent_id, "online" if online else "offline", ts_ms, DRAIN_LIMIT)
        released = [_s(c) for c in raw[2]] if len(raw) > 2 else []
        return _s(raw[0]), _flat_pairs(raw[1]), released

    def set_agent_capacity(self, agent_id: str, capacity: int, ts_ms: int) -> tuple[str, list[tuple[str, str]]]:
        raw = self._run("CAPACITY", agent_id, capacity, ts_ms, DRAIN_LIMIT)
        return _s(raw[0]), _flat_pairs(raw[1])

    def drain_queues(self, ts_ms: int) -> list[tuple[str, str]]:
        return _flat_pairs(self._run("DRAIN", ts_ms, DRAIN_LIMIT))

    def get_agent(self, agent_id: str) -> dict[str, str] | None:
        raw = self.client.hgetall(self.keys.agent(agent_id))
        return _hash(raw) if raw else None

    def list_agents(self) -> list[dict[str, str]]:
        ids = sorted(_s(a) for a in self.client.smembers(self.keys.agents_all))
        pipe = self.client.pipeline(transaction=False)
        for a in ids:
            pipe.hgetall(self.keys.agent(a))
        return [_hash(raw) for raw in pipe.execute() if raw]

    def agent_case_ids(self, agent_id: str) -> list[str]:
        return sorted(_s(c) for c in self.client.smembers(self.keys.agent_cases(agent_id)))

    def queue_case_ids(self, queue: str) -> list[str]:
        return [_s(c) for c in self.client.zrange(self.keys.queue(queue), 0, -1)]

    def queue_names(self) -> list[str]:
        return sorted(_s(q) for q in self.client.smembers(self.keys.queues))

    def queue_summary(self) -> list[tuple[str, int, int | None]]:
        """Per queue: (name, cases waiting for an agent, when the oldest of them was opened in ms or None)."""
        names = self.queue_names()
        pipe = self.client.pipeline(transaction=False)
        for q in names:
            pipe.zcard(self.keys.queue(q))
            pipe.zrange(self.keys.queue(q), 0, 0, withscores=True)
        raw = pipe.execute()
        return [(q, int(raw[2 * i]), int(raw[2 * i + 1][0][1]) if raw[2 * i + 1] else None)
                for i, q in enumerate(names)]

    def case_count(self, *, open_only: bool) -> int:
        return int(self.client.zcard(self.keys.cases_open if open_only else self.keys.cases_all))

    def newest_case_ms(self) -> int | None:
        newest = self.client.zrevrange(self.keys.cases_all, 0, 0, withscores=True)
        return int(newest[0][1]) if newest else None

    # -- knowledge base ------------------------------------------------------------------------------
    def kb_put_articles(self, articles: Sequence[dict[str, str]]) -> int:
        pipe = self.client.pipeline(transaction=True)
        for a in articles:
            pipe.delete(self.keys.kb_article(a["id"]))
            pipe.hset(self.keys.kb_article(a["id"]), mapping=a)
            pipe.sadd(self.keys.kb_articles, a["id"])
        pipe.incr(self.keys.kb_version)
        pipe.execute()
        return len(articles)

    def kb_articles(self) -> list[dict[str, str]]:
        ids = sorted(_s(a) for a in self.client.smembers(self.keys.kb_articles))
        pipe = self.client.pipeline(transaction=False)
        for a in ids:
            pipe.hgetall(self.keys.kb_article(a))
        return [_hash(raw) for raw in pipe.execute() if raw]

    def kb_versions(self) -> tuple[int, int]:
        a, b = self.client.mget(self.keys.kb_version, self.keys.kb_feedback_version)
        return int(a or 0), int(b or 0)

    def kb_add_feedback(self, article_id: str, terms: Iterable[str]) -> None:
        pipe = self.client.pipeline(transaction=True)
        for t in terms:
            pipe.hincrby(self.keys.kb_feedback, f"{t}|{article_id}", 1)
        pipe.incr(self.keys.kb_feedback_version)
        pipe.execute()

    def kb_feedback(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for k, v in _hash(self.client.hgetall(self.keys.kb_feedback)).items():
            term, _, article = k.partition("|")
            out[(term, article)] = int(v)
        return out

    # -- rules, tasks ------------------------------------------------------------------------------
    def rule_stats(self) -> dict[str, int]:
        return {k: int(v) for k, v in _hash(self.client.hgetall(self.keys.rules_stats)).items()}

    def record_rule_outcome(self, rule: str, outcome: str, n: int) -> None:
        self.client.hincrby(self.keys.rules_stats, f"{rule}|{outcome}", n)

    def tasks(self, limit: int) -> list[dict[str, str]]:
        ids = self.client.zrange(self.keys.tasks_open, 0, limit - 1)
        pipe = self.client.pipeline(transaction=False)
        for t in ids:
            pipe.hgetall(self.keys.task(_s(t)))
        return [_hash(raw) for raw in pipe.execute() if raw]


def _reply_record(raw: Sequence[Any]) -> dict[str, str]:
    return {"outcome": _s(raw[0]), "case_id": _s(raw[1]), "response_ms": _s(raw[2]) if len(raw) > 2 else ""}


def _flat_pairs(flat: Sequence[Any]) -> list[tuple[str, str]]:
    return [(_s(flat[i]), _s(flat[i + 1])) for i in range(0, len(flat) - 1, 2)]


def make_store(target: str | redis.Redis, prefix: str = "pulse:") -> CrmStore:
    """The store for ``target``: a Redis URL or an existing client (the only adapter today).

    >>> make_store("redis://localhost:1/0", prefix="x:").keys.customer("c1")
    'x:customer:c1'
    """
    client = redis.Redis.from_url(target) if isinstance(target, str) else target
    return RedisCrmStore(client, prefix)
