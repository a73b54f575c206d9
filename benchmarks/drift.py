"""What the drift guard does on a simulated vocabulary change in real tweets (airline sentiment).

Run: ``.venv/bin/python benchmarks/drift.py [--warm 4000] [--change-at 3000] [--words 40]``. Prints one
``name=value`` line per figure; benchmarks/RESULTS.md holds a copy with the command that produced it.

The airline tweets (``../shared/data/airline/Tweets.csv``) in time order: a fresh ``SentimentClassifier``
learns the first ``--warm`` tweets, then every later tweet is classified and its label learned at once
(test-then-train, as feedback in the flow). After ``--change-at`` labels the vocabulary changes: the
``--words`` frequent words most tied to a sentiment in the warm-up tweets (half negative, half positive)
are replaced by unseen tokens (slang the model never saw; mode
``replace``), or the negative and positive ones trade places (their meaning flips; mode ``swap``); mode
``none`` is the control without a change. Two ways of serving, same labels:

The changed words are half the most negative and half the most positive frequent words.

* ``learner``: always serve the learning model (no guard);
* ``guard``: what ``stream.learning.ModelHost`` does — a ``DriftGuard`` (River ADWIN on the learner's
  prequential errors) pins the newest snapshot taken before the change (snapshots every 50 labels, the
  flow's checkpoints) and serves it until the learner is at least as good on the labels since.

Scores are of the *served* predictions: before the change, the first 500 labels after it, and the rest.
"""

from __future__ import annotations

import argparse
import copy
import math
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.prequential import DriftGuard, classification_scores  # noqa: E402
from models.sentiment import SentimentClassifier  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
_WORD = re.compile(r"(?<![@#\w])[a-z']+", re.IGNORECASE)  # words, not @handles nor #tags


def airline_rows(data_dir: Path) -> list[tuple[dict[str, Any], str]]:
    frame = pl.read_csv(data_dir / "airline" / "Tweets.csv", columns=["text", "airline_sentiment", "tweet_created"])
    frame = frame.with_columns(
        pl.col("tweet_created").str.strptime(pl.Datetime, "%Y-%m-%d %H:%M:%S %z").alias("ts")
    ).sort("ts", maintain_order=True)
    return [({"text": t, "channel": "twitter"}, y)
            for t, y in zip(frame["text"].to_list(), frame["airline_sentiment"].to_list(), strict=True)]


def sentiment_words(rows: list[tuple[dict[str, Any], str]], n: int) -> list[str]:
    """``n`` frequent words (seen at least 30 times) most tied to a sentiment: half negative, half positive,
    ranked by lift (P(class | word) / P(class)) times log frequency."""
    by_class: dict[str, Counter[str]] = {}
    totals: Counter[str] = Counter()
    for x, y in rows:
        words = set(_WORD.findall(x["text"].lower()))
        by_class.setdefault(y, Counter()).update(words)
        totals.update(words)
    prior = Counter(y for _, y in rows)
    n_rows = len(rows)
    chosen: list[str] = []
    for k in ("negative", "positive"):
        scored = []
        for w, c in totals.items():
            if c < 30 or len(w) < 3:
                continue
            lift = math.log((by_class[k][w] + 1) / (c + 3)) - math.log(prior[k] / n_rows)
            scored.append((lift * math.log(c), w))
        chosen += [w for _, w in sorted(scored, reverse=True)[: n // 2]]
    return chosen


def changed(text: str, mapping: dict[str, str]) -> str:
    return _WORD.sub(lambda m: mapping.get(m.group(0).lower(), m.group(0)), text)


def vocabulary_change(words: list[str], mode: str) -> dict[str, str]:
    """``replace``: every word becomes an unseen token; ``swap``: the i-th negative word and the i-th positive
    word trade places (their meaning flips, as slang sometimes does); ``none``: no change (the control)."""
    if mode == "none":
        return {}
    if mode == "replace":
        return {w: f"zq{i}x" for i, w in enumerate(words)}
    half = len(words) // 2
    negative, positive = words[:half], words[half:]
    return {**dict(zip(negative, positive, strict=False)), **dict(zip(positive, negative, strict=False))}


def run(rows: list[tuple[dict[str, Any], str]], warm: int, change_at: int, n_words: int,
        mode: str) -> dict[str, Any]:
    base = SentimentClassifier()
    for x, y in rows[:warm]:
        base.learn_one(x, y)
    words = sentiment_words(rows[:warm], n_words)
    mapping = vocabulary_change(words, mode)
    stream = [(x if i < change_at else {**x, "text": changed(x["text"], mapping)}, y)
              for i, (x, y) in enumerate(rows[warm:])]
    out: dict[str, Any] = {"labels": len(stream), "change_at": change_at, "words": ",".join(words)}
    for variant in ("learner", "guard"):
        learner = copy.deepcopy(base)
        guard = DriftGuard()
        guard.remember(learner, 0)
        served: list[str] = []
        events: list[tuple[int, str]] = []
        t0 = time.perf_counter()
        for i, (x, y) in enumerate(stream):
            lp = learner.predict_one(x)
            pinned_pred = guard.serving(learner).predict_one(x) if guard.pinned else None
            served.append(pinned_pred if variant == "guard" and pinned_pred is not None else lp)
            learner.learn_one(x, y)
            event = guard.observe(lp != y, None if pinned_pred is None else pinned_pred != y)
            if event:
                events.append((i, event))
            if i % 50 == 49:
                guard.remember(learner, i + 1)
        out[f"{variant}_seconds"] = time.perf_counter() - t0
        ys = [y for _, y in stream]
        for name, lo, hi in (("before", 0, change_at), ("first_500_after", change_at, change_at + 500),
                             ("rest_after", change_at + 500, len(stream))):
            s = classification_scores(ys[lo:hi], served[lo:hi])
            out[f"{variant}_{name}_accuracy"] = s["accuracy"]
            out[f"{variant}_{name}_macro_recall"] = s["macro_recall"]
        if variant == "guard":
            drifts = [i for i, e in events if e == "drift"]
            recoveries = [i for i, e in events if e == "recovered"]
            out["guard_drifts_before_change"] = sum(1 for i in drifts if i < change_at)
            out["guard_drifts_after_change"] = sum(1 for i in drifts if i >= change_at)
            after = [i for i in drifts if i >= change_at]
            if after:
                out["guard_detection_delay_labels"] = after[0] - change_at
                rec = [i for i in recoveries if i > after[0]]
                out["guard_pinned_for_labels"] = (rec[0] - after[0]) if rec else len(stream) - after[0]
            out["guard_events"] = ";".join(f"{e}@{i}" for i, e in events)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warm", type=int, default=4000, help="tweets learned before the scored stream")
    ap.add_argument("--change-at", type=int, default=3000, help="labels of the stream before the vocabulary change")
    ap.add_argument("--words", type=int, default=40, help="sentiment words changed (half negative, half positive)")
    ap.add_argument("--modes", default="none,replace,swap",
                    help="vocabulary changes to run: none (control), replace (unseen tokens), swap (meanings flip)")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args(argv)
    if not (args.data_dir / "airline" / "Tweets.csv").is_file():
        print(f"skipped=no airline data under {args.data_dir}")
        return 0
    rows = airline_rows(args.data_dir)
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        res = run(rows, args.warm, args.change_at, args.words, mode)
        for k, v in res.items():
            print(f"{mode}_{k}={v:.4f}" if isinstance(v, float) else f"{mode}_{k}={v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
