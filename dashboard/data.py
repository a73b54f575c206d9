"""What the dashboard shows, read from Redis: settings, the cached client and cached command-centre figures.

The reading and arithmetic (:func:`read_command_centre`) is plain Python over a Redis client, so it can be
used and tested without Streamlit; :func:`redis_client` and :func:`load_command_centre` wrap it in
Streamlit's caches (one client per URL shared by every session, query results shared for a second, so ten
wall screens refreshing every two seconds cost Redis what one does).

Time is *event* time: "the last N minutes" are the N minutes up to the newest window in Redis, so a replay
of an old export looks the same as live traffic.

>>> s = DashboardSettings.from_env({"PULSE_PREFIX": "demo:", "PULSE_DASHBOARD_REFRESH": "5"})
>>> (s.prefix, s.refresh_seconds, s.display_url)
('demo:', 5.0, 'embedded Redis (.pulse/)')
>>> DashboardSettings.from_env({"REDIS_URL": "redis://:secret@db:6379/0"}).display_url
'redis://:***@db:6379/0'
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pandas as pd
import redis
import streamlit as st

from stream.keys import GRANULARITIES, Keys
from stream.metrics import (
    distinct_authors,
    quantile,
    recent_dead_letters,
    recent_mentions,
    response_times_between,
    timeseries,
    totals,
)
from stream.redisconn import RedisUnavailable, connect, ensure_redis_url

__all__ = [
    "CACHE_TTL_SECONDS",
    "RESPONSE_LOOKBACK_MS",
    "TIME_RANGES",
    "CommandCentre",
    "DashboardSettings",
    "DashboardSettingsError",
    "RedisUnavailable",
    "list_brands",
    "load_brands",
    "load_command_centre",
    "read_command_centre",
    "redis_client",
]

log = logging.getLogger(__name__)

#: Choices of the time-range filter: minutes of event time -> label.
TIME_RANGES: dict[int, str] = {15: "15 min", 30: "30 min", 60: "1 h", 180: "3 h", 360: "6 h", 1440: "24 h"}
#: Query results are shared between sessions for this long (below the usual refresh interval).
CACHE_TTL_SECONDS = 1.0
#: Replies are matched to mentions at most this long before the range starts (the flow's reply wait).
RESPONSE_LOOKBACK_MS = 6 * 3_600_000
#: Longer dead-letter payloads are cut for display (the stream keeps them whole).
RAW_DISPLAY_CHARS = 2_000

_SENTIMENTS = ("negative", "neutral", "positive")


class DashboardSettingsError(ValueError):
    """A dashboard setting from the environment that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    """The dashboard's settings, read once at the entry point from what ``pulse dashboard`` sets.

    ``REDIS_URL`` (unset: the embedded server under ``.pulse/``), ``PULSE_PREFIX`` and
    ``PULSE_DASHBOARD_REFRESH`` (seconds between live refreshes; 0 turns live refresh off).

    >>> DashboardSettings.from_env({}).refresh_seconds
    2.0
    >>> DashboardSettings.from_env({"PULSE_DASHBOARD_REFRESH": "often"})
    Traceback (most recent call last):
    ...
    dashboard.data.DashboardSettingsError: PULSE_DASHBOARD_REFRESH: expected a number of seconds, got 'often'
    """

    redis_url: str | None = None
    prefix: str = "pulse:"
    refresh_seconds: float = 2.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DashboardSettings:
        env = os.environ if env is None else env
        raw = env.get("PULSE_DASHBOARD_REFRESH") or "2"
        try:
            refresh = float(raw)
        except ValueError:
            raise DashboardSettingsError(f"PULSE_DASHBOARD_REFRESH: expected a number of seconds, got {raw!r}") from None
        if refresh < 0:
            raise DashboardSettingsError(f"PULSE_DASHBOARD_REFRESH: must not be negative, got {raw!r}")
        return cls(redis_url=env.get("REDIS_URL") or None, prefix=env.get("PULSE_PREFIX") or "pulse:",
                   refresh_seconds=refresh)

    @property
    def display_url(self) -> str:
        """The Redis URL with any password masked, for showing on screen."""
        if not self.redis_url:
            return "embedded Redis (.pulse/)"
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", self.redis_url)


@dataclass(frozen=True)
class CommandCentre:
    """Everything the command-centre page shows for one brand filter and time range.

    ``kpis`` and ``previous`` map a KPI name to its value over the range and over the range before it
    (None when there is nothing to compute it from); ``sparklines`` map a KPI to its per-window values.

    >>> CommandCentre(brands=[], brand=None, minutes=60, gran="m").has_data
    False
    """

    brands: list[str]
    brand: str | None
    minutes: int
    gran: str
    start: datetime | None = None
    end: datetime | None = None
    #: Event time of the newest mention: "now" in event time.
    newest: datetime | None = None
    #: Start of the newest window when it is still filling (the newest mention is not at its end).
    filling_from: datetime | None = None
    kpis: dict[str, float | None] = field(default_factory=dict)
    previous: dict[str, float | None] = field(default_factory=dict)
    sparklines: dict[str, list[float | None]] = field(default_factory=dict)
    #: One row per window x channel: start, channel and every window counter.
    by_channel: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: One row per window x sentiment: start, sentiment, mentions.
    sentiment: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: One row per window x statistic (mean, p90) of first responses given in that window, in minutes.
    response: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Per channel over the range: mentions, negative share, answer rate, mean first response.
    channels: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: The same per brand.
    brands_table: pd.DataFrame = field(default_factory=pd.DataFrame)
    latest: pd.DataFrame = field(default_factory=pd.DataFrame)
    dead_letters: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Alerts (spikes, SLA breaches, rules), newest window first, one row per alert id.
    alerts: pd.DataFrame = field(default_factory=pd.DataFrame)
    totals: dict[str, int] = field(default_factory=dict)

    @property
    def has_data(self) -> bool:
        """True once at least one window has been written for the selection."""
        return self.end is not None


# -- reading (no Streamlit) -------------------------------------------------------------------------

def list_brands(client: redis.Redis, keys: Keys) -> list[str]:
    """The brands seen so far, sorted."""
    return sorted(b.decode() if isinstance(b, bytes) else b for b in client.smembers(keys.brands))


def read_command_centre(client: redis.Redis, keys: Keys, brand: str | None = None, minutes: int = 60,
                        latest_n: int = 50, dead_letters_n: int = 20) -> CommandCentre:
    """Read and compute the command centre for ``brand`` (None: all brands) over the last ``minutes``.

    Ranges up to six hours use minute windows, longer ones hour windows. First response times are those
    of replies *posted* in the range (what the team delivered then), for mentions posted at most
    :data:`RESPONSE_LOOKBACK_MS` earlier; answer rate is replies ÷ queries of the range's windows.
    """
    brands = list_brands(client, keys)
    chosen = [brand] if brand else None
    gran = "m" if minutes <= 360 else "h"
    length = GRANULARITIES[gran]
    n_windows = max(1, minutes * 60_000 // length)
    stats = totals(client, keys)
    out = CommandCentre(brands=brands, brand=brand, minutes=minutes, gran=gran, totals=stats,
                        latest=_latest(client, keys, brand, latest_n),
                        dead_letters=_dead_letters(client, keys, dead_letters_n),
                        alerts=read_alerts(client, keys, brand))
    rows = timeseries(client, keys, minutes=2 * n_windows, gran=gran)
    if not rows:
        return out
    end_ms = _ms(max(r["start"] for r in rows))
    earliest_ms = _ms(min(r["start"] for r in rows))
    start_ms = end_ms - (n_windows - 1) * length
    prev_start_ms = start_ms - n_windows * length
    rows = [r for r in rows if brand is None or r["brand"] == brand]
    current = [r for r in rows if _ms(r["start"]) >= start_ms]
    before = [r for r in rows if _ms(r["start"]) < start_ms]
    responses = response_times_between(client, keys, prev_start_ms - RESPONSE_LOOKBACK_MS,
                                       end_ms + length - 1, chosen)
    replies = [(r["mention_ms"] + int(r["response_ms"]), r) for r in responses]
    cur_rt = [r for t, r in replies if start_ms <= t < end_ms + length]
    prev_rt = [r for t, r in replies if prev_start_ms <= t < start_ms]
    authors_now = sum(distinct_authors(client, keys, start_ms, end_ms, gran, chosen).values())
    # The range before only gets deltas when the data reaches back over all of it.
    has_before = earliest_ms <= prev_start_ms
    authors_before = (sum(distinct_authors(client, keys, prev_start_ms, start_ms - 1, gran, chosen).values())
                      if has_before else None)
    # Rates run to the newest event, not to the end of a window that is still filling.
    newest_ms = min(max(_newest_event_ms(client, keys), end_ms), end_ms + length - 1)
    covered_minutes = max(1.0, (newest_ms - max(start_ms, earliest_ms)) / 60_000)
    filling = newest_ms < end_ms + length - 1_000 and n_windows > 1
    kpis = _kpis(current, cur_rt, covered_minutes, authors_now, stats)
    previous = (_kpis(before, prev_rt, minutes, authors_before or 0, stats) if has_before
                else dict.fromkeys(kpis))
    starts = [datetime.fromtimestamp((start_ms + i * length) / 1000, tz=UTC) for i in range(n_windows)]
    by_channel = _by_channel(current, starts)
    response = _response_series(cur_rt, start_ms, length)
    return CommandCentre(
        brands=brands, brand=brand, minutes=minutes, gran=gran,
        start=starts[0], end=datetime.fromtimestamp((end_ms + length) / 1000, tz=UTC),
        newest=datetime.fromtimestamp(newest_ms / 1000, tz=UTC),
        filling_from=starts[-1] if filling else None,
        kpis=kpis, previous=previous,
        sparklines=_sparklines(current, response, starts[:-1] if filling else starts),
        by_channel=by_channel, sentiment=_sentiment_series(by_channel), response=response,
        channels=_breakdown(current, cur_rt, "channel"), brands_table=_breakdown(current, cur_rt, "brand"),
        latest=out.latest, dead_letters=out.dead_letters, alerts=out.alerts,
        totals=stats,
    )


def _newest_event_ms(client: redis.Redis, keys: Keys) -> int:
    """Event time of the newest mention in the latest-mentions set (0 when empty)."""
    top = client.zrevrange(keys.latest, 0, 0, withscores=True)
    return int(top[0][1]) if top else 0


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _kpis(rows: list[dict[str, Any]], responses: list[dict[str, Any]], minutes: float, authors: int,
          stats: dict[str, int]) -> dict[str, float | None]:
    mentions = sum(r["mentions"] for r in rows)
    queries = sum(r["queries"] for r in rows)
    answered = sum(r["response_count"] for r in rows)
    values = sorted(r["response_ms"] for r in responses)
    p90 = quantile(values, 0.9)
    return {
        "mentions_per_min": mentions / minutes if minutes > 0 else None,
        "mentions": float(mentions),
        "authors": float(authors),
        "mean_response_min": (sum(values) / len(values) / 60_000) if values else None,
        "p90_response_min": None if p90 is None else p90 / 60_000,
        "responses": float(len(values)),
        "answer_rate": min(1.0, answered / queries) if queries else None,
        "negative_share": sum(r["negative"] for r in rows) / mentions if mentions else None,
        # Everything in the dead-letter stream: malformed records, and labels, late records, CRM inputs
        # or deliveries the flow refused later on (each with its reason).
        "dead_letters": float(max(stats["dead_letters"], stats.get("dead_letter_stream", 0))),
        "dead_letter_share": stats["dead_letters"] / stats["offered"] if stats["offered"] else None,
    }


def _by_channel(rows: list[dict[str, Any]], starts: list[datetime]) -> pd.DataFrame:
    """Counters per window x channel over every window of the range (zeros where nothing happened)."""
    columns = ["start", "channel", "mentions", "queries", "negative", "neutral", "positive", "response_count",
               "response_ms_sum", "authors"]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)[columns].groupby(["start", "channel"]).sum()
    grid = pd.MultiIndex.from_product([starts, sorted({r["channel"] for r in rows})], names=["start", "channel"])
    # A chart drawn over the windows that exist would bridge quiet minutes with a slope.
    return frame.reindex(grid, fill_value=0).reset_index()


def _sentiment_series(by_channel: pd.DataFrame) -> pd.DataFrame:
    if by_channel.empty:
        return pd.DataFrame(columns=["start", "sentiment", "mentions"])
    per_window = by_channel.groupby("start", as_index=False)[list(_SENTIMENTS)].sum()
    long = per_window.melt(id_vars="start", value_vars=list(_SENTIMENTS), var_name="sentiment",
                           value_name="mentions")
    return long.sort_values(["start", "sentiment"]).reset_index(drop=True)


def _response_series(responses: list[dict[str, Any]], start_ms: int, length: int) -> pd.DataFrame:
    by_window: dict[int, list[float]] = {}
    for r in responses:
        reply_ms = r["mention_ms"] + int(r["response_ms"])
        bucket = start_ms + (reply_ms - start_ms) // length * length
        by_window.setdefault(bucket, []).append(r["response_ms"])
    out = []
    for bucket, values in sorted(by_window.items()):
        values.sort()
        when = datetime.fromtimestamp(bucket / 1000, tz=UTC)
        out.append({"start": when, "statistic": "mean", "minutes": sum(values) / len(values) / 60_000,
                    "replies": len(values)})
        out.append({"start": when, "statistic": "p90", "minutes": (quantile(values, 0.9) or 0.0) / 60_000,
                    "replies": len(values)})
    return pd.DataFrame(out, columns=["start", "statistic", "minutes", "replies"])


def _sparklines(rows: list[dict[str, Any]], response: pd.DataFrame,
                starts: list[datetime]) -> dict[str, list[float | None]]:
    sums: dict[datetime, dict[str, int]] = {s: {} for s in starts}
    for r in rows:
        acc = sums.get(r["start"])
        if acc is None:  # the window still filling
            continue
        for name in ("mentions", "queries", "negative", "response_count", "authors"):
            acc[name] = acc.get(name, 0) + r[name]
    ordered = [sums[s] for s in sorted(sums)]
    mean = dict(zip(response.loc[response.statistic == "mean", "start"],
                    response.loc[response.statistic == "mean", "minutes"], strict=True))
    p90 = dict(zip(response.loc[response.statistic == "p90", "start"],
                   response.loc[response.statistic == "p90", "minutes"], strict=True))
    return {
        "mentions_per_min": [float(a.get("mentions", 0)) for a in ordered],
        "authors": [float(a.get("authors", 0)) for a in ordered],
        "mean_response_min": [mean[s] for s in sorted(sums) if s in mean],
        "p90_response_min": [p90[s] for s in sorted(sums) if s in p90],
        "answer_rate": [min(1.0, a["response_count"] / a["queries"]) for a in ordered if a.get("queries")],
        "negative_share": [a["negative"] / a["mentions"] for a in ordered if a.get("mentions")],
    }


def _breakdown(rows: list[dict[str, Any]], responses: list[dict[str, Any]], by: str) -> pd.DataFrame:
    """Per ``by`` (brand or channel): mentions, negative share, answer rate, mean first response."""
    per: dict[str, dict[str, float]] = {}
    for r in rows:
        acc = per.setdefault(r[by], {"mentions": 0, "negative": 0, "queries": 0, "response_count": 0})
        for name in acc:
            acc[name] += r[name]
    rts: dict[str, list[float]] = {}
    for r in responses:
        rts.setdefault(r[by], []).append(r["response_ms"])
    nan = float("nan")
    out = []
    for name, acc in per.items():
        values = rts.get(name, [])
        out.append({
            by: name,
            "mentions": int(acc["mentions"]),
            "negative share": acc["negative"] / acc["mentions"] if acc["mentions"] else nan,
            "answer rate": min(1.0, acc["response_count"] / acc["queries"]) if acc["queries"] else nan,
            "mean first response (min)": sum(values) / len(values) / 60_000 if values else nan,
        })
    columns = [by, "mentions", "negative share", "answer rate", "mean first response (min)"]
    frame = pd.DataFrame(out, columns=columns)
    return frame.sort_values("mentions", ascending=False).reset_index(drop=True)


def _latest(client: redis.Redis, keys: Keys, brand: str | None, n: int) -> pd.DataFrame:
    columns = ["time", "brand", "channel", "author", "sentiment", "intent", "text", "department", "id"]
    wanted = []
    # The latest set holds every brand's mentions; read enough of it to fill the table for one brand.
    for raw in recent_mentions(client, keys, n if brand is None else max(n, 1000)):
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError:
            log.warning("unreadable entry in %s skipped", keys.latest)
            continue
        if not isinstance(d, dict) or (brand is not None and d.get("brand") != brand):
            continue
        try:
            when = datetime.fromisoformat(str(d.get("ts")))
        except ValueError:
            when = None
        reply = d.get("from_brand")
        wanted.append({"time": when, "brand": d.get("brand"), "channel": d.get("channel"),
                       "author": ("↩ " if reply else "") + str(d.get("author", "")),
                       "sentiment": d.get("sentiment"), "intent": "reply" if reply else d.get("intent"),
                       "text": str(d.get("text", "")), "department": d.get("department"), "id": d.get("id")})
        if len(wanted) >= n:
            break
    return pd.DataFrame(wanted, columns=columns)


ALERT_COLUMNS = ["window", "state", "kind", "severity", "brand", "channel", "observed", "expected", "top terms",
                 "message"]


def read_alerts(client: redis.Redis, keys: Keys, brand: str | None = None, n: int = 20) -> pd.DataFrame:
    """The current state of each alert (an incident keeps one id), newest window first."""
    rows = []
    for raw in client.hvals(keys.alerts_current):
        try:
            a = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if brand is not None and a.get("brand") != brand:
            continue
        message = str(a.get("message") or "")
        # Spike alerts carry their incident's state first ("open: …", "update: …", "resolved: …");
        # SLA and rule alerts are single events.
        head, _, rest = message.partition(":")
        state, text = (head, rest) if head in ("open", "update", "resolved") else ("open", message)
        rows.append({"window": str(a.get("window_start", ""))[:16].replace("T", " "),
                     "state": state, "kind": a.get("kind", ""),
                     "severity": a.get("severity", ""), "brand": a.get("brand", ""),
                     "channel": a.get("channel") or a.get("topic") or "", "observed": a.get("observed"),
                     "expected": a.get("expected"), "top terms": ", ".join(a.get("top_terms") or [])[:120],
                     "message": text.strip()[:300]})
    rows.sort(key=lambda r: r["window"], reverse=True)
    return pd.DataFrame(rows[:n], columns=ALERT_COLUMNS)


def _dead_letters(client: redis.Redis, keys: Keys, n: int) -> pd.DataFrame:
    columns = ["received", "reason", "source", "raw"]
    out = []
    for d in recent_dead_letters(client, keys, n):
        raw = d.get("raw", "")
        if len(raw) > RAW_DISPLAY_CHARS:
            raw = raw[:RAW_DISPLAY_CHARS] + f"… ({len(raw):,} characters)"
        out.append({"received": d.get("ts_received", ""), "reason": d.get("reason", ""),
                    "source": d.get("source", ""), "raw": raw})
    return pd.DataFrame(out, columns=columns)


# -- Streamlit caches ---------------------------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def redis_client(url: str | None) -> redis.Redis:
    """One client per URL for the whole server (never mutated); raises :class:`RedisUnavailable`.

    A failed connection is not cached, so the next refresh tries again.
    """
    return connect(ensure_redis_url(url))


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False, max_entries=256)
def load_brands(url: str | None, prefix: str) -> list[str]:
    """Cached :func:`list_brands`."""
    return list_brands(redis_client(url), Keys(prefix))


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False, max_entries=256)
def load_command_centre(url: str | None, prefix: str, brand: str | None, minutes: int) -> CommandCentre:
    """Cached :func:`read_command_centre`, shared by every session looking at the same selection."""
    return read_command_centre(redis_client(url), Keys(prefix), brand, minutes)
