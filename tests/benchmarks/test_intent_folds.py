"""The intent CV of ``benchmarks/models.py``: near-duplicates (retweets, truncated copies) share one fold."""

from __future__ import annotations

from pathlib import Path

import pytest
from pulse_testkit import load_benchmark

from models.corpora import read_tweet_acts

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

bench = load_benchmark("models")


def test_near_duplicate_key_joins_copies_and_keeps_different_tweets_apart() -> None:
    key = bench.near_duplicate_key
    original = "Where is my bag? Landed 2h ago @united https://t.co/abc"
    assert key("RT @traveller: " + original) == key(original)
    assert key("RT @a: @b where is my BAG!! landed 2h ago @united https://t.co/zzz") == key(original)
    assert key(original[:60] + "…") == key(original)  # a retweet cut short keeps the first 50 characters
    assert key("Where is my suitcase? Landed 2h ago") != key(original)
    assert key("") == ""


def test_grouped_folds_keep_each_group_whole_and_stratify() -> None:
    labels = ["query", "comment", "comment", "query", "comment", "comment"] * 5
    texts = [f"text {i % 12}" for i in range(len(labels))]
    folds = bench.stratified_folds(labels, 3, groups=texts)
    assert sorted(i for fold in folds for i in fold) == list(range(len(labels)))
    where = {i: f for f, fold in enumerate(folds) for i in fold}
    for i, t in enumerate(texts):
        assert all(where[j] == where[i] for j, u in enumerate(texts) if u == t)
    assert all(sum(labels[i] == "query" for i in fold) >= 2 for fold in folds)


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not here")
def test_tweet_acts_has_more_near_duplicates_than_identical_texts() -> None:
    texts = [t for t, _ in read_tweet_acts(DATA)]
    near = {bench.near_duplicate_key(t) for t in texts}
    assert len(near) < len(set(texts)) < len(texts)
