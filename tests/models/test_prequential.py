"""Prequential metrics: scores, rolling windows, drift, idempotent writes to Redis, and the drift guard."""

from __future__ import annotations

import random

import redis

from models import registry
from models.prequential import (
    ALL_CHANNELS,
    DriftGuard,
    PrequentialMetrics,
    classification_scores,
    holdout_scores,
    majority_scores,
    prequential_scores,
    read_metrics,
)
from models.sentiment import SentimentClassifier


def test_classification_scores_by_hand() -> None:
    s = classification_scores(["neg", "neg", "neg", "pos"], ["neg", "neg", "pos", "pos"])
    # recall: neg 2/3, pos 1/1 -> 0.8333; f1: neg 0.8, pos 0.6667 -> 0.7333
    assert (s["accuracy"], s["macro_recall"], s["macro_f1"]) == (0.75, 0.8333, 0.7333)
    assert s["confusion"] == {"neg": {"neg": 2, "pos": 1}, "pos": {"pos": 1}}
    assert s["per_class"]["pos"]["precision"] == 0.5


def test_majority_baseline_has_chance_macro_recall() -> None:
    s = majority_scores(["a", "a", "b", "c"], ["a", "b", "c", "a"])
    assert s["majority_class"] == "a" and s["macro_recall"] == round(1 / 3, 4)


def test_prequential_scores_learn_as_they_go() -> None:
    rng = random.Random(3)
    rows = []
    for _ in range(300):
        label = rng.choice(["negative", "positive", "neutral"])
        word = {"negative": "blarg", "positive": "zimzam", "neutral": "quux"}[label]
        rows.append(({"text": f"the {word} thing {rng.randint(0, 9)}", "channel": "twitter"}, label))
    model = SentimentClassifier(prior_weight=1.0)
    held = holdout_scores(model, rows[-50:])
    scores = prequential_scores(model, rows, window=100)
    assert model.n_learned == 300
    assert scores["rolling"]["accuracy"] > 0.9 > held["accuracy"]
    assert scores["n"] == 300


def test_metrics_per_model_and_channel_with_drift() -> None:
    pm = PrequentialMetrics(window=50)
    for i in range(200):
        pred = "query" if i < 150 else "comment"  # predictions change in the last quarter
        pm.observe_prediction("intent", "twitter" if i % 2 else "forum", pred)
    for i in range(100):
        label = "query" if i < 50 else "comment"
        pm.observe_label("intent", "twitter", label, "query")
    snap = pm.snapshot()["intent"]
    assert set(snap) == {"twitter", "forum", ALL_CHANNELS}
    t = snap["twitter"]
    assert t["n_labels"] == 100 and t["accuracy"] == 0.5 and t["rolling_accuracy"] == 0.0
    assert t["label_dist"] == {"comment": 1.0} and t["label_drift"] == 1.0
    assert snap[ALL_CHANNELS]["prediction_drift"] == 1.0 and snap[ALL_CHANNELS]["n_predictions"] == 200
    assert t["confusion"] == {"comment": {"query": 50}, "query": {"query": 50}}
    assert snap["forum"]["n_labels"] == 0


def test_write_is_idempotent_and_readable(r: redis.Redis, key_prefix: str) -> None:
    pm = PrequentialMetrics(window=10)
    for label, pred in [("negative", "negative"), ("positive", "neutral"), ("neutral", "neutral")]:
        pm.observe_prediction("sentiment", "review", pred)
        pm.observe_label("sentiment", "review", label, pred)
    assert pm.write(r, key_prefix) == 2  # review and all
    first = read_metrics(r, key_prefix, "sentiment", "review")
    assert pm.write(r, key_prefix) == 0  # nothing changed
    assert pm.write(r, key_prefix, only_changed=False) == 2
    again = read_metrics(r, key_prefix, "sentiment", "review")
    assert first == again  # a function of the observations alone (no wall-clock stamp)
    assert again["accuracy"] == round(2 / 3, 4) and again["n_labels"] == 3.0
    assert again["confusion"]["positive"] == {"neutral": 1}
    assert r.exists(registry.metrics_key(key_prefix, "sentiment", ALL_CHANNELS))
    assert read_metrics(r, key_prefix, "sentiment", "nowhere") == {}


def test_observe_classification_counts_all_three_models() -> None:
    pm = PrequentialMetrics()
    pm.observe_classification(
        "email",
        {
            "intent": "query",
            "sentiment": "negative",
            "department": "service",
            "sentiment_score": -0.5,
            "keywords": ["refund"],
        },
    )
    snap = pm.snapshot()
    assert set(snap) == {"intent", "sentiment", "department"}
    assert snap["department"]["email"]["prediction_dist"] == {"service": 1.0}


class _Named:
    def __init__(self, name: str) -> None:
        self.name = name

    def predict_one(self, x: dict) -> str:
        return self.name


def _errors(rng: random.Random, n: int, rate: float) -> list[bool]:
    return [rng.random() < rate for _ in range(n)]


def test_drift_guard_pins_the_snapshot_from_before_the_change() -> None:
    rng = random.Random(4)
    guard = DriftGuard(min_labels=50, min_recovery=20)
    stream = _errors(rng, 400, 0.1) + _errors(rng, 200, 0.7)
    events = []
    for i, err in enumerate(stream):
        if i % 50 == 0:
            guard.remember(_Named(f"v{i}"), version=i // 50)
        events.append(guard.observe(err))
        if events[-1] == "drift":
            break
    detected = len(events) - 1
    assert 400 < detected < 500 and guard.pinned
    assert guard.pinned_version is not None and 6 <= guard.pinned_version <= 8  # taken around label 300-400
    assert guard.serving(_Named("learner")).name == f"v{guard.pinned_version * 50}"
    st = guard.status()
    assert st["error_before"] < 0.2 < 0.5 < st["error_after"] and 380 <= st["drift_at"] <= 430
    # while pinned, snapshots are not taken, and labels without the pinned version's error do not count
    guard.remember(_Named("late"), version=99)
    assert all(guard.observe(False) is None for _ in range(30)) and guard.pinned
    # the learner is worse than the pinned version for a while, then better: it takes over
    assert all(guard.observe(True, served_error=False) is None for _ in range(20))
    outcome = [guard.observe(False, served_error=True) for _ in range(40)]
    assert "recovered" in outcome and not guard.pinned and guard.recoveries == 1


def test_drift_guard_ignores_improvements_and_steady_noise() -> None:
    rng = random.Random(8)
    guard = DriftGuard(min_labels=50)
    guard.remember(_Named("v0"), version=0)
    better = [guard.observe(e) for e in _errors(rng, 300, 0.6) + _errors(rng, 300, 0.05)]
    assert "drift" not in better and not guard.pinned
    steady = DriftGuard()
    steady.remember(_Named("v0"))
    assert "drift" not in [steady.observe(e) for e in _errors(rng, 2000, 0.25)]
    unguarded = DriftGuard(min_labels=10)  # no snapshot to fall back on: nothing to pin
    assert "drift" not in [unguarded.observe(e) for e in _errors(rng, 200, 0.05) + _errors(rng, 200, 0.9)]
