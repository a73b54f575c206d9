"""Quality and speed of the spike detector and the churn-risk model, each beside its baseline.

Run: ``.venv/bin/python benchmarks/spikes_churn.py [--days 28] [--customers 3000] [--rate 1200]
[--synthetic-days 56] [--seed 7]``. Prints one ``name=value`` line per figure; benchmarks/RESULTS.md
holds a copy with the command that produced it.

Simulator (``connectors.simulator.World``, the reference): one pass yields per-minute mention counts per
brand x channel (18 series) with its injected incidents and news bursts as ground truth, and its churn
outcomes (a hidden process driven by negative posts, unanswered and slow queries, tenure and tier).

* Spikes: every detector runs through the same incident logic; an opened incident is a true alert when it
  opens inside an injected incident (or up to 30 minutes after its end), a duplicate when that incident
  already had one, else a false alert. Variants: the alerter on counts alone; with the window's negative
  mentions (truth labels); with negatives as an imperfect sentiment model would label them (finds 75 % of
  the negative posts, calls 8 % of the others negative). Baseline: rolling mean + 3 sigma over the last
  60 windows, on counts and on negatives. Scored from day 1 (after a day of warm-up) and from 06:00 of
  day 0 (the simulator's first possible incident).
* Churn: prequential ROC AUC (each outcome scored before it is learned) of ``ChurnModel`` over
  ``ChurnFeatures`` fed with the stream (truth sentiment and intent labels, brand replies, CRM records),
  beside the negative share alone, the prior without learning, a model without prior, and the ceiling: the
  simulator's own hidden logit.

Synthetic (:func:`spike_traffic`, counts only): four series from 0.3 to 40 mentions a minute with daily and
weekly seasonality, +35 % growth, drift, overdispersed noise, gradual news bursts (1.3-2x, hours) and sudden
incidents (2.5-10x, 10-120 min); the same scoring, plus the baseline behind the alerter's gates.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.simulator import CHANNELS, World, _Run  # noqa: E402
from models.churn import ChurnFeatures, ChurnModel  # noqa: E402
from models.spikes import SpikeAlerter, SpikeDetector  # noqa: E402

START = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday


# ----------------------------------------------------------------------------------------------------
# Spikes: traffic with known incidents
# ----------------------------------------------------------------------------------------------------


@dataclass
class Series:
    """One brand x channel: per-minute counts and the ground truth."""

    name: str
    counts: np.ndarray
    incidents: list[tuple[int, int]] = field(default_factory=list)  # (start, end) minute indices
    bursts: list[tuple[int, int]] = field(default_factory=list)
    rate: np.ndarray | None = None


def _daily_profile(minute_of_day: np.ndarray, weekend: np.ndarray) -> np.ndarray:
    h = minute_of_day / 60.0
    # Weekdays: a morning ramp, a lunchtime and an evening peak, a deep night trough; weekends flatter.
    wk = 0.15 + 0.85 * (np.exp(-((h - 12.5) / 3.5) ** 2) + 0.8 * np.exp(-((h - 19.5) / 2.5) ** 2))
    we = 0.25 + 0.55 * np.exp(-((h - 15.0) / 5.0) ** 2)
    return np.where(weekend, we, wk)


def spike_traffic(name: str, mean_per_min: float, days: int, rng: np.random.Generator,
                  incidents_per_week: float = 2.0, bursts_per_week: float = 3.0,
                  warmup_days: int = 7) -> Series:
    """Per-minute counts for one series; no incidents nor bursts during the first ``warmup_days``."""
    n = days * 1440
    t = np.arange(n)
    minute_of_day = t % 1440
    weekday = (t // 1440) % 7
    weekend = weekday >= 5
    season = _daily_profile(minute_of_day, weekend)
    season = season / season.mean()
    growth = 1.0 + 0.35 * t / n  # +35 % over the run
    # Slow drift: a smoothed random walk in log space (a week-long memory).
    steps = rng.normal(0.0, 0.004, n)
    drift = np.zeros(n)
    for i in range(1, n):
        drift[i] = 0.9995 * drift[i - 1] + steps[i]
    lam = mean_per_min * season * growth * np.exp(drift)

    mult = np.ones(n)
    series = Series(name=name, counts=np.zeros(n))
    lo = warmup_days * 1440
    # News bursts: a gradual rise over 30-90 min to 1.3-2.0x, decaying over 2-6 h. Not incidents.
    for _ in range(rng.poisson(bursts_per_week * (days - warmup_days) / 7)):
        s = int(rng.integers(lo, n - 600))
        rise, decay = int(rng.integers(30, 91)), int(rng.integers(120, 361))
        peak = rng.uniform(1.3, 2.0)
        shape = np.concatenate([np.linspace(0, 1, rise), np.exp(-np.arange(decay) / (decay / 3))])
        e = min(n, s + len(shape))
        mult[s:e] *= 1 + (peak - 1) * shape[: e - s]
        series.bursts.append((s, e))
    # Incidents: sudden onset (1-5 min), 2.5-10x for 10-120 min, then a fast decay.
    for _ in range(rng.poisson(incidents_per_week * (days - warmup_days) / 7)):
        s = int(rng.integers(lo, n - 300))
        if any(abs(s - a) < 360 for a, _ in series.incidents):
            continue
        onset, dur = int(rng.integers(1, 6)), int(rng.integers(10, 121))
        peak = rng.uniform(2.5, 10.0)
        # Small series need more than a multiple: an outage brings at least a few extra mentions a minute.
        extra = max(peak - 1, 4.0 / max(lam[s], 1e-9))
        shape = np.concatenate([np.linspace(0.3, 1, onset), np.ones(dur), np.exp(-np.arange(30) / 8)])
        e = min(n, s + len(shape))
        mult[s:e] *= 1 + extra * shape[: e - s]
        series.incidents.append((s, s + onset + dur))
    # Overdispersion: a gamma-distributed rate per minute (negative binomial counts).
    rate = lam * mult * rng.gamma(20.0, 1 / 20.0, n)
    series.counts = rng.poisson(rate).astype(float)
    series.rate = rate
    series.incidents.sort()
    return series


class RollingBaseline:
    """Rolling mean + 3 sigma over the last ``window`` counts: z = (x - mean) / sd."""

    def __init__(self, window: int = 60) -> None:
        self.buf: deque[float] = deque(maxlen=window)
        self.s = 0.0
        self.s2 = 0.0

    def z(self, x: float) -> float:
        k = len(self.buf)
        if k < 10:
            return 0.0
        mean = self.s / k
        var = max(self.s2 / k - mean * mean, 0.0)
        sd = math.sqrt(var) if var > 0 else 1e-9
        return (x - mean) / sd

    def learn(self, x: float) -> None:
        if len(self.buf) == self.buf.maxlen:
            old = self.buf[0]
            self.s -= old
            self.s2 -= old * old
        self.buf.append(x)
        self.s += x
        self.s2 += x * x


def _incident_opens(flags: list[bool], quiet_to_close: int = 3) -> list[int]:
    """Indices where an incident opens, with the same hysteresis as the alerter (3 quiet windows)."""
    opens, active, quiet = [], False, 0
    for i, f in enumerate(flags):
        if not active and f:
            opens.append(i)
            active, quiet = True, 0
        elif active:
            quiet = 0 if f else quiet + 1
            if quiet >= quiet_to_close:
                active = False
    return opens


def score_alerts(series: Series, opens: list[int], from_minute: int, grace: int = 30) -> dict[str, float]:
    """Alerts opened from ``from_minute`` on against the incidents that start from then on."""
    opens = [o for o in opens if o >= from_minute]
    series = Series(series.name, series.counts, [(s, e) for s, e in series.incidents if s >= from_minute],
                    series.bursts)
    detected: dict[int, int] = {}
    false = duplicates = 0
    for o in opens:
        hit = None
        for k, (s, e) in enumerate(series.incidents):
            if s <= o <= e + grace:
                hit = k
                break
        if hit is None:
            false += 1
        elif hit not in detected:
            detected[hit] = o - series.incidents[hit][0]
        else:
            duplicates += 1
    in_bursts = sum(1 for o in opens if any(s <= o <= e for s, e in series.bursts)
                    and not any(s <= o <= e + grace for s, e in series.incidents))
    return {"alerts": len(opens), "false": false, "false_in_bursts": in_bursts,
            "incidents": len(series.incidents), "detected": len(detected), "duplicates": duplicates,
            "delay_sum": float(sum(detected.values()))}


def run_synthetic_spikes(days: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    volumes = {"forum_quiet": 0.3, "instagram_small": 2.0, "facebook_mid": 8.0, "twitter_busy": 40.0}
    all_series = [spike_traffic(name, v, days, rng) for name, v in volumes.items()]
    eval_from = 7 * 1440
    totals: dict[str, dict[str, float]] = {}
    speed = {"detector_points": 0.0, "detector_s": 0.0, "baseline_points": 0.0, "baseline_s": 0.0}
    for s in all_series:
        # The detector, through the alerter (the flow's entry point).
        alerter = SpikeAlerter(interval_s=60)
        opens = []
        t0 = time.perf_counter()
        counts = s.counts.tolist()
        for i, c in enumerate(counts):
            alerts = alerter.update("acme", s.name, START + timedelta(minutes=i), c)
            if any(a["message"].startswith("open") for a in alerts):
                opens.append(i)
        speed["detector_s"] += time.perf_counter() - t0
        speed["detector_points"] += len(counts)

        # Baselines: rolling mean + 3 sigma, alone and behind the alerter's gates (min excess and ratio).
        base = RollingBaseline(60)
        flags, gated = [], []
        t0 = time.perf_counter()
        for c in counts:
            z = base.z(c)
            flags.append(z > 3.0)
            mean = base.s / len(base.buf) if base.buf else 0.0
            gated.append(z > 3.0 and c - mean >= alerter.min_excess and c >= alerter.min_ratio * mean)
            base.learn(c)
        speed["baseline_s"] += time.perf_counter() - t0
        speed["baseline_points"] += len(counts)
        runs = {"detector": opens, "baseline": _incident_opens(flags), "baseline_gated": _incident_opens(gated)}
        for who, who_opens in runs.items():
            r = score_alerts(s, who_opens, eval_from)
            _add(totals, who, r)
            _add(totals, f"{who}_{s.name}", r)

    eval_days = (days - 7) * len(all_series)
    out: dict[str, float] = {}
    for who in ("detector", "baseline", "baseline_gated"):
        r = totals[who]
        out[f"spikes_{who}_precision"] = r["detected_alerts"] / r["alerts"] if r["alerts"] else 0.0
        out[f"spikes_{who}_recall"] = r["detected"] / r["incidents"] if r["incidents"] else 0.0
        out[f"spikes_{who}_delay_min"] = r["delay_sum"] / r["detected"] if r["detected"] else float("nan")
        out[f"spikes_{who}_false_alerts_per_day"] = r["false"] / eval_days
        out[f"spikes_{who}_false_alerts_in_news_bursts"] = r["false_in_bursts"]
        out[f"spikes_{who}_duplicate_alerts"] = r["duplicates"]
        for s in all_series:
            rs = totals[f"{who}_{s.name}"]
            out[f"spikes_{who}_{s.name}_recall"] = rs["detected"] / rs["incidents"] if rs["incidents"] else 0.0
            out[f"spikes_{who}_{s.name}_false_per_day"] = rs["false"] / (days - 7)
    out["spikes_incidents"] = totals["detector"]["incidents"]
    out["spikes_series_days"] = eval_days
    out["spikes_detector_windows_per_s"] = speed["detector_points"] / speed["detector_s"]
    out["spikes_baseline_windows_per_s"] = speed["baseline_points"] / speed["baseline_s"]
    det = SpikeDetector()
    xs = [{"count": float(c), "ts": START + timedelta(minutes=i)} for i, c in enumerate(all_series[2].counts[:50_000])]
    t0 = time.perf_counter()
    for x in xs:
        det.score_one(x)
        det.learn_one(x)
    out["spikes_detector_score_learn_per_s"] = len(xs) / (time.perf_counter() - t0)
    return out


def _add(totals: dict[str, dict[str, float]], key: str, r: dict[str, float]) -> None:
    t = totals.setdefault(key, {"alerts": 0.0, "false": 0.0, "duplicates": 0.0, "false_in_bursts": 0.0, "incidents": 0.0,
                                "detected": 0.0, "delay_sum": 0.0, "detected_alerts": 0.0})
    for k, v in r.items():
        t[k] += v
    t["detected_alerts"] += r["alerts"] - r["false"] - r["duplicates"]


# ----------------------------------------------------------------------------------------------------
# The simulator: spikes (its injected incidents and news bursts) and churn (its hidden process)
# ----------------------------------------------------------------------------------------------------


def roc_auc(labels: list[bool], scores: list[float]) -> float:
    """Area under the ROC curve by ranks (ties share their mean rank)."""
    pos = sum(labels)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    order = sorted(range(len(scores)), key=scores.__getitem__)
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, y in zip(ranks, labels, strict=True) if y)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


_ORIGINAL_CHURN = _Run._churn


def _record_hidden_churn_logits(world: World) -> dict[tuple[str, str], float]:
    """The simulator's own churn logit per (customer, hour of the outcome): the AUC ceiling.

    Reads the simulator's private counters (negative posts, unanswered and slow queries since the last
    renewal) by wrapping ``_Run._churn``; if those internals change, the ceiling is simply not reported.
    """
    logits: dict[tuple[str, str], float] = {}

    def wrapped(run: Any, lo: int, phase: int, hour: int, out: list[Any]) -> None:
        try:
            for idx in run.renewals.get(phase, ()):
                if run.churned[idx]:
                    continue
                c = run.w._customers[idx]
                tenure = c["tenure_days"] + hour // 24
                logit = (0.6 * math.log1p(run.neg[idx]) + 0.9 * math.log1p(run.unanswered[idx])
                         + 0.5 * math.log1p(run.slow[idx]) + (0.8 if tenure < 180 else 0.0)
                         + {"gold": -0.6, "silver": -0.2, "bronze": 0.2}[c["tier"]])
                stamp = datetime.fromtimestamp(lo, UTC).isoformat()[:13]
                logits[(c["customer_id"], stamp)] = logit
        except (AttributeError, KeyError, TypeError):
            pass
        _ORIGINAL_CHURN(run, lo, phase, hour, out)

    _Run._churn = wrapped  # type: ignore[method-assign]
    return logits


@dataclass
class SimTraffic:
    """Per-minute counts per brand x channel from one simulator run, with the ground truth."""

    start: datetime
    minutes: int
    keys: list[tuple[str, str]]
    total: dict[tuple[str, str], np.ndarray]
    negative: dict[tuple[str, str], np.ndarray]  # truth labels
    negative_noisy: dict[tuple[str, str], np.ndarray]  # as an imperfect sentiment model would label them
    incidents: dict[tuple[str, str], list[tuple[int, int]]]
    bursts: dict[tuple[str, str], list[tuple[int, int]]]


def simulate(days: int, seed: int, customers: int, rate: float) -> tuple[SimTraffic, dict[str, float]]:
    """One pass over the simulator: minute counts for the spike part, churn scored prequentially."""
    world = World(seed=seed, n_customers=customers, rate_per_hour=rate)
    start = world.start
    until = start + timedelta(days=days)
    minutes = days * 1440
    keys = [(b.id, c) for b in world.brands for c in CHANNELS]
    total = {k: np.zeros(minutes) for k in keys}
    negative = {k: np.zeros(minutes) for k in keys}
    noisy = {k: np.zeros(minutes) for k in keys}
    # An imperfect sentiment model: finds 75 % of the negative posts, calls 8 % of the others negative.
    noise = np.random.default_rng(seed + 1)
    start_s = start.timestamp()

    feats = ChurnFeatures()
    feats_14 = ChurnFeatures(halflife_days=14.0)
    model, model_14, model_zero = ChurnModel(), ChurnModel(), ChurnModel(use_prior=False)
    prior_only = ChurnModel()
    for c in world.customers():
        crm = {"type": "crm", "customer_id": c["customer_id"], "tenure_days": c["tenure_days"],
               "value": c["value"], "tier": c["tier"], "ts": start}
        feats.learn_one(crm)
        feats_14.learn_one(crm)
    labels: list[bool] = []
    scored: dict[str, list[float]] = {"model": [], "model_hl14": [], "model_no_prior": [], "prior_only": [],
                                      "neg_share": [], "oracle": []}
    hidden = _record_hidden_churn_logits(world)
    t_feat = t_pred = 0.0
    n_events = n_preds = 0
    for rec in world.events(until=until, kinds={"mention", "churn"}):
        p = rec.payload
        assert isinstance(p, dict)
        if rec.fmt == "churn":
            t0 = time.perf_counter()
            x = feats.transform_one(p)
            scored["model"].append(model.predict_proba_one(x)[True])
            t_pred += time.perf_counter() - t0
            n_preds += 1
            x14 = feats_14.transform_one(p)
            scored["model_hl14"].append(model_14.predict_proba_one(x14)[True])
            scored["model_no_prior"].append(model_zero.predict_proba_one(x)[True])
            scored["prior_only"].append(prior_only.predict_proba_one(x)[True])
            scored["neg_share"].append(x["neg_share"])
            scored["oracle"].append(hidden.get((p["customer_id"], p["ts"][:13]), float("nan")))
            churned = bool(p["churned"])
            labels.append(churned)
            model.learn_one(x, churned)
            model_14.learn_one(x14, churned)
            model_zero.learn_one(x, churned)
            continue
        meta = p.get("meta") or {}
        if not p["from_brand"]:
            minute = int((datetime.fromisoformat(p["ts"]).timestamp() - start_s) // 60)
            if 0 <= minute < minutes:
                k = (p["brand"], p["channel"])
                total[k][minute] += 1
                is_neg = meta.get("truth_sentiment") == "negative"
                negative[k][minute] += is_neg
                noisy[k][minute] += noise.random() < (0.75 if is_neg else 0.08)
        cid = meta.get("truth_customer_id")
        if p["from_brand"] or cid:
            event = {"id": p["id"], "customer_id": cid, "ts": p["ts"], "text": p["text"],
                     "sentiment": meta.get("truth_sentiment"), "intent": meta.get("truth_intent"),
                     "from_brand": p["from_brand"], "in_reply_to": p["in_reply_to"]}
            t0 = time.perf_counter()
            feats.learn_one(event)
            t_feat += time.perf_counter() - t0
            feats_14.learn_one(event)
            n_events += 1

    _Run._churn = _ORIGINAL_CHURN  # type: ignore[method-assign]
    churn: dict[str, float] = {"churn_outcomes": len(labels), "churn_churned": sum(labels)}
    for name, vals in scored.items():
        if name == "oracle" and any(math.isnan(v) for v in vals):
            continue  # the simulator's internals changed: no ceiling to report
        churn[f"churn_auc_{name}"] = roc_auc(labels, vals)
    churn["churn_auc_ratio_model_vs_neg_share"] = churn["churn_auc_model"] / churn["churn_auc_neg_share"]
    churn["churn_feature_events_per_s"] = n_events / t_feat if t_feat else float("nan")
    churn["churn_risk_per_s"] = n_preds / t_pred if t_pred else float("nan")  # transform_one + predict

    incidents: dict[tuple[str, str], list[tuple[int, int]]] = {k: [] for k in keys}
    for i in world.incidents_between(start, until):
        incidents[(i.brand, i.channel)].append((int((i.start - start).total_seconds() // 60),
                                                int((i.end - start).total_seconds() // 60)))
    bursts: dict[tuple[str, str], list[tuple[int, int]]] = {k: [] for k in keys}
    for b in world.bursts_between(start, until):
        bursts[(b.brand, b.channel)].append((int((b.start - start).total_seconds() // 60),
                                             int((b.end - start).total_seconds() // 60)))
    return SimTraffic(start, minutes, keys, total, negative, noisy, incidents, bursts), churn


def sim_alert_opens(tr: SimTraffic) -> tuple[dict[str, dict[tuple[str, str], list[int]]], float]:
    """Minutes at which each detector opens an incident, per brand x channel; and detector windows/s."""
    opens: dict[str, dict[tuple[str, str], list[int]]] = {}
    elapsed = windows = 0.0
    for k in tr.keys:
        counts = tr.total[k].tolist()
        for variant, negs in (("detector", None), ("detector_neg", tr.negative[k].tolist()),
                              ("detector_neg_noisy", tr.negative_noisy[k].tolist())):
            alerter = SpikeAlerter(interval_s=60)
            found = opens.setdefault(variant, {}).setdefault(k, [])
            t0 = time.perf_counter()
            for i, c in enumerate(counts):
                alerts = alerter.update(k[0], k[1], tr.start + timedelta(minutes=i), c,
                                        negative=negs[i] if negs is not None else None)
                if alerts and any(a["message"].startswith("open") for a in alerts):
                    found.append(i)
            if variant == "detector":
                elapsed += time.perf_counter() - t0
                windows += len(counts)
        for variant, values in (("baseline", counts), ("baseline_neg", tr.negative[k].tolist())):
            base = RollingBaseline(60)
            flags = []
            for c in values:
                flags.append(base.z(c) > 3.0)
                base.learn(c)
            opens.setdefault(variant, {})[k] = _incident_opens(flags)
    return opens, windows / elapsed


def score_sim_spikes(tr: SimTraffic, opens: dict[str, dict[tuple[str, str], list[int]]],
                     from_minute: int, prefix: str) -> dict[str, float]:
    """Alerts scored against the simulator's incidents that start from ``from_minute`` on."""
    runs: dict[str, dict[str, float]] = {}
    for variant, per_key in opens.items():
        for k, found in per_key.items():
            series = Series(name=f"{k[0]}_{k[1]}", counts=tr.total[k], incidents=tr.incidents[k],
                            bursts=tr.bursts[k])
            _add(runs, variant, score_alerts(series, found, from_minute))
    days = (tr.minutes - from_minute) / 1440
    out: dict[str, float] = {}
    for who, r in runs.items():
        out[f"{prefix}_{who}_precision"] = r["detected_alerts"] / r["alerts"] if r["alerts"] else 0.0
        out[f"{prefix}_{who}_recall"] = r["detected"] / r["incidents"] if r["incidents"] else 0.0
        out[f"{prefix}_{who}_delay_min"] = r["delay_sum"] / r["detected"] if r["detected"] else float("nan")
        out[f"{prefix}_{who}_false_alerts_per_day"] = r["false"] / days
        out[f"{prefix}_{who}_false_alerts_in_news_bursts"] = r["false_in_bursts"]
        out[f"{prefix}_{who}_duplicate_alerts"] = r["duplicates"]
    out[f"{prefix}_incidents"] = runs["detector"]["incidents"]
    out[f"{prefix}_bursts"] = sum(1 for k in tr.keys for st, _ in tr.bursts[k] if st >= from_minute)
    out[f"{prefix}_series"] = len(tr.keys)
    out[f"{prefix}_days"] = days
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=28, help="days of simulated world")
    ap.add_argument("--customers", type=int, default=3000, help="CRM customers in the simulated world")
    ap.add_argument("--rate", type=float, default=1200.0, help="simulated mentions per hour (all brands)")
    ap.add_argument("--synthetic-days", type=int, default=56, help="days of the synthetic spike series (0: skip)")
    ap.add_argument("--seed", type=int, default=7, help="random seed of the simulator and generators")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    traffic, churn = simulate(args.days, args.seed, args.customers, args.rate)
    figures: dict[str, float] = {"sim_generate_s": time.perf_counter() - t0}
    figures.update(churn)
    opens, windows_per_s = sim_alert_opens(traffic)
    figures.update(score_sim_spikes(traffic, opens, from_minute=1440, prefix="sim_spikes"))
    figures["sim_spikes_detector_windows_per_s"] = windows_per_s
    early = score_sim_spikes(traffic, opens, from_minute=360, prefix="sim_spikes_from6h")
    figures.update({k: v for k, v in early.items()
                    if k.endswith(("_recall", "_precision", "_false_alerts_per_day", "_incidents"))})
    if args.synthetic_days > 0:
        figures.update({f"synthetic_{k}": v for k, v in run_synthetic_spikes(args.synthetic_days, args.seed).items()})
    for k, v in figures.items():
        print(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
