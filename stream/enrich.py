"""Classifying a mention: the transparent first classifier (VADER sentiment, a query rule).

The online models of ``models/`` take over from this once they land; the step's contract stays:
a :class:`Mention` in, an :class:`Enriched` out, never an exception.

>>> from stream.schema import parse_ts, Mention
>>> c = RuleClassifier()
>>> e = c.enrich(Mention(id="t:1", channel="twitter", brand="acme", author="bob",
...                      text="How do I reset my password?? this is awful", ts=parse_ts(0)))
>>> e.intent, e.sentiment
('query', 'negative')
"""

from __future__ import annotations

import re

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from stream.schema import Enriched, Mention

__all__ = ["RuleClassifier"]

_QUERY = re.compile(
    r"\?|\b(how (do|can|to)|what|when|where|why|which|who|can (you|u|i|someone)|could you|please|pls|plz|"
    r"help|dm me|any(one|body)|is there|does anyone|need)\b",
    re.IGNORECASE,
)


class RuleClassifier:
    """VADER compound score for sentiment (>= 0.05 positive, <= -0.05 negative); a question/request rule."""

    def __init__(self) -> None:
        self._vader: SentimentIntensityAnalyzer | None = None

    def enrich(self, mention: Mention) -> Enriched:
        if self._vader is None:
            self._vader = SentimentIntensityAnalyzer()
        text = mention.text[:2000]
        score = float(self._vader.polarity_scores(text)["compound"]) if text else 0.0
        sentiment = "positive" if score >= 0.05 else "negative" if score <= -0.05 else "neutral"
        intent = "query" if (not mention.from_brand and _QUERY.search(text)) else "comment"
        return Enriched(mention=mention, intent=intent, sentiment=sentiment, sentiment_score=score)
