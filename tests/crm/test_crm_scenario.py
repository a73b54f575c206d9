"""End to end at the CRM level, on the simulator's world and posts.

A known customer tweets a query -> one case, assigned to the least-loaded agent with the right skill,
the top-3 KB suggestions include the relevant article, the agent's reply appears in the twitter outbox
as a reply to that mention, flows back through the engine, and its response time is recorded; an
unknown author becomes a prospect and is merged by a link code. Then a slice of the simulated stream
runs through the CRM with the simulator's own brand replies.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from crm_helpers import MIN

from connectors.outbox import ENCODING, read_messages
from connectors.records import RawRecord
from connectors.simulator import World
from crm import (
    SAMPLE_KB,
    SAMPLE_RULES,
    CrmProcessor,
    CrmSettings,
    KnowledgeBase,
    import_customers,
    issue_link_code,
    load_articles,
    load_rules,
)
from crm.assignment import Agent, add_agent, list_agents
from crm.processor import parse_ts_ms
from stream.parse import parse_record
from stream.schema import Mention

#: simulator topic -> the KB article an agent would want suggested
TOPIC_ARTICLE = {
    "baggage": "lost-baggage", "purchases": "missing-purchases", "servers": "game-disconnects",
    "network": "no-signal", "broadband": "broadband-dropping", "checkin": "online-checkin",
    "delay": "flight-delay", "account": "hacked-account", "patch": "patch-crash", "sim": "activate-sim",
    "roaming": "roaming-charges",
}
_SCORE = {"negative": -0.6, "neutral": 0.0, "positive": 0.6}


def enrich(m: dict[str, Any]) -> dict[str, Any]:
    """What the classify step adds, taken from the simulator's hidden truth."""
    meta = m["meta"]
    sentiment = meta.get("truth_sentiment") or "neutral"
    return {**m, "intent": meta.get("truth_intent") or "comment", "sentiment": sentiment,
            "sentiment_score": _SCORE[sentiment], "department": meta.get("truth_department") or "service",
            "keywords": [], "churn_risk": 0.1, "customer_id": None, "case_id": None}


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=5, n_customers=1000, start=datetime(2024, 3, 4, 9, tzinfo=UTC))  # office hours


@pytest.fixture(scope="module")
def sim_mentions(world) -> list[dict[str, Any]]:
    return [r.payload for r in world.events(until=world.start + timedelta(hours=2)) if r.fmt == "mention"]


@pytest.fixture()
def crm(store, key_prefix, world) -> CrmProcessor:
    settings = CrmSettings(prefix=key_prefix, auto_tick_ms=0,
                           assignment={"default": "least_loaded", "service": "skill_based"})
    assert not import_customers(store, pl.DataFrame(world.customers()), now_ms=0).rejected
    kb = KnowledgeBase(store)
    kb.import_articles(load_articles(SAMPLE_KB)[0])
    return CrmProcessor(store, load_rules(SAMPLE_RULES), kb, settings, outbox=ENCODING)


def test_known_customer_query_to_reply_and_prospect_merge(crm, store, sim_mentions, r, key_prefix):
    query = next(m for m in sim_mentions
                 if m["channel"] == "twitter" and m["meta"].get("author_kind") == "customer"
                 and m["meta"]["truth_intent"] == "query" and m["meta"]["topic"] in TOPIC_ARTICLE
                 and m["meta"]["truth_department"] == "service")
    t0 = parse_ts_ms(query["ts"])
    # agents: a busier twitter agent, an idle one without twitter, and the right one
    for spec in (("tw_busy", "twitter"), ("fb_idle", "facebook"), ("tw_right", "twitter,instagram")):
        add_agent(store, Agent.create(spec[0], capacity=5, departments="service", channels=spec[1], languages="en"),
                  online=True, now_ms=t0 - 60 * MIN)
    busy = enrich({**query, "id": "twitter:warmup", "author": "someone_else", "ts": "2024-03-04T00:00:00+00:00"})
    assert crm.process(busy)["assigned_agent"] == "tw_busy"

    # the flow's identity step, then the cases step
    ident = crm.identify(query)
    assert ident["customer_id"] == query["meta"]["truth_customer_id"] and not ident["prospect"]
    out = crm.process(enrich({**query, "customer_id": ident["customer_id"]}))
    assert out["case_event"] == "opened" and out["case_id"] == f"C-{query['id']}"
    assert out["customer_id"] == query["meta"]["truth_customer_id"]
    assert out["assigned_agent"] == "tw_right"
    suggested = [s["id"] for s in out["suggestions"]]
    assert len(suggested) <= 3 and TOPIC_ARTICLE[query["meta"]["topic"]] in suggested, (query["text"], suggested)
    assert crm.process(enrich(query))["duplicate"] is True
    assert store.case_stats()["opened"] == 2

    # the agent answers with the suggested article; the reply lands in the twitter outbox
    article = TOPIC_ARTICLE[query["meta"]["topic"]]
    sent = crm.reply(out["case_id"], text="Sorry about that!", article_id=article, now_ms=t0 + 12 * MIN)
    [posted] = read_messages(r, key_prefix, "twitter")
    assert posted.to_dict() == sent["reply"]
    assert posted.in_reply_to == query["id"] and posted.kind == "reply" and posted.channel == "twitter"
    assert posted.case_id == out["case_id"] and posted.customer_id == out["customer_id"]
    # the reply comes back through the engine (as the flow reads the outbox back): counted once
    back = parse_record(RawRecord("redis:outbox", "1-0", posted.to_dict(), "outbox")).record
    assert isinstance(back, Mention) and back.from_brand and back.in_reply_to == query["id"]
    assert crm.process(back.to_dict())["outcome"] == "duplicate"
    case = store.get_case(out["case_id"])
    assert case["status"] == "replied" and case["first_response_ms"] == str(12 * MIN)

    # an unknown author becomes a prospect, then links with a code given to the customer
    prospect_post = next(m for m in sim_mentions if m["meta"].get("author_kind") == "prospect")
    p_out = crm.process(enrich(prospect_post))
    assert p_out["prospect"] is True and p_out["customer_id"].startswith("p:")
    customer = query["meta"]["truth_customer_id"]
    code = issue_link_code(store, customer, now_ms=parse_ts_ms(prospect_post["ts"]))
    dm = enrich({**prospect_post, "id": prospect_post["id"] + "-dm", "text": f"my code is {code.code}",
                 "ts": prospect_post["ts"]})
    dm["meta"] = {**dm["meta"], "truth_intent": "comment"}
    d_out = crm.process({**dm, "intent": "comment"})
    assert d_out["customer_id"] == customer and d_out["link"]["merged_prospect"] == p_out["customer_id"]
    view = crm.customer_360(customer)
    assert prospect_post["id"] in [m["id"] for m in view["recent_mentions"]]
    assert view["merged_prospects"] == [p_out["customer_id"]]


def test_simulated_stream_through_the_crm(crm, store, sim_mentions):
    for i in range(4):
        add_agent(store, Agent.create(f"ag{i}", capacity=8), online=True, now_ms=0)
    stream = sim_mentions[:6000]
    results = []
    for i in range(0, len(stream), 250):
        results.extend(crm.process_batch([enrich(m) if not m["from_brand"] else m for m in stream[i:i + 250]]))
    assert not [r for r in results if "error" in r]
    by_id = {m["id"]: m for m in stream}
    opened = [r for r in results if r.get("case_event") == "opened"]
    queries = [m for m in stream if not m["from_brand"] and m["meta"]["truth_intent"] == "query"
               and not m["in_reply_to"]]
    assert len(opened) >= len(queries) > 100  # every top-level query opened a case (rules may open more)
    # brand replies to queries were matched to their cases with exact response times
    replied = [r for r in results if r.get("outcome") == "replied"]
    assert replied
    for res in replied:
        reply = by_id[res["reply_id"]]
        case = store.get_case(res["case_id"])
        if case["first_reply_ms"] == str(parse_ts_ms(reply["ts"])) and case["mention_id"] == reply["in_reply_to"]:
            expected = parse_ts_ms(reply["ts"]) - parse_ts_ms(by_id[reply["in_reply_to"]]["ts"])
            assert res["response_ms"] == expected
    assert all(a.load <= a.capacity for a in list_agents(store))
    # replaying part of the stream changes nothing
    before = store.case_stats()
    again = crm.process_batch([enrich(m) if not m["from_brand"] else m for m in stream[:500]])
    assert all(r.get("duplicate") or r.get("outcome") in ("duplicate", "no_case", "not_a_reply") for r in again)
    assert store.case_stats() == before
