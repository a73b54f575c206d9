"""Stopping a running flow cleanly on Ctrl-C or SIGTERM.

A signal sets :data:`STOP`; every source of the flow is wrapped so that its next batch ends the input
instead of reading more. Bytewax then closes the epoch, writes what the steps still hold (windows,
counters, alerts) and returns, like at the end of a file. A second signal interrupts at once.

>>> from bytewax.testing import TestingSource
>>> src = StoppableSource(TestingSource([1, 2, 3]))
>>> src.list_parts()
['iterable']
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from datetime import datetime
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

__all__ = ["STOP", "StoppableSource", "install_stop_handlers", "ignore_late_signals"]

#: Set when the user asked the flow to stop.
STOP = threading.Event()

#: A second signal within this many seconds of the first is the same stop delivered twice, not a second one.
DOUBLE_SIGNAL_S = 1.0


class _StoppablePartition(StatefulSourcePartition[Any, Any]):
    def __init__(self, inner: StatefulSourcePartition[Any, Any]) -> None:
        self.inner = inner

    def next_batch(self) -> Any:
        if STOP.is_set():
            raise StopIteration
        return self.inner.next_batch()

    def next_awake(self) -> datetime | None:
        return None if STOP.is_set() else self.inner.next_awake()

    def snapshot(self) -> Any:
        return self.inner.snapshot()

    def close(self) -> None:
        self.inner.close()


class StoppableSource(FixedPartitionedSource[Any, Any]):
    """Wraps a fixed-partitioned source: same partitions and resume states, ends when :data:`STOP` is set."""

    def __init__(self, inner: FixedPartitionedSource[Any, Any]) -> None:
        self.inner = inner

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _StoppablePartition:
        return _StoppablePartition(self.inner.build_part(step_id, for_part, resume_state))


def install_stop_handlers() -> None:
    """First Ctrl-C / SIGTERM: finish cleanly (flush state, close the epoch); second: interrupt now."""
    STOP.clear()
    first = [0.0]

    def handle(signum: int, _frame: Any) -> None:
        if STOP.is_set():
            # the same stop delivered twice (``timeout``, ``make`` and systemd signal the parent and the
            # whole process group at once) is not a user asking again: only a later one interrupts
            if time.monotonic() - first[0] < DOUBLE_SIGNAL_S:
                return
            raise KeyboardInterrupt
        STOP.set()
        first[0] = time.monotonic()
        print("pulse: stopping (finishing the current batch; press Ctrl-C again to interrupt)", file=sys.stderr)

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def ignore_late_signals() -> None:
    """After a stop: the process is on its way out, so a repeated Ctrl-C / SIGTERM is ignored.

    Python restores the default handlers while it shuts down, and a signal delivered twice (``timeout``,
    ``make``) would otherwise kill a run that already wrote everything, with exit code -15.
    """
    if STOP.is_set():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
