"""SLA timers: response deadlines per channel x priority, and the ``sla_breach`` alerts they raise.

A case awaiting a response (new, a follow-up after a reply, reopened) gets a deadline
``awaiting_since + SLA``; a warning alert fires when ``warn_fraction`` of the SLA is left and a second
alert at the deadline. Alerts are plain dicts with the fields of ``stream.schema.Alert`` and ids that
are stable per case and deadline, so an alert sink that de-duplicates by id shows each once.

>>> from crm.settings import CrmSettings
>>> deadlines(1_000_000, "twitter", "high", CrmSettings())
(2800000, 2440000)
>>> case = {"id": "C-t:1", "brand": "acme", "channel": "twitter", "priority": "high", "queue": "service",
...         "mention_id": "t:1", "awaiting_since": "1000000", "due_ms": "2800000", "sla_ms": "1800000",
...         "keywords": '["refund"]'}
>>> a = sla_alert(case, "breach", 2_800_000)
>>> a["kind"], a["id"], a["severity"], a["observed"], a["expected"]
('sla_breach', 'sla_breach:C-t:1:2800000:breach', 'high', 30.0, 30.0)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from crm.settings import CrmSettings

__all__ = ["deadlines", "iso_ms", "sla_alert"]

_SEVERITY = {
    ("warning", "urgent"): "high", ("warning", "high"): "medium", ("warning", "medium"): "low",
    ("warning", "low"): "low",
    ("breach", "urgent"): "critical", ("breach", "high"): "high", ("breach", "medium"): "medium",
    ("breach", "low"): "low",
}


def iso_ms(ms: int) -> str:
    """
    >>> iso_ms(0)
    '1970-01-01T00:00:00+00:00'
    """
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def deadlines(start_ms: int, channel: str, priority: str, settings: CrmSettings) -> tuple[int, int]:
    """(due, warn-at) in epoch ms for a response awaited since ``start_ms``."""
    sla_ms = int(settings.sla_minutes_for(channel, priority) * 60_000)
    due = start_ms + sla_ms
    return due, due - int(sla_ms * settings.sla_warn_fraction)


def sla_alert(case: dict[str, Any], stage: str, now_ms: int) -> dict[str, Any]:
    """The alert for one fired timer (``stage`` is ``warning`` or ``breach``) of a case hash."""
    due = int(case.get("due_ms") or now_ms)
    since = int(case.get("awaiting_since") or case.get("created_ms") or now_ms)
    sla_ms = int(case.get("sla_ms") or max(1, due - since))
    waited = max(0, now_ms - since)
    priority = case.get("priority") or "medium"
    try:
        terms = tuple(orjson.loads(case.get("keywords") or "[]"))
    except orjson.JSONDecodeError:
        terms = ()
    cid = case.get("id", "")
    if stage == "breach":
        message = (f"case {cid} ({priority}, {case.get('channel')}) missed its {sla_ms / 60_000:g}-minute "
                   f"response SLA; waiting {waited / 60_000:.1f} min, agent {case.get('agent') or 'none'}")
    else:
        message = (f"case {cid} ({priority}, {case.get('channel')}) response due in "
                   f"{max(0, due - now_ms) / 60_000:.1f} min at {iso_ms(due)}, agent {case.get('agent') or 'none'}")
    return {
        "id": f"sla_breach:{cid}:{due}:{stage}",
        "kind": "sla_breach",
        "brand": case.get("brand", ""),
        "channel": case.get("channel"),
        "topic": case.get("queue"),
        "window_start": iso_ms(since),
        "observed": round(waited / 60_000, 3),
        "expected": round(sla_ms / 60_000, 3),
        "score": round(min(1.0, waited / sla_ms), 4),
        "severity": _SEVERITY.get((stage, priority), "medium"),
        "sample_ids": [m for m in (case.get("mention_id"),) if m],
        "top_terms": [str(t) for t in terms][:10],
        "message": message,
    }
