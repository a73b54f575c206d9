"""Seasonal rates of one series of counts per interval, learned in event time, for :mod:`models.spikes`.

Every learned quantity here is a sum of counts, or of elapsed intervals, weighted by its age
(exponential decay in event time). An empty interval adds nothing to the sums of counts, so a gap of
``k`` empty intervals only adds to the sums of elapsed intervals, and those have a closed form: per
hour-of-week bucket, a geometric series over the intervals it holds (whole weeks as one more geometric
series). A gap of any length costs at most two passes over the 168 buckets; stepping through the same
zeros one by one gives the same state (``tests/models/test_spikes.py`` checks it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["HOUR_S", "INTERVALS", "N_BUCKETS", "WEEK_S", "bucket_of", "gap_runs", "gap_weights", "run_weights",
           "snap_interval"]

WEEK_S = 604_800
HOUR_S = 3_600
N_BUCKETS = 168
_MONDAY = 3 * 86_400  # 1970-01-01 was a Thursday: this shift puts phase 0 on Monday 00:00
_LN2 = math.log(2.0)
# Sums are stored relative to a reference time and rebased when that reference is this many
# half-lives old: weights stay below 2**40, far from overflow, and the rebase is rare.
_REBASE_HALF_LIVES = 40.0

#: Interval lengths in seconds: each divides an hour, or is a whole number of hours that divides a week,
#: so the pattern of hour-of-week buckets repeats every week (what the closed form needs).
INTERVALS: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60, 120, 180, 240, 300, 360, 600, 720, 900, 1200, 1800,
    3600, 7200, 10800, 14400, 21600, 28800, 43200, 86400, 604800,
)


def snap_interval(seconds: float) -> int:
    """The longest supported interval not longer than ``seconds`` (give or take 1 %).

    >>> snap_interval(300), snap_interval(299.5), snap_interval(420), snap_interval(0.2)
    (300, 300, 360, 1)
    """
    best = INTERVALS[0]
    for v in INTERVALS:
        if v <= seconds * 1.01:
            best = v
    return best


def bucket_of(t: int, offset: int) -> int:
    """Hour-of-week bucket (0 = Monday 00:00-01:00) of epoch second ``t`` at a UTC offset in seconds.

    >>> bucket_of(0, 0), bucket_of(4 * 86400 + 3600, 0)  # Thursday 00:00, Monday 01:00
    (72, 1)
    """
    return ((t + offset + _MONDAY) % WEEK_S) // HOUR_S


def _runs(end: int, k: int, step: int, offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Buckets, steps back and lengths of the runs of consecutive intervals in one hour-of-week bucket
    among the ``k`` intervals ending with the one starting at ``end`` (most recent first; ``k`` at most
    a week), in closed form: a partial hour, whole hours, a partial hour."""
    phase = (end + offset + _MONDAY) % WEEK_S
    if step > HOUR_S:  # each interval is a run of its own
        back = np.arange(k, dtype=np.int64)
        buckets = ((phase - back * step) % WEEK_S) // HOUR_S
        return buckets, back, np.ones(k, dtype=np.int64)
    per_hour = HOUR_S // step
    first = min(k, (phase % HOUR_S) // step + 1)
    lengths = _run_lengths(first, k, per_hour)
    idx = np.arange(len(lengths), dtype=np.int64)
    buckets = (phase // HOUR_S - idx) % N_BUCKETS
    back = np.where(idx == 0, 0, first + (idx - 1) * per_hour)
    return buckets, back, lengths


def _run_lengths(first: int, k: int, per_hour: int) -> np.ndarray:
    """Lengths of the runs of ``k`` intervals whose most recent hour holds ``first`` of them (``first`` <= ``k``),
    most recent first: a partial hour, whole hours, a partial hour.

    >>> _run_lengths(3, 20, 6).tolist()
    [3, 6, 6, 5]
    """
    full, part = divmod(k - first, per_hour)
    lengths = np.full(1 + full + (1 if part else 0), per_hour, dtype=np.int64)
    lengths[0] = first
    if part:
        lengths[-1] = part
    return lengths


def _run_weights(lr: np.ndarray, back: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    # sum_{i=back}^{back+length-1} r**i with r = exp(lr) < 1 (one row per half-life), written with expm1
    # so that r close to 1 is exact.
    return np.exp(lr * back) * (np.expm1(lr * lengths) / np.expm1(lr))


def gap_runs(end: int, k: int, step: int, offset: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """The runs of :func:`_runs` for any ``k``: whole weeks once (with their number), then the rest."""
    if k <= 0:
        return []
    per_week = WEEK_S // step
    weeks, rem = divmod(k, per_week)
    out = []
    if weeks:
        b, i0, ln = _runs(end, per_week, step, offset)
        out.append((b, i0, ln, weeks))
        if rem:
            b2, i2, ln2 = _runs(end - weeks * WEEK_S, rem, step, offset)
            out.append((b2, i2 + weeks * per_week, ln2, 0))
    else:
        b, i0, ln = _runs(end, k, step, offset)
        out.append((b, i0, ln, 0))
    return out


def run_weights(runs: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]], step: int,
                half_lives_s: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Buckets of the runs of :func:`gap_runs`, and their weights: one row per half-life."""
    lr = (-step * _LN2 / np.asarray(half_lives_s, dtype=float))[:, None]
    per_week = WEEK_S // step
    bs, ws = [], []
    for b, i0, ln, weeks in runs:
        w = _run_weights(lr, i0, ln)
        if weeks:
            # Whole weeks repeat the same buckets, each a factor r**per_week older than the next.
            w = w * (np.expm1(lr * per_week * weeks) / np.expm1(lr * per_week))
        bs.append(b)
        ws.append(w)
    if len(bs) == 1:
        return bs[0], ws[0]
    return np.concatenate(bs), np.concatenate(ws, axis=1)


# The last gap's buckets, weights and per-bucket exposure weights: a series' detector of all mentions and its
# detector of negative mentions step through the same intervals, so the second one finds its gap here (one
# tuple, replaced whole: safe to share between threads). The arrays are never written to.
_last_gap: tuple[tuple[float, ...], tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None


def _gap(end: int, k: int, step: int, offset: int,
         half_lives_s: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Buckets and weights (:func:`run_weights`) of the gap of ``k`` intervals ending with ``end``, and the
    first half-life's weights summed per bucket."""
    global _last_gap
    key: tuple[float, ...] = (end, k, step, offset, *half_lives_s)
    found = _last_gap
    if found is not None and found[0] == key:
        return found[1]
    tables = _tables(step, half_lives_s)
    if tables is None:
        b, w = run_weights(gap_runs(end, k, step, offset), step, half_lives_s)
    else:
        b, w = _table_weights(tables, end, k, step, offset)
    value: tuple[np.ndarray, np.ndarray, np.ndarray] = (b, w, np.bincount(b, weights=w[0], minlength=N_BUCKETS))
    _last_gap = (key, value)
    return value


# Tables of the weights of :func:`run_weights`, per interval length and half-lives (intervals of a minute up to an
# hour: a few hundred kB at most): ``r ** i`` for ``i`` up to a week of intervals, the weight of a run of ``n``
# intervals relative to its first, and the weights of a whole week's runs, per number of intervals that the
# week's last hour holds up to its end. Each entry is computed by the same expression as run_weights computes
# it, element by element, so a gap weighed from the tables is the same, bit for bit (tested). Filled once per
# key (a race only computes the same table twice); never written to afterwards.
_Tables = tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, tuple[np.ndarray, np.ndarray]]]
_TABLES: dict[tuple[float, ...], _Tables] = {}
_TABLE_MAX_PER_WEEK = WEEK_S // 60
_TABLE_MAX_KEYS = 32  # detectors with other half-lives still compute their weights
_STEPS_BACK = np.arange(N_BUCKETS + 2, dtype=np.int64)


def _tables(step: int, half_lives_s: tuple[float, ...]) -> _Tables | None:
    """The weight tables of an interval length of a minute to an hour (None for other lengths)."""
    key = (step, *half_lives_s)
    found = _TABLES.get(key)
    if found is not None:
        return found
    if step > HOUR_S or HOUR_S % step or WEEK_S // step > _TABLE_MAX_PER_WEEK or len(_TABLES) >= _TABLE_MAX_KEYS:
        return None
    lr = (-step * _LN2 / np.asarray(half_lives_s, dtype=float))[:, None]
    per_week = WEEK_S // step
    powers = np.exp(lr * np.arange(per_week + 1, dtype=np.int64))  # _run_weights' first factor, per back
    run = np.expm1(lr * np.arange(HOUR_S // step + 1, dtype=np.int64)) / np.expm1(lr)  # and its second
    for arr in (powers, run):
        arr.flags.writeable = False
    value: _Tables = (lr, powers, run, {})
    _TABLES[key] = value
    return value


def _week_weights(tables: _Tables, first: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights of the runs of a whole week of intervals whose last hour holds ``first`` of them, and how many
    intervals back each run starts."""
    lr, _, _, weeks = tables
    found = weeks.get(first)
    if found is None:
        per_hour = HOUR_S // step
        lengths = _run_lengths(first, WEEK_S // step, per_hour)
        idx = _STEPS_BACK[:len(lengths)]
        back = np.where(idx == 0, 0, first + (idx - 1) * per_hour)
        found = weeks[first] = (_run_weights(lr, back, lengths), back)
        for arr in found:
            arr.flags.writeable = False
    return found


def _table_weights(tables: _Tables, end: int, k: int, step: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`run_weights` of :func:`gap_runs` for an interval of a minute to an hour, from the tables."""
    lr, powers, run, _ = tables
    per_hour = HOUR_S // step
    per_week = WEEK_S // step
    phase = (end + offset + _MONDAY) % WEEK_S
    first = (phase % HOUR_S) // step + 1
    hour = phase // HOUR_S
    weeks, rem = divmod(k, per_week)
    if weeks == 0 and k <= first:  # a single run (a part of the last hour)
        return np.array([hour]), powers[:, :1] * run[:, k:k + 1]
    if weeks == 0:
        full, part = divmod(k - first, per_hour)
        n_full = 1 + full
        w = _week_weights(tables, first, step)[0][:, :n_full]
        if part:
            b0 = first + full * per_hour
            w = np.concatenate((w, powers[:, b0:b0 + 1] * run[:, part:part + 1]), axis=1)
            n_full += 1
        return (hour - _STEPS_BACK[:n_full]) % N_BUCKETS, w
    week, week_back = _week_weights(tables, first, step)
    b = (hour - _STEPS_BACK[:week.shape[1]]) % N_BUCKETS
    w = week * (np.expm1(lr * per_week * weeks) / np.expm1(lr * per_week))
    if not rem:
        return b, w
    # The oldest intervals: the runs of a gap of ``rem`` intervals ending at the same phase of the week, which
    # are the week's first runs with the last one cut to length, ``weeks`` whole weeks further back; weighed
    # as _run_weights weighs them, its second factor read from the table ``run`` (sparse streams' gaps are
    # mostly longer than a week: this skips building the runs and two expm1 passes).
    lengths = _run_lengths(min(rem, first), rem, per_hour)
    n2 = len(lengths)
    w2 = np.exp(lr * (week_back[:n2] + weeks * per_week)) * run[:, lengths]
    return np.concatenate((b, b[:n2])), np.concatenate((w, w2), axis=1)


def gap_weights(end: int, k: int, step: int, offset: int, half_life_s: float) -> np.ndarray:
    """Age weights, per hour-of-week bucket, of the ``k`` intervals ending with the one starting at ``end``.

    The interval starting at ``end`` weighs 1, the one before it ``2 ** (-step / half_life_s)``, and so on.

    >>> w = gap_weights(3 * 3600, 4, 3600, 0, 3600.0)  # Thursday 00:00-03:00, one hour half-life
    >>> [round(float(v), 4) for v in w[72:76]]
    [0.125, 0.25, 0.5, 1.0]
    >>> week = gap_weights(10**9 // 300 * 300, 20_000, 300, 0, 86400.0 * 14)
    >>> bool(np.isclose(week.sum(), sum(2 ** (-i * 300 / (86400 * 14)) for i in range(20_000))))
    True
    """
    if k <= 0:
        return np.zeros(N_BUCKETS)
    b, w = run_weights(gap_runs(end, k, step, offset), step, (half_life_s,))
    return np.bincount(b, weights=w[0], minlength=N_BUCKETS)


@dataclass
class SeasonalRates:
    """Counts per interval expected at any time: a level times an hour-of-week shape.

    ``counts`` and ``exposure`` hold, per hour-of-week bucket, the age-weighted sums of counts and of
    elapsed intervals (half-life ``season_halflife_s``), stored relative to ``ref`` (their true value at
    time ``t`` is the stored one times ``2 ** ((ref - t) / half_life)``). Their ratio, shrunk towards the
    hour-of-day and day-of-week rates while a bucket has seen little, gives the shape (mean 1 over a
    week of exposure), refreshed at most hourly by :meth:`refresh_shape`. The level is counts over
    shape-weighted intervals with two half-lives: a slow one, and a fast one trusted while the series is
    young. ``t_last`` is the start of the last interval accounted for.
    """

    step: int
    offset: int
    season_halflife_s: float
    level_halflife_s: float
    fast_halflife_s: float
    young_s: float
    shrink_hod_h: float = 2.0
    shrink_dow_h: float = 24.0
    shrink_how_h: float = 3.0
    t_first: int = 0
    t_last: int = 0
    ref: int = 0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(N_BUCKETS))
    exposure: np.ndarray = field(default_factory=lambda: np.zeros(N_BUCKETS))
    shape: np.ndarray = field(default_factory=lambda: np.ones(N_BUCKETS))
    shape_at: int | None = None
    c_slow: float = 0.0
    d_slow: float = 0.0
    c_fast: float = 0.0
    d_fast: float = 0.0
    started: bool = False

    # -- time ----------------------------------------------------------------------------------------

    def bucket(self, t: int) -> int:
        return ((t + self.offset + _MONDAY) % WEEK_S) // HOUR_S  # bucket_of(t, self.offset)

    def intervals_between(self, t: int) -> int:
        """Whole intervals from the last accounted one to ``t`` (1 for the next one, 0 for the same)."""
        return (t - self.t_last) // self.step

    def seen_s(self, t: int) -> float:
        return float(t - self.t_first + self.step)

    def _scale(self, t: int) -> float:
        return 2.0 ** ((t - self.ref) / self.season_halflife_s)

    def _rebase(self, t: int) -> None:
        f = 2.0 ** ((self.ref - t) / self.season_halflife_s)
        self.counts *= f
        self.exposure *= f
        self.ref = t

    # -- learning ------------------------------------------------------------------------------------

    def start(self, t: int) -> None:
        self.t_first = self.t_last = self.ref = t
        self.started = True

    def _gap_level_terms(self, runs: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]) -> tuple[float, float]:
        """Shape-weighted interval sums of a gap's runs, for both level half-lives."""
        b, w = run_weights(runs, self.step, (self.level_halflife_s, self.fast_halflife_s))
        s = self.shape[b]
        return float(s @ w[0]), float(s @ w[1])

    def advance(self, t: int) -> int:
        """Account for the empty intervals after the last one and before ``t``; returns how many there were.

        Only the sums of elapsed intervals move (closed form), then the level sums decay to ``t``'s
        predecessor. Call :meth:`account` for ``t``'s own interval after scoring it.
        """
        step = self.step
        k = (t - self.t_last) // step - 1
        if k <= 0:
            return 0
        end = t - step
        if k == 1:
            bucket = ((end + self.offset + _MONDAY) % WEEK_S) // HOUR_S
            self._add_exposure(end, bucket)
            self._decay_levels(end)
            ds = df = float(self.shape[bucket])
        else:
            b, w, per_bucket = _gap(end, k, step, self.offset,
                                    (self.season_halflife_s, self.level_halflife_s, self.fast_halflife_s))
            self._add_exposure(end, per_bucket=per_bucket)
            self._decay_levels(end)
            s = self.shape[b]
            ds, df = float(s @ w[1]), float(s @ w[2])
        self.d_slow += ds
        self.d_fast += df
        self.t_last = end
        return k

    def _add_exposure(self, end: int, bucket: int | None = None, per_bucket: np.ndarray | None = None) -> float:
        """Interval ``end`` (in ``bucket``), or the gap ending with it given as its weights per bucket; returns
        the scale of ``end`` (:meth:`_scale`) after any rebase."""
        if (end - self.ref) > _REBASE_HALF_LIVES * self.season_halflife_s:
            self._rebase(end)
        scale = 2.0 ** ((end - self.ref) / self.season_halflife_s)  # self._scale(end)
        if per_bucket is not None:
            self.exposure += scale * per_bucket
        else:
            self.exposure[self.bucket(end) if bucket is None else bucket] += scale
        return scale

    def _decay_levels(self, t: int) -> None:
        dt = t - self.t_last
        if dt > 0:
            fs = 2.0 ** (-dt / self.level_halflife_s)
            ff = 2.0 ** (-dt / self.fast_halflife_s)
            self.c_slow *= fs
            self.d_slow *= fs
            self.c_fast *= ff
            self.d_fast *= ff

    def account(self, t: int, n: float) -> None:
        """Add interval ``t`` (the one after the last accounted) and ``n`` counts learned from it."""
        b = ((t + self.offset + _MONDAY) % WEEK_S) // HOUR_S
        scale = self._add_exposure(t, b)
        self._decay_levels(t)
        s = float(self.shape[b])
        self.d_slow += s
        self.d_fast += s
        self.t_last = t
        if n:
            # add_count(t, n) for the interval just accounted: its age is 0, so its level weights are 1
            self.counts[b] += n * scale
            self.c_slow += n
            self.c_fast += n

    def add_count(self, t: int, n: float) -> None:
        """Counts of an interval already accounted for (the current one, or a late one)."""
        self.counts[self.bucket(t)] += n * self._scale(t)
        age = self.t_last - t
        self.c_slow += n * 2.0 ** (-age / self.level_halflife_s)
        self.c_fast += n * 2.0 ** (-age / self.fast_halflife_s)

    def scale_level(self, ratio: float) -> None:
        """Accept a new level (a lasting shift): the level becomes ``ratio`` times what it was."""
        self.c_slow *= ratio
        self.c_fast *= ratio

    def refresh_shape(self, t: int) -> None:
        """Recompute the hour-of-week shape from the sums (at most once per hour of event time)."""
        # Hourly while the series is young, then every six hours: the shape moves over weeks.
        every = HOUR_S if t - self.t_first < WEEK_S else 6 * HOUR_S
        if self.shape_at is not None and t - self.shape_at < every:
            return
        self.shape_at = t
        c, e = self.counts, self.exposure
        # np.add.reduce is what ndarray.sum calls, without its Python wrapper (same sums, bit for bit)
        add = np.add.reduce
        ctot, etot = float(add(c)), float(add(e))
        if ctot <= 0.0 or etot <= 0.0:
            return
        per_hour = HOUR_S / self.step * self._scale(t)  # intervals per hour, in the stored units
        rbar = ctot / etot
        c2, e2 = c.reshape(7, 24), e.reshape(7, 24)
        a = self.shrink_hod_h * per_hour
        hod = (add(c2, 0) + a * rbar) / (add(e2, 0) + a)
        b = self.shrink_dow_h * per_hour
        dow = (add(c2, 1) + b * rbar) / (add(e2, 1) + b) / rbar
        g = self.shrink_how_h * per_hour
        target = (dow[:, None] * hod[None, :]).ravel()
        rate = (c + g * target) / (e + g)
        mean = float(rate @ e) / etot
        if mean > 0.0:
            self.shape = rate / mean

    def rescale(self, step: int) -> None:
        """Change the interval length: sums of intervals are converted, counts stay."""
        f = self.step / step
        self.exposure *= f
        self.d_slow *= f
        self.d_fast *= f
        self.t_last = self.t_last // step * step
        self.step = step

    # -- predictions ---------------------------------------------------------------------------------

    def level(self, t: int | None = None) -> float:
        """Deseasonalised counts per interval at ``t`` (default: the next interval), counting the empty
        intervals between the last accounted one and ``t`` without changing the state."""
        cs, ds, cf, df = self.c_slow, self.d_slow, self.c_fast, self.d_fast
        if t is not None:
            k = self.intervals_between(t) - 1
            if k > 0:
                end = t - self.step
                dt = end - self.t_last
                fs, ff = 2.0 ** (-dt / self.level_halflife_s), 2.0 ** (-dt / self.fast_halflife_s)
                if k == 1:
                    gs = gf = float(self.shape[self.bucket(end)])
                else:
                    gs, gf = self._gap_level_terms(gap_runs(end, k, self.step, self.offset))
                cs, ds, cf, df = cs * fs, ds * fs + gs, cf * ff, df * ff + gf
        slow = cs / ds if ds > 0 else 0.0
        fast = cf / df if df > 0 else slow
        when = self.t_last + self.step if t is None else t
        w = 1.0 / (1.0 + self.seen_s(when) / self.young_s) if self.young_s > 0 else 0.0
        return w * fast + (1.0 - w) * slow

    def shape_sum(self, t: int, k: int) -> float:
        """Sum of the shape over the ``k`` intervals ending with ``t``'s."""
        step = self.step
        phase = (t + self.offset + _MONDAY) % WEEK_S
        if k == 1 or step > HOUR_S:
            if k == 1:
                return float(self.shape[phase // HOUR_S])
            return sum(float(self.shape[((phase - i * step) % WEEK_S) // HOUR_S]) for i in range(k))
        shape = self.shape
        b = phase // HOUR_S
        first = min(k, (phase % HOUR_S) // step + 1)
        total = float(shape[b]) * first
        left = k - first
        per_hour = HOUR_S // step
        while left > 0:
            b = (b - 1) % N_BUCKETS
            run = min(left, per_hour)
            total += float(shape[b]) * run
            left -= run
        return total

    def shape_sums(self, t: int, ks: list[int]) -> list[float]:
        """:meth:`shape_sum` for several ``k`` (ascending) in one backward pass."""
        step = self.step
        shape = self.shape
        phase = (t + self.offset + _MONDAY) % WEEK_S
        out: list[float] = []
        if step > HOUR_S:
            total, done = 0.0, 0
            for k in ks:
                while done < k:
                    total += float(shape[((phase - done * step) % WEEK_S) // HOUR_S])
                    done += 1
                out.append(total)
            return out
        per_hour = HOUR_S // step
        b = phase // HOUR_S
        run = (phase % HOUR_S) // step + 1  # intervals left in the current bucket, going back
        value = float(shape[b])
        total, done = 0.0, 0
        for k in ks:
            while done < k:
                take = min(run, k - done)
                total += value * take
                done += take
                run -= take
                if run == 0:
                    b = (b - 1) % N_BUCKETS
                    value = float(shape[b])
                    run = per_hour
            out.append(total)
        return out

    def long_run_rate(self) -> float:
        """Mean counts per interval over the seasonal memory (0 before any count)."""
        etot = float(self.exposure.sum())
        return float(self.counts.sum()) / etot if etot > 0 else 0.0
