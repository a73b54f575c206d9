"""Spike detection: NAB scores on simulated and real mention volumes beside a rolling mean + 3 sigma
baseline, and the detector's cost per record on sparse against dense series.

Run: ``.venv/bin/python benchmarks/spikes.py [--tune-seed 7] [--seeds 1 2 3 4 5] [--days 56] [--tune]``.
Prints one ``name=value`` line per figure and the tables of benchmarks/RESULTS.md.

**Simulated series** (:func:`simulator_series`): for each seed, ``connectors.simulator.World(seed)``
gives the brands, channels, base rates, daily and weekly seasonality, growth, news bursts (buzz) and
injected incidents (outages) with its own schedule; this benchmark turns them into counts per 5 minutes
for ``--days`` days (18 brand x channel series) and adds what real Twitter volumes have and the
simulator lacks: overdispersed noise (gamma-Poisson), viral bursts that are not incidents (about three a
week per series, lognormal sizes: half of them double the traffic, one in ten more than quadruples it,
rising in 5-20 minutes and fading over hours) and lasting level shifts (x0.6 to x1.8). Only the
simulator's incidents are labelled; its news bursts and the viral bursts are ordinary traffic. Defaults
were tuned on ``--tune-seed`` (7) and are reported on the other seeds.

**Real series** (benchmarks/real_series.py): airlines, Apple and Sanders' @apple, with the incidents the
text justifies.

**Scores** (benchmarks/nab.py): the NAB standard profile, windows of 10 % of the series over its
labels, with and without the 15 % probationary period, summed over the series of a set and normalised
(0 = never fires, 100 = perfect). A detection is an incident's opening (``pulse spikes --json``'s
``window_start``). Also: incidents found (a detection from 30 minutes before an incident to its end),
the median delay, and alerts per series per week outside the labelled windows (ordinary traffic).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import nab  # noqa: E402
from benchmarks.real_series import STEP_S, load_all  # noqa: E402
from connectors.simulator import CHANNELS, World, _season  # noqa: E402
from models.spike_alerter import SpikeAlerter  # noqa: E402
from models.spikes import SpikeDetector  # noqa: E402

DAY = 86400
WEEK = 7 * DAY


@dataclass
class Series:
    """Counts per ``step`` seconds from ``start`` with labelled incidents (index of onset, of end)."""

    name: str
    start: int
    step: int
    counts: np.ndarray
    negatives: np.ndarray | None = None
    incidents: list[tuple[int, int]] = field(default_factory=list)

    @property
    def labels(self) -> list[int]:
        return [s for s, _ in self.incidents]


# ------------------------------------------------------------------------------------------------------
# simulated series
# ------------------------------------------------------------------------------------------------------


def _trapezoid(frac: np.ndarray) -> np.ndarray:
    # The simulator's incident and burst profile: a ramp from 20 %, a plateau, a fade to 5 %.
    out = np.ones_like(frac)
    up = frac < 0.15
    out[up] = 0.2 + 0.8 * frac[up] / 0.15
    down = frac > 0.65
    out[down] = np.maximum(0.05, 1.0 - (frac[down] - 0.65) / 0.35)
    return out


def simulator_series(seed: int, days: int = 56, step: int = 300, rate_per_hour: float = 2400.0,
                     viral_per_week: float = 3.0, shifts_per_week: float = 0.3,
                     dispersion: float = 10.0) -> list[Series]:
    """The simulator's 18 brand x channel series as counts per ``step``, with realistic ordinary bursts."""
    world = World(seed=seed, n_customers=10, rate_per_hour=rate_per_hour)
    rng = np.random.default_rng(seed)
    start = int(world.start.timestamp())
    n = days * DAY // step
    t = start + np.arange(n) * step
    hours = (t - start) / 3600.0
    season = np.array([_season(datetime.fromtimestamp(int(x), UTC)) for x in t])
    growth = 1.0 + world.growth_per_day * hours / 24.0
    end_dt = world.start + timedelta(days=days)
    incidents = world.incidents_between(world.start, end_dt)
    bursts = world.bursts_between(world.start, end_dt)
    out = []
    for brand in world.brands:
        for channel in CHANNELS:
            per_step = world._base_per_hour(brand, channel) * step / 3600.0
            base = per_step * season * growth
            # Lasting level shifts, each eased in over an hour.
            level = np.ones(n)
            for _ in range(rng.poisson(shifts_per_week * days / 7)):
                at = int(rng.integers(2 * DAY // step, n))
                f = rng.uniform(0.6, 1.8)
                ramp = np.clip((np.arange(n) - at) / max(1, 3600 // step), 0.0, 1.0)
                level *= 1.0 + (f - 1.0) * ramp
            base = base * level * rng.gamma(dispersion, 1.0 / dispersion, n)
            neg_share = 0.22 if channel in ("twitter", "forum", "review") else 0.12
            negs_lam = base * neg_share
            extra_neg = np.zeros(n)
            extra = np.zeros(n)
            # Viral bursts (not incidents): a sharp rise, an exponential fade.
            for _ in range(rng.poisson(viral_per_week * days / 7)):
                at = int(rng.integers(DAY // step, n - 1))
                size = float(rng.lognormal(0.0, 0.9)) * base[at] / max(season[at], 0.3) * season[at]
                rise = int(rng.integers(1, 5))
                tau = float(rng.lognormal(math.log(3600 / step), 0.6))
                k = np.arange(n - at)
                shape = np.where(k < rise, (k + 1) / rise, np.exp(-(k - rise) / tau))
                shape[k > rise + 8 * tau] = 0.0
                bump = size * shape
                extra[at:] += bump
                extra_neg[at:] += bump * neg_share
            # The simulator's news bursts (positive or neutral buzz) and incidents (complaints).
            for ev, share in ([(b, 0.08) for b in bursts if b.brand == brand.id and b.channel == channel]
                              + [(i, 0.8) for i in incidents if i.brand == brand.id and i.channel == channel]):
                lo, hi = int(ev.start.timestamp()), int(ev.end.timestamp())
                mask = (t + step > lo) & (t < hi)
                frac = (t[mask] + step / 2 - lo) / (hi - lo)
                bump = ev.per_hour * step / 3600.0 * _trapezoid(np.clip(frac, 0.0, 1.0))
                extra[mask] += bump
                extra_neg[mask] += bump * share
            counts = rng.poisson(base + extra)
            negatives = np.minimum(rng.poisson(negs_lam + extra_neg), counts)
            labelled = [((int(i.start.timestamp()) - start) // step, (int(i.end.timestamp()) - start) // step)
                        for i in incidents if i.brand == brand.id and i.channel == channel]
            out.append(Series(f"seed{seed}:{brand.id}:{channel}", start, step, counts.astype(float),
                              negatives.astype(float), sorted(labelled)))
    return out


def real_series(data_dir: Path) -> list[Series]:
    out = []
    for s in load_all(data_dir):
        negs = np.array(s.negatives, dtype=float) if s.negatives is not None else None
        out.append(Series(s.name, s.start, STEP_S, np.array(s.counts, dtype=float), negs,
                          [(i, i) for i in s.labels]))
    return out


# ------------------------------------------------------------------------------------------------------
# detectors: each returns the indices at which incidents open
# ------------------------------------------------------------------------------------------------------


def detect_alerter(series: Series, negatives: bool = False, detector: dict[str, Any] | None = None,
                   alerter: dict[str, Any] | None = None) -> list[int]:
    """The alerter as ``pulse spikes`` runs it: one row per interval, intervals from the data."""
    det = SpikeDetector(**(detector or {}))
    al = SpikeAlerter(detector=det, interval_s=series.step, window_s=series.step, align=False, **(alerter or {}))
    opens = []
    negs = series.negatives if negatives else None
    for i, n in enumerate(series.counts):
        t = series.start + i * series.step
        for a in al.update("b", "c", t, float(n), negative=float(negs[i]) if negs is not None else None):
            if a["message"].startswith("open"):
                opens.append((int(datetime.fromisoformat(a["window_start"]).timestamp()) - series.start)
                             // series.step)
    return opens


def detect_rolling(series: Series, window: int = 288, k: float = 3.0, min_points: int = 12) -> list[int]:
    """Baseline: a value above the mean + k sd of the previous ``window`` values opens an alert; the
    alert lasts while values stay above, and the next one opens after one that does not."""
    buf: deque[float] = deque(maxlen=window)
    s = s2 = 0.0
    opens = []
    active = False
    for i, x in enumerate(series.counts):
        x = float(x)
        hit = False
        if len(buf) >= min_points:
            m = s / len(buf)
            sd = math.sqrt(max(s2 / len(buf) - m * m, 0.0))
            hit = x > m + k * sd
        if hit and not active:
            opens.append(i)
        active = hit
        if len(buf) == buf.maxlen:
            old = buf[0]
            s -= old
            s2 -= old * old
        buf.append(x)
        s += x
        s2 += x * x
    return opens


# ------------------------------------------------------------------------------------------------------
# scoring
# ------------------------------------------------------------------------------------------------------


@dataclass
class SetScore:
    nab: float
    nab_no_probation: float
    incidents: int
    found: int
    delays_min: list[float]
    alerts: int
    false_per_week: float
    series: int

    @property
    def recall(self) -> float:
        return self.found / self.incidents if self.incidents else float("nan")


def score_set(series_list: list[Series], detections: list[list[int]], grace_s: float = 1800.0) -> SetScore:
    scores, scores0 = [], []
    found = incidents = alerts = 0
    delays: list[float] = []
    ordinary_points = 0
    ordinary_alerts = 0
    for s, opens in zip(series_list, detections, strict=True):
        n = len(s.counts)
        windows = nab.anomaly_windows(n, s.labels)
        scores.append(nab.raw_score(n, windows, opens))
        scores0.append(nab.raw_score(n, windows, opens, probation=0))
        alerts += len(opens)
        grace = int(grace_s // s.step)
        for lo, hi in s.incidents:
            incidents += 1
            hits = [o for o in opens if lo - grace <= o <= max(hi, lo)]
            if hits:
                found += 1
                delays.append(max(0, min(hits) - lo) * s.step / 60.0)
        inside = np.zeros(n, dtype=bool)
        for lo, hi in windows:
            inside[lo:hi + 1] = True
        ordinary_points += int((~inside).sum())
        ordinary_alerts += sum(1 for o in opens if not inside[o])
    weeks = ordinary_points * (series_list[0].step if series_list else 300) / WEEK
    per_series_week = ordinary_alerts / weeks if weeks else float("nan")
    return SetScore(nab.normalised_score(scores), nab.normalised_score(scores0), incidents, found, delays,
                    alerts, per_series_week, len(series_list))


DETECTORS = {
    "pulse spikes (counts)": lambda s, p: detect_alerter(s, False, p.get("detector"), p.get("alerter")),
    "pulse spikes + negatives": lambda s, p: detect_alerter(s, True, p.get("detector"), p.get("alerter")),
    "rolling mean + 3σ (1 day)": lambda s, p: detect_rolling(s),
}


def evaluate(series_list: list[Series], params: dict[str, Any] | None = None,
             which: tuple[str, ...] = tuple(DETECTORS)) -> dict[str, SetScore]:
    params = params or {}
    out = {}
    for name in which:
        fn = DETECTORS[name]
        if name.startswith("pulse spikes + negatives") and not all(s.negatives is not None for s in series_list):
            continue
        out[name] = score_set(series_list, [fn(s, params) for s in series_list])
    return out


# ------------------------------------------------------------------------------------------------------
# speed: cost per record on sparse and dense series
# ------------------------------------------------------------------------------------------------------


def speed(sparse_series: int = 500, months: int = 18, records_each: int = 40, dense_series: int = 10,
          dense_days: int = 14, seed: int = 3) -> dict[str, float]:
    rng = random.Random(seed)
    start = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
    span = months * 30 * DAY
    # Sparse: minute windows of a few mentions, hours to weeks apart (the flow's view of a small brand).
    sparse = []
    for _k in range(sparse_series):
        times = sorted(rng.sample(range(span // 60), records_each))
        sparse.append([(start + 60 * m, rng.randint(1, 3)) for m in times])
    dense = []
    for _k in range(dense_series):
        dense.append([(start + 60 * m, rng.randint(3, 30)) for m in range(dense_days * 1440)])

    def run(series: list[list[tuple[int, int]]], **kw: Any) -> tuple[float, int]:
        t0 = time.process_time()
        records = 0
        for j, points in enumerate(series):
            det = SpikeDetector(interval_s=60, **kw)
            for t, c in points:
                det.learn_one({"count": c, "ts": t})
            records += len(points)
            del j
        return time.process_time() - t0, records

    def run_alerter(series: list[list[tuple[int, int]]]) -> tuple[float, int]:
        t0 = time.process_time()
        al = SpikeAlerter()
        records = 0
        for j, points in enumerate(series):
            for t, c in points:
                al.update(f"brand{j}", "twitter", t, c)
            records += len(points)
        return time.process_time() - t0, records

    def run_stepping(series: list[list[tuple[int, int]]]) -> tuple[float, int]:
        # What a detector that learns every empty minute one by one costs (the profile).
        t0 = time.process_time()
        records = 0
        for points in series:
            det = SpikeDetector(interval_s=60)
            last = None
            for t, c in points:
                if last is not None:
                    for z in range(last + 60, t, 60):
                        det.learn_one({"count": 0, "ts": z})
                det.learn_one({"count": c, "ts": t})
                last = t
            records += len(points)
        return time.process_time() - t0, records

    ds, dn = run(dense)
    ss, sn = run(sparse)
    das, dan = run_alerter(dense)
    sas, san = run_alerter(sparse)
    few = [p[:8] for p in sparse[:3]]
    st, stn = run_stepping(few)
    return {
        "dense_us_per_record": 1e6 * ds / dn,
        "sparse_us_per_record": 1e6 * ss / sn,
        "sparse_over_dense": (ss / sn) / (ds / dn),
        "alerter_dense_us_per_window": 1e6 * das / dan,
        "alerter_sparse_us_per_window": 1e6 * sas / san,
        "alerter_sparse_over_dense": (sas / san) / (das / dan),
        "stepping_zeros_us_per_record": 1e6 * st / stn,
        "stepping_over_gap_path": (st / stn) / (ss / sn),
    }


# ------------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------------


def _fmt_row(label: str, seeds: str, sc: SetScore) -> str:
    delay = f"{statistics.median(sc.delays_min):.0f}" if sc.delays_min else "–"
    return (f"| {label} | {seeds} | {sc.nab:.1f} | {sc.nab_no_probation:.1f} | {sc.found}/{sc.incidents} | "
            f"{delay} | {sc.alerts} | {sc.false_per_week:.2f} |")


HEADER = ("| detector | series | NAB (standard) | NAB, no probation | incidents found | median delay (min) "
          "| alerts | alerts / series / week outside windows |\n|---|---|---|---|---|---|---|---|")


def _key(name: str) -> str:
    return name.split(" (")[0].replace(" + ", "_").replace(" ", "_").replace("σ", "sd")


def print_scores(prefix: str, label: str, scores: dict[str, SetScore]) -> None:
    for name, sc in scores.items():
        k = f"{prefix}.{_key(name) if not name.startswith('pulse spikes (') else 'pulse_spikes'}"
        print(f"{k}.nab={sc.nab:.2f}")
        print(f"{k}.nab_no_probation={sc.nab_no_probation:.2f}")
        print(f"{k}.recall={sc.recall:.3f}")
        print(f"{k}.false_per_series_week={sc.false_per_week:.3f}")
    del label


#: What ``--tune`` searches on the tuning seed (min_ratio 1.5/2.0 and cooldown 6/24 h were also tried
#: there and changed little): the best NAB score with at most 0.8 alerts per series and week outside windows
#: (the brief allows one a week on real traffic, which is heavier-tailed than the simulator).
TUNING_GRID: list[dict[str, Any]] = [
    {"detector": {"alerts_per_week": a, "tail_start": u, "adapt_after_h": h}}
    for a in (0.15, 0.25, 0.4) for u in (2.0, 3.0, 4.0) for h in (3.0, 6.0, 12.0)
]


def tune(seed: int, days: int) -> dict[str, Any]:
    series = simulator_series(seed, days)
    best: tuple[float, dict[str, Any]] | None = None
    for params in TUNING_GRID:
        sc = evaluate(series, params, which=("pulse spikes (counts)",))["pulse spikes (counts)"]
        print(f"tune seed={seed} {params} nab={sc.nab:.1f} recall={sc.recall:.2f} "
              f"false/series/week={sc.false_per_week:.2f}", flush=True)
        if sc.false_per_week <= 0.8 and (best is None or sc.nab > best[0]):
            best = (sc.nab, params)
    assert best is not None
    return best[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tune-seed", type=int, default=7)
    ap.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3, 4, 5])
    ap.add_argument("--days", type=int, default=56)
    ap.add_argument("--tune", action="store_true", help="grid-search the tuning seed first (slow)")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args(argv)

    params: dict[str, Any] = tune(args.tune_seed, args.days) if args.tune else {}
    if params:
        print(f"tuned={params}")
    rows = [HEADER]
    t0 = time.perf_counter()
    tuned = simulator_series(args.tune_seed, args.days)
    sc = evaluate(tuned, params)
    print_scores("sim_tuning_seed", str(args.tune_seed), sc)
    for name, s in sc.items():
        rows.append(_fmt_row(name, f"tuning seed {args.tune_seed} (18)", s))
    held = [s for seed in args.seeds for s in simulator_series(seed, args.days)]
    sc = evaluate(held, params)
    print_scores("sim_held_out", ",".join(map(str, args.seeds)), sc)
    for name, s in sc.items():
        rows.append(_fmt_row(name, f"held-out seeds {','.join(map(str, args.seeds))} ({len(held)})", s))
    real = real_series(args.data)
    if real:
        sc = evaluate(real, params)
        print_scores("real", "real", sc)
        for name, s in sc.items():
            rows.append(_fmt_row(name, f"real ({len(real)}: {sum(len(r.labels) for r in real)} labels)", s))
        for r in real:
            per = evaluate([r], params, which=("pulse spikes (counts)", "rolling mean + 3σ (1 day)"))
            a, b = per["pulse spikes (counts)"], per["rolling mean + 3σ (1 day)"]
            print(f"real.{r.name}.labels={len(r.labels)} pulse_alerts={a.alerts} pulse_found={a.found} "
                  f"rolling_alerts={b.alerts} rolling_found={b.found}")
    else:
        print("real=skipped (../shared/data not found)")
    print(f"quality_seconds={time.perf_counter() - t0:.1f}")
    print("\n".join(rows))
    if not args.no_speed:
        for k, v in speed().items():
            print(f"speed.{k}={v:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
