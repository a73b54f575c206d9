"""The flow raises the young-generation garbage-collection threshold once, and never lowers a higher one."""

from __future__ import annotations

import gc

from stream.steps import GC_YOUNG_THRESHOLD, tune_gc


def test_tune_gc_raises_a_low_threshold_and_keeps_higher_or_disabled_ones() -> None:
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        tune_gc()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)
        gc.set_threshold(GC_YOUNG_THRESHOLD * 5, 3, 4)
        tune_gc()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD * 5, 3, 4)
        gc.set_threshold(0, 10, 10)  # collection switched off by whoever runs the flow: left off
        tune_gc()
        assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*saved)
