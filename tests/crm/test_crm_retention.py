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
