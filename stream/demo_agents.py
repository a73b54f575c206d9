"""The demo's simulated staff: agents who work the cases the CRM assigns them, in shifts, and analysts who label
a trickle of mentions for the models.

Everything they do is decided from the event-time stream, never from the wall clock: the CRM step of the flow
(:class:`stream.crm_steps.CrmHost`) hands them each enriched mention in order and lets them act at every
minute boundary of event time *before* the CRM sees later mentions, so the same input gives the same cases,
replies, resolutions and labels. Their choices come from a hash of the seed and the ids involved.

- **Staffing** (:class:`StaffPlan`): three shifts (07-15, 15-23, 23-07 UTC); each gets as many agents as the
  busiest hour of the shift needs, from the simulator's traffic forecast, the share of posts that open a case,
  the agents' handling time and concurrency, at a target occupancy. Agents come online when their shift starts
  and go offline when it ends (the CRM hands their unfinished cases back to the queue).
- **Agents**: an online agent works up to ``concurrency`` of the cases assigned to them at once, oldest first;
  each takes a handling time (lognormal, median ``handle_minutes``); then the agent replies through the CRM
  (:meth:`crm.CrmProcessor.reply`: the reply goes to the channel's outbox and comes back into the flow as the
  brand's answer) and resolves the case, which frees the slot for the next waiting case. Outside incidents the
  queue stays near a steady state; an outage's burst of queries builds a backlog that drains after it.
- **Analysts**: ``label_share`` of customer mentions are labelled (sentiment, intent and department) from the
  simulator's ground truth (``meta.truth_*``) between 5 and 30 event minutes after they were posted, a
  ``label_noise`` share of labels wrong (another class), and sent to the feedback stream as the Models page's
  labelling does (:func:`stream.model_desk.send_labels`): prequential quality moves, and the slang wave
  (``World(slang_after_hours=...)``) shows as drift.

>>> plan = StaffPlan.parse("rate=800,labels=0.02")
>>> plan.rate_per_hour, plan.label_share, StaffPlan.parse(plan.spec()) == plan
(800.0, 0.02, True)
>>> [s.name for s in plan.shifts()], plan.on_shift(plan.shifts()[0], 7), plan.on_shift(plan.shifts()[2], 3)
(['early', 'late', 'night'], True, True)
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import math
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.simulator import DEFAULT_START, traffic_forecast
from crm import Agent, CaseError, CrmError, CrmProcessor, CrmStore, add_agent, set_agent_online
from stream.keys import Keys
from stream.model_desk import label_classes, send_labels
from stream.schema import Enriched

__all__ = ["DemoStaff", "Shift", "StaffPlan"]

log = logging.getLogger(__name__)

_NAMES = ("ava ben chloe dev eli fay gus hana ivan jo kai lea max nia omar pia raj sue tom uma vic wes xia yan zoe "
          "abe bea cal dot ed flo gil ida jay kim lou mo ned ora pat quinn ros sam tess".split())
_MODELS = ("sentiment", "intent", "department")
_REPLIES = {
    "negative": "Hi, {agent} here. Really sorry about this: we're on it and will DM you the next steps.",
    "neutral": "Hi, {agent} here. Thanks for asking: we've sent you a DM with the details.",
    "positive": "Hi, {agent} here. Thanks so much! We've DMed you what you asked for.",
}


def _unit(*parts: object) -> float:
    """A number in [0, 1) from the parts: the same parts, the same number (no random state)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True, slots=True)
class Shift:
    """A shift: a name and its hours in UTC (``end`` < ``start`` wraps past midnight)."""

    name: str
    start: int
    end: int

    def hours(self) -> list[int]:
        span = (self.end - self.start) % 24 or 24
        return [(self.start + k) % 24 for k in range(span)]


@dataclass(frozen=True, slots=True)
class StaffPlan:
    """How the demo is staffed and labelled; ``spec()`` / ``parse()`` carry it in the ``demo_staff`` setting.

    ``rate_per_hour`` is the simulator's (the staffing follows its forecast); ``case_share`` the share of posts
    that open a case; agents handle ``concurrency`` cases at once, ``handle_minutes`` each (median), planned at
    ``occupancy``; each has room for ``capacity`` assigned cases. Analysts label ``label_share`` of mentions,
    ``label_noise`` of the labels wrong. ``seed`` varies the choices. The staff act every ``step_minutes`` of
    event time.
    """

    rate_per_hour: float = 800.0
    case_share: float = 0.4
    handle_minutes: float = 5.0
    concurrency: int = 4
    occupancy: float = 0.75
    capacity: int = 6
    label_share: float = 0.015
    label_noise: float = 0.03
    seed: int = 7
    step_minutes: float = 1.0

    _KEYS = {"rate": "rate_per_hour", "cases": "case_share", "handle": "handle_minutes", "concurrency": "concurrency",
             "occupancy": "occupancy", "capacity": "capacity", "labels": "label_share", "noise": "label_noise",
             "seed": "seed", "step": "step_minutes"}

    @classmethod
    def parse(cls, spec: str) -> StaffPlan:
        """``key=value`` pairs separated by commas (rate, cases, handle, concurrency, occupancy, capacity, labels,
        noise, seed); raises ``ValueError`` with a one-line message."""
        values: dict[str, Any] = {}
        types = {f.name: f.type for f in fields(cls)}
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            key, sep, raw = part.partition("=")
            name = cls._KEYS.get(key.strip())
            if not sep or name is None:
                raise ValueError(f"demo staff: expected key=value with key one of {', '.join(cls._KEYS)}, got {part!r}")
            try:
                values[name] = int(raw) if types[name] == "int" else float(raw)
            except ValueError:
                raise ValueError(f"demo staff: {key.strip()} must be a number, got {raw!r}") from None
        plan = cls(**values)
        if plan.rate_per_hour <= 0 or plan.handle_minutes <= 0 or not 0 < plan.step_minutes <= 60 or plan.concurrency < 1 or plan.capacity < 1:
            raise ValueError("demo staff: rate and handle must be > 0, step within (0, 60], concurrency and "
                             "capacity >= 1")
        if not (0 < plan.occupancy <= 1 and 0 <= plan.label_share <= 1 and 0 <= plan.label_noise <= 1
                and 0 < plan.case_share <= 1):
            raise ValueError("demo staff: occupancy and cases within (0, 1], labels and noise within [0, 1]")
        return plan

    def spec(self) -> str:
        return ",".join(f"{k}={getattr(self, n)}" for k, n in self._KEYS.items())

    @staticmethod
    def shifts() -> tuple[Shift, ...]:
        return (Shift("early", 7, 15), Shift("late", 15, 23), Shift("night", 23, 7))

    @staticmethod
    def on_shift(shift: Shift, hour: int) -> bool:
        return hour in shift.hours()

    def cases_per_agent_hour(self) -> float:
        mean_minutes = self.handle_minutes * math.exp(_SIGMA**2 / 2)
        return self.concurrency * 60.0 / mean_minutes

    def needed(self, hour: int) -> int:
        """Agents the busiest weekday's ``hour`` needs (forecast cases ÷ what an agent handles at occupancy)."""
        peak = max(traffic_forecast(self.rate_per_hour, DEFAULT_START + timedelta(days=d, hours=hour))
                   for d in range(7))
        return max(1, math.ceil(peak * self.case_share / (self.cases_per_agent_hour() * self.occupancy)))

    def roster(self) -> list[tuple[str, Shift]]:
        """``(agent id, shift)`` for every agent of the team."""
        out: list[tuple[str, Shift]] = []
        for shift in self.shifts():
            for _ in range(max(self.needed(h) for h in shift.hours())):
                k = len(out)
                out.append((_NAMES[k % len(_NAMES)] + (str(k // len(_NAMES) + 1) if k >= len(_NAMES) else ""), shift))
        return out

    def hire(self, store: CrmStore, now_ms: int) -> int:
        """Create the team in the CRM (everyone offline: shifts bring them online); returns its size."""
        team = self.roster()
        for agent_id, shift in team:
            add_agent(store, Agent.create(agent_id, name=f"{agent_id.title()} ({shift.name})",
                                                    capacity=self.capacity, languages="en"),
                      online=False, now_ms=now_ms)
        return len(team)


_SIGMA = 0.5  # spread of the handling times (lognormal)


class DemoStaff:
    """The simulated agents and analysts, driven by the event time of the mentions they are shown.

    The CRM step calls :meth:`due` for each mention's event time; when it says so, :meth:`advance` lets the staff
    act up to that time (before the CRM sees the mention); then :meth:`observe` shows them the mention.
    """

    def __init__(self, plan: StaffPlan, keys: Keys) -> None:
        self.plan = plan
        self.keys = keys
        self.team = plan.roster()
        self._clock: int | None = None  # the last step boundary acted at (epoch ms)
        self._step_ms = int(plan.step_minutes * 60_000)
        self._online: dict[str, bool] = {}
        self._working: dict[str, set[str]] = {agent: set() for agent, _ in self.team}
        self._replies: list[tuple[int, str, str, str]] = []  # (due ms, case id, agent, sentiment): heap
        self._labels: list[tuple[int, str, str, str]] = []  # (due ms, mention id, model, label): heap
        self._classes = {name: label_classes(name) for name in _MODELS}
        self.counts = {"replied": 0, "resolved": 0, "labels": 0}

    # -- what the CRM step calls ---------------------------------------------------------------------------
    def due(self, ts_ms: int) -> bool:
        """Whether the staff act before a mention at ``ts_ms`` (a step boundary of event time was crossed)."""
        return self._clock is None or ts_ms >= self._clock + self._step_ms

    def advance(self, processor: CrmProcessor, ts_ms: int) -> None:
        """Act at every step boundary up to ``ts_ms`` (a gap of more than an hour is crossed in one step)."""
        boundary = ts_ms - ts_ms % self._step_ms
        if self._clock is None or boundary - self._clock > 3_600_000:
            self._clock = boundary - self._step_ms
        while self._clock + self._step_ms <= boundary:
            self._clock += self._step_ms
            self._step(processor, self._clock)

    def observe(self, e: Enriched) -> None:
        """A mention went by: the analysts may pick it for labelling (customer mentions with ground truth)."""
        m = e.mention
        meta = m.meta if isinstance(m.meta, dict) else {}
        if m.from_brand or "truth_sentiment" not in meta:
            return
        if _unit(self.plan.seed, "label", m.id) >= self.plan.label_share:
            return
        due = m.ts_ms + int((5 + 25 * _unit(self.plan.seed, "delay", m.id)) * 60_000)
        for name in _MODELS:
            truth = str(meta.get(f"truth_{name}") or "")
            classes = self._classes[name]
            if truth not in classes:
                continue
            label = truth
            if _unit(self.plan.seed, "noise", m.id, name) < self.plan.label_noise:
                others = [c for c in classes if c != truth]
                label = others[int(_unit(self.plan.seed, "wrong", m.id, name) * len(others))]
            heapq.heappush(self._labels, (due, m.id, name, label))

    # -- one minute boundary -------------------------------------------------------------------------------
    def _step(self, processor: CrmProcessor, now: int) -> None:
        hour = datetime.fromtimestamp(now / 1000, UTC).hour
        for agent, shift in self.team:
            on = StaffPlan.on_shift(shift, hour)
            if self._online.get(agent) != on:
                try:
                    set_agent_online(processor.store, agent, on, now_ms=now)
                except CrmError as exc:  # not hired in this CRM (e.g. another plan): leave them out
                    log.warning("demo staff: agent %s: %s", agent, exc)
                self._online[agent] = on
                if not on:
                    self._working[agent].clear()  # the CRM hands their cases back to the queue
        while self._replies and self._replies[0][0] <= now:
            due, case_id, agent, sentiment = heapq.heappop(self._replies)
            self._finish(processor, case_id, agent, due, sentiment)
        self._pick_up(processor, now)
        self._send_labels(processor, now)

    def _finish(self, processor: CrmProcessor, case_id: str, agent: str, due: int, sentiment: str) -> None:
        working = self._working[agent]
        if case_id not in working:
            return  # handed back at the end of the shift
        working.discard(case_id)
        text = _REPLIES.get(sentiment, _REPLIES["neutral"]).format(agent=agent.title())
        try:
            processor.reply(case_id, now_ms=due, text=text, agent=agent, reply_id=f"demo:{case_id}:{due}")
            self.counts["replied"] += 1
            processor.resolve(case_id, now_ms=due, by=agent)
            self.counts["resolved"] += 1
        except CaseError as exc:  # resolved meanwhile (e.g. by a person on the dashboard)
            log.debug("demo staff: %s could not finish %s: %s", agent, case_id, exc)

    def _pick_up(self, processor: CrmProcessor, now: int) -> None:
        """Online agents with a free hand start on their oldest assigned cases (two round trips for everyone)."""
        store = processor.store
        free = [(agent, self.plan.concurrency - len(self._working[agent])) for agent, _ in self.team
                if self._online.get(agent) and len(self._working[agent]) < self.plan.concurrency]
        if not free:
            return
        client = getattr(store, "client", None)
        if client is not None:
            pipe = client.pipeline(transaction=False)
            for agent, _ in free:
                pipe.smembers(store.keys.agent_cases(agent))
            assigned = [sorted(str(c) for c in ids) for ids in pipe.execute()]
        else:
            assigned = [store.agent_case_ids(agent) for agent, _ in free]
        waiting = {agent: [c for c in ids if c not in self._working[agent]]
                   for (agent, _), ids in zip(free, assigned, strict=True)}
        wanted = [c for ids in waiting.values() for c in ids]
        if not wanted:
            return
        found = {c["id"]: c for c in store.get_cases(wanted) if c and c.get("status") in ("assigned", "open")}
        for agent, slots in free:
            cases = sorted((found[c] for c in waiting[agent] if c in found),
                           key=lambda c: (int(c.get("created_ms") or 0), c["id"]))
            for case in cases[:slots]:
                case_id = case["id"]
                minutes = self.plan.handle_minutes * math.exp(_SIGMA * _normal(self.plan.seed, case_id, now))
                due = now + int(min(minutes, 6 * self.plan.handle_minutes) * 60_000)
                self._working[agent].add(case_id)
                heapq.heappush(self._replies, (due, case_id, agent, str(case.get("sentiment") or "neutral")))

    def _send_labels(self, processor: CrmProcessor, now: int) -> None:
        by_model: dict[str, list[tuple[str, str]]] = {}
        while self._labels and self._labels[0][0] <= now:
            _, mention_id, name, label = heapq.heappop(self._labels)
            by_model.setdefault(name, []).append((mention_id, label))
        client = getattr(processor.store, "client", None)
        if client is None:
            return
        for name, labels in by_model.items():
            send_labels(client, self.keys, name, labels, "analyst", classes=self._classes[name])
            self.counts["labels"] += len(labels)


def _normal(*parts: object) -> float:
    """A standard normal number from the parts (Box-Muller over two hashes)."""
    u1 = max(_unit(*parts, 1), 1e-12)
    return math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * _unit(*parts, 2))
