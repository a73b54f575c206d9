"""Auto-assignment: strategies, skills, queues, offline reassignment, capacity, concurrent workers."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from crm_helpers import MIN, T0

from connectors.outbox import ENCODING
from crm import AgentError, CrmProcessor, CrmSettings
from crm.assignment import Agent, add_agent, list_agents, set_agent_capacity, set_agent_online


def _proc(store, key_prefix, **assignment):
    s = CrmSettings(prefix=key_prefix, auto_tick_ms=0, assignment=assignment or {"default": "least_loaded"})
    return CrmProcessor(store, settings=s, outbox=ENCODING)


def test_least_loaded_picks_the_agent_with_fewest_open_cases(store, key_prefix, mention, agents):
    p = _proc(store, key_prefix)
    agents(("ann", 5), ("bob", 5))
    got = [p.process(mention(id=f"twitter:{i}", author=f"u{i}"))["assigned_agent"] for i in range(4)]
    assert Counter(got) == {"ann": 2, "bob": 2}
    p.resolve("C-twitter:0", now_ms=T0 + MIN)  # that was ann's: ann now has fewer
    assert p.process(mention(id="twitter:9", author="u9"))["assigned_agent"] == got[0]


def test_round_robin_takes_turns(store, key_prefix, mention, agents):
    p = _proc(store, key_prefix, default="round_robin")
    agents(("a1", 10), ("a2", 10), ("a3", 10))
    got = [p.process(mention(id=f"twitter:{i}", author=f"u{i}"))["assigned_agent"] for i in range(7)]
    assert got == ["a1", "a2", "a3", "a1", "a2", "a3", "a1"]
    p.resolve("C-twitter:1", now_ms=T0 + MIN)  # resolving does not reorder the rotation
    assert p.process(mention(id="twitter:20", author="x"))["assigned_agent"] == "a2"


def test_skill_based_matches_department_channel_and_language(store, key_prefix, mention, agents):
    p = _proc(store, key_prefix, default="skill_based")
    agents(("en_tw", 5, {"departments": "service", "channels": "twitter", "languages": "en"}),
           ("es_fb", 5, {"departments": "service", "channels": "facebook,twitter", "languages": "es"}),
           ("sales", 5, {"departments": "sales"}))
    # load es_fb so that least-loaded alone would prefer en_tw
    p.process(mention(id="facebook:1", channel="facebook", lang="es", author="a"))
    out = p.process(mention(id="twitter:2", lang="es", author="b"))
    assert out["assigned_agent"] == "es_fb"
    assert p.process(mention(id="twitter:3", lang="en", author="c"))["assigned_agent"] == "en_tw"
    assert p.process(mention(id="twitter:4", department="sales", author="d"))["assigned_agent"] == "sales"
    # nobody speaks German on twitter: the case waits in its queue
    out = p.process(mention(id="twitter:5", lang="de", author="e"))
    assert out["assigned_agent"] is None and out["case_status"] == "open"
    assert store.queue_case_ids("service") == ["C-twitter:5"]


def test_department_queue_waits_for_a_matching_agent(store, key_prefix, mention, agents):
    p = _proc(store, key_prefix)
    agents(("svc", 5, {"departments": "service"}))
    out = p.process(mention(id="blog:1", channel="blog", department="pr", author="journo"))
    assert out["queue"] == "pr" and out["assigned_agent"] is None
    assert store.queue_case_ids("pr") == ["C-blog:1"]
    add_agent(store, Agent.create("pr1", capacity=2, departments="pr"), online=True, now_ms=T0 + MIN)
    assert store.get_case("C-blog:1")["agent"] == "pr1"
    assert store.queue_case_ids("pr") == []


def test_full_agents_queue_oldest_first_and_freed_slots_go_to_the_oldest(store, key_prefix, mention, agents):
    p = _proc(store, key_prefix)
    agents(("ann", 1))
    ids = [p.process(mention(id=f"twitter:{i}", author=f"u{i}", ts_ms=T0 + i * MIN))["case_id"] for i in range(4)]
    assert store.get_case(ids[0])["agent"] == "ann"
    assert store.queue_case_ids("service") == ids[1:]
    moved = p.resolve(ids[0], now_ms=T0 + 10 * MIN)["assigned"]
    assert moved == [(ids[1], "ann")]
    assert store.queue_case_ids("service") == ids[2:]
    assert store.get_case(ids[1])["assigned_ms"] == str(T0 + 10 * MIN)


def test_offline_agent_cases_are_reassigned_or_queued(store, key_prefix, mention, agents):
    p = _proc(store, key_prefix)
    agents(("ann", 3), ("bob", 2))
    for i in range(4):
        p.process(mention(id=f"twitter:{i}", author=f"u{i}", ts_ms=T0 + i * MIN))
    ann_cases = store.agent_case_ids("ann")
    assert len(ann_cases) == 2
    moves = set_agent_online(store, "ann", False, now_ms=T0 + 30 * MIN)
    assert sorted(moves["released"]) == ann_cases
    # bob had 2 of capacity 2: nothing fits, both wait (oldest first) and nothing is lost
    assert moves["assigned"] == [] and moves["queued"] == ann_cases
    assert store.get_agent("ann")["load"] == "0" and store.agent_case_ids("ann") == []
    assert store.queue_case_ids("service") == ann_cases
    assert all(e["event"] != "assigned" or e["agent"] == "ann" for c in ann_cases for e in store.case_events(c))
    # more room for bob: the oldest waiting case is assigned at once
    moved = set_agent_capacity(store, "bob", 3, now_ms=T0 + 31 * MIN)["assigned"]
    assert moved == [(ann_cases[0], "bob")]
    back = set_agent_online(store, "ann", True, now_ms=T0 + 40 * MIN)
    assert back["assigned"] == [(ann_cases[1], "ann")]
    assert store.queue_case_ids("service") == []


def test_agent_updates_keep_load_and_bad_agents_are_refused(store, mention, agents, key_prefix):
    p = _proc(store, key_prefix)
    agents(("ann", 2))
    p.process(mention(id="twitter:1", author="u1"))
    add_agent(store, Agent.create("ann", capacity=4, languages="en,fr"), online=True, now_ms=T0)
    [ann] = list_agents(store)
    assert (ann.load, ann.capacity, ann.languages, ann.status) == (1, 4, "en,fr", "online")
    with pytest.raises(AgentError, match="no agent 'zed'"):
        set_agent_online(store, "zed", True, now_ms=T0)
    with pytest.raises(AgentError, match="capacity"):
        set_agent_capacity(store, "ann", -1, now_ms=T0)
    with pytest.raises(AgentError, match="agent id"):
        Agent.create("bad id", capacity=1)


def test_concurrent_workers_never_over_assign(store, key_prefix, mention, agents, redis_url):
    from crm import make_store
    from stream.redisconn import connect

    agents(*[(f"a{i}", 4) for i in range(5)])  # 20 slots
    batches = [[mention(id=f"twitter:{w}-{i}", author=f"w{w}u{i}") for i in range(40)] for w in range(4)]
    errors: list[BaseException] = []

    def work(batch):
        try:
            client = connect(redis_url)
            proc = _proc(make_store(client, key_prefix), key_prefix)
            for i in range(0, len(batch), 8):
                proc.process_batch(batch[i:i + 8])
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    loads = {a.id: a.load for a in list_agents(store)}
    assert loads == {f"a{i}": 4 for i in range(5)}
    assert sum(len(store.agent_case_ids(a)) for a in loads) == 20
    assert len(store.queue_case_ids("service")) == 160 - 20
    assert store.case_stats()["opened"] == 160
