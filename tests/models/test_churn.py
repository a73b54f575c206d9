"""ChurnFeatures and ChurnModel: incremental features, learning from outcomes, bad input, the simulator."""

from __future__ import annotations

import math
import pickle
import random
from datetime import UTC, datetime, timedelta

import pytest
from river import datasets
from river.checks import clf, common

from models.churn import (
    CHURN_INTENT,
    FEATURE_NAMES,
    REASON_TEXT,
    ChurnFeatures,
    ChurnModel,
    negative_share_score,
    rfm_complaint_score,
)

T0 = datetime(2024, 3, 4, tzinfo=UTC)


def at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


def mention(mid: str, cid: str, hours: float, *, sentiment: str = "neutral", intent: str = "comment",
            text: str = "hello") -> dict:
    return {"id": mid, "customer_id": cid, "ts": at(hours), "sentiment": sentiment, "intent": intent, "text": text}


def auc(labels: list[bool], scores: list[float]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("text, expected", [
    ("I'm cancelling my contract", True),
    ("switching to Skyline next month", True),
    ("that's it, I'm leaving", True),
    ("please close my account", True),
    ("porting my number tomorrow", True),
    ("never again with you lot", True),
    ("leave a message after the tone", False),
    ("my flight was cancelled", True),  # a cancellation by the brand is also a churn cue, by design
    ("love the new app", False),
])
def test_churn_intent_phrases(text: str, expected: bool) -> None:
    assert (CHURN_INTENT.search(text) is not None) is expected


def test_features_from_mentions_replies_and_crm() -> None:
    f = ChurnFeatures(sla_h=24, slow_h=2)
    f.learn_one({"type": "crm", "customer_id": "C1", "tenure_days": 400, "value": 999, "tier": "Gold", "ts": at(0)})
    f.learn_one(mention("m1", "C1", 1, sentiment="negative", intent="query", text="where is my refund"))
    f.learn_one(mention("m2", "C1", 2, sentiment="positive"))
    f.learn_one(mention("m3", "C1", 3, sentiment="negative", intent="query", text="cancel my plan"))
    f.learn_one({"id": "r1", "from_brand": True, "in_reply_to": "m1", "ts": at(1.5)})  # fast answer
    f.learn_one({"id": "r2", "from_brand": True, "in_reply_to": "m1", "ts": at(9)})  # a second reply: ignored
    x = f.transform_one({"customer_id": "C1", "ts": at(4)})
    assert set(FEATURE_NAMES) <= set(x) and x["tier_gold"] == 1.0
    assert x["mentions"] == pytest.approx(math.log1p(3), rel=1e-2)
    assert x["neg_share"] == pytest.approx(2 / 3)
    assert x["churn_intent"] == pytest.approx(math.log1p(1), rel=1e-2)
    assert x["queries"] == pytest.approx(math.log1p(2), rel=1e-2)
    assert x["unanswered"] == 0.0 and x["slow_replies"] == 0.0
    assert x["response_h"] == pytest.approx(math.log1p(0.5))
    assert x["tenure_years"] == pytest.approx(400 / 365, rel=1e-2) and x["new_customer"] == 0.0
    assert x["log_value"] == pytest.approx(3.0) and x["known"] == 1.0
    # m3 is still open a day later: it counts as unanswered without any SLA event.
    later = f.transform_one({"customer_id": "C1", "ts": at(3 + 25)})
    assert later["unanswered"] == pytest.approx(math.log1p(1), rel=0.01)
    # A reply after the SLA: unanswered, slow, and its response time counts.
    f.learn_one({"id": "r3", "from_brand": True, "in_reply_to": "m3", "ts": at(3 + 30)})
    x = f.transform_one({"customer_id": "C1", "ts": at(3 + 31)})
    assert x["unanswered"] == pytest.approx(math.log1p(1), rel=0.01)
    assert x["slow_replies"] == pytest.approx(math.log1p(1), rel=0.01)
    w = 0.5 ** ((33 - 1.5) / (30 * 24))  # the first answer has decayed a little since
    assert x["response_h"] == pytest.approx((w * math.log1p(0.5) + math.log1p(30)) / (w + 1), rel=1e-3)


def test_counts_decay_and_tenure_grows() -> None:
    f = ChurnFeatures(halflife_days=10)
    f.learn_one({"type": "crm", "customer_id": "C2", "tenure_days": 170, "ts": at(0)})
    f.learn_one(mention("m1", "C2", 0, sentiment="negative"))
    now = f.transform_one({"customer_id": "C2", "ts": at(0)})
    ten_days = f.transform_one({"customer_id": "C2", "ts": at(240)})
    assert math.expm1(ten_days["negative"]) == pytest.approx(0.5 * math.expm1(now["negative"]), rel=1e-2)
    assert ten_days["neg_share"] == now["neg_share"] == 1.0
    assert now["new_customer"] == 1.0 and ten_days["new_customer"] == 0.0  # 180 days reached
    assert ten_days["days_quiet"] == pytest.approx(math.log1p(10))


def test_since_date_and_sla_event_and_explicit_intent() -> None:
    f = ChurnFeatures()
    f.learn_one({"type": "customer", "customer_id": "C3", "since": "2023-03-05T00:00:00Z", "ts": at(0)})
    f.learn_one({**mention("m1", "C3", 1, intent="query"), "churn_intent": True, "text": "ok"})
    f.learn_one({"type": "unanswered", "customer_id": "C3", "mention_id": "m1", "ts": at(5)})
    f.learn_one({"id": "r1", "from_brand": True, "in_reply_to": "m1", "ts": at(6)})  # no longer pending
    x = f.transform_one({"customer_id": "C3", "ts": at(7)})
    assert x["tenure_years"] == pytest.approx(1.0, abs=0.01)
    assert x["churn_intent"] > 0 and x["unanswered"] == pytest.approx(math.log1p(1), rel=0.01)
    assert x["slow_replies"] == 0.0 and x["response_h"] == 0.0


def test_reply_with_customer_and_first_response_ms() -> None:
    f = ChurnFeatures()
    f.learn_one(mention("m1", "C4", 0, intent="comment"))
    f.learn_one({"type": "reply", "customer_id": "C4", "ts": at(3), "first_response_ms": 3 * 3_600_000})
    x = f.transform_one({"customer_id": "C4"})
    assert x["slow_replies"] > 0 and x["response_h"] == pytest.approx(math.log1p(3))


@pytest.mark.parametrize("event", [
    None, "text", 42, {}, {"customer_id": 3}, {"customer_id": "C9"}, {"customer_id": "C9", "ts": "soon"},
    {"type": "crm", "customer_id": "C9", "tenure_days": "long", "value": float("nan"), "tier": 5},
    {"type": "churn", "customer_id": "C9", "ts": at(1), "churned": True},
    {"from_brand": True, "in_reply_to": "unknown", "ts": at(1)},
    {"type": "reply", "customer_id": "C9", "ts": at(1), "first_response_ms": "fast"},
    {"id": 5, "customer_id": "C9", "ts": at(1), "intent": "query", "text": None, "sentiment": ["negative"]},
    {"id": "m", "customer_id": "C9", "ts": at(1), "text": "x" * 100_000},
])
def test_bad_events_never_raise(event: object) -> None:
    f = ChurnFeatures()
    f.learn_one(event)  # type: ignore[arg-type]
    x = f.transform_one({"customer_id": "C9"})
    assert all(isinstance(v, float) and math.isfinite(v) for v in x.values())


def test_memory_is_bounded_and_customers_can_be_forgotten() -> None:
    f = ChurnFeatures(max_customers=50, max_pending=3)
    for i in range(500):
        f.learn_one(mention(f"m{i}", f"C{i % 120}", i / 10, intent="query"))
    assert len(f) == 50 and len(f._owner) <= 200
    assert all(len(c.pending) <= 3 for c in f._customers.values())
    cid = next(iter(f._customers))
    f.forget(cid)
    assert len(f) == 49 and f.transform_one({"customer_id": cid})["known"] == 0.0


def test_transform_is_pure() -> None:
    f = ChurnFeatures()
    for e, _ in f._unit_test_dataset():
        f.learn_one(e)
    state = pickle.dumps(f)
    f.transform_one({"customer_id": "C3", "ts": at(24 * 30)})
    assert pickle.dumps(f) == state


def test_model_starts_neutral_and_probabilities_are_valid() -> None:
    m = ChurnModel(base_rate=0.1)
    calm = {"negative": 0.0, "unanswered": 0.0, "tier_gold": 1.0, "tenure_years": 5.0}
    angry = {"negative": 2.0, "neg_share": 1.0, "unanswered": 1.5, "churn_intent": 1.0, "new_customer": 1.0}
    p_calm, p_angry = m.predict_proba_one(calm), m.predict_proba_one(angry)
    assert set(p_calm) == {True, False} and p_calm[True] + p_calm[False] == pytest.approx(1.0)
    # No weight is copied from anywhere: before any outcome every customer gets the base rate and no reason.
    assert p_angry == p_calm and p_calm[True] == pytest.approx(0.1)
    assert m.reasons(angry) == [] and m.predict_one(angry) is False
    assert set(m.weights) == {"_bias"}


def test_model_learns_from_outcomes_and_explains_risks() -> None:
    """A hidden process in which value matters and negativity does not: learning must find it."""
    rng = random.Random(11)

    def draw() -> tuple[dict, bool]:
        x = {"negative": rng.random() * 2, "log_value": rng.random() * 3, "queries": rng.random()}
        return x, rng.random() < 1 / (1 + math.exp(-(2.5 * x["log_value"] - 5)))

    m = ChurnModel(learning_rate=0.1)
    for _ in range(3000):
        x, y = draw()
        m.learn_one(x, y)
    test = [draw() for _ in range(1000)]
    learned = auc([y for _, y in test], [m.predict_proba_one(x)[True] for x, _ in test])
    assert learned > 0.8
    assert m.weights["log_value"] > 0.5 > abs(m.weights["negative"]) and m.n_outcomes == 3000
    x = {"negative": 1.0, "log_value": 2.9, "queries": 0.5}
    contributions = m.contributions(x)
    logit = math.log(m.predict_proba_one(x)[True] / m.predict_proba_one(x)[False])
    assert logit == pytest.approx(m.weights["_bias"] + sum(contributions.values()), rel=1e-6)
    reasons = m.reasons(x, n=2)
    assert reasons[0]["feature"] == "log_value" and reasons[0]["text"] == REASON_TEXT["log_value"]
    assert reasons[0]["value"] == 2.9 and reasons[0]["contribution"] == pytest.approx(contributions["log_value"], abs=1e-4)
    assert all(r["contribution"] > 0 for r in reasons)
    assert m.reasons({"log_value": 0.1}) == [] or m.reasons({"log_value": 0.1})[0]["feature"] != "log_value"


def test_constant_features_are_not_amplified() -> None:
    m = ChurnModel()
    rng = random.Random(2)
    for i in range(400):
        y = rng.random() < 0.3
        m.learn_one({"signal": float(y) + rng.random(), "almost_constant": 1.0 + 1e-9 * i}, y)
    assert m.contributions({"signal": 1.0, "almost_constant": 5.0})["almost_constant"] == 0.0


def test_baselines() -> None:
    assert negative_share_score({"neg_share": 0.4}) == 0.4 and negative_share_score({}) == 0.0
    never = {"days_since_complaint": math.log1p(365), "complaints_90d": 0.0}
    old_one = {"days_since_complaint": math.log1p(80), "complaints_90d": math.log1p(1)}
    fresh_many = {"days_since_complaint": math.log1p(2), "complaints_90d": math.log1p(12)}
    assert rfm_complaint_score(never) == 0 < rfm_complaint_score(old_one) == 2 < rfm_complaint_score(fresh_many) == 10
    f = ChurnFeatures()
    for k in range(3):
        f.learn_one(mention(f"n{k}", "C1", k, sentiment="negative"))
    f.learn_one(mention("p", "C1", 4, sentiment="positive"))
    x = f.transform_one({"customer_id": "C1", "ts": at(24 * 20)})
    assert rfm_complaint_score(x) == 3 + 3  # 20 days ago (3), three complaints (3)
    assert negative_share_score(x) == pytest.approx(0.75, rel=1e-2)
    assert rfm_complaint_score(f.transform_one({"customer_id": "C1", "ts": at(24 * 100)})) == 0  # 90 days passed


@pytest.mark.parametrize("label", [None, "maybe", object()])
def test_model_ignores_bad_labels(label: object) -> None:
    m = ChurnModel()
    before = pickle.dumps(m)
    m.learn_one({"negative": 1.0}, label)
    assert pickle.dumps(m) == before


def test_model_reads_string_labels_and_skips_bad_values() -> None:
    m = ChurnModel()
    m.learn_one({"negative": 1.0, "note": "vip", "x": float("nan"), "y": float("inf"), "z": 1e300}, "true")
    m.learn_one({"negative": 2.0}, "no")
    assert m.n_outcomes == 2 and m.n_churned == 1
    p = m.predict_proba_one({"negative": 1e300, "other": None})
    assert 0.0 <= p[True] <= 1.0 and math.isfinite(p[True])
    assert m.predict_proba_one("not a dict")[True] == pytest.approx(m.predict_proba_one({})[True])  # type: ignore[arg-type]


def test_model_passes_rivers_classifier_checks_on_phishing() -> None:
    data = list(datasets.Phishing().take(200))
    for check in (clf.check_predict_proba_one, clf.check_predict_proba_one_binary,
                  clf.check_classifier_tracks_seen_labels, common.check_learn_one, common.check_pickling):
        check(ChurnModel(), dataset=data)


def test_beats_both_baselines_on_the_simulators_hidden_churn() -> None:
    """Learned from outcomes only; the simulator's satisfaction process is never imported by models/."""
    sim = pytest.importorskip("connectors.simulator")
    world = sim.World(seed=3, n_customers=800, rate_per_hour=300)
    feats, model = ChurnFeatures(), ChurnModel()
    for c in world.customers():
        feats.learn_one({"type": "crm", "customer_id": c["customer_id"], "tenure_days": c["tenure_days"],
                         "value": c["value"], "tier": c["tier"], "ts": world.start})
    labels, ours, neg_share, rfm = [], [], [], []
    for rec in world.events(until=world.start + timedelta(days=21), kinds={"mention", "churn"}):
        p = rec.payload
        if rec.fmt == "churn":
            x = feats.transform_one(p)
            ours.append(model.predict_proba_one(x)[True])  # scored before it is learned
            neg_share.append(negative_share_score(x))
            rfm.append(rfm_complaint_score(x))
            labels.append(p["churned"])
            model.learn_one(x, p["churned"])
            continue
        meta = p["meta"]
        feats.learn_one({"id": p["id"], "customer_id": meta.get("truth_customer_id"), "ts": p["ts"],
                         "text": p["text"], "sentiment": meta.get("truth_sentiment"),
                         "intent": meta.get("truth_intent"), "from_brand": p["from_brand"],
                         "in_reply_to": p["in_reply_to"]})
    assert len(labels) > 1000 and 50 < sum(labels) < len(labels) / 3
    assert auc(labels, ours) > auc(labels, rfm) > auc(labels, neg_share)
    assert auc(labels, ours) > 0.65


def test_models_never_import_the_simulator() -> None:
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2] / "models"
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "connectors" not in text and "_sim_satisfaction" not in text, path
