"""The service desk as the dashboard reads it: cases, queues, agents, SLA breaches, rules and tasks.

Plain reads of what the CRM step keeps in Redis (through :mod:`crm`'s store), so the dashboard can show
the CRM while importing only ``stream/``. Times are event time: "now" is when the newest case opened.

>>> desk = ServiceDesk.empty()
>>> desk.has_data, desk.waiting, desk.first_response_mean_ms
(False, 0, None)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis

from connectors.outbox import ENCODING
from crm import CrmError, CrmProcessor, CrmSettings, KnowledgeBase, make_store
from crm.assignment import list_agents
from crm.cases import case_from_hash
from crm.store import CrmStore

__all__ = [
    "CrmError",
    "ServiceDesk",
    "answer_case",
    "close_case",
    "desk_settings",
    "event_now",
    "read_service_desk",
    "service_store",
]

_OUTCOMES = ("next_positive", "next_neutral", "next_negative")


@dataclass(frozen=True, slots=True)
class ServiceDesk:
    """What the service-desk page shows; build it with :func:`read_service_desk`."""

    #: Lifecycle counters: opened, assigned, replies, first_responses, resolved, reopened, sla_breaches, ...
    stats: dict[str, int] = field(default_factory=dict)
    open_cases: int = 0
    total_cases: int = 0
    #: Event time (ms) the newest case opened; ages and overdue flags count from here.
    now_ms: int | None = None
    #: ``{"queue", "waiting", "oldest_wait_ms"}`` per department queue.
    queues: list[dict[str, Any]] = field(default_factory=list)
    #: ``{"agent", "name", "status", "load", "capacity", "departments", "channels"}`` per agent.
    agents: list[dict[str, Any]] = field(default_factory=list)
    #: Open cases by response deadline: ``{"case", "status", "priority", "queue", "agent", "due_ms",
    #: "overdue", "channel", "author", "text", "suggestions": [{"id", "title"}]}``.
    cases: list[dict[str, Any]] = field(default_factory=list)
    #: ``{"rule", "hits", "next_positive", "next_neutral", "next_negative"}``: the customer's next mention
    #: after a hit tells whether the initiative landed.
    rules: list[dict[str, Any]] = field(default_factory=list)
    #: Open tasks from the rules, by due time.
    tasks: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def empty(cls) -> ServiceDesk:
        return cls()

    @property
    def has_data(self) -> bool:
        return self.total_cases > 0 or bool(self.agents)

    @property
    def waiting(self) -> int:
        """Cases waiting for an agent with room."""
        return sum(q["waiting"] for q in self.queues)

    @property
    def first_response_mean_ms(self) -> float | None:
        n = self.stats.get("first_responses", 0)
        return self.stats.get("first_response_ms_sum", 0) / n if n else None

    @property
    def resolution_mean_ms(self) -> float | None:
        n = self.stats.get("resolved", 0)
        return self.stats.get("resolution_ms_sum", 0) / n if n else None


def service_store(client: redis.Redis, prefix: str) -> CrmStore:
    """The CRM store under ``prefix`` (build it once per client: it keeps its own decoding pool)."""
    return make_store(client, prefix)


def read_service_desk(store: CrmStore, *, limit: int = 50) -> ServiceDesk:
    """Everything the service-desk page shows, in a handful of Redis round trips."""
    now = store.newest_case_ms()
    queues = [{"queue": q, "waiting": n, "oldest_wait_ms": (now - oldest) if now is not None and oldest else None}
              for q, n, oldest in store.queue_summary() if n]
    agents = [{"agent": a.id, "name": a.name, "status": a.status, "load": a.load, "capacity": a.capacity,
               "departments": a.departments or "*", "channels": a.channels or "*"} for a in list_agents(store)]
    cases = []
    for raw in store.get_cases(store.case_ids(open_only=True, limit=limit)):
        if not raw:
            continue
        c = case_from_hash(raw)
        due = c.get("due_ms")
        cases.append({
            "case": c["id"], "status": c.get("status", ""), "priority": c.get("priority", ""),
            "queue": c.get("queue", ""), "agent": c.get("agent") or None, "due_ms": due,
            "overdue": bool(due is not None and now is not None and due < now), "channel": c.get("channel", ""),
            "author": c.get("author", ""), "text": c.get("text", ""),
            "suggestions": [{"id": s.get("id", ""), "title": s.get("title", s.get("id", ""))}
                            for s in c.get("suggestions") or []],
        })
    per_rule: dict[str, dict[str, Any]] = {}
    for key, n in store.rule_stats().items():
        rule, _, what = key.rpartition("|")
        row = per_rule.setdefault(rule, {"rule": rule, "hits": 0, **dict.fromkeys(_OUTCOMES, 0)})
        row[what] = n
    return ServiceDesk(
        stats=store.case_stats(), open_cases=store.case_count(open_only=True),
        total_cases=store.case_count(open_only=False), now_ms=now, queues=sorted(queues, key=lambda q: -q["waiting"]),
        agents=agents, cases=cases, rules=sorted(per_rule.values(), key=lambda r: -r["hits"]),
        tasks=store.tasks(limit),
    )


def desk_settings(prefix: str, crm_config: str | None = None) -> CrmSettings:
    """The CRM's settings: ``crm_config`` (TOML) or the defaults, under ``prefix`` (the flow's and the agents').

    A malformed file raises :class:`CrmError` naming the file and the setting.

    >>> desk_settings("demo:").prefix
    'demo:'
    """
    base = CrmSettings.from_toml(crm_config) if crm_config else CrmSettings()
    return base.with_changes(prefix=prefix)


def answer_case(store: CrmStore, settings: CrmSettings, case_id: str, *, now_ms: int, text: str = "",
                article_id: str | None = None, private: bool = False, agent: str | None = None,
                reply_id: str | None = None) -> dict[str, Any]:
    """An agent's reply, as `pulse crm reply` sends it: to the outbox of the case's channel, in reply to the
    customer's latest mention (a ``pulse:outbox:{channel}`` message of the outbox contract, queued atomically
    with the case update, once per reply id); an article also teaches the KB.

    Raises :class:`CrmError` (re-exported for the dashboard) for an unknown or resolved case, no text, ...
    """
    kb = KnowledgeBase(store, feedback_weight=settings.kb_feedback_weight)
    return CrmProcessor(store, kb=kb, settings=settings, outbox=ENCODING).reply(
        case_id, text=text or None, article_id=article_id, private=private, agent=agent, reply_id=reply_id,
        now_ms=event_now(store, now_ms))


def close_case(store: CrmStore, settings: CrmSettings, case_id: str, *, now_ms: int, by: str = "") -> dict[str, Any]:
    """Resolve a case, as `pulse crm resolve` does: its agent's slot goes to the oldest waiting case."""
    return CrmProcessor(store, settings=settings).resolve(case_id, now_ms=event_now(store, now_ms), by=by)


def event_now(store: CrmStore, wall_ms: int) -> int:
    """When an agent's action happens on the cases' clock: the wall clock, or the newest case if that is later.

    A live stream's event time trails the wall clock; the demo's simulated clock (or a replay of future-dated
    data) runs ahead of it, and an answer stamped before the question would measure no response time at all.
    """
    newest = store.newest_case_ms()
    return max(wall_ms, newest) if newest is not None else wall_ms
