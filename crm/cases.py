"""Cases (service requests): priority, the lifecycle open -> assigned -> replied -> resolved, and replies.

A query opens a case (id ``C-{mention id}``, so opening is idempotent); a follow-up in its thread joins
it; a new customer mention in the thread of a resolved case reopens it. Every transition is stamped with
the event time given by the caller and kept in the case's event list, so first response, next response
and resolution times are exact. Replies go to the outbox of the channel the mention came from, as a
reply to the customer's latest mention in the case (an outbox message: see :mod:`crm.outbox`).

>>> from crm.settings import CrmSettings
>>> p = priority_for(sentiment="negative", sentiment_score=-0.9,
...                  customer={"tier": "gold", "churn_risk": 0.8, "influence": 0.5}, churn_risk=0.2,
...                  settings=CrmSettings())
>>> p.priority, p.score
('urgent', 0.79)
>>> priority_for(sentiment="neutral", sentiment_score=0.0, customer={}, churn_risk=0.0,
...              settings=CrmSettings()).priority
'low'
>>> case_id_for("twitter:123")
'C-twitter:123'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from crm.errors import CaseError
from crm.outbox import OutboxEncoder
from crm.settings import CrmSettings
from crm.store import CrmStore

__all__ = [
    "CASE_STATUSES",
    "Priority",
    "case_from_hash",
    "case_id_for",
    "default_reply_id",
    "priority_for",
    "reply_message",
    "reply_to_case",
    "resolve_case",
]

CASE_STATUSES = ("open", "assigned", "replied", "resolved", "expired")

_INT_FIELDS = ("created_ms", "assigned_ms", "last_assigned_ms", "first_reply_ms", "first_response_ms", "replied_ms",
               "resolved_ms", "resolution_ms", "due_ms", "warn_ms", "awaiting_since", "sla_ms", "mentions",
               "replies", "reopened", "next_response_ms_sum", "next_response_count", "last_response_ms",
               "sla_breaches", "last_customer_ms")


def case_id_for(mention_id: str) -> str:
    return f"C-{mention_id}"


@dataclass(frozen=True, slots=True)
class Priority:
    """A case priority with the score and the parts it came from.

    >>> Priority("high", 0.45, {"negativity": 0.9}).priority
    'high'
    """

    priority: str
    score: float
    parts: dict[str, float]


def priority_for(*, sentiment: str, sentiment_score: float, customer: dict[str, Any], churn_risk: float,
                 settings: CrmSettings) -> Priority:
    """Priority from negativity, customer value (tier or value), churn risk and influence.

    Each part is in [0, 1]; the score is their weighted sum (weights from the settings).
    """
    negativity = max(0.0, min(1.0, -float(sentiment_score)))
    if sentiment == "negative":
        negativity = max(negativity, 0.5)
    tier = str(customer.get("tier") or "").lower()
    if tier in settings.tier_values:
        value = settings.tier_values[tier]
    else:
        raw = customer.get("value") or 0.0
        value = max(0.0, min(1.0, float(raw) / settings.value_scale)) if settings.value_scale > 0 else 0.0
    churn = max(float(customer.get("churn_risk") or 0.0), float(churn_risk or 0.0))
    churn = max(0.0, min(1.0, churn))
    influence = max(0.0, min(1.0, float(customer.get("influence") or 0.0)))
    parts = {"negativity": negativity, "value": value, "churn": churn, "influence": influence}
    w = settings.priority_weights
    score = round(sum(w.get(k, 0.0) * v for k, v in parts.items()), 4)
    t = settings.priority_thresholds
    if score >= t.get("urgent", 0.6):
        level = "urgent"
    elif score >= t.get("high", 0.4):
        level = "high"
    elif score >= t.get("medium", 0.2):
        level = "medium"
    else:
        level = "low"
    return Priority(level, score, parts)


def case_from_hash(h: dict[str, str]) -> dict[str, Any]:
    """A typed case record (numbers as ints, JSON fields decoded, derived response times).

    >>> c = case_from_hash({"id": "C-x", "status": "replied", "created_ms": "1000", "first_response_ms": "500",
    ...                     "next_response_ms_sum": "900", "next_response_count": "3", "suggestions": "[]"})
    >>> c["first_response_ms"], c["next_response_mean_ms"], c["suggestions"]
    (500, 300.0, [])
    """
    rec: dict[str, Any] = dict(h)
    for name in _INT_FIELDS:
        if name in rec:
            rec[name] = int(rec[name]) if rec[name] not in ("", None) else None
    for name in ("suggestions", "keywords"):
        if isinstance(rec.get(name), str):
            try:
                rec[name] = orjson.loads(rec[name])
            except orjson.JSONDecodeError:
                rec[name] = []
    for name in ("priority_score",):
        if rec.get(name) not in (None, ""):
            rec[name] = float(rec[name])
    count = rec.get("next_response_count") or 0
    rec["next_response_mean_ms"] = round(rec["next_response_ms_sum"] / count, 1) if count else None
    rec["queued"] = rec.get("queued") == "1"
    return rec


def reply_message(case: dict[str, Any], *, text: str, reply_id: str, ts_iso: str, private: bool = False,
                  agent: str | None = None) -> dict[str, str]:
    """The outbox message (the contract's fields, see :mod:`crm.outbox`) answering the case's latest customer
    mention on its channel: a ``reply``, or a ``dm_request`` when the conversation moves to private messages.

    >>> m = reply_message({"id": "C-t:1", "channel": "twitter", "brand": "acme", "mention_id": "t:1",
    ...                    "customer_id": "C-9"}, text="On it!", reply_id="r1", ts_iso="2024-01-01T00:00:00+00:00")
    >>> m["kind"], m["in_reply_to"], m["channel"], m["case_id"], m["customer_id"]
    ('reply', 't:1', 'twitter', 'C-t:1', 'C-9')
    """
    return {
        "reply_id": reply_id,
        "kind": "dm_request" if private else "reply",
        "channel": case.get("channel") or "",
        "brand": case.get("brand") or "",
        "in_reply_to": case.get("last_mention_id") or case.get("mention_id") or "",
        "case_id": case.get("id") or "",
        "customer_id": case.get("customer_id") or "",
        "agent": agent or "",
        "text": text,
        "url": "",
        "ts": ts_iso,
    }


def default_reply_id(case_id: str, text: str, private: bool) -> str:
    """Same case, text and privacy -> same id, so a retried command posts once.

    >>> default_reply_id("C-t:1", "hi", False) == default_reply_id("C-t:1", "hi", False)
    True
    """
    digest = hashlib.sha1(f"{case_id}\x00{text}\x00{int(private)}".encode()).hexdigest()[:12]
    return f"r:{case_id}:{digest}"


def reply_to_case(store: CrmStore, case_id: str, *, text: str, now_ms: int, now_iso: str,
                  outbox: OutboxEncoder, private: bool = False, agent: str | None = None,
                  article_id: str | None = None, reply_id: str | None = None) -> dict[str, Any]:
    """Post a reply to the outbox of the case's channel and count it on the case, in one atomic step, once per
    reply id (``outbox`` encodes the entry: see :mod:`crm.outbox`).

    Returns ``{"reply": outbox message dict, "case_id", "outcome": "replied"|"duplicate", "response_ms",
    "article_id"}``. Raises :class:`CaseError` for an unknown or resolved case or an empty text.
    """
    if not text.strip():
        raise CaseError("a reply needs text (or an article)")
    case = store.get_case(case_id)
    if case is None:
        raise CaseError(f"no case {case_id!r}")
    if case.get("status") == "resolved":
        raise CaseError(f"case {case_id} is resolved; a new customer mention reopens it")
    if case.get("status") == "expired":
        raise CaseError(f"case {case_id} expired (no activity for stale_case_days); a new mention opens a new case")
    rid = reply_id or default_reply_id(case_id, text, private)
    by = agent or case.get("agent") or ""
    message = reply_message(case, text=text, reply_id=rid, ts_iso=now_iso, private=private, agent=by)
    try:
        fields = outbox.encode(message)
    except CaseError:
        raise
    except ValueError as exc:
        raise CaseError(f"case {case_id}: the reply cannot be sent ({exc})") from None
    outcome, response_ms = store.reply_case(case_id, rid, now_ms, by, message["channel"] or "unknown", fields,
                                            outbox.maxlen)
    if outcome == "unknown":
        raise CaseError(f"no case {case_id!r}")
    if outcome == "resolved":
        raise CaseError(f"case {case_id} is resolved; a new customer mention reopens it")
    if outcome == "expired":
        raise CaseError(f"case {case_id} expired (no activity for stale_case_days); a new mention opens a new case")
    return {"reply": message, "case_id": case_id, "outcome": outcome,
            "response_ms": int(response_ms) if response_ms else None, "article_id": article_id}


def resolve_case(store: CrmStore, case_id: str, *, now_ms: int, by: str = "") -> dict[str, Any]:
    """Resolve a case; its agent's slot goes to the oldest waiting case it can take.

    Returns ``{"case_id", "resolution_ms", "assigned": [(case id, agent), ...]}``.
    """
    outcome, moved = store.resolve_case(case_id, now_ms, by)
    if outcome == "unknown":
        raise CaseError(f"no case {case_id!r}")
    if outcome == "already":
        raise CaseError(f"case {case_id} is already {(store.get_case(case_id) or {}).get('status') or 'resolved'}")
    case = store.get_case(case_id) or {}
    resolution = case.get("resolution_ms")
    return {"case_id": case_id, "resolution_ms": int(resolution) if resolution else None, "assigned": moved}
