"""Flow bookkeeping per source: offered = accepted + dead letters + duplicates, written as absolute values.

>>> logic = CounterLogic(flush_seconds=0.0, resume_state=None)
>>> for outcome in ("accepted", "accepted", "duplicate", "dead_letters"):
...     _ = logic.on_item(("file:a", outcome))
>>> logic.on_notify()[0]
[('stats', 'file:a', {'offered': 4, 'accepted': 2, 'dead_letters': 1, 'duplicates': 1})]
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.operators import StatefulLogic

__all__ = ["OUTCOMES", "CounterLogic"]

OUTCOMES = ("accepted", "dead_letters", "duplicates")


class CounterLogic(StatefulLogic[tuple[str, str], tuple[Any, ...], dict[str, Any]]):
    """Items are ``(source, outcome)``, outcome one of :data:`OUTCOMES` (or ``duplicate``)."""

    def __init__(self, flush_seconds: float, resume_state: dict[str, Any] | None) -> None:
        self.flush = timedelta(seconds=flush_seconds)
        state = resume_state or {"source": None, "counts": dict.fromkeys(OUTCOMES, 0)}
        self.source: str | None = state["source"]
        self.counts: dict[str, int] = state["counts"]
        self._due: datetime | None = None

    def on_item(self, value: tuple[str, str]) -> tuple[list[tuple[Any, ...]], bool]:
        self.source = value[0]
        outcome = "duplicates" if value[1] == "duplicate" else value[1]
        self.counts[outcome] += 1
        if self._due is None:
            self._due = datetime.now(UTC) + self.flush
        return [], StatefulLogic.RETAIN

    def _emit(self) -> list[tuple[Any, ...]]:
        self._due = None
        c = self.counts
        offered = c["accepted"] + c["dead_letters"] + c["duplicates"]
        return [("stats", self.source, {"offered": offered, **c})]

    def on_notify(self) -> tuple[list[tuple[Any, ...]], bool]:
        return self._emit(), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[list[tuple[Any, ...]], bool]:
        return self._emit(), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return self._due

    def snapshot(self) -> dict[str, Any]:
        return {"source": self.source, "counts": dict(self.counts)}
