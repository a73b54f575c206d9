"""The Customers page (AppTest): search, the 360 view and churn candidates, against the demo-like dataset."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from dashboard_seed import HOSTILE_NAME, NASTY_TEXT
from page_testkit import assert_no_markup_from_users, run_page, shows_literally, table

from dashboard.data import churn_candidates, format_reasons, search_customers
from stream import churn
from stream.keys import Keys


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
    client = redis.Redis.from_url(redis_url)
    risk = client.zscore(f"{prefix}churn", "C-M")
    assert tiles["Churn risk"] == f"{risk * 100:.0f} %"
    # and the features behind it, as the flow stored them (stream.churn.churn_reasons)
    reasons = churn.churn_reasons(client, Keys(prefix), "C-M")
    assert reasons, "the seed's churn outcomes teach the model before mallory's mention is scored"
    shown = table(at, "contribution", "reason")
    assert list(shown["reason"]) == [r["text"] for r in reasons]
    assert list(shown["feature"]) == [r["feature"] for r in reasons]
    assert list(shown["contribution"]) == [r["contribution"] for r in reasons]
    assert list(shown["value"]) == [r["value"] for r in reasons]
    assert any(HOSTILE_NAME in t.value for t in at.text)  # the name, literally
    assert shows_literally(at, NASTY_TEXT)
    assert_no_markup_from_users(at)


def test_churn_candidates_are_customers_by_risk_with_reasons(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                                             demo_like: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, _ = demo_like
    client = redis.Redis.from_url(redis_url)
    frame = churn_candidates(client, prefix, 10)
    flow = [c for c in churn.churn_candidates(client, Keys(prefix), 1000) if not c["customer_id"].startswith("p:")]
    assert list(frame["customer"]) == [c["customer_id"] for c in flow[:10]]
    assert list(frame["risk"]) == [c["risk"] for c in flow[:10]]
    assert list(frame["reason_list"]) == [c["reasons"] for c in flow[:10]]
    at = run_page(monkeypatch, redis_url, prefix, "customers_page")
    assert not at.exception
    listed = table(at, "risk", "reasons")
    top = [c for c in flow if c["customer_id"] in set(listed["customer"])]
    assert list(listed["customer"]) == [c["customer_id"] for c in flow[:len(listed)]]
    assert list(listed["reasons"]) == [format_reasons(c["reasons"]) for c in top]
    assert (listed["reasons"] != "").sum() >= 5  # learned from the seed's churn outcomes
    assert "reason_list" not in listed.columns
    assert any("features pushing each risk up most" in c.value for c in at.caption)
    # a brand filter keeps that brand's customers (the seed's CRM customers have none: all are kept)
    at = run_page(monkeypatch, redis_url, prefix, "customers_page", state={"f_brand": "acme"})
    assert not at.exception and list(table(at, "risk", "reasons")["customer"]) == list(listed["customer"])


def test_reasons_are_formatted_largest_first() -> None:
    assert format_reasons([{"feature": "negative", "text": "complaints", "value": 3.0, "contribution": 0.4},
                           {"feature": "tenure_years", "contribution": 0.6}]) == "tenure_years +0.60, complaints +0.40"
