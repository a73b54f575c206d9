"""Customer 360: everything known about one customer (or prospect) in one plain dict.

CRM fields, linked handles, recent mentions with sentiment, open and past cases, churn risk, influence
(followers where the source gives them, else mention reach), tags and merged prospect profiles.
A prospect id that was merged shows the customer it was merged into.

>>> customer_360.__name__
'customer_360'
"""

from __future__ import annotations

from typing import Any

from crm.cases import case_from_hash
from crm.customers import customer_from_hash
from crm.errors import CrmError
from crm.store import CrmStore

__all__ = ["customer_360"]

_CASE_VIEW = ("id", "status", "priority", "queue", "channel", "agent", "created_ms", "first_response_ms",
              "resolved_ms", "resolution_ms", "mentions", "text", "sla_breaches")


def customer_360(store: CrmStore, customer_id: str, *, mentions: int = 20, cases: int = 50) -> dict[str, Any]:
    """The 360 view; raises :class:`CrmError` for an unknown id."""
    raw = store.get_customer(customer_id)
    if raw is None:
        raise CrmError(f"no customer or prospect {customer_id!r}")
    hops = 0
    while raw.get("merged_into") and hops < 8:
        customer_id = raw["merged_into"]
        raw = store.get_customer(customer_id) or {}
        hops += 1
    rec = customer_from_hash(raw)
    case_ids = store.customer_case_ids(customer_id, cases)
    open_cases: list[dict[str, Any]] = []
    past_cases: list[dict[str, Any]] = []
    for h in store.get_cases(case_ids):
        if not h:
            continue
        c = case_from_hash(h)
        view = {k: c.get(k) for k in _CASE_VIEW}
        (past_cases if c.get("status") in ("resolved", "expired") else open_cases).append(view)
    return {
        "id": customer_id,
        "kind": rec.get("kind", "customer"),
        "crm": {k: rec.get(k) for k in ("name", "email", "phone", "tier", "value", "tenure_months", "products")},
        "handles": store.customer_handles(customer_id),
        "recent_mentions": store.customer_history(customer_id, mentions),
        "open_cases": open_cases,
        "past_cases": past_cases,
        "churn_risk": store.churn_risk(customer_id) or rec.get("churn_risk") or 0.0,
        "influence": {"score": rec.get("influence", 0.0), "followers": rec.get("followers"),
                      "reach": rec.get("reach") or 0},
        "activity": {k: rec.get(k) or 0 for k in ("mentions", "negative", "neutral", "positive", "queries")}
        | {"mean_sentiment": rec.get("mean_sentiment", 0.0), "last_seen_ms": rec.get("last_seen_ms")},
        "tags": store.customer_tags(customer_id),
        "merged_prospects": store.customer_merged(customer_id),
    }
