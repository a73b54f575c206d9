"""The records that flow through Social Pulse, with orjson (de)serialisation and validation.

Every parser error is a :class:`SchemaError` that names the bad field, so a dead letter can say why.

>>> m = Mention.from_dict({"id": "twitter:1", "channel": "twitter", "brand": "acme", "author": "bob",
...                        "text": "where is my parcel?", "ts": "2024-05-01T10:00:00Z"})
>>> m.ts.isoformat()
'2024-05-01T10:00:00+00:00'
>>> Mention.from_json(m.to_json()) == m
True
>>> Mention.from_dict({"id": "x", "channel": "twitter", "brand": "acme", "author": "bob", "text": 3,
...                    "ts": "2024-05-01T10:00:00Z"})
Traceback (most recent call last):
...
stream.schema.SchemaError: text: expected a string, got int
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "CHANNELS",
    "MAX_TEXT_CHARS",
    "Alert",
    "CallVolume",
    "ChurnOutcome",
    "DeadLetter",
    "Enriched",
    "Feedback",
    "Mention",
    "SchemaError",
    "parse_ts",
]

#: Channels the product knows; others are accepted as long as they are a short lowercase word.
CHANNELS = ("twitter", "facebook", "instagram", "linkedin", "review", "forum", "blog", "email", "calls")
#: Longer texts are dead letters: no social post is this long, and it protects every model downstream.
MAX_TEXT_CHARS = 20_000


class SchemaError(ValueError):
    """A record that does not fit the schema; the message starts with the bad field's name."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name
        self.problem = problem


_TWCS_FMT = "%a %b %d %H:%M:%S %z %Y"


def parse_ts(value: Any, field_name: str = "ts") -> datetime:
    """Parse an event time into an aware UTC datetime.

    Accepts ISO 8601 (a naive one is taken as UTC), epoch seconds or milliseconds, and the
    Twitter export form ``Tue Oct 31 22:10:47 +0000 2017``.

    >>> parse_ts("Tue Oct 31 22:10:47 +0000 2017").isoformat()
    '2017-10-31T22:10:47+00:00'
    >>> parse_ts(1700000000000).isoformat()
    '2023-11-14T22:13:20+00:00'
    >>> parse_ts("2999-01-01T00:00:00Z")
    Traceback (most recent call last):
    ...
    stream.schema.SchemaError: ts: implausible timestamp 2999-01-01T00:00:00+00:00 (expected years 1990 to 2099)

    Times outside 1990-2099 are refused: one record dated in the year 2999 would otherwise carry its
    brand x channel's event-time watermark (and every retention anchored on the newest event) with it.
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, bool):
        raise SchemaError(field_name, "expected a timestamp, got bool")
    elif isinstance(value, int | float):
        secs = value / 1000 if value > 1e11 else value
        try:
            dt = datetime.fromtimestamp(secs, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise SchemaError(field_name, f"timestamp out of range: {value!r}") from exc
    elif isinstance(value, str):
        text = value.strip()
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            try:
                dt = datetime.strptime(text, _TWCS_FMT)
            except ValueError:
                raise SchemaError(field_name, f"unparseable timestamp {value[:40]!r}") from None
    else:
        raise SchemaError(field_name, f"expected a timestamp, got {type(value).__name__}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    if not 1990 <= dt.year <= 2099:
        raise SchemaError(field_name, f"implausible timestamp {dt.isoformat()} (expected years 1990 to 2099)")
    return dt


def _str(d: dict[str, Any], name: str, *, required: bool = True, default: str | None = None) -> str | None:
    value = d.get(name)
    if value is None:
        if required:
            raise SchemaError(name, "missing")
        return default
    if not isinstance(value, str):
        raise SchemaError(name, f"expected a string, got {type(value).__name__}")
    return value


def _bool(d: dict[str, Any], name: str, default: bool = False) -> bool:
    value = d.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise SchemaError(name, f"expected true/false, got {type(value).__name__}")
    return value


def _number(d: dict[str, Any], name: str) -> float:
    value = d.get(name)
    if value is None:
        raise SchemaError(name, "missing")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SchemaError(name, f"expected a number, got {type(value).__name__}")
    return float(value)


def _dumps_default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "backslashreplace")
    raise TypeError(type(obj).__name__)


def _to_json(obj: Any) -> bytes:
    return orjson.dumps(dataclasses.asdict(obj), default=_dumps_default)


@dataclass(frozen=True, slots=True)
class Mention:
    """One post about a brand on one channel, in event time (UTC).

    >>> m = Mention(id="forum:7", channel="forum", brand="acme", author="ann", text="love it",
    ...             ts=parse_ts("2024-01-01T00:00:00Z"), owned=True)
    >>> m.to_dict()["ts"]
    '2024-01-01T00:00:00+00:00'
    """

    id: str
    channel: str
    brand: str
    author: str
    text: str
    ts: datetime
    owned: bool = False
    in_reply_to: str | None = None
    from_brand: bool = False
    url: str | None = None
    lang: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Mention:
        if not isinstance(d, dict):
            raise SchemaError("record", f"expected a JSON object, got {type(d).__name__}")
        mid = _str(d, "id")
        if not mid:
            raise SchemaError("id", "empty")
        channel = _str(d, "channel")
        if not channel or not channel.replace("_", "").isalnum() or len(channel) > 32:
            raise SchemaError("channel", f"not a channel name: {channel!r}")
        brand = _str(d, "brand")
        if not brand:
            raise SchemaError("brand", "empty")
        text = _str(d, "text")
        assert text is not None
        if len(text) > MAX_TEXT_CHARS:
            raise SchemaError("text", f"too long ({len(text)} characters, limit {MAX_TEXT_CHARS})")
        meta = d.get("meta") or {}
        if not isinstance(meta, dict):
            raise SchemaError("meta", f"expected an object, got {type(meta).__name__}")
        if "ts" not in d or d["ts"] is None:
            raise SchemaError("ts", "missing")
        in_reply_to = d.get("in_reply_to")
        if in_reply_to is not None and not isinstance(in_reply_to, str):
            raise SchemaError("in_reply_to", f"expected a string, got {type(in_reply_to).__name__}")
        return cls(
            id=mid,
            channel=channel.lower(),
            brand=brand,
            author=_str(d, "author") or "",
            text=text,
            ts=parse_ts(d["ts"]),
            owned=_bool(d, "owned"),
            in_reply_to=in_reply_to or None,
            from_brand=_bool(d, "from_brand"),
            url=_str(d, "url", required=False),
            lang=_str(d, "lang", required=False),
            meta=meta,
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Mention:
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise SchemaError("json", f"malformed JSON ({exc.msg})") from None
        return cls.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["ts"] = self.ts.isoformat()
        return d

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @property
    def ts_ms(self) -> int:
        return int(self.ts.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Enriched:
    """A mention with what the engine learned about it.

    >>> m = Mention(id="t:1", channel="twitter", brand="acme", author="bob", text="help pls",
    ...             ts=parse_ts("2024-01-01T00:00:00Z"))
    >>> e = Enriched(mention=m, intent="query", sentiment="neutral", sentiment_score=0.0)
    >>> Enriched.from_json(e.to_json()) == e
    True
    """

    mention: Mention
    customer_id: str | None = None
    intent: str = "comment"
    sentiment: str = "neutral"
    sentiment_score: float = 0.0
    department: str = "service"
    keywords: tuple[str, ...] = ()
    churn_risk: float = 0.0
    case_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = self.mention.to_dict()
        d.update(
            customer_id=self.customer_id,
            intent=self.intent,
            sentiment=self.sentiment,
            sentiment_score=self.sentiment_score,
            department=self.department,
            keywords=list(self.keywords),
            churn_risk=self.churn_risk,
            case_id=self.case_id,
        )
        return d

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Enriched:
        extra = ("customer_id", "intent", "sentiment", "sentiment_score", "department", "keywords",
                 "churn_risk", "case_id")
        mention = Mention.from_dict({k: v for k, v in d.items() if k not in extra})
        return cls(
            mention=mention,
            customer_id=d.get("customer_id"),
            intent=d.get("intent", "comment"),
            sentiment=d.get("sentiment", "neutral"),
            sentiment_score=float(d.get("sentiment_score", 0.0)),
            department=d.get("department", "service"),
            keywords=tuple(d.get("keywords") or ()),
            churn_risk=float(d.get("churn_risk", 0.0)),
            case_id=d.get("case_id"),
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Enriched:
        return cls.from_dict(orjson.loads(raw))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record the flow could not accept, kept whole with the reason (and, from a file, where it is in it).

    >>> dl = DeadLetter(raw=b"{oops", reason="json: malformed JSON", source="file:x.jsonl", key="file:x.jsonl:3",
    ...                 origin="line 7")
    >>> orjson.loads(dl.to_json())["raw"], dl.origin
    ('{oops', 'line 7')
    """

    raw: bytes | str
    reason: str
    source: str
    key: str
    ts_received: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    origin: str = ""

    def to_json(self) -> bytes:
        return _to_json(self)


@dataclass(frozen=True, slots=True)
class CallVolume:
    """Calls offered to one call-centre queue in one interval.

    >>> CallVolume.from_dict({"ts": "2024-01-01T10:00:00Z", "queue": "billing", "calls": 42}).calls
    42
    """

    ts: datetime
    queue: str
    calls: int
    brand: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CallVolume:
        if "ts" not in d or d["ts"] is None:
            raise SchemaError("ts", "missing")
        calls = _number(d, "calls")
        if calls < 0 or calls != int(calls):
            raise SchemaError("calls", f"expected a non-negative whole number, got {calls}")
        return cls(ts=parse_ts(d["ts"]), queue=_str(d, "queue") or "", calls=int(calls),
                   brand=_str(d, "brand", required=False, default="") or "")

    def to_dict(self) -> dict[str, Any]:
        return {"ts": self.ts.isoformat(), "queue": self.queue, "calls": self.calls, "brand": self.brand}


@dataclass(frozen=True, slots=True)
class ChurnOutcome:
    """A customer's churn outcome as the CRM learned it (the label the churn model learns from).

    >>> ChurnOutcome.from_dict({"customer_id": "c1", "ts": "2024-02-01T00:00:00Z", "churned": True}).churned
    True
    """

    customer_id: str
    ts: datetime
    churned: bool

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChurnOutcome:
        if "ts" not in d or d["ts"] is None:
            raise SchemaError("ts", "missing")
        if "churned" not in d:
            raise SchemaError("churned", "missing")
        return cls(customer_id=_str(d, "customer_id") or "", ts=parse_ts(d["ts"]), churned=_bool(d, "churned"))


@dataclass(frozen=True, slots=True)
class Feedback:
    """A label for a mention's prediction, from an agent or analyst: the models learn from it.

    >>> Feedback.from_dict({"mention_id": "twitter:1", "model": "sentiment", "label": "negative"}).model
    'sentiment'
    """

    mention_id: str
    model: str
    label: str
    author: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Feedback:
        mention_id = _str(d, "mention_id") or ""
        if not mention_id:
            raise SchemaError("mention_id", "empty")
        return cls(mention_id=mention_id, model=_str(d, "model") or "", label=_str(d, "label") or "",
                   author=_str(d, "author", required=False, default="") or "")

    def to_dict(self) -> dict[str, Any]:
        return {"type": "feedback", **dataclasses.asdict(self)}


@dataclass(frozen=True, slots=True)
class Alert:
    """Something an incident manager should look at now.

    >>> a = Alert(id="spike:acme:twitter:202401010000", kind="spike", brand="acme", channel="twitter",
    ...           topic=None, window_start="2024-01-01T00:00:00+00:00", observed=40, expected=5.0,
    ...           score=0.99, severity="high")
    >>> Alert.from_json(a.to_json()) == a
    True
    """

    id: str
    kind: str
    brand: str
    channel: str | None
    topic: str | None
    window_start: str
    observed: float
    expected: float
    score: float
    severity: str
    sample_ids: tuple[str, ...] = ()
    top_terms: tuple[str, ...] = ()
    message: str = ""
    #: Spikes: the count at which the peak interval would have scored 0.5 (the top of the expected band).
    expected_upper: float | None = None
    #: Spikes: the length in seconds of the intervals ``observed`` and ``expected`` count over.
    interval_s: float | None = None

    #: ``model_drift``: a text model's prequential error drifted up (``topic`` is the model; the flow serves
    #: its last good version until the learning copy recovers, then the same id is ``resolved``).
    KINDS = ("spike", "sla_breach", "churn", "rule", "model_drift")

    def to_dict(self) -> dict[str, Any]:
        d = {f: getattr(self, f) for f in self.__slots__}  # the fields in order (asdict walks values deeply)
        d["sample_ids"] = list(self.sample_ids)
        d["top_terms"] = list(self.top_terms)
        return d

    def to_json(self) -> bytes:
        return orjson.dumps(self)  # a dataclass: its fields in order, tuples as arrays (as to_dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Alert:
        kind = _str(d, "kind")
        if kind not in cls.KINDS:
            raise SchemaError("kind", f"unknown alert kind {kind!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        vals = {k: v for k, v in d.items() if k in names}
        vals["sample_ids"] = tuple(vals.get("sample_ids") or ())
        vals["top_terms"] = tuple(vals.get("top_terms") or ())
        return cls(**vals)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Alert:
        return cls.from_dict(orjson.loads(raw))
