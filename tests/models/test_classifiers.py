"""The text classifiers and MentionClassifier: priors, online learning, feedback, bad input, warm starts."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest

from models import registry
from models.classifiers import TEXT_MODELS, MentionClassifier
from models.department import DepartmentClassifier
from models.intent import IntentClassifier
from models.sentiment import SentimentClassifier
from models.text import TextNormalizer

ODD = [
    {"text": "", "channel": "twitter"},
    {"text": "😂😂😂🔥", "channel": "instagram"},
    {"text": "https://t.co/a https://t.co/b", "channel": "twitter"},
    {"text": "help " * 2000, "channel": "email"},
    {"text": "Der Flug hat drei Stunden Verspätung", "channel": "review"},
    {"text": "航班延误了三个小时", "channel": "forum"},
    {"text": None, "channel": None},
    {"text": 123},
    {},
]


@pytest.fixture(scope="module")
def clf() -> MentionClassifier:
    return MentionClassifier()


@pytest.mark.parametrize("x", ODD)
def test_classify_one_never_raises_and_is_well_formed(clf: MentionClassifier, x: dict) -> None:
    out = clf.classify_one(x)
    assert set(out) == {"intent", "intent_proba", "sentiment", "sentiment_score", "department", "keywords"}
    assert out["intent"] in ("query", "comment") and 0.0 <= out["intent_proba"] <= 1.0
    assert out["sentiment"] in ("negative", "neutral", "positive") and -1.0 <= out["sentiment_score"] <= 1.0
    assert out["department"] in ("service", "sales", "marketing", "pr")
    assert isinstance(out["keywords"], list) and len(out["keywords"]) <= 5


def test_classify_one_is_pure(clf: MentionClassifier) -> None:
    x = {"text": "Where is my refund?? worst airline ever", "channel": "twitter"}
    before = pickle.dumps(clf)
    first = clf.classify_one(x)
    assert clf.classify_one(x) == first
    assert pickle.dumps(clf) == before
    assert x == {"text": "Where is my refund?? worst airline ever", "channel": "twitter"}


def test_priors_give_sensible_answers_before_any_learning(clf: MentionClassifier) -> None:
    q = clf.classify_one({"text": "@acme how do I change my booking?", "channel": "twitter"})
    assert q["intent"] == "query" and q["department"] == "service"
    c = clf.classify_one(
        {"text": "Had an amazing time with the crew today, thank you!", "channel": "twitter"}
    )
    assert c["intent"] == "comment" and c["sentiment"] == "positive" and c["sentiment_score"] > 0.3
    n = clf.classify_one({"text": "This game suxx0rs, totally pwn3d by hax0rs and lag", "channel": "forum"})
    assert n["sentiment"] == "negative"
    assert (
        clf.classify_one({"text": "What's the price of the pro plan? any discount?"})["department"] == "sales"
    )
    assert (
        clf.classify_one({"text": "Reporter here: will the CEO make a statement on the lawsuit?"})[
            "department"
        ]
        == "pr"
    )
    assert (
        clf.classify_one({"text": "Enter our giveaway! Retweet and follow to win"})["department"]
        == "marketing"
    )


def test_feedback_routes_to_the_right_model_and_changes_it() -> None:
    clf = MentionClassifier()
    x = {"text": "loving the new tune on the radio", "channel": "twitter"}
    assert clf.classify_one(x)["department"] != "marketing"
    for _ in range(40):
        clf.learn_one("department", x, "marketing")
        clf.learn_one("department", {"text": "my order never arrived", "channel": "twitter"}, "service")
    assert clf.classify_one(x)["department"] == "marketing"
    assert clf.department.n_learned == 80 and clf.intent.n_learned == 0 and clf.sentiment.n_learned == 0
    assert clf.department.class_counts == {"marketing": 40, "service": 40}


@pytest.mark.parametrize(
    ("model", "x", "label", "reason"),
    [
        ("mood", {"text": "hi"}, "happy", "unknown model 'mood'"),
        ("sentiment", {"text": "hi"}, "angry", "unknown class 'angry' for SentimentClassifier"),
        ("intent", {"text": "hi"}, None, "unknown class None"),
        (
            "department",
            {"text": "hi"},
            "legal",
            "expected one of \\['service', 'sales', 'marketing', 'pr'\\]",
        ),
        ("intent", {"text": ["not", "text"]}, "query", "text: expected a string, got list"),
        ("intent", "not a dict", "query", "mention: expected a dict"),
    ],
)
def test_bad_feedback_is_refused_with_a_reason_and_nothing_is_learned(
    model: str, x: object, label: object, reason: str
) -> None:
    clf = MentionClassifier()
    before = pickle.dumps(clf)
    with pytest.raises(ValueError, match=reason):
        clf.learn_one(model, x, label)  # type: ignore[arg-type]
    assert pickle.dumps(clf) == before


def test_labels_and_replace() -> None:
    clf = MentionClassifier()
    assert TEXT_MODELS == ("intent", "sentiment", "department")
    assert clf.labels("sentiment") == ("negative", "neutral", "positive")
    new = SentimentClassifier(prior_weight=5.0)
    clf.replace("sentiment", new)
    assert clf.sentiment is new
    with pytest.raises(ValueError, match="must be a SentimentClassifier"):
        clf.replace("sentiment", IntentClassifier())  # type: ignore[arg-type]


def test_models_with_different_normalisers_each_read_their_own_tables(tmp_path: Path) -> None:
    (tmp_path / "microblog.toml").write_text('[abbreviations]\nplsfix = "please fix"\n', encoding="utf-8")
    custom = TextNormalizer(taxonomy_dir=str(tmp_path))
    clf = MentionClassifier(intent=IntentClassifier(normalizer=custom))
    out = clf.classify_one({"text": "plsfix", "channel": "twitter"})
    assert out["intent"] == "query"  # "please fix" is a request phrase for the custom normaliser only
    assert MentionClassifier().classify_one({"text": "plsfix", "channel": "twitter"})["intent"] == "comment"


def test_each_model_learns_online_and_keeps_learning() -> None:
    model = SentimentClassifier(prior_weight=5.0)
    x = {"text": "the seat was a recliner", "channel": "twitter"}
    for _ in range(30):
        model.learn_one(x, "positive")
        model.learn_one({"text": "the seat was broken", "channel": "twitter"}, "negative")
    assert model.predict_one(x) == "positive"
    snapshot = copy.deepcopy(model)
    for _ in range(60):
        model.learn_one(x, "neutral")
    assert model.predict_one(x) == "neutral" and snapshot.predict_one(x) == "positive"


def test_department_classes_come_from_the_taxonomy(tmp_path: Path) -> None:
    (tmp_path / "departments.toml").write_text(
        'default = "care"\n[departments.care]\nkeywords = ["help"]\n[departments.billing]\nkeywords = ["invoice"]\n',
        encoding="utf-8",
    )
    model = DepartmentClassifier(normalizer=TextNormalizer(taxonomy_dir=str(tmp_path)))
    assert model.classes == ("care", "billing")
    assert model.predict_one({"text": "wrong invoice again"}) == "billing"
    assert model.predict_one({"text": "hello"}) == "care"


def test_warm_started_defaults_beat_their_priors_on_real_data(shared_data: Path, tmp_path: Path) -> None:
    import polars as pl

    sentiment = registry.load_default("sentiment", data_dir=shared_data, cache_dir=tmp_path)
    intent = registry.load_default("intent", data_dir=shared_data, cache_dir=tmp_path)
    assert sentiment.n_learned > 20_000 and intent.n_learned >= 10_000
    frame = pl.read_csv(shared_data / "airline" / "Tweets.csv").sample(n=600, seed=1)
    rows = list(zip(frame["text"].to_list(), frame["airline_sentiment"].to_list(), strict=True))
    prior = SentimentClassifier()
    warm = sum(sentiment.predict_one({"text": t}) == y for t, y in rows)
    cold = sum(prior.predict_one({"text": t}) == y for t, y in rows)
    assert warm > cold  # seen data, so this only shows the warm start took
    assert intent.predict_one({"text": "Can anyone tell me when the new season starts?"}) == "query"
    assert intent.predict_one({"text": "What a game last night, unbelievable finish"}) == "comment"


def test_brand_posts_are_never_queries(clf: MentionClassifier) -> None:
    x = {"text": "Can you DM us your booking number?", "channel": "twitter", "from_brand": True}
    assert clf.classify_one(x)["intent"] == "comment"
    assert clf.classify_one({**x, "from_brand": False})["intent"] == "query"


def test_fast_probability_matches_rivers_own() -> None:
    from models._online import _p_true

    model = SentimentClassifier()
    for text, label in [("awful delay", "negative"), ("great crew", "positive"), ("gate 4", "neutral")] * 10:
        model.learn_one({"text": text}, label)
    x = model.features(model.normalise_one({"text": "awful crew at gate 4"}))
    for lr in model._models.values():
        assert _p_true(lr, x) == pytest.approx(lr.predict_proba_one(x)[True], abs=1e-12)


def test_sentiment_sets_read_with_their_label_mappings(shared_data: Path) -> None:
    from models.corpora import SENTIMENT_SETS, read_sentiment_set

    sizes = {}
    for name in SENTIMENT_SETS:
        rows = read_sentiment_set(name, shared_data)
        labels = {y for _, y in rows}
        assert labels == {"negative", "neutral", "positive"}, name
        texts = [t for t, _ in rows]
        assert len(texts) == len(set(texts)), f"{name}: repeated texts must be kept once"
        sizes[name] = len(rows)
    # Sanders 'irrelevant' (1,689), SXSW "I can't tell" (156) and Apple 'not_relevant' are dropped, not neutral.
    assert sizes["sanders"] == 5113 - 1689
    assert 8_800 < sizes["sxsw"] < 9093 - 156
    assert sizes["apple_dfe"] < 3217 and sizes["sentiment140"] == 498
    sxsw = read_sentiment_set("sxsw", shared_data)
    assert not any("{link}" in t for t, _ in sxsw)
    with pytest.raises(ValueError, match="unknown sentiment set"):
        read_sentiment_set("tweeteval", shared_data)


def test_balanced_weights_give_every_set_and_class_the_same_mass() -> None:
    from models.sentiment import balanced_weights

    sets = {
        "big": [("a", "negative")] * 60 + [("b", "neutral")] * 30 + [("c", "positive")] * 10,
        "small": [("d", "negative")] * 10 + [("e", "neutral")] * 10 + [("f", "positive")] * 10,
    }
    w = balanced_weights(sets)
    mass = {
        (s, y): w[(s, y)] * sum(1 for _, lab in rows if lab == y)
        for s, rows in sets.items()
        for y in {lab for _, lab in rows}
    }
    assert max(mass.values()) - min(mass.values()) < 1e-3
    assert (
        balanced_weights({"a": [("x", "neutral")] * 1000 + [("y", "positive")]}, cap=10.0)[("a", "positive")]
        == 10.0
    )


def test_example_weights_override_the_running_balance() -> None:
    x = {"text": "the seat was broken", "channel": "twitter"}
    light, heavy = SentimentClassifier(prior_weight=0), SentimentClassifier(prior_weight=0)
    for model, w in ((light, 0.1), (heavy, 5.0)):
        model.learn_one({"text": "fine", "channel": "twitter"}, "neutral", 1.0)
        model.learn_one(x, "negative", w)
    assert heavy.predict_proba_one(x)["negative"] > light.predict_proba_one(x)["negative"]
    assert light.class_counts == heavy.class_counts == {"neutral": 1, "negative": 1}


def test_sentiment_reads_general_tweets_with_lexicon_cues() -> None:
    model = SentimentClassifier()
    stream = [
        ("what a wonderful day, loved the show", "positive"),
        ("this is awful, I hate waiting", "negative"),
        ("the meeting is at 5pm on tuesday", "neutral"),
    ] * 20
    for text, label in stream:
        model.learn_one({"text": text, "channel": "twitter"}, label)
    # Words the model never learned, carried by the lexicons alone.
    assert model.predict_one({"text": "absolutely fantastic concert 😍"}) == "positive"
    assert model.predict_one({"text": "terrible referee, disgusting decision 😡"}) == "negative"


def test_intent_cues_read_the_punctuation() -> None:
    model = IntentClassifier()

    def cues(text: str) -> set[str]:
        return {k for k, v in model.cues(model.normalise_one({"text": text})).items() if v}

    assert {"_i_q_end", "_i_q_aux", "_i_q_you"} <= cues("@acme did you get my email? #help")
    assert "_i_q_quoted" in cues('"Where does your soul go?" one of the best lines ever')
    assert {"_i_imperative", "_i_share_ask"} <= cues("RT @x: Sign and share: stop the ban https://t.co/x")
    assert "_i_q_end" not in cues("Why? Because we can. Great game tonight")
