"""The labelled public data sets under ``../shared/data``, read with one label mapping each.

Sentiment (negative / neutral / positive) comes from five sets of tweets about airlines, tech brands and
general topics (:data:`SENTIMENT_SETS`); each reader maps that set's labels to ours and drops what is not
a sentiment label (Sanders ``irrelevant`` is off-topic or not English; SXSW "I can't tell"; Apple DFE
``not_relevant``). Texts repeated within a set are kept once (the Apple set repeats retweets hundreds of
times with conflicting labels: the majority label wins, ties to the first seen). SXSW's anonymised links
``{link}`` become URLs, so every set masks links the same way; ``@mention`` is a handle like any other.

>>> sorted(SENTIMENT_SETS)
['airline', 'apple_dfe', 'sanders', 'sentiment140', 'sxsw']
>>> SENTIMENT_SETS["sanders"].path
'sanders/full-corpus.csv'
"""

from __future__ import annotations

import csv
import html
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SENTIMENT_SETS", "LabelledText", "SentimentSet", "read_sentiment_set", "read_tweet_acts"]

#: One labelled text: ``(text, label)``.
LabelledText = tuple[str, str]


@dataclass(frozen=True)
class SentimentSet:
    """Where a sentiment set lives (relative to the data folder) and how its columns map to ours."""

    name: str
    path: str
    text_col: str
    label_col: str
    labels: dict[str, str]
    what: str


SENTIMENT_SETS: dict[str, SentimentSet] = {
    s.name: s
    for s in (
        SentimentSet(
            "airline",
            "airline/Tweets.csv",
            "text",
            "airline_sentiment",
            {"negative": "negative", "neutral": "neutral", "positive": "positive"},
            "customer tweets to six US airlines, Feb 2015",
        ),
        SentimentSet(
            "sanders",
            "sanders/full-corpus.csv",
            "TweetText",
            "Sentiment",
            {"negative": "negative", "neutral": "neutral", "positive": "positive"},
            "tweets about Apple, Google, Microsoft and Twitter, Oct 2011 (irrelevant dropped)",
        ),
        SentimentSet(
            "apple_dfe",
            "apple_dfe/Apple-Twitter-Sentiment-DFE.csv",
            "text",
            "sentiment",
            {"1": "negative", "3": "neutral", "5": "positive"},
            "#AAPL OR @Apple tweets, Dec 2014 (not_relevant dropped, deduplicated)",
        ),
        SentimentSet(
            "sxsw",
            "brands_sxsw/judge-1377884607_tweet_product_company.csv",
            "tweet_text",
            "is_there_an_emotion_directed_at_a_brand_or_product",
            {
                "Negative emotion": "negative",
                "No emotion toward brand or product": "neutral",
                "Positive emotion": "positive",
            },
            "SXSW 2011 tweets about Apple and Google products (I can't tell dropped)",
        ),
        SentimentSet(
            "sentiment140",
            "sentiment140_test/testdata.manual.2009.06.14.csv",
            "text",
            "polarity",
            {"0": "negative", "2": "neutral", "4": "positive"},
            "Sentiment140's hand-labelled tweets on products, people and events, 2009",
        ),
    )
}


def _clean(text: str) -> str:
    text = text.replace("{link}", "http://link")
    return html.unescape(text) if "&" in text else text


def _dedupe(rows: list[LabelledText]) -> list[LabelledText]:
    """One row per distinct text, with its majority label (ties: the label seen first)."""
    votes: dict[str, Counter[str]] = {}
    for text, label in rows:
        votes.setdefault(text, Counter())[label] += 1
    out = []
    for text, counts in votes.items():
        best = max(counts.values())
        label = next(lab for lab in counts if counts[lab] == best)  # Counter keeps first-seen order
        out.append((text, label))
    return out


def read_sentiment_set(name: str, data_dir: Path | str) -> list[LabelledText]:
    """The ``(text, label)`` rows of one sentiment set, in file order, mapped and deduplicated.

    Raises :class:`FileNotFoundError` when the file is absent and :class:`ValueError` for an unknown name.
    """
    spec = SENTIMENT_SETS.get(name)
    if spec is None:
        raise ValueError(f"unknown sentiment set {name!r}; expected one of {sorted(SENTIMENT_SETS)}")
    path = Path(data_dir) / spec.path
    rows: list[LabelledText] = []
    with open(path, encoding="utf-8", newline="") as fh:
        for rec in csv.DictReader(fh):
            label = spec.labels.get((rec.get(spec.label_col) or "").strip())
            text = rec.get(spec.text_col) or ""
            if label is None or not text.strip():
                continue
            rows.append((_clean(text), label))
    return _dedupe(rows)


def read_tweet_acts(data_dir: Path | str, to_label: Callable[[str], str] | None = None) -> list[LabelledText]:
    """The ``(text, act)`` rows of ``tweet_acts/tweet_acts_5000.csv`` (``to_label`` maps each act)."""
    path = Path(data_dir) / "tweet_acts" / "tweet_acts_5000.csv"
    rows: list[LabelledText] = []
    with open(path, encoding="utf-8", newline="") as fh:
        for rec in csv.DictReader(fh):
            text, act = rec.get("text") or "", (rec.get("act") or "").strip()
            if text and act:
                rows.append((_clean(text), to_label(act) if to_label else act))
    return rows
