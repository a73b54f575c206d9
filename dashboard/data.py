"""What the dashboard shows, read from Redis: settings, filters, the cached client and the pages' figures.

The reading and arithmetic (:func:`read_command_centre`, :func:`read_channels`, :func:`search_customers`,
:func:`churn_candidates`, :func:`prediction_mix`, ...) is plain Python over a Redis client, so it can be used
and tested without Streamlit; :func:`redis_client` and the ``load_*`` functions wrap it in Streamlit's caches
(one client per URL shared by every session, query results shared for a second, so ten wall screens refreshing
every two seconds cost Redis what one does). Windows are read with :func:`window_index` and one read-only
script per brand (:func:`read_windows`, :func:`sum_windows`): a few round trips whatever the range.

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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import orjson
import pandas as pd
import redis
import streamlit as st

from dashboard.channel_insights import ChannelInsights, read_channel_insights
from stream import sketch
from stream.incident_desk import alert_state, current_alerts
from stream.insights import parse_business_hours
from stream.keys import GRANULARITIES, Keys
from stream.metrics import (
    merged_sketches,
    quantile,
    recent_dead_letters,
    recent_mentions,
    response_times_between,
    totals,
)
from stream.redisconn import RedisUnavailable, connect, ensure_redis_url, mask_secrets
from stream.windows import COUNTERS

__all__ = [
    "CACHE_TTL_SECONDS",
    "PERIODS",
    "RESPONSE_LOOKBACK_MS",
    "ChannelsView",
    "CommandCentre",
    "DashboardSettings",
    "DashboardSettingsError",
    "Filters",
    "RedisUnavailable",
    "Span",
    "brand_channels",
    "case_brands",
    "churn_candidates",
    "count_authors",
    "fetch_windows",
    "iter_windows",
    "format_reasons",
    "granularity",
    "list_brands",
    "list_channels",
    "load_brands",
    "load_channels",
    "load_channels_view",
    "load_churn_candidates",
    "load_command_centre",
    "load_customer_search",
    "model_drift_alerts",
    "newest_window_ms",
    "prediction_mix",
    "read_channels",
    "read_command_centre",
    "read_model_quality",
    "read_windows",
    "split_index",
    "redis_client",
    "resolve_span",
    "search_customers",
    "sum_windows",
    "window_index",
]

log = logging.getLogger(__name__)

#: Query results are shared between sessions for this long (below the usual refresh interval).
CACHE_TTL_SECONDS = 1.0
#: Pages over more than six hours that read every case and replied customer of the range (the Channels page's
#: insights) share their results this long: a day of a busy brand is tens of thousands of cases.
SLOW_CACHE_TTL_SECONDS = 30.0
#: Replies are matched to mentions at most this long before the range starts (the flow's reply wait).
RESPONSE_LOOKBACK_MS = 6 * 3_600_000
#: Longer dead-letter payloads are cut for display (the stream keeps them whole).
RAW_DISPLAY_CHARS = 2_000

_SENTIMENTS = ("negative", "neutral", "positive")


class DashboardSettingsError(ValueError):
    """A dashboard setting from the environment that cannot be used; the message names it."""


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise DashboardSettingsError(f"{name}: expected 1/0, true/false, yes/no or on/off, got {raw!r}")


def _seconds(env: Mapping[str, str], name: str, default: str) -> float:
    raw = env.get(name) or default
    try:
        value = float(raw)
    except ValueError:
        raise DashboardSettingsError(f"{name}: expected a number of seconds, got {raw!r}") from None
    if value < 0:
        raise DashboardSettingsError(f"{name}: must not be negative, got {raw!r}")
    return value


#: A sign-in token shorter than this is refused (guessable).
MIN_TOKEN_CHARS = 12


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    """The dashboard's settings, read once at the entry point from what ``pulse dashboard`` sets.

    ``REDIS_URL`` (unset: the embedded server under ``.pulse/``), ``PULSE_PREFIX``,
    ``PULSE_DASHBOARD_REFRESH`` (seconds between live refreshes; 0 turns live refresh off),
    ``PULSE_DASHBOARD_TOKEN`` (the sign-in token when no OIDC provider is configured),
    ``PULSE_DASHBOARD_PUBLIC`` (1: read-only pages open without sign-in, the default; 0: sign in to see
    anything), ``PULSE_DASHBOARD_WALL`` (1: every session is the wall display), ``PULSE_WALL_ROTATE``
    (seconds per wall view), ``PULSE_OWNED_CHANNELS`` (the brands' own communities, comma-separated),
    ``PULSE_BUSINESS_HOURS`` and ``PULSE_AFTER_REPLY_DAYS`` (the insights' settings, as ``pulse metrics``
    reads them), ``PULSE_DATA_DIR`` and ``PULSE_MODEL_KEY`` (where the flow's model signing key is, to read
    the current model checkpoint).

    >>> DashboardSettings.from_env({}).refresh_seconds
    2.0
    >>> DashboardSettings.from_env({"PULSE_DASHBOARD_REFRESH": "often"})
    Traceback (most recent call last):
    ...
    dashboard.data.DashboardSettingsError: PULSE_DASHBOARD_REFRESH: expected a number of seconds, got 'often'
    >>> "tok" in repr(DashboardSettings.from_env({"PULSE_DASHBOARD_TOKEN": "tok-123456789"}))
    False
    >>> DashboardSettings.from_env({"PULSE_BUSINESS_HOURS": "acme=Europe/Berlin Mon-Fri 09:00"})
    Traceback (most recent call last):
    ...
    dashboard.data.DashboardSettingsError: PULSE_BUSINESS_HOURS: business_hours: cannot read 'acme=Europe/Berlin Mon-Fri 09:00' (expected brand=TZ Mon-Fri 09:00-18:00)
    """

    redis_url: str | None = None
    prefix: str = "pulse:"
    refresh_seconds: float = 2.0
    #: Never shown or logged (left out of repr).
    token: str | None = field(default=None, repr=False)
    public_read: bool = True
    wall: bool = False
    rotate_seconds: float = 15.0
    owned_channels: tuple[str, ...] = ("forum",)
    #: Business hours per brand (``stream.insights.parse_business_hours``'s spec; "" for none).
    business_hours: str = ""
    #: Behaviour after interaction compares this many days after a brand's reply with as many before.
    after_reply_days: float = 7.0
    #: The flow's local state folder (its ``model.key`` signs the model checkpoints).
    data_dir: str = ".pulse"
    #: Never shown or logged (left out of repr).
    model_key: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DashboardSettings:
        env = os.environ if env is None else env
        token = env.get("PULSE_DASHBOARD_TOKEN") or None
        if token is not None and len(token) < MIN_TOKEN_CHARS:
            raise DashboardSettingsError(f"PULSE_DASHBOARD_TOKEN: use at least {MIN_TOKEN_CHARS} characters")
        rotate = _seconds(env, "PULSE_WALL_ROTATE", "15")
        if rotate < 3:
            raise DashboardSettingsError(f"PULSE_WALL_ROTATE: at least 3 seconds, got {rotate:g}")
        owned = tuple(c.strip() for c in (env.get("PULSE_OWNED_CHANNELS") or "forum").split(",") if c.strip())
        hours = (env.get("PULSE_BUSINESS_HOURS") or "").strip()
        try:
            parse_business_hours(hours)
        except ValueError as exc:
            raise DashboardSettingsError(f"PULSE_BUSINESS_HOURS: {exc}") from None
        raw_days = env.get("PULSE_AFTER_REPLY_DAYS") or "7"
        try:
            days = float(raw_days)
        except ValueError:
            raise DashboardSettingsError(f"PULSE_AFTER_REPLY_DAYS: expected a number of days, got {raw_days!r}") from None
        if not days > 0:
            raise DashboardSettingsError(f"PULSE_AFTER_REPLY_DAYS: must be positive, got {raw_days!r}")
        return cls(redis_url=env.get("REDIS_URL") or None, prefix=env.get("PULSE_PREFIX") or "pulse:",
                   refresh_seconds=_seconds(env, "PULSE_DASHBOARD_REFRESH", "2"), token=token,
                   public_read=_flag(env, "PULSE_DASHBOARD_PUBLIC", True),
                   wall=_flag(env, "PULSE_DASHBOARD_WALL", False), rotate_seconds=rotate, owned_channels=owned,
                   business_hours=hours, after_reply_days=days, data_dir=env.get("PULSE_DATA_DIR") or ".pulse",
                   model_key=env.get("PULSE_MODEL_KEY") or "")

    def signing_key(self) -> bytes | None:
        """The key the flow signs model checkpoints with (``PULSE_MODEL_KEY``, else ``{data_dir}/model.key``);
        None when there is neither (no checkpoint this dashboard could trust: it shows the default model)."""
        if self.model_key:
            return self.model_key.encode()
        if not (Path(self.data_dir) / "model.key").is_file():
            return None
        from stream.learning import model_signing_key
        from stream.settings import Settings

        return model_signing_key(Settings(data_dir=self.data_dir))

    @property
    def display_url(self) -> str:
        """The Redis URL with any password masked, for showing on screen."""
        if not self.redis_url:
            return "embedded Redis (.pulse/)"
        return mask_secrets(self.redis_url)


#: Choices of the time-range filter beyond the command centre's: minutes of event time -> label.
PERIODS: dict[int, str] = {15: "last 15 min", 60: "last hour", 360: "last 6 h", 1440: "last 24 h",
                           10080: "last 7 days", 43200: "last 30 days"}


@dataclass(frozen=True, slots=True)
class Filters:
    """What every page narrows its figures to: brand, channels, time range and the timezone times are shown in.

    The range is the last ``minutes`` of event time up to the newest data, or, when ``days`` is set, those
    calendar days (first, last) in ``tz``.

    >>> f = Filters(brand="acme", channels=("twitter",), minutes=60, tz="Europe/Paris")
    >>> f.channel_ok("twitter"), f.channel_ok("forum"), f.brands
    (True, False, ['acme'])
    >>> Filters(days=(date(2024, 1, 1), date(2024, 1, 2)), tz="UTC").bounds_ms()
    (1704067200000, 1704240000000)
    """

    brand: str | None = None
    channels: tuple[str, ...] = ()
    minutes: int = 60
    days: tuple[date, date] | None = None
    tz: str = "UTC"

    @property
    def brands(self) -> list[str] | None:
        return [self.brand] if self.brand else None

    @property
    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            return ZoneInfo("UTC")

    def channel_ok(self, channel: str | None) -> bool:
        return not self.channels or (channel or "") in self.channels

    def bounds_ms(self) -> tuple[int, int] | None:
        """``[start, end)`` in epoch ms for calendar days, None for a range relative to the newest data."""
        if self.days is None:
            return None
        first, last = self.days
        start = datetime.combine(first, time.min, tzinfo=self.zone)
        end = datetime.combine(last + timedelta(days=1), time.min, tzinfo=self.zone)
        return int(start.timestamp() * 1000), int(end.timestamp() * 1000)

    @property
    def span_minutes(self) -> int:
        bounds = self.bounds_ms()
        return self.minutes if bounds is None else max(1, (bounds[1] - bounds[0]) // 60_000)

    def describe(self) -> str:
        """The range in words (for captions)."""
        if self.days is None:
            return PERIODS.get(self.minutes, f"last {self.minutes} min") + " of data"
        first, last = self.days
        return f"{first:%d %b %Y}" + ("" if first == last else f" – {last:%d %b %Y}") + f" ({self.tz})"


@dataclass(frozen=True, slots=True)
class Span:
    """A resolved time range: windows starting in ``[start_ms, end_ms)`` of granularity ``gran``."""

    start_ms: int
    end_ms: int
    gran: str

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(self.start_ms / 1000, tz=UTC)

    @property
    def end(self) -> datetime:
        return datetime.fromtimestamp(self.end_ms / 1000, tz=UTC)


def newest_window_ms(client: redis.Redis, keys: Keys, brands: list[str] | None = None, gran: str = "m") -> int | None:
    """Start of the newest window written (event time), over the chosen brands."""
    pairs = [(b, c) for b, chans in brand_channels(client, keys, brands).items() for c in chans]
    if not pairs:
        return None
    pipe = client.pipeline(transaction=False)
    for b, c in pairs:
        pipe.zrevrange(keys.windows_index(b, c, gran), 0, 0, withscores=True)
    newest = [int(r[0][1]) for r in pipe.execute() if r]
    return max(newest) if newest else None


def resolve_span(client: redis.Redis, keys: Keys, filters: Filters) -> Span | None:
    """The filters' range as windows: calendar days as given, else the last minutes up to the newest window
    (None when nothing is written yet)."""
    bounds = filters.bounds_ms()
    if bounds is not None:
        return Span(bounds[0], bounds[1], granularity((bounds[1] - bounds[0]) / 60_000))
    newest = newest_window_ms(client, keys, filters.brands)
    if newest is None:
        return None
    gran = granularity(filters.minutes)
    length = GRANULARITIES[gran]
    end = newest - newest % length + length
    return Span(end - max(1, filters.minutes * 60_000 // length) * length, end, gran)


def brand_channels(client: redis.Redis, keys: Keys, brands: list[str] | None = None) -> dict[str, list[str]]:
    """The channels seen per brand (default: every brand), two round trips."""
    chosen = brands if brands is not None else list_brands(client, keys)
    if not chosen:
        return {}
    pipe = client.pipeline(transaction=False)
    for b in chosen:
        pipe.smembers(keys.channels(b))
    return {b: sorted(_text(c) for c in members) for b, members in zip(chosen, pipe.execute(), strict=True)}


# KEYS: window hashes (one brand: one hash slot); ARGV: the counters to read. A window holds each run's own
# counters (``name@run``) and the ones kept across runs: each counter is the sum of its fields
# (stream.metrics.counters_of). One reply for many windows, so reading a day of minute windows costs one round
# trip per brand instead of one parsed reply per window; a window that no longer exists reads as nil.
_COUNTERS_LUA = """
local want = {}
for i, name in ipairs(ARGV) do want[name] = i end
-- field -> counter index (false: not wanted), learnt once per call: the same few fields repeat in every window
local index_of = {}
local function counters(key)
  local h = redis.call('HGETALL', key)
  if #h == 0 then return nil end
  local row = {}
  for i = 1, #ARGV do row[i] = 0 end
  for j = 1, #h, 2 do
    local f = h[j]
    local i = index_of[f]
    if i == nil then
      local at = string.find(f, '@', 1, true)
      i = want[at and string.sub(f, 1, at - 1) or f] or false
      index_of[f] = i
    end
    if i then row[i] = row[i] + tonumber(h[j + 1]) end
  end
  return row
end
"""
_FETCH_WINDOWS = _COUNTERS_LUA + """
local out = {}
for i, key in ipairs(KEYS) do out[i] = counters(key) or false end
return out
"""
# The same windows summed on the server: one number per counter.
_SUM_WINDOWS = _COUNTERS_LUA + """
local sums = {}
for i = 1, #ARGV do sums[i] = 0 end
for _, key in ipairs(KEYS) do
  local row = counters(key)
  if row then for i = 1, #ARGV do sums[i] = sums[i] + row[i] end end
end
return sums
"""

class IndexedWindow(NamedTuple):
    """A window found in its brand x channel index: where it is and what its keys are."""

    channel: str
    start_ms: int
    key: str
    authors_key: str


#: Per brand: every window found, in index order.
WindowIndex = dict[str, list[IndexedWindow]]


def window_index(client: redis.Redis, keys: Keys, since_ms: int | None, until_ms: int | None, gran: str = "m",
                 brands: list[str] | None = None, channels: tuple[str, ...] = ()) -> WindowIndex:
    """The windows starting in ``[since_ms, until_ms]`` per brand (one pipelined round trip after the brands')."""
    pairs = [(b, c) for b, chans in brand_channels(client, keys, brands).items() for c in chans
             if not channels or c in channels]
    if not pairs:
        return {}
    lo = since_ms if since_ms is not None else "-inf"
    hi = until_ms if until_ms is not None else "+inf"
    pipe = client.pipeline(transaction=False)
    for b, c in pairs:
        pipe.zrangebyscore(keys.windows_index(b, c, gran), lo, hi, withscores=True)
    per_brand: WindowIndex = {}
    for (b, c), found in zip(pairs, pipe.execute(), strict=True):
        per_brand.setdefault(b, []).extend(
            IndexedWindow(c, int(score), keys.window(b, c, _text(bucket), gran), keys.authors(b, c, _text(bucket), gran))
            for bucket, score in found)
    return {b: items for b, items in per_brand.items() if items}


def _pairs(client: redis.Redis, keys: Keys, brands: list[str] | None, channels: tuple[str, ...]
           ) -> list[tuple[str, str]]:
    return [(b, c) for b, chans in brand_channels(client, keys, brands).items() for c in chans
            if not channels or c in channels]


def _indexed(keys: Keys, pairs: list[tuple[str, str]], slots: list[tuple[str, int]]) -> WindowIndex:
    """The windows ``(gran, start)`` of every pair, by brand, named without reading the windows' indexes (a window
    that was never written reads as missing)."""
    named = [(gran, start, Keys.bucket_id(gran, start)) for gran, start in slots]
    out: WindowIndex = {}
    for b, c in pairs:
        out.setdefault(b, []).extend(IndexedWindow(c, start, keys.window(b, c, bucket, gran),
                                                   keys.authors(b, c, bucket, gran)) for gran, start, bucket in named)
    return {b: items for b, items in out.items() if items}


def grid_index(client: redis.Redis, keys: Keys, start_ms: int, end_ms: int, gran: str,
               brands: list[str] | None = None, channels: tuple[str, ...] = ()) -> WindowIndex:
    """Every ``gran`` window starting in ``[start_ms, end_ms)`` (``start_ms`` aligned) of the chosen brand x channel
    pairs, by name: one round trip (the pairs) instead of reading each pair's window index."""
    return _indexed(keys, _pairs(client, keys, brands, channels),
                    [(gran, t) for t in range(start_ms, end_ms, GRANULARITIES[gran])])


def covering_slots(lo: int, hi: int) -> list[tuple[str, int]]:
    """The fewest windows ``(gran, start)`` that tile ``[lo, hi)`` (minute aligned): whole days, then whole hours,
    then minutes at its edges (as :func:`stream.metrics.snapshot` reads a range).

    >>> H = 3_600_000
    >>> [(g, t // 60_000) for g, t in covering_slots(86_400_000 - H - 60_000, 2 * 86_400_000 + H)]
    [('d', 1440), ('h', 1380), ('h', 2880), ('m', 1379)]
    """
    day, hour, minute = GRANULARITIES["d"], GRANULARITIES["h"], GRANULARITIES["m"]
    out: list[tuple[str, int]] = []
    d_lo, d_hi = -(-lo // day) * day, hi // day * day
    edges = [(lo, d_lo), (d_hi, hi)] if d_lo < d_hi else [(lo, hi)]
    out += [("d", t) for t in range(d_lo, d_hi, day)]
    minutes: list[tuple[str, int]] = []
    for a, z in edges:
        h_lo, h_hi = -(-a // hour) * hour, z // hour * hour
        if h_lo < h_hi:
            out += [("h", t) for t in range(h_lo, h_hi, hour)]
            minutes += [("m", t) for t in range(a, h_lo, minute)] + [("m", t) for t in range(h_hi, z, minute)]
        else:
            minutes += [("m", t) for t in range(a, z, minute)]
    return out + minutes


def covering_index(client: redis.Redis, keys: Keys, lo: int, hi: int, brands: list[str] | None = None,
                   channels: tuple[str, ...] = ()) -> WindowIndex:
    """The windows of :func:`covering_slots` for the chosen pairs: sums and distinct counts over ``[lo, hi)`` read
    from a few day and hour windows instead of every hour or minute of it."""
    return _indexed(keys, _pairs(client, keys, brands, channels), covering_slots(lo, hi))


def _sketch_groups(keys: Keys, index: WindowIndex, group: Any) -> dict[str, list[tuple[str, str]]]:
    """Per brand ``(sketch key, group)`` of the indexed windows' response-time sketches (day sketches for day
    windows, hour sketches for hour and minute windows, each once per group); ``group(window)`` names the group."""
    out: dict[str, list[tuple[str, str]]] = {}
    for b, items in index.items():
        seen: dict[tuple[str, str], None] = {}
        for w in items:
            gran = "d" if w.key.startswith(f"{keys.prefix}d:") else "h"
            length = GRANULARITIES[gran]
            bucket = Keys.bucket_id(gran, w.start_ms - w.start_ms % length)
            seen[keys.sketch(b, w.channel, bucket, gran), str(group(w))] = None
        out[b] = list(seen)
    return out


def split_index(index: WindowIndex, start_ms: int) -> tuple[WindowIndex, WindowIndex]:
    """The windows before ``start_ms`` and those from it on."""
    before = {b: [w for w in items if w.start_ms < start_ms] for b, items in index.items()}
    after = {b: [w for w in items if w.start_ms >= start_ms] for b, items in index.items()}
    return {b: i for b, i in before.items() if i}, {b: i for b, i in after.items() if i}


def iter_windows(client: redis.Redis, index: WindowIndex, fields: tuple[str, ...] = COUNTERS
                 ) -> Iterator[tuple[str, IndexedWindow, list[int]]]:
    """``(brand, window, values of fields)`` of the indexed windows that still exist (one read-only script per
    brand, pipelined)."""
    if not index:
        return
    script = client.register_script(_FETCH_WINDOWS)
    pipe = client.pipeline(transaction=False)
    for items in index.values():
        script(keys=[w.key for w in items], args=list(fields), client=pipe)
    for (b, items), values in zip(index.items(), pipe.execute(), strict=True):
        for w, counters in zip(items, values, strict=True):
            if not counters:  # expired between the two reads
                continue
            yield b, w, [int(v or 0) for v in counters]


def read_windows(client: redis.Redis, index: WindowIndex, fields: tuple[str, ...] = COUNTERS) -> list[dict[str, Any]]:
    """The ``fields`` of the indexed windows, one row each, like :func:`stream.metrics.windows_between`'s."""
    rows: list[dict[str, Any]] = []
    for b, w, values in iter_windows(client, index, fields):
        row: dict[str, Any] = dict(zip(fields, values, strict=True))
        row.update(brand=b, channel=w.channel, start=datetime.fromtimestamp(w.start_ms / 1000, tz=UTC))
        rows.append(row)
    return rows


def sum_windows(client: redis.Redis, index: WindowIndex, fields: tuple[str, ...] = COUNTERS) -> dict[str, int]:
    """The ``fields`` summed over the indexed windows, on the server (one script per brand, pipelined)."""
    out = dict.fromkeys(fields, 0)
    if not index:
        return out
    script = client.register_script(_SUM_WINDOWS)
    pipe = client.pipeline(transaction=False)
    for items in index.values():
        script(keys=[w.key for w in items], args=list(fields), client=pipe)
    for sums in pipe.execute():
        for name, v in zip(fields, sums, strict=True):
            out[name] += int(v or 0)
    return out


# The same counters as one flat list of numbers: per window ``exists`` (1 or 0) then the fields (0 when missing),
# so a brand's reply turns into an array in one step.
_FETCH_GRID = _COUNTERS_LUA + """
local out, n = {}, #ARGV
for _, key in ipairs(KEYS) do
  local row = counters(key)
  out[#out + 1] = row and 1 or 0
  for i = 1, n do out[#out + 1] = row and row[i] or 0 end
end
return out
"""


def read_grid(client: redis.Redis, index: WindowIndex, n_slots: int, fields: tuple[str, ...]
              ) -> tuple[list[tuple[str, str]], np.ndarray]:
    """The windows of a :func:`grid_index` of ``n_slots`` windows per pair as an array ``(pair, slot, 1 + fields)``
    (first column: the window exists), with the pairs ``(brand, channel)`` in its order; one read-only script per
    brand, pipelined."""
    pairs: list[tuple[str, str]] = []
    if not index or n_slots <= 0:
        return pairs, np.zeros((0, max(n_slots, 0), 1 + len(fields)), dtype=np.int64)
    script = client.register_script(_FETCH_GRID)
    pipe = client.pipeline(transaction=False)
    for b, items in index.items():
        script(keys=[w.key for w in items], args=list(fields), client=pipe)
        pairs.extend((b, w.channel) for w in items[::n_slots])
    arrays = [np.asarray(flat, dtype=np.int64).reshape(-1, n_slots, 1 + len(fields)) for flat in pipe.execute()]
    return pairs, np.concatenate(arrays)


def count_authors(client: redis.Redis, *indexes: WindowIndex) -> list[int]:
    """Distinct authors over each index's windows: a HyperLogLog union per brand (one slot), summed over brands;
    every index in one pipelined round trip."""
    pipe = client.pipeline(transaction=False)
    calls = []
    for index in indexes:
        calls.append(len(index))
        for items in index.values():
            pipe.pfcount(*[w.authors_key for w in items])
    counts = iter(pipe.execute() if any(calls) else [])
    return [sum(int(next(counts)) for _ in range(n)) for n in calls]


def fetch_windows(client: redis.Redis, keys: Keys, since_ms: int | None, until_ms: int | None, gran: str = "m",
                  brands: list[str] | None = None, channels: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One row per window x brand x channel starting in ``[since_ms, until_ms]``, like
    :func:`stream.metrics.windows_between` (every counter plus ``brand``, ``channel``, ``start``), read in
    two pipelined round trips: the windows' indexes, then one read-only script per brand for their hashes."""
    return read_windows(client, window_index(client, keys, since_ms, until_ms, gran, brands, channels))


def list_channels(client: redis.Redis, keys: Keys, brands: list[str] | None = None) -> list[str]:
    """The channels seen for the brands (default: all), sorted."""
    chosen = brands if brands is not None else list_brands(client, keys)
    if not chosen:
        return []
    pipe = client.pipeline(transaction=False)
    for b in chosen:
        pipe.smembers(keys.channels(b))
    return sorted({_text(c) for members in pipe.execute() for c in members})


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
    #: How long the range's queries take to be answered (its p90 first response, minutes; 0 without replies): the
    #: windows newer than that are still being answered, so the answer-rate trend and its comparison with the range
    #: before (``kpis["settled_answer_rate"]``) leave them out.
    answer_wait_min: float = 0.0
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
                        latest_n: int = 50, dead_letters_n: int = 20, channels: tuple[str, ...] = (),
                        until_ms: int | None = None) -> CommandCentre:
    """Read and compute the command centre for ``brand`` (None: all brands) over the last ``minutes``.

    ``channels`` narrows every figure to those channels (empty: all); ``until_ms`` ends the range at that
    event time instead of at the newest window. Ranges up to six hours use minute windows, up to a week
    hour windows, longer ones day windows. Up to six hours, first response times are those of replies *posted*
    in the range (what the team delivered then), for mentions posted at most :data:`RESPONSE_LOOKBACK_MS`
    earlier, exact; over longer ranges they are those of the range's mentions (as ``pulse metrics`` counts
    them): count and mean exact from the windows' counters, p90 from the hour and day DDSketches (within 1 %),
    so a week is read from a few hundred windows instead of every response time. Answer rate is answered
    queries ÷ queries of the range's windows.
    """
    brands = list_brands(client, keys)
    chosen = [brand] if brand else None
    gran = granularity(minutes)
    length = GRANULARITIES[gran]
    n_windows = max(1, minutes * 60_000 // length)
    stats = totals(client, keys)
    out = CommandCentre(brands=brands, brand=brand, minutes=minutes, gran=gran, totals=stats,
                        latest=_latest(client, keys, brand, latest_n, channels),
                        dead_letters=_dead_letters(client, keys, dead_letters_n),
                        alerts=read_alerts(client, keys, brand, channels=channels))
    # The newest window of the range: the newest written, or the one holding until_ms - 1.
    last_window = None if until_ms is None else (until_ms - 1) - (until_ms - 1) % length
    if last_window is None:
        newest = newest_window_ms(client, keys, None, gran)
        if newest is None:
            return out
        last_window = newest
    end_ms = last_window
    start_ms = end_ms - (n_windows - 1) * length
    prev_start_ms = start_ms - n_windows * length
    if gran != "m":
        return _command_centre_long(client, keys, out, chosen, channels, start_ms, end_ms, prev_start_ms, until_ms)
    index = window_index(client, keys, prev_start_ms, end_ms, gran, chosen, channels)
    if not index:
        return out
    earliest_ms = min(w.start_ms for items in index.values() for w in items)
    # the range itself window by window; the range before only as totals, summed on the server
    earlier, now = split_index(index, start_ms)
    current = read_windows(client, now, _RANGE_FIELDS)
    before = [sum_windows(client, earlier, _BEFORE_FIELDS)]
    responses = [r for r in response_times_between(client, keys, prev_start_ms - RESPONSE_LOOKBACK_MS,
                                                   end_ms + length - 1, chosen)
                 if not channels or r["channel"] in channels]
    replies = [(r["mention_ms"] + int(r["response_ms"]), r) for r in responses]
    cur_rt = [r for t, r in replies if start_ms <= t < end_ms + length]
    prev_rt = [r for t, r in replies if prev_start_ms <= t < start_ms]
    authors_now, authors_earlier = count_authors(client, now, earlier)
    # The range before only gets deltas when the data reaches back over all of it.
    has_before = earliest_ms <= prev_start_ms
    authors_before = authors_earlier if has_before else None
    # Rates run to the newest event, not to the end of a window that is still filling.
    newest_event = _newest_event_ms(client, keys) if until_ms is None else end_ms + length - 1
    newest_ms = min(max(newest_event, end_ms), end_ms + length - 1)
    covered_minutes = max(1.0, (newest_ms - max(start_ms, earliest_ms)) / 60_000)
    filling = newest_ms < end_ms + length - 1_000 and n_windows > 1
    kpis = _kpis(current, cur_rt, covered_minutes, authors_now, stats)
    previous = (_kpis(before, prev_rt, minutes, authors_before or 0, stats) if has_before
                else dict.fromkeys(kpis))
    starts = [datetime.fromtimestamp((start_ms + i * length) / 1000, tz=UTC) for i in range(n_windows)]
    wait_ms, settled = _settled(current, kpis, starts, length, newest_ms)
    by_channel = _by_channel(current, starts)
    response = _response_series(cur_rt, start_ms, length)
    return CommandCentre(
        brands=brands, brand=brand, minutes=minutes, gran=gran,
        start=starts[0], end=datetime.fromtimestamp((end_ms + length) / 1000, tz=UTC),
        newest=datetime.fromtimestamp(newest_ms / 1000, tz=UTC),
        filling_from=starts[-1] if filling else None, answer_wait_min=wait_ms / 60_000,
        kpis=kpis, previous=previous,
        sparklines=_sparklines(current, response, starts[:-1] if filling else starts, settled),
        by_channel=by_channel, sentiment=_sentiment_series(by_channel), response=response,
        channels=_breakdown(current, cur_rt, "channel"), brands_table=_breakdown(current, cur_rt, "brand"),
        latest=out.latest, dead_letters=out.dead_letters, alerts=out.alerts,
        totals=stats,
    )


def _command_centre_long(client: redis.Redis, keys: Keys, out: CommandCentre, chosen: list[str] | None,
                         channels: tuple[str, ...], start_ms: int, end_ms: int, prev_start_ms: int,
                         until_ms: int | None) -> CommandCentre:
    """:func:`read_command_centre` over hour or day windows: the range window by window (named, not looked up),
    the range before and the distinct authors from the fewest day and hour windows that tile them, first
    responses from the windows' counters and their sketches merged on the server (the range, the range before,
    and each day: the chart's p90 line is the p90 of the window's day)."""
    gran, minutes = out.gran, out.minutes
    length = GRANULARITIES[gran]
    n_windows = (end_ms - start_ms) // length + 1
    now = grid_index(client, keys, start_ms, end_ms + length, gran, chosen, channels)
    pair_list, grid = read_grid(client, now, n_windows, _RANGE_FIELDS)
    # rows summed per pair (pairs with a window in the range), per window, and per channel x window
    f = {name: i + 1 for i, name in enumerate(_RANGE_FIELDS)}
    seen = grid[:, :, 0].any(axis=1)
    per_pair = grid.sum(axis=1)
    current = [{"brand": b, "channel": c, **dict(zip(_RANGE_FIELDS, map(int, per_pair[i, 1:]), strict=True))}
               for i, (b, c) in enumerate(pair_list) if seen[i]]
    per_slot = grid.sum(axis=0)
    now_cover = covering_index(client, keys, start_ms, end_ms + length, chosen, channels)
    earlier = covering_index(client, keys, prev_start_ms, start_ms, chosen, channels)
    before = sum_windows(client, earlier, _BEFORE_FIELDS + ("response_ms_sum",))
    if not seen.any() and not before["mentions"] and not before["response_count"]:
        return out
    pipe = client.pipeline(transaction=False)
    for b, c in pair_list:
        pipe.zrange(keys.windows_index(b, c, gran), 0, 0, withscores=True)
    oldest = [int(r[0][1]) for r in pipe.execute() if r]
    earliest_ms = min(oldest) if oldest else start_ms
    authors_now, authors_earlier = count_authors(client, now_cover, earlier)
    groups: dict[str, list[tuple[str, str]]] = {}
    # the chart's p90 per day (a day sketch per pair and day: hour sketches of a week would be 168 a pair)
    days = {b: {w.channel: None for w in items} for b, items in now.items()}
    day_groups = {b: [(keys.sketch(b, c, Keys.bucket_id("d", t), "d"), str(t)) for c in chans
                      for t in range(start_ms - start_ms % _DAY_MS, end_ms + length, _DAY_MS)]
                  for b, chans in days.items()}
    for part in (day_groups, _sketch_groups(keys, now_cover, lambda w: "now"),
                 _sketch_groups(keys, earlier, lambda w: "before")):
        for b, found in part.items():
            groups.setdefault(b, []).extend(found)
    sketches = merged_sketches(client, groups)
    has_before = earliest_ms <= prev_start_ms
    newest_event = _newest_event_ms(client, keys) if until_ms is None else end_ms + length - 1
    newest_ms = min(max(newest_event, end_ms), end_ms + length - 1)
    covered_minutes = max(1.0, (newest_ms - max(start_ms, earliest_ms)) / 60_000)
    filling = newest_ms < end_ms + length - 1_000 and n_windows > 1
    kpis = _kpis(current, [], covered_minutes, authors_now, out.totals)
    kpis.update(_response_kpis([(r["response_count"], r["response_ms_sum"]) for r in current], sketches.get("now")))
    previous: dict[str, float | None] = dict.fromkeys(kpis)
    if has_before:
        previous = _kpis([before], [], minutes, authors_earlier, out.totals)
        previous.update(_response_kpis([(before["response_count"], before["response_ms_sum"])],
                                       sketches.get("before")))
    starts = [datetime.fromtimestamp((start_ms + i * length) / 1000, tz=UTC) for i in range(n_windows)]
    by_channel = _channel_grid(pair_list, grid, seen, starts)
    slot_rows = [{"start": starts[i], **dict(zip(_RANGE_FIELDS, map(int, per_slot[i, 1:]), strict=True))}
                 for i in range(n_windows)]
    wait_ms, settled = _settled(slot_rows, kpis, starts, length, newest_ms)
    rows = []
    day_p90: dict[str, float | None] = {}
    for i in range(n_windows):
        n, total = int(per_slot[i, f["response_count"]]), int(per_slot[i, f["response_ms_sum"]])
        if not n:
            continue
        start = start_ms + i * length
        when = starts[i]
        day = str(start - start % _DAY_MS)
        if day not in day_p90:
            day_p90[day] = sketch.quantile(sketches.get(day, {}), 0.9)
        p90 = day_p90[day]
        rows.append({"start": when, "statistic": "mean", "minutes": total / n / 60_000, "replies": n})
        if p90 is not None:
            rows.append({"start": when, "statistic": "p90", "minutes": p90 / 60_000, "replies": n})
    response = pd.DataFrame(rows, columns=["start", "statistic", "minutes", "replies"])
    return CommandCentre(
        brands=out.brands, brand=out.brand, minutes=minutes, gran=gran,
        start=starts[0], end=datetime.fromtimestamp((end_ms + length) / 1000, tz=UTC),
        newest=datetime.fromtimestamp(newest_ms / 1000, tz=UTC),
        filling_from=starts[-1] if filling else None, answer_wait_min=wait_ms / 60_000,
        kpis=kpis, previous=previous,
        sparklines=_sparklines(slot_rows, response, starts[:-1] if filling else starts, settled),
        by_channel=by_channel, sentiment=_sentiment_grid(per_slot, starts) if not by_channel.empty
        else _sentiment_series(by_channel), response=response,
        channels=_breakdown(current, None, "channel"), brands_table=_breakdown(current, None, "brand"),
        latest=out.latest, dead_letters=out.dead_letters, alerts=out.alerts, totals=out.totals,
    )


_DAY_MS = GRANULARITIES["d"]


def _sentiment_grid(per_slot: np.ndarray, starts: list[datetime]) -> pd.DataFrame:
    """:func:`_sentiment_series` from the per-window sums of a :func:`read_grid` array."""
    cols = [_RANGE_FIELDS.index(name) + 1 for name in _SENTIMENTS]
    return pd.DataFrame({"start": pd.to_datetime(np.repeat(np.array(starts, dtype=object), len(cols)), utc=True),
                         "sentiment": list(_SENTIMENTS) * len(starts),
                         "mentions": per_slot[:, cols].reshape(-1)})


def _channel_grid(pairs: list[tuple[str, str]], grid: np.ndarray, seen: np.ndarray, starts: list[datetime]
                  ) -> pd.DataFrame:
    """:func:`_by_channel` from a :func:`read_grid` array: every window x channel seen, brands added up."""
    columns = ["start", "channel", "mentions", "queries", "negative", "neutral", "positive", "response_count",
               "response_ms_sum", "authors"]
    channels = sorted({c for (_, c), ok in zip(pairs, seen, strict=True) if ok})
    if not channels:
        return pd.DataFrame(columns=columns)
    cols = [_RANGE_FIELDS.index(name) + 1 for name in columns[2:]]
    per = np.stack([grid[[i for i, (_, ch) in enumerate(pairs) if ch == c]].sum(axis=0)[:, cols] for c in channels],
                   axis=1)  # (slot, channel, field)
    frame = pd.DataFrame(per.reshape(-1, len(cols)), columns=columns[2:])
    frame.insert(0, "channel", channels * len(starts))
    frame.insert(0, "start", np.repeat(np.array(starts, dtype=object), len(channels)))
    frame["start"] = pd.to_datetime(frame["start"], utc=True)
    return frame


def _response_kpis(counts: list[tuple[int, int]], merged: dict[str, int] | None) -> dict[str, float | None]:
    """Mean response and responses from window counters ``(response_count, response_ms_sum)``, p90 from a sketch."""
    n = sum(c for c, _ in counts)
    total = sum(t for _, t in counts)
    p90 = sketch.quantile(merged or {}, 0.9)
    return {"mean_response_min": total / n / 60_000 if n else None,
            "p90_response_min": None if p90 is None else p90 / 60_000, "responses": float(n)}


def granularity(minutes: float) -> str:
    """The windows a range is read from: minutes up to six hours, hours up to a week, days beyond.

    >>> granularity(60), granularity(1440), granularity(10080), granularity(43200)
    ('m', 'h', 'h', 'd')
    """
    if minutes <= 360:
        return "m"
    return "h" if minutes <= 7 * 1440 else "d"


def _text(v: bytes | str) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


#: What the command centre reads of each window of the range, and of the range before (summed).
_RANGE_FIELDS = ("mentions", "queries", "negative", "neutral", "positive", "response_count", "response_ms_sum",
                 "authors", "answered")
_BEFORE_FIELDS = ("mentions", "queries", "negative", "response_count", "answered")


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
    answered = sum(r["answered"] for r in rows)  # answer rate: answered queries / queries
    values = sorted(r["response_ms"] for r in responses)
    p90 = quantile(values, 0.9)
    return {
        "mentions_per_min": mentions / minutes if minutes > 0 else None,
        "mentions": float(mentions),
        "authors": float(authors),
        "mean_response_min": (sum(values) / len(values) / 60_000) if values else None,
        "p90_response_min": None if p90 is None else p90 / 60_000,
        "responses": float(len(values)),
        "answer_rate": answered / queries if queries else None,
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
    summed = columns[2:]
    acc: dict[tuple[datetime, str], list[int]] = {}
    for r in rows:  # brands add up per window x channel
        slot = acc.setdefault((r["start"], r["channel"]), [0] * len(summed))
        for i, name in enumerate(summed):
            slot[i] += r[name]
    zero = [0] * len(summed)
    channels = sorted({r["channel"] for r in rows})
    # A chart drawn over the windows that exist would bridge quiet minutes with a slope.
    grid = [[start, channel, *acc.get((start, channel), zero)] for start in starts for channel in channels]
    return pd.DataFrame(grid, columns=columns)


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


def _settled(rows: list[dict[str, Any]], kpis: dict[str, float | None], starts: list[datetime], length_ms: int,
             newest_ms: int) -> tuple[int, list[datetime]]:
    """How long the range's queries take to be answered (the p90 of its first responses, ms; 0 without any) and the
    windows whose queries have had that long by the newest event; sets ``kpis["settled_answer_rate"]``, the answer
    rate of those windows (None without queries in them).

    A query asked a few minutes ago is not answered *yet*: counting the newest windows in a trend or against the
    range before would show a drop that is only the wait (on a wall display it looks like an outage).
    """
    p90 = kpis.get("p90_response_min")
    wait_ms = int(p90 * 60_000) if p90 else 0
    settled = [s for s in starts if _ms(s) + length_ms + wait_ms <= newest_ms]
    keep = set(settled)
    queries = sum(r["queries"] for r in rows if r["start"] in keep)
    answered = sum(r["answered"] for r in rows if r["start"] in keep)
    kpis["settled_answer_rate"] = answered / queries if queries else None
    return wait_ms, settled


def _sparklines(rows: list[dict[str, Any]], response: pd.DataFrame, starts: list[datetime],
                settled: list[datetime]) -> dict[str, list[float | None]]:
    """Per-window values of the KPIs over ``starts`` (the answer rate over the ``settled`` windows only)."""
    sums: dict[datetime, dict[str, int]] = {s: {} for s in starts}
    for r in rows:
        acc = sums.get(r["start"])
        if acc is None:  # the window still filling
            continue
        for name in ("mentions", "queries", "negative", "response_count", "authors", "answered"):
            acc[name] = acc.get(name, 0) + r[name]
    ordered = [sums[s] for s in sorted(sums)]
    done = set(settled)
    mean = dict(zip(response.loc[response.statistic == "mean", "start"],
                    response.loc[response.statistic == "mean", "minutes"], strict=True))
    p90 = dict(zip(response.loc[response.statistic == "p90", "start"],
                   response.loc[response.statistic == "p90", "minutes"], strict=True))
    return {
        "mentions_per_min": [float(a.get("mentions", 0)) for a in ordered],
        "authors": [float(a.get("authors", 0)) for a in ordered],
        "mean_response_min": [mean[s] for s in sorted(sums) if s in mean],
        "p90_response_min": [p90[s] for s in sorted(sums) if s in p90],
        "answer_rate": [a["answered"] / a["queries"] for s, a in zip(sorted(sums), ordered, strict=True)
                        if s in done and a.get("queries")],
        "negative_share": [a["negative"] / a["mentions"] for a in ordered if a.get("mentions")],
    }


def _breakdown(rows: list[dict[str, Any]], responses: list[dict[str, Any]] | None, by: str) -> pd.DataFrame:
    """Per ``by`` (brand or channel): mentions, negative share, answer rate, mean first response (of
    ``responses``, or from the rows' counters when None)."""
    per: dict[str, dict[str, float]] = {}
    counted = responses is None
    for r in rows:
        acc = per.setdefault(r[by], {"mentions": 0, "negative": 0, "queries": 0, "answered": 0,
                                     "response_count": 0, "response_ms_sum": 0})
        for name in ("mentions", "negative", "queries", "answered") + (("response_count", "response_ms_sum")
                                                                         if counted else ()):
            acc[name] += r[name]
    rts: dict[str, list[float]] = {}
    for r in responses or ():
        rts.setdefault(r[by], []).append(r["response_ms"])
    nan = float("nan")
    out = []
    for name, acc in per.items():
        values = rts.get(name, [])
        out.append({
            by: name,
            "mentions": int(acc["mentions"]),
            "negative share": acc["negative"] / acc["mentions"] if acc["mentions"] else nan,
            "answer rate": acc["answered"] / acc["queries"] if acc["queries"] else nan,
            "mean first response (min)": (acc["response_ms_sum"] / acc["response_count"] / 60_000
                                          if acc["response_count"] else nan) if counted else
                                         (sum(values) / len(values) / 60_000 if values else nan),
        })
    columns = [by, "mentions", "negative share", "answer rate", "mean first response (min)"]
    frame = pd.DataFrame(out, columns=columns)
    return frame.sort_values("mentions", ascending=False).reset_index(drop=True)


def _latest(client: redis.Redis, keys: Keys, brand: str | None, n: int, channels: tuple[str, ...] = ()) -> pd.DataFrame:
    columns = ["time", "brand", "channel", "author", "sentiment", "intent", "text", "department", "id"]
    wanted = []
    # The latest set holds every brand's mentions; read enough of it to fill the table for one brand.
    for raw in recent_mentions(client, keys, n if brand is None and not channels else max(n, 1000)):
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError:
            log.warning("unreadable entry in %s skipped", keys.latest)
            continue
        if not isinstance(d, dict) or (brand is not None and d.get("brand") != brand):
            continue
        if channels and d.get("channel") not in channels:
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


def read_alerts(client: redis.Redis, keys: Keys, brand: str | None = None, n: int = 20,
                channels: tuple[str, ...] = ()) -> pd.DataFrame:
    """The current state of each alert (an incident keeps one id), newest window first."""
    rows = []
    for a in current_alerts(client, keys):
        if brand is not None and a.get("brand") != brand:
            continue
        if channels and a.get("channel") not in channels:
            continue
        state, text = alert_state(str(a.get("message") or ""))
        rows.append({"window": str(a.get("window_start", ""))[:16].replace("T", " "),
                     "state": state, "kind": a.get("kind", ""),
                     "severity": a.get("severity", ""), "brand": a.get("brand", ""),
                     "channel": a.get("channel") or a.get("topic") or "", "observed": a.get("observed"),
                     "expected": a.get("expected"), "top terms": ", ".join(a.get("top_terms") or [])[:120],
                     "message": text.strip()[:300]})
    rows.sort(key=lambda r: r["window"], reverse=True)
    return pd.DataFrame(rows[:n], columns=ALERT_COLUMNS)


DRIFT_COLUMNS = ["since", "state", "severity", "error before", "error after", "message", "sample mentions", "id"]


def model_drift_alerts(client: redis.Redis, keys: Keys, model: str) -> pd.DataFrame:
    """The drift guard's alerts on ``model`` (kind ``model_drift``, one per incident, its current state), newest
    first: since when (the event time of the label that revealed it), ``open`` or ``resolved``, the
    prequential error before and after the rise, the flow's message and the mentions it got wrong."""
    rows = []
    for a in current_alerts(client, keys):
        if a.get("kind") != "model_drift" or a.get("topic") != model:
            continue
        state, text = alert_state(str(a.get("message") or ""))
        rows.append({"since": str(a.get("window_start", ""))[:16].replace("T", " "), "state": state,
                     "severity": str(a.get("severity") or ""), "error before": a.get("expected"),
                     "error after": a.get("observed"), "message": text[:300],
                     "sample mentions": ", ".join(str(x) for x in a.get("sample_ids") or [])[:300],
                     "id": str(a.get("id") or "")})
    rows.sort(key=lambda r: r["since"], reverse=True)
    return pd.DataFrame(rows, columns=DRIFT_COLUMNS)


def _dead_letters(client: redis.Redis, keys: Keys, n: int) -> pd.DataFrame:
    columns = ["received", "reason", "source", "where", "raw"]
    out = []
    for d in recent_dead_letters(client, keys, n):
        raw = d.get("raw", "")
        if len(raw) > RAW_DISPLAY_CHARS:
            raw = raw[:RAW_DISPLAY_CHARS] + f"… ({len(raw):,} characters)"
        out.append({"received": d.get("ts_received", ""), "reason": d.get("reason", ""),
                    "source": d.get("source", ""), "where": d.get("origin", ""), "raw": raw})
    return pd.DataFrame(out, columns=columns)


# -- channels (marketing) -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ChannelsView:
    """The Channels page over one span: per channel totals, its volume and sentiment series, notable mentions.

    ``table`` has one row per channel: ``channel``, ``owned`` (the brand's own community), ``mentions``,
    ``authors`` (distinct per brand, summed), ``queries``, ``comments``, ``negative``, ``neutral``,
    ``positive``, ``negative share``, ``net sentiment`` ((positive - negative) ÷ mentions), ``replies``,
    ``answer rate``, ``mean first response (min)`` and ``share of voice`` (the channel's share of mentions).
    """

    span: Span | None
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: One row per window x channel: start, channel, mentions, negative, neutral, positive.
    series: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Newest negative customer mentions: time, brand, channel, author, text.
    notable: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Attraction, participation, behaviour after interaction, resolution and next response, business hours.
    insights: ChannelInsights = field(default_factory=ChannelInsights)

    @property
    def has_data(self) -> bool:
        return not self.table.empty


#: What the Channels page reads of each window of the range.
_CHANNEL_FIELDS = ("mentions", "queries", "comments", "negative", "neutral", "positive", "replies", "response_count",
                   "response_ms_sum", "answered", "new_authors")
_CHANNEL_COLUMNS = ["channel", "owned", "mentions", "authors", "queries", "comments", "negative", "neutral",
                    "positive", "negative share", "net sentiment", "replies", "answer rate",
                    "mean first response (min)", "share of voice"]


def read_channels(client: redis.Redis, keys: Keys, filters: Filters, owned: tuple[str, ...] = ("forum",),
                  notable_n: int = 30, business_hours: str = "", after_reply_days: float = 7.0,
                  with_insights: bool = True) -> ChannelsView:
    """Footprint, sentiment and volume per channel over the filters' range (pipelined reads), and (unless
    ``with_insights`` is false: the wall) the insights of :mod:`dashboard.channel_insights`
    (``business_hours``: the spec of ``PULSE_BUSINESS_HOURS``)."""
    span = resolve_span(client, keys, filters)
    if span is None:
        return ChannelsView(span=None, table=pd.DataFrame(columns=_CHANNEL_COLUMNS))
    # every window of the span by name (one read-only script per brand; windows never written read as missing),
    # and the fewest day, hour and minute windows that tile it for the distinct counts
    length = GRANULARITIES[span.gran]
    n_slots = (span.end_ms - span.start_ms) // length
    grid = grid_index(client, keys, span.start_ms, span.end_ms, span.gran, filters.brands, filters.channels)
    pair_list, values = read_grid(client, grid, n_slots, _CHANNEL_FIELDS)
    seen = values[:, :, 0].any(axis=1) if len(pair_list) else np.zeros(0, dtype=bool)
    if not seen.any():
        return ChannelsView(span=span, table=pd.DataFrame(columns=_CHANNEL_COLUMNS))
    present = {pair for pair, ok in zip(pair_list, seen, strict=True) if ok}
    cover = covering_index(client, keys, span.start_ms, span.end_ms, filters.brands, filters.channels)
    index = {b: [w for w in items if (b, w.channel) in present] for b, items in cover.items()}
    index = {b: items for b, items in index.items() if items}
    # distinct authors per brand x channel: one PFCOUNT over that pair's windows (one slot per brand), summed
    channels_seen = sorted({c for _, c in present})
    per_channel = count_authors(client, *[{b: [w for w in items if w.channel == c] for b, items in index.items()
                                            if any(w.channel == c for w in items)} for c in channels_seen])
    authors = dict(zip(channels_seen, per_channel, strict=True))
    # per channel, brands added up: totals, and every window of the span (quiet windows read 0, not bridged)
    by_channel = {c: values[[i for i, (b, ch) in enumerate(pair_list) if ch == c and (b, ch) in present]].sum(axis=0)
                  for c in channels_seen}  # (slot, 1 + fields)
    per = {c: dict(zip(_CHANNEL_FIELDS, map(int, v[:, 1:].sum(axis=0)), strict=True)) for c, v in by_channel.items()}
    total = sum(acc["mentions"] for acc in per.values())
    nan = float("nan")
    out = []
    for channel, acc in per.items():
        mentions = acc["mentions"]
        out.append({
            "channel": channel, "owned": channel in owned, "mentions": mentions, "authors": authors.get(channel, 0),
            "queries": acc["queries"], "comments": acc["comments"], "negative": acc["negative"],
            "neutral": acc["neutral"], "positive": acc["positive"],
            "negative share": acc["negative"] / mentions if mentions else nan,
            "net sentiment": (acc["positive"] - acc["negative"]) / mentions if mentions else nan,
            "replies": acc["replies"],
            "answer rate": acc["answered"] / acc["queries"] if acc["queries"] else nan,
            # the exact mean of the first responses to the range's mentions: the windows' own counters
            "mean first response (min)": (acc["response_ms_sum"] / acc["response_count"] / 60_000
                                          if acc["response_count"] else nan),
            "share of voice": mentions / total if total else nan,
        })
    table = pd.DataFrame(out, columns=_CHANNEL_COLUMNS).sort_values("mentions", ascending=False).reset_index(drop=True)
    cols = [_CHANNEL_FIELDS.index(name) + 1 for name in ("mentions", "negative", "neutral", "positive")]
    cube = np.stack([by_channel[c][:, cols] for c in channels_seen], axis=1)  # (slot, channel, 4)
    series = pd.DataFrame(cube.reshape(-1, len(cols)), columns=["mentions", "negative", "neutral", "positive"])
    series.insert(0, "channel", channels_seen * n_slots)
    series.insert(0, "start", pd.to_datetime(np.repeat(np.arange(span.start_ms, span.end_ms, length), len(channels_seen)),
                                             unit="ms", utc=True))
    notable = _notable(client, keys, filters, span, notable_n)
    if not with_insights:
        return ChannelsView(span=span, table=table, series=series, notable=notable)
    windows: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for b, items in index.items():
        for w in items:
            gran = w.key[len(keys.prefix)]  # the covering window's granularity: d, h or m
            windows.setdefault((b, w.channel), []).append((gran, Keys.bucket_id(gran, w.start_ms)))
    found = read_channel_insights(
        client, keys, windows, {c: (acc["new_authors"], authors.get(c, 0)) for c, acc in per.items()}, owned,
        span.start_ms, span.end_ms, sorted(index), filters.channels, parse_business_hours(business_hours),
        after_reply_days)
    return ChannelsView(span=span, table=table, series=series, notable=notable, insights=found)


def _notable(client: redis.Redis, keys: Keys, filters: Filters, span: Span, n: int) -> pd.DataFrame:
    """The newest negative customer mentions of the range among those the flow keeps (plain text)."""
    columns = ["time", "brand", "channel", "author", "sentiment score", "text"]
    out = []
    for raw in client.zrevrangebyscore(keys.latest, span.end_ms - 1, span.start_ms, start=0, num=2_000):
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(d, dict) or d.get("from_brand") or d.get("sentiment") != "negative":
            continue
        if (filters.brand and d.get("brand") != filters.brand) or not filters.channel_ok(d.get("channel")):
            continue
        try:
            when = datetime.fromisoformat(str(d.get("ts")))
        except ValueError:
            when = None
        out.append({"time": when, "brand": str(d.get("brand") or ""), "channel": str(d.get("channel") or ""),
                    "author": str(d.get("author") or ""), "sentiment score": d.get("sentiment_score"),
                    "text": str(d.get("text") or "")})
        if len(out) >= n:
            break
    return pd.DataFrame(out, columns=columns)


# -- models ---------------------------------------------------------------------------------------------

class _Prefetched:
    """Answers ``hgetall`` from hashes read beforehand in one pipeline (what ``read_metrics`` asks of a client)."""

    def __init__(self, hashes: dict[str, dict[Any, Any]]) -> None:
        self.hashes = hashes

    def hgetall(self, key: str) -> dict[Any, Any]:
        return self.hashes.get(key, {})


def read_model_quality(client: redis.Redis, keys: Keys) -> list[dict[str, Any]]:
    """:func:`stream.metrics.model_quality` without scanning the keyspace: the metrics hashes of the channels
    the flow has seen (and ``all``), read in one pipeline; one row per model x channel that has one."""
    from models.prequential import read_metrics
    from models.registry import info, metrics_key

    channels = sorted({"all", *list_channels(client, keys)})
    models = ("intent", "sentiment", "department")
    wanted = [metrics_key(keys.prefix, m, c) for m in models for c in channels]
    pipe = client.pipeline(transaction=False)
    for key in wanted:
        pipe.hgetall(key)
    fetched = _Prefetched(dict(zip(wanted, pipe.execute(), strict=True)))
    rows = []
    for model in models:
        meta = info(client, keys.prefix, model) or {}
        for channel in channels:
            metrics = read_metrics(fetched, keys.prefix, model, channel)
            if metrics:
                rows.append({"model": model, "channel": channel, "version": meta.get("version"), **metrics})
    return rows


#: The window counters that are a model's predictions: model -> classes.
PREDICTION_COUNTERS = {"sentiment": ("negative", "neutral", "positive"), "intent": ("queries", "comments")}


def prediction_mix(client: redis.Redis, keys: Keys, filters: Filters, model: str) -> pd.DataFrame:
    """What a model predicted per window over the filters' range, from the flow's window counters.

    Rows ``start``, ``class``, ``count``, ``share`` and ``drift``: the window's total-variation distance
    from the whole range's mix (0: the same mix, 1: nothing in common), a drift signal over time.
    Empty for a model the windows do not count (department).
    """
    classes = PREDICTION_COUNTERS.get(model)
    columns = ["start", "class", "count", "share", "drift"]
    span = resolve_span(client, keys, filters) if classes else None
    if classes is None or span is None:
        return pd.DataFrame(columns=columns)
    index = window_index(client, keys, span.start_ms, span.end_ms - 1, span.gran, filters.brands, filters.channels)
    per_window: dict[int, list[int]] = {}
    for _, w, values in iter_windows(client, index, classes):  # brands and channels add up per window
        acc = per_window.setdefault(w.start_ms, [0] * len(classes))
        for i, v in enumerate(values):
            acc[i] += v
    frame = pd.DataFrame.from_dict(per_window, orient="index", columns=list(classes)).sort_index()
    frame.index = pd.to_datetime(frame.index, unit="ms", utc=True)
    frame.index.name = "start"
    frame = frame[frame.sum(axis=1) > 0]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    overall = frame.sum() / frame.sum().sum()
    shares = frame.div(frame.sum(axis=1), axis=0)
    drift = (shares - overall).abs().sum(axis=1) / 2
    long = frame.reset_index().melt(id_vars="start", var_name="class", value_name="count")
    long["share"] = shares.reset_index().melt(id_vars="start", var_name="class", value_name="share")["share"]
    long["drift"] = long["start"].map(drift)
    long["class"] = long["class"].replace({"queries": "query", "comments": "comment"})
    return long[columns]


# -- customers ------------------------------------------------------------------------------------------

#: Channels a handle is looked up on when searching (plus ``email``).
SEARCH_CHANNELS = ("twitter", "facebook", "instagram", "linkedin", "review", "forum", "blog", "email")


def search_customers(client: redis.Redis, prefix: str, query: str, limit: int = 25,
                     scan_cap: int = 50_000) -> list[dict[str, Any]]:
    """Customers (and prospects) whose id, handle on any channel, name or email matches ``query``.

    An exact id or handle comes first; then names and emails containing the query (case-insensitive) among
    at most ``scan_cap`` imported customers, read in pipelined batches. Rows: ``id``, ``kind``, ``name``,
    ``tier``, ``brand``, ``matched`` (what matched).
    """
    from crm.identity import normalize_handle
    from crm.keys import CrmKeys

    ck = CrmKeys(prefix)
    q = query.strip()
    if not q:
        return []
    found: dict[str, str] = {}
    handle = normalize_handle(q)
    pipe = client.pipeline(transaction=False)
    pipe.exists(ck.customer(q))
    for channel in SEARCH_CHANNELS:
        pipe.get(ck.identity(channel, handle))
    if ":" in q:  # "twitter:bob"
        channel, _, h = q.partition(":")
        pipe.get(ck.identity(channel.strip().lower(), normalize_handle(h)))
    exists, *owners = pipe.execute()
    if exists:
        found[q] = "id"
    for channel, owner in zip((*SEARCH_CHANNELS, "handle"), owners, strict=False):
        if owner is not None:
            found.setdefault(_text(owner), f"handle on {channel}")
    needle = q.lower()
    scanned = 0
    batch: list[str] = []

    def flush() -> None:
        for cid, (name, email) in zip(batch, _hmget_all(client, [ck.customer(c) for c in batch], ("name", "email")),
                                      strict=True):
            if needle in (name or "").lower():
                found.setdefault(cid, "name")
            elif needle in (email or "").lower():
                found.setdefault(cid, "email")
        batch.clear()

    for member in client.sscan_iter(ck.customers, count=1_000):
        batch.append(_text(member))
        scanned += 1
        if len(batch) >= 1_000:
            flush()
        if len(found) >= limit or scanned >= scan_cap:
            break
    if batch and len(found) < limit:
        flush()
    ids = list(found)[:limit]
    details = _hmget_all(client, [ck.customer(c) for c in ids], ("kind", "name", "tier", "brand", "mentions"))
    out = [{"id": cid, "kind": kind or ("prospect" if cid.startswith("p:") else "customer"), "name": name or "",
            "tier": tier or "", "brand": brand or "", "mentions": int(_number(mentions) or 0), "matched": found[cid]}
           for cid, (kind, name, tier, brand, mentions) in zip(ids, details, strict=True)]
    # exact ids and handles first, then the customers who have said the most
    out.sort(key=lambda c: (c["matched"] in ("name", "email"), -c["mentions"]))
    return out


def case_brands(client: redis.Redis, prefix: str, case_ids: list[str]) -> dict[str, str]:
    """The brand of each case (one pipelined read), for the service desk's brand filter."""
    from crm.keys import CrmKeys

    ck = CrmKeys(prefix)
    return {cid: brand or "" for cid, (brand,) in
            zip(case_ids, _hmget_all(client, [ck.case(c) for c in case_ids], ("brand",)), strict=True)}


def _hmget_all(client: redis.Redis, keys: list[str], fields: tuple[str, ...]) -> list[list[str | None]]:
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.hmget(k, fields)
    return [[None if v is None else _text(v) for v in values] for values in pipe.execute()] if keys else []


#: Churn candidates are looked for among at most this many of the highest risks (prospects and other brands'
#: customers are read past).
CANDIDATES_SCAN = 50_000


def churn_candidates(client: redis.Redis, prefix: str, n: int = 50, min_risk: float = 0.0,
                     customers_only: bool = True, brand: str | None = None) -> pd.DataFrame:
    """The customers the churn model rates most at risk, highest first, with their CRM fields and the reasons
    behind each score (:func:`stream.churn.churn_candidates`: the features pushing the risk up most).

    Prospects (handles not linked to a customer) and other brands' customers are skipped: the flow's list is
    read further, four times as far each time, up to :data:`CANDIDATES_SCAN` entries. ``reasons`` is the
    reasons as one line (:func:`format_reasons`), ``reason_list`` the reasons as the flow stored them.
    """
    from crm.keys import CrmKeys
    from stream.churn import churn_candidates as flow_candidates

    ck = CrmKeys(prefix)
    columns = ["customer", "kind", "name", "tier", "brand", "value", "risk", "mentions", "negative", "reasons",
               "reason_list"]
    rows: list[dict[str, Any]] = []
    wanted = max(4 * n, 200)
    while True:
        found = flow_candidates(client, Keys(prefix), wanted)
        scored = [c for c in found if c["risk"] >= min_risk]
        if customers_only:
            scored = [c for c in scored if not c["customer_id"].startswith("p:")]
        details = _hmget_all(client, [ck.customer(c["customer_id"]) for c in scored],
                             ("kind", "name", "tier", "brand", "value", "mentions", "negative"))
        rows = []
        for c, (kind, name, tier, b, value, mentions, negative) in zip(scored, details, strict=True):
            if kind is None and name is None:  # a handle the CRM does not know (the flow scores it all the same)
                kind = "prospect"
            kind = kind or ("prospect" if c["customer_id"].startswith("p:") else "customer")
            if (customers_only and kind != "customer") or (brand is not None and b and b != brand):
                continue
            rows.append({"customer": c["customer_id"], "kind": kind, "name": name or "", "tier": tier or "",
                         "brand": b or "", "value": _number(value), "risk": c["risk"],
                         "mentions": int(_number(mentions) or 0), "negative": int(_number(negative) or 0),
                         "reasons": format_reasons(c["reasons"]), "reason_list": c["reasons"]})
            if len(rows) >= n:
                break
        if len(rows) >= n or len(found) < wanted or wanted >= CANDIDATES_SCAN or (found and found[-1]["risk"] < min_risk):
            break
        wanted = min(CANDIDATES_SCAN, wanted * 4)
    return pd.DataFrame(rows, columns=columns)


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def format_reasons(reasons: Any) -> str:
    """The reasons of a churn risk as one line, largest contribution first: each reason's text (the feature's
    name when it has none) and its contribution to the risk's log-odds.

    >>> format_reasons([{"feature": "tenure_years", "text": "tenure", "value": 0.4, "contribution": 0.12},
    ...                 {"feature": "unanswered", "text": "questions left unanswered", "value": 2.0,
    ...                  "contribution": 0.31}])
    'questions left unanswered +0.31, tenure +0.12'
    >>> format_reasons([])
    ''
    """
    items: list[tuple[str, Any]] = []
    for r in reasons or []:
        if isinstance(r, dict):
            items.append((str(r.get("text") or r.get("feature") or "?"), r.get("contribution")))
        else:
            items.append((str(r), None))

    def size(v: Any) -> float:
        return abs(float(v)) if isinstance(v, (int, float)) else 0.0

    items.sort(key=lambda kv: -size(kv[1]))
    return ", ".join(f"{k} {v:+.2f}" if isinstance(v, (int, float)) else k for k, v in items)


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
def load_channels(url: str | None, prefix: str) -> list[str]:
    """Cached :func:`list_channels` (every brand's)."""
    return list_channels(redis_client(url), Keys(prefix))


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False, max_entries=256)
def load_command_centre(url: str | None, prefix: str, filters: Filters) -> CommandCentre:
    """Cached :func:`read_command_centre`, shared by every session looking at the same selection."""
    bounds = filters.bounds_ms()
    return read_command_centre(redis_client(url), Keys(prefix), filters.brand, filters.span_minutes,
                               channels=filters.channels, until_ms=None if bounds is None else bounds[1])


def load_channels_view(url: str | None, prefix: str, filters: Filters, owned: tuple[str, ...],
                       business_hours: str = "", after_reply_days: float = 7.0,
                       with_insights: bool = True) -> ChannelsView:
    """Cached :func:`read_channels`: for a second up to six hours of range (or without insights), for
    :data:`SLOW_CACHE_TTL_SECONDS` beyond (the insights read every case and replied customer of the range)."""
    slow = with_insights and filters.span_minutes > 360
    return (_channels_view_long if slow else _channels_view)(url, prefix, filters, owned, business_hours,
                                                             after_reply_days, with_insights)


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False, max_entries=256)
def _channels_view(url: str | None, prefix: str, filters: Filters, owned: tuple[str, ...], business_hours: str,
                   after_reply_days: float, with_insights: bool) -> ChannelsView:
    return read_channels(redis_client(url), Keys(prefix), filters, owned, business_hours=business_hours,
                         after_reply_days=after_reply_days, with_insights=with_insights)


@st.cache_data(ttl=SLOW_CACHE_TTL_SECONDS, show_spinner="Reading the period's cases and replies…", max_entries=64)
def _channels_view_long(url: str | None, prefix: str, filters: Filters, owned: tuple[str, ...], business_hours: str,
                        after_reply_days: float, with_insights: bool) -> ChannelsView:
    return read_channels(redis_client(url), Keys(prefix), filters, owned, business_hours=business_hours,
                         after_reply_days=after_reply_days, with_insights=with_insights)


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False, max_entries=256)
def load_customer_search(url: str | None, prefix: str, query: str) -> list[dict[str, Any]]:
    """Cached :func:`search_customers`."""
    return search_customers(redis_client(url), prefix, query)


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False, max_entries=64)
def load_churn_candidates(url: str | None, prefix: str, brand: str | None, n: int) -> pd.DataFrame:
    """Cached :func:`churn_candidates`."""
    return churn_candidates(redis_client(url), prefix, n, brand=brand)
