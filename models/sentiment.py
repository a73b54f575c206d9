"""Sentiment of a mention: negative / neutral / positive, and a score in [-1, 1].

A lexicon prior (the VADER lexicon shipped by ``vaderSentiment``, scored with VADER's rules on the shared
normalised words, so slang, leetspeak and emoji count too) is combined with an online River model:
one-vs-rest logistic regressions over the hashed words (negation-marked), the prior's compound score and
the domain-general lexicon cues of :mod:`models.sentiment_features` (VADER, Pattern adjectives, Emoji
Sentiment Ranking). Before any learning the prior decides alone (VADER's ±0.05 thresholds). The default
model is warm-started on every labelled sentiment set in ``../shared/data`` (airline, Sanders, Apple DFE,
SXSW, Sentiment140's hand-labelled tweets), each set and class weighed equally
(:func:`warm_start_sentiment`), and keeps learning from labelled feedback.
"""

from __future__ import annotations

import math
from pathlib import Path

from models._online import OnlineTextClassifier
from models.sentiment_features import lexicon_features
from models.text import NormalisedText, TextNormalizer

__all__ = [
    "SENTIMENTS",
    "SentimentClassifier",
    "balanced_weights",
    "sentiment_score",
    "warm_start_sentiment",
]

#: Labels, from bad to good.
SENTIMENTS = ("negative", "neutral", "positive")


def sentiment_score(proba: dict[str, float]) -> float:
    """A score in [-1, 1] from class probabilities: P(positive) - P(negative).

    >>> sentiment_score({"negative": 0.7, "neutral": 0.2, "positive": 0.1})
    -0.6
    """
    score = proba.get("positive", 0.0) - proba.get("negative", 0.0)
    return round(max(-1.0, min(1.0, score)), 6)


class SentimentClassifier(OnlineTextClassifier):
    """Negative / neutral / positive from a lexicon prior blended with an online model.

    Parameters
    ----------
    normalizer
        The shared :class:`~models.text.TextNormalizer` (``None``: the default tables).
    learning_rate
        AdaGrad step of the online logistic models.
    l2
        L2 penalty of the online models.
    prior_weight
        How many labelled examples the lexicon prior is worth; its weight fades as the model learns
        (the lexicon stays in the model as features).
    balance
        Weight examples by inverse class frequency to this power (0: no weighting, 1: fully balanced,
        which favours macro-averaged recall).
    neutral_band
        Compound scores within ``±neutral_band`` are neutral for the prior (VADER uses 0.05).

    Examples
    --------
    >>> model = SentimentClassifier()
    >>> model.predict_one({"text": "I love this airline, great crew!", "channel": "twitter"})
    'positive'
    >>> model.predict_one({"text": "worst service ever, my bag is lost :(", "channel": "twitter"})
    'negative'
    >>> stream = [("flight delayed again", "negative"), ("landed on time", "neutral"),
    ...           ("thanks for the upgrade", "positive")] * 30
    >>> for text, label in stream:
    ...     model.learn_one({"text": text, "channel": "twitter"}, label)
    >>> model.predict_one({"text": "delayed again", "channel": "twitter"})
    'negative'
    >>> proba = model.predict_proba_one({"text": "landed on time", "channel": "twitter"})
    >>> max(proba, key=proba.get)
    'neutral'
    """

    def __init__(
        self,
        normalizer: TextNormalizer | None = None,
        learning_rate: float = 0.05,
        l2: float = 0.0,
        prior_weight: float = 20.0,
        balance: float = 1.0,
        neutral_band: float = 0.05,
    ) -> None:
        super().__init__(
            normalizer=normalizer,
            learning_rate=learning_rate,
            l2=l2,
            prior_weight=prior_weight,
            balance=balance,
        )
        self.neutral_band = neutral_band

    @classmethod
    def _unit_test_params(cls):  # type: ignore[no-untyped-def]
        yield {}
        yield {"prior_weight": 0.0, "learning_rate": 0.05}

    @property
    def classes(self) -> tuple[str, ...]:
        return SENTIMENTS

    def extra_features(self, norm: NormalisedText) -> dict[str, float]:
        return lexicon_features(norm)

    def prior_proba(self, norm: NormalisedText) -> dict[str, float]:
        c = norm.compound
        band = self.neutral_band
        z_pos = 3.0 * (c - band)
        z_neg = 3.0 * (-c - band)
        top = max(z_pos, z_neg, 0.0)
        e_pos, e_neg, e_neu = math.exp(z_pos - top), math.exp(z_neg - top), math.exp(-top)
        total = e_pos + e_neg + e_neu
        return {"negative": e_neg / total, "neutral": e_neu / total, "positive": e_pos / total}

    def score_normalised(self, norm: NormalisedText) -> float:
        """The sentiment score in [-1, 1] of a normalised mention."""
        return sentiment_score(self.predict_proba_normalised(norm))


#: Per-example weights are capped so a small set's rare class cannot dominate a pass.
_MAX_WEIGHT = 10.0


def balanced_weights(
    sets: dict[str, list[tuple[str, str]]], cap: float = _MAX_WEIGHT
) -> dict[tuple[str, str], float]:
    """A weight per (set, label): every class of a set weighs the same, and every set weighs the same.

    Macro-averaged recall on a domain the model never saw rewards balanced classes; the airline tweets
    (63 % negative, half the examples) would otherwise set the prior for every domain.

    >>> w = balanced_weights({"a": [("x", "negative")] * 3 + [("y", "positive")], "b": [("z", "neutral")] * 4})
    >>> w[("a", "negative")], w[("a", "positive")], w[("b", "neutral")]
    (0.666667, 2.0, 1.0)
    """
    totals: dict[str, float] = {}
    per: dict[tuple[str, str], float] = {}
    for name, rows in sets.items():
        counts: dict[str, int] = {}
        for _, label in rows:
            counts[label] = counts.get(label, 0) + 1
        for label, n in counts.items():
            per[(name, label)] = len(rows) / (len(counts) * n)
        totals[name] = float(len(rows))  # class-balanced weights sum to the set's size
    mean = sum(totals.values()) / len(totals) if totals else 1.0
    return {key: round(min(cap, w * mean / totals[key[0]]), 6) for key, w in per.items() if totals[key[0]]}


def warm_start_sentiment(
    model: SentimentClassifier,
    data_dir: Path,
    sets: tuple[str, ...] | None = None,
    epochs: int = 2,
    seed: int = 42,
) -> int:
    """Learn from the labelled sentiment sets under ``data_dir`` (:mod:`models.corpora`) in a seeded order.

    ``sets`` names the sets to learn from (default: all of :data:`~models.corpora.SENTIMENT_SETS`);
    each example is weighed by :func:`balanced_weights`. Returns the examples learned (over all epochs).
    """
    import random

    from models.corpora import SENTIMENT_SETS, read_sentiment_set

    names = tuple(SENTIMENT_SETS) if sets is None else sets
    data = {name: read_sentiment_set(name, data_dir) for name in names}
    weights = balanced_weights(data)
    # Each text is normalised once (with its lexicon cues memoised on it) and learned from every epoch.
    normalizer = model.text_normalizer
    rows = [
        (normalizer.normalise(text, "twitter"), model.check_label(label), weights[(name, label)])
        for name, items in data.items()
        for text, label in items
    ]
    rng = random.Random(seed)
    n = 0
    for _ in range(epochs):
        rng.shuffle(rows)
        for norm, label, w in rows:
            model.learn_normalised(norm, label, w)
            n += 1
    return n
