"""Spike detection on counts per interval: an online, seasonal detector whose alarms are rare by design.

:class:`SpikeDetector` follows River's anomaly protocol (``learn_one(x)`` / ``score_one(x)``) on
``x = {"count": n, "ts": interval start}``. :class:`~models.spike_alerter.SpikeAlerter` (re-exported here)
keeps one detector per series and turns scores into incidents.
"""

from __future__ import annotations

import functools
import logging
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from statistics import NormalDist
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from river import base

from models._spike_rates import WEEK_S, SeasonalRates, snap_interval

__all__ = ["SpikeDetector", "snap_interval", "to_epoch_seconds"]

logger = logging.getLogger(__name__)

_ANSCOMBE = 0.375
_LN10 = math.log(10.0)
_NORMAL = NormalDist()
# Records of pseudo-evidence that overdispersion is 0 (Poisson) before any is learned.
_THETA_PRIOR = 5.0
_BETA_PRIOR = 0.6
_CENSOR = True
# Interval inference (no interval given): the shortest spacing among the first few points.
_INFER_POINTS = 8


def to_epoch_seconds(value: Any) -> float | None:
    """Event time as epoch seconds (UTC), or None when it is not a usable timestamp.

    Accepts a datetime (naive ones are taken as UTC), epoch seconds or milliseconds, an ISO 8601 string.

    >>> to_epoch_seconds("2024-01-01T00:01:00Z")
    1704067260.0
    >>> to_epoch_seconds(1704067260000)
    1704067260.0
    >>> to_epoch_seconds("yesterday") is None
    True
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        secs = float(value)
        if not math.isfinite(secs):
            return None
        secs = secs / 1000.0 if abs(secs) > 1e11 else secs
        # Years 1 to 9999, as datetime: anything else is not a timestamp.
        return secs if -62_135_596_800.0 <= secs <= 253_402_300_799.0 else None
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return to_epoch_seconds(dt)
    return None


def _count_of(x: Any) -> float | None:
    if not isinstance(x, dict):
        return None
    return _count_value(x.get("count"))


def _count_value(n: Any) -> float | None:
    """A count as a float, or None when it is not a usable one (missing, negative, NaN, not a number)."""
    if isinstance(n, bool) or not isinstance(n, int | float):
        return None
    n = float(n)
    if not math.isfinite(n) or n < 0:
        return None
    return n


def _log10_tail(z: float) -> float:
    """-log10 of the standard normal's upper tail beyond ``z`` (exact far out, where erfc underflows)."""
    if z < 30.0:
        p = 0.5 * math.erfc(z / math.sqrt(2.0))
        return -math.log10(p) if p > 0 else 300.0
    return (z * z / 2.0 + math.log(z * math.sqrt(2.0 * math.pi))) / _LN10


@functools.lru_cache(maxsize=4096)
def _z_of_surprise(s: float) -> float:
    """The z whose upper tail is ``10 ** -s``."""
    s = min(max(s, 0.0), 300.0)
    if s <= 0.0:
        return 0.0
    return -_NORMAL.inv_cdf(10.0 ** -s)


@functools.lru_cache(maxsize=256)
def _scales_of(scales_s: tuple[Any, ...], step: int) -> tuple[int, ...]:
    """Numbers of intervals summed per scale (1 and each of ``scales_s`` in intervals of ``step`` seconds)."""
    ks = {1}
    for s in scales_s:
        try:
            k = round(float(s) / step)
        except (TypeError, ValueError):
            continue
        if 1 < k <= 2880:
            ks.add(k)
    return tuple(sorted(ks))


@dataclass(slots=True)
class _Assessment:
    score: float
    surprise: float
    z: float
    scale: int
    observed: float
    expected: float
    expected_now: float
    z_now: float
    sigma_now: float
    long_ratio: float
    per_scale: list[tuple[float, float]] = field(default_factory=list)
    thetas: list[float] = field(default_factory=list)
    # ``upper`` is only an output (nothing learned depends on it): it is computed when first read, from the
    # calibration at assessment time (``rho``/``beta`` if the score needed them, else the tail's sums then).
    detector: SpikeDetector | None = None
    tail: tuple[float, float, float, float, int | None, int, int] | None = None
    rho: float | None = None
    beta: float = 0.0
    bonferroni: float = 0.0
    _upper: float | None = None

    @property
    def upper(self) -> float:
        """The count of this interval alone at which the score would reach 0.5 (``expected_upper``)."""
        if self._upper is None:
            self._upper = self._compute_upper()
        return self._upper

    def _compute_upper(self) -> float:
        det, mu1 = self.detector, self.expected_now
        if det is None:
            return 0.0
        if self.rho is None:
            assert self.tail is not None
            self.rho, self.beta = det._calibration_of(*self.tail)
        z_star = _z_of_surprise(round(max(det._threshold(self.rho, self.beta), 0.0) + self.bonferroni, 3))
        return max((math.sqrt(mu1 + _ANSCOMBE) + z_star * self.sigma_now) ** 2 - _ANSCOMBE, mu1)

    @classmethod
    def empty(cls, observed: float) -> _Assessment:
        """What an unusable point, or one the detector cannot judge yet, gives: zeros but its count."""
        return cls(score=0.0, surprise=0.0, z=0.0, scale=1, observed=observed, expected=0.0, expected_now=0.0,
                   z_now=0.0, sigma_now=0.0, long_ratio=1.0, _upper=0.0)

    def as_dict(self) -> dict[str, float]:
        return {"score": self.score, "z": self.z, "scale": self.scale, "observed": self.observed,
                "expected": self.expected, "expected_now": self.expected_now, "z_now": self.z_now,
                "expected_upper": self.upper, "surprise": self.surprise}


_EMPTY = {"score": 0.0, "z": 0.0, "scale": 1, "observed": 0.0, "expected": 0.0, "expected_now": 0.0,
          "z_now": 0.0, "expected_upper": 0.0, "surprise": 0.0}


@dataclass
class _Window:
    """Counts of the non-empty intervals among the last ``k`` (empty ones are implicit zeros)."""

    k: int
    items: deque[tuple[int, float]] = field(default_factory=deque)
    total: float = 0.0

    def evict(self, idx: int) -> None:
        while self.items and self.items[0][0] <= idx - self.k:
            self.total -= self.items.popleft()[1]
        if not self.items:
            self.total = 0.0  # no drift from repeated float subtraction

    def push(self, idx: int, n: float) -> None:
        self.items.append((idx, n))
        self.total += n


@dataclass
class _State:
    """Everything a SpikeDetector learns, built on its first usable point."""

    rates: SeasonalRates | None = None
    pending: list[tuple[int, float]] = field(default_factory=list)  # points before the interval is known
    windows: list[_Window] = field(default_factory=list)
    # Overdispersion per window scale: Var(sqrt(count)) = (1 + theta * mean) / 4, age-weighted.
    theta_num: list[float] = field(default_factory=list)
    theta_den: list[float] = field(default_factory=list)
    theta_t: int = 0
    # The tail of surprises: clusters (runs above the tail start) per second of exposure, and their excesses.
    clusters: float = 0.0
    exact: float = 0.0
    excess: float = 0.0
    exposure_s: float = 0.0
    calib_t: int | None = None
    cluster_max: float | None = None
    # A lasting rise: since when the score has stayed at or above 0.5, and when a new level was accepted.
    raised_since: int | None = None
    raised_obs: float = 0.0
    raised_exp: float = 0.0
    adapted_at: int | None = None


class SpikeDetector(base.AnomalyDetector):
    """Online, seasonal detector of upward spikes in counts per interval, calibrated to be rare.

    **Expectation.** Counts per interval are predicted as a level times an hour-of-week shape (shrunk
    towards hour-of-day and day-of-week effects while little has been seen), both learned as age-weighted
    sums in event time. An empty interval only moves the clock, so a gap of empty intervals costs O(1)
    whatever its length (:mod:`models._spike_rates`), and the detector's state is the same as if every
    zero had been learned one by one.

    **Surprise.** The count of the interval, and the sums of the last few intervals (``scales_s``: a
    quarter of an hour, an hour, four hours — the last one is the level-shift test), are compared with
    their expectations on Anscombe's square-root scale, with an overdispersion learned per scale
    (``Var = (1 + theta * mean) / 4``). Each gives the -log10 of a Gaussian tail probability; the largest,
    less a Bonferroni term for the number of scales, is the surprise.

    **Rarity.** Heavy-tailed real traffic has surprising bursts every day. The detector learns the tail
    of its own surprises: runs of surprise above ``tail_start`` (clusters) per unit of time, and an
    exponential tail for their peaks (mean excess), from which it knows how often a surprise this large
    happens. The score is ``R / (R + R(s))`` where ``R(s)`` is the learned number of clusters a week
    reaching surprise ``s`` and ``R = alerts_per_week``: 0.5 exactly when such a surprise is expected
    ``alerts_per_week`` times a week, towards 1 as it gets rarer, 0 at or below the expectation. Clusters
    that scored 0.5 or more are learned as just reaching the threshold, so one huge event does not blind
    the detector for weeks.

    **Robustness.** Counts are learned winsorised at ``clip`` sigmas above the expectation, so a spike
    does not teach that spikes are normal; when the score stays at 0.5 or more for ``adapt_after_h``
    hours the level is reset to the new traffic (a level shift, not a spike) and learned as it comes.
    Counts that are missing, negative, NaN or not numbers, and timestamps that cannot be read, score 0
    and are not learned. A count of 0 scores 0 and only moves the clock.

    Parameters
    ----------
    interval_s
        Length of an interval in seconds; None infers it from the shortest spacing among the first
        points (snapped to a length that divides an hour or a week: 1, 5, 15 minutes, 1 hour, a day...).
    alerts_per_week
        How often a week the learned tail expects ordinary traffic to reach a score of 0.5. The tail is
        exponential, so on heavy-tailed traffic the realised rate is higher: at 0.25, benchmarks/spikes.py
        measures 0.8 alerts per series a week outside incidents, on simulated and on real series.
    scales_s
        Durations, in seconds, of the sums of intervals tested besides the single interval.
    season_halflife_d
        Half-life, in days of event time, of the hour-of-week shape.
    level_halflife_h
        Half-life, in hours, of the level.
    fast_halflife_h
        Half-life, in hours, of the fast level, trusted while the series is young.
    warmup_h
        The spread is inflated by sqrt(1 + warmup_h / hours seen): little data, little trust.
    clip
        Counts are learned at most this many sigmas above their expectation.
    adapt_after_h
        Hours of scores at 0.5 or more after which the new level is accepted.
    tail_start
        Surprise (-log10 p) above which a run of intervals is a cluster of the learned tail.
    calibration_halflife_d
        Half-life, in days, of the learned tail.
    tz
        Time zone whose hours and weekdays the seasonality follows (an IANA name; its offset at the
        series' first point is kept).

    Examples
    --------
    >>> import random
    >>> from datetime import datetime, timedelta, UTC
    >>> rng = random.Random(42)
    >>> det = SpikeDetector()
    >>> start = datetime(2024, 1, 1, tzinfo=UTC)
    >>> for i in range(28 * 24):  # four weeks of hourly counts with a daily cycle
    ...     ts = start + timedelta(hours=i)
    ...     mean = 20 + 15 * math.cos(2 * math.pi * ts.hour / 24)
    ...     det.learn_one({"count": sum(rng.random() < mean / 100 for _ in range(100)), "ts": ts})
    >>> ts = start + timedelta(days=28)  # the next hour, the daily peak: 35 on average
    >>> round(det.expected_one({"ts": ts}))
    34
    >>> det.score_one({"count": 40, "ts": ts}) < 0.5
    True
    >>> det.score_one({"count": 120, "ts": ts}) > 0.5
    True
    >>> det.score_one({"count": float("nan"), "ts": ts})
    0.0
    """

    def __init__(
        self,
        interval_s: float | None = None,
        alerts_per_week: float = 0.25,
        scales_s: tuple[float, ...] = (900.0, 3600.0, 14400.0),
        season_halflife_d: float = 14.0,
        level_halflife_h: float = 24.0,
        fast_halflife_h: float = 2.0,
        warmup_h: float = 6.0,
        clip: float = 3.0,
        adapt_after_h: float = 12.0,
        tail_start: float = 4.0,
        calibration_halflife_d: float = 28.0,
        tz: str = "UTC",
    ) -> None:
        self.interval_s = interval_s
        self.alerts_per_week = alerts_per_week
        self.scales_s = scales_s
        self.season_halflife_d = season_halflife_d
        self.level_halflife_h = level_halflife_h
        self.fast_halflife_h = fast_halflife_h
        self.warmup_h = warmup_h
        self.clip = clip
        self.adapt_after_h = adapt_after_h
        self.tail_start = tail_start
        self.calibration_halflife_d = calibration_halflife_d
        self.tz = tz
        self._state: _State | None = None

    @classmethod
    def _unit_test_params(cls):  # type: ignore[override]
        yield {}
        yield {"interval_s": 3600.0, "alerts_per_week": 1.0, "scales_s": (7200.0,), "season_halflife_d": 7.0,
               "tz": "Europe/Berlin"}

    # -- set-up --------------------------------------------------------------------------------------

    def _offset(self, t: float) -> int:
        if self.tz in ("UTC", "utc", ""):
            return 0
        try:
            off = datetime.fromtimestamp(t, tz=ZoneInfo(self.tz)).utcoffset()
        except (ZoneInfoNotFoundError, ValueError, OverflowError, OSError):
            logger.warning("unknown time zone %r, counting hours in UTC", self.tz)
            return 0
        return int(off.total_seconds()) if off is not None else 0

    def _new_rates(self, step: int, t: int) -> SeasonalRates:
        h = 3600.0
        rates = SeasonalRates(
            step=step, offset=self._offset(float(t)),
            season_halflife_s=max(self.season_halflife_d, 0.01) * 86400.0,
            level_halflife_s=max(self.level_halflife_h, 0.01) * h,
            fast_halflife_s=max(self.fast_halflife_h, 0.01) * h,
            young_s=6.0 * h,
        )
        rates.start(t - step)
        return rates

    def _scales(self, step: int) -> list[int]:
        try:
            return list(_scales_of(self.scales_s, step))
        except TypeError:  # scales given in a list (unhashable): not cached
            return list(_scales_of.__wrapped__(self.scales_s, step))

    def _setup(self, st: _State, step: int, t: int) -> None:
        st.rates = self._new_rates(step, t)
        st.windows = [_Window(k) for k in self._scales(step)]
        st.theta_num = [0.0] * len(st.windows)
        st.theta_den = [0.0] * len(st.windows)
        st.theta_t = t

    def rescale(self, interval_s: float) -> None:
        """Change the interval length of a learned detector: the rates are kept, the window sums restart."""
        st = self._state
        step = snap_interval(interval_s)
        self.interval_s = float(step)
        if st is None or st.rates is None or st.rates.step == step:
            return
        st.rates.rescale(step)
        st.windows = [_Window(k) for k in self._scales(step)]
        st.theta_num = [0.0] * len(st.windows)
        st.theta_den = [0.0] * len(st.windows)
        st.cluster_max = None
        st.raised_since = None

    @property
    def interval(self) -> int | None:
        """The interval length in use (seconds), once known."""
        st = self._state
        return st.rates.step if st is not None and st.rates is not None else None

    # -- the River protocol --------------------------------------------------------------------------

    def _place(self, x: Any) -> tuple[float, int] | None:
        n = _count_of(x)
        if n is None:
            return None
        t = to_epoch_seconds(x.get("ts"))
        if t is None:
            return None
        return n, int(math.floor(t))

    def score_one(self, x: dict[Any, Any]) -> float:
        """Spike score in [0, 1): 0 at or below the expectation, 0.5 for a surprise as rare as
        ``alerts_per_week`` a week."""
        return float(self.assess_one(x)["score"])

    def assess_one(self, x: dict[str, Any]) -> dict[str, float]:
        """Why a point scores what it scores, without learning it.

        Returns ``score``, ``surprise`` (-log10 p), ``z`` and ``scale`` (sigmas above the expectation
        and number of intervals summed, at the deciding scale), ``observed`` and ``expected`` (sums over
        those intervals), ``expected_now``, ``z_now`` and ``expected_upper`` (this interval alone: the
        count expected, its z, and the count at which the score would reach 0.5). Unusable points give zeros.
        """
        placed = self._place(x)
        st = self._state
        if placed is None or st is None or st.rates is None or not st.rates.started:
            out = dict(_EMPTY)
            out["observed"] = placed[0] if placed else 0.0
            return out
        n, t = placed
        a = self._assess(st, n, t, peek=True)
        return a.as_dict()

    def expected_one(self, x: dict[str, Any]) -> float:
        """The count expected in the interval starting at ``x["ts"]`` from what has been learned so far
        (intervals not yet seen are not taken for empty ones); 0.0 before any data."""
        t = to_epoch_seconds(x.get("ts")) if isinstance(x, dict) else None
        st = self._state
        if t is None or st is None or st.rates is None or not st.rates.started:
            return 0.0
        r = st.rates
        return r.level() * float(r.shape[r.bucket(int(math.floor(t)))])

    def learn_one(self, x: dict[Any, Any]) -> None:
        self.assess_and_learn_one(x)

    def assess_and_learn_one(self, x: dict[str, Any]) -> dict[str, float]:
        """:meth:`assess_one` then :meth:`learn_one`, computing the assessment once (the alerter's path)."""
        placed = self._place(x)
        if placed is None:
            out = dict(_EMPTY)
            n = _count_of(x)
            out["observed"] = n or 0.0
            return out
        return self._assess_and_learn(*placed).as_dict()

    def assess_and_learn(self, count: float, t: int) -> dict[str, float]:
        """``assess_and_learn_one({"count": count, "ts": t})`` for a count and a whole epoch second already
        read (no dict to build and parse)."""
        return self.learn_assessed(count, t).as_dict()

    def learn_assessed(self, count: float, t: int) -> _Assessment:
        """:meth:`assess_and_learn` giving the assessment itself (the alerter's path): its ``upper``
        (``expected_upper``) is computed only if read. Anything unusual takes the general path."""
        if type(count) is float and 0.0 <= count < math.inf and type(t) is int and -1e11 <= t <= 1e11:
            return self._assess_and_learn(count, t)
        x = {"count": count, "ts": t}
        placed = self._place(x)
        if placed is None:
            return _Assessment.empty(_count_of(x) or 0.0)
        return self._assess_and_learn(*placed)

    def _assess_and_learn(self, n: float, t: int) -> _Assessment:
        if self._state is None:
            self._state = _State()
        st = self._state
        if st.rates is None:
            if self.interval_s is not None and self.interval_s > 0:
                self._setup(st, snap_interval(float(self.interval_s)), t)
            else:
                st.pending.append((t, n))
                if len(st.pending) < _INFER_POINTS:
                    return _Assessment.empty(n)
                points = sorted(st.pending)
                spacings = [b[0] - a[0] for a, b in zip(points, points[1:], strict=False) if b[0] > a[0]]
                if not spacings:
                    st.pending = points[-1:]
                    return _Assessment.empty(n)
                st.pending = []
                self._setup(st, snap_interval(min(spacings)), points[0][0])
                for tp, np_ in points[:-1]:
                    self._learn(st, np_, tp)
                t, n = points[-1]
        a = self._learn(st, n, t)
        return a if a is not None else _Assessment.empty(n)

    # -- internals -----------------------------------------------------------------------------------

    def _calibration(self, st: _State, t: int, step: int) -> tuple[float, float]:
        """(clusters per second reaching the tail start, mean excess of their peaks), at time ``t``."""
        return self._calibration_of(st.exposure_s, st.clusters, st.exact, st.excess, st.calib_t, t, step)

    def _calibration_of(self, exposure: float, clusters: float, exact: float, excess: float, calib_t: int | None,
                        t: int, step: int) -> tuple[float, float]:
        """:meth:`_calibration` from the tail's sums (``_State.exposure_s`` ... ``calib_t``)."""
        u = self.tail_start
        prior_n = 2.0
        prior_rate = 10.0 ** -u / step  # a well-specified model: P(surprise > u) per interval
        if calib_t is not None and t > calib_t:
            h = max(self.calibration_halflife_d, 0.01) * 86400.0
            f = 2.0 ** (-(t - calib_t) / h)
            exposure = exposure * f + h / math.log(2.0) * (1.0 - f)
            clusters *= f
            exact *= f
            excess *= f
        rho = (clusters + prior_n) / (exposure + prior_n / prior_rate)
        # Maximum likelihood of an exponential tail with censored peaks: the summed excesses over the
        # number of peaks seen in full (an alerted cluster only says "at least the threshold").
        beta = (excess + prior_n * _BETA_PRIOR) / (exact + prior_n)
        return rho, beta

    def _rarity(self, surprise: float, rho: float, beta: float) -> float:
        """Clusters a week expected to reach ``surprise``."""
        return rho * WEEK_S * math.exp(-(surprise - self.tail_start) / max(beta, 1e-6))

    def _threshold(self, rho: float, beta: float) -> float:
        """The surprise at which the score is 0.5."""
        target = max(self.alerts_per_week, 1e-9)
        return self.tail_start + beta * math.log(max(rho * WEEK_S / target, 1e-300))

    def _assess(self, st: _State, n: float, t: int, peek: bool) -> _Assessment:
        r = st.rates
        assert r is not None
        step = r.step
        late = t < r.t_last + step
        lvl = r.level() if late else r.level(t)
        mu1 = lvl * float(r.shape[r.bucket(t)])
        seen_h = max(r.seen_s(t), step) / 3600.0
        inflate = math.sqrt(1.0 + max(self.warmup_h, 0.0) / seen_h)
        thetas = [max(num / (den + _THETA_PRIOR), 0.0) for num, den in zip(st.theta_num, st.theta_den, strict=True)]
        sig1 = 0.5 * math.sqrt(1.0 + thetas[0] * mu1) * inflate
        nscales = len(st.windows)
        bonferroni = math.log10(nscales) if nscales > 1 else 0.0
        root_mu1 = math.sqrt(mu1 + _ANSCOMBE)
        z1 = (math.sqrt(n + _ANSCOMBE) - root_mu1) / sig1
        # The calibration is needed for a score above 0 (and for ``upper``, lazily, from the same sums).
        best = _Assessment(score=0.0, surprise=0.0, z=z1, scale=1, observed=n, expected=mu1,
                           expected_now=mu1, z_now=z1, sigma_now=sig1, long_ratio=1.0, thetas=thetas,
                           detector=self, bonferroni=bonferroni,
                           tail=(st.exposure_s, st.clusters, st.exact, st.excess, st.calib_t, t, step))
        if n <= 0.0 or r.d_slow <= 0.0:
            return best
        idx = (t - r.t_first) // step
        best_s = -1.0
        per_scale = best.per_scale
        if late:
            pairs = [(n, mu1)]
        else:
            ks = [w.k for w in st.windows]
            sums = r.shape_sums(t, ks)
            pairs = []
            for w, shape_sum in zip(st.windows, sums, strict=True):
                if w.k == 1:
                    pairs.append((n, mu1))
                    continue
                prior = sum(c for i, c in w.items if i > idx - w.k) if peek else w.total
                pairs.append((n + prior, lvl * shape_sum))
        for j, (obs, exp) in enumerate(pairs):
            per_scale.append((obs, exp))
            if obs <= exp:
                continue
            sig = 0.5 * math.sqrt(1.0 + thetas[j] * exp) * inflate
            z = (math.sqrt(obs + _ANSCOMBE) - math.sqrt(exp + _ANSCOMBE)) / sig
            s = _log10_tail(z)
            if s > best_s:
                best_s = s
                best.z, best.scale, best.observed, best.expected = z, st.windows[j].k, obs, exp
        long_obs, long_exp = pairs[-1]
        best.long_ratio = long_obs / long_exp if long_exp > 0 else math.inf
        if best_s <= 0.0:
            return best
        surprise = max(best_s - bonferroni, 0.0)
        best.surprise = surprise
        if surprise > 0.0:
            rho, beta = best.rho, best.beta = self._calibration(st, t, step)
            target = max(self.alerts_per_week, 1e-9)
            best.score = target / (target + self._rarity(surprise, rho, beta))
        return best

    def _learn(self, st: _State, n: float, t: int) -> _Assessment | None:
        r = st.rates
        assert r is not None
        if not r.started:
            r.start(t - r.step)
        step = r.step
        if t < r.t_last + step:
            # A late point (or a second one in the same interval): its counts join their interval.
            if t >= r.t_first and n > 0:
                a = self._assess(st, n, t, peek=False)
                r.add_count(t, min(n, self._cap(a)))
                return a
            return None
        r.advance(t)
        if n <= 0.0:
            r.account(t, 0.0)
            return None
        idx = (t - r.t_first) // step
        for w in st.windows:
            if w.items and w.items[0][0] <= idx - w.k:
                w.evict(idx)
        a = self._assess(st, n, t, peek=False)
        adapting = st.adapted_at is not None and t - st.adapted_at < self.adapt_after_h * 3600.0
        r.account(t, n if adapting else min(n, self._cap(a)))
        for w in st.windows:
            w.push(idx, n)
        self._learn_theta(st, t, a)
        self._learn_tail(st, t, step, a)
        self._learn_shift(st, t, n, a)
        r.refresh_shape(t)
        return a

    def _cap(self, a: _Assessment) -> float:
        root = math.sqrt(a.expected_now + _ANSCOMBE) + self.clip * a.sigma_now
        return max(root * root - _ANSCOMBE, a.expected_now)

    def _learn_theta(self, st: _State, t: int, a: _Assessment) -> None:
        h = max(self.season_halflife_d, 0.01) * 86400.0
        f = 2.0 ** (-(t - st.theta_t) / h) if t > st.theta_t else 1.0
        st.theta_t = max(st.theta_t, t)
        for j, (obs, exp) in enumerate(a.per_scale):
            st.theta_num[j] *= f
            st.theta_den[j] *= f
            if exp < 3.0:
                continue
            sig = 0.5 * math.sqrt(1.0 + a.thetas[j] * exp)
            e = math.sqrt(obs + _ANSCOMBE) - math.sqrt(exp + _ANSCOMBE)
            e = max(-4.0 * sig, min(4.0 * sig, e))
            # 4 e^2 - 1 is unbiased for theta * mean (it may be negative; theta is clamped where used).
            st.theta_num[j] += (4.0 * e * e - 1.0) / exp
            st.theta_den[j] += 1.0

    def _learn_tail(self, st: _State, t: int, step: int, a: _Assessment) -> None:
        h = max(self.calibration_halflife_d, 0.01) * 86400.0
        if st.calib_t is None:
            st.calib_t = t - step
        if t > st.calib_t:
            f = 2.0 ** (-(t - st.calib_t) / h)
            st.exposure_s = st.exposure_s * f + h / math.log(2.0) * (1.0 - f)
            st.clusters *= f
            st.exact *= f
            st.excess *= f
            st.calib_t = t
        u = self.tail_start
        if a.surprise > u:
            st.cluster_max = a.surprise if st.cluster_max is None else max(st.cluster_max, a.surprise)
            return
        if st.cluster_max is not None:
            rho, beta = self._calibration(st, t, step)
            # A cluster that alerted is learned as reaching at least the threshold (censored): one huge
            # event must not make the next one look ordinary.
            cap = max(self._threshold(rho, beta), u)
            if _CENSOR and st.cluster_max > cap:
                st.excess += cap - u
            else:
                st.excess += st.cluster_max - u
                st.exact += 1.0
            st.clusters += 1.0
            st.cluster_max = None

    def _learn_shift(self, st: _State, t: int, n: float, a: _Assessment) -> None:
        # A rise starts with a score of 0.5 and lasts while the traffic stays above what was expected
        # (one quieter minute in a new level must not restart the clock).
        if a.score < 0.5 and (st.raised_since is None or n <= a.expected_now):
            st.raised_since = None
            return
        if st.raised_since is None:
            st.raised_since = t
            st.raised_obs = st.raised_exp = 0.0
        st.raised_obs += n
        st.raised_exp += a.expected_now
        if t - st.raised_since >= self.adapt_after_h * 3600.0 and st.raised_exp > 0:
            # The traffic since the rise began, over what was expected then, is the new level.
            r = st.rates
            assert r is not None
            r.scale_level(min(max(st.raised_obs / st.raised_exp, 1.0), 50.0))
            st.adapted_at = t
            st.raised_since = None


def __getattr__(name: str) -> Any:
    # The alerter lives in models.spike_alerter (which imports this module); it is still importable from
    # here, where it has always been imported from.
    if name in ("SEVERITIES", "SpikeAlerter", "SpikeObservation"):
        from models import spike_alerter

        return getattr(spike_alerter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
