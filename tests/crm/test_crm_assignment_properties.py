"""Assignment properties (hypothesis, against the real Redis scripts).

- no agent ever receives a case beyond its capacity;
- round robin is fair within one assignment;
- no case is lost: every unresolved case is with exactly one online agent or waits in its queue,
  also when agents go offline; and nothing waits while an agent who could take it has room.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from crm_helpers import T0, iso
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.outbox import ENCODING
from crm import CrmProcessor, CrmSettings, make_store
from crm.assignment import Agent, add_agent, agent_from_hash, set_agent_capacity, set_agent_online

DEPTS = ("service", "sales")
LANGS = ("en", "es")
PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture()
def fresh_prefix(r: redis.Redis) -> Iterator[callable]:
    made: list[str] = []

    def new() -> str:
        made.append(f"test:prop:{uuid.uuid4().hex[:12]}:")
        return made[-1]

    yield new
    for prefix in made:
        keys = list(r.scan_iter(match=prefix + "*", count=1000))
        for i in range(0, len(keys), 500):
            r.delete(*keys[i:i + 500])


def _enriched(n: int, queue: str, lang: str | None, ts: int) -> dict:
    return {"id": f"twitter:{n}", "channel": "twitter", "brand": "acme", "author": f"u{n}", "text": "help",
            "ts": iso(ts), "intent": "query", "sentiment": "neutral", "department": queue, "lang": lang}


agent_spec = st.tuples(st.integers(0, 3), st.sets(st.sampled_from(DEPTS)), st.sets(st.sampled_from(LANGS)))
op = st.one_of(
    st.tuples(st.just("case"), st.sampled_from(DEPTS), st.sampled_from((*LANGS, None))),
    st.tuples(st.just("resolve"), st.integers(0, 50)),
    st.tuples(st.just("offline"), st.integers(0, 4)),
    st.tuples(st.just("online"), st.integers(0, 4)),
    st.tuples(st.just("capacity"), st.integers(0, 4), st.integers(0, 4)),
)


def _check(store, strategy: str, before: dict[str, dict[str, str]], open_cases: set[str]) -> dict[str, dict[str, str]]:
    agents = {h["id"]: h for h in store.list_agents()}
    for aid, h in agents.items():
        load, cap = int(h["load"]), int(h["capacity"])
        cases = store.agent_case_ids(aid)
        assert load == len(cases), f"{aid}: load {load} but {len(cases)} cases"
        prev = int(before.get(aid, {}).get("load", 0))
        if load > prev:  # it received cases in this step: only up to its capacity
            assert load <= cap, f"{aid}: {load} cases > capacity {cap}"
        if h["status"] == "offline":
            assert load == 0, f"offline {aid} still holds {cases}"
    queued = {q: set(store.queue_case_ids(q)) for q in store.queue_names()}
    all_queued = set().union(*queued.values()) if queued else set()
    for cid in open_cases:
        case = store.get_case(cid)
        holder = case["agent"]
        if holder:
            assert cid in store.agent_case_ids(holder) and agents[holder]["status"] == "online"
            assert cid not in all_queued
        else:
            assert cid in queued.get(case["queue"], set()), f"{cid} is neither assigned nor queued"
            # work conserving: nobody who could take it has room
            for h in agents.values():
                a = agent_from_hash(h)
                if a.status == "online" and a.load < a.capacity:
                    assert not a.serves(queue=case["queue"], channel="twitter", lang=case["lang"] or None,
                                        skill_based=strategy == "skill_based"), f"{cid} waits while {a.id} has room"
    assert all_queued <= open_cases, "a resolved case is still queued"
    return agents


@PROPS
@given(strategy=st.sampled_from(("least_loaded", "round_robin", "skill_based")),
       specs=st.lists(agent_spec, min_size=1, max_size=4), ops=st.lists(op, max_size=25))
def test_capacity_respected_and_no_case_lost(r, fresh_prefix, strategy, specs, ops):
    prefix = fresh_prefix()
    store = make_store(r, prefix)
    proc = CrmProcessor(store, settings=CrmSettings(prefix=prefix, auto_tick_ms=0, assignment={"default": strategy}), outbox=ENCODING)
    for i, (cap, depts, langs) in enumerate(specs):
        add_agent(store, Agent.create(f"a{i}", capacity=cap, departments=",".join(sorted(depts)),
                                      languages=",".join(sorted(langs))), online=True, now_ms=T0)
    open_cases: set[str] = set()
    opened: list[str] = []
    before = _check(store, strategy, {}, open_cases)
    for n, step in enumerate(ops):
        now = T0 + (n + 1) * 1000
        if step[0] == "case":
            out = proc.process(_enriched(n, step[1], step[2], now))
            open_cases.add(out["case_id"])
            opened.append(out["case_id"])
        elif step[0] == "resolve" and opened:
            cid = opened[step[1] % len(opened)]
            if cid in open_cases:
                proc.resolve(cid, now_ms=now)
                open_cases.discard(cid)
        elif step[0] in ("offline", "online") and step[1] < len(specs):
            set_agent_online(store, f"a{step[1]}", step[0] == "online", now_ms=now)
        elif step[0] == "capacity" and step[1] < len(specs):
            set_agent_capacity(store, f"a{step[1]}", step[2], now_ms=now)
        before = _check(store, strategy, before, open_cases)


@PROPS
@given(n_agents=st.integers(1, 6), n_cases=st.integers(0, 30), resolve_every=st.integers(0, 5))
def test_round_robin_is_fair_within_one(r, fresh_prefix, n_agents, n_cases, resolve_every):
    prefix = fresh_prefix()
    store = make_store(r, prefix)
    proc = CrmProcessor(store, settings=CrmSettings(prefix=prefix, auto_tick_ms=0,
                                                    assignment={"default": "round_robin"}), outbox=ENCODING)
    for i in range(n_agents):
        add_agent(store, Agent.create(f"a{i}", capacity=100), online=True, now_ms=T0)
    for n in range(n_cases):
        out = proc.process(_enriched(n, "service", "en", T0 + n * 1000))
        if resolve_every and n % resolve_every == 0:
            proc.resolve(out["case_id"], now_ms=T0 + n * 1000 + 1)
    totals = [int(store.get_agent(f"a{i}").get("assigned_total") or 0) for i in range(n_agents)]
    assert sum(totals) == n_cases
    assert max(totals) - min(totals) <= 1, totals
