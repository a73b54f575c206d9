"""The service-desk page (AppTest) and its read model, on a CRM the real engine filled in a real Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from dashboard_seed import MIN, T0, mention, seed_service_desk
from page_testkit import rendered
from streamlit.testing.v1 import AppTest

from connectors.outbox import read_messages
from crm import CrmProcessor, CrmSettings, make_store
from crm.sla import iso_ms
from stream.audit import recent_actions
from stream.keys import Keys
from stream.service_desk import read_service_desk

PAGE = """
import sys
sys.path.insert(0, {root!r})
from dashboard.data import DashboardSettings
from dashboard import service_page
service_page.render(DashboardSettings.from_env())
"""
def test_read_model_counts_cases_queues_agents_and_rules(r: redis.Redis, key_prefix: str) -> None:
    seed_service_desk(r, key_prefix)
    desk = read_service_desk(make_store(r, key_prefix))
    assert desk.total_cases == 5 and desk.open_cases == 4
    assert desk.stats["resolved"] == 1 and desk.resolution_mean_ms == 40 * MIN
    assert desk.first_response_mean_ms == 30 * MIN
    assert {q["queue"]: q["waiting"] for q in desk.queues} == {"service": 1, "supervisor": 1}
    assert desk.waiting == 2
    assert {a["agent"]: (a["status"], a["load"], a["capacity"]) for a in desk.agents} == {
        "ann": ("online", 2, 2), "bob": ("offline", 0, 3)}
    by_id = {c["case"]: c for c in desk.cases}
    assert set(by_id) == {"C-twitter:1", "C-twitter:2", "C-twitter:3", "C-twitter:9"}
    assert by_id["C-twitter:9"]["queue"] == "supervisor" and by_id["C-twitter:9"]["priority"] == "urgent"
    assert by_id["C-twitter:1"]["agent"] == "ann" and by_id["C-twitter:3"]["agent"] is None
    assert by_id["C-twitter:1"]["suggestions"][0] == {"id": "lost-baggage", "title": "Lost or delayed baggage"}
    assert [c["due_ms"] for c in desk.cases] == sorted(c["due_ms"] for c in desk.cases)
    assert {x["rule"]: x["hits"] for x in desk.rules}["gold-negative-escalate"] == 1


def test_service_page_shows_the_desk(monkeypatch: pytest.MonkeyPatch, r: redis.Redis, redis_url: str,
                                     key_prefix: str) -> None:
    seed_service_desk(r, key_prefix)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("PULSE_PREFIX", key_prefix)
    at = AppTest.from_string(PAGE.format(root=str(Path(__file__).resolve().parents[2])), default_timeout=60).run()
    assert not at.exception
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["Open cases"] == "4" and tiles["Waiting"] == "2" and tiles["Agents online"] == "1 / 2"
    assert tiles["Mean first response"] == "30 min" and tiles["Mean resolution"] == "40 min"
    assert len(at.get("vega_lite_chart")) == 2  # agents' load, queues
    tables = [t.value for t in at.dataframe]
    cases = next(t for t in tables if "case" in t.columns)
    assert set(cases["case"]) == {"C-twitter:1", "C-twitter:2", "C-twitter:3", "C-twitter:9"}
    rules = next(t for t in tables if "rule" in t.columns and "hits" in t.columns)
    assert int(rules.set_index("rule").loc["gold-negative-escalate", "hits"]) == 1
    assert cases.set_index("case").loc["C-twitter:1", "suggestions"].startswith("Lost or delayed baggage")


def test_service_page_waits_for_data(monkeypatch: pytest.MonkeyPatch, redis_url: str, key_prefix: str) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("PULSE_PREFIX", key_prefix)
    at = AppTest.from_string(PAGE.format(root=str(Path(__file__).resolve().parents[2])), default_timeout=60).run()
    assert not at.exception
    assert any("No cases or agents yet" in str(i.value) for i in at.info)


def test_agent_answers_and_resolves_from_the_page(monkeypatch: pytest.MonkeyPatch, r: redis.Redis, redis_url: str,
                                                  key_prefix: str) -> None:

    seed_service_desk(r, key_prefix)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("PULSE_PREFIX", key_prefix)
    monkeypatch.delenv("PULSE_CRM_CONFIG", raising=False)
    monkeypatch.setenv("PULSE_DASHBOARD_TOKEN", "service-desk-token-123")
    at = AppTest.from_string(PAGE.format(root=str(Path(__file__).resolve().parents[2])), default_timeout=60)
    at.run()
    # not signed in: the case is shown, answering is not offered
    assert any("Sign in (sidebar) to answer or resolve cases" in i.value for i in at.info)
    assert not [b for b in at.button if b.label == "Send reply"]
    at.session_state["pulse_user"] = "ann"
    at.run()
    at.selectbox(key="sd_case").set_value("C-twitter:1").run()
    assert at.selectbox(key="sd_article").options[1] == "Lost or delayed baggage"  # the case's KB suggestions
    at.selectbox(key="sd_article").set_value("lost-baggage")
    at.text_area(key="sd_text").input("So sorry, here is how we find it:")
    at.checkbox(key="sd_private").check()
    at.button[0].click().run()  # Send reply
    assert not at.exception and not at.error
    assert "in reply to twitter:1 (DM request)" in rendered(at.success[0].value)
    [posted] = read_messages(r, key_prefix, "twitter", count=1)  # after the seed's reply to twitter:0
    assert posted.in_reply_to == "twitter:1" and posted.case_id == "C-twitter:1"
    assert posted.text.startswith("So sorry, here is how we find it:") and "Lost or delayed baggage" in posted.text
    assert posted.kind == "dm_request"
    case = make_store(r, key_prefix).get_case("C-twitter:1")
    assert case["status"] == "replied"
    [entry] = recent_actions(r, Keys(key_prefix))
    assert (entry.user, entry.action, entry.target, entry.outcome) == ("ann", "case.reply", "C-twitter:1", "ok")
    assert entry.detail["in_reply_to"] == "twitter:1" and entry.detail["private"] is True

    at.selectbox(key="sd_case").set_value("C-twitter:1").run()
    at.button[1].click().run()  # Resolve case: ann's slot goes to the case waiting in `service`
    assert "C-twitter:1 resolved. Assigned: C-twitter:3 → ann" in rendered(at.success[0].value)
    assert make_store(r, key_prefix).get_case("C-twitter:1")["status"] == "resolved"

    # an empty reply is a clear error on the page, nothing is sent
    at.selectbox(key="sd_case").set_value("C-twitter:2").run()
    at.text_area(key="sd_text").input("  ")
    at.selectbox(key="sd_article").set_value("")
    at.button[0].click().run()
    assert "a reply needs --text or --article" in rendered(at.error[0].value)
    assert r.xlen(f"{key_prefix}outbox:twitter") == 2
    assert [(e.action, e.outcome.split(":")[0]) for e in recent_actions(r, Keys(key_prefix))] == [
        ("case.reply", "refused"), ("case.resolve", "ok"), ("case.reply", "ok")]


def test_case_text_and_handles_are_plain_text(monkeypatch: pytest.MonkeyPatch, r: redis.Redis, redis_url: str,
                                              key_prefix: str) -> None:
    from dashboard_seed import HOSTILE
    from page_testkit import assert_no_markup_from_users

    store = make_store(r, key_prefix)
    proc = CrmProcessor(store, settings=CrmSettings(prefix=key_prefix, auto_tick_ms=0))
    proc.process(mention(1, "**eve**", text=f"where is my bag? {HOSTILE}"))
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("PULSE_PREFIX", key_prefix)
    at = AppTest.from_string(PAGE.format(root=str(Path(__file__).resolve().parents[2])), default_timeout=60).run()
    assert not at.exception
    assert [c.value for c in at.code] == [f"where is my bag? {HOSTILE}"]
    assert any(t.value.startswith("**eve** on twitter") for t in at.text)
    assert_no_markup_from_users(at)


def test_answers_are_stamped_on_the_cases_clock_when_it_runs_ahead(r: redis.Redis, key_prefix: str) -> None:
    # the demo's simulated clock runs ahead of the wall clock: an answer must not predate its question
    from stream.service_desk import answer_case, close_case, desk_settings

    store = make_store(r, key_prefix)
    future = 4_102_444_800_000  # 2100-01-01
    proc = CrmProcessor(store, settings=CrmSettings(prefix=key_prefix, auto_tick_ms=0))
    proc.process(mention(1, "zed", ts=iso_ms(future)))
    proc.process(mention(2, "kim", ts=iso_ms(future + 5 * MIN)))
    res = answer_case(store, desk_settings(key_prefix), "C-twitter:1", text="On it", now_ms=T0)
    assert res["response_ms"] == 5 * MIN  # stamped at the newest case's time, not years before
    assert res["reply"]["ts"] == iso_ms(future + 5 * MIN)
    assert close_case(store, desk_settings(key_prefix), "C-twitter:1", now_ms=T0)["resolution_ms"] == 5 * MIN
