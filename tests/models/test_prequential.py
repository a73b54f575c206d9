"""Prequential metrics: scores, rolling windows, drift, and idempotent writes to Redis."""

from __future__ import annotations

import random

import redis

from models import registry
from models.prequential import (
    ALL_CHANNELS,
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
    first.pop("updated_at"), again.pop("updated_at")
    assert first == again
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
