"""The Numenta Anomaly Benchmark's scoring of a streaming detector, as pure functions.

Written from the published description (Lavin & Ahmad, "Evaluating Real-time Anomaly Detection
Algorithms - the Numenta Anomaly Benchmark", ICMLA 2015; Ahmad et al., Neurocomputing 2017), not from
NAB's code:

* each labelled anomaly gets a window centred on it, ``window_fraction`` (10 %) of the series' length
  divided by the number of anomalies (rounded down to an even number of points); overlapping windows merge;
* the first detection inside a window is a true positive worth ``A_TP * sigma(y) / sigma(-1)``, where
  ``y`` is its relative position (-1 at the window's first point, close to 0 at its last) and
  ``sigma(y) = 2 / (1 + e^(5y)) - 1`` is the scaled sigmoid: early detections earn almost all the credit;
  later detections in the same window count for nothing;
* a window without any detection costs ``A_FN``;
* a detection outside every window is a false positive costing ``A_FP``; after a window its cost is
  ``A_FP * sigma(y)`` with ``y`` the distance past the window's end in window lengths, so a late
  detection just after a window costs little and one far from any window costs the full ``A_FP``;
* detections inside the probationary period (the first 15 % of the series) are not scored;
* a detector's raw score over a corpus is the sum over its series; normalised, 0 is the detector that
  never fires (raw ``-A_FN`` per window) and 100 the perfect one (``A_TP`` per window).

Profiles: ``standard`` (A_TP 1, A_FP 0.11, A_FN 1), ``reward_low_fp`` (A_FP 0.22), ``reward_low_fn``
(A_FN 2).

>>> windows = anomaly_windows(1000, [500])
>>> windows
[(450, 550)]
>>> raw_score(1000, windows, [450]).raw, raw_score(1000, windows, []).raw
(1.0, -1.0)
>>> round(normalised_score([raw_score(1000, windows, [520, 900])]), 2)
77.21
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "PROFILES",
    "Profile",
    "SeriesScore",
    "anomaly_windows",
    "normalised_score",
    "probation_length",
    "raw_score",
    "scaled_sigmoid",
]


@dataclass(frozen=True)
class Profile:
    """Weights of an application profile (all positive; false positives and misses subtract)."""

    name: str
    a_tp: float
    a_fp: float
    a_fn: float


PROFILES = {
    "standard": Profile("standard", 1.0, 0.11, 1.0),
    "reward_low_fp": Profile("reward_low_fp", 1.0, 0.22, 1.0),
    "reward_low_fn": Profile("reward_low_fn", 1.0, 0.11, 2.0),
}


def scaled_sigmoid(y: float) -> float:
    """``2 / (1 + e^(5y)) - 1``: 0.987 at y = -1, 0 at y = 0, -0.987 at y = 1, and -1 beyond y = 3.

    >>> round(scaled_sigmoid(-1.0), 5), scaled_sigmoid(0.0), scaled_sigmoid(4.0)
    (0.98661, 0.0, -1.0)
    """
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def probation_length(n: int, fraction: float = 0.15) -> int:
    """Points at the start of a series whose detections are not scored (the detector is learning)."""
    return int(math.floor(fraction * n))


def anomaly_windows(n: int, anomalies: Iterable[int], window_fraction: float = 0.10) -> list[tuple[int, int]]:
    """Windows ``(first, last)`` (inclusive point indices) centred on the labelled anomalies.

    >>> anomaly_windows(180, [24, 79, 149])
    [(21, 27), (76, 82), (146, 152)]
    >>> anomaly_windows(100, [50, 52])  # overlapping windows merge
    [(48, 54)]
    """
    points = sorted({int(a) for a in anomalies if 0 <= int(a) < n})
    if not points or n <= 0:
        return []
    length = int(math.floor(n * window_fraction / len(points)))
    if length % 2:
        length -= 1
    half = length // 2
    merged: list[tuple[int, int]] = []
    for a in points:
        lo, hi = max(0, a - half), min(n - 1, a + half)
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


@dataclass(frozen=True)
class SeriesScore:
    """One series' raw score and its parts under one profile."""

    raw: float
    windows: int
    true_positives: int
    false_positives: int
    misses: int
    profile: Profile

    @property
    def null(self) -> float:
        """Raw score of a detector that never fires."""
        return -self.profile.a_fn * self.windows

    @property
    def perfect(self) -> float:
        """Raw score of a detector that fires at the first point of every window and nowhere else."""
        return self.profile.a_tp * self.windows


def raw_score(
    n: int,
    windows: Sequence[tuple[int, int]],
    detections: Iterable[int],
    profile: Profile = PROFILES["standard"],
    probation: int | None = None,
) -> SeriesScore:
    """Score the detections (point indices) of one series of ``n`` points against its windows.

    ``probation`` defaults to :func:`probation_length` (15 % of the series); 0 scores every detection.

    >>> s = raw_score(180, [(21, 27), (76, 82), (146, 152)], [17, 24, 95, 149], probation=0)
    >>> round(s.raw, 4), s.true_positives, s.false_positives, s.misses
    (0.5869, 2, 2, 1)
    """
    probation = probation_length(n) if probation is None else probation
    wins = sorted(windows)
    first_hit: dict[int, int] = {}
    fp_cost = 0.0
    fps = 0
    for d in sorted({int(d) for d in detections}):
        if d < probation or d < 0 or d >= n:
            continue
        inside = next((k for k, (lo, hi) in enumerate(wins) if lo <= d <= hi), None)
        if inside is not None:
            first_hit.setdefault(inside, d)
            continue
        fps += 1
        before = [w for w in wins if w[1] < d]
        if not before:
            fp_cost -= profile.a_fp
            continue
        lo, hi = before[-1]
        y = abs(hi - d) / max(hi - lo, 1)
        fp_cost += profile.a_fp * scaled_sigmoid(y)
    tp_score = 0.0
    for k, d in first_hit.items():
        lo, hi = wins[k]
        y = -(hi - d + 1) / (hi - lo + 1)
        tp_score += profile.a_tp * scaled_sigmoid(y) / scaled_sigmoid(-1.0)
    misses = len(wins) - len(first_hit)
    raw = tp_score + fp_cost - profile.a_fn * misses
    return SeriesScore(raw, len(wins), len(first_hit), fps, misses, profile)


def normalised_score(scores: Iterable[SeriesScore]) -> float:
    """The corpus score: raw scores summed over series, 0 for the null detector and 100 for the perfect one.

    >>> w = anomaly_windows(1000, [300, 700])
    >>> normalised_score([raw_score(1000, w, [])]), normalised_score([raw_score(1000, w, [lo for lo, _ in w])])
    (0.0, 100.0)
    """
    scores = list(scores)
    raw = sum(s.raw for s in scores)
    null = sum(s.null for s in scores)
    perfect = sum(s.perfect for s in scores)
    if perfect == null:
        return 0.0
    return 100.0 * (raw - null) / (perfect - null)
