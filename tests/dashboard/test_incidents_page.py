"""The Incidents page (AppTest) on a demo-like dataset: what it shows, and acknowledging, closing and notices."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import redis
from dashboard_seed import HOSTILE, LIVE_SPIKE, PAST_SPIKE
from page_testkit import assert_no_markup_from_users, run_page, shows_literally, table

from connectors.outbox import read_messages
from stream.audit import recent_actions
from stream.incident_desk import notice_reply_id, read_incident
from stream.keys import Keys


def test_incidents_list_and_detail_show_what_was_written(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                                         demo_like: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, rows = demo_like
    at = run_page(monkeypatch, redis_url, prefix, "incidents_page")
    assert not at.exception
    tiles = {m.label: m.value for m in at.metric}
    assert (tiles["Live"], tiles["Awaiting acknowledgement"], tiles["Acknowledged"], tiles["Resolved or closed"]) == \
        ("1", "1", "0", "1")
    listed = table(at, "top terms").set_index("id")
    assert list(listed.index) == [LIVE_SPIKE, PAST_SPIKE]  # newest first
    live = listed.loc[LIVE_SPIKE]
    assert (live["observed"], live["expected"], live["detector"], live["desk"]) == (14, 2.0, "update", "new")
    assert live["per"] == "5 min" and listed.loc[PAST_SPIKE]["per"] == "min"  # (no interval in that alert: a minute)
    assert live["top terms"] == ", ".join(["refund", *HOSTILE.split(" ")])
    # the detail of the live incident (offered first: it awaits acknowledgement)
    assert at.selectbox(key="inc_pick").value == LIVE_SPIKE
    # the detector's unit: the series was watched at 5-minute intervals
    assert tiles["Peak / 5 min"] == "14" and tiles["Expected / 5 min"] == "2.0" and tiles["Desk"] == "new"
    samples = table(at, "sentiment").set_index("id")
    nasty = next(r for r in rows if r["id"] == "twitter:nasty")
    assert samples.loc["twitter:nasty", "text"] == nasty["text"]
    by_id = {r["id"]: r for r in rows}
    assert samples.loc["twitter:m100k0", "text"] == by_id["twitter:m100k0"]["text"]
    timeline = table(at, "event")
    assert list(timeline["event"]) == ["opened", "updated"] and set(timeline["by"]) == {"detector"}
    assert timeline["detail"].iloc[1].startswith("14 mentions per 5 min, 2.0 expected")
    charts = at.get("vega_lite_chart")
    assert len(charts) == 1  # volume with the expected band, in the detector's unit
    spec = orjson.dumps(charts[0].proto.spec if hasattr(charts[0], "proto") else "").decode()
    assert "mentions per 5 min" in spec
    assert "Top terms" in [c.value for c in at.caption]
    assert any(t.value == ", ".join(["refund", *HOSTILE.split(" ")]) for t in at.text)
    # not signed in: the desk's actions are offered only after sign-in
    assert any("Sign in (sidebar) to acknowledge" in i.value for i in at.info)
    assert not [b for b in at.button if b.label in ("Acknowledge", "Approve", "Send")]
    assert shows_literally(at)
    assert_no_markup_from_users(at)


def test_volume_equals_the_minute_windows(redis_url: str, demo_like: tuple[str, list[dict[str, Any]]]) -> None:
    from stream.incident_desk import incident_volume

    prefix, rows = demo_like
    client = redis.Redis.from_url(redis_url)
    inc = read_incident(client, Keys(prefix), LIVE_SPIKE)
    assert inc is not None
    volume = {int(v["start"].timestamp() * 1000): v["mentions"] for v in incident_volume(client, Keys(prefix), inc)}
    expected: dict[int, int] = {}
    for r in rows:
        if r["brand"] == "acme" and r["channel"] == "twitter" and not r.get("from_brand"):
            minute = r["ts"] - r["ts"] % 60_000
            expected[minute] = expected.get(minute, 0) + 1
    assert volume and all(volume[m] == expected.get(m, 0) for m in volume)
    assert sum(volume.values()) == sum(n for m, n in expected.items() if m in volume)
    # the chart sums them into the detector's 5-minute intervals, aligned on the one the incident opened with
    from dashboard.incidents_page import per_interval

    chart = per_interval(inc, incident_volume(client, Keys(prefix), inc))
    opened = inc.start_ms
    assert opened is not None
    by_interval = {int(t.timestamp() * 1000): n for t, n in zip(chart["start"], chart["mentions"], strict=True)}
    assert all((m - opened) % 300_000 == 0 for m in by_interval)
    for m, n in by_interval.items():
        assert n == sum(volume.get(m + i * 60_000, 0) for i in range(5)), m
    assert sum(by_interval.values()) == sum(volume.values())


def test_acknowledge_close_and_send_a_notice(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                             demo_copy: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, _ = demo_copy
    client = redis.Redis.from_url(redis_url)
    keys = Keys(prefix)
    at = run_page(monkeypatch, redis_url, prefix, "incidents_page", user="ines")
    assert not at.exception
    at.button(key=f"inc_ack_{LIVE_SPIKE}").click().run()
    assert not at.exception
    assert any("Incident acknowledged" in s.value for s in at.success)
    inc = read_incident(client, keys, LIVE_SPIKE)
    assert inc is not None and (inc.status, inc.acknowledged_by) == ("acknowledged", "ines")
    assert {m.label: m.value for m in at.metric}["Acknowledged"] == "1"
    assert "acknowledged" in list(table(at, "event")["event"])

    # the notice for the incident's channel: the draft quotes words only, never markup from the top terms
    key = f"notice_{LIVE_SPIKE}_twitter"
    draft = at.text_area(key=key).value
    assert "refund" in draft and "<script>" not in draft and "**" not in draft
    assert at.button(key=f"{key}_send").disabled  # approve first
    at.text_area(key=key).input("We know about the refund problem and are fixing it. Updates here.")
    at.button(key=f"{key}_approve").click().run()
    assert not at.exception
    at.button(key=f"{key}_send").click().run()
    assert not at.exception and any("Notice sent to the twitter outbox" in s.value for s in at.success)
    [msg] = read_messages(client, prefix, "twitter")
    assert (msg.kind, msg.channel, msg.brand, msg.agent, msg.reply_id) == (
        "notice", "twitter", "acme", "ines", notice_reply_id(LIVE_SPIKE, "twitter"))
    assert msg.text == "We know about the refund problem and are fixing it. Updates here."
    assert at.text_area(key=key).disabled  # sent: no more edits

    # the owned community gets its own notice; close the incident
    at.button(key=f"notice_{LIVE_SPIKE}_forum_approve").click().run()
    at.button(key=f"notice_{LIVE_SPIKE}_forum_send").click().run()
    [forum] = read_messages(client, prefix, "forum")
    assert forum.kind == "notice" and "Service notice" in forum.text
    at.text_input(key=f"inc_note_{LIVE_SPIKE}").input("fixed by the payments team")
    at.button(key=f"inc_close_{LIVE_SPIKE}").click().run()
    inc = read_incident(client, keys, LIVE_SPIKE)
    assert inc is not None and (inc.status, inc.closed_by) == ("closed", "ines")

    actions = [(e.user, e.action, e.target) for e in recent_actions(client, keys, 20)]
    assert ("ines", "incident.acknowledge", LIVE_SPIKE) in actions
    assert ("ines", "notice.send", LIVE_SPIKE) in actions and ("ines", "incident.close", LIVE_SPIKE) in actions
    events = [orjson.loads(e)["event"] for e in client.lrange(keys.incident_events(LIVE_SPIKE), 0, -1)]
    assert events == ["acknowledged", "notice approved (twitter)", "notice sent (twitter)",
                      "notice approved (forum)", "notice sent (forum)", "closed"]
    assert 0 < client.ttl(keys.incident(LIVE_SPIKE)) <= 30 * 86_400


def test_other_kinds_show_their_own_figures_without_a_spike_s_unit(
        monkeypatch: pytest.MonkeyPatch, redis_url: str, demo_like: tuple[str, list[dict[str, Any]]]) -> None:
    from dashboard_seed import MODEL_DRIFT

    prefix, _ = demo_like
    at = run_page(monkeypatch, redis_url, prefix, "incidents_page",
                  state={"inc_kinds": ["model_drift"], "inc_pick": MODEL_DRIFT})
    assert not at.exception
    assert at.selectbox(key="inc_pick").value == MODEL_DRIFT
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["Observed"] == "0.52" and tiles["Expected"] == "0.2"
    assert not [label for label in tiles if "/" in label]
    listed = table(at, "top terms")
    assert set(listed.loc[listed["kind"] != "spike", "per"]) == {""}  # a unit only where the figures count mentions
    assert set(listed.loc[listed["kind"] == "spike", "per"]) == {"5 min", "min"}
