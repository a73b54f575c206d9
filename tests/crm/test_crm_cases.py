"""Cases: idempotent opening, follow-ups, lifecycle timestamps, response times, replies, SLA alerts."""

from __future__ import annotations

import pytest
from crm_helpers import MIN, T0, iso

from connectors.outbox import ENCODING, OUTBOX_FIELDS, OutboxMessage, read_messages
from crm import CaseError, CrmInputError, CrmProcessor
from crm.keys import CrmKeys
from stream.schema import Alert, Enriched, Mention


def test_query_opens_one_case_and_replays_do_not_duplicate(processor, mention, agents, store):
    agents(("ann", 5))
    m = mention(id="twitter:100", author="@Zed")
    first = processor.process(m)
    assert first["case_event"] == "opened" and first["case_id"] == "C-twitter:100"
    assert first["assigned_agent"] == "ann" and first["case_status"] == "assigned"
    again = processor.process(m)
    assert again["duplicate"] is True and again["case_id"] == first["case_id"]
    assert again["assigned_agent"] == "ann"
    assert store.case_stats()["opened"] == 1
    assert store.get_agent("ann")["load"] == "1"
    assert store.case_ids(open_only=True, limit=10) == ["C-twitter:100"]


def test_batch_with_duplicate_ids_opens_one_case(processor, mention, store):
    m = mention(id="twitter:7")
    out = processor.process_batch([m, dict(m), dict(m)])
    assert [o["duplicate"] for o in out] == [False, True, True]
    assert {o["case_id"] for o in out} == {"C-twitter:7"}
    assert store.case_stats()["opened"] == 1


def test_comment_opens_no_case_but_enters_history(processor, mention, store):
    out = processor.process(mention(intent="comment", text="nice ad", author="fan1", sentiment="positive",
                                    sentiment_score=0.7))
    assert out["case_id"] is None and out["case_event"] == "none"
    assert out["customer_id"] == "p:twitter:fan1" and out["prospect"] is True
    prospect = store.get_customer("p:twitter:fan1")
    assert prospect["kind"] == "prospect" and prospect["positive"] == "1"


def test_follow_up_in_thread_is_appended_and_new_thread_opens_new_case(processor, mention, agents, store):
    agents(("ann", 5))
    q = processor.process(mention(id="twitter:1", author="bob"))
    follow = processor.process(mention(id="twitter:2", author="bob", in_reply_to="twitter:1",
                                       text="any news?", intent="comment"))
    assert follow["case_event"] == "appended" and follow["case_id"] == q["case_id"]
    # someone else replying in the thread does not join bob's case
    other = processor.process(mention(id="twitter:3", author="eve", in_reply_to="twitter:1", intent="query"))
    assert other["case_event"] == "opened" and other["case_id"] == "C-twitter:3"
    fresh = processor.process(mention(id="twitter:4", author="bob", text="another problem"))
    assert fresh["case_event"] == "opened" and fresh["case_id"] == "C-twitter:4"
    case = store.get_case(q["case_id"])
    assert case["mentions"] == "2" and case["last_mention_id"] == "twitter:2"


def test_lifecycle_is_timestamped_and_response_times_are_exact(processor, mention, agents, store):
    agents(("ann", 5))
    processor.process(mention(id="twitter:1", author="bob", ts_ms=T0))
    r1 = processor.reply("C-twitter:1", text="Sorry! DM us your order number", now_ms=T0 + 7 * MIN)
    assert r1["outcome"] == "replied" and r1["response_ms"] == 7 * MIN
    processor.process(mention(id="twitter:2", author="bob", in_reply_to=r1["reply"]["reply_id"], ts_ms=T0 + 10 * MIN,
                              text="done, sent it", intent="comment"))
    case = store.get_case("C-twitter:1")
    assert case["status"] == "assigned" and case["awaiting_since"] == str(T0 + 10 * MIN)
    r2 = processor.reply("C-twitter:1", text="Refund issued", now_ms=T0 + 13 * MIN)
    assert r2["response_ms"] == 3 * MIN
    assert r2["reply"]["in_reply_to"] == "twitter:2"  # answers the latest customer mention
    done = processor.resolve("C-twitter:1", now_ms=T0 + 20 * MIN, by="ann")
    assert done["resolution_ms"] == 20 * MIN
    case = store.get_case("C-twitter:1")
    assert case["first_response_ms"] == str(7 * MIN)
    assert case["next_response_ms_sum"] == str(3 * MIN) and case["next_response_count"] == "1"
    events = [(e["event"], e["ts"]) for e in store.case_events("C-twitter:1")]
    assert events == [
        ("opened", T0), ("assigned", T0), ("replied", T0 + 7 * MIN), ("followup", T0 + 10 * MIN),
        ("replied", T0 + 13 * MIN), ("resolved", T0 + 20 * MIN),
    ]
    assert store.get_agent("ann")["load"] == "0"
    assert store.case_ids(open_only=True, limit=10) == []


def test_new_customer_mention_reopens_resolved_case(processor, mention, agents, store):
    agents(("ann", 5))
    processor.process(mention(id="twitter:1", author="bob", ts_ms=T0))
    reply = processor.reply("C-twitter:1", text="Fixed now", now_ms=T0 + MIN)
    processor.resolve("C-twitter:1", now_ms=T0 + 2 * MIN)
    back = processor.process(mention(id="twitter:2", author="bob", in_reply_to=reply["reply"]["reply_id"],
                                     ts_ms=T0 + 60 * MIN, text="it broke again", intent="comment"))
    assert back["case_event"] == "reopened" and back["case_id"] == "C-twitter:1"
    assert back["assigned_agent"] == "ann" and back["case_status"] == "assigned"
    case = store.get_case("C-twitter:1")
    assert case["reopened"] == "1" and case["resolved_ms"] == ""
    assert store.get_agent("ann")["load"] == "1"
    assert [e["event"] for e in store.case_events("C-twitter:1")][-2:] == ["reopened", "assigned"]


def test_reply_errors_for_unknown_and_resolved_cases(processor, mention):
    with pytest.raises(CaseError, match="no case 'C-nope'"):
        processor.reply("C-nope", text="hi", now_ms=T0)
    processor.process(mention(id="twitter:1"))
    processor.resolve("C-twitter:1", now_ms=T0 + MIN)
    with pytest.raises(CaseError, match="is resolved"):
        processor.reply("C-twitter:1", text="hi", now_ms=T0 + 2 * MIN)
    with pytest.raises(CaseError, match="already resolved"):
        processor.resolve("C-twitter:1", now_ms=T0 + 3 * MIN)
    with pytest.raises(CaseError, match="needs"):
        processor.reply("C-twitter:1", text="  ", now_ms=T0)


def test_reply_goes_to_the_channel_outbox_once_in_the_contract(processor, mention, store, key_prefix, r):
    processor.process(mention(id="facebook:9", channel="facebook", author="Mary Green", customer_id="C-5"))
    a = processor.reply("C-facebook:9", text="We are on it", now_ms=T0 + MIN, private=True, agent="ann")
    b = processor.reply("C-facebook:9", text="We are on it", now_ms=T0 + 2 * MIN, private=True, agent="ann")
    assert a["reply"]["reply_id"] == b["reply"]["reply_id"] and b["outcome"] == "duplicate"
    entries = r.xrange(CrmKeys(key_prefix).outbox("facebook"))
    assert len(entries) == 1 and r.xlen(CrmKeys(key_prefix).outbox("twitter")) == 0
    # exactly ARCHITECTURE's fields, in order, readable by every reader of the contract
    assert [k.decode() for k in entries[0][1]] == list(OUTBOX_FIELDS)
    [msg] = read_messages(r, key_prefix, "facebook")
    assert msg == OutboxMessage(reply_id=a["reply"]["reply_id"], kind="dm_request", channel="facebook", brand="acme",
                                in_reply_to="facebook:9", case_id="C-facebook:9",
                                customer_id=store.get_case("C-facebook:9")["customer_id"], agent="ann",
                                text="We are on it", url="", ts=iso(T0 + MIN))
    assert msg.to_dict() == a["reply"]
    assert store.get_case("C-facebook:9")["replies"] == "1"


def test_a_crm_without_an_outbox_refuses_to_send(mention, store, crm_settings, r, key_prefix):
    bare = CrmProcessor(store, settings=crm_settings)
    bare.process(mention(id="twitter:1", author="bob"))
    with pytest.raises(CaseError, match="no outbox"):
        bare.reply("C-twitter:1", text="hi", now_ms=T0 + MIN)
    assert r.xlen(f"{key_prefix}outbox:twitter") == 0
    assert store.get_case("C-twitter:1")["status"] != "replied"


def test_brand_reply_from_the_stream_marks_case_and_is_idempotent(processor, mention, store):
    processor.process(mention(id="twitter:1", author="bob", ts_ms=T0))
    reply = {"id": "twitter:900", "channel": "twitter", "brand": "acme", "author": "AcmeHelp", "text": "hi!",
             "ts": iso(T0 + 4 * MIN), "in_reply_to": "twitter:1", "from_brand": True}
    first = processor.on_brand_reply(reply)
    assert first == {"reply_id": "twitter:900", "case_id": "C-twitter:1", "outcome": "replied",
                     "response_ms": 4 * MIN}
    assert processor.on_brand_reply(reply)["outcome"] == "duplicate"
    # process() hands from_brand mentions to on_brand_reply too
    assert processor.process(reply)["outcome"] == "duplicate"
    assert store.get_case("C-twitter:1")["first_response_ms"] == str(4 * MIN)
    assert processor.on_brand_reply(dict(reply, id="twitter:901", in_reply_to=None))["outcome"] == "not_a_reply"


def test_reply_arriving_before_its_mention_still_counts(processor, mention, store):
    early = {"id": "twitter:901", "channel": "twitter", "brand": "acme", "author": "AcmeHelp", "text": "hi",
             "ts": iso(T0 + 2 * MIN), "in_reply_to": "twitter:50", "from_brand": True}
    assert processor.on_brand_reply(early)["outcome"] == "pending"
    out = processor.process(mention(id="twitter:50", author="bob", ts_ms=T0))
    assert out["case_status"] == "replied"
    case = store.get_case("C-twitter:50")
    assert case["first_response_ms"] == str(2 * MIN) and case["status"] == "replied"


def test_sla_warning_then_breach_alerts_once_each(processor, mention, store):
    # twitter/medium SLA is 120 minutes; the warning fires with 20% (24 min) left
    out = processor.process(mention(id="twitter:1", author="bob", ts_ms=T0))
    assert out["priority"] == "low"
    case = store.get_case("C-twitter:1")
    due = int(case["due_ms"])
    assert due == T0 + 720 * MIN  # twitter/low = 720 minutes
    assert processor.tick(T0 + 500 * MIN) == []
    warn = processor.tick(due - 100 * MIN)
    assert [a["id"] for a in warn] == [f"sla_breach:C-twitter:1:{due}:warning"]
    assert processor.tick(due - 50 * MIN) == []
    breach = processor.tick(due)
    assert [a["id"] for a in breach] == [f"sla_breach:C-twitter:1:{due}:breach"]
    assert processor.tick(due + 10 * MIN) == []
    for a in warn + breach:
        alert = Alert.from_dict(a)  # the schema's Alert accepts them
        assert alert.kind == "sla_breach" and alert.sample_ids == ("twitter:1",)
    assert breach[0]["observed"] == 720.0 and breach[0]["expected"] == 720.0
    assert store.get_case("C-twitter:1")["sla_breaches"] == "1"


def test_replied_case_raises_no_sla_alert(processor, mention):
    processor.process(mention(id="twitter:1", ts_ms=T0))
    processor.reply("C-twitter:1", text="hello", now_ms=T0 + MIN)
    assert processor.tick(T0 + 10_000 * MIN) == []


def test_replied_case_left_idle_is_auto_resolved_and_frees_the_agent(processor, mention, agents, store):
    # auto_resolve_minutes defaults to 1440: a day without the customer coming back after a reply
    agents(("ann", 1))
    processor.process(mention(id="twitter:1", author="bob", ts_ms=T0))
    waiting = processor.process(mention(id="twitter:2", author="kim", ts_ms=T0 + MIN))
    assert waiting["assigned_agent"] is None  # ann is full: kim's case waits in the queue
    processor.reply("C-twitter:1", text="Fixed, let us know", now_ms=T0 + 10 * MIN)
    processor.tick(T0 + 10 * MIN + 1439 * MIN)
    assert store.get_case("C-twitter:1")["status"] == "replied"
    processor.tick(T0 + 3000 * MIN)  # a late tick resolves it at the moment the idle day ran out
    case = store.get_case("C-twitter:1")
    assert case["status"] == "resolved" and case["resolved_by"] == "auto"
    assert case["resolved_ms"] == str(T0 + 10 * MIN + 1440 * MIN) and case["resolution_ms"] == str(1450 * MIN)
    assert store.get_case("C-twitter:2")["agent"] == "ann"  # the freed slot went to the waiting case
    assert store.get_agent("ann")["load"] == "1"
    assert [e["event"] for e in store.case_events("C-twitter:1")][-1] == "resolved"


def test_customer_coming_back_stops_the_auto_resolve_until_the_next_reply(processor, mention, agents, store):
    agents(("ann", 5))
    processor.process(mention(id="twitter:1", author="bob", ts_ms=T0))
    r1 = processor.reply("C-twitter:1", text="Try again now", now_ms=T0 + MIN)
    processor.process(mention(id="twitter:2", author="bob", in_reply_to=r1["reply"]["reply_id"], ts_ms=T0 + 100 * MIN,
                              text="still broken", intent="comment"))
    processor.tick(T0 + 5000 * MIN)
    assert store.get_case("C-twitter:1")["status"] == "assigned", "awaiting the agent: never auto-resolved"
    processor.reply("C-twitter:1", text="Replaced it", now_ms=T0 + 5001 * MIN)
    processor.tick(T0 + 5001 * MIN + 1000 * MIN)
    assert store.get_case("C-twitter:1")["status"] == "replied"
    processor.tick(T0 + 5001 * MIN + 1440 * MIN)
    assert store.get_case("C-twitter:1")["resolved_ms"] == str(T0 + 6441 * MIN)


def test_auto_resolve_can_be_turned_off(store, crm_settings, mention, agents):
    from crm import CrmError, CrmSettings

    p = CrmProcessor(store, settings=crm_settings.with_changes(auto_resolve_minutes=0.0, stale_case_days=0.0),
                     outbox=ENCODING)
    agents(("ann", 5))
    p.process(mention(id="twitter:1", ts_ms=T0))
    p.reply("C-twitter:1", text="hello", now_ms=T0 + MIN)
    p.tick(T0 + 100_000 * MIN)
    assert store.get_case("C-twitter:1")["status"] == "replied"
    with pytest.raises(CrmError, match="auto_resolve_minutes must be >= 0"):
        CrmSettings.from_dict({"auto_resolve_minutes": -1})


def test_auto_tick_attaches_due_sla_alerts_while_processing(store, crm_settings, mention):
    p = CrmProcessor(store, settings=crm_settings.with_changes(auto_tick_ms=60_000), outbox=ENCODING)
    p.process(mention(id="twitter:1", ts_ms=T0))
    later = p.process(mention(id="twitter:2", ts_ms=T0 + 2000 * MIN, intent="comment"))
    assert [a["kind"] for a in later["alerts"]] == ["sla_breach"]


def test_priority_uses_sentiment_value_churn_and_influence(processor, mention, store):
    import polars as pl

    from crm.customers import import_customers

    import_customers(store, pl.DataFrame({"customer_id": ["c1"], "tier": ["platinum"], "twitter": ["vip"]}),
                     now_ms=T0)
    calm = processor.process(mention(id="twitter:1", author="nobody"))
    angry_vip = processor.process(mention(id="twitter:2", author="vip", sentiment="negative",
                                          sentiment_score=-0.9, churn_risk=0.9,
                                          meta={"followers": 250_000}))
    assert calm["priority"] == "low" and angry_vip["priority"] == "urgent"
    assert store.get_case("C-twitter:2")["sla_ms"] == str(15 * MIN)
    assert store.get_customer("c1")["followers"] == "250000"


def test_bad_records_raise_clear_errors_and_batch_keeps_going(processor, mention):
    with pytest.raises(CrmInputError, match="ts: unparseable"):
        processor.process(mention(ts="yesterday"))
    with pytest.raises(CrmInputError, match="id: missing"):
        processor.process(mention(id=""))
    with pytest.raises(CrmInputError, match="sentiment"):
        processor.process(mention(sentiment="angry"))
    out = processor.process_batch([mention(id="twitter:5"), "junk", mention(id="twitter:6", keywords="x")])
    assert out[0]["case_event"] == "opened"
    assert out[1]["error"].startswith("record:") and out[2]["error"].startswith("keywords")


def test_accepts_schema_enriched_dicts(processor):
    m = Mention.from_dict({"id": "twitter:77", "channel": "twitter", "brand": "acme", "author": "bob",
                           "text": "where is my parcel?", "ts": "2024-05-01T10:00:00Z"})
    e = Enriched(mention=m, intent="query", sentiment="negative", sentiment_score=-0.4, keywords=("parcel",))
    out = processor.process(e.to_dict())
    assert out["case_id"] == "C-twitter:77" and out["case_event"] == "opened"


def test_batch_longer_than_a_send_chunk_keeps_order_and_follow_ups(processor, mention, agents, store):
    # Redis applies the first plans of a batch while the rest are planned: order must hold across chunks
    from crm.store import STREAM_CHUNK

    agents(("ann", 500))
    batch = []
    for i in range(STREAM_CHUNK * 3):
        batch.append(mention(id=f"twitter:q{i}", author=f"u{i}"))
        batch.append(mention(id=f"twitter:f{i}", author=f"u{i}", in_reply_to=f"twitter:q{i}", intent="comment"))
    out = processor.process_batch(batch)
    assert [o["case_event"] for o in out] == ["opened", "appended"] * (STREAM_CHUNK * 3)
    assert [o["case_id"] for o in out[1::2]] == [f"C-twitter:q{i}" for i in range(STREAM_CHUNK * 3)]
    assert store.case_stats()["opened"] == STREAM_CHUNK * 3
    assert store.get_agent("ann")["load"] == str(STREAM_CHUNK * 3)


def test_scripts_the_server_lost_are_loaded_again(processor, mention, store, r):
    # a script Redis does not know (as after a restart or SCRIPT FLUSH) is loaded and the call run again
    processor.process(mention(id="twitter:warm"))
    text = store._scripts["COMMIT"].script + f"\n-- {store.prefix}"  # a sha this server has never seen
    store._scripts["COMMIT"] = r.register_script(text)
    out = processor.process_batch([mention(id="twitter:s1"), mention(id="twitter:s2", author="other")])
    assert [o["case_event"] for o in out] == ["opened", "opened"]
    assert r.script_exists(store._scripts["COMMIT"].sha) == [True]


def test_a_failure_while_planning_leaves_the_connection_clean(processor, mention, store, monkeypatch):
    from crm.store import STREAM_CHUNK

    real_plan = processor._plan
    calls = iter(range(10_000))

    def failing(m, ctx):
        if next(calls) == STREAM_CHUNK + 2:  # after a chunk went out unanswered
            raise RuntimeError("boom")
        return real_plan(m, ctx)

    monkeypatch.setattr(processor, "_plan", failing)
    with pytest.raises(RuntimeError, match="boom"):
        processor.process_batch([mention(id=f"twitter:x{i}", author=f"a{i}") for i in range(STREAM_CHUNK * 2)])
    monkeypatch.setattr(processor, "_plan", real_plan)
    # the chunk sent before the failure may or may not have been applied (the connection was dropped);
    # its replies must not leak into the next caller's, and the replay applies each mention exactly once
    again = processor.process_batch([mention(id=f"twitter:x{i}", author=f"a{i}") for i in range(STREAM_CHUNK * 2)])
    assert all("error" not in o for o in again)
    assert [o["case_id"] for o in again] == [f"C-twitter:x{i}" for i in range(STREAM_CHUNK * 2)]
    done = [o["duplicate"] for o in again]
    assert done == sorted(done, reverse=True) and not any(done[STREAM_CHUNK:])  # only a prefix was applied before
    assert store.case_stats()["opened"] == STREAM_CHUNK * 2


def test_thread_links_and_sent_marks_do_not_pile_up(processor, mention, agents, store, r, key_prefix):
    # links from mentions and replies to their case and the outbox's sent-once marks retire by event time
    from crm import _lua
    from crm.keys import KEEP_LINKS_SECONDS

    assert f"local KEEP_S = {KEEP_LINKS_SECONDS}" in _lua.COMMIT
    agents(("ann", 5))
    processor.process(mention(id="twitter:1", author="bob", ts_ms=T0))
    sent = processor.reply("C-twitter:1", text="On it", now_ms=T0 + MIN)
    rid = sent["reply"]["reply_id"]
    keys = CrmKeys(key_prefix)
    assert r.zscore(keys.outbox_sent_at, rid) == T0 + MIN  # the sent-once mark: event time too
    for key in (keys.outbox_sent(rid), keys.thread("twitter:1"), keys.thread(rid)):
        assert r.ttl(key) == -1, key  # no wall-clock expiry: indexed by event time instead
    assert r.zscore(keys.threads_at, "twitter:1") == T0 and r.zscore(keys.threads_at, rid) == T0 + MIN
    # still sent once, and a follow-up in the thread still joins the case
    again = processor.reply("C-twitter:1", text="On it", now_ms=T0 + 2 * MIN)
    assert again["outcome"] == "duplicate" and r.xlen(keys.outbox("twitter")) == 1
    follow = processor.process(mention(id="twitter:2", author="bob", in_reply_to=rid, ts_ms=T0 + 3 * MIN,
                                       intent="comment"))
    assert follow["case_event"] == "appended" and follow["case_id"] == "C-twitter:1"
    # half a year of event time later the links are gone (deleted by the tick, and ignored before it)
    later = T0 + KEEP_LINKS_SECONDS * 1000 + 10 * MIN
    processor.process(mention(id="twitter:3", author="kim", ts_ms=later))
    late = processor.process(mention(id="twitter:4", author="bob", in_reply_to="twitter:2", ts_ms=later + MIN,
                                     intent="comment"))
    assert late["case_id"] != "C-twitter:1"
    processor.tick(later + MIN)
    for mid in ("twitter:1", rid, "twitter:2"):
        assert not r.exists(keys.thread(mid)) and r.zscore(keys.threads_at, mid) is None
