"""Spike detection on mention counts per interval: a seasonal online detector and the alerter around it.

:class:`SpikeDetector` follows River's anomaly protocol (``learn_one(x)`` / ``score_one(x)``) on
``x = {"count": n, "ts": datetime}``. :class:`SpikeAlerter` keeps one detector per series
(brand x channel, or brand x topic) and turns scores into alert dicts shaped like ``stream.schema.Alert``,
one incident per spike: opened once, updated while it grows, resolved when it is over.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from river import base

__all__ = ["SEVERITIES", "SpikeAlerter", "SpikeDetector", "SpikeObservation", "to_epoch_seconds"]

logger = logging.getLogger(__name__)

#: Severity levels of a spike alert, mildest first.
SEVERITIES = ("low", "medium", "high")

# Anscombe's transform makes Poisson counts roughly Gaussian with variance 1/4, so one scale fits
# a quiet forum at 0.2 mentions a minute and a viral brand at 2,000.
_ANSCOMBE = 0.375
_POISSON_SIGMA = 0.5
# For a Gaussian, E|r| = sigma * sqrt(2 / pi): this turns a mean absolute residual into a sigma.
_MAD_TO_SIGMA = math.sqrt(math.pi / 2)
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


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
    n = x.get("count")
    if isinstance(n, bool) or not isinstance(n, int | float):
        return None
    n = float(n)
    if not math.isfinite(n) or n < 0:
        return None
    return n


class SpikeDetector(base.AnomalyDetector):
    """Online, seasonality-aware detector of upward spikes in counts per interval.

    The count is moved to Anscombe's square-root scale, where Poisson noise has a constant spread, and
    predicted as ``level + hour_of_day + day_of_week + hour_of_week`` effects. Every part is an
    exponentially weighted mean in event time, so slow growth moves the level and irregular timestamps
    are fine. The residual divided by a robust scale (mean absolute residual, per hour of day) is a
    z-score. The same is done for the sums of the last few windows (``scales``), so a quiet series in
    which an incident brings 3 mentions a minute instead of 0.2 is caught within minutes even though
    no single minute is extreme. A single window must reach ``point_threshold`` sigmas (single-window
    blips are common in busy channels), a sum of windows ``threshold`` sigmas. The score is
    ``z² / (z² + 1)`` of the largest of those z-scores, each divided by its threshold: it lies in [0, 1)
    and crosses 0.5 exactly at a threshold; counts at or below the expectation score 0.

    A spike must not teach the detector that spikes are normal: points scoring 0.5 or more are not
    learned, and the others are learned with residuals clipped at ``clip`` sigmas. When the score stays
    above 0.5 for ``adapt_after_h`` hours, the detector accepts the new level (a level shift, not a spike).

    Counts that are missing, negative, NaN or not numbers, and timestamps that cannot be read, score 0
    and are not learned.

    Parameters
    ----------
    threshold
        z-score (in robust sigmas) of a sum of windows at which the score reaches 0.5.
    point_threshold
        z-score of a single window at which the score reaches 0.5.
    scales
        Numbers of consecutive windows whose sums are tested besides the single window.
    level_halflife_h
        Half-life, in hours of event time, of the level (the deseasonalised mean).
    season_halflife
        Half-life of the seasonal effects in cycles: days for the hour of day, weeks for the day of week
        and the hour of week.
    sigma_halflife_h
        Half-life, in hours of event time, of the residual scales.
    clip
        Residuals are clipped at this many sigmas before they are learned.
    warmup_h
        After this many hours of data the uncertainty is still inflated by sqrt(2); it shrinks as more is seen.
    adapt_after_h
        Hours of uninterrupted anomalies after which the detector learns them.
    min_sigma
        Floor of the residual scale on the square-root scale (0.5 is Poisson noise).
    tz
        Time zone in which hours and weekdays are counted (an IANA name).

    Examples
    --------
    >>> import random
    >>> from datetime import datetime, timedelta, UTC
    >>> rng = random.Random(42)
    >>> det = SpikeDetector()
    >>> start = datetime(2024, 1, 1, tzinfo=UTC)
    >>> for i in range(28 * 24):  # four weeks of hourly counts with a daily cycle
    ...     ts = start + timedelta(hours=i)
    ...     mean = 20 + 15 * math.sin(2 * math.pi * ts.hour / 24)
    ...     det.learn_one({"count": sum(rng.random() < mean / 100 for _ in range(100)), "ts": ts})
    >>> ts = start + timedelta(days=28, hours=6)  # the daily peak: 35 on average
    >>> round(det.expected_one({"ts": ts}))
    33
    >>> det.score_one({"count": 40, "ts": ts}) < 0.5
    True
    >>> det.score_one({"count": 120, "ts": ts}) > 0.5
    True
    >>> det.score_one({"count": float("nan"), "ts": ts})
    0.0
    """

    def __init__(
        self,
        threshold: float = 4.0,
        point_threshold: float = 5.0,
        scales: tuple[int, ...] = (5, 15),
        level_halflife_h: float = 24.0,
        season_halflife: float = 6.0,
        sigma_halflife_h: float = 72.0,
        clip: float = 3.0,
        warmup_h: float = 24.0,
        adapt_after_h: float = 6.0,
        min_sigma: float = _POISSON_SIGMA,
        tz: str = "UTC",
    ) -> None:
        self.threshold = threshold
        self.point_threshold = point_threshold
        self.scales = scales
        self.level_halflife_h = level_halflife_h
        self.season_halflife = season_halflife
        self.sigma_halflife_h = sigma_halflife_h
        self.clip = clip
        self.warmup_h = warmup_h
        self.adapt_after_h = adapt_after_h
        self.min_sigma = min_sigma
        self.tz = tz
        self._state: _SeasonalState | None = None

    @classmethod
    def _unit_test_params(cls):  # type: ignore[override]
        yield {}
        yield {"threshold": 3.0, "scales": (3,), "level_halflife_h": 6.0, "season_halflife": 3.0,
               "tz": "Europe/Berlin"}

    # -- helpers -----------------------------------------------------------------------------------------

    def _zone(self) -> ZoneInfo | None:
        if self.tz in ("UTC", "utc", ""):
            return None
        try:
            return ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            logger.warning("unknown time zone %r, counting hours in UTC", self.tz)
            return None

    def _scales(self) -> tuple[int, ...]:
        try:
            return tuple(sorted({int(k) for k in self.scales if 1 < int(k) <= 1440}))
        except (TypeError, ValueError):
            return ()

    def _place(self, x: Any) -> tuple[float, float, int, int] | None:
        """(count, epoch seconds, hour of day, day of week) or None for a point that cannot be used."""
        n = _count_of(x)
        if n is None:
            return None
        t = to_epoch_seconds(x.get("ts"))
        if t is None:
            return None
        zone = self._state.zone if self._state is not None else self._zone()
        if zone is None:
            secs = int(t // 1)
            hour = (secs // 3600) % 24
            dow = (secs // 86400 + _EPOCH_WEEKDAY) % 7
        else:
            try:
                local = datetime.fromtimestamp(t, tz=zone)
            except (OverflowError, OSError, ValueError):
                return None
            hour, dow = local.hour, local.weekday()
        return n, t, hour, dow

    def _assess(self, n: float, hour: int, dow: int) -> _Assessment | None:
        s = self._state
        if s is None or s.level_den <= 0:
            return None
        y_hat = s.predict(hour, dow)
        inflate = s.inflation(self)
        sigma = s.sigma(hour, self) * inflate
        y = math.sqrt(n + _ANSCOMBE)
        mu = max(y_hat * y_hat - _ANSCOMBE, 0.0)
        z1 = (y - y_hat) / sigma
        best = _Assessment(z=z1, rel=z1 / max(self.point_threshold, 1e-9), scale=1, observed=n,
                           expected=_from_anscombe(y_hat), y_hat=y_hat, sigma=sigma, mu=mu, z_now=z1)
        for k in s.scales:
            if len(s.recent_n) < k - 1:
                break
            obs = n + sum(s.recent_n[len(s.recent_n) - (k - 1):])
            exp = mu + sum(s.recent_mu[len(s.recent_mu) - (k - 1):])
            stats = s.scale_stats.get(k)
            bias, sig_k = stats.get(self.min_sigma) if stats is not None else (0.0, self.min_sigma)
            zk = (math.sqrt(obs + _ANSCOMBE) - math.sqrt(exp + _ANSCOMBE) - bias) / (sig_k * inflate)
            rel = zk / max(self.threshold, 1e-9)
            if rel > best.rel:
                best = _Assessment(z=zk, rel=rel, scale=k, observed=obs, expected=exp, y_hat=y_hat,
                                   sigma=sigma, mu=mu, z_now=z1)
        return best

    # -- River protocol ----------------------------------------------------------------------------------

    def assess_one(self, x: dict[str, Any]) -> dict[str, float]:
        """Why a point scores what it scores, without learning it.

        Returns ``score``, ``z`` (sigmas above the expectation at the deciding scale), ``scale`` (number
        of windows summed), ``observed`` and ``expected`` (sums over that many windows), ``expected_now``
        and ``z_now`` (the count expected for this window alone, and its z). Unusable points give zeros.
        """
        placed = self._place(x)
        a = self._assess(placed[0], placed[2], placed[3]) if placed is not None else None
        if a is None:
            return {"score": 0.0, "z": 0.0, "scale": 1, "observed": placed[0] if placed else 0.0,
                    "expected": 0.0, "expected_now": 0.0, "z_now": 0.0}
        return {"score": _score_of_rel(a.rel), "z": a.z, "scale": a.scale, "observed": a.observed,
                "expected": a.expected, "expected_now": _from_anscombe(a.y_hat), "z_now": a.z_now}

    def score_one(self, x: dict[Any, Any]) -> float:
        """Spike score in [0, 1): 0 at or below the expectation, 0.5 at a threshold."""
        placed = self._place(x)
        if placed is None:
            return 0.0
        a = self._assess(placed[0], placed[2], placed[3])
        return 0.0 if a is None else _score_of_rel(a.rel)

    def expected_one(self, x: dict[str, Any]) -> float:
        """The count expected at ``x["ts"]`` (``x["count"]`` is not needed); 0.0 before any data."""
        t = to_epoch_seconds(x.get("ts")) if isinstance(x, dict) else None
        placed = self._place({"count": 0, "ts": t}) if t is not None else None
        if placed is None or self._state is None or self._state.level_den <= 0:
            return 0.0
        return _from_anscombe(self._state.predict(placed[2], placed[3]))

    def learn_one(self, x: dict[Any, Any]) -> None:
        self._learn(x)

    def assess_and_learn_one(self, x: dict[str, Any]) -> dict[str, float]:
        """:meth:`assess_one` then :meth:`learn_one`, computing the assessment once (the alerter's path)."""
        a = self._learn(x)
        if a is None:
            n = _count_of(x)
            return {"score": 0.0, "z": 0.0, "scale": 1, "observed": n or 0.0, "expected": 0.0,
                    "expected_now": 0.0, "z_now": 0.0}
        return {"score": _score_of_rel(a.rel), "z": a.z, "scale": a.scale, "observed": a.observed,
                "expected": a.expected, "expected_now": _from_anscombe(a.y_hat), "z_now": a.z_now}

    def _learn(self, x: dict[str, Any]) -> _Assessment | None:
        placed = self._place(x)
        if placed is None:
            return None
        n, t, hour, dow = placed
        if self._state is None:
            self._state = _SeasonalState(zone=self._zone(), scales=self._scales())
        s = self._state
        y = math.sqrt(n + _ANSCOMBE)
        if s.level_den <= 0:
            s.first(y, t)
            s.remember(n, max(y * y - _ANSCOMBE, 0.0))
            return None

        dt_h = (t - s.last_ts) / 3600.0 if t > s.last_ts else 0.0
        if dt_h > 0:
            s.observe_interval(dt_h)
        w = min(dt_h, s.interval_h) if dt_h > 0 else s.interval_h

        a = self._assess(n, hour, dow)
        assert a is not None
        s.advance(t, dt_h, self)
        if a.rel >= 1.0:
            s.run_h += w
            if s.run_h < self.adapt_after_h:
                # Inside a spike: only the clock and the recent windows move, not the baseline.
                s.remember(n, a.mu)
                return a
            r = y - a.y_hat  # a shift that lasts: learn it as it is
        else:
            s.run_h = 0.0
            lim = self.clip * a.sigma
            r = max(-lim, min(lim, y - a.y_hat))
        s.update(a.y_hat + r, abs(r), w, hour, dow, self)
        s.learn_scales(n, a.mu, w, self)
        s.remember(n, a.mu)
        return a


def _score_of_rel(rel: float) -> float:
    # rel = z / threshold; z² / (z² + threshold²) written in it.
    if not rel > 0:
        return 0.0
    if not math.isfinite(rel):
        return 1.0
    return rel * rel / (rel * rel + 1.0)


def _rel_of_score(score: float) -> float:
    # Inverse of _score_of_rel: how many thresholds above the expectation a score means.
    if score <= 0:
        return 0.0
    if score >= 1:
        return math.inf
    return math.sqrt(score / (1.0 - score))


def _from_anscombe(y_hat: float) -> float:
    # Inverse of the Anscombe transform; below one mention it bends so that a run of zeros expects 0.
    v = y_hat * y_hat - _ANSCOMBE
    if v <= 0:
        return 0.0
    return v + 0.25 * min(1.0, v)


@dataclass(slots=True)
class _Assessment:
    z: float
    rel: float
    scale: int
    observed: float
    expected: float
    y_hat: float
    sigma: float
    mu: float
    z_now: float


@dataclass
class _ScaleStats:
    """Bias and spread of the residual of sums of k windows, on the square-root scale."""

    bias_num: float = 0.0
    abs_num: float = 0.0
    den: float = 0.0

    _PRIOR = 2.0  # hours of Poisson-like behaviour assumed before any data

    def get(self, min_sigma: float) -> tuple[float, float]:
        bias = self.bias_num / (self.den + self._PRIOR)
        mad = (self.abs_num + self._PRIOR * min_sigma / _MAD_TO_SIGMA) / (self.den + self._PRIOR)
        return bias, max(_MAD_TO_SIGMA * mad, min_sigma)

    def learn(self, r: float, w: float, decay: float, clip: float, min_sigma: float) -> None:
        bias, sig = self.get(min_sigma)
        lim = clip * sig
        rc = max(-lim, min(lim, r - bias))
        self.bias_num = decay * self.bias_num + w * (bias + rc)
        self.abs_num = decay * self.abs_num + w * abs(rc)
        self.den = decay * self.den + w


@dataclass
class _SeasonalState:
    """The learned parts of a SpikeDetector, built on the first ``learn_one``."""

    zone: ZoneInfo | None = None
    scales: tuple[int, ...] = ()
    last_ts: float = 0.0
    interval_h: float = 1.0 / 60.0
    intervals_seen: int = 0
    seen_h: float = 0.0
    run_h: float = 0.0
    level_num: float = 0.0
    level_den: float = 0.0
    sig_num: float = 0.0
    sig_den: float = 0.0
    hod_num: list[float] = field(default_factory=lambda: [0.0] * 24)
    hod_den: list[float] = field(default_factory=lambda: [0.0] * 24)
    dow_num: list[float] = field(default_factory=lambda: [0.0] * 7)
    dow_den: list[float] = field(default_factory=lambda: [0.0] * 7)
    how_num: list[float] = field(default_factory=lambda: [0.0] * 168)
    how_den: list[float] = field(default_factory=lambda: [0.0] * 168)
    hsig_num: list[float] = field(default_factory=lambda: [0.0] * 24)
    hsig_den: list[float] = field(default_factory=lambda: [0.0] * 24)
    # Hours of data each bucket has ever seen (not decayed): the shrinkage below fades as they grow.
    hod_seen: list[float] = field(default_factory=lambda: [0.0] * 24)
    dow_seen: list[float] = field(default_factory=lambda: [0.0] * 7)
    how_seen: list[float] = field(default_factory=lambda: [0.0] * 168)
    # The last few windows (count, expected count), for the sums over several windows.
    recent_n: list[float] = field(default_factory=list)
    recent_mu: list[float] = field(default_factory=list)
    scale_stats: dict[int, _ScaleStats] = field(default_factory=dict)

    # Shrinkage of each seasonal effect towards 0, in hours of data of that bucket: an effect seen for
    # less than this is trusted only partly (hourly data give one point per bucket and day).
    _SHRINK_HOD = 1.0
    _SHRINK_DOW = 6.0
    _SHRINK_HOW = 2.0
    _SHRINK_SIGMA = 2.0
    _DOW_AFTER_H = 48.0
    _HOW_AFTER_H = 168.0

    def first(self, y: float, t: float) -> None:
        self.last_ts = t
        self.level_num = y * self.interval_h
        self.level_den = self.interval_h
        self.seen_h = self.interval_h

    def observe_interval(self, dt_h: float) -> None:
        # A robust running estimate of the sampling interval: gaps and bursts move it only a little.
        if self.intervals_seen == 0:
            self.interval_h = dt_h
        else:
            lo, hi = self.interval_h / 4.0, self.interval_h * 4.0
            self.interval_h += 0.05 * (min(hi, max(lo, dt_h)) - self.interval_h)
        self.intervals_seen += 1

    @staticmethod
    def _effect(num: float, den: float, seen: float, shrink: float) -> float:
        if den <= 0:
            return 0.0
        return num / den * seen / (seen + shrink)

    def effects(self, hour: int, dow: int) -> tuple[float, float, float]:
        hod = self._effect(self.hod_num[hour], self.hod_den[hour], self.hod_seen[hour], self._SHRINK_HOD)
        dw = self._effect(self.dow_num[dow], self.dow_den[dow], self.dow_seen[dow], self._SHRINK_DOW)
        i = dow * 24 + hour
        how = self._effect(self.how_num[i], self.how_den[i], self.how_seen[i], self._SHRINK_HOW)
        return hod, dw, how

    def predict(self, hour: int, dow: int) -> float:
        hod, dw, how = self.effects(hour, dow)
        return max(0.0, self.level_num / self.level_den + hod + dw + how)

    def sigma(self, hour: int, p: SpikeDetector) -> float:
        glob = self.sig_num / self.sig_den if self.sig_den > 0 else _POISSON_SIGMA / _MAD_TO_SIGMA
        local = (self.hsig_num[hour] + self._SHRINK_SIGMA * glob) / (self.hsig_den[hour] + self._SHRINK_SIGMA)
        return max(_MAD_TO_SIGMA * local, p.min_sigma, 1e-6)

    def inflation(self, p: SpikeDetector) -> float:
        # Little data, little trust: sqrt(2) wider after warmup_h hours, fading as more is seen.
        return math.sqrt(1.0 + max(p.warmup_h, 0.0) / max(self.seen_h, 1e-9))

    def remember(self, n: float, mu: float) -> None:
        keep = max(self.scales, default=1) - 1
        if keep <= 0:
            return
        self.recent_n.append(n)
        self.recent_mu.append(mu)
        if len(self.recent_n) > keep:
            del self.recent_n[0]
            del self.recent_mu[0]

    def learn_scales(self, n: float, mu: float, w: float, p: SpikeDetector) -> None:
        decay = 0.5 ** (w / max(p.sigma_halflife_h, 1e-6))
        for k in self.scales:
            if len(self.recent_n) < k - 1:
                break
            obs = n + sum(self.recent_n[len(self.recent_n) - (k - 1):])
            exp = mu + sum(self.recent_mu[len(self.recent_mu) - (k - 1):])
            stats = self.scale_stats.setdefault(k, _ScaleStats())
            r = math.sqrt(obs + _ANSCOMBE) - math.sqrt(exp + _ANSCOMBE)
            stats.learn(r, w, decay, p.clip, p.min_sigma)

    def advance(self, t: float, dt_h: float, p: SpikeDetector) -> None:
        if dt_h > 0:
            f = 0.5 ** (dt_h / p.level_halflife_h)
            self.level_num *= f
            self.level_den *= f
            g = 0.5 ** (dt_h / p.sigma_halflife_h)
            self.sig_num *= g
            self.sig_den *= g
            self.last_ts = t

    def update(self, y: float, abs_r: float, w: float, hour: int, dow: int, p: SpikeDetector) -> None:
        # Gauss-Seidel order, as Holt-Winters: the level first, then each effect on what is left.
        hod, dw, how = self.effects(hour, dow)
        self.level_num += w * (y - hod - dw - how)
        self.level_den += w
        level = self.level_num / self.level_den
        hl = max(p.season_halflife, 1e-3)
        # Each bucket's clock only runs while it is visited: an hour of day gets one hour per day.
        f_hour = 0.5 ** (w / hl)
        f_day = 0.5 ** (w / (24.0 * hl))
        i = dow * 24 + hour
        self.hod_num[hour] = f_hour * self.hod_num[hour] + w * (y - level - dw - how)
        self.hod_den[hour] = f_hour * self.hod_den[hour] + w
        self.hod_seen[hour] += w
        hod = self._effect(self.hod_num[hour], self.hod_den[hour], self.hod_seen[hour], self._SHRINK_HOD)
        # Finer effects start learning once the coarser ones have settled, or the first day's
        # transient (an unknown daily cycle) would be taken for a weekday or hour-of-week effect.
        if self.seen_h >= self._DOW_AFTER_H:
            self.dow_num[dow] = f_day * self.dow_num[dow] + w * (y - level - hod - how)
            self.dow_den[dow] = f_day * self.dow_den[dow] + w
            self.dow_seen[dow] += w
            dw = self._effect(self.dow_num[dow], self.dow_den[dow], self.dow_seen[dow], self._SHRINK_DOW)
        if self.seen_h >= self._HOW_AFTER_H:
            self.how_num[i] = f_hour * self.how_num[i] + w * (y - level - hod - dw)
            self.how_den[i] = f_hour * self.how_den[i] + w
            self.how_seen[i] += w
        self.sig_num += w * abs_r
        self.sig_den += w
        self.hsig_num[hour] = f_hour * self.hsig_num[hour] + w * abs_r
        self.hsig_den[hour] = f_hour * self.hsig_den[hour] + w
        self.seen_h += w


@dataclass
class _Incident:
    """One spike of one series, from its first anomalous window until it has been quiet for a while."""

    id: str
    start: float
    windows: int = 0
    quiet: int = 0
    peak_observed: float = 0.0
    peak_expected: float = 0.0
    peak_negative: float | None = None
    peak_score: float = 0.0
    severity: str = "low"
    last_observed: float = 0.0
    last_expected: float = 0.0
    reported_observed: float = 0.0
    sample_ids: list[str] = field(default_factory=list)
    terms: Counter[str] = field(default_factory=Counter)


@dataclass
class _Series:
    detector: SpikeDetector
    negative_detector: SpikeDetector | None = None
    last_window: float | None = None
    incident: _Incident | None = None
    since_resolved: int = 1_000_000  # windows since the last incident resolved
    # Negative mentions: the last few windows (mentions, negatives) and the usual negative share.
    recent: list[tuple[float, float]] = field(default_factory=list)
    share_num: float = 0.0
    share_den: float = 0.0
    share_t: float | None = None


@dataclass(frozen=True, slots=True)
class SpikeObservation:
    """What the alerter made of one window: its score, what was expected, and any alerts to publish.

    ``score`` and ``z`` are those that decide (the negative mentions' when they are given), ``expected``
    is the count of mentions expected in this window, ``in_incident`` whether an incident is open after
    it and ``spiking`` whether this window itself is part of the spike.
    """

    score: float
    expected: float
    z: float
    in_incident: bool
    alerts: tuple[dict[str, Any], ...] = ()
    spiking: bool = False  # this window is part of a spike (not one of the quiet windows before it resolves)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat()


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y%m%d%H%M")


_Key = tuple[str, str | None, str | None]


class SpikeAlerter:
    """Per-series spike detectors that publish one deduplicated alert per incident.

    Feed it one window at a time per series (brand x channel, or brand x topic with ``channel=None``).
    An incident opens when a window scores 0.5 or more and the mentions behind the score are at least
    ``min_excess`` above and ``min_ratio`` times the expectation; it stays open while windows keep a z of
    ``release`` times the threshold and stay a sigma above their own expectation, and resolves after
    ``close_after`` quieter windows (more in a quiet series). The alert dicts
    carry the fields of ``stream.schema.Alert`` and keep the same ``id`` for the whole incident: one
    when it opens, one each time it grows (higher severity or 1.5x the last reported count), and one
    when it resolves; ``message`` starts with ``open:``, ``update:`` or ``resolved:``.

    When the window's count of *negative* mentions is given, a second detector watches it and decides:
    an incident is a spike of complaints whose share of the mentions is also above the usual one, while
    buzz (a news burst: many mentions, the usual share of negative ones) raises no alert. Without it,
    every spike of mentions is an incident.

    Windows missing between two updates count as zero mentions when ``interval_s`` is set (the flow may
    not emit empty windows); a window at or before the last one of its series is neither learned nor
    alerted on (counted in ``late_windows``). Bad counts (negative, NaN, not numbers) are skipped.

    Parameters
    ----------
    detector
        Template detector, cloned for each new series (and for its negative mentions); a default
        :class:`SpikeDetector` when None.
    interval_s
        Window length in seconds, used to fill missing windows with zeros; None disables the filling.
    min_excess
        Least number of mentions above the expectation for an incident to open.
    min_ratio
        Least ratio of observed to expected mentions for an incident to open.
    release
        Fraction of the threshold below which a window counts as quiet (so does a window less than one
        sigma above its own expectation).
    close_after
        Number of consecutive quiet windows that resolve an incident; more (up to 30) in a quiet series,
        as many as it takes to expect 5 mentions.
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
    >>> counts = [5, 6, 4, 5, 7, 5, 6, 4] * 180 + [60, 90, 75] + [5, 6, 5, 4] * 8
    >>> alerts = []
    >>> for i, n in enumerate(counts):
    ...     alerts += alerter.update("acme", "twitter", start + timedelta(minutes=i), n,
    ...                              sample_ids=[f"twitter:{i}"], top_terms=["outage", "login"])
    >>> [(a["message"].split(":")[0], a["severity"], a["observed"]) for a in alerts]
    [('open', 'high', 60.0), ('update', 'high', 90.0), ('resolved', 'high', 90.0)]
    >>> len({a["id"] for a in alerts}), alerts[0]["id"], alerts[0]["window_start"]
    (1, 'spike:acme:twitter:202401020000', '2024-01-02T00:00:00+00:00')
    >>> alerts[0]["sample_ids"], alerts[-1]["top_terms"]
    (['twitter:1440'], ['outage', 'login'])
    """

    def __init__(
        self,
        detector: SpikeDetector | None = None,
        interval_s: float | None = 60.0,
        min_excess: float = 3.0,
        min_ratio: float = 2.0,
        release: float = 0.5,
        close_after: int = 3,
        max_series: int = 10_000,
        max_samples: int = 10,
        max_terms: int = 10,
    ) -> None:
        self.detector = detector if detector is not None else SpikeDetector()
        self.interval_s = interval_s
        self.min_excess = min_excess
        self.min_ratio = min_ratio
        self.release = release
        self.close_after = close_after
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
        obs = self.observe(brand, channel, window_start, count, sample_ids, top_terms, topic, negative)
        return list(obs.alerts)

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
        """Like :meth:`update`, also returning the window's score, expectation and z-score."""
        t = to_epoch_seconds(window_start)
        key: _Key = (brand, channel, topic)
        series = self._series.get(key)
        if series is None:
            series = _Series(detector=self.detector.clone())
            self._series[key] = series
            while len(self._series) > self.max_series:
                self._series.popitem(last=False)
        else:
            self._series.move_to_end(key)
        n = _count_of({"count": count})
        neg = _count_of({"count": negative}) if negative is not None else None
        if t is None or n is None:
            return SpikeObservation(0.0, 0.0, 0.0, series.incident is not None)
        if series.last_window is not None and t <= series.last_window:
            self.late_windows += 1
            return SpikeObservation(0.0, 0.0, 0.0, series.incident is not None)

        alerts: list[dict[str, Any]] = []
        if self.interval_s and series.last_window is not None:
            alerts += self._fill_gap(key, series, t)
        if neg is not None and series.negative_detector is None:
            series.negative_detector = self.detector.clone()
        total = series.detector.assess_and_learn_one({"count": n, "ts": t})
        driver = total
        share_ok = True
        if series.negative_detector is not None:
            # Once negatives are known for a series, missing ones are treated as none of the mentions.
            neg = min(neg or 0.0, n)
            driver = series.negative_detector.assess_and_learn_one({"count": neg, "ts": t})
            share_ok = self._negative_share(series, t, n, neg, int(driver["scale"]))
        series.last_window = t
        alerts += self._track(key, series, t, n, total, driver, neg, sample_ids, top_terms, share_ok)
        inc = series.incident
        return SpikeObservation(driver["score"], total["expected_now"], driver["z"], inc is not None,
                                tuple(alerts), spiking=inc is not None and inc.quiet == 0)

    def close_all(self) -> list[dict[str, Any]]:
        """Resolve every open incident (end of a bounded replay) and return the resolved alerts."""
        out = []
        for key, series in self._series.items():
            if series.incident is not None:
                out.append(self._alert(key, series.incident, "resolved"))
                series.incident = None
        return out

    def active(self) -> list[dict[str, Any]]:
        """The open incidents as alert dicts, for a dashboard."""
        return [self._alert(k, s.incident, "update") for k, s in self._series.items() if s.incident]

    # -- internals ---------------------------------------------------------------------------------------

    def _fill_gap(self, key: _Key, series: _Series, t: float) -> list[dict[str, Any]]:
        assert series.last_window is not None and self.interval_s
        missing = int((t - series.last_window) / self.interval_s + 1e-9) - 1
        out: list[dict[str, Any]] = []
        # More than a day of silence is not a day of zeros worth replaying one by one.
        for i in range(1, min(missing, 1440) + 1):
            tt = series.last_window + i * self.interval_s
            x = {"count": 0.0, "ts": tt}
            total = series.detector.assess_and_learn_one(x)
            driver = total
            if series.negative_detector is not None:
                driver = series.negative_detector.assess_and_learn_one(x)
                self._negative_share(series, tt, 0.0, 0.0, 1)
            out += self._track(key, series, tt, 0.0, total, driver, None, (), ())
        return out

    def _negative_share(self, series: _Series, t: float, n: float, neg: float, scale: int) -> bool:
        """Whether the negative share of the last ``scale`` windows is above the usual one.

        A news burst brings many mentions with the usual share of negative ones: more negatives, but
        no incident. An outage brings complaints: the share itself jumps. Binomial z >= 3 against the
        share learned outside incidents (half-life 3 days); with too little history, any share passes.
        """
        keep = max(self.detector._scales(), default=1)
        series.recent.append((n, neg))
        if len(series.recent) > keep:
            del series.recent[0]
        window = series.recent[-max(1, scale):]
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

    def _severity(self, a: dict[str, float]) -> str:
        # Both how unlikely (z) and how big (ratio): a quiet forum can only reach a modest z, and a
        # busy channel reaches a huge z with a change nobody would page for.
        ratio = a["observed"] / max(a["expected"], float(a["scale"]))
        rel = _rel_of_score(a["score"])
        if (ratio >= 5.0 and rel >= 1.5) or (ratio >= 3.0 and rel >= 3.0):
            return "high"
        if (ratio >= 2.5 and rel >= 1.25) or (ratio >= 1.5 and rel >= 3.0):
            return "medium"
        return "low"

    def _track(
        self,
        key: _Key,
        series: _Series,
        t: float,
        n: float,
        total: dict[str, float],
        driver: dict[str, float],
        neg: float | None,
        sample_ids: Sequence[str],
        top_terms: Sequence[str],
        share_ok: bool = True,
    ) -> list[dict[str, Any]]:
        inc = series.incident
        score, expected = driver["score"], total["expected_now"]
        if inc is None:
            series.since_resolved += 1
            # A sum of windows that still holds the last incident's windows is not a new incident.
            opens = (score >= 0.5 and driver["observed"] - driver["expected"] >= self.min_excess
                     and driver["observed"] >= self.min_ratio * driver["expected"]
                     and driver["scale"] <= series.since_resolved and share_ok)
            if not opens:
                return []
            brand, channel, topic = key
            parts = ["spike", brand, channel or "*"] + ([topic] if topic else []) + [_stamp(t)]
            inc = _Incident(id=":".join(parts), start=t)
            series.incident = inc
            self._absorb(inc, n, expected, neg, score, sample_ids, top_terms)
            inc.severity = self._severity(driver)
            inc.reported_observed = n
            return [self._alert(key, inc, "open")]

        # Still spiking: the evidence is there (sums of windows included) and this very window is
        # above normal; sums alone would keep an incident open until the spike left them.
        hot = (_rel_of_score(score) >= self.release and driver["observed"] > driver["expected"]
               and driver["z_now"] >= 1.0)
        if not hot:
            inc.quiet += 1
            inc.windows += 1
            inc.last_observed, inc.last_expected = n, expected
            # A quiet series needs more quiet windows to show it is back to normal: as many as it
            # takes to expect a handful of mentions (a forum at 0.3 a minute is often silent mid-incident).
            needed = max(self.close_after, min(30, math.ceil(5.0 / max(expected, 1e-3))))
            if inc.quiet >= needed:
                series.incident = None
                series.since_resolved = inc.quiet
                return [self._alert(key, inc, "resolved")]
            return []
        inc.quiet = 0
        self._absorb(inc, n, expected, neg, score, sample_ids, top_terms)
        severity = self._severity(driver)
        grew = n >= 1.5 * inc.reported_observed
        if SEVERITIES.index(severity) > SEVERITIES.index(inc.severity) or grew:
            inc.severity = max(severity, inc.severity, key=SEVERITIES.index)
            inc.reported_observed = max(inc.reported_observed, n)
            return [self._alert(key, inc, "update")]
        return []

    def _absorb(self, inc: _Incident, n: float, expected: float, neg: float | None, score: float,
                sample_ids: Sequence[str], top_terms: Sequence[str]) -> None:
        inc.windows += 1
        inc.last_observed, inc.last_expected = n, expected
        if n >= inc.peak_observed:
            inc.peak_observed, inc.peak_expected, inc.peak_negative = n, expected, neg
        inc.peak_score = max(inc.peak_score, score)
        for sid in sample_ids:
            if len(inc.sample_ids) >= self.max_samples:
                break
            if isinstance(sid, str) and sid not in inc.sample_ids:
                inc.sample_ids.append(sid)
        # Earlier ranks weigh more; the counter stays small because only the top terms are kept.
        for rank, term in enumerate(list(top_terms)[: self.max_terms]):
            if isinstance(term, str) and term:
                inc.terms[term] += self.max_terms - rank
        if len(inc.terms) > 4 * self.max_terms:
            inc.terms = Counter(dict(inc.terms.most_common(2 * self.max_terms)))

    def _alert(self, key: _Key, inc: _Incident, status: str) -> dict[str, Any]:
        brand, channel, topic = key
        where = " ".join(p for p in (channel, f"topic {topic}" if topic else None) if p) or "all channels"
        ratio = inc.peak_observed / inc.peak_expected if inc.peak_expected > 0 else math.inf
        negs = f", {inc.peak_negative:g} negative" if inc.peak_negative is not None else ""
        if status == "resolved":
            message = (f"resolved: {brand} {where} back to {inc.last_observed:g} mentions "
                       f"({inc.last_expected:.1f} expected) after {inc.windows} windows; "
                       f"peak {inc.peak_observed:g}{negs}")
        else:
            message = (f"{status}: {brand} {where} at {inc.last_observed:g} mentions, "
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
            "score": round(inc.peak_score, 6),
            "severity": inc.severity,
            "sample_ids": list(inc.sample_ids),
            "top_terms": [t for t, _ in inc.terms.most_common(self.max_terms)],
            "message": message,
        }
