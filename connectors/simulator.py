"""A seeded, deterministic world of brands, customers and what they post, for demos, tests and benchmarks.

Same seed, same events, byte for byte. The world has a few brands with agent handles, customers with
CRM records and handles on several channels, prospects and a public crowd; posts are queries,
complaints, praise and chatter (with slang, abbreviations, emoji and gamer leetspeak), each carrying
its hidden truth in ``meta`` (``truth_intent``, ``truth_sentiment``, ``truth_department``, ``topic``,
``incident``) so models can be scored. Brand agents reply after lognormal delays (some never);
traffic has daily and weekly seasonality, slow growth, news bursts (buzz, not incidents) and injected
incidents (outages: bursts of negative posts sharing terms on one brand x channel, listed in
:attr:`World.incidents`). A call-centre feed (``calls`` records) rises during incidents and falls as
social answers grow; churn outcomes (``churn`` records) come from a hidden satisfaction per customer that
drifts with what happens to them (:mod:`connectors._sim_satisfaction`, with coefficients drawn from the
seed); only its consequences are emitted.

>>> w = World(seed=1, n_customers=50)
>>> recs = list(w.events(limit=400))
>>> [r.offset for r in recs[:3]], recs[0].source
([0, 1, 2], 'sim:1')
>>> recs == list(World(seed=1, n_customers=50).events(limit=400))
True
>>> sorted({r.fmt for r in recs})
['calls', 'mention']
>>> m = next(r.payload for r in recs if r.fmt == "mention")
>>> sorted(m["meta"])[:4]
['author_kind', 'incident', 'topic', 'truth_customer_id']
"""

from __future__ import annotations

import heapq
import logging
import math
import random
from bisect import bisect
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate, islice
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors import _sim_text as tx
from connectors._sim_satisfaction import Satisfaction
from connectors.records import RawRecord

__all__ = [
    "CHANNELS",
    "DEFAULT_BRANDS",
    "DEFAULT_START",
    "Brand",
    "Burst",
    "Incident",
    "SimState",
    "SimulatorSource",
    "World",
    "traffic_forecast",
]

logger = logging.getLogger(__name__)

#: The channels of the simulated world; ``forum`` is the brands' own (``owned``) community.
CHANNELS = ("twitter", "facebook", "instagram", "linkedin", "review", "forum")
_OWNED = frozenset({"forum"})
#: Share of a brand's traffic per channel.
_CHANNEL_SHARE = {
    "twitter": 0.40,
    "facebook": 0.18,
    "instagram": 0.14,
    "linkedin": 0.06,
    "review": 0.08,
    "forum": 0.14,
}
#: A Monday, so the weekly pattern starts at the start of a week.
DEFAULT_START = datetime(2024, 3, 4, tzinfo=UTC)
_HOUR = 3600
_DAY = 86400
_QUEUES = (("billing", 30.0), ("technical", 45.0), ("sales", 15.0))  # calls per 15 minutes per brand


@dataclass(frozen=True)
class Brand:
    """A company in the world: its accounts per channel and its support agents' initials.

    >>> DEFAULT_BRANDS[0].handles["twitter"], DEFAULT_BRANDS[0].industry
    ('NimbusHelp', 'telecom')
    """

    id: str
    name: str
    industry: str  # a key of the text vocabulary: telecom, airline, gaming
    handles: dict[str, str]
    agents: tuple[str, ...]
    weight: float = 1.0


DEFAULT_BRANDS: tuple[Brand, ...] = (
    Brand(
        "nimbus",
        "Nimbus Mobile",
        "telecom",
        {
            "twitter": "NimbusHelp",
            "facebook": "Nimbus Mobile",
            "instagram": "nimbusmobile",
            "linkedin": "Nimbus Mobile Ltd",
            "review": "Nimbus Mobile",
            "forum": "Nimbus_Team",
        },
        ("JS", "AK", "MB", "LT", "RP"),
        1.2,
    ),
    Brand(
        "skyway",
        "Skyway Air",
        "airline",
        {
            "twitter": "SkywayAir",
            "facebook": "Skyway Air",
            "instagram": "skywayair",
            "linkedin": "Skyway Airlines",
            "review": "Skyway Air",
            "forum": "SkywayCrew",
        },
        ("EW", "DK", "SO", "HM"),
        1.0,
    ),
    Brand(
        "pixelforge",
        "PixelForge Games",
        "gaming",
        {
            "twitter": "PixelForgeHQ",
            "facebook": "PixelForge",
            "instagram": "pixelforge",
            "linkedin": "PixelForge Games",
            "review": "PixelForge",
            "forum": "PF_Mod",
        },
        ("ZQ", "NV", "TT"),
        0.8,
    ),
)


_HOUR_PREFIX: dict[int, str] = {}


def _iso(ts: int) -> str:
    """ISO 8601 of an epoch second, as ``datetime.isoformat`` writes it (hour prefix cached: hot path).

    >>> _iso(1709514061) == datetime.fromtimestamp(1709514061, UTC).isoformat()
    True
    """
    hour, rest = divmod(ts, 3600)
    prefix = _HOUR_PREFIX.get(hour)
    if prefix is None:
        if len(_HOUR_PREFIX) > 100_000:
            _HOUR_PREFIX.clear()
        prefix = _HOUR_PREFIX[hour] = datetime.fromtimestamp(hour * 3600, UTC).isoformat()[:14]
    minute, second = divmod(rest, 60)
    return f"{prefix}{minute:02d}:{second:02d}+00:00"


@dataclass(frozen=True)
class Incident:
    """Ground truth of an injected incident (an outage on one brand x channel).

    >>> i = Incident("inc:nimbus:202403041200", "nimbus", "twitter", DEFAULT_START, DEFAULT_START, ("outage",))
    >>> i.to_dict()["start"]
    '2024-03-04T00:00:00+00:00'
    """

    id: str
    brand: str
    channel: str
    start: datetime
    end: datetime
    terms: tuple[str, ...]
    per_hour: float = 0.0  # extra posts per hour at the peak

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "brand": self.brand,
            "channel": self.channel,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "terms": list(self.terms),
            "per_hour": self.per_hour,
        }


@dataclass(frozen=True)
class Burst:
    """Ground truth of a news burst: buzz on one brand x channel that is *not* an incident.

    >>> Burst("buzz:x", "nimbus", "twitter", DEFAULT_START, DEFAULT_START, "launched", "positive").sentiment
    'positive'
    """

    id: str
    brand: str
    channel: str
    start: datetime
    end: datetime
    headline: str
    sentiment: str
    per_hour: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "brand": self.brand,
            "channel": self.channel,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "headline": self.headline,
            "sentiment": self.sentiment,
            "per_hour": self.per_hour,
        }


# --------------------------------------------------------------------------------------------------
# the people

_FIRST = tuple(
    "James Mary John Patricia Robert Jennifer Michael Linda David Emma William Olivia Richard Sophie Joseph Amelia Thomas Isla Daniel Grace Matthew Chloe Aisha Mohammed Priya Arjun Wei Mei Lucas Chiara Mateo Sofia Noah Freya Oscar Ava Kwame Zara Liam Niamh".split()
)
_LAST = tuple(
    "Smith Jones Taylor Brown Williams Wilson Johnson Davies Patel Robinson Wright Thompson Evans Walker White Roberts Green Hall Khan Lewis Clarke Jackson Wood Harris Martin Cooper Hill Ward Hughes Moore Nguyen Rossi Garcia Kowalski Murphy Okafor Singh Chen Ali Novak".split()
)
_ADJ = tuple(
    "happy sleepy angry lucky blue red dark wild cosmic tiny big silent rapid lazy brave salty spicy retro neon frosty".split()
)
_NOUN = tuple(
    "fox panda wolf gamer cat dog rider ninja pixel tiger otter owl shark moose llama falcon koala raven yeti bear".split()
)
_TIERS = (("gold", 0.1, 2400.0), ("silver", 0.3, 900.0), ("bronze", 0.6, 320.0))
_HANDLE_ODDS = {
    "twitter": 0.8,
    "facebook": 0.6,
    "instagram": 0.45,
    "linkedin": 0.25,
    "review": 0.2,
    "forum": 0.3,
}
_STYLES = ("plain", "casual", "shouty", "gamer")


def _style_for(roll: float, industry: str) -> int:
    if industry == "gaming":
        cut = (0.35, 0.6, 0.7)
    else:
        cut = (0.5, 0.85, 0.97)
    return 0 if roll < cut[0] else 1 if roll < cut[1] else 2 if roll < cut[2] else 3


def _public_handle(i: int) -> str:
    return f"{_ADJ[i % 20]}_{_NOUN[(i // 20) % 20]}{i // 400}"


# --------------------------------------------------------------------------------------------------
# the world


class World:
    """The simulated world: brands, customers, incidents, and the event stream.

    ``seed`` fixes everything; ``n_customers`` CRM customers (plus a tenth as many prospects without a
    record) belong to ``brands`` (default :data:`DEFAULT_BRANDS`); ``start`` is the first event time.
    ``rate_per_hour`` is the mean number of posts per hour (brand replies come on top), growing by
    ``growth_per_day``; each customer posts about ``posts_per_customer_day`` times a day and renews (a
    ``churn`` outcome) every ``renewal_days``; no incident starts in the first ``warmup_hours``.

    ``events()`` yields :class:`~connectors.records.RawRecord` in event-time order: ``mention`` records
    (payload shaped like a Mention, ``ts`` an ISO string), ``calls`` (per queue per 15 minutes) and
    ``churn`` outcomes. Every call regenerates the same stream from the seed.

    For the demo's story: ``brand_replies=False`` leaves answering to agents outside the world (the demo's
    simulated staff answer the cases the CRM assigned them); ``first_incident_hours`` scripts an outage on
    the heaviest brand's Twitter that many hours after the start (on top of the random ones);
    ``slang_after_hours`` starts a slang wave then: a ``slang_share`` of ordinary posts use words the models
    never saw in that sense (``meta["slang"]``), so their prequential error rises (vocabulary drift).

    >>> w = World(seed=3, n_customers=20)
    >>> c = w.customers()[0]
    >>> len(w.customers()), c["customer_id"], c["tier"] in ("gold", "silver", "bronze")
    (20, 'C00001', True)
    >>> until = w.start + timedelta(hours=2)
    >>> n = sum(1 for r in w.events(until=until, kinds={"mention"}))
    >>> 500 < n < 5000
    True
    """

    def __init__(
        self,
        seed: int = 7,
        n_customers: int = 1000,
        brands: Sequence[Brand] | None = None,
        start: datetime = DEFAULT_START,
        rate_per_hour: float = 2400.0,
        growth_per_day: float = 0.01,
        renewal_days: int = 14,
        posts_per_customer_day: float = 1.0,
        warmup_hours: float = 6.0,
        brand_replies: bool = True,
        first_incident_hours: float | None = None,
        slang_after_hours: float | None = None,
        slang_share: float = 0.5,
    ) -> None:
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        self.seed = seed
        self.n_customers = n_customers
        self.brands: tuple[Brand, ...] = tuple(brands or DEFAULT_BRANDS)
        if not self.brands:
            raise ValueError("a world needs at least one brand")
        for b in self.brands:
            if b.industry not in tx.INDUSTRIES:
                raise ValueError(
                    f"brand {b.id}: unknown industry {b.industry!r} "
                    f"(choose one of {', '.join(tx.INDUSTRIES)})"
                )
        self.start = start.astimezone(UTC).replace(microsecond=0)
        self.rate_per_hour = float(rate_per_hour)
        self.growth_per_day = growth_per_day
        self.renewal_days = max(1, renewal_days)
        self.posts_per_customer_day = posts_per_customer_day
        self.warmup_hours = max(0.0, warmup_hours)
        self.brand_replies = brand_replies
        self.first_incident_hours = first_incident_hours
        self.slang_after_hours = slang_after_hours
        if not 0.0 <= slang_share <= 1.0:
            raise ValueError(f"slang_share must be within [0, 1], got {slang_share}")
        self.slang_share = slang_share
        self._schedule_cache: dict[int, tuple[list[Incident], list[Burst]]] = {}
        self._horizon = self.start
        self._build_people()

    # -- people -----------------------------------------------------------------------------------
    def _build_people(self) -> None:
        rng = random.Random(f"{self.seed}:people")
        used: dict[str, set[str]] = {c: set() for c in CHANNELS}
        weights = [b.weight for b in self.brands]
        self._customers: list[dict[str, Any]] = []
        self._customer_style: list[int] = []
        for n in range(self.n_customers):
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            brand = rng.choices(self.brands, weights)[0]
            roll, acc = rng.random(), 0.0
            tier, mean_value = _TIERS[-1][0], _TIERS[-1][2]
            for name, odds, value in _TIERS:
                acc += odds
                if roll < acc:
                    tier, mean_value = name, value
                    break
            num = rng.randrange(10, 999)
            forms = {
                "twitter": f"{first[0]}{last}{num}".lower(),
                "facebook": f"{first} {last}",
                "instagram": f"{first}.{last}{num}".lower(),
                "linkedin": f"{first}-{last}-{rng.randrange(16**4):04x}".lower(),
                "review": f"{first}{last[0]}",
                "forum": f"{first.lower()}_{num}",
            }
            handles = {}
            for ch in CHANNELS:
                if rng.random() < _HANDLE_ODDS[ch]:
                    h, k = forms[ch], 2
                    while h in used[ch]:
                        h, k = f"{forms[ch]}{k}" if ch != "facebook" else f"{forms[ch]} {k}", k + 1
                    used[ch].add(h)
                    handles[ch] = h
            if not handles:
                h = forms["twitter"]
                while h in used["twitter"]:
                    h += "x"
                used["twitter"].add(h)
                handles["twitter"] = h
            products = tx.INDUSTRIES[brand.industry]["products"]
            assert isinstance(products, tuple)
            self._customers.append(
                {
                    "customer_id": f"C{n + 1:05d}",
                    "name": f"{first} {last}",
                    "email": f"{first}.{last}{num}@example.com".lower(),
                    "phone": f"+44 7700 9{rng.randrange(100000):05d}",
                    "brand": brand.id,
                    "tier": tier,
                    "value": round(rng.lognormvariate(math.log(mean_value), 0.5), 2),
                    "tenure_days": int(rng.expovariate(1 / 700)) + 14,
                    "products": sorted(rng.sample(products, rng.randint(1, 3))),
                    "handles": handles,
                }
            )
            self._customer_style.append(_style_for(rng.random(), brand.industry))
        # who can post where: (brand, channel) -> customer indexes, most active first (skewed picks)
        self._by_brand_channel: dict[tuple[str, str], list[int]] = {}
        for i, c in enumerate(self._customers):
            for ch in c["handles"]:
                self._by_brand_channel.setdefault((c["brand"], ch), []).append(i)
        self._prospects = [
            f"{rng.choice(_FIRST).lower()}{rng.choice(_LAST).lower()}{k}"
            for k in range(max(5, self.n_customers // 10))
        ]
        self._renewal_phase = [rng.randrange(self.renewal_days * 24) for _ in self._customers]

    def customers(self) -> list[dict[str, Any]]:
        """CRM records (customer_id, name, email, phone, brand, tier, value, tenure_days, products, handles).

        Prospects who post without a CRM record are not in this list.
        """
        return [
            {**c, "products": list(c["products"]), "handles": dict(c["handles"])} for c in self._customers
        ]

    @property
    def prospects(self) -> list[str]:
        """Handles of people asking sales questions who have no CRM record (any channel)."""
        return list(self._prospects)

    # -- schedule ---------------------------------------------------------------------------------
    def _base_per_hour(self, brand: Brand, channel: str) -> float:
        total = sum(b.weight for b in self.brands)
        return self.rate_per_hour * brand.weight / total * _CHANNEL_SHARE[channel]

    def _day_schedule(self, day: int) -> tuple[list[Incident], list[Burst]]:
        if day in self._schedule_cache:
            return self._schedule_cache[day]
        rng = random.Random(f"{self.seed}:schedule:{day}")
        day_start = self.start + timedelta(days=day)
        earliest = (
            min(int(self.warmup_hours * _HOUR), _DAY - 2 * _HOUR) if day == 0 else 0
        )  # detectors warm up
        weights = [b.weight for b in self.brands]
        incidents: list[Incident] = []
        n_inc = rng.choices((0, 1, 2), (0.3, 0.5, 0.2))[0]
        for k in range(n_inc):
            brand = rng.choices(self.brands, weights)[0]
            channel = rng.choices(("twitter", "facebook", "instagram", "forum"), (0.55, 0.2, 0.1, 0.15))[0]
            begin = day_start + timedelta(seconds=rng.randrange(earliest, _DAY - _HOUR))
            minutes = min(240.0, max(25.0, rng.lognormvariate(math.log(70), 0.45)))
            outages = tx.INDUSTRIES[brand.industry]["outages"]
            assert isinstance(outages, tuple)
            terms = rng.choice(outages)
            per_hour = max(30.0, self._base_per_hour(brand, channel) * _season(begin) * rng.uniform(2.5, 6))
            incidents.append(
                Incident(
                    f"inc:{brand.id}:{begin:%Y%m%d%H%M}:{k}",
                    brand.id,
                    channel,
                    begin,
                    begin + timedelta(minutes=round(minutes)),
                    tuple(terms),
                    round(per_hour, 1),
                )
            )
        if day == 0 and self.first_incident_hours is not None:
            incidents.append(self._scripted_incident())
        bursts: list[Burst] = []
        n_burst = rng.choices((0, 1, 2), (0.35, 0.45, 0.2))[0]
        for k in range(n_burst):
            brand = rng.choices(self.brands, weights)[0]
            channel = rng.choices(("twitter", "instagram", "facebook", "linkedin"), (0.5, 0.25, 0.15, 0.1))[0]
            begin = day_start + timedelta(seconds=rng.randrange(earliest, _DAY - _HOUR))
            minutes = rng.uniform(60, 240)
            headlines = tx.INDUSTRIES[brand.industry]["headlines"]
            assert isinstance(headlines, tuple)
            per_hour = max(20.0, self._base_per_hour(brand, channel) * _season(begin) * rng.uniform(2, 5))
            bursts.append(
                Burst(
                    f"buzz:{brand.id}:{begin:%Y%m%d%H%M}:{k}",
                    brand.id,
                    channel,
                    begin,
                    begin + timedelta(minutes=round(minutes)),
                    rng.choice(headlines),
                    rng.choices(("positive", "neutral"), (0.6, 0.4))[0],
                    round(per_hour, 1),
                )
            )
        self._schedule_cache[day] = (incidents, bursts)
        return incidents, bursts

    def _scripted_incident(self) -> Incident:
        """The outage ``first_incident_hours`` after the start: the heaviest brand's Twitter, one hour."""
        brand = max(self.brands, key=lambda b: b.weight)
        begin = self.start + timedelta(hours=self.first_incident_hours or 0.0)
        terms = tx.INDUSTRIES[brand.industry]["outages"]
        assert isinstance(terms, tuple)
        per_hour = max(120.0, self._base_per_hour(brand, "twitter") * _season(begin) * 6)
        return Incident(f"inc:{brand.id}:{begin:%Y%m%d%H%M}:s", brand.id, "twitter", begin,
                        begin + timedelta(minutes=60), tuple(terms[0]), round(per_hour, 1))

    def _days(self, start: datetime, end: datetime) -> range:
        # an incident or burst that starts late in a day runs on into the next: look one day back
        first = max(0, (start - self.start) // timedelta(days=1) - 1)
        last = max(first, (end - self.start) // timedelta(days=1))
        return range(first, last + 1)

    def incidents_between(self, start: datetime, end: datetime) -> list[Incident]:
        """Ground-truth incidents overlapping [start, end), by start time."""
        out = [
            i
            for d in self._days(start, end)
            for i in self._day_schedule(d)[0]
            if i.start < end and i.end > start
        ]
        return sorted(out, key=lambda i: (i.start, i.id))

    def bursts_between(self, start: datetime, end: datetime) -> list[Burst]:
        """Ground-truth news bursts (not incidents) overlapping [start, end), by start time."""
        out = [
            b
            for d in self._days(start, end)
            for b in self._day_schedule(d)[1]
            if b.start < end and b.end > start
        ]
        return sorted(out, key=lambda b: (b.start, b.id))

    @property
    def incidents(self) -> list[Incident]:
        """Ground-truth incidents that started within the time generated so far by :meth:`events`."""
        return [i for i in self.incidents_between(self.start, self._horizon) if i.start < self._horizon]

    @property
    def bursts(self) -> list[Burst]:
        """Ground-truth news bursts that started within the time generated so far by :meth:`events`."""
        return [b for b in self.bursts_between(self.start, self._horizon) if b.start < self._horizon]

    # -- the stream -------------------------------------------------------------------------------
    def events(
        self, limit: int | None = None, until: datetime | None = None, kinds: Collection[str] | None = None
    ) -> Iterator[RawRecord]:
        """Records in event-time order; bounded by ``limit`` (records yielded) and/or ``until``, else endless.

        ``kinds`` keeps only some record fmts (``mention``, ``calls``, ``churn``); offsets count the
        records yielded, so ``source:offset`` names one record across regenerations.
        """
        if until is not None and until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        until_s = int(until.timestamp()) if until is not None else None
        wanted = None if kinds is None else frozenset(kinds)
        source = f"sim:{self.seed}"
        offset = 0
        if limit is not None and limit <= 0:
            return
        for ts, fmt, payload in _Run(self).stream():
            if until_s is not None and ts >= until_s:
                return
            if wanted is not None and fmt not in wanted:
                continue
            yield RawRecord(source, offset, payload, fmt)
            offset += 1
            if limit is not None and offset >= limit:
                return

    def traffic_series(
        self,
        until: datetime,
        interval: timedelta = timedelta(minutes=1),
        brand: str | None = None,
        channel: str | None = None,
        include_replies: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Per-interval mention counts per brand x channel from :attr:`start` to ``until``, with labels.

        One row per interval and brand x channel, zero counts included, in time order:
        ``{"ts": ISO interval start, "brand", "channel", "count", "incident": id or "", "burst": id or ""}``.
        ``incident`` names the ground-truth incident active on that brand x channel in that interval
        (the spike a detector should find); ``burst`` a news burst (a spike that is *not* an incident).
        Brand replies are left out unless ``include_replies``.

        >>> w = World(seed=5, n_customers=10)
        >>> rows = list(w.traffic_series(w.start + timedelta(minutes=2), brand="nimbus", channel="twitter"))
        >>> [(r["ts"][11:16], r["incident"]) for r in rows]
        [('00:00', ''), ('00:01', '')]
        """
        step = int(interval.total_seconds())
        if step <= 0:
            raise ValueError("interval must be positive")
        start_s = int(self.start.timestamp())
        n_buckets = max(0, math.ceil((until.timestamp() - start_s) / step))
        pairs = [
            (b.id, c)
            for b in self.brands
            for c in CHANNELS
            if (brand is None or b.id == brand) and (channel is None or c == channel)
        ]
        counts: dict[tuple[int, str, str], int] = {}
        for rec in self.events(until=until, kinds={"mention"}):
            p = rec.payload
            assert isinstance(p, dict)
            if p["from_brand"] and not include_replies:
                continue
            key = (
                (int(datetime.fromisoformat(p["ts"]).timestamp()) - start_s) // step,
                p["brand"],
                p["channel"],
            )
            counts[key] = counts.get(key, 0) + 1
        incidents = self.incidents_between(self.start, until)
        bursts = self.bursts_between(self.start, until)
        for k in range(n_buckets):
            lo = self.start + timedelta(seconds=k * step)
            hi = lo + interval
            for b, c in pairs:
                inc = next(
                    (
                        i.id
                        for i in incidents
                        if i.brand == b and i.channel == c and i.start < hi and i.end > lo
                    ),
                    "",
                )
                bur = next(
                    (x.id for x in bursts if x.brand == b and x.channel == c and x.start < hi and x.end > lo),
                    "",
                )
                yield {
                    "ts": lo.isoformat(),
                    "brand": b,
                    "channel": c,
                    "count": counts.get((k, b, c), 0),
                    "incident": inc,
                    "burst": bur,
                }


# --------------------------------------------------------------------------------------------------
# one generation run (mutable state lives here, so World.events() can start over any time)

_REPLY_ODDS = {
    "svc_q_neg": 0.85,
    "svc_q_neu": 0.8,
    "sales_q": 0.75,
    "sales_q_pos": 0.75,
    "svc_c_neg": 0.45,
    "svc_c_pos": 0.3,
    "sales_c_pos": 0.2,
    "mkt_c_pos": 0.15,
    "mkt_c_neu": 0.05,
    "mkt_c_neg": 0.2,
    "pr_c_neu": 0.03,
    "pr_c_neg": 0.15,
    "pr_c_pos": 0.1,
    "chatter": 0.02,
}
_CHANNEL_REPLY = {
    "twitter": 1.0,
    "facebook": 0.9,
    "instagram": 0.7,
    "linkedin": 0.6,
    "review": 0.5,
    "forum": 0.9,
}
_CHANNEL_SLOW = {
    "twitter": 1.0,
    "facebook": 1.3,
    "instagram": 1.5,
    "linkedin": 3.0,
    "review": 3.0,
    "forum": 1.2,
}
# daily profile (UTC hour) and weekly profile (Monday first); normalised to mean 1 below
_DAILY_RAW = (0.35, 0.25, 0.2, 0.18, 0.2, 0.3, 0.55, 0.85, 1.1, 1.2, 1.25, 1.3, 1.45, 1.4, 1.3, 1.25, 1.3, 1.35, 1.4, 1.5, 1.55, 1.4, 1.0, 0.6)  # fmt: skip
_DAILY: tuple[float, ...] = tuple(x * 24 / sum(_DAILY_RAW) for x in _DAILY_RAW)
_WEEKLY_RAW = (1.1, 1.05, 1.05, 1.05, 1.0, 0.85, 0.8)
_WEEKLY: tuple[float, ...] = tuple(x * 7 / sum(_WEEKLY_RAW) for x in _WEEKLY_RAW)
_AGENT_HOURS = (7, 23)  # agents answer between 07:00 and 23:00 UTC


def _pick(rng: random.Random, seq: Sequence[Any]) -> Any:
    """``rng.choice`` without its bit-exact integer draw: cheaper on the hot path."""
    return seq[int(rng.random() * len(seq))]


def _season(when: datetime) -> float:
    return _DAILY[when.hour] * _WEEKLY[when.weekday()]


def traffic_forecast(rate_per_hour: float, when: datetime) -> float:
    """Posts per hour a world of ``rate_per_hour`` expects in the hour of ``when`` (daily and weekly seasonality,
    without growth, incidents or bursts): what a staffing plan is made from.

    >>> round(traffic_forecast(2400, DEFAULT_START.replace(hour=3))), round(traffic_forecast(2400, DEFAULT_START.replace(hour=20)))
    (498, 4289)
    """
    return rate_per_hour * _season(when)


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _trapezoid(frac: float) -> float:
    if frac < 0.15:
        return 0.2 + 0.8 * frac / 0.15
    if frac > 0.65:
        return max(0.05, 1.0 - (frac - 0.65) / 0.35)
    return 1.0


class _Slots(dict[str, str]):
    """Template slots filled lazily: only the slots a template uses cost a random draw."""

    __slots__ = ("rng", "vocab", "things", "problems")

    def __init__(
        self,
        rng: random.Random,
        vocab: dict[str, Any],
        things: tuple[str, ...],
        problems: tuple[str, ...],
        fixed: dict[str, str],
    ) -> None:
        super().__init__(fixed)
        self.rng, self.vocab, self.things, self.problems = rng, vocab, things, problems

    def __missing__(self, key: str) -> str:
        rng = self.rng
        if key == "thing":
            v = _pick(rng, self.things)
        elif key == "problem":
            v = _pick(rng, self.problems)
        elif key == "duration":
            v = _pick(rng, ("2 hours", "45 minutes", "3 days", "a week", "an hour", "all day", "20 mins"))
        elif key == "duration_short":
            v = _pick(rng, ("5 minutes", "10 mins", "no time", "one chat", "a few minutes"))
        elif key == "ticket":
            v = f"#{rng.randrange(100000, 999999)}"
        elif key == "agent_name":
            v = _pick(rng, _FIRST)
        elif key == "clock":
            v = f"{rng.randrange(6, 12)}{_pick(rng, ('am', ':30', ':15'))}"
        elif key == "product2":
            v = _pick(rng, self.vocab["products"])
        else:
            pool = self.vocab[_VOCAB_KEYS.get(key, key)]
            v = _pick(rng, pool)
        self[key] = v
        return v


_VOCAB_KEYS = {
    "product": "products",
    "place": "places",
    "feature": "features",
    "campaign": "campaigns",
    "scandal": "scandals",
    "action": "actions",
    "good_news": "good_news",
    "news": "news",
}
_CATS = tuple(tx.CATEGORIES)
_DEPARTMENT_TOPIC = {"sales": "pricing", "marketing": "campaign", "pr": "news"}
_SERVICE_CATS = frozenset(c for c, t in tx.CATEGORIES.items() if t[2] == "service")


def _base36(n: int) -> str:
    """
    >>> _base36(0), _base36(35), _base36(36 * 36)
    ('0', 'z', '100')
    """
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


class _Run:
    """Generates the stream hour by hour: posts of the hour, replies due in it, calls, churn outcomes."""

    def __init__(self, world: World, on_renewal: Callable[[str, int, float, bool], None] | None = None) -> None:
        self.w = world
        #: Called with (customer id, time, hidden churn probability, churned) at each renewal: benchmarks
        #: use it for the ceiling; the stream itself never carries the probability.
        self.on_renewal = on_renewal
        self.rng = random.Random(f"{world.seed}:events")
        self.seq = 0  # tie-breaker and id counter, in generation order: deterministic
        # ids name the world (seed and start minute): the same world gives the same ids, and a live run
        # (which starts now) never reuses the ids of an earlier one the CRM and dedupe already know
        self.id_stem = f"sim{world.seed}-{_base36(int(world.start.timestamp()) // 60)}"
        self.slang_at = (None if world.slang_after_hours is None
                         else int(world.start.timestamp() + world.slang_after_hours * _HOUR))
        self.pending: list[tuple[int, int, str, dict[str, Any]]] = []  # replies and follow-ups not yet due
        n = len(world._customers)
        self.sat = Satisfaction(
            world.seed,
            [c["tenure_days"] for c in world._customers],
            [c["tier"] for c in world._customers],
            [c["brand"] for c in world._customers],
            world.start.timestamp(),
        )
        self.churned = [False] * n
        self.replies_prev: dict[str, int] = {b.id: 0 for b in world.brands}
        self.replies_now: dict[str, int] = {b.id: 0 for b in world.brands}
        self.cum_mix = {ch: list(accumulate(tx.CHANNEL_MIX[ch][c] for c in _CATS)) for ch in CHANNELS}
        self.vocab = {b.id: tx.INDUSTRIES[b.industry] for b in world.brands}
        self.topics = {
            b.id: tuple(tx.INDUSTRIES[b.industry]["topics"].items())  # type: ignore[attr-defined]
            for b in world.brands
        }
        self.brand_by_id = {b.id: b for b in world.brands}
        # the share of posts written by CRM customers, so each posts about posts_per_customer_day a day
        per_hour = world.n_customers * world.posts_per_customer_day / 24
        self.customer_share = min(0.5, per_hour / max(world.rate_per_hour, 1.0))
        self.renewals: dict[int, list[int]] = {}
        for i, phase in enumerate(world._renewal_phase):
            self.renewals.setdefault(phase, []).append(i)

    # -- helpers ----------------------------------------------------------------------------------
    def _next_id(self, channel: str) -> str:
        self.seq += 1
        return f"{channel}:{self.id_stem}-{self.seq}"

    def _author(self, brand: Brand, channel: str, cat: str) -> tuple[str, str, int]:
        """(handle, author_kind, customer index or -1) for a post in this category."""
        rng = self.rng
        roll = rng.random()
        share = self.customer_share * (1.6 if cat in _SERVICE_CATS else 0.5)
        if roll < share:
            pool = self.w._by_brand_channel.get((brand.id, channel))
            if pool:
                idx = pool[int(len(pool) * rng.random() ** 1.3)]
                sentiment = tx.CATEGORIES[cat][1]
                if sentiment != "neutral" and not self.sat.keeps_author(idx, sentiment, rng.random()):
                    idx = pool[int(len(pool) * rng.random() ** 1.3)]  # unhappy customers complain more
                if not self.churned[idx]:
                    return self.w._customers[idx]["handles"][channel], "customer", idx
        if cat in ("sales_q", "sales_q_pos") and roll < share + 0.35:
            pros = self.w._prospects
            return pros[int(len(pros) * rng.random() ** 1.5)], "prospect", -1
        return _public_handle(int(20000 * rng.random() ** 1.7)), "public", -1

    def _style(self, kind: str, idx: int, handle: str, industry: str, channel: str) -> int:
        if channel in ("linkedin", "review"):
            return 0
        if kind == "customer":
            return self.w._customer_style[idx]
        h = 0
        for ch in handle[-4:]:
            h = h * 31 + ord(ch)
        return _style_for((h % 997) / 997, industry)

    def _noise(self, text: str, style: int, sentiment: str, roll: float) -> str:
        if style == 1:
            text = tx.casual(text, roll, sentiment)
        elif style == 2:
            text = tx.shouty(text, roll)
        elif style == 3:
            text = tx.gamer(text, roll)
        if roll > 0.62:
            tails = _EMOJI[sentiment]
            text += tails[int((roll - 0.62) * 100) % len(tails)]
        return text

    def _at(self, brand: Brand, channel: str) -> str:
        if channel in ("twitter", "instagram"):
            return "@" + brand.handles[channel]
        if channel in ("facebook", "linkedin"):
            return brand.name
        return ""

    def _mention(
        self,
        ts: int,
        brand: Brand,
        channel: str,
        cat: str,
        text: str,
        handle: str,
        kind: str,
        idx: int,
        topic: str,
        incident: str | None,
        burst: str | None,
        truth: tuple[str, str, str],
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "author_kind": kind,
            "incident": incident,
            "topic": topic,
            "truth_customer_id": self.w._customers[idx]["customer_id"] if idx >= 0 else None,
            "truth_department": truth[2],
            "truth_intent": truth[0],
            "truth_sentiment": truth[1],
        }
        if burst is not None:
            meta["burst"] = burst
        if channel == "review":
            meta["rating"] = {"negative": 1 + (ts % 2), "neutral": 3, "positive": 4 + (ts % 2)}[truth[1]]
        return {
            "type": "mention",
            "id": self._next_id(channel),
            "channel": channel,
            "owned": channel in _OWNED,
            "brand": brand.id,
            "author": handle,
            "text": text,
            "ts": _iso(ts),
            "in_reply_to": None,
            "from_brand": False,
            "lang": "en",
            "meta": meta,
        }

    # -- one post and what follows from it --------------------------------------------------------
    def _post(
        self,
        ts: int,
        brand: Brand,
        channel: str,
        out: list[tuple[int, int, str, dict[str, Any]]],
        cat: str | None = None,
        incident: Incident | None = None,
        burst: Burst | None = None,
    ) -> None:
        rng = self.rng
        vocab = self.vocab[brand.id]
        slang = False
        if incident is not None:
            cat = "svc_q_neg" if rng.random() < 0.4 else "svc_c_neg"
        elif burst is not None:
            cat = "pr_c_pos" if burst.sentiment == "positive" else "pr_c_neu"
            if rng.random() < 0.5:
                cat = "mkt_c_pos" if burst.sentiment == "positive" else "mkt_c_neu"
        elif cat is None:
            cum = self.cum_mix[channel]
            cat = _CATS[bisect(cum, rng.random() * cum[-1])]
        truth = tx.CATEGORIES[cat]
        handle, kind, idx = self._author(brand, channel, cat)
        topic_name, (things, problems) = self.topics[brand.id][int(rng.random() * len(self.topics[brand.id]))]
        fixed = {"at": self._at(brand, channel), "brand": brand.name}
        if incident is not None:
            terms = incident.terms
            fixed.update(t0=terms[0], t1=terms[1 % len(terms)], t2=terms[2 % len(terms)])
            template = tx.INCIDENT_TEMPLATES[int(rng.random() * len(tx.INCIDENT_TEMPLATES))]
            topic_name = "outage"
        elif burst is not None:
            fixed["headline"] = burst.headline
            template = tx.BURST_TEMPLATES[int(rng.random() * len(tx.BURST_TEMPLATES))]
            topic_name = "news"
        else:
            templates = tx.TEMPLATES[cat]
            if self.slang_at is not None and ts >= self.slang_at and rng.random() < self.w.slang_share:
                templates = tx.SLANG_TEMPLATES[(truth[0], truth[1])]
                slang = True
            template = templates[int(rng.random() * len(templates))]
            if cat == "chatter":
                topic_name = "chatter"
            elif cat not in _SERVICE_CATS:
                topic_name = _DEPARTMENT_TOPIC[truth[2]]
            elif "{thing" not in template and "{problem" not in template:
                topic_name = "general"  # the text names no topic, so the truth does not either
        text = template.format_map(_Slots(rng, vocab, things, problems, fixed)).strip().replace("  ", " ")
        style = self._style(kind, idx, handle, brand.industry, channel)
        text = self._noise(text, style, truth[1], rng.random())
        if channel == "review":
            text += _REVIEW_TAIL[truth[1]]
        if idx >= 0 and truth[1] == "negative":
            text += self.sat.threat(idx, rng.random())
        m = self._mention(
            ts,
            brand,
            channel,
            cat,
            text,
            handle,
            kind,
            idx,
            topic_name,
            incident.id if incident else None,
            burst.id if burst else None,
            truth,
        )
        if slang:
            m["meta"]["slang"] = True
        out.append((ts, self.seq, "mention", m))
        if idx >= 0:
            self.sat.posted(idx, ts, truth[1])
        # the brand's answer, if any
        odds = _REPLY_ODDS[cat] * _CHANNEL_REPLY[channel]
        if incident is not None:
            odds *= 0.6
        delay = None
        if rng.random() < odds:
            median = (1500.0 if truth[0] == "query" else 4800.0) * _CHANNEL_SLOW[channel]
            if incident is not None:
                median *= 2.5
            delay = int(rng.lognormvariate(math.log(median), 1.0)) + 30
            hour = ((ts + delay) % _DAY) // _HOUR
            if not _AGENT_HOURS[0] <= hour < _AGENT_HOURS[1]:  # nobody on shift: first thing in the morning
                wait = ((_AGENT_HOURS[0] - hour) % 24) * _HOUR - (ts + delay) % _HOUR
                delay += wait + int(rng.lognormvariate(math.log(1200), 0.8))
            if delay > 3 * _DAY:
                delay = None
        if idx >= 0 and truth[0] == "query":
            self.sat.answered(idx, ts, delay)
        if delay is not None and self.w.brand_replies:
            self._reply(ts + delay, brand, channel, m, cat, handle, kind, idx, things, incident, delay)

    def _reply(
        self,
        ts: int,
        brand: Brand,
        channel: str,
        to: dict[str, Any],
        cat: str,
        handle: str,
        kind: str,
        idx: int,
        things: tuple[str, ...],
        incident: Incident | None,
        delay: int,
        followup: bool = True,
    ) -> None:
        rng = self.rng
        truth = tx.CATEGORIES.get(cat, ("query", "negative", "service"))
        if incident is not None:
            group = "incident"
        elif truth[2] == "sales":
            group = "sales"
        elif truth[0] == "query":
            group = "query"
        else:
            group = truth[1]
        templates = tx.BRAND_REPLIES[group]
        first = self.w._customers[idx]["name"].split(" ")[0] if idx >= 0 else "there"
        agent = _pick(rng, brand.agents)
        text = templates[int(rng.random() * len(templates))].format(
            first=first,
            agent=agent,
            thing=_pick(rng, things),
            product=_pick(rng, self.vocab[brand.id]["products"]),  # type: ignore[arg-type]
        )
        if channel in ("twitter", "instagram"):
            text = f"@{handle} {text}"
        meta = {
            "agent": agent,
            "incident": to["meta"]["incident"],
            "reply_delay_s": delay,
            "topic": to["meta"]["topic"],
            "truth_department": truth[2],
            "truth_intent": "comment",
            "truth_sentiment": "neutral" if group in ("query", "incident", "sales") else "positive",
        }
        self.seq += 1
        reply = {
            "type": "mention",
            "id": f"{channel}:{self.id_stem}-{self.seq}",
            "channel": channel,
            "owned": channel in _OWNED,
            "brand": brand.id,
            "author": brand.handles[channel],
            "text": text,
            "ts": _iso(ts),
            "in_reply_to": to["id"],
            "from_brand": True,
            "lang": "en",
            "meta": meta,
        }
        heapq.heappush(self.pending, (ts, self.seq, "mention", reply))
        # a customer who asked sometimes answers back; a complaint back may get a second answer
        if followup and truth[0] == "query" and rng.random() < 0.35:
            fu_text, fu_intent, fu_sent = tx.FOLLOWUPS[int(rng.random() * len(tx.FOLLOWUPS))]
            if channel in ("twitter", "instagram"):
                fu_text = f"@{brand.handles[channel]} {fu_text}"
            fu_ts = ts + int(rng.lognormvariate(math.log(600), 0.9)) + 20
            self.seq += 1
            fu_meta = {
                "author_kind": kind,
                "incident": to["meta"]["incident"],
                "topic": to["meta"]["topic"],
                "truth_customer_id": to["meta"]["truth_customer_id"],
                "truth_department": "service",
                "truth_intent": fu_intent,
                "truth_sentiment": fu_sent,
            }
            fu = {
                "type": "mention",
                "id": f"{channel}:{self.id_stem}-{self.seq}",
                "channel": channel,
                "owned": channel in _OWNED,
                "brand": brand.id,
                "author": handle,
                "text": fu_text,
                "ts": _iso(fu_ts),
                "in_reply_to": reply["id"],
                "from_brand": False,
                "lang": "en",
                "meta": fu_meta,
            }
            heapq.heappush(self.pending, (fu_ts, self.seq, "mention", fu))
            if idx >= 0:
                self.sat.posted(idx, fu_ts, fu_sent)
            if fu_intent == "query" and rng.random() < 0.6:
                again = int(rng.lognormvariate(math.log(2400), 1.0)) + 30
                self._reply(
                    fu_ts + again,
                    brand,
                    channel,
                    fu,
                    "svc_q_neg",
                    handle,
                    kind,
                    idx,
                    things,
                    incident,
                    again,
                    followup=False,
                )

    # -- the hour loop ----------------------------------------------------------------------------
    def stream(self) -> Iterator[tuple[int, str, dict[str, Any]]]:
        w, rng = self.w, self.rng
        start_s = int(w.start.timestamp())
        renewal_hours = w.renewal_days * 24
        hour = 0
        while True:
            lo = start_s + hour * _HOUR
            hi = lo + _HOUR
            lo_dt = datetime.fromtimestamp(lo, UTC)
            hi_dt = lo_dt + timedelta(hours=1)
            out: list[tuple[int, int, str, dict[str, Any]]] = []
            mid = lo + _HOUR // 2
            season = _season(datetime.fromtimestamp(mid, UTC))
            growth = 1.0 + w.growth_per_day * (hour / 24)
            for brand in w.brands:
                for channel in CHANNELS:
                    n = _poisson(rng, w._base_per_hour(brand, channel) * season * growth)
                    for _ in range(n):
                        self._post(lo + int(rng.random() * _HOUR), brand, channel, out)
            for inc in w.incidents_between(lo_dt, hi_dt):
                self.sat.outage(inc.id, inc.brand, inc.start.timestamp(), inc.end.timestamp())
                self._extra(inc, lo, hi, out, incident=inc)
            for bur in w.bursts_between(lo_dt, hi_dt):
                self._extra(bur, lo, hi, out, burst=bur)
            pending = self.pending
            while pending and pending[0][0] < hi:
                item = heapq.heappop(pending)
                out.append(item)
                if item[3]["from_brand"]:
                    self.replies_now[item[3]["brand"]] += 1
            self._calls(lo, hour, season, growth, out)
            self._churn(lo, hour % renewal_hours, hour, out)
            out.sort(key=_order)
            w._horizon = max(w._horizon, hi_dt)
            self.replies_prev, self.replies_now = self.replies_now, {b.id: 0 for b in w.brands}
            for ts, _, fmt, payload in out:
                yield ts, fmt, payload
            hour += 1

    def _extra(
        self,
        event: Incident | Burst,
        lo: int,
        hi: int,
        out: list[tuple[int, int, str, dict[str, Any]]],
        incident: Incident | None = None,
        burst: Burst | None = None,
    ) -> None:
        """Extra posts of an incident or burst within [lo, hi): a thinned Poisson process on its profile."""
        rng = self.rng
        ev_lo, ev_hi = int(event.start.timestamp()), int(event.end.timestamp())
        a, b = max(lo, ev_lo), min(hi, ev_hi)
        if b <= a:
            return
        brand = self.brand_by_id[event.brand]
        span = ev_hi - ev_lo
        for _ in range(_poisson(rng, event.per_hour * (b - a) / _HOUR)):
            ts = a + int(rng.random() * (b - a))
            if rng.random() < _trapezoid((ts - ev_lo) / span):
                self._post(ts, brand, event.channel, out, incident=incident, burst=burst)

    def _calls(
        self,
        lo: int,
        hour: int,
        season: float,
        growth: float,
        out: list[tuple[int, int, str, dict[str, Any]]],
    ) -> None:
        w, rng = self.w, self.rng
        total_weight = sum(b.weight for b in w.brands)
        lo_dt = datetime.fromtimestamp(lo, UTC)
        active = {i.brand for i in w.incidents_between(lo_dt, lo_dt + timedelta(hours=1))}
        for q in range(4):
            ts = lo + q * 900
            for brand in w.brands:
                share = brand.weight / total_weight * len(w.brands)
                # social answers grow with traffic: their growth beyond the start deflects calls
                expected = sum(w._base_per_hour(brand, c) for c in CHANNELS) * season * 0.3
                ratio = self.replies_prev[brand.id] / expected if hour > 0 and expected > 0 else 1.0
                deflect = min(1.3, max(0.5, 1.0 - 0.3 * (ratio - 1.0)))
                for queue, base in _QUEUES:
                    boost = 1.0
                    if brand.id in active:
                        boost = {"technical": 3.0, "billing": 1.3, "sales": 0.9}[queue]
                    lam = base * share * season * boost * deflect
                    self.seq += 1
                    out.append(
                        (
                            ts,
                            self.seq,
                            "calls",
                            {
                                "type": "calls",
                                "ts": _iso(ts),
                                "queue": queue,
                                "calls": _poisson(rng, lam),
                                "brand": brand.id,
                            },
                        )
                    )

    def _churn(self, lo: int, phase: int, hour: int, out: list[tuple[int, int, str, dict[str, Any]]]) -> None:
        """Renewals due this hour: each outcome is drawn from the customer's hidden satisfaction."""
        rng = self.rng
        for idx in self.renewals.get(phase, ()):
            if self.churned[idx]:
                continue
            c = self.w._customers[idx]
            ts = lo + int(rng.random() * _HOUR)
            churned, p = self.sat.renew(idx, ts)
            self.churned[idx] = churned
            if self.on_renewal is not None:
                self.on_renewal(c["customer_id"], ts, p, churned)
            self.seq += 1
            out.append(
                (
                    ts,
                    self.seq,
                    "churn",
                    {"type": "churn", "customer_id": c["customer_id"], "ts": _iso(ts), "churned": churned},
                )
            )


def _order(item: tuple[int, int, str, dict[str, Any]]) -> tuple[int, int]:
    return item[0], item[1]


_EMOJI = {
    "negative": (" 😡", " 🤬", " 😤", " 👎", " 🙄", " 😩", " 😡😡😡"),
    "positive": (" 😍", " 🙌", " 👍", " 🔥", " ❤️", " 😊", " 💯"),
    "neutral": (" 🤔", " 👀", " 😅", " 🤷", " 📱"),
}
_REVIEW_TAIL = {
    "negative": " Would not recommend.",
    "neutral": " It's ok overall.",
    "positive": " Highly recommend!",
}


# --------------------------------------------------------------------------------------------------
# the Bytewax source


@dataclass(frozen=True)
class SimState:
    """Resume state of a simulator partition: records emitted, the world's start and the pacing anchor.

    >>> SimState(10, "2024-03-04T00:00:00+00:00", 0.0).emitted
    10
    """

    emitted: int
    start: str
    anchor_wall_ms: float


def _wall_ms() -> float:
    return datetime.now(UTC).timestamp() * 1000


ProgressCallback = Callable[[int, int], None]


class _SimPartition(StatefulSourcePartition[RawRecord, SimState]):
    """The world's stream; regenerated from the seed and fast-forwarded on resume."""

    def __init__(
        self,
        world: World,
        state: SimState,
        limit: int | None,
        until: datetime | None,
        kinds: Collection[str] | None,
        speed: float,
        batch_size: int,
        report: Callable[[int], None],
        backfill_hours: float = 0.0,
    ) -> None:
        self._state = state
        self._start_s = world.start.timestamp()
        self._backfill_s = max(0.0, backfill_hours) * 3600.0
        self._it = world.events(limit=limit, until=until, kinds=kinds)
        if state.emitted:
            next(islice(self._it, state.emitted, state.emitted), None)
        self._emitted = state.emitted
        self._speed = speed
        self._batch_size = max(1, batch_size)
        self._report = report
        self._peek: RawRecord | None = None
        self._awake: datetime | None = None
        self._done = False

    def _due_ms(self, rec: RawRecord) -> float:
        p = rec.payload
        assert isinstance(p, dict)
        ts = datetime.fromisoformat(p["ts"]).timestamp()
        # the history (the first backfill hours) is due at once; the pace starts after it
        return self._state.anchor_wall_ms + max(0.0, ts - self._start_s - self._backfill_s) * 1000 / self._speed

    def next_batch(self) -> list[RawRecord]:
        if self._done:
            raise StopIteration
        batch: list[RawRecord] = []
        if self._speed <= 0:
            batch = list(islice(self._it, self._batch_size))
            if not batch:
                self._done = True
                raise StopIteration
        else:
            now = _wall_ms()
            self._awake = None
            while len(batch) < self._batch_size:
                rec = self._peek if self._peek is not None else next(self._it, None)
                self._peek = None
                if rec is None:
                    self._done = True
                    break
                due = self._due_ms(rec)
                if due > now:
                    self._peek = rec
                    self._awake = datetime.fromtimestamp(due / 1000, UTC)
                    break
                batch.append(rec)
            if self._done and not batch:
                raise StopIteration
        self._emitted += len(batch)
        self._report(self._emitted)
        return batch

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> SimState:
        return SimState(self._emitted, self._state.start, self._state.anchor_wall_ms)


class SimulatorSource(FixedPartitionedSource[RawRecord, SimState]):
    """The simulated world as a Bytewax source (one partition, ``sim:<seed>``).

    ``speed=0`` emits batches as fast as the flow takes them (start defaults to :data:`DEFAULT_START`);
    ``speed=X`` paces records X times faster than real time (``1.0`` is real time) and the world starts
    *now*, so a live dashboard shows current times; with ``backfill_hours`` it starts that many hours before now
    and emits them at once, as history (the dashboard has a past, the models and detectors a baseline), then paces
    from now on. ``limit`` bounds the number of records, ``until``
    the event time; with neither it runs forever. ``kinds`` keeps only some record fmts. The world's
    shape comes from ``n_customers``, ``brands``, ``rate_per_hour``, ``warmup_hours`` (no incident
    before then) and any other :class:`World` keyword in ``world_options``; :meth:`world_for` rebuilds
    that world (customers for a CRM import, ground-truth incidents), and :attr:`world` is the one the
    last partition used. ``on_progress(emitted, limit or 0)`` is called after every batch.

    Delivery guarantee: exactly-once with recovery. The resume state (:class:`SimState`) holds the number
    of records emitted, the world's start and the pacing anchor; a resumed partition regenerates the
    same stream from the seed and skips what was emitted (records that came due while the flow was
    down are emitted at once, then pacing continues).

    >>> from bytewax.dataflow import Dataflow
    >>> import bytewax.operators as op
    >>> from bytewax.testing import TestingSink, run_main
    >>> out = []
    >>> flow = Dataflow("sim")
    >>> op.output("out", op.input("read", flow, SimulatorSource(seed=2, limit=50, n_customers=30)), TestingSink(out))
    >>> run_main(flow)
    >>> len(out), out[0].key
    (50, 'sim:2:0')
    """

    def __init__(
        self,
        seed: int = 7,
        limit: int | None = None,
        speed: float = 0.0,
        start: datetime | None = None,
        until: datetime | None = None,
        n_customers: int = 1000,
        brands: Sequence[Brand] | None = None,
        rate_per_hour: float = 2400.0,
        kinds: Collection[str] | None = None,
        batch_size: int = 1000,
        on_progress: ProgressCallback | None = None,
        warmup_hours: float = 6.0,
        backfill_hours: float = 0.0,
        **world_options: Any,
    ) -> None:
        if speed < 0:
            raise ValueError(f"speed must be 0 (as fast as possible) or positive, got {speed}")
        if not backfill_hours >= 0:
            raise ValueError(f"backfill_hours must not be negative, got {backfill_hours}")
        self.backfill_hours = float(backfill_hours)
        if limit is not None and limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        self.seed = seed
        self.limit = limit
        self.speed = float(speed)
        self.start = start
        self.until = until
        self.n_customers = n_customers
        self.brands = tuple(brands) if brands else None
        self.rate_per_hour = rate_per_hour
        self.warmup_hours = warmup_hours
        self.world_options = world_options
        self.kinds = None if kinds is None else tuple(sorted(kinds))
        self.batch_size = batch_size
        self.on_progress = on_progress
        self.emitted = 0
        self.world: World | None = None  # the world of the last built partition, for its ground truth

    def world_for(self, start: datetime) -> World:
        """The world this source generates from, for a given start (ground truth, customers)."""
        return World(
            seed=self.seed,
            n_customers=self.n_customers,
            brands=self.brands,
            start=start,
            rate_per_hour=self.rate_per_hour,
            warmup_hours=self.warmup_hours,
            **self.world_options,
        )

    def _report(self, emitted: int) -> None:
        self.emitted = emitted
        if self.on_progress is not None:
            self.on_progress(emitted, self.limit or 0)

    def list_parts(self) -> list[str]:
        return [f"sim:{self.seed}"]

    def build_part(self, step_id: str, for_part: str, resume_state: SimState | None) -> _SimPartition:
        if resume_state is None:
            now = datetime.now(UTC).replace(microsecond=0)
            start = self.start or (now - timedelta(hours=self.backfill_hours) if self.speed > 0 else DEFAULT_START)
            resume_state = SimState(0, start.isoformat(), _wall_ms())
        else:
            logger.info("%s: resuming after %d records", for_part, resume_state.emitted)
        self.world = self.world_for(datetime.fromisoformat(resume_state.start))
        return _SimPartition(
            self.world,
            resume_state,
            self.limit,
            self.until,
            self.kinds,
            self.speed,
            self.batch_size,
            self._report,
            self.backfill_hours,
        )
