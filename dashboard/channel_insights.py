"""The audience and service insights the Channels page shows, read through :mod:`stream.insights`.

The definitions are those of ``pulse metrics --json`` (README, "Insights"): the figures come from the same
read functions (:func:`stream.insights.participation`, :func:`~stream.insights.after_reply`,
:func:`~stream.insights.case_times`, :func:`~stream.insights.business_first_response`) over the page's
range, brand and channels. For one brand they equal the snapshot's per channel; over several brands they add
up per channel (counts), or are weighted by what they are means of (``before``/``after`` and the shares by
customers, mean times by count). A median cannot be added up: ``p50`` is shown where one brand contributes.

Distinct counts (authors, active customers) are per brand and summed over brands, as the page's footprint;
the owned and third-party sides count each brand's customers once over the side's channels (one
HyperLogLog union per brand).

>>> merge_after([{"before": -0.5, "after": 0.5, "improved_share": 1.0, "worsened_share": 0.0, "customers": 1},
...              {"before": 0.0, "after": -0.5, "improved_share": 0.0, "worsened_share": 1.0, "customers": 3}])
{'before': -0.125, 'after': -0.25, 'improved_share': 0.25, 'worsened_share': 0.75, 'customers': 4}
>>> merge_times([{"count": 2, "mean_ms": 60000.0, "p50_ms": 60000.0}, {"count": 1, "mean_ms": 150000.0}])
{'count': 3, 'mean_ms': 90000.0, 'p50_ms': None}
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import redis

from stream import insights
from stream.keys import Keys
from stream.metrics import response_times_between

__all__ = ["AFTER_COLUMNS", "NO_AGENT", "NO_AGENT_SHOWN", "SERVICE_COLUMNS", "ChannelInsights", "merge_after", "merge_times",
           "read_channel_insights"]

#: Behaviour after interaction, per channel or agent (the first column names which).
AFTER_COLUMNS = ["customers", "before", "after", "change", "improved share", "worsened share"]
#: Resolution and next response, per channel or agent.
SERVICE_COLUMNS = ["resolved cases", "mean resolution (h)", "p50 resolution (h)", "next responses",
                   "mean next response (min)"]
_AUDIENCE_COLUMNS = ["channel", "owned", "authors", "new authors", "attraction rate", "active customers",
                     "participation rate"]
_SIDES = (("owned", True), ("third-party", False))
_BUSINESS_COLUMNS = ["brand", "time zone", "responses", "mean in business hours (min)",
                     "p50 in business hours (min)", "mean on the clock (min)"]


def merge_after(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Behaviour-after-interaction summaries of disjoint groups of customers, as one (means weighted by
    customers)."""
    parts = [p for p in parts if p.get("customers")]
    n = sum(int(p["customers"]) for p in parts)
    out: dict[str, Any] = {"before": None, "after": None, "improved_share": None, "worsened_share": None,
                           "customers": n}
    if n:
        for name in ("before", "after", "improved_share", "worsened_share"):
            out[name] = sum(float(p[name]) * int(p["customers"]) for p in parts) / n
    return out


def merge_times(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Count, mean and (from a single contributing part only) p50 of times of disjoint groups."""
    parts = [p for p in parts if p.get("count")]
    n = sum(int(p["count"]) for p in parts)
    mean = sum(float(p["mean_ms"]) * int(p["count"]) for p in parts) / n if n else None
    p50 = parts[0].get("p50_ms") if len(parts) == 1 else None
    return {"count": n, "mean_ms": mean, "p50_ms": p50}


@dataclass(frozen=True)
class ChannelInsights:
    """What the insight panels show over one range (see the module docs for how brands add up).

    ``audience``: per channel, authors and new authors (attraction rate), active customers (participation
    rate, over ``customers`` in the CRM); ``sides``: the same, behaviour after interaction and service times
    for the owned communities and the third-party webs; ``after_channels`` / ``after_agents`` and
    ``service_channels`` / ``service_agents``: behaviour after interaction and resolution / next response
    per channel and per agent; ``business``: first response in business hours per brand that has them.
    """

    customers: int = 0
    days: float = 7.0
    audience: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=_AUDIENCE_COLUMNS))
    sides: pd.DataFrame = field(default_factory=pd.DataFrame)
    after_channels: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["channel", *AFTER_COLUMNS]))
    after_agents: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["agent", *AFTER_COLUMNS]))
    service_channels: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["channel", *SERVICE_COLUMNS]))
    service_agents: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["agent", *SERVICE_COLUMNS]))
    business: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=_BUSINESS_COLUMNS))
    #: Brands with business hours configured (``PULSE_BUSINESS_HOURS``), whatever the filter.
    business_brands: tuple[str, ...] = ()
    #: Per-agent figures cover every channel of the brand (the flow keeps them per agent, not per channel).
    agents_all_channels: bool = False


def _after_row(summary: Mapping[str, Any]) -> dict[str, Any]:
    before, after = summary.get("before"), summary.get("after")
    return {"customers": int(summary.get("customers") or 0), "before": before, "after": after,
            "change": (after - before) if before is not None and after is not None else None,
            "improved share": summary.get("improved_share"), "worsened share": summary.get("worsened_share")}


def _service_row(resolution: Mapping[str, Any], nxt: Mapping[str, Any]) -> dict[str, Any]:
    def hours(ms: Any) -> float | None:
        return None if ms is None else float(ms) / 3_600_000

    return {"resolved cases": int(resolution.get("count") or 0), "mean resolution (h)": hours(resolution.get("mean_ms")),
            "p50 resolution (h)": hours(resolution.get("p50_ms")), "next responses": int(nxt.get("count") or 0),
            "mean next response (min)": None if nxt.get("mean_ms") is None else float(nxt["mean_ms"]) / 60_000}


#: How the flow names "no agent" (a reply or case nobody is recorded for), and how the page shows it.
NO_AGENT, NO_AGENT_SHOWN = "-", "(no agent)"
#: Columns that count (integers); text columns are left as they are, every other one is a float.
_COUNTS = {"authors", "new authors", "active customers", "customers", "resolved cases", "next responses", "responses"}
_TEXT = {"channel", "agent", "side", "brand", "time zone", "owned", "channels"}


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """Rows as a frame with counts as int64, text as it is and every other column float64 (None: NaN), built
    column by column (converting a small frame's types afterwards costs more than reading its figures)."""
    data: dict[str, Any] = {}
    for c in columns:
        values = [r.get(c) for r in rows]
        if c in _TEXT:
            text = [NO_AGENT_SHOWN if v == NO_AGENT else v for v in values] if c == "agent" else values
            data[c] = text if text else pd.Series([], dtype=object)
        elif c in _COUNTS:
            data[c] = np.array(values, dtype=np.int64)
        else:
            data[c] = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return pd.DataFrame(data, columns=columns)


def read_channel_insights(client: redis.Redis, keys: Keys, windows: Mapping[tuple[str, str], list[tuple[str, str]]],
                          footprint: Mapping[str, tuple[int, int]], owned: Iterable[str], since_ms: int,
                          until_ms: int, brands: list[str], channels: tuple[str, ...] = (),
                          business_hours: Mapping[str, insights.BusinessHours] | None = None,
                          days: float = 7.0) -> ChannelInsights:
    """The insights over ``[since_ms, until_ms)`` for ``brands`` (those with windows in the range) and the
    chosen ``channels`` (empty: all).

    ``windows`` are the range's windows ``(gran, bucket)`` per brand x channel and ``footprint`` per channel
    ``(new authors, authors)``, both as the page read them already.
    """
    owned = set(owned)
    chosen = list(channels)

    def channel_ok(c: str) -> bool:
        return not chosen or c in chosen

    pairs = {bc: w for bc, w in windows.items() if bc[0] in brands and channel_ok(bc[1])}
    # participation: per brand x channel, and per brand over each side's channels (a union per brand)
    everything = insights.participation(client, keys, pairs)
    customers = int(everything["customers"])
    sided = {side: insights.participation(client, keys, {bc: w for bc, w in pairs.items() if (bc[1] in owned) == own})
             for side, own in _SIDES}
    active: dict[str, int] = defaultdict(int)
    for b in everything["brands"].values():
        for c, n in b["channels"].items():
            active[c] += int(n)
    after = insights.after_reply(client, keys, brands, since_ms, until_ms, days) if brands else {}
    cases = {b: v for b, v in insights.case_times(client, keys.prefix, since_ms, until_ms).items() if b in brands}
    seen = sorted(footprint)

    def rate(n: float, d: float) -> float | None:
        return n / d if d else None

    audience = [{"channel": c, "owned": c in owned, "authors": footprint[c][1], "new authors": footprint[c][0],
                 "attraction rate": rate(footprint[c][0], footprint[c][1]), "active customers": active.get(c, 0),
                 "participation rate": rate(active.get(c, 0), customers)} for c in seen]
    after_by_channel = {c: merge_after(a["channels"].get(c, {}) for a in after.values()) for c in seen}
    agents = sorted({a for v in after.values() for a in v["agents"]})
    after_by_agent = {a: merge_after(v["agents"].get(a, {}) for v in after.values()) for a in agents}
    resolution = {c: merge_times(v["resolution"]["channels"].get(c, {}) for v in cases.values()) for c in seen}
    nxt = {c: merge_times(v["next_response"]["channels"].get(c, {}) for v in cases.values()) for c in seen}
    case_agents = sorted({a for v in cases.values() for part in ("resolution", "next_response")
                          for a in v[part]["agents"]})
    sides = []
    for side, own in _SIDES:
        mine = [c for c in seen if (c in owned) == own]
        new, authors = sum(footprint[c][0] for c in mine), sum(footprint[c][1] for c in mine)
        side_active = sum(int(b["active"]) for b in sided[side]["brands"].values())
        summary = merge_after(after_by_channel[c] for c in mine)
        sides.append({"side": side, "channels": ", ".join(mine), "authors": authors, "new authors": new,
                      "attraction rate": rate(new, authors), "active customers": side_active,
                      "participation rate": rate(side_active, customers), **_after_row(summary),
                      **_service_row(merge_times(resolution[c] for c in mine), merge_times(nxt[c] for c in mine))})
    business, hours = _business(client, keys, brands, chosen, since_ms, until_ms, business_hours or {})
    return ChannelInsights(
        customers=customers, days=days,
        audience=_frame(audience, _AUDIENCE_COLUMNS),
        sides=_frame(sides, ["side", "channels", "authors", "new authors", "attraction rate", "active customers",
                             "participation rate", *AFTER_COLUMNS, *SERVICE_COLUMNS]),
        after_channels=_frame([{"channel": c, **_after_row(after_by_channel[c])} for c in seen],
                              ["channel", *AFTER_COLUMNS]),
        after_agents=_frame([{"agent": a, **_after_row(after_by_agent[a])} for a in agents], ["agent", *AFTER_COLUMNS]),
        service_channels=_frame([{"channel": c, **_service_row(resolution[c], nxt[c])} for c in seen],
                                ["channel", *SERVICE_COLUMNS]),
        service_agents=_frame([{"agent": a, **_service_row(
            merge_times(v["resolution"]["agents"].get(a, {}) for v in cases.values()),
            merge_times(v["next_response"]["agents"].get(a, {}) for v in cases.values()))} for a in case_agents],
            ["agent", *SERVICE_COLUMNS]),
        business=business, business_brands=hours, agents_all_channels=bool(chosen))


def _business(client: redis.Redis, keys: Keys, brands: list[str], channels: list[str], since_ms: int, until_ms: int,
              hours: Mapping[str, insights.BusinessHours]) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """First response in business hours per brand with hours (``stream.insights.business_first_response``
    over the exact response times of the range's mentions), beside the same responses on the clock."""
    wanted = [b for b in brands if b in hours]
    if not wanted:
        return _frame([], _BUSINESS_COLUMNS), tuple(sorted(hours))
    pairs = [(x["brand"], x["mention_ms"], x["response_ms"])
             for x in response_times_between(client, keys, since_ms, until_ms - 1, wanted)
             if not channels or x["channel"] in channels]
    found = insights.business_first_response(pairs, hours)
    clock: dict[str, list[float]] = defaultdict(list)
    for b, _, response_ms in pairs:
        clock[b].append(response_ms)
    rows = []
    for b in wanted:
        figures = found.get(b, {"count": 0, "mean_ms": None, "p50_ms": None, "tz": hours[b].tz})
        on_clock = clock.get(b, [])
        rows.append({"brand": b, "time zone": figures["tz"], "responses": figures["count"],
                     "mean in business hours (min)": None if figures["mean_ms"] is None else figures["mean_ms"] / 60_000,
                     "p50 in business hours (min)": None if figures["p50_ms"] is None else figures["p50_ms"] / 60_000,
                     "mean on the clock (min)": sum(on_clock) / len(on_clock) / 60_000 if on_clock else None})
    return _frame(rows, _BUSINESS_COLUMNS), tuple(sorted(hours))
