"""Reading the analytics back from Redis: the ``pulse metrics`` snapshot and the dashboard's series.

Definitions are those of ARCHITECTURE.md ("Metrics"). Quantiles use linear interpolation between the
closest ranks (numpy's and polars' ``"linear"``), over exact response times.

>>> quantile([1000, 2000, 3000, 4000], 0.5), quantile([1000, 2000, 3000, 4000], 0.9)
(2500.0, 3700.0)
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import redis

from stream.keys import Keys
from stream.windows import COUNTERS

__all__ = ["distinct_authors", "first_response", "quantile", "recent_dead_letters", "recent_mentions",
           "response_times_between", "snapshot", "timeseries", "totals", "unanswered_between",
           "windows_between"]

_SUMMED = ("mentions", "queries", "comments", "replies", "response_ms_sum", "response_count", "unanswered", "late")


def quantile(sorted_values: list[float], q: float) -> float | None:
    """Linear-interpolated quantile of already sorted values (None when empty)."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def first_response(values: list[float]) -> dict[str, Any]:
    """Count, mean, p50 and p90 (ms) of first response times."""
    values = sorted(values)
    return {
        "count": len(values),
        "mean_ms": (sum(values) / len(values)) if values else None,
        "p50_ms": quantile(values, 0.5),
        "p90_ms": quantile(values, 0.9),
    }


def _ms(dt: datetime | None) -> int | None:
    return None if dt is None else int(dt.timestamp() * 1000)


def _decode(b: bytes | str) -> str:
    return b.decode() if isinstance(b, bytes) else b


def totals(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """Offered, accepted, dead letters and duplicates summed over every source."""
    out = {"offered": 0, "accepted": 0, "dead_letters": 0, "duplicates": 0}
    for field, value in client.hgetall(keys.stats).items():
        name = _decode(field).rsplit("|", 1)[-1]
        if name in out:
            out[name] += int(value)
    out["late"] = int(client.scard(keys.late))
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


def snapshot(client: redis.Redis, keys: Keys, since: datetime | None = None,
             until: datetime | None = None) -> dict[str, Any]:
    """The ``pulse metrics --json`` document (ARCHITECTURE.md, "Command line")."""
    since_ms, until_ms = _ms(since), _ms(until)
    ranged = since_ms is not None or until_ms is not None
    lo = since_ms if since_ms is not None else "-inf"
    hi = (until_ms - 1) if until_ms is not None else "+inf"
    gran = "m" if ranged else "d"
    bc = _brand_channels(client, keys)
    # One round trip for every index, one for every window and HLL, one for response times.
    pipe = client.pipeline(transaction=False)
    pairs = [(b, c) for b, chans in bc.items() for c in chans]
    for b, c in pairs:
        pipe.zrangebyscore(keys.windows_index(b, c, gran), lo, hi)
    buckets = pipe.execute()
    for (b, c), ids in zip(pairs, buckets, strict=True):
        for bucket in ids:
            pipe.hgetall(keys.window(b, c, _decode(bucket), gran))
    windows = iter(pipe.execute())
    for (b, c), ids in zip(pairs, buckets, strict=True):
        pipe.pfcount(*[keys.authors(b, c, _decode(x), gran) for x in ids]) if ids else pipe.echo("0")
        pipe.zrange(keys.response_times(b, c), 0, -1, withscores=True)
        pipe.zrangebyscore(keys.response_times_at(b, c), lo, hi) if ranged else pipe.echo("")
        pipe.zcount(keys.unanswered(b, c), lo, hi)
    for b in bc:
        authors_keys = [keys.authors(b, c, _decode(x), gran) for (bb, c), ids in zip(pairs, buckets, strict=True)
                        if bb == b for x in ids]
        pipe.pfcount(*authors_keys) if authors_keys else pipe.echo("0")
    rest = iter(pipe.execute())
    brands: dict[str, Any] = {}
    rt_by_brand: dict[str, list[float]] = defaultdict(list)
    for (b, c), ids in zip(pairs, buckets, strict=True):
        block = _empty_block()
        for _ in ids:
            h = next(windows)
            for name in _SUMMED:
                block[name] += int(h.get(name.encode(), 0))
            for s in ("negative", "neutral", "positive"):
                block["sentiment"][s] += int(h.get(s.encode(), 0))
        block["authors"] = int(next(rest))
        rts = next(rest)
        in_range = next(rest)
        if ranged:
            wanted = set(in_range)
            rts = [(m, v) for m, v in rts if m in wanted]
        values = [v for _, v in rts]
        rt_by_brand[b].extend(values)
        block["first_response"] = first_response(values)
        block["unanswered"] = int(next(rest))
        block["answer_rate"] = _answer_rate(block)
        brand = brands.setdefault(b, {"channels": {}})
        brand["channels"][c] = block
    for b in bc:
        brand = brands.setdefault(b, {"channels": {}})
        agg = _empty_block()
        for block in brand["channels"].values():
            for name in _SUMMED:
                agg[name] += block[name]
            for s in agg["sentiment"]:
                agg["sentiment"][s] += block["sentiment"][s]
        agg["authors"] = int(next(rest))
        agg["first_response"] = first_response(rt_by_brand[b])
        agg["answer_rate"] = _answer_rate(agg)
        brand.update(agg)
    for b, deflection in call_deflection(client, keys, since_ms, until_ms).items():
        if b in brands:
            brands[b]["calls"] = deflection
    doc: dict[str, Any] = {"generated_at": datetime.now(UTC).isoformat(), **totals(client, keys)}
    doc["since"] = since.isoformat() if since else None
    doc["until"] = until.isoformat() if until else None
    doc["brands"] = brands
    return doc


def _answer_rate(block: dict[str, Any]) -> float | None:
    if not block["queries"]:
        return None
    return min(1.0, block["response_count"] / block["queries"])


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
        row: dict[str, Any] = {name: int(h.get(name.encode(), 0)) for name in COUNTERS}
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


def _is_text(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def response_times_between(client: redis.Redis, keys: Keys, since_ms: int | None = None,
                           until_ms: int | None = None, brands: list[str] | None = None) -> list[dict[str, Any]]:
    """First response times of the mentions posted in ``[since_ms, until_ms]`` (event time, ms).

    Rows carry ``brand``, ``channel``, ``mention_id``, ``mention_ms`` and ``response_ms``; the reply was
    posted at ``mention_ms + response_ms``. ``brands`` limits the brands read (default: all).
    """
    bc = _brand_channels(client, keys)
    pairs = [(b, c) for b, chans in bc.items() if brands is None or b in brands for c in chans]
    lo = since_ms if since_ms is not None else "-inf"
    hi = until_ms if until_ms is not None else "+inf"
    pipe = client.pipeline(transaction=False)
    for b, c in pairs:
        pipe.zrangebyscore(keys.response_times_at(b, c), lo, hi, withscores=True)
    found = pipe.execute()
    for (b, c), members in zip(pairs, found, strict=True):
        if members:
            pipe.zmscore(keys.response_times(b, c), [m for m, _ in members])
    scores = iter(pipe.execute())
    rows: list[dict[str, Any]] = []
    for (b, c), members in zip(pairs, found, strict=True):
        if not members:
            continue
        for (member, mention_ms), response_ms in zip(members, next(scores), strict=True):
            if response_ms is not None:
                rows.append({"brand": b, "channel": c, "mention_id": _decode(member),
                             "mention_ms": int(mention_ms), "response_ms": float(response_ms)})
    return rows


def unanswered_between(client: redis.Redis, keys: Keys, since_ms: int | None = None, until_ms: int | None = None,
                       brands: list[str] | None = None) -> list[dict[str, Any]]:
    """Queries posted in ``[since_ms, until_ms]`` still unanswered after the SLA: ``brand``, ``channel``,
    ``mention_id``, ``mention_ms`` (the snapshot's ``unanswered``, one row each)."""
    pairs = [(b, c) for b, chans in _brand_channels(client, keys).items() if brands is None or b in brands
             for c in chans]
    pipe = client.pipeline(transaction=False)
    for b, c in pairs:
        pipe.zrangebyscore(keys.unanswered(b, c), since_ms if since_ms is not None else "-inf",
                           until_ms if until_ms is not None else "+inf", withscores=True)
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
            pipe.hget(keys.window(brand, c, _decode(bucket), "h"), "response_count")
            order.append(int(score))
    out: dict[int, int] = defaultdict(int)
    for start, value in zip(order, pipe.execute(), strict=True):
        out[start] += int(value or 0)
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
