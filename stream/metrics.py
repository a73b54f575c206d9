"""Reading the analytics back from Redis: the ``pulse metrics`` snapshot and the dashboard's series.

Definitions are those of ARCHITECTURE.md ("Metrics"). A window hash holds each run's own counters
(``name@run``) and the counters reply matching keeps across runs; :func:`counters_of` sums them by name.

Which figures are exact:

- **Counts and means are exact for any range**: mentions, queries, answered, unanswered, replies, sentiment,
  first response count and mean come from window counters. A range is read from the day windows it covers
  whole, the hour windows it covers whole in the remaining hours, and minute windows at its edges
  (minute windows are kept ``minute_retention_seconds``, hours 30 times and days 365 times longer).
- **Quantiles** (p50, p90, p99) are exact (linear interpolation between the closest ranks, like polars'
  ``quantile(q, "linear")``) while the range lies within the exact response times' retention
  (``response_retention_seconds`` behind the newest mention of the series); otherwise they come from the
  DDSketches of the hour and day windows of the range (:mod:`stream.sketch`, within 1 %), the range rounded
  out to whole hours. ``first_response.quantiles`` says which (``exact`` or ``sketch``).
- **Distinct authors** are HyperLogLog estimates (0.81 % standard error).

>>> quantile([1000, 2000, 3000, 4000], 0.5), quantile([1000, 2000, 3000, 4000], 0.9)
(2500.0, 3700.0)
>>> counters_of({b"mentions@f1": b"3", b"mentions@f2": b"2", b"mentions@x": b"-1", b"answered": b"1"})["mentions"]
4
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import redis

from stream import insights, sketch
from stream.keys import GRANULARITIES, Keys
from stream.windows import COUNTERS

__all__ = ["counters_of", "dead_letters_of", "distinct_authors", "exact_complete", "first_response",
           "merged_sketches", "quantile", "recent_dead_letters",
           "recent_mentions", "response_times_between", "snapshot", "timeseries", "totals",
           "unanswered_between", "windows_between"]

_SUMMED = ("mentions", "queries", "comments", "replies", "response_ms_sum", "response_count", "answered",
           "unanswered", "late", "new_authors")
_QUANTILES = (("p50_ms", 0.5), ("p90_ms", 0.9), ("p99_ms", 0.99))
_DAY, _HOUR, _MINUTE = GRANULARITIES["d"], GRANULARITIES["h"], GRANULARITIES["m"]


def quantile(sorted_values: list[float], q: float) -> float | None:
    """Linear-interpolated quantile of already sorted values (None when empty)."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def first_response(values: list[float]) -> dict[str, Any]:
    """Count, mean, p50, p90 and p99 (ms) of exact first response times."""
    values = sorted(values)
    out: dict[str, Any] = {"count": len(values), "mean_ms": (sum(values) / len(values)) if values else None}
    out.update({name: quantile(values, q) for name, q in _QUANTILES})
    out["quantiles"] = "exact"
    return out


def counters_of(fields: Mapping[Any, Any]) -> dict[str, int]:
    """A window hash's counters summed over runs (``name@run`` and ``name@x`` fields add to ``name``)."""
    out = dict.fromkeys(COUNTERS, 0)
    for field, value in fields.items():
        name = _decode(field).split("@", 1)[0]
        if name in out:
            out[name] += int(value)
    return out


def _ms(dt: datetime | None) -> int | None:
    return None if dt is None else int(dt.timestamp() * 1000)


def _decode(b: bytes | str) -> str:
    return b.decode() if isinstance(b, bytes) else b


def totals(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """Offered, accepted, dead letters and duplicates summed over every source and run."""
    out = {"offered": 0, "accepted": 0, "dead_letters": 0, "duplicates": 0}
    for field, value in client.hgetall(keys.stats).items():
        name = _decode(field).rsplit("|", 1)[-1]
        if name in out:
            out[name] += int(value)
    out["late"] = int(client.zcard(keys.late))
    out["dead_letter_stream"] = int(client.xlen(keys.dlq)) if client.exists(keys.dlq) else 0
    return out


def _brand_channels(client: redis.Redis, keys: Keys) -> dict[str, list[str]]:
    brands = sorted(_decode(b) for b in client.smembers(keys.brands))
    pipe = client.pipeline(transaction=False)
    for brand in brands:
        pipe.smembers(keys.channels(brand))
    return {b: sorted(_decode(c) for c in chans) for b, chans in zip(brands, pipe.execute(), strict=True)}


def _empty_block() -> dict[str, Any]:
    block: dict[str, Any] = dict.fromkeys(_SUMMED, 0)
    block["sentiment"] = {"negative": 0, "neutral": 0, "positive": 0}
    return block


def _covering(indexes: Mapping[str, list[tuple[bytes, float]]], lo: int | None, hi: int | None
              ) -> list[tuple[str, str]]:
    """The windows ``(gran, bucket)`` that cover ``[lo, hi)``: whole days, then whole hours, then minutes.

    ``indexes`` maps each granularity to its windows ``(bucket, start)`` with a start in the range.
    """
    if lo is None and hi is None:
        return [("d", _decode(b)) for b, _ in indexes["d"]]
    lo_ = lo if lo is not None else -(2**62)
    hi_ = hi if hi is not None else 2**62
    days = {int(start) for _, start in indexes["d"] if start >= lo_ and start + _DAY <= hi_}
    out = [("d", _decode(b)) for b, start in indexes["d"] if int(start) in days]
    hours = {int(start) for _, start in indexes["h"]
             if start >= lo_ and start + _HOUR <= hi_ and int(start) - int(start) % _DAY not in days}
    out += [("h", _decode(b)) for b, start in indexes["h"] if int(start) in hours]
    out += [("m", _decode(b)) for b, start in indexes["m"]
            if lo_ <= start < hi_ and int(start) - int(start) % _HOUR not in hours
            and int(start) - int(start) % _DAY not in days]
    return out


def _sketch_keys(keys: Keys, brand: str, channel: str, windows: Iterable[tuple[str, str]]) -> list[str]:
    """The sketches of the windows' responses: day sketches for days, hour sketches for hours and minutes."""
    found: dict[str, None] = {}
    for gran, bucket in windows:
        if gran == "d":
            found[keys.sketch(brand, channel, bucket, "d")] = None
        else:
            found[keys.sketch(brand, channel, bucket[:10], "h")] = None
    return list(found)


# KEYS: sketch hashes of one brand (one hash slot); ARGV[i]: the group of KEYS[i]. Merges each group's
# sketches on the server; returns per group {group, n, bucket_1, count_1, ...} (bucket "z" for zero).
_MERGE_SKETCHES = """
local groups, order = {}, {}
for i, key in ipairs(KEYS) do
  local g = ARGV[i]
  local acc = groups[g]
  if acc == nil then acc = {}; groups[g] = acc; order[#order + 1] = g end
  local h = redis.call('HGETALL', key)
  for j = 1, #h, 2 do acc[h[j]] = (acc[h[j]] or 0) + tonumber(h[j + 1]) end
end
local out = {}
for _, g in ipairs(order) do
  local acc = groups[g]
  local flat = {}
  for b, n in pairs(acc) do if n ~= 0 then flat[#flat + 1] = b; flat[#flat + 1] = n end end
  out[#out + 1] = g
  out[#out + 1] = #flat / 2
  for _, x in ipairs(flat) do out[#out + 1] = x end
end
return out
"""


def merged_sketches(client: redis.Redis, per_brand: Mapping[str, list[tuple[str, str]]]) -> dict[str, dict[str, int]]:
    """Response-time sketches merged per group: ``per_brand`` maps a brand to its ``(sketch key, group)`` pairs.

    One read-only script per brand (its keys share a hash slot), pipelined; the groups of every brand are
    added up in Python. Returns ``group -> {bucket: count}`` (:mod:`stream.sketch`), for groups with data.
    """
    chosen = {b: pairs for b, pairs in per_brand.items() if pairs}
    if not chosen:
        return {}
    script = client.register_script(_MERGE_SKETCHES)
    pipe = client.pipeline(transaction=False)
    for pairs in chosen.values():
        script(keys=[k for k, _ in pairs], args=[g for _, g in pairs], client=pipe)
    out: dict[str, dict[str, int]] = {}
    for flat in pipe.execute():
        i = 0
        while i < len(flat):
            group, n = _decode(flat[i]), int(flat[i + 1])
            acc = out.setdefault(group, {})
            for j in range(i + 2, i + 2 + 2 * n, 2):
                b = _decode(flat[j])
                acc[b] = acc.get(b, 0) + int(flat[j + 1])
            i += 2 + 2 * n
    return out


def _response_block(exact: list[float] | None, sketches: list[Mapping[bytes, bytes]], count: int,
                    total_ms: int) -> dict[str, Any]:
    """First response figures: count and mean from counters, quantiles exact (``exact`` given) or sketched."""
    if exact is not None:
        out = first_response(exact)
    else:
        merged = sketch.merge({_decode(b): int(n) for b, n in s.items()} for s in sketches)
        out = {name: sketch.quantile(merged, q) for name, q in _QUANTILES}
        out["quantiles"] = "sketch"
    out["count"] = count
    out["mean_ms"] = (total_ms / count) if count else None
    return out


def _rates(block: dict[str, Any]) -> None:
    """Answer rate (answered queries / queries), reply rate (brand replies / customer mentions), attraction
    rate (new authors / distinct authors)."""
    block["answer_rate"] = (block["answered"] / block["queries"]) if block["queries"] else None
    block["reply_rate"] = (block["replies"] / block["mentions"]) if block["mentions"] else None
    # every new author is an author: the exact new count bounds the HyperLogLog estimate from below
    authors = max(block.get("authors") or 0, block["new_authors"])
    block["attraction_rate"] = (block["new_authors"] / authors) if authors else None


def snapshot(client: redis.Redis, keys: Keys, since: datetime | None = None, until: datetime | None = None,
             business_hours: Mapping[str, insights.BusinessHours] | None = None,
             after_reply_days: float = 7.0) -> dict[str, Any]:
    """The ``pulse metrics --json`` document (ARCHITECTURE.md, "Command line") over ``[since, until)``, with the
    insights of :mod:`stream.insights` (attraction, participation, behaviour after interaction, resolution and
    next response, business-hours first response when ``business_hours`` names the brand)."""
    lo, hi = _ms(since), _ms(until)
    ranged = lo is not None or hi is not None
    bc = _brand_channels(client, keys)
    pairs = [(b, c) for b, chans in bc.items() for c in chans]
    pipe = client.pipeline(transaction=False)
    grans = ("d", "h", "m") if ranged else ("d",)
    qlo = lo if lo is not None else "-inf"
    qhi = f"({hi}" if hi is not None else "+inf"
    for b, c in pairs:
        for gran in grans:
            pipe.zrangebyscore(keys.windows_index(b, c, gran), qlo, qhi, withscores=True)
    pipe.hgetall(keys.response_cutoff)
    found = pipe.execute()
    cutoffs = {_decode(k): int(v) for k, v in found.pop().items()}
    exact_ok = exact_complete(client, keys, pairs, lo)
    covering: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for n, (b, c) in enumerate(pairs):
        idx = {g: found[n * len(grans) + i] for i, g in enumerate(grans)}
        covering[b, c] = _covering({g: idx.get(g, []) for g in ("d", "h", "m")}, lo, hi)
    # one round trip for every window, HLL and the response times or sketches
    for b, c in pairs:
        for gran, bucket in covering[b, c]:
            pipe.hgetall(keys.window(b, c, bucket, gran))
    windows = iter(pipe.execute())
    for b in bc:
        for c in bc[b]:
            hlls = [keys.authors(b, c, bucket, gran) for gran, bucket in covering[b, c]]
            pipe.pfcount(*hlls) if hlls else pipe.echo("0")
            if exact_ok[b, c]:
                pipe.zrangebyscore(keys.response_times_at(b, c), *_exact_range(cutoffs, b, c, lo, None)[:1], qhi)
                pipe.zrange(keys.response_times(b, c), 0, -1, withscores=True)
            for key in _sketch_keys(keys, b, c, covering[b, c]):  # for the brand's figures when not all exact
                pipe.hgetall(key)
        hlls = [keys.authors(b, c, bucket, gran) for c in bc[b] for gran, bucket in covering[b, c]]
        pipe.pfcount(*hlls) if hlls else pipe.echo("0")
    rest = iter(pipe.execute())
    brands: dict[str, Any] = {}
    for b in bc:
        brand = brands.setdefault(b, {"channels": {}})
        agg = _empty_block()
        agg_exact: list[float] = []
        agg_sketches: list[Mapping[bytes, bytes]] = []
        all_exact = True
        for c in bc[b]:
            block = _empty_block()
            for _ in covering[b, c]:
                counts = counters_of(next(windows))
                for name in _SUMMED:
                    block[name] += counts[name]
                for sname in ("negative", "neutral", "positive"):
                    block["sentiment"][sname] += counts[sname]
            block["authors"] = int(next(rest))
            exact: list[float] | None = None
            if exact_ok[b, c]:
                in_range = set(next(rest))
                exact = [v for m, v in next(rest) if m in in_range]
                agg_exact.extend(exact)
            else:
                all_exact = False
            sketches = [next(rest) for _ in _sketch_keys(keys, b, c, covering[b, c])]
            agg_sketches.extend(sketches)
            block["first_response"] = _response_block(exact, sketches, block["response_count"],
                                                      block["response_ms_sum"])
            _rates(block)
            if block["mentions"] or block["replies"] or block["response_count"] or block["unanswered"]:
                brand["channels"][c] = block
                for name in _SUMMED:
                    agg[name] += block[name]
                for sname in agg["sentiment"]:
                    agg["sentiment"][sname] += block["sentiment"][sname]
        agg["authors"] = int(next(rest))
        agg["first_response"] = _response_block(agg_exact if all_exact else None, agg_sketches,
                                                agg["response_count"], agg["response_ms_sum"])
        _rates(agg)
        brand.update(agg)
    for b, deflection in call_deflection(client, keys, lo, hi).items():
        if b in brands:
            brands[b]["calls"] = deflection
    for b in [b for b, v in brands.items() if not v["channels"] and "calls" not in v]:
        del brands[b]  # nothing left: e.g. every mention moved to the brand that answered it
    _add_insights(client, keys, brands, covering, lo, hi, business_hours or {}, after_reply_days)
    doc: dict[str, Any] = {"generated_at": datetime.now(UTC).isoformat(), **totals(client, keys)}
    doc["since"] = since.isoformat() if since else None
    doc["until"] = until.isoformat() if until else None
    doc["brands"] = brands
    return doc


def _add_insights(client: redis.Redis, keys: Keys, brands: dict[str, Any],
                  covering: Mapping[tuple[str, str], list[tuple[str, str]]], lo: int | None, hi: int | None,
                  business_hours: Mapping[str, insights.BusinessHours], after_reply_days: float) -> None:
    shown = {(b, c): w for (b, c), w in covering.items() if b in brands and c in brands[b]["channels"]}
    active = insights.participation(client, keys, shown)
    customers = active["customers"]
    after = insights.after_reply(client, keys, brands, lo, hi, after_reply_days)
    cases = insights.case_times(client, keys.prefix, lo, hi)
    business = insights.business_first_response(
        ((x["brand"], x["mention_ms"], x["response_ms"]) for x in response_times_between(
            client, keys, lo, None if hi is None else hi - 1, [b for b in brands if b in business_hours])),
        business_hours) if business_hours else {}
    for b, brand in brands.items():
        mine = active["brands"].get(b, {"active": 0, "channels": {}})
        brand["active_customers"] = mine["active"]
        brand["participation_rate"] = (mine["active"] / customers) if customers else None
        brand["after_reply"] = {k: v for k, v in after[b].items() if k != "channels"}
        brand.update(cases.get(b, {"resolution": insights.case_times_empty(), "next_response": {"count": 0,
                                   "mean_ms": None, "channels": {}, "agents": {}}}))
        if b in business:
            brand["first_response_business"] = business[b]
        for c, block in brand["channels"].items():
            block["active_customers"] = mine["channels"].get(c, 0)
            block["participation_rate"] = (block["active_customers"] / customers) if customers else None
            block["after_reply"] = after[b]["channels"].get(c, insights.summary([]))
            for name in ("resolution", "next_response"):
                block[name] = brand[name]["channels"].get(c, {"count": 0, "mean_ms": None})


def timeseries(client: redis.Redis, keys: Keys, minutes: int = 60, gran: str = "m",
               until_ms: int | None = None) -> list[dict[str, Any]]:
    """One row per window x brand x channel for the last ``minutes`` windows of data (newest data as "now").

    Rows carry every counter plus ``brand``, ``channel``, ``start`` (aware datetime).
    """
    bc = _brand_channels(client, keys)
    pairs = [(b, c) for b, chans in bc.items() for c in chans]
    pipe = client.pipeline(transaction=False)
    for b, c in pairs:
        pipe.zrevrange(keys.windows_index(b, c, gran), 0, 0, withscores=True)
    newest = [r[0][1] for r in pipe.execute() if r]
    if not newest:
        return []
    end = until_ms if until_ms is not None else int(max(newest))
    length = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}[gran]
    return windows_between(client, keys, end - (minutes - 1) * length, end, gran)


def windows_between(client: redis.Redis, keys: Keys, since_ms: int | None, until_ms: int | None, gran: str = "m",
                    brands: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per window x brand x channel whose start is in ``[since_ms, until_ms]`` (None: open-ended).

    Rows carry every counter plus ``brand``, ``channel``, ``start`` (aware datetime).
    """
    pairs = [(b, c) for b, chans in _brand_channels(client, keys).items() if brands is None or b in brands
             for c in chans]
    lo = since_ms if since_ms is not None else "-inf"
    hi = until_ms if until_ms is not None else "+inf"
    pipe = client.pipeline(transaction=False)
    for b, c in pairs:
        pipe.zrangebyscore(keys.windows_index(b, c, gran), lo, hi, withscores=True)
    found = pipe.execute()
    order: list[tuple[str, str, float]] = []
    for (b, c), ids in zip(pairs, found, strict=True):
        for bucket, score in ids:
            pipe.hgetall(keys.window(b, c, _decode(bucket), gran))
            order.append((b, c, score))
    rows = []
    for (b, c, score), h in zip(order, pipe.execute(), strict=True):
        if not h:
            continue
        row: dict[str, Any] = counters_of(h)
        if not (row["mentions"] or row["replies"] or row["response_count"] or row["unanswered"]):
            continue  # corrections that cancel out: its mentions moved to the brand that answered them
        row.update(brand=b, channel=c, start=datetime.fromtimestamp(score / 1000, tz=UTC))
        rows.append(row)
    return rows


def recent_mentions(client: redis.Redis, keys: Keys, n: int = 50) -> list[bytes]:
    """The newest enriched mentions (JSON bytes), newest first."""
    members: list[bytes] = client.zrevrange(keys.latest, 0, n - 1)  # type: ignore[assignment]
    return members


def recent_dead_letters(client: redis.Redis, keys: Keys, n: int = 50) -> list[dict[str, str]]:
    """The newest dead letters, newest first, as text fields."""
    out = []
    entries: list[Any] = client.xrevrange(keys.dlq, count=n) or []  # type: ignore[assignment]
    for _id, fields in entries:
        out.append({_decode(k): _decode(v) if isinstance(v, bytes) and _is_text(v) else repr(v)
                    for k, v in fields.items()})
    return out


def dead_letters_of(client: redis.Redis, keys: Keys, source: str, run: str | None = None, n: int = 5,
                    scan: int = 10_000) -> list[dict[str, str]]:
    """Up to ``n`` dead letters of one source (and run, if given) among the newest ``scan`` of the stream, in the
    source's order (file line or row when known, else stream order), as :func:`recent_dead_letters` gives them."""
    found = [d for d in recent_dead_letters(client, keys, scan)
             if d.get("source") == source and (run is None or d.get("run") == run)]

    def place(d: dict[str, str]) -> tuple[int, str]:
        where = d.get("origin", "").split(" ")
        return (int(where[-1]) if where[-1].isdigit() else -1, d.get("key", ""))

    return sorted(found, key=place)[:n]


def _is_text(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def exact_complete(client: redis.Redis, keys: Keys, series: Iterable[tuple[str, str]], since_ms: int | None
                   ) -> dict[tuple[str, str], bool]:
    """Per brand x channel: are the exact response times from ``since_ms`` on all still kept?"""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.response_cutoff)
    pipe.hgetall(keys.response_oldest)
    cuts, oldest = ({_decode(k): int(v) for k, v in h.items()} for h in pipe.execute())
    out = {}
    for b, c in series:
        cut = cuts.get(f"{b}|{c}")
        out[b, c] = cut is None or (since_ms is not None and since_ms >= cut) or oldest.get(f"{b}|{c}", cut) >= cut
    return out


def _cutoffs(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """Per ``brand|channel``: the event time before which exact response times are no longer kept."""
    return {_decode(k): int(v) for k, v in client.hgetall(keys.response_cutoff).items()}


def _exact_range(cutoffs: Mapping[str, int], brand: str, channel: str, since_ms: int | None,
                 until_ms: int | None) -> tuple[int | str, int | str]:
    """``[since, until]`` for a sorted set scored by mention time, never before the series' cut-off."""
    cut = cutoffs.get(f"{brand}|{channel}")
    lo: int | None = since_ms if cut is None else max(cut, since_ms if since_ms is not None else cut)
    return (lo if lo is not None else "-inf", until_ms if until_ms is not None else "+inf")


def response_times_between(client: redis.Redis, keys: Keys, since_ms: int | None = None,
                           until_ms: int | None = None, brands: list[str] | None = None) -> list[dict[str, Any]]:
    """Exact first response times of the mentions posted in ``[since_ms, until_ms]`` (event time, ms), as far
    back as they are kept (``response_retention_seconds``).

    Rows carry ``brand``, ``channel``, ``mention_id``, ``mention_ms`` and ``response_ms``; the reply was
    posted at ``mention_ms + response_ms``. ``brands`` limits the brands read (default: all).
    """
    bc = _brand_channels(client, keys)
    pairs = [(b, c) for b, chans in bc.items() if brands is None or b in brands for c in chans]
    cutoffs = _cutoffs(client, keys)
    script = client.register_script(_RESPONSE_TIMES)
    pipe = client.pipeline(transaction=False)
    for b, c in pairs:
        script(keys=[keys.response_times_at(b, c), keys.response_times(b, c)],
               args=list(_exact_range(cutoffs, b, c, since_ms, until_ms)), client=pipe)
    rows: list[dict[str, Any]] = []
    for (b, c), flat in zip(pairs, pipe.execute() if pairs else [], strict=True):
        for i in range(0, len(flat), 3):
            rows.append({"brand": b, "channel": c, "mention_id": _decode(flat[i]), "mention_ms": int(flat[i + 1]),
                         "response_ms": float(flat[i + 2])})
    return rows


# KEYS[1] mention times (rtt), KEYS[2] response times (rt) of one series; ARGV: the mention-time range. One reply
# per series, {mention id, mention ms, response ms, ...} (whole milliseconds: integers), instead of two sorted-set
# reads and their scores converted one by one.
_RESPONSE_TIMES = """
local found = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2], 'WITHSCORES')
local out = {}
for i = 1, #found, 2 do
  local r = redis.call('ZSCORE', KEYS[2], found[i])
  if r then
    out[#out + 1] = found[i]
    out[#out + 1] = tonumber(found[i + 1])
    out[#out + 1] = tonumber(r)
  end
end
return out
"""


def unanswered_between(client: redis.Redis, keys: Keys, since_ms: int | None = None, until_ms: int | None = None,
                       brands: list[str] | None = None) -> list[dict[str, Any]]:
    """Queries posted in ``[since_ms, until_ms]`` still unanswered after the SLA: ``brand``, ``channel``,
    ``mention_id``, ``mention_ms`` (the snapshot's ``unanswered``, one row each)."""
    pairs = [(b, c) for b, chans in _brand_channels(client, keys).items() if brands is None or b in brands
             for c in chans]
    cutoffs = _cutoffs(client, keys)
    pipe = client.pipeline(transaction=False)
    for b, c in pairs:
        pipe.zrangebyscore(keys.unanswered(b, c), *_exact_range(cutoffs, b, c, since_ms, until_ms), withscores=True)
    return [{"brand": b, "channel": c, "mention_id": _decode(m), "mention_ms": int(ts)}
            for (b, c), members in zip(pairs, pipe.execute(), strict=True) for m, ts in members]


def distinct_authors(client: redis.Redis, keys: Keys, since_ms: int, until_ms: int, gran: str = "m",
                     brands: list[str] | None = None) -> dict[str, int]:
    """Distinct authors per brand over the windows starting in ``[since_ms, until_ms]`` (HyperLogLog union).

    One brand's keys share a hash slot, so this also works on Redis Cluster.
    """
    bc = _brand_channels(client, keys)
    chosen = [b for b in bc if brands is None or b in brands]
    pipe = client.pipeline(transaction=False)
    pairs = [(b, c) for b in chosen for c in bc[b]]
    for b, c in pairs:
        pipe.zrangebyscore(keys.windows_index(b, c, gran), since_ms, until_ms)
    per_brand: dict[str, list[str]] = {b: [] for b in chosen}
    for (b, c), buckets in zip(pairs, pipe.execute(), strict=True):
        per_brand[b].extend(keys.authors(b, c, _decode(x), gran) for x in buckets)
    for b in chosen:
        pipe.pfcount(*per_brand[b]) if per_brand[b] else pipe.echo("0")
    return {b: int(n) for b, n in zip(chosen, pipe.execute(), strict=True)}


_HOUR = 3_600_000


def call_deflection(client: redis.Redis, keys: Keys, since_ms: int | None = None, until_ms: int | None = None,
                    baseline_hours: int = 24) -> dict[str, dict[str, Any]]:
    """Call deflection per brand, per hour, from the call-centre feed and the brand's social answers.

    For each hour: the baseline is the mean call volume of the ``baseline_hours`` before it; the hour's
    deflection is the drop below that baseline, ``(baseline - calls) / baseline``, counted only when
    social answers (first responses) grew above their own trailing mean, and 0 otherwise. Returns per
    brand ``{"calls", "social_answers", "deflection_rate" (mean over hours with a baseline, or None),
    "hours": [{"hour", "calls", "baseline", "social_answers", "deflection"}]}``.
    """
    calls: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for field, value in client.hscan_iter(keys.calls, count=5000):
        brand, _queue, minute = _decode(field).rsplit("|", 2)
        start = Keys.bucket_start_ms("m", minute)
        calls[brand][start - start % _HOUR] += int(value)
    out: dict[str, dict[str, Any]] = {}
    for brand, by_hour in calls.items():
        answers = _answers_per_hour(client, keys, brand, min(by_hour) - baseline_hours * _HOUR, max(by_hour))
        hours, rates = [], []
        for hour in sorted(by_hour):
            prior = [by_hour.get(hour - i * _HOUR) for i in range(1, baseline_hours + 1)]
            prior_calls = [c for c in prior if c is not None]
            prior_answers = [answers.get(hour - i * _HOUR, 0) for i in range(1, baseline_hours + 1)]
            baseline = sum(prior_calls) / len(prior_calls) if prior_calls else None
            social = answers.get(hour, 0)
            growing = social > sum(prior_answers) / len(prior_answers)
            deflection = None
            if baseline:
                deflection = max(0.0, (baseline - by_hour[hour]) / baseline) if growing else 0.0
            in_range = (since_ms is None or hour >= since_ms) and (until_ms is None or hour < until_ms)
            if not in_range:
                continue
            if deflection is not None:
                rates.append(deflection)
            hours.append({"hour": datetime.fromtimestamp(hour / 1000, tz=UTC).isoformat(), "calls": by_hour[hour],
                          "baseline": baseline, "social_answers": social, "deflection": deflection})
        out[brand] = {"calls": sum(h["calls"] for h in hours),
                      "social_answers": sum(h["social_answers"] for h in hours),
                      "deflection_rate": (sum(rates) / len(rates)) if rates else None, "hours": hours}
    return out


def _answers_per_hour(client: redis.Redis, keys: Keys, brand: str, lo_ms: int, hi_ms: int) -> dict[int, int]:
    """First responses per hour for a brand, over all its channels (hour windows)."""
    channels = sorted(_decode(c) for c in client.smembers(keys.channels(brand)))
    pipe = client.pipeline(transaction=False)
    for c in channels:
        pipe.zrangebyscore(keys.windows_index(brand, c, "h"), lo_ms, hi_ms, withscores=True)
    found = pipe.execute()
    order = []
    for c, ids in zip(channels, found, strict=True):
        for bucket, score in ids:
            pipe.hgetall(keys.window(brand, c, _decode(bucket), "h"))
            order.append(int(score))
    out: dict[int, int] = defaultdict(int)
    for start, fields in zip(order, pipe.execute(), strict=True):
        out[start] += counters_of(fields)["response_count"]
    return out


def model_quality(client: redis.Redis, keys: Keys) -> list[dict[str, Any]]:
    """Prequential metrics of the text models, one row per model x channel (``all`` = every channel).

    Rows carry the model, channel, checkpoint version (None: the warm-started default), predictions and
    labels seen, accuracy, macro F1 and macro recall (over labels so far and over the rolling window),
    prediction and label drift, drift alarms, and the prediction distribution and confusion matrix.
    """
    from models.prequential import read_metrics
    from models.registry import info

    rows = []
    for model in ("intent", "sentiment", "department"):
        meta = info(client, keys.prefix, model) or {}
        pattern = f"{keys.prefix}model:{model}:metrics:*"
        channels = sorted(_decode(k).rsplit(":", 1)[-1] for k in client.scan_iter(match=pattern, count=1000))
        for channel in channels:
            m = read_metrics(client, keys.prefix, model, channel)
            rows.append({"model": model, "channel": channel, "version": meta.get("version"), **m})
    return rows
