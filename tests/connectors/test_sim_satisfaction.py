"""The simulator's hidden churn process: latent satisfaction, seed-varied coefficients, observable consequences."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from connectors._sim_satisfaction import THREATS, Coefficients, Satisfaction
from connectors.simulator import World, _Run


def test_coefficients_differ_by_seed_within_their_ranges() -> None:
    draws = [Coefficients.draw(seed) for seed in range(20)]
    assert len({d.neg_post for d in draws}) == 20
    for field in dataclasses.fields(Coefficients):
        values = [getattr(d, field.name) for d in draws]
        assert max(values) > min(values), field.name  # every coefficient varies with the seed
    assert all(d.churn_slope > 0 and d.reversion_per_day > 0 for d in draws)


def test_experiences_move_satisfaction_in_event_time_and_revert() -> None:
    sat = Satisfaction(seed=1, tenure_days=[100.0, 100.0], tiers=["silver", "silver"], brands=["a", "a"], start=0)
    day = 86400.0
    for k in range(10):
        sat.experience(0, k * 3600.0, -0.5)
    sat.answered(0, 20 * 3600.0, delay_s=None)  # felt a day later: not at hour 21 yet
    before = sat.level(1, 21 * 3600.0)
    hit = sat.level(0, 21 * 3600.0)
    assert hit < before - 3.0
    assert sat.level(0, 45 * 3600.0) < hit + 0.5  # the unanswered query hurt at hour 44
    recovered = sat.level(0, 200 * day)
    assert abs(recovered - sat.level(1, 200 * day)) < 2.0  # back near the baseline after months
    assert sat.churn_probability(0, 201 * day) > 0.0


def test_churned_customers_are_gone_and_outages_touch_a_share_of_the_brand() -> None:
    n = 400
    sat = Satisfaction(seed=2, tenure_days=[300.0] * n, tiers=["bronze"] * n, brands=["a"] * 200 + ["b"] * 200,
                       start=0)
    sat.outage("inc1", "a", 3600.0, 7200.0)
    sat.outage("inc1", "a", 3600.0, 7200.0)  # the same incident seen in its next hour: felt once
    touched = sum(1 for _, _, idx, _ in sat._queue if idx < 200)
    assert 0 < touched < 200 and all(idx < 200 for _, _, idx, _ in sat._queue)
    churned, p = sat.renew(5, 86400.0)
    assert 0.0 < p < 1.0
    if churned:
        sat.experience(5, 90000.0, -1.0)
        assert all(idx != 5 for _, _, idx, _ in sat._queue if _ > 86400.0)


def test_the_stream_carries_only_observable_consequences() -> None:
    world = World(seed=4, n_customers=300, rate_per_hour=300, posts_per_customer_day=3, renewal_days=4)
    hidden: list[float] = []
    run = _Run(world, on_renewal=lambda cid, ts, p, churned: hidden.append(p))
    until = (world.start + timedelta(days=8)).timestamp()
    outcomes, threats = [], 0
    for ts, fmt, payload in run.stream():
        if ts >= until:
            break
        if fmt == "churn":
            assert set(payload) == {"type", "customer_id", "ts", "churned"}
            outcomes.append(payload)
        elif fmt == "mention" and payload["meta"].get("truth_customer_id"):
            threats += any(payload["text"].endswith(t) for t in THREATS)
            assert not any(k.startswith(("satisf", "churn")) for k in payload["meta"])
    assert len(hidden) >= len(outcomes) > 300  # the probabilities went to the callback, not the stream
    assert threats > 0, "some unhappy customers say they may leave"
    rate = sum(o["churned"] for o in outcomes) / len(outcomes)
    assert 0.03 < rate < 0.4
