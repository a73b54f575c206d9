"""The Customers page (AppTest): search, the 360 view and churn candidates, against the demo-like dataset."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from dashboard_seed import HOSTILE_NAME, NASTY_TEXT
from page_testkit import assert_no_markup_from_users, run_page, shows_literally, table

from dashboard.data import churn_candidates, format_reasons, search_customers


def test_search_by_name_handle_and_id(redis_url: str, demo_like: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, _ = demo_like
    client = redis.Redis.from_url(redis_url)
    assert [(c["id"], c["matched"]) for c in search_customers(client, prefix, "C-G")] == [("C-G", "id")]
    assert [(c["id"], c["matched"]) for c in search_customers(client, prefix, "@Mallory")] == \
        [("C-M", "handle on twitter")]
    assert [c["id"] for c in search_customers(client, prefix, "twitter:mallory")] == ["C-M"]
    assert [(c["id"], c["matched"]) for c in search_customers(client, prefix, "grant")] == [("C-G", "name")]
    assert [c["id"] for c in search_customers(client, prefix, "gil@example")] == ["C-G"]
    assert search_customers(client, prefix, "nobody-at-all") == []


def test_360_view_shows_what_the_flow_and_crm_wrote(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                                    demo_like: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, rows = demo_like
    at = run_page(monkeypatch, redis_url, prefix, "customers_page", state={"cust_q": "mallory"})
    assert not at.exception
    found = table(at, "matched")
    assert list(found["id"]) == ["C-M"] and found.iloc[0]["name"] == HOSTILE_NAME
    assert at.selectbox(key="cust_pick").value == "C-M"
    tiles = {m.label: m.value for m in at.metric}
    mine = [r for r in rows if r["author"] == "mallory"]
    assert tiles["Tier"] == "gold" and tiles["Value"] == "1,200" and tiles["Mentions"] == str(len(mine))
    handles = table(at, "handle")
    assert set(zip(handles["channel"], handles["handle"], strict=True)) == {("twitter", "mallory"),
                                                                           ("email", "mallory@example.com")}
    mentions = table(at, "score")
    assert list(mentions["text"]) == [NASTY_TEXT] and list(mentions["sentiment"]) == ["negative"]
    cases = table(at, "queue")
    assert list(cases["id"]) == ["C-twitter:nasty"]
    # the churn risk shown is the flow's score for the customer
    risk = redis.Redis.from_url(redis_url).zscore(f"{prefix}churn", "C-M")
    assert tiles["Churn risk"] == f"{risk * 100:.0f} %"
    assert any(HOSTILE_NAME in t.value for t in at.text)  # the name, literally
    assert shows_literally(at, NASTY_TEXT)
    assert_no_markup_from_users(at)


def test_churn_candidates_are_customers_by_risk(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                                demo_like: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, _ = demo_like
    client = redis.Redis.from_url(redis_url)
    frame = churn_candidates(client, prefix, 10)
    scored = {m.decode(): s for m, s in client.zrevrange(f"{prefix}churn", 0, -1, withscores=True)
              if not m.decode().startswith("p:")}
    assert list(frame["customer"]) == sorted(scored, key=lambda c: -scored[c])
    assert list(frame["risk"]) == sorted(scored.values(), reverse=True)
    at = run_page(monkeypatch, redis_url, prefix, "customers_page")
    assert not at.exception
    listed = table(at, "risk")
    assert list(listed["customer"]) == list(frame["customer"])
    # no reasons from the flow yet: said plainly, the risk shown alone
    assert any("does not report the features behind churn scores" in c.value for c in at.caption)


def test_reasons_are_formatted_largest_first() -> None:
    assert format_reasons([{"feature": "negative_mentions", "contribution": 0.4},
                           {"feature": "tenure", "contribution": -0.6}]) == "tenure -0.60, negative_mentions +0.40"
