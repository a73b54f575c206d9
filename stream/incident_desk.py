"""The incident desk: live and past incidents, their handling (acknowledge, close) and public notices.

The detector's side of an incident is the alert the flow keeps current per id (``alerts:current``) and
appends once per state to the ``alerts`` stream; the people's side — who acknowledged or closed it, the
notice drafted per channel, approved and sent — lives under :meth:`stream.keys.Keys.incident` and
:meth:`~stream.keys.Keys.incident_events`, expiring :data:`~stream.keys.INCIDENT_RETENTION_S` after the last
action. Notices go to the channel outboxes through the outbox contract (:mod:`connectors.outbox`) with a
reply id made of the incident id and the channel, so sending twice queues one notice. Every action is
recorded in the audit trail (:mod:`stream.audit`) with the user who took it. The dashboard's Incidents page
and the command line share these functions.

>>> inc = Incident.from_alert({"id": "spike:acme:twitter:202401011000", "kind": "spike", "brand": "acme",
...     "channel": "twitter", "window_start": "2024-01-01T10:00:00+00:00", "observed": 40, "expected": 4.0,
...     "score": 0.99, "severity": "high", "top_terms": ["login", "outage"],
...     "message": "open: acme twitter at 40 mentions"})
>>> inc.state, inc.status, inc.live, inc.needs_ack, inc.band, inc.per
('open', 'new', True, True, (4.0, 4.0), 'min')
>>> print(draft_notice(inc, "twitter"))
We know some of you are having trouble with login and outage right now. Our team is on it and we will post updates here. Sorry for the trouble.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson
import redis

from connectors.outbox import OutboxMessage, write_message
from stream.audit import check_user, record_action
from stream.keys import INCIDENT_EVENTS_KEPT, INCIDENT_RETENTION_S, Keys
from stream.metrics import windows_between

__all__ = [
    "Incident",
    "IncidentDeskError",
    "interval_words",
    "Notice",
    "acknowledge",
    "alert_state",
    "approve_notice",
    "close_incident",
    "current_alerts",
    "draft_notice",
    "incident_timeline",
    "incident_volume",
    "notice_channels",
    "notice_reply_id",
    "read_incident",
    "read_incidents",
    "sample_mentions",
    "save_notice",
    "send_notice",
]

log = logging.getLogger(__name__)

#: Detector states, from the alert message's first word.
STATES = ("open", "update", "resolved")
#: Desk states: nobody has looked yet, someone is on it, it is over.
STATUSES = ("new", "acknowledged", "closed")
#: The longest notice accepted on each channel (characters); others take :data:`DEFAULT_NOTICE_CHARS`.
NOTICE_LIMITS = {"twitter": 280, "instagram": 2_200, "facebook": 5_000, "linkedin": 3_000}
DEFAULT_NOTICE_CHARS = 5_000


class IncidentDeskError(ValueError):
    """An action that cannot be taken (unknown incident, already closed, notice not approved, ...)."""


@dataclass(frozen=True, slots=True)
class Notice:
    """A public notice for one channel: drafted, approved (text as approved) and sent (once)."""

    channel: str
    text: str = ""
    status: str = "draft"  # draft | approved | sent
    edited_by: str = ""
    edited_at: str = ""
    approved_by: str = ""
    approved_at: str = ""
    sent_by: str = ""
    sent_at: str = ""
    reply_id: str = ""

    @classmethod
    def from_json(cls, channel: str, raw: bytes | str) -> Notice:
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return cls(channel=channel)
        names = set(cls.__dataclass_fields__)
        return cls(**{k: str(v) for k, v in d.items() if k in names and k != "channel"}, channel=channel)

    def to_json(self) -> bytes:
        return orjson.dumps({k: getattr(self, k) for k in self.__dataclass_fields__})


def _interval_of(alert: dict[str, Any]) -> float | None:
    """The interval (seconds) a spike alert counts over (a minute when an older alert does not say); None for the
    other kinds."""
    return (_float(alert.get("interval_s")) or 60.0) if alert.get("kind") == "spike" else None


def interval_words(seconds: float) -> str:
    """An interval as the tiles and charts say it.

    >>> interval_words(60), interval_words(300), interval_words(3600), interval_words(7200), interval_words(90)
    ('min', '5 min', 'h', '2 h', '90 s')
    """
    s = int(seconds)
    if s == 60:
        return "min"
    if s % 3600 == 0:
        return "h" if s == 3600 else f"{s // 3600} h"
    if s % 60 == 0:
        return f"{s // 60} min"
    return f"{s} s"


@dataclass(frozen=True, slots=True)
class Incident:
    """An alert as the desk sees it: the detector's newest state plus who handles it.

    ``band`` is the detector's expected range for the peak window: ``(expected, expected_upper)`` when the
    detector gives an upper value, else ``(expected, expected)``. A spike's ``observed`` and band count mentions per
    interval of the series the detector watched (``interval_s``: 1, 5 or 60 minutes; :attr:`per` names it); other
    kinds have no interval.
    """

    id: str
    kind: str
    brand: str
    channel: str
    topic: str
    window_start: str
    observed: float
    expected: float
    expected_upper: float | None
    score: float
    severity: str
    sample_ids: tuple[str, ...]
    top_terms: tuple[str, ...]
    message: str
    #: The detector's state: open, update or resolved (alerts other than spikes are ``open``).
    state: str = "open"
    #: The desk's state: new, acknowledged or closed.
    status: str = "new"
    acknowledged_by: str = ""
    acknowledged_at: str = ""
    closed_by: str = ""
    closed_at: str = ""
    notices: dict[str, Notice] = field(default_factory=dict)
    #: A spike's interval (seconds): what ``observed`` and ``band`` count per; None for other kinds.
    interval_s: float | None = None

    @classmethod
    def from_alert(cls, a: dict[str, Any], desk: dict[str, str] | None = None) -> Incident:
        state, text = alert_state(str(a.get("message") or ""))
        upper = a.get("expected_upper")
        desk = desk or {}
        notices = {k.split(":", 1)[1]: Notice.from_json(k.split(":", 1)[1], v)
                   for k, v in desk.items() if k.startswith("notice:")}
        return cls(
            id=str(a.get("id", "")), kind=str(a.get("kind", "")), brand=str(a.get("brand") or ""),
            channel=str(a.get("channel") or ""), topic=str(a.get("topic") or ""),
            window_start=str(a.get("window_start") or ""), observed=_float(a.get("observed")),
            expected=_float(a.get("expected")), expected_upper=None if upper is None else _float(upper),
            score=_float(a.get("score")), severity=str(a.get("severity") or ""),
            sample_ids=tuple(str(s) for s in a.get("sample_ids") or ()),
            top_terms=tuple(str(t) for t in a.get("top_terms") or ()), message=text, state=state,
            status=desk.get("status") or "new", acknowledged_by=desk.get("acknowledged_by", ""),
            acknowledged_at=desk.get("acknowledged_at", ""), closed_by=desk.get("closed_by", ""),
            closed_at=desk.get("closed_at", ""), notices=notices,
            interval_s=_interval_of(a))

    @property
    def per(self) -> str:
        """A spike's interval as words: ``min``, ``5 min``, ``h``; ``""`` for other kinds."""
        return interval_words(self.interval_s) if self.interval_s else ""

    @property
    def live(self) -> bool:
        """Still going on: the detector has not resolved it and nobody closed it."""
        return self.state != "resolved" and self.status != "closed"

    @property
    def needs_ack(self) -> bool:
        """Live and nobody has acknowledged it yet (the wall flashes these)."""
        return self.live and self.status == "new"

    @property
    def band(self) -> tuple[float, float]:
        upper = self.expected_upper if self.expected_upper is not None else self.expected
        return self.expected, max(self.expected, upper)

    @property
    def start_ms(self) -> int | None:
        try:
            return int(datetime.fromisoformat(self.window_start).timestamp() * 1000)
        except ValueError:
            return None

    @property
    def where(self) -> str:
        """Channel (and topic) in words."""
        return " · ".join(p for p in (self.channel, self.topic) if p) or "all channels"


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


def _s(v: bytes | str) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- reading ---------------------------------------------------------------------------------------

def alert_state(message: str) -> tuple[str, str]:
    """An alert message's detector state and text: spike alerts start with ``open:``, ``update:`` or
    ``resolved:``; SLA, rule and other alerts are single events (``open``, the whole message)."""
    head, _, rest = message.partition(":")
    return (head, rest.strip()) if head in STATES else ("open", message)


def current_alerts(client: redis.Redis, keys: Keys) -> list[dict[str, Any]]:
    """The current state of every alert (one per incident id), decoded; unreadable entries are skipped."""
    out = []
    for raw in client.hvals(keys.alerts_current):
        try:
            a = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(a, dict):
            out.append(a)
    return out


def read_incidents(client: redis.Redis, keys: Keys, brand: str | None = None,
                   channels: Iterable[str] | None = None, kinds: Iterable[str] | None = None) -> list[Incident]:
    """Every alert kept current, with its handling, newest window first (two round trips)."""
    wanted_channels = set(channels or ())
    wanted_kinds = set(kinds or ())
    alerts = []
    for a in current_alerts(client, keys):
        if not a.get("id"):
            continue
        if brand is not None and a.get("brand") != brand:
            continue
        if wanted_channels and (a.get("channel") or "") not in wanted_channels:
            continue
        if wanted_kinds and a.get("kind") not in wanted_kinds:
            continue
        alerts.append(a)
    pipe = client.pipeline(transaction=False)
    for a in alerts:
        pipe.hgetall(keys.incident(str(a["id"])))
    desks = pipe.execute() if alerts else []
    out = [Incident.from_alert(a, {_s(k): _s(v) for k, v in d.items()}) for a, d in zip(alerts, desks, strict=True)]
    out.sort(key=lambda i: (i.window_start, i.id), reverse=True)
    return out


def read_incident(client: redis.Redis, keys: Keys, incident_id: str) -> Incident | None:
    """One incident with its handling, or None when no alert has that id."""
    raw = client.hget(keys.alerts_current, incident_id)
    if raw is None:
        return None
    desk = client.hgetall(keys.incident(incident_id))
    return Incident.from_alert(orjson.loads(raw), {_s(k): _s(v) for k, v in desk.items()})  # type: ignore[union-attr]


def incident_timeline(client: redis.Redis, keys: Keys, incident: Incident, scan: int = 5_000) -> list[dict[str, Any]]:
    """What happened to an incident, oldest first: ``{"at", "event", "by", "detail"}`` rows.

    The detector's states come from the newest ``scan`` entries of the alerts stream (``at`` is when the
    flow wrote them); ``opened`` also carries the event time of the window it opened at. The desk's
    actions come from the incident's own event list.
    """
    rows: list[dict[str, Any]] = []
    entries: Any = client.xrevrange(keys.alerts, count=scan) or []
    for entry_id, fields in reversed(entries):  # oldest first: the sort below keeps ties in stream order
        body = fields.get(b"alert") or fields.get("alert")
        if not body:
            continue
        try:
            a = orjson.loads(body)
        except orjson.JSONDecodeError:
            continue
        if a.get("id") != incident.id:
            continue
        head = str(a.get("message") or "").split(":", 1)[0]
        event = {"open": "opened", "update": "updated", "resolved": "resolved"}.get(head, "raised")
        written = _written(entry_id, fields, a)
        interval = _interval_of(a)
        per = f" per {interval_words(interval)}" if interval else ""
        detail = f"{float(a.get('observed') or 0):g} mentions{per}, {float(a.get('expected') or 0):.1f} expected"
        if event in ("opened", "raised"):
            detail += f"; window {str(a.get('window_start', ''))[:16].replace('T', ' ')} UTC (event time)"
        rows.append({"at": written, "event": event, "by": "detector", "detail": detail})
    for raw in client.lrange(keys.incident_events(incident.id), 0, -1):
        try:
            e = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        try:
            at = datetime.fromisoformat(str(e.get("at")))
        except ValueError:
            continue
        rows.append({"at": at, "event": str(e.get("event", "")), "by": str(e.get("by", "")),
                     "detail": str(e.get("detail", ""))})
    rows.sort(key=lambda r: r["at"])
    return rows


def _written(entry_id: bytes | str, fields: dict[Any, Any], alert: dict[str, Any]) -> datetime:
    """When the flow wrote an alert state: its ``written_ms`` (wall clock); an entry written before that field existed
    has it in its id (Redis' clock); else its window's start (event time)."""
    raw = fields.get(b"written_ms") or fields.get("written_ms")
    ms = int(_s(raw)) if raw else int(_s(entry_id).split("-")[0])
    if ms > 0:  # to the second, as the desk's actions are dated: a tie keeps the detector's state first
        return datetime.fromtimestamp(ms // 1000, tz=UTC)
    try:
        return datetime.fromisoformat(str(alert.get("window_start")))
    except ValueError:
        return datetime.fromtimestamp(0, tz=UTC)


def incident_volume(client: redis.Redis, keys: Keys, incident: Incident, before_minutes: int = 60,
                    after_minutes: int = 180) -> list[dict[str, Any]]:
    """Mentions (and negative ones) per minute window of the incident's brand x channel around it.

    Rows ``{"start", "mentions", "negative"}``; every minute of the span present (zeros filled), up to the
    newest window written.
    """
    start = incident.start_ms
    if start is None or not incident.brand:
        return []
    lo, hi = start - before_minutes * 60_000, start + after_minutes * 60_000
    rows = [r for r in windows_between(client, keys, lo, hi, "m", [incident.brand])
            if not incident.channel or r["channel"] == incident.channel]
    if not rows:
        return []
    by_start: dict[int, dict[str, int]] = {}
    for r in rows:
        ms = int(r["start"].timestamp() * 1000)
        acc = by_start.setdefault(ms, {"mentions": 0, "negative": 0})
        acc["mentions"] += r["mentions"]
        acc["negative"] += r["negative"]
    last = max(by_start)
    return [{"start": datetime.fromtimestamp(ms / 1000, tz=UTC), **by_start.get(ms, {"mentions": 0, "negative": 0})}
            for ms in range(lo, last + 1, 60_000)]


def sample_mentions(client: redis.Redis, keys: Keys, incident: Incident, latest_scan: int = 1_000) -> list[dict[str, Any]]:
    """The incident's sample mentions as stored by the flow: ``{"id", "channel", "text", "sentiment",
    "intent", "department"}`` (text exactly as posted). Looked up in the hours after the incident opened,
    then in the latest mentions; ids no longer kept are listed with an empty text."""
    ids = list(dict.fromkeys(incident.sample_ids))
    if not ids:
        return []
    found: dict[str, dict[str, Any]] = {}
    start = incident.start_ms
    if start is not None:
        hour0 = start - start % 3_600_000
        pipe = client.pipeline(transaction=False)
        hours = [Keys.bucket_id("h", hour0 + i * 3_600_000) for i in range(-1, 4)]
        for hour in hours:
            pipe.hmget(keys.features(hour), ids)
        for values in pipe.execute():
            for mid, raw in zip(ids, values, strict=True):
                if raw is not None and mid not in found:
                    try:
                        found[mid] = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        continue
    missing = set(ids) - set(found)
    if missing:
        latest: list[bytes] = client.zrevrange(keys.latest, 0, latest_scan - 1)  # type: ignore[assignment]
        for raw in latest:
            try:
                d = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(d, dict) and d.get("id") in missing:
                found[d["id"]] = d
    out = []
    for mid in ids:
        d = found.get(mid, {})
        out.append({"id": mid, "channel": str(d.get("channel") or mid.split(":", 1)[0]),
                    "text": str(d.get("text") or ""), "sentiment": str(d.get("sentiment") or ""),
                    "intent": str(d.get("intent") or ""), "department": str(d.get("department") or "")})
    return out


# -- notices ---------------------------------------------------------------------------------------

def notice_channels(incident: Incident, owned_channels: Sequence[str] = ("forum",)) -> list[str]:
    """Where a notice goes: the channel the incident is on, then the brand's owned community.

    >>> notice_channels(Incident.from_alert({"id": "x", "channel": "twitter"}), ["forum"])
    ['twitter', 'forum']
    """
    return list(dict.fromkeys([c for c in (incident.channel, *owned_channels) if c]))


def notice_reply_id(incident_id: str, channel: str) -> str:
    """The outbox reply id of an incident's notice on a channel: one notice per incident and channel.

    >>> notice_reply_id("spike:acme:twitter:202401011000", "forum")
    'notice:spike:acme:twitter:202401011000:forum'
    """
    return f"notice:{incident_id}:{channel}"


_WORD = re.compile(r"^[^\W_][\w'’-]*$")


def _terms(terms: Sequence[str], n: int = 3) -> str:
    """The first ``n`` terms that are words (a public notice quotes no markup, links or odd tokens).

    >>> _terms(["login", "<b>x</b>", "outage", "[a](b)", "app"])
    'login, outage and app'
    """
    chosen = [t for t in terms if _WORD.match(t)][:n]
    if len(chosen) <= 1:
        return "".join(chosen)
    return ", ".join(chosen[:-1]) + " and " + chosen[-1]


def draft_notice(incident: Incident, channel: str, owned: bool = False) -> str:
    """A first draft of the public notice for ``channel``: a template filled with the incident's top terms.

    Short for third-party networks; the owned community gets the longer version with the start time.
    """
    terms = _terms(incident.top_terms)
    trouble = f"trouble with {terms}" if terms else "trouble with our service"
    if not owned:
        text = (f"We know some of you are having {trouble} right now. Our team is on it and we will post "
                "updates here. Sorry for the trouble.")
        return text[: NOTICE_LIMITS.get(channel, DEFAULT_NOTICE_CHARS)]
    since = ""
    if incident.start_ms is not None:
        since = f" since about {datetime.fromtimestamp(incident.start_ms / 1000, tz=UTC):%H:%M} UTC"
    brand = f" {incident.brand}" if incident.brand else ""
    return (f"Service notice: some{brand} customers have been reporting {trouble}{since}. "
            "We are investigating and will update this thread as soon as we know more. "
            "There is no need to open a new request for this issue; we will reply here when it is fixed. "
            "Thank you for your patience.")


# -- acting ----------------------------------------------------------------------------------------

def _require(client: redis.Redis, keys: Keys, incident_id: str) -> Incident:
    inc = read_incident(client, keys, incident_id)
    if inc is None:
        raise IncidentDeskError(f"no incident {incident_id!r}")
    return inc


def _write(client: redis.Redis, keys: Keys, incident_id: str, fields: dict[str, str | bytes], event: str, user: str,
           detail: str, now: str) -> None:
    """Store the handling fields and one timeline event (one slot, one transaction), both kept bounded."""
    pipe = client.pipeline(transaction=True)
    if fields:
        pipe.hset(keys.incident(incident_id), mapping=fields)  # type: ignore[arg-type]
    pipe.rpush(keys.incident_events(incident_id), orjson.dumps({"at": now, "event": event, "by": user,
                                                                "detail": detail}))
    pipe.ltrim(keys.incident_events(incident_id), -INCIDENT_EVENTS_KEPT, -1)
    pipe.expire(keys.incident(incident_id), INCIDENT_RETENTION_S)
    pipe.expire(keys.incident_events(incident_id), INCIDENT_RETENTION_S)
    pipe.execute()


def acknowledge(client: redis.Redis, keys: Keys, incident_id: str, user: str, note: str = "") -> bool:
    """Someone is on it: True when this acknowledged it, False when it already was (nothing changes)."""
    user = check_user(user)
    inc = _require(client, keys, incident_id)
    if inc.status == "closed":
        raise IncidentDeskError(f"incident {incident_id} is closed")
    if inc.status == "acknowledged":
        return False
    now = _now_iso()
    _write(client, keys, incident_id, {"status": "acknowledged", "acknowledged_by": user, "acknowledged_at": now},
           "acknowledged", user, note.strip(), now)
    record_action(client, keys, user, "incident.acknowledge", incident_id, {"note": note.strip()} if note else {})
    return True


def close_incident(client: redis.Redis, keys: Keys, incident_id: str, user: str, note: str = "") -> bool:
    """Close an incident (acknowledging it if nobody had): True when this closed it."""
    user = check_user(user)
    inc = _require(client, keys, incident_id)
    if inc.status == "closed":
        return False
    now = _now_iso()
    fields: dict[str, str | bytes] = {"status": "closed", "closed_by": user, "closed_at": now}
    if not inc.acknowledged_by:
        fields |= {"acknowledged_by": user, "acknowledged_at": now}
    _write(client, keys, incident_id, fields, "closed", user, note.strip(), now)
    record_action(client, keys, user, "incident.close", incident_id, {"note": note.strip()} if note else {})
    return True


def _check_text(channel: str, text: str) -> str:
    text = text.strip()
    if not text:
        raise IncidentDeskError("a notice needs some text")
    limit = NOTICE_LIMITS.get(channel, DEFAULT_NOTICE_CHARS)
    if len(text) > limit:
        raise IncidentDeskError(f"a notice on {channel} is at most {limit} characters, this one has {len(text)}")
    return text


def _editable_notice(client: redis.Redis, keys: Keys, incident_id: str, channel: str, text: str,
                     user: str) -> tuple[str, Notice, str, str]:
    """(user, the notice as it is, the checked new text, now) for an edit; refuses a notice already sent."""
    user = check_user(user)
    inc = _require(client, keys, incident_id)
    old = inc.notices.get(channel, Notice(channel=channel))
    if old.status == "sent":
        raise IncidentDeskError(f"the notice on {channel} was already sent")
    return user, old, _check_text(channel, text), _now_iso()


def save_notice(client: redis.Redis, keys: Keys, incident_id: str, channel: str, text: str, user: str) -> Notice:
    """Keep an edited draft (a sent notice cannot change; an approved one goes back to draft if edited)."""
    user, old, text, now = _editable_notice(client, keys, incident_id, channel, text, user)
    approved = old.status == "approved" and old.text == text
    notice = replace(old, text=text, edited_by=user, edited_at=now, status="approved" if approved else "draft",
                     approved_by=old.approved_by if approved else "", approved_at=old.approved_at if approved else "")
    _write(client, keys, incident_id, {f"notice:{channel}": notice.to_json()}, f"notice drafted ({channel})", user,
           "", now)
    record_action(client, keys, user, "notice.edit", incident_id, {"channel": channel, "chars": len(text)})
    return notice


def approve_notice(client: redis.Redis, keys: Keys, incident_id: str, channel: str, text: str, user: str) -> Notice:
    """Approve ``text`` as the notice for ``channel`` (what :func:`send_notice` will send)."""
    user, old, text, now = _editable_notice(client, keys, incident_id, channel, text, user)
    edited = old.text != text
    notice = replace(old, text=text, status="approved", approved_by=user, approved_at=now,
                     edited_by=user if edited else old.edited_by or user, edited_at=now if edited else old.edited_at or now)
    _write(client, keys, incident_id, {f"notice:{channel}": notice.to_json()}, f"notice approved ({channel})", user,
           "", now)
    record_action(client, keys, user, "notice.approve", incident_id, {"channel": channel, "text": text})
    return notice


def send_notice(client: redis.Redis, keys: Keys, incident_id: str, channel: str, user: str) -> bool:
    """Queue the approved notice on ``channel``'s outbox (kind ``notice``, agent = ``user``).

    True when it was queued now, False when this incident's notice on that channel was queued before
    (the reply id is deterministic: a double click sends once). Raises :class:`IncidentDeskError` when
    there is no approved notice.
    """
    user = check_user(user)
    inc = _require(client, keys, incident_id)
    notice = inc.notices.get(channel)
    if notice is None or notice.status not in ("approved", "sent"):
        raise IncidentDeskError(f"approve the notice on {channel} before sending it")
    reply_id = notice_reply_id(incident_id, channel)
    now = _now_iso()
    queued = write_message(client, keys.prefix, OutboxMessage(
        reply_id=reply_id, kind="notice", channel=channel, brand=inc.brand, agent=user, text=notice.text, ts=now))
    if queued:
        sent = replace(notice, status="sent", sent_by=user, sent_at=now, reply_id=reply_id)
        _write(client, keys, incident_id, {f"notice:{channel}": sent.to_json()}, f"notice sent ({channel})", user,
               f"outbox {keys.outbox(channel)}, reply id {reply_id}", now)
    record_action(client, keys, user, "notice.send", incident_id,
                  {"channel": channel, "reply_id": reply_id}, outcome="ok" if queued else "duplicate")
    return queued

