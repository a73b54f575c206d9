"""Reply matching: pairs each customer mention with the brand's first reply to it (first response time).

State is keyed by the replied-to mention id (sharded, see :mod:`stream.shards`). A reply may arrive
before its mention (out of order); it waits until the mention comes. A query with no reply within the
SLA (event time, judged against the newest event time the shard has seen) is reported ``unanswered``
once; at the end of a bounded input every still-unanswered query is. Entries are forgotten after
``wait_seconds`` of system time so endless streams keep bounded state.

Events emitted (plain tuples, cheap to pickle):

- ``("response", brand, channel, mention_id, mention_ts_ms, reply_ts_ms, response_ms, retract)``
  where ``retract`` is ``None`` or ``(old_reply_ts_ms, old_response_ms)`` when an earlier reply
  arrived after a later one had been counted;
- ``("unanswered", brand, channel, mention_id, mention_ts_ms, sign)``: ``sign`` is ``1``, or ``-1`` when a
  reply within the SLA arrives after the query was judged unanswered (input that is not in event-time
  order, e.g. several partitions read at different paces), so the end result does not depend on order.

>>> from stream.schema import Mention, parse_ts
>>> q = Mention(id="t:1", channel="twitter", brand="acme", author="bob", text="help?",
...             ts=parse_ts("2024-01-01T10:00:00Z"))
>>> r = Mention(id="t:2", channel="twitter", brand="acme", author="AcmeCare", text="on it",
...             ts=parse_ts("2024-01-01T10:05:00Z"), from_brand=True, in_reply_to="t:1")
>>> logic = ReplyMatchLogic(sla_ms=3_600_000, wait_seconds=60.0, resume_state=None)
>>> logic.on_item((r, "comment"))[0]   # the reply first: it waits for its mention
[]
>>> logic.on_item((q, "query"))[0]
[('response', 'acme', 'twitter', 't:1', 1704103200000, 1704103500000, 300000, None)]
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.operators import StatefulLogic

from stream.schema import Mention

__all__ = ["ReplyMatchLogic", "reply_target"]

# Entry layout (a list, for compact snapshots):
_BRAND, _CHANNEL, _MTS, _QUERY, _RTS, _RBRAND, _UNANSWERED, _TOUCHED = range(8)


def reply_target(mention: Mention) -> str | None:
    """The mention id this record's reply-matching state lives under, or None if it takes no part."""
    if mention.from_brand:
        return mention.in_reply_to
    return mention.id


class ReplyMatchLogic(StatefulLogic[tuple[Mention, str], tuple[Any, ...], dict[str, Any]]):
    """Items are ``(mention, intent)``; state is ``{"e": {mention_id: entry}, "hw": newest ts ms}``."""

    def __init__(self, sla_ms: int, wait_seconds: float, resume_state: dict[str, Any] | None) -> None:
        self.sla_ms = sla_ms
        self.wait_seconds = wait_seconds
        state = resume_state or {"e": {}, "hw": 0}
        self.entries: dict[str, list[Any]] = state["e"]
        self.high_water: int = state["hw"]
        self._next = datetime.now(UTC) + timedelta(seconds=1)

    def on_item(self, value: tuple[Mention, str]) -> tuple[list[tuple[Any, ...]], bool]:
        mention, intent = value
        ts = mention.ts_ms
        if ts > self.high_water:
            self.high_water = ts
        out: list[tuple[Any, ...]] = []
        if mention.from_brand:
            target = mention.in_reply_to
            if target is None:
                return out, StatefulLogic.RETAIN
            entry = self.entries.get(target)
            if entry is None:
                self.entries[target] = [None, None, None, False, ts, mention.brand, False, time.time()]
            elif entry[_MTS] is None:
                if ts < entry[_RTS]:
                    entry[_RTS], entry[_RBRAND] = ts, mention.brand
            elif entry[_RTS] is None or ts < entry[_RTS]:
                retract = None
                if entry[_RTS] is not None:
                    retract = (entry[_RTS], max(0, entry[_RTS] - entry[_MTS]))
                entry[_RTS], entry[_RBRAND] = ts, mention.brand
                out.extend(self._response(target, entry, retract))
        else:
            entry = self.entries.get(mention.id)
            is_query = intent == "query"
            if entry is None:
                self.entries[mention.id] = [mention.brand, mention.channel, ts, is_query, None, None, False,
                                            time.time()]
            elif entry[_MTS] is None:
                entry[_BRAND], entry[_CHANNEL], entry[_MTS], entry[_QUERY] = (
                    mention.brand, mention.channel, ts, is_query)
                out.extend(self._response(mention.id, entry, None))
        return out, StatefulLogic.RETAIN

    def _response(
        self, mention_id: str, entry: list[Any], retract: tuple[int, int] | None
    ) -> list[tuple[Any, ...]]:
        response_ms = max(0, entry[_RTS] - entry[_MTS])
        out: list[tuple[Any, ...]] = [
            ("response", entry[_RBRAND], entry[_CHANNEL], mention_id, entry[_MTS], entry[_RTS], response_ms, retract)
        ]
        late = response_ms > self.sla_ms
        if entry[_QUERY] and entry[_UNANSWERED] != late:
            entry[_UNANSWERED] = late
            out.append(("unanswered", entry[_BRAND], entry[_CHANNEL], mention_id, entry[_MTS], 1 if late else -1))
        return out

    def _sweep(self, final: bool) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        deadline = self.high_water - self.sla_ms
        forget_before = time.time() - self.wait_seconds
        for mention_id, entry in list(self.entries.items()):
            mts = entry[_MTS]
            if mts is not None and entry[_QUERY] and not entry[_UNANSWERED] and entry[_RTS] is None and (
                final or mts < deadline
            ):
                entry[_UNANSWERED] = True
                out.append(("unanswered", entry[_BRAND], entry[_CHANNEL], mention_id, mts, 1))
            if final or entry[_TOUCHED] < forget_before:
                del self.entries[mention_id]
        return out

    def on_notify(self) -> tuple[list[tuple[Any, ...]], bool]:
        self._next = datetime.now(UTC) + timedelta(seconds=1)
        return self._sweep(final=False), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[list[tuple[Any, ...]], bool]:
        return self._sweep(final=True), StatefulLogic.DISCARD

    def notify_at(self) -> datetime | None:
        return self._next

    def snapshot(self) -> dict[str, Any]:
        return {"e": {k: list(v) for k, v in self.entries.items()}, "hw": self.high_water}
