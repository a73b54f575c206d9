"""The CRM step of the flow: one call per enriched mention, brand reply, or timer tick.

:meth:`CrmProcessor.process` takes an enriched mention (the dict of ``Enriched.to_dict()``) and
returns what the CRM did with it. Per mention it costs two pipelined round trips to Redis (read what
is known; apply the decision atomically) however many mentions are batched together, and Redis applies
the first decisions of a batch while the rest are still being planned, and replays of
a mention id return the stored outcome instead of doing anything twice.

Result of :meth:`CrmProcessor.process` (all plain values)::

    {"mention_id", "customer_id", "prospect": bool, "case_id" (or None),
     "case_event": "opened" | "appended" | "reopened" | "none", "case_status", "priority", "queue",
     (priority/queue/status are the case's; "exists" only if the case outlived its mention's record)
     "assigned_agent" (or None), "suggestions": [{"id", "title", "score"}] (for a newly opened case),
     "alerts": [Alert dicts: kind "rule" from rules; "sla_breach" timers due by this mention's time],
     "rule_hits": [{"rule", "actions"}], "outbox": [outbox message dicts queued], "tasks": [...],
     "tags": [...], "link": None | {"code", "status", ...}, "duplicate": bool}

A brand reply (``from_brand`` true) given to ``process`` gives the result of :meth:`CrmProcessor.on_brand_reply`:
``{"reply_id", "case_id", "outcome", "response_ms"}``.

>>> parse_ts_ms("2024-05-01T10:00:00Z"), parse_ts_ms(1714557600)
(1714557600000, 1714557600000)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import redis

from crm.cases import case_id_for, priority_for, reply_to_case, resolve_case
from crm.customer360 import customer_360
from crm.customers import customer_from_hash, influence_score
from crm.errors import CaseError, CrmError, CrmInputError, KnowledgeBaseError, LinkCodeError
from crm.identity import normalize_handle, prospect_id
from crm.kb import KnowledgeBase
from crm.linkcodes import find_link_codes, redeem_link_code
from crm.outbox import NO_OUTBOX, WEBHOOK_CHANNEL, OutboxEncoder
from crm.rules import RuleSet, history_summary, load_rules
from crm.settings import CrmSettings
from crm.sla import iso_ms, sla_alert
from crm.store import SWEEP_LIMIT, CrmStore, Retention, TimerCall, TimerRun, TimerState, make_store
from crm.ticks import Delays, DueBound, Tick, tick_positions

__all__ = ["SAMPLE_KB", "SAMPLE_RULES", "CrmProcessor", "parse_ts_ms"]

log = logging.getLogger(__name__)

#: Example rules and knowledge-base articles shipped with the package.
SAMPLE_RULES = Path(__file__).parent / "data" / "rules.toml"
SAMPLE_KB = Path(__file__).parent / "data" / "kb_articles.csv"

_SENTIMENTS = ("negative", "neutral", "positive")
_QUEUE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_FOLLOWER_KEYS = ("followers", "followers_count", "user_followers_count", "author_followers")
_ENGAGEMENT_KEYS = ("retweet_count", "retweets", "like_count", "likes", "shares", "reply_count", "reach")
#: How long a brand reply that arrived before its mention waits for it (seconds of event time behind the CRM's
#: watermark).
EARLY_REPLY_TTL_S = 7 * 86400


def parse_ts_ms(value: Any) -> int:
    """Event time as epoch ms from an ISO string, a datetime, or epoch seconds/milliseconds."""
    if isinstance(value, bool):
        raise CrmInputError("ts: expected a timestamp, got bool")
    if isinstance(value, int | float):
        return int(value if value > 1e11 else value * 1000)
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise CrmInputError(f"ts: unparseable timestamp {value[:40]!r}") from None
    else:
        raise CrmInputError(f"ts: expected a timestamp, got {type(value).__name__}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


@dataclass(slots=True)
class _Mention:
    id: str
    channel: str
    brand: str
    author: str
    text: str
    ts_ms: int
    ts_iso: str
    in_reply_to: str
    from_brand: bool
    owned: bool
    lang: str
    customer_id: str
    intent: str
    sentiment: str
    sentiment_score: float
    department: str
    keywords: list[str]
    churn_risk: float | None
    meta: dict[str, Any]
    raw: dict[str, Any]
    link: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


#: How many timers of each kind one tick handles per call (a backlog takes further calls).
_TICK_LIMIT = SWEEP_LIMIT
#: How many ticks a segment reaches past when they may fire only for what its own mentions could add (known once
#: they are planned); its contexts beyond one that fires after all are read again.
_SPECULATE = 2
#: How many mentions' contexts a segment reads ahead, at least and at most: it grows while segments use all they
#: read and shrinks to twice what one used when a mention that depends on an earlier one cut it short (the
#: contexts read past the cut are read again by the next segment: reading the whole batch ahead each time would
#: cost the square of the batch when authors repeat).
_AHEAD_MIN, _AHEAD_MAX = 16, 1024


@dataclass(slots=True)
class _Batch:
    """A :meth:`CrmProcessor.process_batch` call's way through its mentions and their timer ticks."""

    todo: list[tuple[int, _Mention]]
    results: list[dict[str, Any] | None]
    #: the ticks not reached yet, by position in ``todo``
    ticks: dict[int, Tick]
    #: when the timers can next be due
    bound: DueBound
    #: per position, the newest event time the customer mentions before it can have moved the watermark to
    reach: list[int] = field(default_factory=list)
    #: tick alerts by item index
    alerts: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    #: ticks run or skipped, by position (a mention that failed still passed its period)
    passed: dict[int, Tick] = field(default_factory=dict)
    #: ticks run at the end of the segment before their mention, with their alerts
    ran: dict[int, tuple[Tick, list[dict[str, Any]]]] = field(default_factory=dict)
    #: how many mentions the next segment reads ahead (``_AHEAD_MIN`` .. ``_AHEAD_MAX``)
    ahead: int = _AHEAD_MIN


def _keys_of(m: _Mention) -> tuple[set[str], set[str]]:
    """What a mention's plan reads and its commit writes that is known before its context: its handle and thread
    (a brand reply reads nothing and writes both threads)."""
    if m.from_brand:
        return set(), {f"t:{m.id}", f"t:{m.in_reply_to}"}
    reads = {f"h:{m.channel}:{m.author}"} if m.author else set()
    if m.in_reply_to:
        reads.add(f"t:{m.in_reply_to}")
    return reads, reads | {f"t:{m.id}"}


def _stored_alerts(stored: dict[str, Any]) -> list[dict[str, Any]]:
    """The alerts of a stored tick: built from the fired cases as the tick left them (KEEP_TICK), or as stored."""
    if "fired" not in stored:
        return list(stored.get("alerts") or [])
    return [sla_alert(case or {"id": cid}, stage, stored["at"])
            for (cid, stage), case in zip(stored["fired"], stored["cases"], strict=True)]


def _str_field(d: dict[str, Any], name: str, *, required: bool = False) -> str:
    value = d.get(name)
    if value is None or value == "":
        if required:
            raise CrmInputError(f"{name}: missing")
        return ""
    if not isinstance(value, str):
        raise CrmInputError(f"{name}: expected a string, got {type(value).__name__}")
    return value


def _float_field(d: dict[str, Any], name: str, lo: float, hi: float) -> float | None:
    value = d.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CrmInputError(f"{name}: expected a number, got {type(value).__name__}")
    return max(lo, min(hi, float(value)))


def _parse(d: Any) -> _Mention:
    if not isinstance(d, dict):
        raise CrmInputError(f"record: expected a dict, got {type(d).__name__}")
    mid = _str_field(d, "id", required=True)
    channel = _str_field(d, "channel", required=True).lower()
    if "ts" not in d or d["ts"] is None:
        raise CrmInputError("ts: missing")
    ts_ms = parse_ts_ms(d["ts"])
    text = d.get("text", "")
    if not isinstance(text, str):
        raise CrmInputError(f"text: expected a string, got {type(text).__name__}")
    sentiment = d.get("sentiment") or "neutral"
    if sentiment not in _SENTIMENTS:
        raise CrmInputError(f"sentiment: expected one of {', '.join(_SENTIMENTS)}, got {sentiment!r}")
    keywords = d.get("keywords") or []
    if not isinstance(keywords, list | tuple) or not all(isinstance(k, str) for k in keywords):
        raise CrmInputError("keywords: expected a list of strings")
    meta = d.get("meta") or {}
    if not isinstance(meta, dict):
        raise CrmInputError(f"meta: expected an object, got {type(meta).__name__}")
    department = (d.get("department") or "service")
    department = department.lower() if isinstance(department, str) and _QUEUE.match(department.lower()) else "service"
    return _Mention(
        id=mid, channel=channel, brand=_str_field(d, "brand"), author=normalize_handle(_str_field(d, "author")),
        text=text, ts_ms=ts_ms, ts_iso=iso_ms(ts_ms), in_reply_to=_str_field(d, "in_reply_to"),
        from_brand=bool(d.get("from_brand")), owned=bool(d.get("owned")), lang=(_str_field(d, "lang") or "").lower(),
        customer_id=_str_field(d, "customer_id"), intent=_str_field(d, "intent") or "comment", sentiment=sentiment,
        sentiment_score=_float_field(d, "sentiment_score", -1.0, 1.0) or 0.0, department=department,
        keywords=list(keywords), churn_risk=_float_field(d, "churn_risk", 0.0, 1.0), meta=meta, raw=d,
    )


def _int_meta(meta: dict[str, Any], names: Sequence[str]) -> list[int]:
    out = []
    for n in names:
        v = meta.get(n)
        if isinstance(v, int | float) and not isinstance(v, bool) and v >= 0:
            out.append(int(v))
    return out


class CrmProcessor:
    """The CRM's entry point for the flow: ``process`` / ``process_batch``, ``on_brand_reply``, ``tick``.

    >>> CrmProcessor.process.__doc__.splitlines()[0]
    'What the CRM does with one enriched mention (see the module docstring for the result).'
    """

    def __init__(self, store: CrmStore, rules: RuleSet | None = None, kb: KnowledgeBase | None = None,
                 settings: CrmSettings | None = None, outbox: OutboxEncoder | None = None,
                 stored_churn_risk: bool = True) -> None:
        self.store = store
        #: Whether a mention without a churn risk counts its author's latest stored one. The flow turns it
        #: off: there the risk is stored by a later step, so what a mention would read depended on timing.
        self.stored_churn_risk = stored_churn_risk
        #: Encodes outbox entries (the port of :mod:`crm.outbox`); without one, replies and rule messages fail.
        self.outbox: OutboxEncoder = outbox if outbox is not None else NO_OUTBOX
        self.rules = rules if rules is not None else RuleSet([])
        self.settings = settings or CrmSettings(prefix=store.keys.prefix)
        self.kb = kb
        self._delay_table: Delays | None = None

    @classmethod
    def from_redis(cls, target: str | redis.Redis, settings: CrmSettings | None = None,
                   rules_path: str | Path | None = None, *, with_kb: bool = True,
                   outbox: OutboxEncoder | None = None, stored_churn_risk: bool = True) -> CrmProcessor:
        """Build a processor on a Redis URL or client; a malformed rules file raises ``RuleError`` here."""
        settings = settings or CrmSettings()
        store = make_store(target, settings.prefix)
        rules = load_rules(rules_path) if rules_path else RuleSet([])
        kb = KnowledgeBase(store, feedback_weight=settings.kb_feedback_weight) if with_kb else None
        return cls(store, rules, kb, settings, outbox, stored_churn_risk=stored_churn_risk)

    # -- the flow's steps ------------------------------------------------------------------
    def identify(self, mention: dict[str, Any]) -> dict[str, Any]:
        """Who wrote a mention: ``{"customer_id", "prospect", "link"}``; redeems link codes in the text.

        Read-only apart from link codes (prospect profiles are stored by :meth:`process`). Raises
        :class:`crm.errors.CrmInputError` for a record it cannot use.
        """
        result = self.identify_batch([mention])[0]
        if "error" in result:
            raise CrmInputError(result["error"])
        return result

    def identify_batch(self, mentions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """:meth:`identify` for many mentions in two round trips; a bad one gives ``{"error": ...}``."""
        out: list[dict[str, Any]] = []
        parsed: list[tuple[int, _Mention]] = []
        for i, item in enumerate(mentions):
            try:
                m = _parse(item)
            except CrmInputError as exc:
                out.append({"customer_id": None, "prospect": False, "link": None, "error": str(exc)})
                continue
            if not m.from_brand:
                self._redeem_codes(m)
            out.append({"customer_id": None, "prospect": False, "link": m.link})
            if m.author:
                parsed.append((i, m))
        owners = self.store.resolve_identities([(m.channel, m.author) for _, m in parsed])
        for (i, m), owner in zip(parsed, owners, strict=True):
            if owner is None:
                out[i].update(customer_id=prospect_id(m.channel, m.author), prospect=True)
            else:
                out[i].update(customer_id=owner[0], prospect=owner[1] == "prospect")
        return out

    def process(self, enriched: dict[str, Any]) -> dict[str, Any]:
        """What the CRM does with one enriched mention (see the module docstring for the result).

        Raises :class:`crm.errors.CrmInputError` for a record it cannot use (dead-letter it).
        """
        result = self.process_batch([enriched])[0]
        if "error" in result:
            raise CrmInputError(result["error"])
        return result

    def process_batch(self, items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """:meth:`process` for many mentions in two round trips; a bad item gives ``{"mention_id", "error"}``.

        Items are applied in order, so a follow-up later in the batch joins a case opened earlier in it
        and a brand reply (``from_brand``, result as :meth:`on_brand_reply`) finds the case its mention
        opened earlier in the batch.

        The outcome does not depend on where batches begin and end (a replay after a crash cuts its input
        differently): a mention is planned from what every mention before it left, so a batch is cut
        before a mention that reads what an earlier one in it writes (same author, customer or thread) and
        before a link code; the timers tick in event time, before the first mention of each new
        ``auto_tick_ms`` period (:mod:`crm.ticks`: a tick that has nothing to do writes nothing, and is skipped
        when nothing can be due), a tick that raised alerts stored in Redis by the same script call that ran it, so
        a replay or a retry raises them again and does not tick twice. A tick that can only fire SLA warnings and
        breaches (:class:`crm.ticks.DueBound`) changes nothing a plan reads: it runs between the commits of the
        mentions around it in their round trip; one that may resolve, expire or sweep ends the segment.
        """
        results: list[dict[str, Any] | None] = [None] * len(items)
        todo: list[tuple[int, _Mention]] = []
        for i, item in enumerate(items):
            try:
                m = _parse(item)
            except CrmInputError as exc:
                mid = item.get("id") if isinstance(item, dict) else None
                results[i] = {"mention_id": mid if isinstance(mid, str) else None, "error": str(exc)}
                continue
            if m.from_brand and not m.in_reply_to:
                results[i] = {"reply_id": m.id, "case_id": None, "outcome": "not_a_reply", "response_ms": None}
                continue
            todo.append((i, m))
        ticks, state = self._ticks(todo)
        b = _Batch(todo, results, ticks, DueBound())
        b.bound.known(state.next_due, state.next_change, state.sla, state.sla_rest)
        # the newest event time any customer mention before each position can have moved the watermark to
        b.reach.append(max(state.watermark, 0))
        for _, m in todo:
            b.reach.append(b.reach[-1] if m.from_brand else max(b.reach[-1], m.ts_ms))
        for pos, tick in ticks.items():
            if tick.stored is not None:  # a replay: the stored alerts, nothing run again
                b.alerts[todo[pos][0]] = _stored_alerts(tick.stored)
        pos = 0
        while pos < len(todo):
            pos = self._apply_segment(b, pos)
        for p, tick in b.passed.items():
            res = results[todo[p][0]]
            if res is not None and "error" in res:  # no commit moved the watermark past its period
                self.store.remember_tick(tick.period, None)
        for i, alerts in b.alerts.items():
            res = results[i]
            if alerts and res is not None:
                res["alerts"] = [*res.get("alerts", []), *alerts]
        return [r or {"mention_id": None, "error": "not processed"} for r in results]

    def _delays(self) -> Delays:
        if self._delay_table is None:
            self._delay_table = Delays(self.settings, self.retention())
        return self._delay_table

    def _delay(self, m: _Mention) -> int:
        """The soonest anything a mention's commit adds can be due, before it is planned (:class:`crm.ticks.Delays`)."""
        d = self._delays()
        if m.from_brand:
            return d.reply
        if m.in_reply_to or m.intent in self.settings.case_intents or self.rules.routes:
            return d.case(m.channel)
        return d.quiet

    def _change_delay(self, m: _Mention) -> int:
        """The soonest a mention's commit can make a tick do more than fire SLA timers (whatever its plan)."""
        d = self._delays()
        return d.reply if m.from_brand else d.change

    def _committed_delay(self, m: _Mention, plan: dict[str, Any]) -> int:
        """:meth:`_delay` once the mention is planned: a case it opens has its SLA (a follow-up may still join a
        case of any priority)."""
        d = self._delays()
        if m.in_reply_to:
            return d.case(m.channel)
        if plan["open"]:
            return d.opened(int(plan["case"]["sla_ms"]))
        return d.quiet

    def _sweep_slack_ms(self) -> int:
        return int(self.settings.retention_sweep_minutes * 60_000)

    def _apply_segment(self, b: _Batch, pos: int) -> int:
        """Plan and apply mentions from ``todo[pos]`` on, up to the first one that depends on an earlier one
        (or a tick that may do more than fire SLA timers, or a link code); returns where the next segment starts.

        Ticks that cannot do anything (``b.bound``) are skipped without ending the segment, ticks that can only fire
        SLA timers run between its commits (before their mention's); one that may do more ends it and runs right
        after its last mention, in the same round trip (or first, at the start of a batch)."""
        todo, bound, results = b.todo, b.bound, b.results
        first = todo[pos][1]
        tick = b.ticks.get(pos)
        alerts: list[dict[str, Any]] = []
        # ticks that run between the segment's commits (they can only fire SLA timers: nothing a plan reads)
        inline: set[int] = set()
        if pos in b.ran:  # run at the end of the segment before
            b.ticks.pop(pos, None)
            tick, alerts = b.ran.pop(pos)
        elif tick is not None and tick.stored is None:
            at = max(tick.now_ms, b.reach[pos])
            if bound.may_change(at):  # first in the batch, or a segment was cut before it
                b.passed[pos] = b.ticks.pop(pos)
                call = self._tick_call(tick)
                run = self.store.apply_ops([("timers", call)])[0]["run"]
                alerts, state = self._settle(run, call.now_ms, _TICK_LIMIT, call.memo)
                self._learn(bound, state)
            else:
                inline.add(pos)
        else:
            b.ticks.pop(pos, None)
        if alerts and tick is not None:
            b.alerts[todo[pos][0]] = alerts
        if not first.from_brand:
            self._redeem_codes(first)  # a link code changes who its author is: only ever first in a segment
        # what the segment's mentions can add, for the ticks after them: anything, and more than SLA timers
        later = first.ts_ms + self._delay(first)
        later_change = first.ts_ms + self._change_delay(first)
        end = pos + 1
        due: Tick | None = None
        # ticks that may change more than SLA marks only for what the mentions before them could add: decided once
        # those are planned (the segment ends there if it may; the contexts read beyond it are then read again)
        maybe: set[int] = set()
        # the handles and threads the segment's mentions write: a mention that reads one ends the segment before
        # its context is read (the same cut as below, known without Redis; below adds the customers)
        handles = _keys_of(first)[1]
        while end < len(todo) and end - pos < b.ahead:
            reads, writes = _keys_of(todo[end][1])
            if reads & handles:
                break
            handles |= writes
            tick = b.ticks.get(end)
            if tick is not None and tick.stored is None:
                at = max(tick.now_ms, b.reach[end])
                if not bound.may_fire(at, later):
                    b.passed[end] = b.ticks.pop(end)  # nothing can be due: skipped
                elif not bound.may_change(at, later_change):
                    inline.add(end)
                elif bound.may_change(at) or len(maybe) >= _SPECULATE:
                    due = tick
                    break
                else:
                    maybe.add(end)
            if self._has_link_code(todo[end][1]):
                break
            later = min(later, todo[end][1].ts_ms + self._delay(todo[end][1]))
            later_change = min(later_change, todo[end][1].ts_ms + self._change_delay(todo[end][1]))
            end += 1
        customer_mentions = [m for _, m in todo[pos:end] if not m.from_brand]
        history_n = self.settings.rules_history if self.rules.uses_history else 0
        contexts = iter(self.store.load_contexts([
            {"mention_id": m.id, "channel": m.channel, "handle": m.author, "customer_id": m.customer_id,
             "in_reply_to": m.in_reply_to, "history": history_n,
             "processed_ms": self.settings.processed_ttl_seconds * 1000}
            for m in customer_mentions
        ]))
        segment: list[tuple[int, _Mention, dict[str, Any] | None]] = []
        written: set[str] = set()
        for j in range(pos, end):
            i, m = todo[j]
            ctx = None if m.from_brand else next(contexts)
            if ctx is not None and "duplicate" in ctx:
                reads, writes = set(), set()
            else:
                reads, writes = _keys_of(m)
                if ctx is not None and ctx["customer_id"]:
                    reads.add(f"c:{ctx['customer_id']}")
                    writes.add(f"c:{ctx['customer_id']}")
            if segment and reads & written:
                break
            segment.append((i, m, ctx))
            written |= writes
        if due is not None and pos + len(segment) < end:
            due = None  # cut short before the tick: it runs after the mentions before it, in a later segment
        stop = [pos + len(segment)]  # where the segment ends: earlier if a tick in it may fire after all
        ops: list[tuple[int, str, Any]] = []
        # the CRM's watermark as each commit will see it (commits move it in order), so a prospect past its
        # retention is planned for as an unknown author whether or not the retirement deleted it yet
        watermark = [-1]
        prospect_ms = int(self.settings.prospect_retention_days * 86_400_000)

        # (ops index, event time, delays) of each op bound.add saw: what an inline tick's state does not include yet
        adds: list[tuple[int, int, int, int]] = []
        # ops index of each SLA-only tick: the bound's lower bound of the other timers when it was sent
        sla_only: dict[int, float] = {}

        def planned() -> Iterator[tuple[str, Any]]:
            # a generator: the store sends the first plans to Redis while the rest are being made
            nonlocal due
            for j, (i, m, ctx) in enumerate(segment, start=pos):
                if j in maybe or j in inline:
                    t = b.ticks[j]
                    at = max(t.now_ms, b.reach[j])
                    if bound.may_change(at):
                        due, stop[0] = t, j
                        break
                    b.passed[j] = b.ticks.pop(j)
                    if bound.may_fire(at):  # SLA timers only: before this mention's commit, same round trip
                        call = self._tick_call(t, sla_only=True)
                        sla_only[len(ops)] = bound.change
                        ops.append((i, "timers", call))
                        bound.fired(call.now_ms)  # a later tick of this round trip runs if something is due by then
                        yield "timers", call
                    # else: planned, the mentions before it added nothing due
                if m.from_brand:
                    adds.append((len(ops), m.ts_ms, self._delays().reply, self._delays().reply))
                    bound.add(*adds[-1][1:])
                    op = (i, "reply", {"reply_id": m.id, "in_reply_to": m.in_reply_to, "ts_ms": m.ts_ms,
                                       "by": str(m.meta.get("agent") or m.author or ""),
                                       "early_ttl_s": EARLY_REPLY_TTL_S,
                                       "processed_ms": self.settings.processed_ttl_seconds * 1000,
                                       "stale_ms": self.retention().stale_ms})
                else:
                    assert ctx is not None
                    if "duplicate" in ctx:
                        results[i] = self._result(ctx["duplicate"], duplicate=True)
                        continue
                    watermark[0] = max(watermark[0], ctx.get("wm", -1), m.ts_ms)
                    seen = ctx.get("prospect_seen")
                    if prospect_ms > 0 and seen is not None and seen + prospect_ms < watermark[0]:
                        ctx = {**ctx, "customer_id": "", "customer": {}, "history": [], "churn_risk": None}
                    try:
                        plan = self._plan(m, ctx)
                    except (CrmError, ValueError) as exc:  # e.g. a rule message the outbox contract refuses
                        results[i] = {"mention_id": m.id, "error": f"{m.id}: {exc}"}
                        continue
                    op = (i, "commit", plan)
                    adds.append((len(ops), m.ts_ms, self._committed_delay(m, plan), self._change_delay(m)))
                    bound.add(*adds[-1][1:])
                ops.append(op)
                yield op[1], op[2]
            if due is not None and not bound.may_fire(max(due.now_ms, b.reach[stop[0]])):
                b.passed[stop[0]] = b.ticks.pop(stop[0])  # planned, the mentions before it added nothing due
            elif due is not None:  # after the segment's commits, in the same round trip
                call = self._tick_call(due)
                ops.append((-1, "timers", call))
                yield "timers", call

        records = self.store.apply_ops(planned())
        learnt = -1  # the ops index of the last run of the timers the bound learnt from
        for k, ((i, kind, payload), rec) in enumerate(zip(ops, records, strict=True)):
            if kind == "timers":
                tick_alerts, state = self._settle(rec["run"], payload.now_ms, _TICK_LIMIT, payload.memo)
                self._learn(bound, state, sla_only.get(k))
                learnt = k
                if i >= 0:  # inline, before mention i's commit
                    if tick_alerts:
                        b.alerts[i] = tick_alerts
                else:
                    assert due is not None
                    b.passed[stop[0]] = b.ticks.pop(stop[0])
                    b.ran[stop[0]] = (due, tick_alerts)
                continue
            if kind == "reply":
                results[i] = {"reply_id": payload["reply_id"], "case_id": rec["case_id"] or None,
                              "outcome": rec["outcome"],
                              "response_ms": int(rec["response_ms"]) if rec["response_ms"] else None}
            else:
                results[i] = self._result(rec, duplicate=rec.get("duplicate") == "1")
        for k, ts, delay, change in adds:  # applied after the state the bound learnt last was read
            if k > learnt >= 0:
                bound.add(ts, delay, change)
        used = stop[0] - pos
        b.ahead = min(_AHEAD_MAX, 2 * b.ahead) if used >= end - pos else max(_AHEAD_MIN, 2 * used)
        return stop[0]

    def _tick_call(self, t: Tick, sla_only: bool = False) -> TimerCall:
        """An automatic tick's run of the timers (with the state after it; stored when it fires anything);
        ``sla_only`` when the bound knows nothing but SLA timers can be due."""
        return TimerCall(t.now_ms, self._idle_ms(), _TICK_LIMIT, self.store.keys.tick_scan(t.period), 0,
                         self.retention(), self._sweep_slack_ms(), state=True, keep=(t.period, t.by),
                         sla_only=sla_only)

    def _has_link_code(self, m: _Mention) -> bool:
        return not m.from_brand and m.link is None and bool(m.text) and bool(
            find_link_codes(m.text, self.settings.link_code_prefix))

    def _ticks(self, todo: list[tuple[int, _Mention]]) -> tuple[dict[int, Tick], TimerState]:
        """Where in ``todo`` the timers tick (:func:`crm.ticks.tick_positions`), and what Redis knows of them.

        A customer mention ticks the timers (at its own event time) when its ``auto_tick_ms`` period is
        newer than that of every customer mention before it; a tick already stored for this mention (a replay,
        a retry) is returned as it was.
        """
        period = self.settings.auto_tick_ms
        mentions = [None if m.from_brand else (m.id, m.ts_ms) for _, m in todo]
        starts = sorted({ts - ts % period for m in mentions if m is not None for ts in (m[1],)}) if period > 0 else []
        state = self.store.timer_state(self.retention(), self._idle_ms(), self._sweep_slack_ms(), starts)
        return tick_positions(mentions, period, state), state

    def _idle_ms(self) -> int:
        return int(self.settings.auto_resolve_minutes * 60_000)

    def on_brand_reply(self, reply: dict[str, Any]) -> dict[str, Any]:
        """A brand/agent reply seen on a channel: marks its case replied, recording response times.

        Idempotent by reply id; a reply that arrives before its mention is held and applied when the case
        opens. Returns ``{"reply_id", "case_id", "outcome", "response_ms"}`` with outcome ``replied``,
        ``duplicate``, ``pending`` (mention not seen yet), ``no_case`` (the mention opened no case),
        ``resolved`` (case closed) or ``not_a_reply``.
        """
        return self._brand_reply(_parse(reply))

    def retention(self) -> Retention:
        """The event-time retentions of the CRM's keys, from the settings (see :class:`crm.store.Retention`)."""
        s = self.settings
        return Retention(case_ms=int(s.case_retention_days * 86_400_000), processed_ms=s.processed_ttl_seconds * 1000,
                         prospect_ms=int(s.prospect_retention_days * 86_400_000),
                         task_ms=int(s.task_retention_days * 86_400_000), early_ms=EARLY_REPLY_TTL_S * 1000,
                         stale_ms=int(s.stale_case_days * 86_400_000))

    def tick(self, now_ms: int, limit: int = 1000, *, memo: str = "", memo_ttl_s: int = 0) -> list[dict[str, Any]]:
        """Timers due by event time ``now_ms``: ``sla_breach`` alert dicts (a warning, then the breach).

        Replied cases idle for ``auto_resolve_minutes`` are resolved here too, unresolved cases without activity
        for ``stale_case_days`` expire (their agents take waiting cases), and, behind the CRM's newest mention,
        everything past its event-time retention goes (:meth:`retention`): closed cases, processed marks and
        ticks, thread links, sent-once marks, silent prospects, old rule tasks, unclaimed early replies.
        All in one round trip, unless a backlog needs more.
        With ``memo`` (a key), running the same tick again raises the same alerts (see ``CrmStore.sla_scan``).
        """
        return self._timers(now_ms, limit, memo, memo_ttl_s, 0)[0]

    def _timers(self, now_ms: int, limit: int, memo: str, memo_ttl_s: int, slack_ms: int
                ) -> tuple[list[dict[str, Any]], TimerState | None]:
        """:meth:`tick`, sweeping retention ``slack_ms`` late."""
        run = self.store.timers(now_ms, self._idle_ms(), limit, memo, memo_ttl_s, retention=self.retention(),
                                slack_ms=slack_ms)
        return self._settle(run, now_ms, limit, memo)

    def _settle(self, run: TimerRun, now_ms: int, limit: int, memo: str
                ) -> tuple[list[dict[str, Any]], TimerState | None]:
        """The alerts of a run of the timers, after the further calls a backlog needs (then no state: it changed)."""
        ret = self.retention()
        closed, assigned, retired = run.closed, run.assigned, run.retired
        if closed:
            log.info("auto-resolved or expired %d case(s); %d waiting case(s) assigned", len(closed), len(assigned))
        settled = True
        for _ in range(20):  # a backlog of stale cases (more than limit at once) expires in further calls
            if ret.stale_ms <= 0 or len(closed) < limit:
                break
            closed, assigned = self.store.expire_stale(now_ms, ret.stale_ms, limit)
            settled = False
        for _ in range(20):  # keys past their retention (event time) go, a limit at a time
            if retired < limit:
                break
            retired = self.store.retire_cases(ret, limit)
            settled = False
        state = run.state if settled else None
        if not run.fired:
            return [], state
        # the cases as the run left them (what KEEP_TICK stores with the tick, for a replay), backlog or not
        snap = run.state
        cases = snap.cases if snap is not None and memo and len(snap.cases) == len(run.fired) else \
            self.store.get_cases([cid for cid, _ in run.fired])
        return [sla_alert(case or {"id": cid}, stage, now_ms)
                for (cid, stage), case in zip(run.fired, cases, strict=True)], state

    @staticmethod
    def _learn(bound: DueBound, state: TimerState | None, change: float | None = None) -> None:
        """What a run of the timers tells of when they are next due (nothing, after a backlog's further calls);
        ``change``: for an SLA-only run, the bound of the other timers when it was sent (the run did not move it)."""
        if state is None:
            bound.unknown()
        elif change is not None:  # Redis did not look the other timers up
            bound.known_sla(state.next_due, change, state.sla, state.sla_rest)
        else:
            bound.known(state.next_due, state.next_change, state.sla, state.sla_rest)

    # -- agent actions (CLI, dashboard) ------------------------------------------------------------
    def reply(self, case_id: str, *, now_ms: int, text: str | None = None, article_id: str | None = None,
              private: bool = False, agent: str | None = None, reply_id: str | None = None) -> dict[str, Any]:
        """Answer a case on its channel with a text and/or a KB article (the pick teaches the KB)."""
        body = (text or "").strip()
        if article_id:
            if self.kb is None:
                raise KnowledgeBaseError("no knowledge base configured")
            article = self.kb.article(article_id)
            if article is None:
                raise KnowledgeBaseError(f"no article {article_id!r}")
            link = article.get("url") or article["body"]
            body = f"{body}\n\n{article['title']}: {link}" if body else f"{article['title']}: {link}"
        if not body:
            raise CaseError("a reply needs --text or --article")
        out = reply_to_case(self.store, case_id, text=body, now_ms=now_ms, now_iso=iso_ms(now_ms),
                            outbox=self.outbox, private=private, agent=agent, article_id=article_id,
                            reply_id=reply_id)
        if article_id and self.kb is not None and out["outcome"] == "replied":
            case = self.store.get_case(case_id) or {}
            self.kb.record_choice(article_id, case.get("text", ""))
        return out

    def resolve(self, case_id: str, *, now_ms: int, by: str = "") -> dict[str, Any]:
        return resolve_case(self.store, case_id, now_ms=now_ms, by=by)

    def customer_360(self, customer_id: str) -> dict[str, Any]:
        return customer_360(self.store, customer_id)

    def rule_stats(self) -> dict[str, dict[str, int]]:
        """Per rule: ``{"hits": n, "next_negative": n, "next_positive": n, ...}`` (outcomes as recorded)."""
        out: dict[str, dict[str, int]] = {name: {"hits": 0} for name in self.rules.names}
        for key, n in self.store.rule_stats().items():
            rule, _, what = key.rpartition("|")
            out.setdefault(rule, {"hits": 0})[what] = n
        return out

    # -- internals ------------------------------------------------------------------------------------
    def _brand_reply(self, m: _Mention) -> dict[str, Any]:
        if not m.in_reply_to:
            return {"reply_id": m.id, "case_id": None, "outcome": "not_a_reply", "response_ms": None}
        by = str(m.meta.get("agent") or m.author or "")
        r = self.store.record_reply(m.id, m.in_reply_to, m.ts_ms, by, EARLY_REPLY_TTL_S,
                                    self.settings.processed_ttl_seconds * 1000, self.retention().stale_ms)
        return {"reply_id": m.id, "case_id": r["case_id"] or None, "outcome": r["outcome"],
                "response_ms": int(r["response_ms"]) if r["response_ms"] else None}

    def _redeem_codes(self, m: _Mention) -> None:
        if m.link is not None or not m.text:
            return
        codes = find_link_codes(m.text, self.settings.link_code_prefix)
        if not codes:
            return
        code = codes[0]
        try:
            res = redeem_link_code(self.store, code, m.channel, m.author, mention_id=m.id, now_ms=m.ts_ms,
                                   keep=self.settings.history_keep)
        except LinkCodeError as exc:
            log.info("mention %s: %s", m.id, exc)
            m.link = {"code": code, "status": "error", "error": str(exc)}
            return
        m.link = res.to_dict()
        m.customer_id = res.customer_id

    def _plan(self, m: _Mention, ctx: dict[str, Any]) -> dict[str, Any]:
        s = self.settings
        cust = ctx["customer_id"]
        prospect = False
        if not cust and m.author:
            cust, prospect = prospect_id(m.channel, m.author), True
        if ctx["customer"]:
            customer = customer_from_hash(ctx["customer"])
            prospect = customer.get("kind") == "prospect"
        else:
            customer = {"id": cust, "kind": "prospect"} if cust else {}
        followers = _int_meta(m.meta, _FOLLOWER_KEYS)
        reach = 1 + sum(_int_meta(m.meta, _ENGAGEMENT_KEYS))
        if customer:
            customer["influence"] = influence_score(
                max(followers + [customer.get("followers") or 0]) or None, (customer.get("reach") or 0) + reach)
        mention = dict(m.raw)
        mention["customer_id"] = cust or None
        # a mention not scored yet (in the flow, churn scores after the CRM) counts its author's latest risk
        churn_risk = m.churn_risk if m.churn_risk is not None else (
            ctx.get("churn_risk") if self.stored_churn_risk else None)
        mention["churn_risk"] = churn_risk
        history = history_summary(customer, ctx["history"]) if self.rules.uses_history else {}
        hits = self.rules.evaluate(mention, customer, history) if len(self.rules) else []

        route: str | None = None
        prio_override: str | None = None
        tags: list[str] = []
        tasks: list[dict[str, Any]] = []
        messages: list[tuple[dict[str, str], bool]] = []  # (outbox message, links the thread to the case)
        alerts: list[dict[str, Any]] = []
        case_id = case_id_for(m.id)
        thread_case = ctx["thread_case"] if ctx["thread_customer"] and ctx["thread_customer"] == cust else ""
        for hit in hits:
            for a in hit.actions:
                kind = a["kind"]
                if kind == "route":
                    route = a["queue"]
                elif kind == "priority":
                    prio_override = a["priority"]
                elif kind == "tag":
                    tags.extend(t for t in a["tags"] if t not in tags)
                elif kind == "task":
                    tasks.append({"id": f"T-{hit.rule}-{m.id}", "rule": hit.rule, "title": a["title"],
                                  "queue": a["queue"], "due_ms": m.ts_ms + int(a["due_minutes"] * 60_000)})
                elif kind == "outbox":
                    messages.append(({
                        "reply_id": f"rule:{hit.rule}:{m.id}", "kind": "dm_request" if a["private"] else "reply",
                        "channel": a["channel"] or m.channel, "brand": m.brand, "in_reply_to": m.id,
                        "case_id": "", "customer_id": cust or "", "agent": f"rule:{hit.rule}", "text": a["text"],
                        "url": "", "ts": m.ts_iso,
                    }, True))
                elif kind == "webhook":
                    event = {"event": a["event"], "rule": hit.rule, "mention": mention}
                    messages.append(({
                        "reply_id": f"hook:{hit.rule}:{m.id}", "kind": "webhook", "channel": WEBHOOK_CHANNEL,
                        "brand": m.brand, "in_reply_to": m.id, "case_id": "", "customer_id": cust or "",
                        "agent": f"rule:{hit.rule}", "text": orjson.dumps(event, default=str).decode(),
                        "url": a["url"], "ts": m.ts_iso,
                    }, False))
                elif kind == "alert":
                    alerts.append({
                        "id": f"rule:{hit.rule}:{m.id}", "kind": "rule", "brand": m.brand, "channel": m.channel,
                        "topic": hit.rule, "window_start": m.ts_iso, "observed": 1.0, "expected": 0.0, "score": 1.0,
                        "severity": a["severity"], "sample_ids": [m.id], "top_terms": m.keywords[:10],
                        "message": a["message"],
                    })

        queue = route or m.department
        open_case = m.intent in s.case_intents or route is not None
        # the case the messages belong to as far as is known now; the commit fills in the one it settles on
        known_case = thread_case or (case_id if open_case else "")
        outbox: list[dict[str, Any]] = []
        for msg, thread in messages:
            msg["case_id"] = known_case
            outbox.append({"stream": self.store.keys.outbox(msg["channel"]), "id": msg["reply_id"],
                           "fields": self.outbox.encode(msg), "thread": 1 if thread else 0})
        prio = priority_for(sentiment=m.sentiment, sentiment_score=m.sentiment_score, customer=customer,
                            churn_risk=churn_risk or 0.0, settings=s)
        priority = prio_override or prio.priority
        sla_ms = int(s.sla_minutes_for(m.channel, priority) * 60_000)
        suggestions: list[dict[str, Any]] = []
        if open_case and not thread_case and self.kb is not None:
            suggestions = self.kb.search(m.text, s.kb_top_k, m.keywords)
        case_fields: dict[str, str] = {}
        if open_case:
            case_fields = {
                "id": case_id, "mention_id": m.id, "queue": queue, "department": m.department,
                "priority": priority, "priority_score": repr(prio.score), "strategy": s.strategy_for(queue, m.channel),
                "lang": m.lang, "channel": m.channel, "brand": m.brand, "author": m.author,
                "owned": "1" if m.owned else "0", "text": m.text[:2000], "sentiment": m.sentiment,
                "sentiment_score": repr(m.sentiment_score), "keywords": orjson.dumps(m.keywords).decode(),
                "suggestions": orjson.dumps(suggestions).decode(), "sla_ms": str(sla_ms),
                "url": m.raw["url"] if isinstance(m.raw.get("url"), str) else "",
            }
        partial = {
            "mention_id": m.id, "suggestions": suggestions, "alerts": alerts,
            "rule_hits": [h.to_dict() for h in hits], "outbox": [msg for msg, _ in messages], "tasks": tasks,
            "tags": tags,
            "link": m.link,
        }
        partial = {k: v for k, v in partial.items() if v}  # stored per mention: keep it small
        summary = {"id": m.id, "ts": m.ts_ms, "channel": m.channel, "text": m.text[:280], "sentiment": m.sentiment,
                   "score": m.sentiment_score, "intent": m.intent}
        return {
            "mid": m.id, "ts": m.ts_ms, "channel": m.channel, "author": m.author, "in_reply_to": m.in_reply_to,
            "cust": cust or "", "prospect": 1 if prospect and cust and not ctx["customer"] else 0,
            "summary": orjson.dumps(summary).decode(), "keep": s.history_keep, "sentiment": m.sentiment,
            "query": 1 if m.intent == "query" else 0, "score": repr(m.sentiment_score), "reach": reach,
            "followers": str(max(followers)) if followers else "",
            "churn": repr(m.churn_risk) if m.churn_risk is not None else "",
            "open": 1 if open_case else 0, "case": case_fields, "sla": s.sla_ms_table(m.channel),
            "warn": repr(s.sla_warn_fraction), "tags": tags, "hits": [h.rule for h in hits], "tasks": tasks,
            "outbox": outbox, "outbox_maxlen": self.outbox.maxlen,
            "result": orjson.dumps(partial, default=str).decode(),
            "done_ret": s.processed_ttl_seconds * 1000, "case_ret": int(s.case_retention_days * 86_400_000),
            "prospect_ret": int(s.prospect_retention_days * 86_400_000),
            "stale": int(s.stale_case_days * 86_400_000), "early_ret": EARLY_REPLY_TTL_S * 1000,
        }

    @staticmethod
    def _result(rec: dict[str, str], *, duplicate: bool) -> dict[str, Any]:
        partial = orjson.loads(rec.get("r") or "{}")
        event = rec.get("case_event") or "none"
        return {
            "mention_id": partial.get("mention_id"),
            "customer_id": rec.get("customer_id") or None,
            "prospect": rec.get("prospect") == "1",
            "case_id": rec.get("case_id") or None,
            "case_event": event,
            "case_status": rec.get("status") or None,
            "priority": rec.get("priority") or None,
            "queue": rec.get("queue") or None,
            "assigned_agent": rec.get("agent") or None,
            "suggestions": partial.get("suggestions", []) if event == "opened" else [],
            "alerts": partial.get("alerts", []),
            "rule_hits": partial.get("rule_hits", []),
            "outbox": partial.get("outbox", []),
            "tasks": partial.get("tasks", []),
            "tags": partial.get("tags", []),
            "link": partial.get("link"),
            "duplicate": duplicate,
        }
