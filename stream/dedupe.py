"""De-duplication by record identity: the first record with an id passes, later ones are marked duplicates.

Ids are remembered for ``ttl_seconds`` of system time (long enough for any at-least-once redelivery),
then forgotten so an endless stream keeps bounded state.

>>> logic = DedupeLogic(ttl_seconds=60.0, resume_state=None)
>>> [dup for dup, _ in logic.on_item(("src", "t:1", None))[0]]
[False]
>>> [dup for dup, _ in logic.on_item(("src", "t:1", None))[0]]
[True]
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.operators import StatefulLogic

__all__ = ["DedupeLogic"]


class DedupeLogic(StatefulLogic[Any, tuple[bool, Any], dict[str, float]]):
    """Per-shard state: record key -> system time first seen. Items are ``(source, key, record)``."""

    def __init__(self, ttl_seconds: float, resume_state: dict[str, float] | None) -> None:
        self.ttl = ttl_seconds
        self.seen: dict[str, float] = resume_state or {}
        self._next_sweep = datetime.now(UTC) + timedelta(seconds=max(ttl_seconds / 4, 1.0))

    def on_item(self, value: Any) -> tuple[list[tuple[bool, Any]], bool]:
        key = value[1]
        if key in self.seen:
            return [(True, value)], StatefulLogic.RETAIN
        self.seen[key] = time.time()
        return [(False, value)], StatefulLogic.RETAIN

    def on_notify(self) -> tuple[list[tuple[bool, Any]], bool]:
        cutoff = time.time() - self.ttl
        self.seen = {k: t for k, t in self.seen.items() if t >= cutoff}
        self._next_sweep = datetime.now(UTC) + timedelta(seconds=max(self.ttl / 4, 1.0))
        return [], StatefulLogic.DISCARD if not self.seen else StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return self._next_sweep

    def snapshot(self) -> dict[str, float]:
        return dict(self.seen)
