"""The seed's analytical insights over a range: who is talking, how the brand answers, what answering changes.

Definitions (ARCHITECTURE.md, "Metrics"; README "Insights"), per brand and per channel:

- **Attraction rate** = new authors / distinct authors: an author is new in the window of their first
  mention of the brand (``new_authors``, kept exact across runs by the reply-matching script; authors first
  seen more than ``author_retention_seconds`` before the brand's newest first mention are forgotten and
  count as new if they come back).
- **Participation rate** = distinct CRM customers who mentioned the brand in the range / all customers in the
  CRM (HyperLogLog of customer ids per hour and day window).
- **Behaviour after interaction** (``after_reply``): for each customer the brand replied to in the range, the
  mean sentiment score (-1..1) of their mentions in the ``days`` after the brand's first reply in the range
  minus the ``days`` before; ``before`` and ``after`` are the means over customers with mentions on both
  sides, ``improved_share`` / ``worsened_share`` the shares of those customers whose mean went up / down;
  also per channel and per agent.
- **Resolution** and **next response** times, per brand, channel and agent, from the CRM's cases opened in the
  range (resolution: opened to resolved; next response: each later reply to the customer's previous message).
- **Business hours** (optional, per brand): first response times counted in the brand's business time, over
  the exact response times of the range.

>>> spec = parse_business_hours("acme=Europe/Berlin Mon-Fri 09:00-17:00")
>>> spec["acme"].days, spec["acme"].start_min, spec["acme"].end_min
((0, 1, 2, 3, 4), 540, 1020)
>>> from datetime import datetime, UTC
>>> t0 = int(datetime(2024, 1, 5, 16, 0, tzinfo=UTC).timestamp() * 1000)      # Fri 17:00 in Berlin
>>> spec["acme"].business_ms(t0 - 1_800_000, t0 + 3 * 86_400_000) / 60_000   # Fri 16:30 -> Mon 17:00
510.0
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis

from crm.keys import CrmKeys
from stream.keys import Keys

__all__ = ["BusinessHours", "after_reply", "business_first_response", "case_times", "case_times_empty",
           "parse_business_hours", "participation", "summary"]

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_MS = 86_400_000


def _decode(b: bytes | str) -> str:
    return b.decode() if isinstance(b, bytes) else b


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """A brand's opening hours: ``days`` (0 = Monday), minutes of the day ``[start_min, end_min)``, a time zone."""

    tz: str
    days: tuple[int, ...]
    start_min: int
    end_min: int

    def business_ms(self, start_ms: int, end_ms: int) -> int:
        """Milliseconds of ``[start_ms, end_ms)`` that fall in business hours."""
        if end_ms <= start_ms:
            return 0
        zone = ZoneInfo(self.tz)
        day = datetime.fromtimestamp(start_ms / 1000, tz=zone).replace(hour=0, minute=0, second=0, microsecond=0)
        total = 0
        while int(day.timestamp() * 1000) < end_ms:
            if day.weekday() in self.days:
                open_ms = int((day + timedelta(minutes=self.start_min)).timestamp() * 1000)
                close_ms = int((day + timedelta(minutes=self.end_min)).timestamp() * 1000)
                total += max(0, min(end_ms, close_ms) - max(start_ms, open_ms))
            day = (day + timedelta(days=1, hours=3)).replace(hour=0)  # across DST changes
        return total


def parse_business_hours(spec: str) -> dict[str, BusinessHours]:
    """``"brand=TZ Mon-Fri 09:00-18:00; other=..."`` -> per brand; ValueError with a one-line reason."""
    out: dict[str, BusinessHours] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        try:
            brand, rest = part.split("=", 1)
            tz, days, hours = rest.split()
            ZoneInfo(tz)
            first, _, last = days.lower().partition("-")
            lo, hi = _DAYS.index(first), _DAYS.index(last or first)
            opens, closes = hours.split("-")
            start = int(opens[:2]) * 60 + int(opens[3:5])
            end = int(closes[:2]) * 60 + int(closes[3:5])
        except (ValueError, ZoneInfoNotFoundError, IndexError):
            raise ValueError(f"business_hours: cannot read {part!r} (expected brand=TZ Mon-Fri 09:00-18:00)") from None
        if not 0 <= start < end <= 24 * 60:
            raise ValueError(f"business_hours: {part!r}: opening must be before closing, within a day")
        out[brand.strip()] = BusinessHours(tz, tuple(range(lo, hi + 1)) if lo <= hi else (*range(lo, 7), *range(hi + 1)),
                                           start, end)
    return out


def participation(client: redis.Redis, keys: Keys, windows: Mapping[tuple[str, str], list[tuple[str, str]]]
                  ) -> dict[str, Any]:
    """Active customers per brand x channel and per brand over the given windows, and the CRM's customers.

    ``windows`` maps brand x channel to the ``(gran, bucket)`` windows of the range (minutes count in their
    hour). Returns ``{"customers": n, "brands": {brand: {"active": n, "channels": {channel: n}}}}``.
    """
    def hlls(b: str, c: str) -> list[str]:
        found: dict[str, None] = {}
        for gran, bucket in windows[b, c]:
            g = "d" if gran == "d" else "h"
            found[keys.customers_active(b, c, bucket if g == "d" else bucket[:10], g)] = None
        return list(found)

    pipe = client.pipeline(transaction=False)
    pipe.scard(CrmKeys(keys.prefix).customers)
    pairs = sorted(windows)
    for b, c in pairs:
        ks = hlls(b, c)
        pipe.pfcount(*ks) if ks else pipe.echo("0")
    brands = sorted({b for b, _ in pairs})
    for b in brands:
        ks = [k for bb, c in pairs if bb == b for k in hlls(bb, c)]
        pipe.pfcount(*ks) if ks else pipe.echo("0")
    found = iter(pipe.execute())
    total = int(next(found))
    out: dict[str, Any] = {"customers": total, "brands": {b: {"channels": {}} for b in brands}}
    for b, c in pairs:
        out["brands"][b]["channels"][c] = int(next(found))
    for b in brands:
        out["brands"][b]["active"] = int(next(found))
    return out


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summary(deltas: list[tuple[float, float]]) -> dict[str, Any]:
    """``before``/``after`` means, improved/worsened shares, customers, over (before, after) pairs."""
    n = len(deltas)
    return {"before": _mean([b for b, _ in deltas]), "after": _mean([a for _, a in deltas]),
            "improved_share": (sum(a > b for b, a in deltas) / n) if n else None,
            "worsened_share": (sum(a < b for b, a in deltas) / n) if n else None, "customers": n}


def after_reply(client: redis.Redis, keys: Keys, brands: Iterable[str], since_ms: int | None, until_ms: int | None,
                days: float = 7.0) -> dict[str, dict[str, Any]]:
    """Behaviour after interaction per brand (see the module docs), with ``channels`` and ``agents`` inside."""
    span = int(days * DAY_MS)
    lo = since_ms if since_ms is not None else "-inf"
    hi = f"({until_ms}" if until_ms is not None else "+inf"
    brands = list(brands)
    pipe = client.pipeline(transaction=False)
    for b in brands:
        pipe.zrangebyscore(keys.replied(b), lo, hi, withscores=True)
    anchors: dict[str, dict[str, tuple[int, str, str]]] = {}
    for b, entries in zip(brands, pipe.execute(), strict=True):
        first: dict[str, tuple[int, str, str]] = {}
        for member, score in entries:  # the customer's first reply in the range is the anchor
            _mention, customer, channel, agent = _decode(member).split("\t")
            if customer not in first or score < first[customer][0]:
                first[customer] = (int(score), channel, agent)
        anchors[b] = first
    order = [(b, customer) for b in brands for customer in sorted(anchors[b])]
    for b, customer in order:
        t = anchors[b][customer][0]
        pipe.zrangebyscore(keys.sentiment_timeline(customer), t - span, f"({t}")
        pipe.zrangebyscore(keys.sentiment_timeline(customer), f"({t}", t + span)
    found = iter(pipe.execute())
    per: dict[str, dict[str, Any]] = {b: {"all": [], "channels": defaultdict(list), "agents": defaultdict(list)}
                                      for b in brands}
    for b, customer in order:
        before = [float(_decode(m).rsplit("|", 1)[1]) for m in next(found)]
        after = [float(_decode(m).rsplit("|", 1)[1]) for m in next(found)]
        if before and after:
            pair = (sum(before) / len(before), sum(after) / len(after))
            _, channel, agent = anchors[b][customer]
            per[b]["all"].append(pair)
            per[b]["channels"][channel].append(pair)
            per[b]["agents"][agent or "-"].append(pair)
    return {b: {**summary(v["all"]), "days": days,
                "channels": {c: summary(x) for c, x in sorted(v["channels"].items())},
                "agents": {a: summary(x) for a, x in sorted(v["agents"].items())}}
            for b, v in per.items()}


def _times(values: list[int]) -> dict[str, Any]:
    ordered = sorted(values)
    n = len(ordered)
    return {"count": n, "mean_ms": (sum(ordered) / n) if n else None,
            "p50_ms": (ordered[(n - 1) // 2] + ordered[n // 2]) / 2 if n else None}


def case_times_empty() -> dict[str, Any]:
    """Resolution figures of a brand without cases."""
    return {**_times([]), "channels": {}, "agents": {}}


# KEYS[1]: every case by opening time; ARGV: the range and the case hashes' key prefix. Adds up, on the server,
# each brand x channel x agent's next responses (sum, count) and lists its resolution times: one small reply
# instead of every case's fields (a day of the demo opens ~28,000 cases). Reads the case hashes it finds
# (not declared keys: a single Redis server, as the CRM's own scripts).
_CASE_TIMES = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2])
local groups, order = {}, {}
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', ARGV[3] .. id, 'brand', 'channel', 'agent', 'resolution_ms', 'next_response_ms_sum',
                       'next_response_count')
  if f[1] and f[1] ~= '' then
    local key = f[1] .. '\t' .. (f[2] or '') .. '\t' .. (f[3] or '')
    local g = groups[key]
    if g == nil then g = {key, 0, 0}; groups[key] = g; order[#order + 1] = g end
    local n = tonumber(f[6] or '0') or 0
    if n ~= 0 then g[2] = g[2] + (tonumber(f[5] or '0') or 0); g[3] = g[3] + n end
    if f[4] and f[4] ~= '' then g[#g + 1] = tonumber(f[4]) end
  end
end
return order
"""


def case_times(client: redis.Redis, prefix: str, since_ms: int | None, until_ms: int | None
               ) -> dict[str, dict[str, Any]]:
    """Resolution and next response times of the CRM's cases opened in the range, per brand, channel and agent.

    Per brand: ``{"resolution": {count, mean_ms, p50_ms, channels: {..}, agents: {..}}, "next_response":
    {count, mean_ms, channels, agents}}``; a resolution is counted once resolved, a next response is every
    reply after the first (its time from the customer's previous message).
    """
    ck = CrmKeys(prefix)
    lo = since_ms if since_ms is not None else "-inf"
    hi = f"({until_ms}" if until_ms is not None else "+inf"
    found: list[list[Any]] = client.register_script(_CASE_TIMES)(  # type: ignore[assignment]
        keys=[ck.cases_all], args=[lo, hi, ck.case("")])
    res: dict[str, dict[str, Any]] = {}
    for entry in found:
        brand, channel, agent = _decode(entry[0]).split("\t")
        nsum, ncount, resolutions = int(entry[1]), int(entry[2]), [int(x) for x in entry[3:]]
        b = res.setdefault(brand, {"r": defaultdict(list), "n": defaultdict(lambda: [0, 0])})
        for group in ("", f"c:{channel}", f"a:{agent or '-'}"):
            if resolutions:
                b["r"][group].extend(resolutions)
            if ncount:
                b["n"][group][0] += nsum
                b["n"][group][1] += ncount
    out: dict[str, dict[str, Any]] = {}
    for brand, b in res.items():
        def nxt(group: str, b: dict[str, Any] = b) -> dict[str, Any]:
            total, n = b["n"].get(group, (0, 0))
            return {"count": n, "mean_ms": (total / n) if n else None}

        groups = sorted(set(b["r"]) | set(b["n"]))
        out[brand] = {
            "resolution": {**_times(b["r"].get("", [])),
                           "channels": {g[2:]: _times(b["r"][g]) for g in groups if g.startswith("c:") and g in b["r"]},
                           "agents": {g[2:]: _times(b["r"][g]) for g in groups if g.startswith("a:") and g in b["r"]}},
            "next_response": {**nxt(""), "channels": {g[2:]: nxt(g) for g in groups if g.startswith("c:")},
                              "agents": {g[2:]: nxt(g) for g in groups if g.startswith("a:")}},
        }
    return out


def business_first_response(pairs: Iterable[tuple[str, int, float]], hours: Mapping[str, BusinessHours]
                            ) -> dict[str, dict[str, Any]]:
    """First response in business time per brand with business hours: ``pairs`` are (brand, mention ms,
    response ms), the exact values of the range."""
    values: dict[str, list[int]] = defaultdict(list)
    for brand, mention_ms, response_ms in pairs:
        spec = hours.get(brand)
        if spec is not None:
            values[brand].append(spec.business_ms(mention_ms, mention_ms + int(response_ms)))
    return {b: {**_times(v), "tz": hours[b].tz} for b, v in values.items()}
