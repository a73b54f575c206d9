"""Event-time windows per brand x channel: per-minute counters with hour and day roll-ups.

Every window's counters are kept whole in state and written to Redis as absolute values of this run
(fields ``name@run``, summed over runs by the readers), so a replay or a resume after a crash rewrites
the same numbers instead of adding them twice, while another run (another input) adds its own. A record
behind the key's watermark (newest event time minus the allowed lateness) is counted ``late`` and still
updates every window it belongs to; only once its minute window has left the horizon (and so is final)
is it reported as a late record for the dead-letter stream.

Items of one brand x channel reach this step in input order (no keyed step upstream reorders them), and
every decision here (late, final, a minute closed, a query's SLA passed) is made per item against the
key's own newest event time: the same input gives the same outputs, however fast it runs. Only *when*
window counters are flushed to Redis follows the wall clock, and they are absolute values.

Input events (tuples):

- ``("mention", brand, channel, ts_ms, author, from_brand, intent, sentiment, mention_id, keywords, topic)``

Output: once per flush and brand x channel with windows changed since the last one, ``("windows", brand,
channel, [(gran, start_ms, counters, new_authors, first), ...])`` (``first``: this run has not written the
window before, so the sink also sets its expiry and indexes it; one item for them all, not one per window),
``("late", brand, channel, mention_id, ts_ms)``, ``("watermark", brand, channel, high_water_ms)`` after a
flush that moved the key's confirmed newest event time (what event-time retention follows, :mod:`stream.retention`),
``("sla", mention_id)`` once a customer query's SLA has
passed in event time (or its input ended; :mod:`stream.replies` then decides whether it was answered), and
once per minute window, when the newest event time has passed its end plus the allowed lateness (or at
the end of a bounded input), ``("closed", brand, channel, start_ms, mentions, negative, sample_ids,
top_terms, topics)`` for spike detection, ``topics`` mapping each topic (the mention's department) to
``(mentions, negative)``.

>>> logic = WindowLogic(horizon_ms=3_600_000, lateness_ms=60_000, sla_ms=3_600_000, flush_seconds=0.0,
...                     resume_state=None)
>>> _ = logic.on_item(("mention", "acme", "twitter", 1704103200000, "bob", False, "query", "negative", "t:1",
...                    ("outage",), "service"))
>>> out, _ = logic.on_notify()
>>> (kind, brand, channel, windows), watermark = out
>>> [(g, c["mentions"], c["queries"], c["negative"], c["authors"]) for g, _, c, _, _ in windows]
[('d', 1, 1, 1, 1), ('h', 1, 1, 1, 1), ('m', 1, 1, 1, 1)]
>>> watermark
('watermark', 'acme', 'twitter', 1704103200000)
>>> [o for o in logic.on_eof()[0] if o[0] != "windows"]
[('closed', 'acme', 'twitter', 1704103200000, 1, 1, ['t:1'], ['outage'], {'service': (1, 1)}), ('sla', 't:1')]
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.operators import StatefulLogic

from stream.keys import GRANULARITIES

__all__ = ["COUNTERS", "RUN_COUNTERS", "WindowLogic", "window_key"]

#: What the flow counts per window and run (written as ``name@run``).
RUN_COUNTERS = ("mentions", "queries", "comments", "negative", "neutral", "positive", "replies", "authors", "late")
#: Every counter of a window hash (ARCHITECTURE.md, "Redis layout"): the run counters, and those reply
#: matching maintains across runs (:mod:`stream.replies`).
COUNTERS = (*RUN_COUNTERS, "response_ms_sum", "response_count", "answered", "unanswered", "new_authors")

_GRANS = tuple(GRANULARITIES.items())
#: What a closed minute carries for the spike detector: a few mention ids and the commonest keywords.
_SAMPLES = 10
_TERMS = 8


def window_key(brand: str, channel: str) -> str:
    """The Bytewax state key of a brand x channel."""
    return f"{brand}\t{channel}"


def _new_counters() -> dict[str, int]:
    return dict.fromkeys(RUN_COUNTERS, 0)


class WindowLogic(StatefulLogic[tuple[Any, ...], tuple[Any, ...], dict[str, Any]]):
    """State of one brand x channel: its open windows, their authors, its queries awaiting their SLA."""

    def __init__(self, horizon_ms: int, lateness_ms: int, sla_ms: int, flush_seconds: float,
                 resume_state: dict[str, Any] | None, max_jump_ms: int = 30 * 86_400_000) -> None:
        self.horizon_ms = horizon_ms
        self.max_jump_ms = max_jump_ms
        self.lateness_ms = lateness_ms
        self.sla_ms = sla_ms
        self.flush = timedelta(seconds=flush_seconds)
        state = resume_state or {"w": {}, "a": {}, "n": {}, "d": [], "hw": 0, "bc": None, "fin": {},
                                 "wr": set(), "s": {}, "t": {}, "cl": -1, "tp": {}, "q": [], "u": [], "j": None, "we": 0}
        self.windows: dict[tuple[str, int], dict[str, int]] = state["w"]
        self.authors: dict[tuple[str, int], set[str]] = state["a"]
        self.new_authors: dict[tuple[str, int], list[str]] = state["n"]
        self.dirty: set[tuple[str, int]] = set(state["d"])
        #: Newest event time of this brand x channel (its watermark), and per granularity the end before
        #: which windows are final.
        self.high_water: int = state["hw"]
        self.brand_channel: tuple[str, str] | None = state["bc"]
        self.final_before: dict[str, int] = state["fin"]
        #: Windows this run has written once (their expiry and index entry are set).
        self.written: set[tuple[str, int]] = state["wr"]
        #: Per open minute: sample mention ids (negative first) and keyword counts; and the newest minute
        #: start already reported closed.
        self.samples: dict[tuple[int, bool], list[str]] = state["s"]
        self.terms: dict[int, Counter[str]] = state["t"]
        self.closed_until: int = state["cl"]
        #: Per open minute: topic -> [mentions, negative] (topic series for spike detection).
        self.topics: dict[int, dict[str, list[int]]] = state["tp"]
        #: Queries whose SLA has not passed yet, oldest first: (ts, mention id).
        self.queries: deque[tuple[int, str]] = deque(tuple(q) for q in state["q"])
        #: Starts of the minutes not reported closed yet (a heap), so closing costs nothing per empty minute.
        self.unclosed: list[int] = list(state["u"])
        #: A jump of the event time further than ``max_jump_ms`` ahead waits for a second record to confirm it:
        #: one record dated years ahead must not make every window of the key final.
        self.jump: int | None = state["j"]
        #: The newest event time already reported downstream as a ``watermark`` item.
        self.watermark_sent: int = state.get("we", 0)
        self._due: datetime | None = None

    def _mark(self, key: tuple[str, int]) -> None:
        self.dirty.add(key)
        if self._due is None:
            self._due = datetime.now(UTC) + self.flush

    def _window(self, gran: str, length: int, ts_ms: int) -> tuple[tuple[str, int], dict[str, int]] | None:
        key = (gran, ts_ms - ts_ms % length)
        if key[1] + length <= self.final_before.get(gran, -1):
            return None  # final: written, and forgotten at the next flush
        counters = self.windows.get(key)
        if counters is None:
            counters = self.windows[key] = _new_counters()
            if gran == "m" and key[1] > self.closed_until:
                heapq.heappush(self.unclosed, key[1])
        return key, counters

    def on_item(self, value: tuple[Any, ...]) -> tuple[list[tuple[Any, ...]], bool]:
        _, brand, channel, ts_ms, author, from_brand, intent, sentiment, mention_id, keywords, topic = value
        if self.brand_channel is None:
            self.brand_channel = (brand, channel)
        out: list[tuple[Any, ...]] = []
        is_late = ts_ms < self.high_water - self.lateness_ms
        minute = self._window("m", 60_000, ts_ms)
        if minute is None:
            out.append(("late", brand, channel, mention_id, ts_ms))
        else:
            self._count(minute, value, is_late)
            if not from_brand and intent == "query":
                self.queries.append((ts_ms, mention_id))
        if ts_ms > self.high_water:
            if self.high_water and ts_ms - self.high_water > self.max_jump_ms:
                if self.jump is None or abs(ts_ms - self.jump) > self.max_jump_ms:
                    self.jump = ts_ms  # unconfirmed: it moves nothing yet
                    return out, StatefulLogic.RETAIN
                ts_ms, self.jump = max(ts_ms, self.jump), None
            self.high_water = ts_ms
            self._advance(out, final=False)
        return out, StatefulLogic.RETAIN

    def _count(self, minute: tuple[tuple[str, int], dict[str, int]], value: tuple[Any, ...], is_late: bool) -> None:
        _, _, _, ts_ms, author, from_brand, intent, sentiment, mention_id, keywords, topic = value
        if not from_brand:
            start = minute[0][1]
            # Negative mentions first: they are what an incident manager opens.
            # (get before insert: no empty list, Counter or dict is built for a minute that already has one)
            samples = self.samples.get((start, sentiment == "negative"))
            if samples is None:
                samples = self.samples[(start, sentiment == "negative")] = []
            if len(samples) < _SAMPLES:
                samples.append(mention_id)
            if keywords:
                terms = self.terms.get(start)
                if terms is None:
                    terms = self.terms[start] = Counter()
                terms.update(keywords)
            topics = self.topics.get(start)
            if topics is None:
                topics = self.topics[start] = {}
            counts = topics.get(topic)
            if counts is None:
                counts = topics[topic] = [0, 0]
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
                seen = self.authors.get(key)
                if seen is None:
                    seen = self.authors[key] = set()
                if author not in seen:
                    seen.add(author)
                    c["authors"] += 1
                    self.new_authors.setdefault(key, []).append(author)
            self._mark(key)

    def _advance(self, out: list[tuple[Any, ...]], final: bool) -> None:
        """What the newest event time decides: closed minutes, passed SLAs, final windows."""
        out.extend(self._close_minutes(final))
        while self.queries and (final or self.queries[0][0] + self.sla_ms < self.high_water):
            out.append(("sla", self.queries.popleft()[1]))
        for gran, length in _GRANS:
            cutoff = self.high_water - self.horizon_ms - length * (gran != "m")
            self.final_before[gran] = max(self.final_before.get(gran, -1), cutoff - cutoff % length)

    def _close_minutes(self, final: bool) -> list[tuple[Any, ...]]:
        """Report each minute once its end is behind the newest event time by the allowed lateness."""
        assert self.brand_channel is not None
        brand, channel = self.brand_channel
        horizon = self.high_water - self.lateness_ms
        out = []
        while self.unclosed and (final or self.unclosed[0] + 60_000 <= horizon):
            start = heapq.heappop(self.unclosed)
            c = self.windows[("m", start)]
            terms = self.terms.pop(start, None)
            samples = self.samples.pop((start, True), []) + self.samples.pop((start, False), [])
            topics = {t: (n, neg) for t, (n, neg) in sorted(self.topics.pop(start, {}).items())}
            out.append(("closed", brand, channel, start, c["mentions"], c["negative"], samples[:_SAMPLES],
                        [t for t, _ in terms.most_common(_TERMS)] if terms else [], topics))
            self.closed_until = max(self.closed_until, start)
        return out

    def _emit(self, final: bool = False) -> list[tuple[Any, ...]]:
        if self.brand_channel is None:
            return []
        brand, channel = self.brand_channel
        out: list[tuple[Any, ...]] = []
        if final:
            self._advance(out, final=True)
        # one item for all of the key's windows: a sparse key fills a minute, its hour and its day at once, and
        # every item costs its way through the flow's steps and the sink
        if self.dirty:
            out.insert(0, ("windows", brand, channel, [
                (gran, start, dict(self.windows[(gran, start)]), self.new_authors.pop((gran, start), []),
                 (gran, start) not in self.written)
                for gran, start in sorted(self.dirty)]))
        self.written.update(self.dirty)
        self.dirty.clear()
        if self.high_water > self.watermark_sent:
            out.append(("watermark", brand, channel, self.high_water))
            self.watermark_sent = self.high_water
        self._due = None
        # Final windows are written: forget them.
        for (gran, start) in list(self.windows):
            if start + GRANULARITIES[gran] <= self.final_before.get(gran, -1):
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
            "fin": dict(self.final_before),
            "wr": set(self.written),
            "s": {k: list(v) for k, v in self.samples.items()},
            "t": {k: Counter(v) for k, v in self.terms.items()},
            "cl": self.closed_until,
            "tp": {k: {t: list(v) for t, v in d.items()} for k, d in self.topics.items()},
            "q": list(self.queries),
            "u": list(self.unclosed),
            "j": self.jump,
            "we": self.watermark_sent,
        }
