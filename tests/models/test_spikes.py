"""SpikeDetector and SpikeAlerter: seasonality, growth, spike pollution, dedup, bad input, the simulator."""

from __future__ import annotations

import math
import pickle
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.spikes import SpikeAlerter, SpikeDetector, to_epoch_seconds
from stream.schema import Alert

START = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday


def poisson(rng: random.Random, lam: float) -> int:
    """Knuth's Poisson draw (normal approximation for large means)."""
    if lam > 50:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def daily_mean(ts: datetime, base: float = 20.0) -> float:
    """Busy afternoons, quiet nights, quieter weekends."""
    day = 0.2 + 0.8 * math.exp(-(((ts.hour + ts.minute / 60) - 14) / 4) ** 2)
    week = 0.7 if ts.weekday() >= 5 else 1.0
    return base * day * week * 2


def hourly(days: int, seed: int = 1, base: float = 20.0, growth_per_day: float = 0.0):
    rng = random.Random(seed)
    for i in range(days * 24):
        ts = START + timedelta(hours=i)
        yield ts, poisson(rng, daily_mean(ts, base) * (1 + growth_per_day * i / 24))


def test_seasonal_expectation_flags_a_night_spike_but_not_the_afternoon_peak() -> None:
    det = SpikeDetector()
    for ts, n in hourly(21):
        det.learn_one({"count": n, "ts": ts})
    afternoon = START + timedelta(days=21, hours=14)  # a Monday: about 40 expected
    night = START + timedelta(days=21, hours=3)  # about 8 expected
    assert det.expected_one({"ts": afternoon}) == pytest.approx(40, rel=0.25)
    assert det.expected_one({"ts": night}) < 15
    # The afternoon's normal count is a spike at night.
    assert det.score_one({"count": 40, "ts": afternoon}) < 0.3
    assert det.score_one({"count": 40, "ts": night}) > 0.5
    # Weekends are quieter: the detector expects less on a Saturday afternoon.
    saturday = START + timedelta(days=26, hours=14)
    assert det.expected_one({"ts": saturday}) < det.expected_one({"ts": afternoon})


def test_slow_growth_raises_no_alerts() -> None:
    alerter = SpikeAlerter(interval_s=3600)
    alerts = []
    for ts, n in hourly(60, seed=2, growth_per_day=0.015):  # +90 % over two months
        alerts += alerter.update("acme", "twitter", ts, n)
    assert alerts == []
    det = alerter._series[("acme", "twitter", None)].detector
    late = START + timedelta(days=60, hours=14)
    assert det.expected_one({"ts": late}) == pytest.approx(daily_mean(late) * 1.9, rel=0.25)


def test_a_spike_does_not_teach_the_detector_that_spikes_are_normal() -> None:
    rng = random.Random(3)
    det = SpikeDetector()
    t = START
    for _ in range(3 * 1440):  # three days of flat per-minute traffic
        det.learn_one({"count": poisson(rng, 5), "ts": t})
        t += timedelta(minutes=1)
    before = det.expected_one({"ts": t})
    for _ in range(60):  # an hour at eight times the traffic
        det.learn_one({"count": poisson(rng, 40), "ts": t})
        t += timedelta(minutes=1)
    after = det.expected_one({"ts": t})
    assert after == pytest.approx(before, rel=0.1)
    assert det.score_one({"count": 40, "ts": t}) > 0.5


def test_a_lasting_level_shift_is_accepted() -> None:
    rng = random.Random(4)
    det = SpikeDetector(adapt_after_h=2.0)
    t = START
    for _ in range(2 * 1440):
        det.learn_one({"count": poisson(rng, 10), "ts": t})
        t += timedelta(minutes=1)
    for _ in range(12 * 60):  # a campaign doubles the traffic for good
        det.learn_one({"count": poisson(rng, 20), "ts": t})
        t += timedelta(minutes=1)
    assert det.expected_one({"ts": t}) > 15
    assert det.score_one({"count": 20, "ts": t}) < 0.5


def test_quiet_series_sustained_rise_is_caught_by_window_sums() -> None:
    rng = random.Random(5)
    alerter = SpikeAlerter(interval_s=60)
    t = START
    for _ in range(2 * 1440):
        alerter.update("acme", "forum", t, poisson(rng, 0.3))
        t += timedelta(minutes=1)
    opened = None
    for i in range(30):  # 3 a minute: no single minute is extreme, five of them are
        for a in alerter.update("acme", "forum", t, poisson(rng, 3.0)):
            if a["message"].startswith("open"):
                opened = i
        t += timedelta(minutes=1)
    assert opened is not None and opened <= 10


def test_one_alert_per_incident_updated_then_resolved() -> None:
    rng = random.Random(6)
    alerter = SpikeAlerter(interval_s=60, max_samples=3)
    t = START
    alerts = []
    for i in range(2 * 1440 + 90):
        spiking = 2 * 1440 <= i < 2 * 1440 + 30
        n = poisson(rng, 60 if spiking else 6)
        alerts += alerter.update("acme", "twitter", t, n, sample_ids=[f"twitter:{i}", f"twitter:{i}b"],
                                 top_terms=["outage", "app"] if spiking else ["hello"])
        t += timedelta(minutes=1)
    assert len({a["id"] for a in alerts}) == 1
    kinds = [a["message"].split(":")[0] for a in alerts]
    assert kinds[0] == "open" and kinds[-1] == "resolved" and set(kinds[1:-1]) <= {"update"}
    last = alerts[-1]
    assert last["observed"] >= alerts[0]["observed"]
    assert last["sample_ids"] == ["twitter:2880", "twitter:2880b", "twitter:2881"]
    assert last["top_terms"][:2] == ["outage", "app"]
    assert last["severity"] == "high" and 0.5 <= last["score"] < 1
    assert last["window_start"] == (START + timedelta(minutes=2 * 1440)).isoformat()
    alert = Alert.from_dict(last)  # the flow's schema accepts it as it is
    assert alert.kind == "spike" and alert.brand == "acme" and alert.channel == "twitter"


def test_negative_mentions_tell_incidents_from_buzz() -> None:
    rng = random.Random(7)
    alerter = SpikeAlerter(interval_s=60)
    t = START
    alerts = []
    for i in range(3 * 1440):
        buzz = 1440 <= i < 1440 + 60  # a news burst: 5x the mentions, the usual 20 % negative
        outage = 2 * 1440 <= i < 2 * 1440 + 60  # an outage: 5x the mentions, mostly complaints
        n = poisson(rng, 30 if buzz or outage else 6)
        neg = sum(rng.random() < (0.8 if outage else 0.2) for _ in range(n))
        alerts += alerter.update("acme", "twitter", t, n, negative=neg)
        t += timedelta(minutes=1)
    opens = [a for a in alerts if a["message"].startswith("open")]
    assert len(opens) == 1
    assert opens[0]["window_start"] >= (START + timedelta(minutes=2 * 1440)).isoformat()
    assert "negative" in opens[0]["message"]


def test_missing_windows_count_as_zero_and_late_windows_are_ignored() -> None:
    rng = random.Random(8)
    filled, sparse = SpikeAlerter(interval_s=60), SpikeAlerter(interval_s=None)
    t = START
    for _ in range(2 * 1440):
        n = poisson(rng, 0.5)
        if n:  # the flow emits no window without mentions
            filled.update("acme", "forum", t, n)
            sparse.update("acme", "forum", t, n)
        t += timedelta(minutes=1)
    exp_filled = filled._series[("acme", "forum", None)].detector.expected_one({"ts": t})
    exp_sparse = sparse._series[("acme", "forum", None)].detector.expected_one({"ts": t})
    assert exp_filled < 1.0 < exp_sparse
    assert filled.update("acme", "forum", START, 500) == []
    assert filled.late_windows == 1


def test_series_are_independent_per_brand_channel_topic() -> None:
    alerter = SpikeAlerter(interval_s=60)
    t = START
    for _ in range(1440):
        alerter.update("acme", "twitter", t, 5)
        alerter.update("acme", None, t, 2, topic="refund")
        t += timedelta(minutes=1)
    alerts = []
    for _ in range(5):
        alerts += alerter.update("acme", None, t, 40, topic="refund")
        alerts += alerter.update("acme", "twitter", t, 5)
        t += timedelta(minutes=1)
    assert {a["id"] for a in alerts} == {f"spike:acme:*:refund:{(START + timedelta(minutes=1440)):%Y%m%d%H%M}"}
    assert alerts[0]["topic"] == "refund" and alerts[0]["channel"] is None
    assert [a["id"] for a in alerter.active()] == [alerts[0]["id"]]
    resolved = alerter.close_all()
    assert [a["message"].split(":")[0] for a in resolved] == ["resolved"] and alerter.active() == []


def test_constant_and_empty_series() -> None:
    det = SpikeDetector()
    assert det.score_one({"count": 5, "ts": START}) == 0.0  # before any data
    assert det.expected_one({"ts": START}) == 0.0
    alerter = SpikeAlerter(interval_s=60)
    alerts = []
    t = START
    for _ in range(3 * 1440):
        alerts += alerter.update("acme", "twitter", t, 5)
        t += timedelta(minutes=1)
    assert alerts == []
    det = alerter._series[("acme", "twitter", None)].detector
    assert det.score_one({"count": 5, "ts": t}) == 0.0
    assert det.expected_one({"ts": t}) == pytest.approx(5, rel=0.1)
    assert det.score_one({"count": 50, "ts": t}) > 0.5


@pytest.mark.parametrize("count", [float("nan"), float("inf"), -1, None, "7", True, [3]])
def test_bad_counts_score_zero_and_are_not_learned(count: object) -> None:
    det = SpikeDetector()
    for i in range(100):
        det.learn_one({"count": 5, "ts": START + timedelta(minutes=i)})
    state = pickle.dumps(det)
    x = {"count": count, "ts": START + timedelta(minutes=100)}
    assert det.score_one(x) == 0.0
    det.learn_one(x)
    assert pickle.dumps(det) == state
    alerter = SpikeAlerter()
    obs = alerter.observe("acme", "twitter", START, count)  # type: ignore[arg-type]
    assert obs.score == 0.0 and obs.alerts == ()


@pytest.mark.parametrize("ts", [None, "yesterday", float("nan"), 10**30, object()])
def test_bad_timestamps_score_zero(ts: object) -> None:
    det = SpikeDetector()
    det.learn_one({"count": 5, "ts": START})
    assert det.score_one({"count": 500, "ts": ts}) == 0.0
    det.learn_one({"count": 500, "ts": ts})
    assert det.expected_one({"ts": START}) == pytest.approx(5, rel=0.1)


def test_irregular_and_out_of_order_timestamps() -> None:
    rng = random.Random(9)
    det = SpikeDetector(tz="Europe/Berlin")
    t = START
    for _ in range(3000):
        t += timedelta(seconds=rng.choice([1, 30, 60, 600, 7200]))
        ts = t - timedelta(minutes=rng.choice([0, 0, 0, 5]))  # some arrive late
        x = {"count": poisson(rng, 4), "ts": ts.isoformat() if rng.random() < 0.5 else ts.timestamp()}
        s = det.score_one(x)
        assert 0.0 <= s <= 1.0
        det.learn_one(x)
    assert 1.0 < det.expected_one({"ts": t}) < 10.0


def test_unknown_time_zone_falls_back_to_utc() -> None:
    det = SpikeDetector(tz="Mars/Olympus_Mons")
    det.learn_one({"count": 3, "ts": START})
    det.learn_one({"count": 3, "ts": START + timedelta(minutes=1)})
    assert det.expected_one({"ts": START}) > 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(
    st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 10**9), st.text(max_size=4)),
    st.one_of(st.integers(-10**12, 10**13), st.floats(allow_nan=True), st.text(max_size=30),
              st.datetimes(timezones=st.just(UTC))),
), max_size=60))
def test_no_input_makes_a_model_raise(points: list[tuple[object, object]]) -> None:
    det = SpikeDetector()
    alerter = SpikeAlerter()
    for count, ts in points:
        x = {"count": count, "ts": ts}
        assert 0.0 <= det.score_one(x) <= 1.0
        det.learn_one(x)
        alerter.update("b", "c", ts, count, negative=count)  # type: ignore[arg-type]


def test_to_epoch_seconds_reads_the_usual_forms() -> None:
    assert to_epoch_seconds(datetime(2024, 1, 1)) == START.timestamp()
    assert to_epoch_seconds("2024-01-01T01:00:00+01:00") == START.timestamp()
    assert to_epoch_seconds(True) is None and to_epoch_seconds(None) is None


def test_finds_the_simulators_incidents() -> None:
    sim = pytest.importorskip("connectors.simulator")
    world = sim.World(seed=5, n_customers=30, rate_per_hour=1200)
    until = world.start + timedelta(days=3)
    alerter = SpikeAlerter(interval_s=60)
    opened: list[tuple[str, str, datetime]] = []
    for row in world.traffic_series(until, brand="nimbus"):
        for a in alerter.update(row["brand"], row["channel"], row["ts"], row["count"]):
            if a["message"].startswith("open"):
                opened.append((a["brand"], a["channel"], datetime.fromisoformat(a["window_start"])))
    incidents = [i for i in world.incidents_between(world.start, until) if i.brand == "nimbus"]
    assert incidents, "this seed has incidents on nimbus"
    found = [i for i in incidents
             if any(b == i.brand and c == i.channel and i.start <= t <= i.end for b, c, t in opened)]
    assert len(found) >= len(incidents) - 1
