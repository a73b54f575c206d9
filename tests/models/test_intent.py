"""Intent's second stage: character n-grams, the uncertainty band, online learning, clone and pickle."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import pytest
from river import base

from models.corpora import read_tweet_acts
from models.intent import IntentClassifier, char_ngrams, intent_from_act
from models.prequential import classification_scores

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

QUERIES = [
    "pls send the new tracking code",
    "my parcel never arrived, refund pls",
    "need the link for the form pls",
    "invoice missing again pls check",
]
COMMENTS = [
    "the new tracking page looks great",
    "parcel arrived early, nice one",
    "filled the form in two minutes",
    "invoice came through fine today",
]


def stream(n: int = 30) -> list[tuple[dict[str, str], str]]:
    rows = [({"text": t, "channel": "twitter"}, "query") for t in QUERIES]
    rows += [({"text": t, "channel": "twitter"}, "comment") for t in COMMENTS]
    out = rows * n
    random.Random(3).shuffle(out)
    return out


def test_char_ngrams_are_stable_bounded_and_unit_length() -> None:
    mask = (1 << 12) - 1
    a = char_ngrams("@Acme   PLS help?? https://t.co/xyz", 1, 4, mask)
    b = char_ngrams("@other pls help??", 1, 4, mask)
    assert a == b  # case, handles, links and spacing do not change the n-grams
    assert all(k - (1 << 40) <= mask for k in a)  # above every hashed word, in 2 ** n_bits buckets
    assert sum(v * v for v in a.values()) == pytest.approx(1.0)
    assert char_ngrams("", 1, 4, mask) == {}
    assert char_ngrams("https://t.co/x @acme", 1, 4, mask) == char_ngrams("@", 1, 4, mask)
    assert char_ngrams("x" * 100_000, 1, 4, mask) == char_ngrams("x" * 320, 1, 4, mask)  # first chars only


def test_second_stage_learns_and_answers_only_in_its_band() -> None:
    model = IntentClassifier(detail_band=(0.0, 1.0))  # always ask the second stage
    one_stage = IntentClassifier(detail_band=None)
    for x, y in stream():
        model.learn_one(x, y)
        one_stage.learn_one(x, y)
    assert model._detail is not None and one_stage._detail is None
    x = {"text": "tracking code pls", "channel": "twitter"}
    norm = model.normalise_one(x)
    assert model.second_stage_answers(norm) and not one_stage.second_stage_answers(norm)
    assert model.predict_one(x) == "query"
    assert model.predict_one({"text": "tracking page looks nice", "channel": "twitter"}) == "comment"
    # A band the first stage's answer falls outside: the first stage's probabilities, unchanged.
    p = one_stage.predict_proba_one(x)["query"]
    narrow = model.clone({"detail_band": (p + 0.01, 1.0) if p < 0.99 else (0.0, p - 0.01)})
    for xx, y in stream():
        narrow.learn_one(xx, y)
    assert narrow.predict_proba_one(x) == pytest.approx(one_stage.predict_proba_one(x))


def test_clone_pickle_and_pure_predictions() -> None:
    model = IntentClassifier(detail_band=(0.2, 0.8))
    for x, y in stream(5):
        model.learn_one(x, y)
    fresh = model.clone()
    assert fresh.n_learned == 0 and fresh._detail is None
    assert fresh.char_range == (1, 4) and fresh.detail_band == (0.2, 0.8)
    x = {"text": "where is my invoice", "channel": "twitter"}
    before = pickle.dumps(model)
    first = model.predict_proba_one(x)
    assert model.predict_proba_one(x) == first
    assert pickle.dumps(model) == before
    assert pickle.loads(before).predict_proba_one(x) == first
    assert isinstance(model, base.Classifier)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"char_range": (0, 3)}, "char_range"),
        ({"char_range": (4, 2)}, "char_range"),
        ({"detail_band": (0.9, 0.1)}, "detail_band"),
        ({"detail_band": (-0.1, 0.5)}, "detail_band"),
    ],
)
def test_bad_parameters_are_refused(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IntentClassifier(**params)


def test_zero_weight_examples_teach_neither_stage() -> None:
    model = IntentClassifier(detail_band=(0.2, 0.8))
    model.learn_one({"text": "can you help?", "channel": "twitter"}, "query", w=0.0)
    assert model.n_learned == 1 and model._detail is None


@pytest.mark.skipif(not (DATA / "tweet_acts").is_dir(), reason=f"{DATA / 'tweet_acts'} is absent")
def test_two_stages_beat_the_rule_on_held_out_tweet_acts() -> None:
    rows = [
        ({"text": t, "channel": "twitter"}, y) for t, y in read_tweet_acts(DATA, to_label=intent_from_act)
    ]
    random.Random(11).shuffle(rows)
    train, test = rows[:1500], rows[1500:2500]
    model = IntentClassifier(detail_band=(0.2, 0.8))
    for x, y in train:
        model.learn_one(x, y)
    y_test = [y for _, y in test]
    scores = classification_scores(y_test, [model.predict_one(x) for x, _ in test])
    rules = IntentClassifier()
    rule = classification_scores(
        y_test, ["query" if rules.rule_says_query(rules.normalise_one(x)) else "comment" for x, _ in test]
    )
    assert scores["macro_f1"] > rule["macro_f1"]
    asked = sum(model.second_stage_answers(model.normalise_one(x)) for x, _ in test)
    assert 0 < asked < len(test) / 2  # the second stage answers a minority of mentions
