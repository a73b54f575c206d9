"""CRM bounds: resolved cases go ``case_retention_days`` (event time) after closing, processed-mention marks
``processed_ttl_seconds`` behind the newest mention, customers' mention histories are capped, and what a
mention does never depends on whether the retirement ran yet."""

from __future__ import annotations

import redis
from crm_helpers import MIN, T0

from connectors.outbox import ENCODING
from crm import CrmKeys, CrmProcessor, CrmSettings, make_store

DAY = 1440 * MIN


def _processor(r: redis.Redis, prefix: str, **changes: object) -> CrmProcessor:
    settings = CrmSettings(prefix=prefix, auto_tick_ms=0).with_changes(**changes)
    return CrmProcessor(make_store(r, prefix), settings=settings, outbox=ENCODING)


def _mention(n: int, author: str, ts: int, **kw: object) -> dict[str, object]:
    from crm_helpers import iso
    d: dict[str, object] = {
        "id": f"twitter:{n}", "channel": "twitter", "owned": False, "brand": "acme", "author": author,
        "text": "my order never arrived", "ts": iso(ts), "in_reply_to": None, "from_brand": False, "url": None,
        "lang": "en", "meta": {}, "customer_id": None, "intent": "query", "sentiment": "negative",
        "sentiment_score": -0.5, "department": "service", "keywords": [], "churn_risk": 0.0, "case_id": None,
    }
    d.update(kw)
    return d


def test_resolved_cases_and_histories_stay_bounded_over_three_years(r: redis.Redis, key_prefix: str) -> None:
    p = _processor(r, key_prefix, case_retention_days=30.0, history_keep=20)
    keys = CrmKeys(key_prefix)
    authors = [f"u{i}" for i in range(5)]
    n = 0
    for day in range(0, 3 * 365, 3):  # every third day each author asks; the case is resolved the next day
        for author in authors:
            n += 1
            out = p.process(_mention(n, author, T0 + day * DAY))
            p.resolve(out["case_id"], now_ms=T0 + day * DAY + DAY // 2)
        p.tick(T0 + day * DAY + DAY)
    assert n == 5 * 365
    cases = r.zcard(keys.cases_all)
    assert 0 < cases <= 5 * (30 // 3 + 2)  # about a month of cases, not three years' worth
    assert sum(1 for _ in r.scan_iter(match=key_prefix + "case:*", count=5000)) <= 4 * cases
    assert r.zcard(keys.cases_closed) <= cases
    for author in authors:
        cust = p.identify(_mention(0, author, T0))["customer_id"]
        assert r.zcard(keys.customer_cases(cust)) <= 30 // 3 + 2
        assert r.zcard(keys.customer_mentions(cust)) == 20
        assert r.hlen(keys.customer_mention_data(cust)) == 20
    # processed-mention marks: a week of event time (processed_ttl_seconds), not three years
    marks = r.zcard(keys.processed_at)
    assert 0 < marks <= 5 * (7 // 3 + 2)
    assert sum(1 for _ in r.scan_iter(match=key_prefix + "crm:done:*", count=5000)) == marks
    # thread links: half a year of event time (KEEP_LINKS_SECONDS)
    links = r.zcard(keys.threads_at)
    assert 0 < links <= 5 * (180 // 3 + 2)
    assert sum(1 for _ in r.scan_iter(match=key_prefix + "thread:*", count=5000)) == links
    # the newest cases are all there, whole
    newest = r.zrevrange(keys.cases_all, 0, 4)
    assert all(r.hget(keys.case(c.decode()), "status") == b"resolved" for c in newest)
    assert int(r.get(keys.watermark)) == T0 + (3 * 365 - 3) * DAY


def test_a_follow_up_to_a_retired_case_opens_a_new_one_whether_or_not_the_retirement_ran(r: redis.Redis) -> None:
    outcomes = []
    for tick, prefix in ((True, "test:crmret-a:"), (False, "test:crmret-b:")):
        try:
            p = _processor(r, prefix, case_retention_days=10.0)
            first = p.process(_mention(1, "bob", T0))
            reply = p.reply(first["case_id"], text="Sent again", now_ms=T0 + MIN)
            p.resolve(first["case_id"], now_ms=T0 + 2 * MIN)
            p.process(_mention(2, "kim", T0 + 11 * DAY))  # moves the CRM's watermark past bob's case's retention
            if tick:
                p.tick(T0 + 11 * DAY)
                assert r.hgetall(CrmKeys(prefix).case(first["case_id"])) == {}
            back = p.process(_mention(3, "bob", T0 + 11 * DAY + MIN, in_reply_to=reply["reply"]["reply_id"]))
            outcomes.append((back["case_event"], back["case_id"]))
        finally:
            for key in r.scan_iter(match=prefix + "*", count=5000):
                r.delete(key)
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == "opened" and outcomes[0][1] != "C-twitter:1"


def test_a_processed_mark_past_its_retention_counts_as_gone_whether_or_not_deleted(r: redis.Redis) -> None:
    outcomes = []
    for tick, prefix in ((True, "test:crmdone-a:"), (False, "test:crmdone-b:")):
        try:
            p = _processor(r, prefix, processed_ttl_seconds=86_400)
            p.process(_mention(1, "bob", T0, intent="comment"))  # no case: only its processed mark
            p.process(_mention(2, "kim", T0 + 2 * DAY))
            if tick:
                p.tick(T0 + 2 * DAY)
                assert not r.exists(CrmKeys(prefix).processed("twitter:1"))
            late = p.on_brand_reply({"id": "twitter:r1", "channel": "twitter", "brand": "acme", "author": "acme",
                                     "text": "thanks", "ts": _mention(0, "x", T0 + 2 * DAY)["ts"],
                                     "in_reply_to": "twitter:1", "from_brand": True})
            outcomes.append(late["outcome"])
        finally:
            for key in r.scan_iter(match=prefix + "*", count=5000):
                r.delete(key)
    assert outcomes[0] == outcomes[1] == "pending"


def test_a_follow_up_within_retention_still_reopens(r: redis.Redis, key_prefix: str) -> None:
    p = _processor(r, key_prefix, case_retention_days=10.0)
    first = p.process(_mention(1, "bob", T0))
    reply = p.reply(first["case_id"], text="Sent again", now_ms=T0 + MIN)
    p.resolve(first["case_id"], now_ms=T0 + 2 * MIN)
    p.process(_mention(2, "kim", T0 + 9 * DAY))
    p.tick(T0 + 9 * DAY)
    back = p.process(_mention(3, "bob", T0 + 9 * DAY + MIN, in_reply_to=reply["reply"]["reply_id"]))
    assert back["case_event"] == "reopened" and back["case_id"] == first["case_id"]
    assert r.zscore(CrmKeys(key_prefix).cases_closed, first["case_id"]) is None


# -- prospects, stale open cases, rule tasks, early replies, sent-once marks (all event time behind crm:wm) -----

_TASK_RULE = '''
[[rule]]
name = "follow-up"
[rule.when]
"mention.intent" = "query"
[[rule.then]]
task = { title = "Call back {customer.id}", queue = "service", due_minutes = 60 }
'''


def test_prospects_stale_cases_tasks_and_marks_stay_bounded_over_three_years(r: redis.Redis, key_prefix: str) -> None:
    from crm import RuleSet

    settings = CrmSettings(prefix=key_prefix, auto_tick_ms=0).with_changes(
        case_retention_days=30.0, prospect_retention_days=60.0, stale_case_days=20.0, task_retention_days=30.0)
    p = CrmProcessor(make_store(r, key_prefix), RuleSet.from_toml(_TASK_RULE), settings=settings, outbox=ENCODING)
    keys = CrmKeys(key_prefix)
    n = 0
    for day in range(0, 3 * 365, 3):  # every third day five new authors ask; nobody answers but one in five
        for k in range(5):
            n += 1
            ts = T0 + day * DAY + k * MIN
            out = p.process(_mention(n, f"u{day}-{k}", ts))
            if k == 0:
                p.reply(out["case_id"], text="On it", now_ms=ts + MIN)  # an outbox sent-once mark
            # a brand reply to a mention never seen: held as an early reply
            p.on_brand_reply({"id": f"twitter:r{n}", "channel": "twitter", "brand": "acme", "author": "acme",
                              "text": "hi", "ts": _mention(0, "x", ts)["ts"], "in_reply_to": f"twitter:gone{n}",
                              "from_brand": True})
        p.tick(T0 + day * DAY + DAY)
    assert n == 5 * 365
    per_window = lambda days: 5 * (days // 3 + 2)  # noqa: E731
    prospects = r.zcard(keys.prospects)
    assert 0 < prospects <= per_window(60)
    assert sum(1 for _ in r.scan_iter(match=key_prefix + "identity:*", count=5000)) == prospects
    profiles = sum(1 for _ in r.scan_iter(match=key_prefix + "customer:*", count=5000))
    assert profiles <= 6 * prospects  # hash, handles, mentions, mdata, cases, tags at most
    assert r.zcard(keys.cases_active) <= per_window(20)  # unanswered cases expire after 20 days
    assert r.zcard(keys.cases_all) <= per_window(20 + 30)
    assert r.zcard(keys.tasks_open) <= per_window(30)
    assert sum(1 for _ in r.scan_iter(match=key_prefix + "task:*", count=5000)) == r.zcard(keys.tasks_open)
    assert 0 < r.zcard(keys.early_at) <= per_window(7)
    assert sum(1 for _ in r.scan_iter(match=key_prefix + "crm:early:*", count=5000)) == r.zcard(keys.early_at)
    assert 0 < r.zcard(keys.outbox_sent_at) <= (180 // 3 + 2)
    stats = p.store.case_stats()
    assert stats["opened"] == n and stats["expired"] + stats.get("resolved", 0) >= n - per_window(20)
    assert stats["expired"] > 0


def _both_ways(r: redis.Redis, run: object) -> list[object]:
    """``run(r, prefix, tick)`` with the retirement run (tick) and without: the two outcomes."""
    outcomes = []
    for tick, prefix in ((True, "test:crmret2-a:"), (False, "test:crmret2-b:")):
        try:
            outcomes.append(run(r, prefix, tick))  # type: ignore[operator]
        finally:
            for key in r.scan_iter(match=prefix + "*", count=5000):
                r.delete(key)
    return outcomes


def test_a_prospect_past_retention_starts_afresh_whether_or_not_the_retirement_ran(r: redis.Redis) -> None:
    def run(rr: redis.Redis, prefix: str, tick: bool) -> object:
        r = rr
        p = _processor(r, prefix, prospect_retention_days=30.0, stale_case_days=0.0)
        keys = CrmKeys(prefix)
        p.store.import_customers([("c1", {"name": "Ann"}, ["twitter:ann"], [])], T0, 50)
        for i, who in enumerate(("bob", "ann", "bob")):
            p.process(_mention(10 + i, who, T0 + i * MIN, intent="comment"))
        p.process(_mention(20, "kim", T0 + 31 * DAY))  # the watermark passes bob's retention (not kim's own)
        if tick:
            p.tick(T0 + 31 * DAY)
            assert not r.exists(keys.customer("p:twitter:bob")) and r.get(keys.identity("twitter", "bob")) is None
        bob = p.process(_mention(21, "bob", T0 + 31 * DAY + MIN))
        ann = p.process(_mention(22, "ann", T0 + 31 * DAY + 2 * MIN))
        profile = r.hgetall(keys.customer("p:twitter:bob"))
        return ({k: v for k, v in bob.items() if k != "suggestions"}, profile, ann["customer_id"],
                r.hget(keys.customer("c1"), "mentions"), r.zcard(keys.customer_mentions("p:twitter:bob")))

    with_tick, without = _both_ways(r, run)
    assert with_tick == without
    bob, profile, ann_id, ann_mentions, history = with_tick  # type: ignore[misc]
    assert bob["prospect"] is True and bob["customer_id"] == "p:twitter:bob" and bob["case_event"] == "opened"
    assert profile[b"mentions"] == b"1" and int(profile[b"first_seen_ms"]) == T0 + 31 * DAY + MIN
    assert history == 1  # the old mentions went with the old profile
    assert ann_id == "c1" and ann_mentions == b"2"  # customers are not retired


def test_a_stale_case_expires_frees_its_agent_and_a_follow_up_opens_a_new_case_either_way(r: redis.Redis) -> None:
    from crm.assignment import Agent, add_agent

    def run(rr: redis.Redis, prefix: str, tick: bool) -> object:
        r = rr
        p = _processor(r, prefix, stale_case_days=10.0, auto_resolve_minutes=0.0)
        keys = CrmKeys(prefix)
        add_agent(p.store, Agent.create("ann", capacity=1), online=True, now_ms=T0)
        first = p.process(_mention(1, "bob", T0))
        waiting = p.process(_mention(2, "kim", T0 + MIN))
        assert first["assigned_agent"] == "ann" and waiting["assigned_agent"] is None
        p.process(_mention(3, "kim", T0 + 5 * DAY, intent="comment", in_reply_to="twitter:2"))  # kim's is active
        p.tick(T0 + 5 * DAY)
        assert p.store.get_case(first["case_id"])["status"] == "assigned"  # type: ignore[index]
        p.process(_mention(4, "joe", T0 + 11 * DAY, intent="comment"))  # the watermark passes bob's 10 days
        if tick:
            p.tick(T0 + 11 * DAY)
            assert p.store.get_case(first["case_id"])["status"] == "expired"  # type: ignore[index]
        back = p.process(_mention(5, "bob", T0 + 11 * DAY + MIN, in_reply_to="twitter:1"))
        old = p.store.get_case(first["case_id"]) or {}
        events = [e["event"] for e in p.store.case_events(first["case_id"])]
        return (back["case_event"], back["case_id"], old.get("status"), old.get("expired_ms"), events,
                p.store.case_stats().get("expired"), p.store.get_case(waiting["case_id"])["agent"],  # type: ignore[index]
                r.sismember(keys.agent_cases("ann"), first["case_id"]), r.zscore(keys.cases_active, first["case_id"]))

    with_tick, without = _both_ways(r, run)
    assert with_tick == without
    event, case_id, status, expired_ms, events, expired, kim_agent, still_ann, active = with_tick  # type: ignore[misc]
    assert event == "opened" and case_id == "C-twitter:5"  # closed for good: the follow-up opens a new case
    assert status == "expired" and int(expired_ms) == T0 + 10 * DAY  # at the moment it went stale
    assert events[-1] == "expired" and expired == 1
    assert kim_agent == "ann" and not still_ann and active is None  # ann's slot went to the waiting case


def test_a_reply_keeps_a_case_alive_and_a_stale_case_refuses_agent_replies(r: redis.Redis, key_prefix: str) -> None:
    from crm import CaseError

    p = _processor(r, key_prefix, stale_case_days=10.0, auto_resolve_minutes=0.0)
    first = p.process(_mention(1, "bob", T0))
    p.reply(first["case_id"], text="Looking", now_ms=T0 + 8 * DAY)  # activity: the clock starts again
    p.process(_mention(2, "kim", T0 + 15 * DAY, intent="comment"))
    p.tick(T0 + 15 * DAY)
    assert p.store.get_case(first["case_id"])["status"] == "replied"  # type: ignore[index]
    p.process(_mention(3, "kim", T0 + 19 * DAY, intent="comment"))
    p.tick(T0 + 19 * DAY)
    assert p.store.get_case(first["case_id"])["status"] == "expired"  # type: ignore[index]
    try:
        p.reply(first["case_id"], text="Still there?", now_ms=T0 + 19 * DAY)
        raise AssertionError("a reply to an expired case must fail")
    except CaseError as exc:
        assert "expired" in str(exc)


def test_new_retention_settings_are_validated() -> None:
    from crm import CrmError

    assert CrmSettings.from_dict({"stale_case_days": 14, "prospect_retention_days": 30}).stale_case_days == 14.0
    for name in ("stale_case_days", "prospect_retention_days", "task_retention_days"):
        try:
            CrmSettings.from_dict({name: -1})
            raise AssertionError(name)
        except CrmError as exc:
            assert name in str(exc)
