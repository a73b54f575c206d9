"""Spike alerts and churn risk from the whole flow on simulated traffic with an injected incident."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import redis
from bytewax.testing import TestingSource, run_main

from connectors.simulator import World
from stream.flow import build_flow
from stream.keys import Keys
from stream.settings import Settings
from stream.sinks import RedisSink


def test_injected_incident_raises_one_alert_with_terms_and_samples(r: redis.Redis, redis_url: str,
                                                                   key_prefix: str) -> None:
    world = World(seed=7, rate_per_hour=600)
    until = world.start + timedelta(hours=27)
    records = list(world.events(until=until))
    incidents = [i.to_dict() for i in world.incidents_between(world.start, until)]
    assert incidents, "the simulated day has an incident"
    keys = Keys(key_prefix)
    run_main(build_flow(TestingSource(records, batch_size=1000), Settings(prefix=key_prefix),
                        RedisSink(redis_url, keys), redis_url=redis_url))
    everything = [orjson.loads(v) for v in r.hvals(keys.alerts_current)]
    current = [a for a in everything if a["kind"] == "spike"]
    assert current, "a spike alert was raised"
    # The CRM's SLA timers run in the same flow: late answers to queries raise sla_breach alerts.
    assert any(a["kind"] == "sla_breach" for a in everything)
    for inc in incidents:
        start = datetime.fromisoformat(inc["start"])
        hits = [a for a in current if a["brand"] == inc["brand"] and a["channel"] == inc["channel"]
                and start - timedelta(minutes=5) <= datetime.fromisoformat(a["window_start"]) <= start + timedelta(hours=1)]
        channel_hits = [a for a in hits if a["topic"] is None]
        assert len(channel_hits) == 1, (inc, current)  # deduplicated: one alert id for the incident
        topic_hits = [a for a in hits if a["topic"] is not None]
        assert len(topic_hits) <= 1 and all(a["topic"] == "service" for a in topic_hits)  # the outage's topic
        alert = channel_hits[0]
        assert alert["kind"] == "spike" and alert["observed"] > alert["expected"]
        # The band a chart draws around the incident: the count at which the detector would have alerted.
        assert alert["expected"] < alert["expected_upper"] and alert["interval_s"] in (60.0, 300.0, 3600.0)
        assert set(alert["top_terms"]) & set(inc["terms"]), (alert["top_terms"], inc["terms"])
        assert alert["sample_ids"]
        assert alert["message"].startswith("resolved:")  # the bounded replay closes what it opened
    # The stream keeps each state of an alert once (open, updates, resolved), in order.
    states = [a["message"].split(":")[0] for a in (orjson.loads(f[b"alert"]) for _, f in r.xrange(keys.alerts))
              if a["kind"] == "spike"]
    assert states[0] == "open" and states[-1] == "resolved"
    # Churn risk: every customer who posted has a score in [0, 1] and an entry for its reasons. (Who ranks
    # higher is learned from outcomes only: tests/stream/test_churn_flow.py; no CRM is loaded here.)
    risks = dict(r.zrange(keys.churn, 0, -1, withscores=True))
    assert len(risks) > 100 and all(0.0 <= v <= 1.0 for v in risks.values())
    assert r.hlen(keys.churn_reasons) == len(risks)
    assert datetime.now(UTC)  # the flow ran on event time only: nothing above depends on the clock
