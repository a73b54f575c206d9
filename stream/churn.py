"""Churn risk in the flow: per-customer features from every mention and reply, one online model, and the
reasons of each risk; plus the read functions the Customers page and the CLI use.

The model must see every customer's outcomes, so the state lives under one key (one worker); the
per-mention work is small. Mentions without a known customer are scored under their handle
(``channel:author``) until identity resolution links them to a customer. A CRM customer's tenure, value
and tier are read once, the first time the customer is seen, through the injected ``profile`` lookup, which
takes every new customer of a batch at once (one pipelined read, not one round trip per mention).

The sink keeps the newest risk per customer in ``{prefix}churn`` (sorted set) and its top reasons in
``{prefix}churn:reasons`` (hash customer -> JSON list), both capped at the same number of customers.

>>> from stream.schema import Enriched, Mention, parse_ts
>>> logic = ChurnLogic(resume_state=None)
>>> m = Mention(id="t:1", channel="twitter", brand="acme", author="bob", ts=parse_ts("2024-01-01T10:00:00Z"),
...             text="cancelling my contract, switching to globex")
>>> ((e, reasons),), _ = logic.on_batch([Enriched(mention=m, intent="comment", sentiment="negative",
...                                             sentiment_score=-0.8)])
>>> 0.0 < e.churn_risk <= 1.0, reasons  # nothing learned yet: the same risk for all, no reasons
(True, [])
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from bytewax.operators import StatefulBatchLogic

from models import ChurnFeatures, ChurnModel
from stream.keys import Keys
from stream.schema import ChurnOutcome, Enriched

__all__ = ["ChurnLogic", "ProfileLookup", "churn_candidates", "churn_reasons", "customer_key"]

log = logging.getLogger(__name__)

#: Reads CRM customer records (string fields: ``tenure_months`` or ``tenure_days``, ``value``, ``tier``), one
#: per id asked, ``None`` for an unknown id.
ProfileLookup = Callable[[Sequence[str]], list[dict[str, Any] | None]]

#: Reasons kept per customer (the features that push the risk up most).
REASONS_PER_CUSTOMER = 3
_MAX_LOOKED_UP = 200_000


def customer_key(e: Enriched) -> str:
    """The customer a mention counts for: the CRM id, else the handle on its channel."""
    m = e.mention
    return e.customer_id or f"{m.channel}:{m.author}"


def _crm_event(customer_id: str, record: dict[str, Any], ts: Any) -> dict[str, Any]:
    """A CRM record as ChurnFeatures takes it (the store keeps numbers as text)."""
    event: dict[str, Any] = {"type": "crm", "customer_id": customer_id, "ts": ts}
    for name in ("tenure_days", "tenure_months", "value"):
        raw = record.get(name)
        try:
            number = float(raw) if raw not in (None, "") else None
        except (TypeError, ValueError):
            number = None
        if number is not None and math.isfinite(number):
            event[name] = number
    tier = record.get("tier")
    if isinstance(tier, str) and tier:
        event["tier"] = tier
    return event


class ChurnLogic(StatefulBatchLogic[Enriched | ChurnOutcome, Any, dict[str, Any]]):
    """Items: enriched mentions (passed on as ``(Enriched with churn_risk, reasons)``) and churn outcomes
    (learned; nothing passed on). ``reasons`` is ``None`` for the brand's own posts, else a list of
    ``{"feature", "value", "contribution", "text"}``, strongest first.
    """

    def __init__(self, resume_state: dict[str, Any] | None, profile: ProfileLookup | None = None,
                 n_reasons: int = REASONS_PER_CUSTOMER) -> None:
        state = resume_state or {}
        features, model, looked_up = state.get("features"), state.get("model"), state.get("looked_up")
        self.features: ChurnFeatures = features if features is not None else ChurnFeatures()
        self.model: ChurnModel = model if model is not None else ChurnModel()
        #: CRM ids whose record was looked up already (found or not), oldest first.
        self.looked_up: OrderedDict[str, None] = looked_up if looked_up is not None else OrderedDict()
        self.profile = profile
        self.n_reasons = n_reasons

    def _prefetch(self, values: Sequence[Enriched | ChurnOutcome]) -> dict[str, dict[str, Any] | None]:
        """The CRM records of the batch's customers not looked up yet, read in one call."""
        if self.profile is None:
            return {}
        wanted: dict[str, None] = {}
        for value in values:
            if isinstance(value, ChurnOutcome):
                cid = value.customer_id
            elif value.customer_id and not value.mention.from_brand:
                cid = value.customer_id
            else:
                continue
            if cid not in self.looked_up:
                wanted[cid] = None
        if not wanted:
            return {}
        ids = list(wanted)
        try:
            records = self.profile(ids)
        except Exception as exc:  # noqa: BLE001 - a CRM hiccup must not stop scoring; tenure stays unknown
            log.warning("churn: could not read the CRM records of %d customers: %s", len(ids), exc)
            records = [None] * len(ids)
        return dict(zip(ids, records, strict=True))

    def _ensure_profile(self, customer_id: str, ts: Any, fetched: dict[str, dict[str, Any] | None]) -> None:
        if self.profile is None or customer_id in self.looked_up:
            return
        self.looked_up[customer_id] = None
        while len(self.looked_up) > _MAX_LOOKED_UP:
            self.looked_up.popitem(last=False)
        record = fetched.get(customer_id)
        if record:
            self.features.learn_one(_crm_event(customer_id, record, ts))

    def on_batch(self, values: list[Enriched | ChurnOutcome]) -> tuple[list[Any], bool]:
        fetched = self._prefetch(values)
        out: list[Any] = []
        for value in values:
            out.extend(self._on_item(value, fetched))
        return out, StatefulBatchLogic.RETAIN

    def _on_item(self, value: Enriched | ChurnOutcome, fetched: dict[str, dict[str, Any] | None]) -> list[Any]:
        if isinstance(value, ChurnOutcome):
            self._ensure_profile(value.customer_id, value.ts, fetched)
            x = self.features.transform_one({"customer_id": value.customer_id, "ts": value.ts})
            self.model.learn_one(x, value.churned)
            return []
        m = value.mention
        cid = customer_key(value)
        if value.customer_id and not m.from_brand:
            self._ensure_profile(value.customer_id, m.ts, fetched)
        event = {"customer_id": cid, "ts": m.ts, "id": m.id, "sentiment": value.sentiment,
                 "sentiment_score": value.sentiment_score, "intent": value.intent, "text": m.text,
                 "case_id": value.case_id, "from_brand": m.from_brand, "in_reply_to": m.in_reply_to}
        self.features.learn_one(event)
        if m.from_brand:
            return [(value, None)]
        x = self.features.transform_one({"customer_id": cid, "ts": m.ts})
        risk = float(self.model.predict_proba_one(x).get(True, 0.0))
        reasons = self.model.reasons(x, n=self.n_reasons)
        return [(dataclasses.replace(value, churn_risk=round(risk, 4)), reasons)]

    def snapshot(self) -> dict[str, Any]:
        return {"features": self.features, "model": self.model, "looked_up": self.looked_up}


# -- reads for the Customers page and the CLI -------------------------------------------------------------


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _reasons_of(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    try:
        found = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []
    return [r for r in found if isinstance(r, dict)] if isinstance(found, list) else []


def churn_reasons(client: Any, keys: Keys, customer_id: str) -> list[dict[str, Any]]:
    """The top reasons of a customer's current churn risk (``feature``, ``value``, ``contribution``,
    ``text``), strongest first; ``[]`` when the customer has none (or no risk yet)."""
    return _reasons_of(client.hget(keys.churn_reasons, customer_id))


def churn_candidates(client: Any, keys: Keys, n: int = 20) -> list[dict[str, Any]]:
    """The ``n`` customers most at risk: ``customer_id``, ``risk`` and ``reasons``, highest risk first."""
    top = client.zrevrange(keys.churn, 0, max(0, n) - 1, withscores=True) if n > 0 else []
    if not top:
        return []
    ids = [_s(member) for member, _ in top]
    raw = client.hmget(keys.churn_reasons, ids)
    return [{"customer_id": cid, "risk": round(float(score), 4), "reasons": _reasons_of(r)}
            for cid, (_, score), r in zip(ids, top, raw, strict=True)]
