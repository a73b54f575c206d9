"""Where the CRM's automatic timer ticks fall in a batch, and which of them can be skipped.

The timers (SLA warnings and breaches, auto-resolve, stale-case expiry, retention sweeps) tick in event time: a
customer mention whose ``auto_tick_ms`` period is newer than every customer mention before it (in input order)
ticks at its own event time, before it is planned (:func:`tick_positions`). Where those ticks fall is a function
of the input alone, whatever the batches.

A tick that has nothing to do writes nothing, so running it or not gives the same keys: a tick is skipped (and
does not end a CRM segment, which costs Redis round trips) when it provably cannot do anything.
:class:`DueBound` keeps a lower bound of the earliest event time at which one can: the timers' own next due time
(read from Redis with the last tick) lowered by every mention applied since, which can only add timers at least
the least of :class:`Delays` after its own time.

A tick that can only fire SLA warnings and breaches (the same bound, kept for the timers that do more: resolve,
expire, sweep) changes nothing a mention's plan reads, so it does not end a segment either: it runs between the
commits of the mentions around it, in their round trip. One that may do more ends the segment (the next
mentions' contexts are read after it). A tick that fired anything is stored by its own script call (KEEP_TICK),
so a replay after a crash at any point raises the same alerts on the same mention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crm.keys import KEEP_LINKS_SECONDS
from crm.settings import CrmSettings
from crm.store import Retention, TimerState

__all__ = ["Delays", "DueBound", "Tick", "tick_positions"]


@dataclass(slots=True)
class Tick:
    """One automatic tick: its period, its event time (its mention's), the mention, and its stored record when a
    replay finds one (the tick then only returns the stored alerts)."""

    period: int
    now_ms: int
    by: str
    stored: dict[str, Any] | None = None


def tick_positions(mentions: Sequence[tuple[str, int] | None], period_ms: int, state: TimerState) -> dict[int, Tick]:
    """The ticks of a batch by position: ``mentions`` gives (id, event time) per position, None for a brand reply.

    The newest period already passed is the newest stored tick's or the CRM watermark's (every customer mention
    before this batch either committed, moving the watermark, or ticked and was remembered).

    >>> st = TimerState(last=None, watermark=125_000, next_due=None)
    >>> sorted(tick_positions([("a", 130_000), None, ("b", 185_000), ("c", 170_000)], 60_000, st))
    [2]
    """
    if period_ms <= 0:
        return {}
    last = state.last
    if state.watermark >= 0:
        passed = state.watermark - state.watermark % period_ms
        last = passed if last is None else max(last, passed)
    out: dict[int, Tick] = {}
    for pos, m in enumerate(mentions):
        if m is None:
            continue
        mid, ts = m
        start = ts - ts % period_ms
        known = state.ticks.get(start)
        if known is not None:
            if known.get("by") == mid:
                out[pos] = Tick(start, ts, mid, known)
            last = start if last is None else max(last, start)
        elif last is None or start > last:
            out[pos] = Tick(start, ts, mid)
            last = start
    return out


class Delays:
    """The shortest event time between a mention (or reply) and anything its commit can make due: its case's SLA
    warning, auto-resolve after a reply, stale-case expiry, or a retention sweep of a key it indexed.

    >>> from crm.settings import CrmSettings
    >>> d = Delays(CrmSettings(), Retention(processed_ms=86_400_000))
    >>> d.case("twitter"), d.quiet  # twitter urgent: 15 min, warning 12 min in; a processed mark kept a day
    (720000, 86400000)
    """

    def __init__(self, settings: CrmSettings, retention: Retention) -> None:
        self.settings = settings
        links = KEEP_LINKS_SECONDS * 1000
        # (a sweep runs late, or as soon as an index has a sweep's worth due: a mention adds one entry at most)
        #: a mention that opens or joins no case: its processed mark, prospect, tasks, sent-once marks, links
        self.quiet = _least(links, retention.processed_ms, retention.prospect_ms, retention.task_ms)
        #: a brand reply: auto-resolve, stale expiry, its held copy and thread link
        self.reply = _least(int(settings.auto_resolve_minutes * 60_000), retention.stale_ms, links,
                            retention.early_ms)
        self._stale = retention.stale_ms
        #: what a mention's commit can make due that does more than fire SLA warnings and breaches (stale expiry,
        #: retention; for a reply, :attr:`reply`), whatever its case's SLA
        self.change = _least(retention.stale_ms, self.quiet)
        self._case: dict[str, int] = {}

    def opened(self, sla_ms: int) -> int:
        """A case opened (or followed up) with an SLA of ``sla_ms``: its SLA warning (as ``set_deadline`` sets it),
        its expiry when stale, and what a quiet mention adds."""
        return _least(sla_ms - math.floor(sla_ms * self.settings.sla_warn_fraction), self._stale, self.quiet)

    def case(self, channel: str) -> int:
        """:meth:`opened` for the most urgent SLA on ``channel`` (any priority: rules may raise it)."""
        if channel not in self._case:
            self._case[channel] = min(self.opened(ms) for ms in self.settings.sla_ms_table(channel).values())
        return self._case[channel]


def _least(*delays: int) -> int:
    return min((d for d in delays if d > 0), default=0)


class DueBound:
    """Lower bounds of the earliest event time at which an automatic tick can do anything, and of the earliest at
    which it can do more than fire SLA warnings and breaches (resolve, expire or sweep: change what a mention's
    context reads).

    >>> b = DueBound()
    >>> b.may_fire(0), b.may_change(0)  # nothing known yet: it may
    (True, True)
    >>> b.known(None, None); b.may_fire(10**15)
    False
    >>> b.add(1_000_000, 600_000, 86_400_000); b.may_fire(1_599_999), b.may_fire(1_600_000), b.may_change(1_600_000)
    (False, True, False)
    """

    def __init__(self) -> None:
        self.due: float = -math.inf
        self.change: float = -math.inf
        #: the next SLA timers Redis named (event time, their case's deadline), soonest first; None: not known
        self.sla: list[tuple[int, int | None]] | None = None
        #: no other SLA timer Redis had is due before this
        self.sla_rest: float = -math.inf
        #: the soonest anything added since Redis said can be due
        self.added: float = math.inf

    def known(self, next_due: int | None, next_change: int | None,
              sla: Sequence[tuple[int, int | None]] | None = None, sla_rest: int | None = None) -> None:
        """Redis said when the timers are next due right now, and when they can next change more than SLA marks
        (None: never, until something is added); ``sla``, ``sla_rest``: its next SLA timers (:meth:`fired`)."""
        self.due = math.inf if next_due is None else next_due
        self.change = math.inf if next_change is None else next_change
        self._schedule(sla, sla_rest)

    def _schedule(self, sla: Sequence[tuple[int, int | None]] | None, rest: int | None) -> None:
        """Redis named its next SLA timers (or not: None): nothing added since."""
        self.sla = None if sla is None else sorted(sla)
        self.sla_rest = math.inf if rest is None else rest
        self.added = math.inf

    def known_sla(self, next_sla: int | None, change: float, sla: Sequence[tuple[int, int | None]] | None = None,
                  sla_rest: int | None = None) -> None:
        """After a tick that could only fire SLA timers: Redis said when the next SLA timer is due (None: none);
        ``change`` is this bound's own bound of the other timers when the tick was sent (it cannot have moved them).

        >>> b = DueBound(); b.known(500, 900); b.known_sla(None, 900); b.may_fire(899), b.may_fire(900)
        (False, True)
        """
        self.change = change
        self.due = min(math.inf if next_sla is None else next_sla, change)
        self._schedule(sla, sla_rest)

    def unknown(self) -> None:
        self.due = self.change = -math.inf
        self._schedule(None, None)

    def add(self, ts_ms: int, delay: int, change: int) -> None:
        """A mention or reply of event time ``ts_ms`` is (or will be, before the tick in question) applied; what it
        adds can be due ``delay`` later at the soonest, and change more than SLA marks ``change`` later."""
        self.due = min(self.due, ts_ms + delay)
        self.change = min(self.change, ts_ms + change)
        self.added = min(self.added, ts_ms + delay)

    def fired(self, now_ms: int) -> None:
        """A tick that can only fire SLA timers runs at ``now_ms`` (before Redis says what it left): follow the SLA
        timers Redis named through it (SLA_SCAN: a timer due by then goes, a warning's moves to its case's deadline
        if that is later) so that a later tick in the same round trip runs only if something can be due by then.

        >>> b = DueBound(); b.known(100, 10_000, [(100, 300), (200, 200)], 900); b.fired(150); b.due
        200
        >>> b.fired(250); b.due  # the first case's warning moved to its deadline 300
        300
        >>> b.add(0, 280, 10**9); b.fired(260); b.due  # something added before may be due at 280
        280
        """
        if self.sla is None:
            return
        left = []
        for at, deadline in self.sla:
            if at > now_ms:
                left.append((at, deadline))
            elif deadline is not None and deadline > now_ms:
                left.append((deadline, deadline))
        left.sort()
        self.sla = left
        if self.sla_rest <= now_ms:  # timers Redis did not name were due too: they may move anywhere after now
            self.sla_rest = now_ms + 1
        self.due = min(left[0][0] if left else math.inf, self.sla_rest, self.change, self.added)

    def may_fire(self, at_ms: int, extra: float = math.inf) -> bool:
        """Whether a tick at event time (or watermark) ``at_ms`` may do anything; ``extra``: a lower bound of what
        mentions not added yet will add."""
        return at_ms >= min(self.due, extra)

    def may_change(self, at_ms: int, extra: float = math.inf) -> bool:
        """Whether a tick at ``at_ms`` may do more than fire SLA warnings and breaches (:meth:`may_fire`'s
        ``extra`` for this bound)."""
        return at_ms >= min(self.change, extra)
