"""Auto-assignment: agents with status, capacity and skills, and the strategies that pick one per case.

Strategies (chosen per department/channel in :class:`crm.settings.CrmSettings`):

- ``round_robin``: agents take turns (the one whose last assignment is oldest goes next);
- ``least_loaded``: the agent with the fewest unresolved cases, below capacity (Chatwoot's "balanced");
- ``skill_based``: only agents whose channels and languages cover the case, then the least loaded.

Ties go to the smaller agent id. Every strategy respects capacity and the agent's departments (an
agent without departments serves every queue). A case no agent can take waits in its department queue, oldest first, and is assigned
as soon as an agent frees up (a case is resolved, an agent comes online or gets more capacity).
An agent going offline hands their unresolved cases back to the queue, which is drained at once.
The choice and the load update happen in one server-side script, so concurrent workers never
over-assign.

>>> a = Agent.create("ann", capacity=3, departments="service, sales", channels="twitter", languages="EN")
>>> a.departments, a.channels, a.languages
('service,sales', 'twitter', 'en')
>>> a.serves(queue="sales", channel="twitter", lang="en")
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from crm.errors import AgentError
from crm.store import CrmStore

__all__ = [
    "Agent",
    "add_agent",
    "agent_from_hash",
    "drain_queues",
    "list_agents",
    "set_agent_capacity",
    "set_agent_online",
]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def _skills(text: str | None) -> str:
    if not text:
        return ""
    items = [p.strip().lower() for p in re.split(r"[,;|\s]+", text) if p.strip()]
    return "*" if "*" in items else ",".join(dict.fromkeys(items))


@dataclass(frozen=True, slots=True)
class Agent:
    """A service agent; skills are comma lists ('' = any).

    >>> Agent.create("bob", capacity=2).serves(queue="pr", channel="blog", lang=None)
    True
    """

    id: str
    name: str = ""
    capacity: int = 5
    departments: str = ""
    channels: str = ""
    languages: str = ""
    status: str = "offline"
    load: int = 0

    @classmethod
    def create(cls, agent_id: str, *, name: str = "", capacity: int = 5, departments: str | None = None,
               channels: str | None = None, languages: str | None = None) -> Agent:
        if not _ID.match(agent_id or ""):
            raise AgentError(f"agent id {agent_id!r} must be 1-64 letters, digits, '_', '.', '@' or '-'")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            raise AgentError(f"agent {agent_id}: capacity must be a whole number >= 0, got {capacity!r}")
        return cls(agent_id, name or agent_id, capacity, _skills(departments), _skills(channels), _skills(languages))

    def serves(self, *, queue: str, channel: str | None, lang: str | None, skill_based: bool = True) -> bool:
        """The same test the assignment script applies (department always; channel/language if skill based)."""

        def has(skills: str, value: str | None) -> bool:
            return not skills or skills == "*" or not value or value in skills.split(",")

        return has(self.departments, queue) and (
            not skill_based or (has(self.channels, channel) and has(self.languages, lang))
        )


def agent_from_hash(h: dict[str, str]) -> Agent:
    return Agent(
        id=h.get("id", ""), name=h.get("name", ""), capacity=int(h.get("capacity") or 0),
        departments=h.get("departments", ""), channels=h.get("channels", ""), languages=h.get("languages", ""),
        status=h.get("status", "offline"), load=int(h.get("load") or 0),
    )


def add_agent(store: CrmStore, agent: Agent, *, online: bool, now_ms: int) -> dict[str, Any]:
    """Create or update an agent (its load is kept) and set its status; waiting cases may be assigned."""
    created = store.upsert_agent(agent.id, agent.name, agent.capacity, agent.departments, agent.channels,
                                 agent.languages)
    moves = set_agent_online(store, agent.id, online, now_ms=now_ms)
    return {"agent": agent.id, "created": created, **moves}


def set_agent_online(store: CrmStore, agent_id: str, online: bool, *, now_ms: int) -> dict[str, Any]:
    """Bring an agent online (drains queues) or offline (their unresolved cases are reassigned or queued).

    Returns ``{"assigned": [(case, agent), ...], "released": [case, ...], "queued": [case, ...]}``.
    """
    status, assigned, released = store.set_agent_status(agent_id, online, now_ms)
    if status == "unknown":
        raise AgentError(f"no agent {agent_id!r}")
    placed = {c for c, _ in assigned}
    return {"assigned": assigned, "released": released, "queued": sorted(c for c in released if c not in placed)}


def set_agent_capacity(store: CrmStore, agent_id: str, capacity: int, *, now_ms: int) -> dict[str, Any]:
    """Change capacity; more room assigns waiting cases at once (less never takes cases away)."""
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
        raise AgentError(f"capacity must be a whole number >= 0, got {capacity!r}")
    status, assigned = store.set_agent_capacity(agent_id, capacity, now_ms)
    if status == "unknown":
        raise AgentError(f"no agent {agent_id!r}")
    return {"assigned": assigned}


def drain_queues(store: CrmStore, *, now_ms: int) -> list[tuple[str, str]]:
    """Assign waiting cases (oldest first) to any agent with room; returns (case, agent) pairs."""
    return store.drain_queues(now_ms)


def list_agents(store: CrmStore) -> list[Agent]:
    return [agent_from_hash(h) for h in store.list_agents()]
