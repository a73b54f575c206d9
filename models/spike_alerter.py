"""Incidents from spike scores: per-series detectors, the interval each series is watched at, and one
deduplicated alert per incident (opened, updated, resolved)."""

from __future__ import annotations

import functools
import inspect
import math
from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from river import base

from models.spikes import SpikeDetector, _Assessment, _count_value, snap_interval, to_epoch_seconds

__all__ = ["INTERVAL_CHOICES", "SEVERITIES", "SpikeAlerter", "SpikeObservation"]

#: Severity levels of a spike alert, mildest first.
SEVERITIES = ("low", "medium", "high")

#: Interval lengths a series is watched at, chosen from its density: 1, 5 and 60 minutes.
INTERVAL_CHOICES = (60, 300, 3600)
# Mentions a minute at or above which a series is watched per minute, per five minutes.
_DENSE_PER_MIN = 2.0
_MEDIUM_PER_MIN = 0.1
_PROBE_S = 3600  # event time watched before a series' interval is chosen
_RECHOOSE_S = 7 * 86400  # and how often the choice is reconsidered


def choose_interval(per_minute: float) -> int:
    """The interval (seconds) a series with this many mentions a minute is watched at.

    >>> choose_interval(5.0), choose_interval(0.5), choose_interval(0.01)
    (60, 300, 3600)
    """
    if per_minute >= _DENSE_PER_MIN:
        return 60
    if per_minute >= _MEDIUM_PER_MIN:
        return 300
    return 3600


@dataclass
class _Incident:
    """One spike of one series, from its first anomalous interval until it has been quiet for a while."""

    id: str
    start: int
    windows: int = 0
    quiet: int = 0
    peak_observed: float = 0.0
    peak_expected: float = 0.0
    peak_upper: float = 0.0
    peak_negative: float | None = None
    peak_score: float = 0.0
    peak_surprise: float = 0.0
    severity: str = "low"
    last_observed: float = 0.0
    last_expected: float = 0.0
    last_t: int = 0
    reported_observed: float = 0.0
    sample_ids: list[str] = field(default_factory=list)
    terms: Counter[str] = field(default_factory=Counter)


@dataclass
class _Pending:
    """The interval being filled with closed windows."""

    start: int
    count: float = 0.0
    negative: float | None = None
    sample_ids: list[str] = field(default_factory=list)
    terms: list[list[str]] = field(default_factory=list)


@dataclass
class _Series:
    detector: SpikeDetector | None = None
    negative_detector: SpikeDetector | None = None
    interval: int | None = None
    anchor: int = 0  # intervals start at anchor + i * interval
    chosen_at: int = 0
    first_t: int | None = None
    probe: list[tuple[int, float, float | None, list[str], list[str]]] = field(default_factory=list)
    pending: _Pending | None = None
    last_flushed: int | None = None
    incident: _Incident | None = None
    resolved_at: int | None = None
    resolved_surprise: float = 0.0
    suppressed: int = 0
    # Negative mentions: the last few non-empty intervals (index, mentions, negatives) and the usual share.
    recent: deque[tuple[int, float, float]] = field(default_factory=deque)
    share_num: float = 0.0
    share_den: float = 0.0
    share_t: int | None = None


@dataclass(frozen=True, slots=True)
class SpikeObservation:
    """What the alerter made of one window: the score of the interval it completed, what was expected,
    and any alerts to publish.

    ``score`` and ``z`` are those that decide (the negative mentions' when they are given), ``expected``
    the count of mentions expected in the interval and ``expected_upper`` the count at which it would
    score 0.5, ``in_incident`` whether an incident is open after it and ``spiking`` whether this
    interval itself is part of the spike. A window that does not complete its interval gives zeros.
    """

    score: float
    expected: float
    z: float
    in_incident: bool
    alerts: tuple[dict[str, Any], ...] = ()
    spiking: bool = False
    expected_upper: float = 0.0


@functools.cache
def _param_names(cls: type) -> tuple[str, ...] | None:
    """The keyword parameters of ``cls``' constructor (None if it takes ``*args`` or ``**kwargs``)."""
    names = []
    for name, p in inspect.signature(cls).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            return None
        if name != "self":
            names.append(name)
    return tuple(names)


def _params_of(detector: SpikeDetector) -> dict[str, Any]:
    """``detector._get_params()``, with the class' parameter names looked up once (not per alerter: the flow
    has one alerter per brand); River's own method for anything but plain keyword values."""
    names = _param_names(type(detector))
    params = {name: getattr(detector, name) for name in names} if names is not None else {}
    if names is None or any(isinstance(v, base.Base) for v in params.values()):
        return dict(detector._get_params())
    return params


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat()


def _stamp(t: int) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y%m%d%H%M")


_Key = tuple[str, str | None, str | None]
# What decided an interval: the driving assessment, the count expected, whether the interval is itself spiking.
_Last = tuple[_Assessment, float, bool]


class SpikeAlerter:
    """Per-series spike detectors that publish one deduplicated alert per incident.

    Feed it closed windows (``window_s`` seconds each, one minute in the flow) per series: brand x
    channel, or brand x topic. Each series is watched at its own interval: 1, 5 or 60 minutes, chosen
    from its density over its first hour and reconsidered weekly (``interval_s`` fixes it instead);
    windows are summed into intervals, and intervals without windows are empty (O(1) whatever the gap).

    An incident opens when an interval scores 0.5 or more and the mentions behind the score are at
    least ``min_excess`` above and ``min_ratio`` times the expectation. Within ``cooldown_h`` hours after
    an incident, a new one opens only if it is more surprising than the last. An incident stays open
    while its intervals stay 1.5 sigma above their expectation, and resolves after ``close_after_s``
    seconds (at least two intervals) without one. The alert dicts carry the fields of
    ``stream.schema.Alert`` and keep the same ``id`` for the whole incident: one when it opens, one each
    time it grows (higher severity or 1.5x the last reported count), one when it resolves; ``message``
    starts with ``open:``, ``update:`` or ``resolved:``. ``expected_upper`` is the count at which the
    peak interval would have scored 0.5, for charts of the expected band.

    When the count of *negative* mentions is given, a second detector watches it and decides: an
    incident is a spike of complaints whose share of the mentions is also above the usual one, while
    buzz (a news burst: many mentions, the usual share of negative ones) raises no alert.

    Windows of an interval already scored are counted in ``late_windows`` and ignored; bad counts
    (negative, NaN, not numbers) are skipped. Everything depends on the windows alone, never on the clock.

    Parameters
    ----------
    detector
        Template detector, cloned for each new series (and for its negative mentions).
    interval_s
        Fixed interval for every series (seconds); None chooses 1, 5 or 60 minutes per series.
    window_s
        Length of the windows fed (seconds).
    align
        Intervals start at whole multiples of their length (a 5-minute interval at :00, :05...); False
        starts them at each series' first window (a CSV whose rows are the intervals).
    min_excess
        Least number of mentions above the expectation for an incident to open.
    min_ratio
        Least ratio of observed to expected mentions for an incident to open.
    cooldown_h
        Hours after an incident during which only a more surprising spike opens another.
    close_after_s
        Seconds without a hot interval that resolve an incident.
    max_series
        Series kept; the least recently updated is forgotten beyond this.
    max_samples
        Sample mention ids kept per alert.
    max_terms
        Top terms kept per alert.

    Examples
    --------
    >>> from datetime import datetime, timedelta, UTC
    >>> alerter = SpikeAlerter(interval_s=60)
    >>> start = datetime(2024, 1, 1, tzinfo=UTC)
    >>> counts = [5, 6, 4, 5, 7, 5, 6, 4] * 360 + [60, 90, 75] + [5, 6, 5, 4] * 8
    >>> alerts = []
    >>> for i, n in enumerate(counts):
    ...     alerts += alerter.update("acme", "twitter", start + timedelta(minutes=i), n,
    ...                              sample_ids=[f"twitter:{i}"], top_terms=["outage", "login"])
    >>> [(a["message"].split(":")[0], a["severity"], a["observed"]) for a in alerts]
    [('open', 'high', 60.0), ('update', 'high', 90.0), ('resolved', 'high', 90.0)]
    >>> len({a["id"] for a in alerts}), alerts[0]["id"], alerts[0]["window_start"]
    (1, 'spike:acme:twitter:202401030000', '2024-01-03T00:00:00+00:00')
    >>> alerts[0]["sample_ids"], alerts[-1]["top_terms"]
    (['twitter:2880'], ['outage', 'login'])
    """

    def __init__(
        self,
        detector: SpikeDetector | None = None,
        interval_s: float | None = None,
        window_s: float = 60.0,
        align: bool = True,
        min_excess: float = 3.0,
        min_ratio: float = 1.5,
        cooldown_h: float = 6.0,
        close_after_s: float = 900.0,
        max_series: int = 10_000,
        max_samples: int = 10,
        max_terms: int = 10,
    ) -> None:
        self.detector = detector if detector is not None else SpikeDetector()
        self.interval_s = interval_s
        self.window_s = window_s
        self.align = align
        self.min_excess = min_excess
        self.min_ratio = min_ratio
        self.cooldown_h = cooldown_h
        self.close_after_s = close_after_s
        self.max_series = max_series
        self.max_samples = max_samples
        self.max_terms = max_terms
        self.late_windows = 0
        self._series: OrderedDict[_Key, _Series] = OrderedDict()

    # -- public API --------------------------------------------------------------------------------------

    def update(
        self,
        brand: str,
        channel: str | None,
        window_start: datetime | str | float,
        count: float,
        sample_ids: Sequence[str] = (),
        top_terms: Sequence[str] = (),
        topic: str | None = None,
        negative: float | None = None,
    ) -> list[dict[str, Any]]:
        """Learn one window's count (and its negative mentions, if known); return the alert dicts to publish."""
        return self._feed(brand, channel, window_start, count, sample_ids, top_terms, topic, negative)[1]

    def observe(
        self,
        brand: str,
        channel: str | None,
        window_start: datetime | str | float,
        count: float,
        sample_ids: Sequence[str] = (),
        top_terms: Sequence[str] = (),
        topic: str | None = None,
        negative: float | None = None,
    ) -> SpikeObservation:
        """Like :meth:`update`, also returning the score, expectation and z of the interval it completed."""
        in_incident, out, last = self._feed(brand, channel, window_start, count, sample_ids, top_terms, topic,
                                            negative)
        if last is None:
            return SpikeObservation(0.0, 0.0, 0.0, in_incident, tuple(out))
        driver, expected, hot = last
        return SpikeObservation(driver.score, expected, driver.z, in_incident, tuple(out),
                                spiking=in_incident and hot, expected_upper=driver.upper)

    def _feed(
        self,
        brand: str,
        channel: str | None,
        window_start: datetime | str | float,
        count: float,
        sample_ids: Sequence[str],
        top_terms: Sequence[str],
        topic: str | None,
        negative: float | None,
    ) -> tuple[bool, list[dict[str, Any]], _Last | None]:
        """One window: whether an incident is open after it, the alerts, and what decided the interval it
        completed (the driving assessment, the count expected, whether the interval is itself spiking)."""
        t_raw = to_epoch_seconds(window_start)
        key: _Key = (brand, channel, topic)
        series = self._series.get(key)
        if series is None:
            series = _Series()
            self._series[key] = series
            while len(self._series) > self.max_series:
                self._series.popitem(last=False)
        else:
            self._series.move_to_end(key)
        n = _count_value(count)
        neg = _count_value(negative) if negative is not None else None
        if t_raw is None or n is None:
            return series.incident is not None, [], None
        t = int(math.floor(t_raw))
        samples = [s for s in sample_ids if isinstance(s, str)][: self.max_samples]
        terms = [s for s in top_terms if isinstance(s, str) and s][: self.max_terms]
        out: list[dict[str, Any]] = []
        last: _Last | None = None
        if series.interval is None:
            if series.first_t is None:
                series.first_t = t
            if self.interval_s is not None or t >= series.first_t + _PROBE_S:
                last = self._choose(key, series, out)
            else:
                series.probe.append((t, n, neg, samples, terms))
                return series.incident is not None, [], None
        step = series.interval
        assert step is not None
        if self.interval_s is None and t >= series.chosen_at + _RECHOOSE_S:
            self._rechoose(series, t)
            step = series.interval
            assert step is not None
        res = self._window(key, series, t, n, neg, samples, terms, out)
        if res is not None:
            last = res
        return series.incident is not None, out, last


    def close_all(self) -> list[dict[str, Any]]:
        """End of a bounded replay: score the intervals still being filled, then resolve every open
        incident; returns the alerts."""
        out: list[dict[str, Any]] = []
        for key, series in self._series.items():
            if series.interval is None and series.probe:
                self._choose(key, series, out)
            if series.pending is not None:
                self._flush(key, series, out)
            if series.incident is not None:
                out.append(self._alert(key, series, series.incident, "resolved"))
                series.resolved_at = series.incident.last_t
                series.resolved_surprise = series.incident.peak_surprise
                series.incident = None
        return out

    def active(self) -> list[dict[str, Any]]:
        """The open incidents as alert dicts, for a dashboard."""
        return [self._alert(k, s, s.incident, "update") for k, s in self._series.items() if s.incident]

    def waiting(self, brand: str, channel: str | None, topic: str | None = None) -> bool:
        """Whether the series has an interval being filled or an incident open, so that an empty window
        would score or resolve something now; otherwise empty windows may be left out (they are implicit)."""
        series = self._series.get((brand, channel, topic))
        return series is not None and (series.pending is not None or series.incident is not None
                                       or bool(series.probe))

    def interval_of(self, brand: str, channel: str | None, topic: str | None = None) -> int | None:
        """The interval (seconds) a series is watched at, once chosen."""
        series = self._series.get((brand, channel, topic))
        return series.interval if series is not None else None

    # -- intervals -------------------------------------------------------------------------------------

    def _new_detector(self, step: int) -> SpikeDetector:
        # What ``self.detector.clone({"interval_s": step})`` gives, without River's signature inspection and
        # deep copies on every new series (the parameters are plain numbers, a tuple and a string).
        params = self.__dict__.get("_detector_params")
        if params is None:
            params = self.__dict__["_detector_params"] = _params_of(self.detector)
        return type(self.detector)(**{**params, "interval_s": float(step)})

    def _choose(self, key: _Key, series: _Series,
                out: list[dict[str, Any]]) -> _Last | None:
        """Choose the series' interval from its first hour, then replay that hour into it."""
        if self.interval_s is not None:
            step = snap_interval(float(self.interval_s))
        else:
            total = sum(p[1] for p in series.probe)
            step = choose_interval(total / (_PROBE_S / 60.0))
        series.interval = step
        series.detector = self._new_detector(step)
        series.chosen_at = series.first_t if series.first_t is not None else 0
        series.anchor = 0 if self.align or series.first_t is None else series.first_t % step
        last = None
        probe, series.probe = series.probe, []
        for t, n, neg, samples, terms in probe:
            res = self._window(key, series, t, n, neg, samples, terms, out)
            if res is not None:
                last = res
        return last

    def _rechoose(self, series: _Series, t: int) -> None:
        series.chosen_at = t
        det = series.detector
        step = series.interval
        if det is None or step is None or det._state is None or det._state.rates is None:
            return
        per_min = det._state.rates.level() * 60.0 / step
        # Hysteresis: move only when the density is clearly (twice) on the other side of a boundary.
        finer, coarser = choose_interval(per_min * 0.5), choose_interval(per_min * 2.0)
        wanted = finer if finer < step else coarser if coarser > step else step
        if wanted == step:
            return
        series.interval = wanted
        det.rescale(wanted)
        if series.negative_detector is not None:
            series.negative_detector.rescale(wanted)
        series.recent.clear()
        a = series.anchor = series.anchor % wanted
        if series.pending is not None:
            series.pending.start = a + (series.pending.start - a) // wanted * wanted
        if series.last_flushed is not None:
            series.last_flushed = a + (series.last_flushed - a) // wanted * wanted

    def _window(self, key: _Key, series: _Series, t: int, n: float, neg: float | None, samples: list[str],
                terms: list[str], out: list[dict[str, Any]]) -> _Last | None:
        step = series.interval
        assert step is not None
        start = series.anchor + (t - series.anchor) // step * step
        if (series.last_flushed is not None and start <= series.last_flushed) or (
                series.pending is not None and start < series.pending.start):
            self.late_windows += 1
            return None
        last = None
        if series.pending is not None and start > series.pending.start:
            last = self._flush(key, series, out)
        p = series.pending
        if p is None:
            p = series.pending = _Pending(start)
        p.count += n
        if neg is not None:
            p.negative = (p.negative or 0.0) + neg
        for s in samples:
            if len(p.sample_ids) < self.max_samples and s not in p.sample_ids:
                p.sample_ids.append(s)
        if terms:
            p.terms.append(terms)
        if t + self.window_s >= start + step:  # the window closes its interval
            last = self._flush(key, series, out)
        return last

    def _flush(self, key: _Key, series: _Series,
               out: list[dict[str, Any]]) -> _Last:
        p = series.pending
        det = series.detector
        step = series.interval
        assert p is not None and det is not None and step is not None
        series.pending = None
        x = p.start
        if series.incident is not None and series.last_flushed is not None:
            gap = (x - series.last_flushed) // step - 1
            if gap > 0:
                out += self._quiet(key, series, gap, series.last_flushed)
        total = det.learn_assessed(p.count, x)
        driver = total
        share_ok = True
        neg = p.negative
        if neg is not None and series.negative_detector is None:
            series.negative_detector = self._new_detector(step)
        if series.negative_detector is not None:
            # Once negatives are known for a series, missing ones are treated as none of the mentions.
            neg = min(neg or 0.0, p.count)
            driver = series.negative_detector.learn_assessed(neg, x)
            share_ok = self._negative_share(series, x, step, p.count, neg, int(driver.scale))
        series.last_flushed = x
        # the windows' top terms are ranked only if the interval joins an incident (_absorb)
        out += self._track(key, series, x, p.count, total, driver, neg, p.sample_ids, p.terms, share_ok)
        hot = series.incident is not None and series.incident.quiet == 0
        return driver, total.expected_now, hot

    @staticmethod
    def _rank_terms(lists: list[list[str]]) -> list[str]:
        if len(lists) <= 1:
            return lists[0] if lists else []
        c: Counter[str] = Counter()
        for terms in lists:
            for rank, term in enumerate(terms):
                c[term] += len(terms) - rank
        return [term for term, _ in c.most_common()]

    # -- incidents -------------------------------------------------------------------------------------

    def _negative_share(self, series: _Series, t: int, step: int, n: float, neg: float, scale: int) -> bool:
        """Whether the negative share of the last ``scale`` intervals is above the usual one.

        A news burst brings many mentions with the usual share of negative ones: more negatives, but
        no incident. An outage brings complaints: the share itself jumps. Binomial z >= 3 against the
        share learned outside incidents (half-life 3 days); with too little history, any share passes.
        """
        idx = t // step
        keep = max(64, scale)
        series.recent.append((idx, n, neg))
        while series.recent and series.recent[0][0] <= idx - keep:
            series.recent.popleft()
        # the intervals of the last ``scale`` (``recent`` is in order: newest last), summed oldest first
        since = idx - max(1, scale)
        window: list[tuple[float, float]] = []
        for i, a, b in reversed(series.recent):
            if i <= since:
                break
            window.append((a, b))
        window.reverse()
        total = sum(a for a, _ in window)
        negs = sum(b for _, b in window)
        known = series.share_den >= 50  # mentions behind the usual share
        z = 0.0
        if known and total > 0:
            p = min(max(series.share_num / series.share_den, 0.01), 0.99)
            z = (negs - total * p) / math.sqrt(total * p * (1 - p))
        elevated = z >= 3.0
        if series.incident is None and not elevated:  # the usual share is learned outside incidents
            if series.share_t is not None and t > series.share_t:
                f = 0.5 ** ((t - series.share_t) / (3 * 86400.0))
                series.share_num *= f
                series.share_den *= f
            series.share_t = t if series.share_t is None else max(series.share_t, t)
            series.share_num += neg
            series.share_den += n
        return elevated or not known

    def _severity(self, a: _Assessment) -> str:
        # Both how rare (score) and how big (ratio): a quiet forum only reaches a modest ratio of
        # certainty, and a busy channel reaches near-certainty with a change nobody would page for.
        ratio = a.observed / max(a.expected, 1e-9)
        score = a.score
        if (ratio >= 5.0 and score >= 0.8) or (ratio >= 3.0 and score >= 0.98):
            return "high"
        if (ratio >= 2.5 and score >= 0.6) or (ratio >= 1.5 and score >= 0.98):
            return "medium"
        return "low"

    def _needed_quiet(self, step: int) -> int:
        return max(2, math.ceil(self.close_after_s / step))

    def _quiet(self, key: _Key, series: _Series, k: int, after: int) -> list[dict[str, Any]]:
        """``k`` empty intervals after ``after`` while an incident is open: it may resolve among them."""
        inc = series.incident
        step = series.interval
        assert inc is not None and step is not None
        needed = self._needed_quiet(step)
        if inc.quiet + k < needed:
            inc.quiet += k
            inc.windows += k
            inc.last_observed, inc.last_expected = 0.0, inc.last_expected
            return []
        used = needed - inc.quiet
        inc.quiet = needed
        inc.windows += used
        inc.last_observed = 0.0
        inc.last_t = after + used * step
        return [self._resolve(key, series)]

    def _resolve(self, key: _Key, series: _Series) -> dict[str, Any]:
        inc = series.incident
        assert inc is not None
        alert = self._alert(key, series, inc, "resolved")
        series.incident = None
        series.resolved_at = inc.last_t
        series.resolved_surprise = inc.peak_surprise
        return alert

    def _track(
        self,
        key: _Key,
        series: _Series,
        t: int,
        n: float,
        total: _Assessment,
        driver: _Assessment,
        neg: float | None,
        sample_ids: Sequence[str],
        term_lists: list[list[str]],
        share_ok: bool = True,
    ) -> list[dict[str, Any]]:
        inc = series.incident
        score = driver.score
        expected = total.expected_now
        if inc is None:
            opens = (score >= 0.5 and driver.observed - driver.expected >= self.min_excess
                     and driver.observed >= self.min_ratio * driver.expected and share_ok)
            if not opens:
                return []
            cooling = (series.resolved_at is not None
                       and t < series.resolved_at + self.cooldown_h * 3600.0)
            if cooling and driver.surprise <= series.resolved_surprise:
                series.suppressed += 1
                return []
            brand, channel, topic = key
            parts = ["spike", brand, channel or "*"] + ([topic] if topic else []) + [_stamp(t)]
            inc = _Incident(id=":".join(parts), start=t)
            series.incident = inc
            self._absorb(inc, t, n, expected, total.upper, neg, driver, sample_ids, term_lists)
            inc.severity = self._severity(driver)
            inc.reported_observed = n
            return [self._alert(key, series, inc, "open")]

        # Still spiking while this very interval is clearly above normal; sums of intervals alone would
        # keep an incident open until the spike had left them.
        hot = driver.z_now >= 1.5 and n > expected
        if not hot:
            inc.quiet += 1
            inc.windows += 1
            inc.last_observed, inc.last_expected, inc.last_t = n, expected, t
            if inc.quiet >= self._needed_quiet(series.interval or 60):
                return [self._resolve(key, series)]
            return []
        inc.quiet = 0
        self._absorb(inc, t, n, expected, total.upper, neg, driver, sample_ids, term_lists)
        severity = self._severity(driver)
        grew = n >= 1.5 * inc.reported_observed
        if SEVERITIES.index(severity) > SEVERITIES.index(inc.severity) or grew:
            inc.severity = max(severity, inc.severity, key=SEVERITIES.index)
            inc.reported_observed = max(inc.reported_observed, n)
            return [self._alert(key, series, inc, "update")]
        return []

    def _absorb(self, inc: _Incident, t: int, n: float, expected: float, upper: float, neg: float | None,
                driver: _Assessment, sample_ids: Sequence[str], term_lists: list[list[str]]) -> None:
        """Add an interval to an incident (``term_lists``: the top terms of each of its windows)."""
        inc.windows += 1
        inc.last_observed, inc.last_expected, inc.last_t = n, expected, t
        if n >= inc.peak_observed:
            inc.peak_observed, inc.peak_expected, inc.peak_negative = n, expected, neg
            inc.peak_upper = upper
        inc.peak_score = max(inc.peak_score, driver.score)
        inc.peak_surprise = max(inc.peak_surprise, driver.surprise)
        for sid in sample_ids:
            if len(inc.sample_ids) >= self.max_samples:
                break
            if sid not in inc.sample_ids:
                inc.sample_ids.append(sid)
        # Earlier ranks weigh more; the counter stays small because only the top terms are kept.
        for rank, term in enumerate(self._rank_terms(term_lists)[: self.max_terms]):
            inc.terms[term] += self.max_terms - rank
        if len(inc.terms) > 4 * self.max_terms:
            inc.terms = Counter(dict(inc.terms.most_common(2 * self.max_terms)))

    def _alert(self, key: _Key, series: _Series, inc: _Incident, status: str) -> dict[str, Any]:
        brand, channel, topic = key
        where = " ".join(p for p in (channel, f"topic {topic}" if topic else None) if p) or "all channels"
        ratio = inc.peak_observed / inc.peak_expected if inc.peak_expected > 0 else math.inf
        negs = f", {inc.peak_negative:g} negative" if inc.peak_negative is not None else ""
        step = series.interval or 60
        per = f"per {step // 60} min" if step < 3600 else f"per {step // 3600} h"
        if status == "resolved":
            message = (f"resolved: {brand} {where} back to {inc.last_observed:g} mentions {per} "
                       f"({inc.last_expected:.1f} expected) after {inc.windows} intervals; "
                       f"peak {inc.peak_observed:g}{negs}")
        else:
            message = (f"{status}: {brand} {where} at {inc.last_observed:g} mentions {per}, "
                       f"{inc.last_expected:.1f} expected; peak {inc.peak_observed:g}{negs} "
                       f"({ratio:.1f}x expected)")
        return {
            "id": inc.id,
            "kind": "spike",
            "brand": brand,
            "channel": channel,
            "topic": topic,
            "window_start": _iso(inc.start),
            "observed": float(inc.peak_observed),
            "expected": round(inc.peak_expected, 3),
            "expected_upper": round(inc.peak_upper, 3),
            "interval_s": float(step),
            "score": round(inc.peak_score, 6),
            "severity": inc.severity,
            "sample_ids": list(inc.sample_ids),
            "top_terms": [t for t, _ in inc.terms.most_common(self.max_terms)],
            "message": message,
        }
