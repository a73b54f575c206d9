"""Prequential (test-then-train) metrics per model and channel, and the scores the CLI and benchmarks use.

:class:`PrequentialMetrics` is what the flow keeps: every prediction is observed (prediction drift), and
when a label arrives as feedback the prediction made for that mention is scored against it (accuracy,
macro F1 and macro recall overall and over a rolling window, confusion matrix, label drift, ADWIN drift
alarms on the error stream). :meth:`PrequentialMetrics.write` stores absolute values in Redis hashes
(``{prefix}model:{name}:metrics:{channel}``, channel ``all`` for every channel), so writing twice is
harmless. :func:`classification_scores`, :func:`holdout_scores` and :func:`prequential_scores` score a
model on a labelled stream, :func:`majority_scores` and :func:`vader_scores` are the baselines beside it.
:class:`DriftGuard` keeps serving the last good version of a model whose prequential error drifted up.
"""

from __future__ import annotations

import copy
import math
import sys
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from river import drift

from models.registry import metrics_key

__all__ = [
    "ALL_CHANNELS",
    "DriftGuard",
    "PrequentialMetrics",
    "classification_scores",
    "holdout_scores",
    "majority_scores",
    "prequential_scores",
    "read_metrics",
    "vader_scores",
]

#: The channel name under which metrics over every channel are kept.
ALL_CHANNELS = "all"


def _f1(tp: int, fp: int, fn: int) -> float:
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if denom else 0.0


def _scores_from_confusion(confusion: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Accuracy, macro recall (over true classes), macro F1 (over true and predicted classes)."""
    labels = sorted(set(confusion) | {p for row in confusion.values() for p in row})
    n = sum(sum(row.values()) for row in confusion.values())
    correct = sum(confusion.get(c, {}).get(c, 0) for c in labels)
    per_class: dict[str, dict[str, float]] = {}
    recalls, f1s = [], []
    for c in labels:
        tp = confusion.get(c, {}).get(c, 0)
        support = sum(confusion.get(c, {}).values())
        predicted = sum(row.get(c, 0) for row in confusion.values())
        fp, fn = predicted - tp, support - tp
        recall = tp / support if support else 0.0
        precision = tp / predicted if predicted else 0.0
        f1 = _f1(tp, fp, fn)
        per_class[c] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": support,
        }
        if support:
            recalls.append(recall)
        f1s.append(f1)
    return {
        "n": n,
        "accuracy": round(correct / n, 4) if n else 0.0,
        "macro_recall": round(sum(recalls) / len(recalls), 4) if recalls else 0.0,
        "macro_f1": round(sum(f1s) / len(f1s), 4) if f1s else 0.0,
        "per_class": per_class,
        "confusion": {t: dict(sorted(row.items())) for t, row in sorted(confusion.items())},
    }


def classification_scores(y_true: Sequence[Any], y_pred: Sequence[Any]) -> dict[str, Any]:
    """Accuracy, macro-averaged recall and F1, per-class scores and the confusion matrix.

    Macro recall averages over the classes that occur in ``y_true`` (a class never present has no
    recall); macro F1 averages over every class that occurs in either sequence.

    >>> s = classification_scores(["a", "a", "b", "c"], ["a", "b", "b", "c"])
    >>> s["accuracy"], s["macro_recall"], s["macro_f1"]
    (0.75, 0.8333, 0.7778)
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} labels but {len(y_pred)} predictions")
    confusion: dict[str, dict[str, int]] = {}
    for t, p in zip(y_true, y_pred, strict=True):
        row = confusion.setdefault(str(t), {})
        row[str(p)] = row.get(str(p), 0) + 1
    return _scores_from_confusion(confusion)


def majority_scores(train_labels: Sequence[Any], y_true: Sequence[Any]) -> dict[str, Any]:
    """The majority-class baseline: always predict the most frequent training label.

    >>> majority_scores(["a", "a", "b"], ["a", "b"])["accuracy"]
    0.5
    """
    counts: dict[Any, int] = {}
    for y in train_labels:
        counts[y] = counts.get(y, 0) + 1
    top = max(sorted(counts, key=str), key=counts.__getitem__) if counts else None
    scores = classification_scores(list(y_true), [top] * len(y_true))
    scores["majority_class"] = top
    return scores


def vader_scores(texts: Sequence[str], y_true: Sequence[Any]) -> dict[str, Any]:
    """The lexicon baseline for sentiment: VADER's compound score with its ±0.05 thresholds.

    >>> vader_scores(["I love it", "I hate it", "it is a phone"], ["positive", "negative", "neutral"])["accuracy"]
    1.0
    """
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    preds = []
    for text in texts:
        c = analyzer.polarity_scores(str(text or ""))["compound"]
        preds.append("positive" if c >= 0.05 else "negative" if c <= -0.05 else "neutral")
    return classification_scores(list(y_true), preds)


def holdout_scores(
    model: Any, rows: Iterable[tuple[dict[str, Any], Any]], on_step: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Score ``model`` on labelled rows without learning (``predict_one`` only)."""
    y_true, y_pred = [], []
    for x, y in rows:
        y_true.append(y)
        y_pred.append(model.predict_one(x))
        if on_step is not None:
            on_step()
    return classification_scores(y_true, y_pred)


def prequential_scores(
    model: Any,
    rows: Iterable[tuple[dict[str, Any], Any]],
    on_step: Callable[[], None] | None = None,
    window: int = 1000,
) -> dict[str, Any]:
    """Test-then-train over labelled rows in order: predict each row, then learn from it.

    Returns the overall scores plus ``rolling`` (the last ``window`` rows). The model learns.
    """
    tracker = PrequentialMetrics(window=window)
    y_true, y_pred = [], []
    for x, y in rows:
        pred = model.predict_one(x)
        model.learn_one(x, y)
        tracker.observe_label("model", ALL_CHANNELS, str(y), str(pred))
        y_true.append(y)
        y_pred.append(pred)
        if on_step is not None:
            on_step()
    scores = classification_scores(y_true, y_pred)
    snap = tracker.snapshot().get("model", {}).get(ALL_CHANNELS, {})
    scores["rolling"] = {
        "window": window,
        "accuracy": snap.get("rolling_accuracy", 0.0),
        "macro_f1": snap.get("rolling_macro_f1", 0.0),
    }
    scores["drifts_detected"] = snap.get("drifts_detected", 0)
    return scores


def _tv_distance(recent: dict[str, int], total: dict[str, int]) -> float:
    """Total variation distance between the recent window and everything before it."""
    n_recent = sum(recent.values())
    reference = {k: total.get(k, 0) - recent.get(k, 0) for k in total}
    n_ref = sum(reference.values())
    if not n_recent or not n_ref:
        return 0.0
    keys = set(recent) | set(reference)
    return 0.5 * sum(abs(recent.get(k, 0) / n_recent - reference.get(k, 0) / n_ref) for k in keys)


def _interned(value: Any) -> Any:
    """``value`` with every string in it (dict keys, deque and list items, tuples) interned."""
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, dict):
        return {_interned(k): _interned(v) for k, v in value.items()}
    if isinstance(value, deque):
        return deque((_interned(v) for v in value), maxlen=value.maxlen)
    if isinstance(value, list | tuple):
        return type(value)(_interned(v) for v in value)
    return value


class _Track:
    """Metrics of one model on one channel.

    Labels and predictions are kept as interned strings, also after unpickling, so that equal states
    pickle to equal bytes (a resumed flow writes the same sealed state as one that never stopped).
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self.confusion: dict[str, dict[str, int]] = {}
        self.recent_pairs: deque[tuple[str, str]] = deque()
        self.recent_confusion: dict[str, dict[str, int]] = {}
        self.labels_total: dict[str, int] = {}
        self.labels_recent: dict[str, int] = {}
        self.preds: deque[str] = deque()
        self.preds_total: dict[str, int] = {}
        self.preds_recent: dict[str, int] = {}
        self.n_predictions = 0
        self.adwin = drift.ADWIN()
        self.drifts = 0
        self.dirty = True

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({sys.intern(k): v if k == "adwin" else _interned(v) for k, v in state.items()})

    def prediction(self, pred: str) -> None:
        pred = sys.intern(pred)
        self.n_predictions += 1
        self.preds_total[pred] = self.preds_total.get(pred, 0) + 1
        self.preds_recent[pred] = self.preds_recent.get(pred, 0) + 1
        self.preds.append(pred)
        if len(self.preds) > self.window:
            old = self.preds.popleft()
            self.preds_recent[old] -= 1
        self.dirty = True

    def label(self, y: str, pred: str) -> None:
        y, pred = sys.intern(y), sys.intern(pred)
        row = self.confusion.setdefault(y, {})
        row[pred] = row.get(pred, 0) + 1
        rrow = self.recent_confusion.setdefault(y, {})
        rrow[pred] = rrow.get(pred, 0) + 1
        self.labels_total[y] = self.labels_total.get(y, 0) + 1
        self.labels_recent[y] = self.labels_recent.get(y, 0) + 1
        self.recent_pairs.append((y, pred))
        if len(self.recent_pairs) > self.window:
            oy, op = self.recent_pairs.popleft()
            self.recent_confusion[oy][op] -= 1
            if not self.recent_confusion[oy][op]:
                del self.recent_confusion[oy][op]
                if not self.recent_confusion[oy]:
                    del self.recent_confusion[oy]
            self.labels_recent[oy] -= 1
        self.adwin.update(0.0 if y == pred else 1.0)
        if self.adwin.drift_detected:
            self.drifts += 1
        self.dirty = True

    def snapshot(self) -> dict[str, Any]:
        overall = _scores_from_confusion(self.confusion)
        rolling = _scores_from_confusion(self.recent_confusion)
        n_preds = sum(self.preds_recent.values())
        n_labels = sum(self.labels_recent.values())
        return {
            "n_labels": overall["n"],
            "n_predictions": self.n_predictions,
            "accuracy": overall["accuracy"],
            "macro_f1": overall["macro_f1"],
            "macro_recall": overall["macro_recall"],
            "rolling_accuracy": rolling["accuracy"],
            "rolling_macro_f1": rolling["macro_f1"],
            "window": self.window,
            "confusion": overall["confusion"],
            "label_dist": {k: round(v / n_labels, 4) for k, v in sorted(self.labels_recent.items()) if v}
            if n_labels
            else {},
            "prediction_dist": {k: round(v / n_preds, 4) for k, v in sorted(self.preds_recent.items()) if v}
            if n_preds
            else {},
            "label_drift": round(_tv_distance(self.labels_recent, self.labels_total), 4),
            "prediction_drift": round(_tv_distance(self.preds_recent, self.preds_total), 4),
            "drifts_detected": self.drifts,
        }


class PrequentialMetrics:
    """Prequential metrics per model and channel, kept in memory and written to Redis as absolute values.

    Parameters
    ----------
    window
        Rows in the rolling window (rolling accuracy / macro F1, and the "recent" side of drift).

    Examples
    --------
    >>> pm = PrequentialMetrics(window=4)
    >>> for pred in ["negative", "negative", "positive", "neutral"]:
    ...     pm.observe_prediction("sentiment", "twitter", pred)
    >>> pm.observe_label("sentiment", "twitter", "negative", "negative")
    >>> pm.observe_label("sentiment", "twitter", "positive", "neutral")
    >>> snap = pm.snapshot()["sentiment"]
    >>> snap["twitter"]["accuracy"], snap["all"]["n_predictions"], snap["twitter"]["confusion"]
    (0.5, 4, {'negative': {'negative': 1}, 'positive': {'neutral': 1}})
    >>> snap["twitter"]["prediction_dist"]
    {'negative': 0.5, 'neutral': 0.25, 'positive': 0.25}
    """

    def __init__(self, window: int = 1000) -> None:
        self.window = window
        self._tracks: dict[tuple[str, str], _Track] = {}

    def _track(self, model: str, channel: str) -> _Track:
        key = (model, channel)
        track = self._tracks.get(key)
        if track is None:
            track = self._tracks[sys.intern(model), sys.intern(channel)] = _Track(self.window)
        return track

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({sys.intern(k): v for k, v in state.items()})
        self._tracks = {(sys.intern(m), sys.intern(c)): t for (m, c), t in self._tracks.items()}

    def observe_prediction(self, model: str, channel: str, prediction: str) -> None:
        """Count a prediction (for prediction drift), on ``channel`` and on ``all``."""
        self._track(model, channel).prediction(prediction)
        if channel != ALL_CHANNELS:
            self._track(model, ALL_CHANNELS).prediction(prediction)

    def observe_classification(self, channel: str, result: dict[str, Any]) -> None:
        """Count the predictions of one ``MentionClassifier.classify_one`` result (the flow's hot path)."""
        for model in ("intent", "sentiment", "department"):
            pred = result.get(model)
            if isinstance(pred, str):
                self.observe_prediction(model, channel, pred)

    def observe_label(self, model: str, channel: str, label: str, prediction: str) -> None:
        """Score the prediction made for a mention against the label that arrived for it."""
        self._track(model, channel).label(label, prediction)
        if channel != ALL_CHANNELS:
            self._track(model, ALL_CHANNELS).label(label, prediction)

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{model: {channel: metrics}}`` with plain JSON-able values."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for (model, channel), track in sorted(self._tracks.items()):
            out.setdefault(model, {})[channel] = track.snapshot()
        return out

    def write(self, client: Any, prefix: str, *, only_changed: bool = True) -> int:
        """Write each (model, channel) as a Redis hash of absolute values; returns hashes written.

        Only what the observations decide is written (no wall-clock stamp), so a replay writes the same values.
        """
        pipe = client.pipeline(transaction=False)
        written = 0
        for (model, channel), track in self._tracks.items():
            if only_changed and not track.dirty:
                continue
            snap = track.snapshot()
            mapping = {k: orjson.dumps(v) if isinstance(v, dict) else v for k, v in snap.items()}
            pipe.hset(metrics_key(prefix, model, channel), mapping=mapping)
            track.dirty = False
            written += 1
        if written:
            pipe.execute()
        return written


def read_metrics(client: Any, prefix: str, model: str, channel: str = ALL_CHANNELS) -> dict[str, Any]:
    """Read back what :meth:`PrequentialMetrics.write` stored (numbers as floats, dicts decoded)."""
    raw = client.hgetall(metrics_key(prefix, model, channel)) or {}
    out: dict[str, Any] = {}
    for k, v in raw.items():
        key = k.decode() if isinstance(k, bytes) else str(k)
        text = v.decode() if isinstance(v, bytes) else str(v)
        if text.startswith("{"):
            out[key] = orjson.loads(text)
        else:
            try:
                out[key] = float(text)
            except ValueError:
                out[key] = text
    return out


def _change_point(errors: Sequence[float]) -> int:
    """Where a 0/1 error sequence most likely changed level (binary segmentation): the first index after.

    >>> _change_point([0, 0, 0, 0, 1, 1, 1, 0, 1, 1])
    4
    """
    n = len(errors)
    if n < 2:
        return 0
    total = float(sum(errors))
    best, best_at, left = -1.0, n // 2, 0.0
    for i in range(1, n):
        left += errors[i - 1]
        m1, m2 = left / i, (total - left) / (n - i)
        stat = math.sqrt(i * (n - i) / n) * abs(m2 - m1)
        if stat > best:
            best, best_at = stat, i
    return best_at


@dataclass
class _Snapshot:
    at_label: int
    version: int | None
    model: Any


class DriftGuard:
    """Keeps serving the last good version of an online model while its prequential error has drifted up.

    Feed :meth:`observe` with each label's prequential errors (the learning model's prediction made before
    it learns the label and, while pinned, the served version's). A River drift detector (ADWIN by default)
    watches the learner's error stream; when it fires and the error went *up*, the guard pins the newest
    snapshot taken before the change (located on the recent errors) and :meth:`observe` returns
    ``"drift"``. While pinned the learner keeps learning; once its error over the labels since the pin
    (at least ``min_recovery`` labels that carry both errors) is no worse than the pinned version's on
    the same labels, the guard
    unpins and returns ``"recovered"``. Snapshots are copies taken by :meth:`remember` (e.g. at every
    checkpoint) while the learner is healthy.

    Parameters
    ----------
    detector
        A River drift detector (cloned); default ``ADWIN(clock=4)``.
    min_labels
        Labels seen before a drift may pin anything.
    window
        Recent errors kept to locate the change point and compare before/after.
    snapshots
        Snapshots kept (the oldest is dropped).
    min_recovery
        Labels since the pin before the learner may take over again.

    Examples
    --------
    >>> class Constant:
    ...     def __init__(self, label): self.label = label
    ...     def predict_one(self, x): return self.label
    >>> guard = DriftGuard(min_labels=20, min_recovery=10)
    >>> guard.remember(Constant("old"), version=1)
    >>> events = [guard.observe(learner_error=i >= 200 and i % 5 != 0) for i in range(300)]
    >>> 200 < events.index("drift") < 300, guard.pinned, guard.serving(Constant("new")).label
    (True, True, 'old')
    >>> [guard.observe(learner_error=False, served_error=True) for _ in range(10)][-1]
    'recovered'
    >>> guard.pinned, guard.status()["drifts"]
    (False, 1)
    """

    def __init__(self, detector: Any | None = None, min_labels: int = 50, window: int = 300,
                 snapshots: int = 4, min_recovery: int = 30) -> None:
        self.detector = detector
        self.min_labels = min_labels
        self.window = window
        self.snapshots = snapshots
        self.min_recovery = min_recovery
        self._detector = detector.clone() if detector is not None else drift.ADWIN(clock=4)
        self._errors: deque[float] = deque(maxlen=max(10, window))
        self._snaps: deque[_Snapshot] = deque(maxlen=max(1, snapshots))
        self._pinned: _Snapshot | None = None
        self._since: deque[tuple[float, float]] = deque(maxlen=max(10, window))
        self.n_labels = 0
        self.drifts = 0
        self.recoveries = 0
        self.error_before: float | None = None
        self.error_after: float | None = None
        self.drift_at: int | None = None

    @property
    def pinned(self) -> bool:
        """Whether an older version is being served instead of the learner."""
        return self._pinned is not None

    @property
    def pinned_version(self) -> int | None:
        return self._pinned.version if self._pinned is not None else None

    @property
    def pinned_model(self) -> Any | None:
        return self._pinned.model if self._pinned is not None else None

    def serving(self, learner: Any) -> Any:
        """The model to serve: the pinned version while pinned, else the learner itself."""
        return self._pinned.model if self._pinned is not None else learner

    def remember(self, model: Any, version: int | None = None) -> None:
        """Keep a copy of ``model`` as a candidate "last good version" (ignored while pinned)."""
        if self._pinned is None:
            self._snaps.append(_Snapshot(self.n_labels, version, copy.deepcopy(model)))

    def observe(self, learner_error: bool | float, served_error: bool | float | None = None) -> str | None:
        """Score one label; returns ``"drift"`` when it pins, ``"recovered"`` when it unpins, else None."""
        err = float(learner_error)
        self.n_labels += 1
        if self._pinned is not None:
            if served_error is None:
                return None  # without the pinned version's error this label cannot compare the two
            self._since.append((err, float(served_error)))
            n = len(self._since)
            if n >= self.min_recovery:
                learner_mean = sum(e for e, _ in self._since) / n
                pinned_mean = sum(s for _, s in self._since) / n
                if learner_mean <= pinned_mean:
                    self._pinned = None
                    self._since.clear()
                    self._errors.clear()
                    self._detector = self.detector.clone() if self.detector is not None else drift.ADWIN(clock=4)
                    self.recoveries += 1
                    self.error_after = learner_mean
                    return "recovered"
            return None
        self._errors.append(err)
        self._detector.update(err)
        if not self._detector.drift_detected or self.n_labels < self.min_labels or not self._snaps:
            return None
        recent = list(self._errors)
        cut = _change_point(recent)
        before = sum(recent[:cut]) / cut if cut else 0.0
        after = sum(recent[cut:]) / (len(recent) - cut) if len(recent) > cut else 0.0
        if after <= before:
            return None  # the error went down: nothing to protect anyone from
        onset = self.n_labels - (len(recent) - cut)
        good = [s for s in self._snaps if s.at_label <= onset]
        self._pinned = good[-1] if good else self._snaps[0]
        self._since.clear()
        self.drifts += 1
        self.error_before, self.error_after, self.drift_at = before, after, onset
        return "drift"

    def state(self) -> dict[str, Any]:
        """Everything the guard knows except the snapshot models themselves, which are named by their
        version (``None``: the model it started from): what :meth:`restore` needs to rebuild it.

        >>> guard = DriftGuard(min_labels=5)
        >>> guard.remember({"w": 1}, version=3)
        >>> _ = guard.observe(learner_error=True)
        >>> again = DriftGuard.restore(guard.state(), load=lambda version: {"w": version})
        >>> again.n_labels, again._snaps[0].version, again._snaps[0].model
        (1, 3, {'w': 3})
        """
        out = {k: v for k, v in self.__dict__.items() if k not in ("_snaps", "_pinned", "_errors", "_since")}
        out["_errors"] = list(self._errors)
        out["_since"] = list(self._since)
        out["_snaps"] = [(s.at_label, s.version) for s in self._snaps]
        out["_pinned"] = None if self._pinned is None else (self._pinned.at_label, self._pinned.version)
        return out

    @classmethod
    def restore(cls, state: dict[str, Any], load: Callable[[int | None], Any]) -> DriftGuard:
        """The guard :meth:`state` described, its snapshot models loaded by version with ``load``."""
        guard = cls(detector=state["detector"], min_labels=state["min_labels"], window=state["window"],
                    snapshots=state["snapshots"], min_recovery=state["min_recovery"])
        plain = {k: v for k, v in state.items() if k not in ("_snaps", "_pinned", "_errors", "_since")}
        guard.__dict__.update(plain)
        guard._errors.extend(state["_errors"])
        guard._since.extend(state["_since"])
        for at_label, version in state["_snaps"]:
            guard._snaps.append(_Snapshot(at_label, version, load(version)))
        if state["_pinned"] is not None:
            at_label, version = state["_pinned"]
            found = [s for s in guard._snaps if (s.at_label, s.version) == (at_label, version)]
            guard._pinned = found[-1] if found else _Snapshot(at_label, version, load(version))
        return guard

    def status(self) -> dict[str, Any]:
        """Plain values for logs, alerts and the Models page."""
        return {"labels": self.n_labels, "drifts": self.drifts, "recoveries": self.recoveries,
                "pinned": self.pinned, "pinned_version": self.pinned_version, "drift_at": self.drift_at,
                "error_before": None if self.error_before is None else round(self.error_before, 4),
                "error_after": None if self.error_after is None else round(self.error_after, 4)}
