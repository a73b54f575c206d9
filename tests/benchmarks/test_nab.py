"""The NAB scorer of ``benchmarks/nab.py`` on cases computed by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pulse_testkit import load_benchmark

ROOT = Path(__file__).resolve().parents[2]



nab = load_benchmark("nab")
STANDARD = nab.PROFILES["standard"]


def sig(y: float) -> float:
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def test_windows_are_ten_percent_of_the_series_split_between_anomalies_and_centred() -> None:
    # 2,000 points, 2 anomalies: 100 points each, 50 either side.
    assert nab.anomaly_windows(2000, [500, 1500]) == [(450, 550), (1450, 1550)]
    # An odd length is rounded down to an even one: 10 % of 150 / 1 = 15 -> 14, 7 either side.
    assert nab.anomaly_windows(150, [75]) == [(68, 82)]
    # Windows are clipped to the series.
    assert nab.anomaly_windows(1000, [10]) == [(0, 60)]
    assert nab.anomaly_windows(1000, []) == []


def test_null_detector_scores_zero_and_perfect_one_scores_hundred() -> None:
    n = 5000
    windows = nab.anomaly_windows(n, [1500, 3000, 4200])
    null = nab.raw_score(n, windows, [])
    assert null.raw == pytest.approx(-3.0) and null.misses == 3
    assert nab.normalised_score([null]) == 0.0
    perfect = nab.raw_score(n, windows, [lo for lo, _ in windows])
    assert perfect.raw == pytest.approx(3.0) and perfect.true_positives == 3
    assert nab.normalised_score([perfect]) == pytest.approx(100.0)


def test_a_false_positive_before_any_window_costs_a_fp() -> None:
    n = 5000
    windows = nab.anomaly_windows(n, [3000])  # (2750, 3250)
    s = nab.raw_score(n, windows, [1000])
    assert s.false_positives == 1
    assert s.raw == pytest.approx(-1.0 - 0.11)
    # Normalised: (raw - null) / (perfect - null) = -0.11 / 2.
    assert nab.normalised_score([s]) == pytest.approx(-5.5)


def test_false_positive_after_a_window_costs_the_sigmoid_of_its_distance() -> None:
    n = 5000
    windows = [(2750, 3250)]
    # Half a window length after the end: y = 250 / 500 = 0.5.
    s = nab.raw_score(n, windows, [2750, 3500])
    assert s.raw == pytest.approx(1.0 + 0.11 * sig(0.5))
    # Right after the end the cost is close to nothing; far after, the full A_FP.
    near = nab.raw_score(n, windows, [2750, 3251]).raw - 1.0
    far = nab.raw_score(n, windows, [2750, 4900]).raw - 1.0
    assert -0.01 < near < 0 and far == pytest.approx(-0.11)


def test_only_the_first_detection_in_a_window_counts_and_earlier_is_better() -> None:
    n = 5000
    windows = [(2750, 3250)]
    middle = nab.raw_score(n, windows, [3000])
    # y = -(3250 - 3000 + 1) / 501, credit sig(y) / sig(-1).
    assert middle.raw == pytest.approx(sig(-251 / 501) / sig(-1.0))
    assert nab.raw_score(n, windows, [3000, 3010, 2760]).raw == pytest.approx(
        sig(-491 / 501) / sig(-1.0))
    late = nab.raw_score(n, windows, [3240]).raw
    assert 0 < late < middle.raw < 1.0


def test_detections_in_the_probationary_period_are_ignored() -> None:
    n = 1000  # probation: the first 150 points
    assert nab.probation_length(n) == 150
    windows = nab.anomaly_windows(n, [100])  # (50, 150): all but its last point in probation
    assert nab.raw_score(n, windows, [60]).raw == pytest.approx(-1.0)
    assert nab.raw_score(n, windows, [60], probation=0).raw > 0.9
    assert nab.raw_score(n, windows, [400]).false_positives == 1


def test_profiles_weigh_false_positives_and_misses() -> None:
    n = 5000
    windows = nab.anomaly_windows(n, [3000])
    low_fp = nab.raw_score(n, windows, [1000], profile=nab.PROFILES["reward_low_fp"])
    assert low_fp.raw == pytest.approx(-1.0 - 0.22)
    low_fn = nab.raw_score(n, windows, [], profile=nab.PROFILES["reward_low_fn"])
    assert low_fn.raw == pytest.approx(-2.0) and nab.normalised_score([low_fn]) == 0.0


def test_a_corpus_is_normalised_on_its_sums() -> None:
    a = nab.raw_score(1000, nab.anomaly_windows(1000, [500]), [450])  # perfect: +1
    b = nab.raw_score(1000, nab.anomaly_windows(1000, [500, 800]), [])  # null: -2
    # raw 1 - 2 = -1, null -3, perfect 3: 100 * 2 / 6.
    assert nab.normalised_score([a, b]) == pytest.approx(100 * 2 / 6)


def test_the_worked_example_of_a_public_reimplementation() -> None:
    # 180 points, anomalies at 24, 79, 149 (windows of 6 points), detections at 17, 24, 95, 149: one FP
    # before any window, two TPs at 4/7 from the end of their windows, one FP after a window, one miss.
    # The R package otsad's test of its NAB scorer expects 0.5869384 for the same case.
    s = nab.raw_score(180, nab.anomaly_windows(180, [24, 79, 149]), [17, 24, 95, 149], probation=0)
    expected = -0.11 + 2 * sig(-4 / 7) / sig(-1.0) + 0.11 * sig(13 / 6) - 1.0
    assert s.raw == pytest.approx(expected) and round(s.raw, 4) == 0.5869
