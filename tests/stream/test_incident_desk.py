"""The incident desk's service functions on a real Redis: reading incidents, acting on them, notices, audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
import redis

from connectors.outbox import read_messages
from stream.audit import AuditError, recent_actions
from stream.incident_desk import (
    Incident,
    IncidentDeskError,
    acknowledge,
    approve_notice,
    close_incident,
    draft_notice,
    incident_timeline,
    read_incidents,
    save_notice,
    send_notice,
)
from stream.keys import Keys
from stream.schema import Alert
from stream.sinks import RedisWriter

SPIKE = dict(id="spike:acme:twitter:202401011000", kind="spike", brand="acme", channel="twitter", topic=None,
             window_start="2024-01-01T10:00:00+00:00", observed=40, expected=4.0, score=0.97, severity="high",
             sample_ids=("twitter:1",), top_terms=("outage", "login"))


def _open(r: redis.Redis, prefix: str) -> Keys:
    keys = Keys(prefix)
    RedisWriter(r, keys).write([("alert", Alert(**SPIKE, message="open: acme twitter at 40 mentions"))])
    return keys


def test_acknowledge_once_close_and_the_audit_trail(r: redis.Redis, key_prefix: str) -> None:
    keys = _open(r, key_prefix)
    [inc] = read_incidents(r, keys)
    assert (inc.state, inc.status, inc.needs_ack) == ("open", "new", True)
    assert acknowledge(r, keys, SPIKE["id"], "ann", note="looking") is True
    assert acknowledge(r, keys, SPIKE["id"], "bob") is False  # the first acknowledgement stands
    [inc] = read_incidents(r, keys)
    assert (inc.status, inc.acknowledged_by, inc.needs_ack, inc.live) == ("acknowledged", "ann", False, True)
    assert close_incident(r, keys, SPIKE["id"], "bob") is True
    assert close_incident(r, keys, SPIKE["id"], "bob") is False
    [inc] = read_incidents(r, keys)
    assert (inc.status, inc.closed_by, inc.live) == ("closed", "bob", False)
    with pytest.raises(IncidentDeskError, match="closed"):
        acknowledge(r, keys, SPIKE["id"], "cy")
    with pytest.raises(IncidentDeskError, match="no incident"):
        acknowledge(r, keys, "spike:nope", "cy")
    with pytest.raises(AuditError):
        close_incident(r, keys, SPIKE["id"], "  ")
    actions = [(e.user, e.action, e.detail) for e in recent_actions(r, keys)]
    assert actions == [("bob", "incident.close", {}), ("ann", "incident.acknowledge", {"note": "looking"})]
    assert 0 < r.ttl(keys.incident(SPIKE["id"])) <= 30 * 86_400
    assert 0 < r.ttl(keys.incident_events(SPIKE["id"])) <= 30 * 86_400


def test_the_timeline_dates_the_detector_when_it_wrote_and_the_desk_when_it_acted(r: redis.Redis,
                                                                                  key_prefix: str) -> None:
    """The alerts stream's ids follow its last entry (not the clock): the timeline dates a detector state by the
    wall-clock time the flow wrote it (``written_ms``), so the time to acknowledge reads off the rows."""
    keys = _open(r, key_prefix)
    assert r.xrange(keys.alerts)[0][0] == b"0-1"
    acknowledge(r, keys, SPIKE["id"], "ann")
    [inc] = read_incidents(r, keys)
    rows = incident_timeline(r, keys, inc)
    assert [(row["event"], row["by"]) for row in rows] == [("opened", "detector"), ("acknowledged", "ann")]
    now = datetime.now(UTC)
    assert all(now - timedelta(minutes=1) < row["at"] <= now + timedelta(seconds=1) for row in rows)
    assert rows[0]["at"] <= rows[1]["at"]


def test_notice_is_approved_before_it_is_sent_and_sent_once(r: redis.Redis, key_prefix: str) -> None:
    keys = _open(r, key_prefix)
    with pytest.raises(IncidentDeskError, match="approve"):
        send_notice(r, keys, SPIKE["id"], "twitter", "ann")
    save_notice(r, keys, SPIKE["id"], "twitter", "Draft one", "ann")
    with pytest.raises(IncidentDeskError, match="approve"):
        send_notice(r, keys, SPIKE["id"], "twitter", "ann")
    approve_notice(r, keys, SPIKE["id"], "twitter", "We are on it.", "bob")
    # an edit after approval goes back to draft
    assert save_notice(r, keys, SPIKE["id"], "twitter", "We are on it!", "ann").status == "draft"
    approve_notice(r, keys, SPIKE["id"], "twitter", "We are on it!", "bob")
    assert send_notice(r, keys, SPIKE["id"], "twitter", "cy") is True
    assert send_notice(r, keys, SPIKE["id"], "twitter", "cy") is False  # a double click sends once
    [msg] = read_messages(r, key_prefix, "twitter")
    assert (msg.kind, msg.text, msg.agent, msg.brand, msg.reply_id) == (
        "notice", "We are on it!", "cy", "acme", f"notice:{SPIKE['id']}:twitter")
    with pytest.raises(IncidentDeskError, match="already sent"):
        save_notice(r, keys, SPIKE["id"], "twitter", "changed", "ann")
    with pytest.raises(IncidentDeskError, match="at most 2200"):
        approve_notice(r, keys, SPIKE["id"], "instagram", "x" * 3000, "ann")
    [inc] = read_incidents(r, keys)
    notice = inc.notices["twitter"]
    assert (notice.status, notice.approved_by, notice.sent_by) == ("sent", "bob", "cy")
    sends = [e.outcome for e in recent_actions(r, keys) if e.action == "notice.send"]
    assert sends == ["duplicate", "ok"]
    events = [orjson.loads(e)["event"] for e in r.lrange(keys.incident_events(SPIKE["id"]), 0, -1)]
    assert events[-1] == "notice sent (twitter)"


def test_upper_band_is_used_when_the_detector_gives_one() -> None:
    inc = Incident.from_alert({**SPIKE, "expected_upper": 9.5, "message": "update: x"})
    assert inc.band == (4.0, 9.5) and inc.state == "update"
    assert Incident.from_alert({**SPIKE, "message": "resolved: x"}).live is False


def test_draft_quotes_word_terms_only() -> None:
    inc = Incident.from_alert({**SPIKE, "top_terms": ["<script>alert(1)</script>", "login", "**x**", "outage"]})
    text = draft_notice(inc, "twitter")
    assert "login and outage" in text and "<" not in text and "*" not in text and len(text) <= 280
    assert draft_notice(inc, "forum", owned=True).startswith("Service notice: some acme customers")
