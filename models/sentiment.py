"""Sentiment of a mention: negative / neutral / positive, and a score in [-1, 1].

A lexicon prior (the VADER lexicon shipped by ``vaderSentiment``, scored with VADER's rules on the shared
normalised words, so slang, leetspeak and emoji count too) is combined with an online River model: the
prior's compound score and polarity shares are features of one-vs-rest logistic regressions over the
hashed words, and before any learning the prior decides alone (VADER's ±0.05 thresholds). The default
model is warm-started on the airline tweets (:func:`warm_start_sentiment`) and keeps learning from
labelled feedback.
"""

from __future__ import annotations

import math
from pathlib import Path

from models._online import OnlineTextClassifier
from models.text import NormalisedText, TextNormalizer

__all__ = ["SENTIMENTS", "SentimentClassifier", "sentiment_score", "warm_start_sentiment"]

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
        learning_rate: float = 0.1,
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
        c = norm.compound
        return {
            "_s_pos": 1.0 if c >= self.neutral_band else 0.0,
            "_s_neg": 1.0 if c <= -self.neutral_band else 0.0,
            "_s_negated": 1.0 if norm.negated_words else 0.0,
        }

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


def warm_start_sentiment(
    model: SentimentClassifier, path: Path, epochs: int = 2, exclude_airline: str | None = None
) -> int:
    """Learn from the airline tweets (``text``, ``airline_sentiment``) in a seeded order.

    ``exclude_airline`` leaves one airline out (for cross-domain evaluation). Returns examples learned.
    """
    import random

    import polars as pl

    frame = pl.read_csv(path, columns=["text", "airline_sentiment", "airline"]).drop_nulls(
        ["text", "airline_sentiment"]
    )
    if exclude_airline is not None:
        frame = frame.filter(pl.col("airline") != exclude_airline)
    rows = list(zip(frame["text"].to_list(), frame["airline_sentiment"].to_list(), strict=True))
    rng = random.Random(42)
    n = 0
    for _ in range(epochs):
        rng.shuffle(rows)
        for text, label in rows:
            if label in SENTIMENTS:
                model.learn_one({"text": text, "channel": "twitter"}, label)
                n += 1
    return n
