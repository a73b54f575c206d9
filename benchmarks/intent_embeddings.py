"""Intent with WordLlama's static token embeddings as extra features: the experiment behind RESULTS.md.

Run: ``.venv/bin/python benchmarks/intent_embeddings.py`` after ``pip install wordllama==0.4.0.post1`` (not
a project dependency: it did not help, see benchmarks/RESULTS.md). Prints one ``name=value`` line per
figure:

- offline: the 256-dim ``l2_supercat`` weights and tokenizer that the wheel ships, loaded with every socket
  refused (``WordLlama.load()`` with its defaults does *not* find the shipped tokenizer and asks the hub for
  it; pointing ``cache_dir`` at the package folder finds both);
- speed: embeddings per CPU second on the airline tweets, one text at a time (``embed``) and in batches
  of 64, and intent predictions per second with and without the embedding features (same process);
- quality: macro F1 of ``IntentClassifier`` with the mean-pooled embedding of the text (links dropped,
  handles as ``@user``, unit length, times ``scale``) added to its features, beside the default model,
  in the stratified 5-fold CV of ``benchmarks/models.py``: plain, and with near-duplicates in one fold.
"""

from __future__ import annotations

import importlib.util
import re
import socket
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from benchmarks.models import DATA, Row, emit, fit, near_duplicate_key, rate, stratified_folds  # noqa: E402
from models.corpora import read_tweet_acts  # noqa: E402
from models.intent import IntentClassifier, intent_from_act  # noqa: E402
from models.prequential import classification_scores  # noqa: E402
from models.text import NormalisedText  # noqa: E402

_URL = re.compile(r"(?:https?://|www\.)\S+")
_HANDLE = re.compile(r"@\w+")


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise OSError("network refused: the model must load from the wheel's files alone")


def load_offline() -> Any:
    """WordLlama's bundled 256-dim model, loaded with every network call refused."""
    connect, create, resolve = socket.socket.connect, socket.create_connection, socket.getaddrinfo
    socket.socket.connect = _refuse  # type: ignore[method-assign]
    socket.create_connection = _refuse
    socket.getaddrinfo = _refuse
    try:
        from wordllama import WordLlama

        spec = importlib.util.find_spec("wordllama")
        assert spec is not None and spec.origin is not None
        folder = Path(spec.origin).parent
        started = time.perf_counter()
        model = WordLlama.load(config="l2_supercat", dim=256, cache_dir=folder, disable_download=True)
        emit("wordllama_load_offline_s", round(time.perf_counter() - started, 3))
        return model
    finally:
        socket.socket.connect, socket.create_connection, socket.getaddrinfo = connect, create, resolve  # type: ignore[method-assign]


class Embedder:
    """Mean-pooled token embedding of a text (unit length), first ``dim`` dimensions, memoised."""

    def __init__(self, model: Any, dim: int) -> None:
        self.table = np.ascontiguousarray(model.embedding[:, :dim])
        self.tokenizer = model.tokenizer
        self.memo: dict[str, np.ndarray] = {}

    def __call__(self, text: str) -> np.ndarray:
        hit = self.memo.get(text)
        if hit is None:
            hit = self.memo[text] = self.embed(text)
        return hit

    def embed(self, text: str) -> np.ndarray:
        clean = " ".join(_HANDLE.sub("@user", _URL.sub(" ", text)).split())
        ids = self.tokenizer.encode(clean, add_special_tokens=False).ids if clean else []
        if not ids:
            return np.zeros(self.table.shape[1], np.float32)
        v = self.table[ids].mean(axis=0)
        n = float(np.linalg.norm(v))
        return v / n if n > 0 else v


class EmbeddingIntent(IntentClassifier):
    """The default intent model with the embedding's dimensions beside its cues and words."""

    def __init__(self, embedder: Embedder, scale: float, memo: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.embedder, self.scale, self.memo = embedder, scale, memo

    def extra_features(self, norm: NormalisedText) -> dict[str, float]:
        out = dict(self.cues(norm))
        v = self.embedder(norm.text) if self.memo else self.embedder.embed(norm.text)
        for i, value in enumerate(v.tolist()):
            out[f"_wl{i}"] = self.scale * value
        return out


def cv_f1(
    make: Callable[[], IntentClassifier], rows: Sequence[Row], groups: Sequence[str] | None
) -> list[float]:
    labels = [y for _, y in rows]
    scores = []
    for fold in stratified_folds(labels, 5, groups=groups):
        held = set(fold)
        model = fit(make(), [r for i, r in enumerate(rows) if i not in held])
        test = [rows[i] for i in fold]
        preds = [model.predict_one(x) for x, _ in test]
        scores.append(classification_scores([y for _, y in test], preds)["macro_f1"])
    return scores


def main() -> int:
    if importlib.util.find_spec("wordllama") is None:
        print("benchmarks/intent_embeddings.py: needs `pip install wordllama==0.4.0.post1`", file=sys.stderr)
        return 2
    if not DATA.is_dir():
        print(f"benchmarks/intent_embeddings.py: data folder {DATA} is absent", file=sys.stderr)
        return 2
    model = load_offline()
    emit("wordllama_vocabulary", model.embedding.shape[0])
    emit("wordllama_dim", model.embedding.shape[1])

    airline = pl.read_csv(DATA / "airline" / "Tweets.csv")["text"].to_list()
    xs = [{"text": t, "channel": "twitter"} for t in airline]
    started = time.process_time()
    model.embed(airline, batch_size=64)
    emit("speed_wordllama_embed_batch64_per_s", round(len(airline) / (time.process_time() - started)))
    emit("speed_wordllama_embed_one_per_s", round(rate(lambda x: model.embed(x["text"]), xs[:5000])))

    rows = [
        ({"text": t, "channel": "twitter"}, y) for t, y in read_tweet_acts(DATA, to_label=intent_from_act)
    ]
    texts = [x["text"] for x, _ in rows]
    emb = {dim: Embedder(model, dim) for dim in (64, 256)}
    variants: dict[str, Callable[[], IntentClassifier]] = {
        "default": IntentClassifier,
        "wordllama64_scale1": lambda: EmbeddingIntent(emb[64], 1.0),
        "wordllama256_scale0.5": lambda: EmbeddingIntent(emb[256], 0.5),
        "wordllama256_scale2": lambda: EmbeddingIntent(emb[256], 2.0),
        "two_stage_wordllama256_scale2": lambda: EmbeddingIntent(emb[256], 2.0, detail_band=(0.2, 0.8)),
    }
    for tag, groups in (("cv", None), ("cv_grouped", [near_duplicate_key(t) for t in texts])):
        for name, make in variants.items():
            scores = cv_f1(make, rows, groups)
            emit(f"intent_{tag}_{name}_macro_f1", round(statistics.fmean(scores), 4))
            emit(f"intent_{tag}_{name}_macro_f1_sd", round(statistics.stdev(scores), 4))

    base = fit(IntentClassifier(), rows)
    speeds = {"default": rate(base.predict_one, xs)}
    for dim, scale in ((64, 1.0), (256, 0.5)):
        fresh = Embedder(model, dim)
        speeds[f"wordllama{dim}"] = rate(fit(EmbeddingIntent(fresh, scale, memo=False), rows).predict_one, xs)
    for name, value in speeds.items():
        emit(f"speed_intent_{name}_per_s", round(value))
        emit(f"speed_intent_{name}_vs_default_ratio", round(value / speeds["default"], 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
