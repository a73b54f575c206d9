"""Churn risk in the flow: per-customer features from every mention and reply, one online model.

The model must see every customer's outcomes, so the state lives under one key (one worker); the
per-mention work is small. Mentions without a known customer are scored under their handle
(``channel:author``) until identity resolution links them to a customer.

>>> from stream.schema import Enriched, Mention, parse_ts
>>> logic = ChurnLogic(resume_state=None)
>>> m = Mention(id="t:1", channel="twitter", brand="acme", author="bob", ts=parse_ts(0),
...             text="cancelling my contract, switching to globex")
>>> (e,), _ = logic.on_item(Enriched(mention=m, intent="comment", sentiment="negative", sentiment_score=-0.8))
>>> 0.0 < e.churn_risk <= 1.0
True
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bytewax.operators import StatefulLogic

from models import ChurnFeatures, ChurnModel
from stream.schema import ChurnOutcome, Enriched

__all__ = ["ChurnLogic", "customer_key"]


def customer_key(e: Enriched) -> str:
    """The customer a mention counts for: the CRM id, else the handle on its channel."""
    m = e.mention
    return e.customer_id or f"{m.channel}:{m.author}"


class ChurnLogic(StatefulLogic[Enriched | ChurnOutcome, Any, dict[str, Any]]):
    """Items: enriched mentions (scored and passed on with ``churn_risk``) and churn outcomes (learned)."""

    def __init__(self, resume_state: dict[str, Any] | None) -> None:
        state = resume_state or {"features": ChurnFeatures(), "model": ChurnModel()}
        self.features: ChurnFeatures = state["features"]
        self.model: ChurnModel = state["model"]

    def on_item(self, value: Enriched | ChurnOutcome) -> tuple[list[Any], bool]:
        if isinstance(value, ChurnOutcome):
            x = self.features.transform_one({"customer_id": value.customer_id, "ts": value.ts})
            self.model.learn_one(x, value.churned)
            return [], StatefulLogic.RETAIN
        m = value.mention
        event = {"customer_id": customer_key(value), "ts": m.ts, "id": m.id, "sentiment": value.sentiment,
                 "intent": value.intent, "text": m.text, "from_brand": m.from_brand, "in_reply_to": m.in_reply_to}
        self.features.learn_one(event)
        if m.from_brand:
            return [value], StatefulLogic.RETAIN
        x = self.features.transform_one({"customer_id": event["customer_id"], "ts": m.ts})
        risk = float(self.model.predict_proba_one(x).get(True, 0.0))
        return [dataclasses.replace(value, churn_risk=round(risk, 4))], StatefulLogic.RETAIN

    def snapshot(self) -> dict[str, Any]:
        return {"features": self.features, "model": self.model}
