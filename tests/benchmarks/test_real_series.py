"""The real series of ``benchmarks/real_series.py``: built from ``../shared/data`` with their text-based labels."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pulse_testkit import load_benchmark

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"



real = load_benchmark("real_series")


def _onsets(series: object) -> list[str]:
    return [datetime.fromtimestamp(series.start + i * real.STEP_S, UTC).strftime("%m-%d %H:%M")  # type: ignore[attr-defined]
            for i in series.labels]  # type: ignore[attr-defined]


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not here: the real series cannot be built")
def test_real_series_and_their_labels() -> None:
    series = {s.name: s for s in real.load_all(DATA)}
    assert set(series) == {"airline:Delta", "airline:Southwest", "airline:US Airways", "airline:United",
                           "airline:Virgin America", "apple_dfe", "sanders:apple"}
    for s in series.values():
        assert len(s.counts) > 1000 and sum(s.counts) > 400
        assert s.negatives is not None and all(0 <= a <= b for a, b in zip(s.negatives, s.counts, strict=True))
        assert len(s.labels) == len(s.notes)
        frame = s.frame()
        assert frame.columns[:2] == ["timestamp", "value"] and frame.height == len(s.counts)
    # The winter storms of 21-23 February 2015: a disruption day for three airlines, none for the others.
    assert [o[:5] for o in _onsets(series["airline:United"])] == ["02-22"]
    assert [o[:5] for o in _onsets(series["airline:US Airways"])] == ["02-22"]
    assert [o[:5] for o in _onsets(series["airline:Delta"])] == ["02-22"]
    assert series["airline:Southwest"].labels == [] and series["airline:Virgin America"].labels == []
    # Two retweet cascades in the Apple set, and the iPhone 4S sales announcement for Sanders' @apple.
    assert _onsets(series["apple_dfe"]) == ["12-04 20:35", "12-09 01:20"]
    assert _onsets(series["sanders:apple"]) == ["10-17 13:05"]


def test_no_data_no_series(tmp_path: Path) -> None:
    assert real.load_all(tmp_path) == []
