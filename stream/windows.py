"""Event-time windows per brand x channel: per-minute counters with hour and day roll-ups.

Every window's counters are kept whole in state and written to Redis as absolute values (``HSET``),
so a replay or a resume after a crash rewrites the same numbers instead of adding them twice. A record
behind the key's watermark (newest event time minus the allowed lateness) is counted ``late`` and still
updates every window it belongs to; only once its minute window has left the horizon (and so is final)
is it reported as a late record for the dead-letter stream.

Keyed steps upstream process an epoch's items grouped by key, so records reach this step slightly out
of order even from a sorted file. Lateness and finality are therefore judged against the watermark as
of the last flush, never against records of the batch being processed.

Input events (tuples):

- ``("mention", brand, channel, ts_ms, author, from_brand, intent, sentiment, mention_id, keywords, topic)``
- ``("response", brand, channel, mention_id, mention_ts_ms, reply_ts_ms, response_ms, retract)``
- ``("unanswered", brand, channel, mention_id, mention_ts_ms, sign)``

Output: ``("window", brand, channel, gran, start_ms, counters, new_authors, first)`` (``first``: the window
has not been written before, so the sink also sets its expiry and indexes it),
``("late", brand, channel, mention_id, ts_ms)``, and once per minute window, when the watermark has
passed its end plus the allowed lateness (or at the end of a bounded input),
``("closed", brand, channel, start_ms, mentions, negative, sample_ids, top_terms, topics)`` for spike
detection, ``topics`` mapping each topic (the mention's department) to ``(mentions, negative)``.

>>> logic = WindowLogic(horizon_ms=3_600_000, lateness_ms=60_000, flush_seconds=0.0, resume_state=None)
>>> _ = logic.on_item(("mention", "acme", "twitter", 1704103200000, "bob", False, "query", "negative", "t:1",
...                    ("outage",), "service"))
>>> out, _ = logic.on_notify()
>>> [(g, c["mentions"], c["queries"], c["negative"], c["authors"]) for _, _, _, g, _, c, _, _ in out]
[('d', 1, 1, 1, 1), ('h', 1, 1, 1, 1), ('m', 1, 1, 1, 1)]
>>> logic.on_eof()[0][-1]
('closed', 'acme', 'twitter', 1704103200000, 1, 1, ['t:1'], ['outage'], {'service': (1, 1)})
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.operators import StatefulLogic

from stream.keys import GRANULARITIES

__all__ = ["COUNTERS", "WindowLogic", "window_key"]

#: The counters of every window hash (ARCHITECTURE.md, "Redis layout"), plus ``authors`` and ``late``.
COUNTERS = ("mentions", "queries", "comments", "negative", "neutral", "positive", "replies",
            "response_ms_sum", "response_count", "unanswered", "authors", "late")

_GRANS = tuple(GRANULARITIES.items())
#: What a closed minute carries for the spike detector: a few mention ids and the commonest keywords.
_SAMPLES = 10
_TERMS = 8


def window_key(brand: str, channel: str) -> str:
    """The Bytewax state key of a brand x channel."""
    return f"{brand}\t{channel}"


def _new_counters() -> dict[str, int]:
    return dict.fromkeys(COUNTERS, 0)


class WindowLogic(StatefulLogic[tuple[Any, ...], tuple[Any, ...], dict[str, Any]]):
    """State of one brand x channel: its open windows, their authors and the watermark."""

    def __init__(self, horizon_ms: int, lateness_ms: int, flush_seconds: float,
                 resume_state: dict[str, Any] | None) -> None:
        self.horizon_ms = horizon_ms
        self.lateness_ms = lateness_ms
        self.flush = timedelta(seconds=flush_seconds)
        state = resume_state or {"w": {}, "a": {}, "n": {}, "d": [], "hw": 0, "bc": None, "wm": 0, "fin": {},
                                 "wr": set(), "s": {}, "t": {}, "cl": -1, "tp": {}}
        self.windows: dict[tuple[str, int], dict[str, int]] = state["w"]
        self.authors: dict[tuple[str, int], set[str]] = state["a"]
        self.new_authors: dict[tuple[str, int], list[str]] = state["n"]
        self.dirty: set[tuple[str, int]] = set(state["d"])
        self.high_water: int = state["hw"]
        self.brand_channel: tuple[str, str] | None = state["bc"]
        #: Newest event time as of the last flush (the watermark), and per granularity the end before
        #: which windows are final.
        self.watermark: int = state["wm"]
        self.final_before: dict[str, int] = state["fin"]
        #: Windows already written once (their expiry and index entry are set).
        self.written: set[tuple[str, int]] = state["wr"]
        #: Per open minute: sample mention ids (negative first) and keyword counts; and the newest minute
        #: start already reported closed.
        self.samples: dict[tuple[int, bool], list[str]] = state["s"]
        self.terms: dict[int, Counter[str]] = state["t"]
        self.closed_until: int = state["cl"]
        #: Per open minute: topic -> [mentions, negative] (topic series for spike detection).
        self.topics: dict[int, dict[str, list[int]]] = state["tp"]
        self._due: datetime | None = None

    def _mark(self, key: tuple[str, int]) -> None:
        self.dirty.add(key)
        if self._due is None:
            self._due = datetime.now(UTC) + self.flush

    def _window(self, gran: str, length: int, ts_ms: int) -> tuple[tuple[str, int], dict[str, int]] | None:
        key = (gran, ts_ms - ts_ms % length)
        counters = self.windows.get(key)
        if counters is None:
            if key[1] + length <= self.final_before.get(gran, -1):
                return None  # already final and forgotten
            counters = self.windows[key] = _new_counters()
        return key, counters

    def on_item(self, value: tuple[Any, ...]) -> tuple[list[tuple[Any, ...]], bool]:
        kind, brand, channel = value[0], value[1], value[2]
        if self.brand_channel is None:
            self.brand_channel = (brand, channel)
        if kind == "mention":
            return self._on_mention(value), StatefulLogic.RETAIN
        if kind == "response":
            _, _, _, _, _, reply_ts, response_ms, retract = value
            self._add(reply_ts, (("response_ms_sum", response_ms), ("response_count", 1)))
            if retract is not None:
                self._add(retract[0], (("response_ms_sum", -retract[1]), ("response_count", -1)))
        elif kind == "unanswered":
            self._add(value[4], (("unanswered", value[5]),))
        return [], StatefulLogic.RETAIN

    def _add(self, ts_ms: int, updates: tuple[tuple[str, int], ...]) -> None:
        for gran, length in _GRANS:
            found = self._window(gran, length, ts_ms)
            if found is None:
                continue
            key, counters = found
            for name, delta in updates:
                counters[name] += delta
            self._mark(key)

    def _on_mention(self, value: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        _, brand, channel, ts_ms, author, from_brand, intent, sentiment, mention_id, keywords, topic = value
        is_late = ts_ms < self.watermark - self.lateness_ms
        if ts_ms > self.high_water:
            self.high_water = ts_ms
        minute = self._window("m", 60_000, ts_ms)
        if minute is None:
            return [("late", brand, channel, mention_id, ts_ms)]
        if not from_brand:
            start = minute[0][1]
            # Negative mentions first: they are what an incident manager opens.
            samples = self.samples.setdefault((start, sentiment == "negative"), [])
            if len(samples) < _SAMPLES:
                samples.append(mention_id)
            if keywords:
                self.terms.setdefault(start, Counter()).update(keywords)
            counts = self.topics.setdefault(start, {}).setdefault(topic, [0, 0])
            counts[0] += 1
            counts[1] += sentiment == "negative"
        for gran, length in _GRANS:
            found = minute if gran == "m" else self._window(gran, length, ts_ms)
            if found is None:
                continue
            key, c = found
            if from_brand:
                c["replies"] += 1
            else:
                c["mentions"] += 1
                c["queries" if intent == "query" else "comments"] += 1
                c[sentiment] += 1
                if is_late:
                    c["late"] += 1
                seen = self.authors.setdefault(key, set())
                if author not in seen:
                    seen.add(author)
                    c["authors"] += 1
                    self.new_authors.setdefault(key, []).append(author)
            self._mark(key)
        return []

    def _close_minutes(self, final: bool) -> list[tuple[Any, ...]]:
        """Report each minute once its end is behind the watermark by the allowed lateness."""
        assert self.brand_channel is not None
        brand, channel = self.brand_channel
        horizon = self.watermark - self.lateness_ms
        out = []
        for gran, start in sorted(k for k in self.windows if k[0] == "m"):
            if start <= self.closed_until or (not final and start + 60_000 > horizon):
                continue
            c = self.windows[(gran, start)]
            terms = self.terms.pop(start, Counter())
            samples = self.samples.pop((start, True), []) + self.samples.pop((start, False), [])
            topics = {t: (n, neg) for t, (n, neg) in sorted(self.topics.pop(start, {}).items())}
            out.append(("closed", brand, channel, start, c["mentions"], c["negative"], samples[:_SAMPLES],
                        [t for t, _ in terms.most_common(_TERMS)], topics))
            self.closed_until = start
        return out

    def _emit(self, final: bool = False) -> list[tuple[Any, ...]]:
        if self.brand_channel is None:
            return []
        brand, channel = self.brand_channel
        out = [
            ("window", brand, channel, gran, start, dict(self.windows[(gran, start)]),
             self.new_authors.pop((gran, start), []), (gran, start) not in self.written)
            for gran, start in sorted(self.dirty)
        ]
        self.written.update(self.dirty)
        self.dirty.clear()
        self._due = None
        # Windows that ended before the horizon are final: forget them (they are written).
        self.watermark = self.high_water
        out.extend(self._close_minutes(final))
        for gran, length in _GRANS:
            cutoff = self.watermark - self.horizon_ms - length * (gran != "m")
            self.final_before[gran] = max(self.final_before.get(gran, -1), cutoff - cutoff % length)
        for (gran, start) in list(self.windows):
            if start + GRANULARITIES[gran] <= self.final_before[gran]:
                del self.windows[(gran, start)]
                self.authors.pop((gran, start), None)
                self.written.discard((gran, start))
        return out

    def on_notify(self) -> tuple[list[tuple[Any, ...]], bool]:
        return self._emit(), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[list[tuple[Any, ...]], bool]:
        return self._emit(final=True), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return self._due

    def snapshot(self) -> dict[str, Any]:
        return {
            "w": {k: dict(v) for k, v in self.windows.items()},
            "a": {k: set(v) for k, v in self.authors.items()},
            "n": {k: list(v) for k, v in self.new_authors.items()},
            "d": sorted(self.dirty),
            "hw": self.high_water,
            "bc": self.brand_channel,
            "wm": self.watermark,
            "fin": dict(self.final_before),
            "wr": set(self.written),
            "s": {k: list(v) for k, v in self.samples.items()},
            "t": {k: Counter(v) for k, v in self.terms.items()},
            "cl": self.closed_until,
            "tp": {k: {t: list(v) for t, v in d.items()} for k, d in self.topics.items()},
        }
