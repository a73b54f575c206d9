"""Churn risk per customer: incremental features from what the customer posts and how the brand answers,
and an online logistic model that learns from churn outcomes as they arrive.

:class:`ChurnFeatures` is fed events (the flow's enriched mentions, the brand's replies, CRM records)
and describes one customer as a small dict of numbers; :class:`ChurnModel` turns that dict into
``{True: p, False: 1 - p}`` and learns from ``(features, churned)`` when an outcome is known.
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from river import base

from models.spikes import to_epoch_seconds

__all__ = ["CHURN_INTENT", "FEATURE_NAMES", "PRIOR_WEIGHTS", "ChurnFeatures", "ChurnModel"]

logger = logging.getLogger(__name__)

#: Phrases that announce leaving: cancelling, switching to a competitor, closing the account.
CHURN_INTENT = re.compile(
    r"\b(cancel+(?:ing|ed|ation)?|switch(?:ing|ed)?\s+(?:to|over)|leav(?:e|ing)\s+(?:you|for|\w+\s+for)|"
    r"(?:i'?m|am|we'?re)\s+leaving|moving\s+to|clos(?:e|ing)\s+my\s+account|terminat(?:e|ing)\s+my|"
    r"unsubscrib\w*|port(?:ing)?\s+my\s+number|tak(?:e|ing)\s+my\s+business|done\s+with\s+(?:you|this)|"
    r"never\s+(?:again|using|flying|buying)|last\s+straw|going\s+elsewhere|find\s+another)\b",
    re.IGNORECASE,
)

#: The features :meth:`ChurnFeatures.transform_one` returns (tier ones only when the tier is known).
FEATURE_NAMES = (
    "mentions",
    "negative",
    "neg_share",
    "churn_intent",
    "queries",
    "unanswered",
    "slow_replies",
    "response_h",
    "days_quiet",
    "tenure_years",
    "new_customer",
    "log_value",
    "known",
)

#: Where :class:`ChurnModel` starts before any outcome: what a service manager would guess.
PRIOR_WEIGHTS: dict[str, float] = {
    "_bias": -3.0,
    "negative": 0.5,
    "neg_share": 0.8,
    "churn_intent": 1.0,
    "unanswered": 0.8,
    "slow_replies": 0.4,
    "response_h": 0.2,
    "new_customer": 0.6,
    "tenure_years": -0.1,
    "tier_gold": -0.5,
    "tier_bronze": 0.2,
}

_DAY_S = 86400.0
_REPLY_TYPES = frozenset({"reply", "response"})
_CRM_TYPES = frozenset({"crm", "customer"})


@dataclass
class _Customer:
    """What ChurnFeatures remembers about one customer; counts decay with ``halflife_days``."""

    t: float = 0.0  # event time the decayed counts refer to
    mentions: float = 0.0
    negative: float = 0.0
    intent: float = 0.0
    queries: float = 0.0
    unanswered: float = 0.0
    slow: float = 0.0
    frt_sum: float = 0.0
    frt_n: float = 0.0
    last_mention: float | None = None
    tenure_days: float | None = None
    tenure_at: float | None = None
    value: float | None = None
    tier: str | None = None
    pending: OrderedDict[str, float] = field(default_factory=OrderedDict)  # query id -> its time

    def decay_to(self, t: float, halflife_s: float) -> None:
        if t <= self.t:
            return
        f = 0.5 ** ((t - self.t) / halflife_s)
        self.mentions *= f
        self.negative *= f
        self.intent *= f
        self.queries *= f
        self.unanswered *= f
        self.slow *= f
        self.frt_sum *= f
        self.frt_n *= f
        self.t = t


def _event_time(x: dict[str, Any]) -> float | None:
    for name in ("ts", "window_start", "at"):
        if name in x:
            return to_epoch_seconds(x[name])
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


class ChurnFeatures(base.Transformer):
    """Incremental per-customer churn features, in event time.

    ``learn_one(event)`` takes one of:

    * a customer's mention (an ``Enriched`` dict works as it is): ``customer_id``, ``ts``, ``id``,
      ``sentiment``, ``intent`` (``query``/``comment``) and ``text``, scanned for churn intent
      ("cancel", "switching to", "leaving", ...) unless a boolean ``churn_intent`` is given;
    * a brand reply: ``from_brand`` true (or ``type`` ``reply``) with ``in_reply_to`` the mention's id and
      ``ts``; the customer is found from the query it answers (or given as ``customer_id``); a
      ``first_response_ms`` field overrides the delay;
    * an unanswered query flagged by the SLA timer: ``type`` ``unanswered``, ``customer_id``, ``ts``;
    * a CRM record: ``type`` ``crm``, ``customer_id``, and any of ``tenure_days`` (at ``ts``, or ``since``
      a date), ``value``, ``tier``.

    Events without a customer, or with an unreadable time, are ignored. A query without a reply after
    ``sla_h`` hours counts as unanswered (a late reply still counts as a response time); replies after
    ``slow_h`` hours count as slow. Counts decay with a half-life of ``halflife_days`` so that last
    month's anger weighs more than last year's.

    ``transform_one({"customer_id": ..., "ts": ...})`` returns the features at ``ts`` (default: the
    customer's last event): counts on a log scale (``mentions``, ``negative``, ``churn_intent``,
    ``queries``, ``unanswered``, ``slow_replies``), ``neg_share``, ``response_h`` (mean log hours to the
    first reply), ``days_quiet`` (log days since the last mention), ``tenure_years``, ``new_customer``
    (under 180 days), ``log_value``, ``known`` (a CRM record was seen) and ``tier_<tier>``.

    Parameters
    ----------
    halflife_days
        Half-life of every count, in days of event time.
    sla_h
        Hours after which an unanswered query counts as unanswered.
    slow_h
        Hours after which a first reply counts as slow.
    max_customers
        Customers kept; the least recently seen is forgotten beyond this.
    max_pending
        Open queries remembered per customer; older ones count as unanswered.

    Examples
    --------
    >>> feats = ChurnFeatures()
    >>> feats.learn_one({"type": "crm", "customer_id": "C1", "tenure_days": 90, "value": 300,
    ...                  "ts": "2024-03-01T00:00:00Z"})
    >>> feats.learn_one({"id": "t:1", "customer_id": "C1", "ts": "2024-03-02T10:00:00Z",
    ...                  "sentiment": "negative", "intent": "query", "text": "3rd outage this week?!"})
    >>> feats.learn_one({"id": "t:2", "customer_id": "C1", "ts": "2024-03-02T11:00:00Z",
    ...                  "sentiment": "negative", "intent": "comment",
    ...                  "text": "that's it, I'm switching to Skyline"})
    >>> feats.learn_one({"id": "t:3", "from_brand": True, "in_reply_to": "t:1", "ts": "2024-03-02T15:00:00Z"})
    >>> x = feats.transform_one({"customer_id": "C1", "ts": "2024-03-03T00:00:00Z"})
    >>> round(x["neg_share"], 2), round(x["churn_intent"], 2), round(x["slow_replies"], 2), x["new_customer"]
    (1.0, 0.69, 0.69, 1.0)
    >>> feats.transform_one({"customer_id": "nobody"})["known"]
    0.0
    """

    def __init__(
        self,
        halflife_days: float = 30.0,
        sla_h: float = 24.0,
        slow_h: float = 2.0,
        max_customers: int = 200_000,
        max_pending: int = 20,
    ) -> None:
        self.halflife_days = halflife_days
        self.sla_h = sla_h
        self.slow_h = slow_h
        self.max_customers = max_customers
        self.max_pending = max_pending
        self._customers: OrderedDict[str, _Customer] = OrderedDict()
        self._owner: OrderedDict[str, str] = OrderedDict()  # open query id -> customer id

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {}
        yield {"halflife_days": 7.0, "sla_h": 4.0, "max_customers": 100}

    def _unit_test_dataset(self) -> list[tuple[dict[str, Any], None]]:
        """A seeded stream of CRM records, mentions and replies of 40 customers (for the generic checks)."""
        rng = random.Random(7)
        t0 = 1_709_510_400.0  # 2024-03-04
        rows: list[tuple[dict[str, Any], None]] = []
        for i in range(40):
            rows.append(({"type": "crm", "customer_id": f"C{i}", "tenure_days": rng.randrange(20, 2000),
                          "value": round(rng.uniform(50, 3000), 2), "tier": rng.choice(("gold", "silver", "bronze")),
                          "ts": t0}, None))
        for k in range(160):
            t = t0 + k * 900.0
            cid = f"C{rng.randrange(40)}"
            if rng.random() < 0.3 and k > 0:
                rows.append(({"id": f"r{k}", "from_brand": True, "in_reply_to": f"m{k - 1}", "ts": t}, None))
                continue
            rows.append(({"id": f"m{k}", "customer_id": cid, "ts": t, "intent": rng.choice(("query", "comment")),
                          "sentiment": rng.choice(("negative", "neutral", "positive")),
                          "text": rng.choice(("where is my refund", "cancel my plan now", "love the app",
                                              "switching to another provider", "ok"))}, None))
        return rows

    def _halflife_s(self) -> float:
        return max(self.halflife_days, 1e-6) * _DAY_S

    def _get(self, cid: str) -> _Customer:
        c = self._customers.get(cid)
        if c is None:
            c = _Customer()
            self._customers[cid] = c
            while len(self._customers) > max(1, self.max_customers):
                _, old = self._customers.popitem(last=False)
                for qid in old.pending:
                    self._owner.pop(qid, None)
        else:
            self._customers.move_to_end(cid)
        return c

    def _expire(self, c: _Customer, t: float) -> None:
        """Move queries older than the SLA into ``unanswered``, weighted as of their expiry."""
        sla = self.sla_h * 3600.0
        hl = self._halflife_s()
        while c.pending:
            qid, qt = next(iter(c.pending.items()))
            if qt + sla > t:
                break
            del c.pending[qid]
            self._owner.pop(qid, None)
            c.unanswered += 0.5 ** (max(0.0, t - (qt + sla)) / hl)

    # -- River protocol ----------------------------------------------------------------------------------

    def learn_one(self, x: dict[Any, Any]) -> None:
        if not isinstance(x, dict):
            return
        try:
            self._learn(x)
        except (TypeError, ValueError, AttributeError) as exc:  # a malformed event never stops the flow
            logger.debug("churn features skipped an event: %s", exc)

    def _learn(self, x: dict[str, Any]) -> None:
        kind = x.get("type")
        t = _event_time(x)
        if kind == "churn":
            return
        if kind in _CRM_TYPES:
            self._learn_crm(x, t)
            return
        if t is None:
            return
        if kind in _REPLY_TYPES or x.get("from_brand") is True:
            self._learn_reply(x, t)
            return
        cid = x.get("customer_id")
        if not isinstance(cid, str) or not cid:
            return
        c = self._get(cid)
        hl = self._halflife_s()
        c.decay_to(t, hl)
        self._expire(c, t)
        if kind == "unanswered":
            c.unanswered += 1.0
            qid = x.get("mention_id") or x.get("id")
            if isinstance(qid, str) and qid in c.pending:
                del c.pending[qid]
                self._owner.pop(qid, None)
            return
        w = 0.5 ** (max(0.0, c.t - t) / hl)  # an out-of-order event weighs as of its own time
        c.mentions += w
        if x.get("sentiment") == "negative":
            c.negative += w
        intent = x.get("churn_intent")
        if not isinstance(intent, bool):
            text = x.get("text")
            intent = isinstance(text, str) and CHURN_INTENT.search(text[:2000]) is not None
        if intent:
            c.intent += w
        if x.get("intent") == "query":
            c.queries += w
            qid = x.get("id") or x.get("mention_id")
            if isinstance(qid, str) and qid:
                c.pending[qid] = t
                self._owner[qid] = cid
                while len(c.pending) > max(1, self.max_pending):
                    old_id, old_t = c.pending.popitem(last=False)
                    self._owner.pop(old_id, None)
                    c.unanswered += 0.5 ** (max(0.0, c.t - old_t) / hl)
                while len(self._owner) > 4 * max(1, self.max_customers):
                    self._owner.popitem(last=False)
        c.last_mention = t if c.last_mention is None else max(c.last_mention, t)

    def _learn_reply(self, x: dict[str, Any], t: float) -> None:
        qid = x.get("in_reply_to")
        cid = x.get("customer_id") if not x.get("from_brand") else None
        if isinstance(qid, str):
            cid = self._owner.get(qid, cid)
        if not isinstance(cid, str) or cid not in self._customers:
            return
        c = self._get(cid)
        hl = self._halflife_s()
        c.decay_to(t, hl)
        asked = c.pending.pop(qid, None) if isinstance(qid, str) else None
        if isinstance(qid, str):
            self._owner.pop(qid, None)
        delay_ms = _number(x.get("first_response_ms"))
        if delay_ms is not None:
            delay_h = max(0.0, delay_ms / 3_600_000.0)
        elif asked is not None:
            delay_h = max(0.0, (t - asked) / 3600.0)
        else:
            return  # a reply to something we do not track (a comment, a second reply)
        self._expire(c, t)
        if delay_h > self.sla_h:
            c.unanswered += 1.0
        if delay_h > self.slow_h:
            c.slow += 1.0
        c.frt_sum += math.log1p(delay_h)
        c.frt_n += 1.0

    def _learn_crm(self, x: dict[str, Any], t: float | None) -> None:
        cid = x.get("customer_id")
        if not isinstance(cid, str) or not cid:
            return
        c = self._get(cid)
        tenure = _number(x.get("tenure_days"))
        since = to_epoch_seconds(x["since"]) if "since" in x else None
        if since is not None:
            ref = t if t is not None else (c.t or since)
            c.tenure_days, c.tenure_at = max(0.0, (ref - since) / _DAY_S), ref
        elif tenure is not None:
            c.tenure_days, c.tenure_at = max(0.0, tenure), t
        value = _number(x.get("value"))
        if value is not None:
            c.value = max(0.0, value)
        tier = x.get("tier")
        if isinstance(tier, str) and tier:
            c.tier = tier.lower()[:16]
        if t is not None and c.t == 0.0:
            c.t = t

    def transform_one(self, x: dict[Any, Any]) -> dict[Any, Any]:
        cid = x.get("customer_id") if isinstance(x, dict) else None
        c = self._customers.get(cid) if isinstance(cid, str) else None
        if c is None:
            return {name: 0.0 for name in FEATURE_NAMES}
        t = _event_time(x) if isinstance(x, dict) else None
        if t is None:
            t = c.t
        f = 0.5 ** (max(0.0, t - c.t) / self._halflife_s())
        sla = self.sla_h * 3600.0
        hl = self._halflife_s()
        late = sum(0.5 ** (max(0.0, t - (qt + sla)) / hl) for qt in c.pending.values() if qt + sla <= t)
        mentions = c.mentions * f
        tenure = None
        if c.tenure_days is not None:
            tenure = c.tenure_days + (max(0.0, t - c.tenure_at) / _DAY_S if c.tenure_at is not None else 0.0)
        out = {
            "mentions": math.log1p(mentions),
            "negative": math.log1p(c.negative * f),
            "neg_share": (c.negative / c.mentions) if c.mentions > 0 else 0.0,
            "churn_intent": math.log1p(c.intent * f),
            "queries": math.log1p(c.queries * f),
            "unanswered": math.log1p(c.unanswered * f + late),
            "slow_replies": math.log1p(c.slow * f),
            "response_h": c.frt_sum / c.frt_n if c.frt_n > 0 else 0.0,
            "days_quiet": math.log1p(max(0.0, t - c.last_mention) / _DAY_S) if c.last_mention else 0.0,
            "tenure_years": min(tenure / 365.0, 20.0) if tenure is not None else 0.0,
            "new_customer": 1.0 if tenure is not None and tenure < 180 else 0.0,
            "log_value": math.log10(1.0 + c.value) if c.value is not None else 0.0,
            "known": 1.0 if tenure is not None or c.value is not None or c.tier is not None else 0.0,
        }
        if c.tier:
            out[f"tier_{c.tier}"] = 1.0
        return out

    def forget(self, customer_id: str) -> None:
        """Drop what is known about a customer (who churned, or asked to be forgotten)."""
        c = self._customers.pop(customer_id, None)
        if c is not None:
            for qid in c.pending:
                self._owner.pop(qid, None)

    def __len__(self) -> int:
        return len(self._customers)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-min(z, 500.0)))
    e = math.exp(max(z, -500.0))
    return e / (1.0 + e)


def _label(y: Any) -> float | None:
    """1.0 for churned, 0.0 for retained, None for anything that is not a yes/no."""
    if isinstance(y, str):
        return {"true": 1.0, "1": 1.0, "yes": 1.0, "false": 0.0, "0": 0.0, "no": 0.0}.get(y.strip().lower())
    if isinstance(y, bool):
        return float(y)
    try:
        v = float(y)  # ints and numpy booleans
    except (TypeError, ValueError):
        return None
    return v if v in (0.0, 1.0) else None


class ChurnModel(base.Classifier):
    """Online logistic regression for churn, starting from a prior and learning from outcomes.

    Before any outcome it ranks customers with :data:`PRIOR_WEIGHTS` (negative mentions, churn intent,
    unanswered and slow queries, short tenure, tier); each ``learn_one(x, churned)`` takes one AdaGrad
    step on the log loss, with an L2 pull towards the prior, so a few outcomes cannot undo common sense
    and many outcomes can. Feature values that are not finite numbers are ignored.

    Parameters
    ----------
    learning_rate
        AdaGrad base step.
    l2
        Strength of the pull of each weight towards its prior.
    use_prior
        Start from :data:`PRIOR_WEIGHTS` (else from zero weights and a zero intercept).
    clip
        Feature values are clipped to [-clip, clip] (the features are on log scales; this guards
        against a stray huge value).

    Examples
    --------
    >>> import random
    >>> rng = random.Random(1)
    >>> model = ChurnModel()
    >>> calm = {"negative": 0.0, "neg_share": 0.0, "unanswered": 0.0, "churn_intent": 0.0}
    >>> angry = {"negative": 1.6, "neg_share": 0.9, "unanswered": 1.1, "churn_intent": 0.7}
    >>> model.predict_proba_one(angry)[True] > model.predict_proba_one(calm)[True]
    True
    >>> for _ in range(500):
    ...     x = {k: v * rng.random() for k, v in angry.items()}
    ...     model.learn_one(x, rng.random() < 0.2 + 0.6 * x["neg_share"])
    >>> p = model.predict_proba_one(angry)
    >>> round(p[True] + p[False], 6), p[True] > 0.5
    (1.0, True)
    """

    def __init__(self, learning_rate: float = 0.05, l2: float = 0.001, use_prior: bool = True,
                 clip: float = 10.0) -> None:
        self.learning_rate = learning_rate
        self.l2 = l2
        self.use_prior = use_prior
        self.clip = clip
        self._weights: dict[str, float] = {}
        self._g2: dict[str, float] = {}
        self.n_outcomes = 0
        self.n_churned = 0

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {}
        yield {"learning_rate": 0.1, "use_prior": False}

    @property
    def _multiclass(self) -> bool:
        return False

    def _prior(self, name: str) -> float:
        return PRIOR_WEIGHTS.get(name, 0.0) if self.use_prior else 0.0

    def _weight(self, name: str) -> float:
        w = self._weights.get(name)
        return self._prior(name) if w is None else w

    def _values(self, x: dict[str, Any]) -> Iterator[tuple[str, float]]:
        if not isinstance(x, dict):
            return
        lim = abs(self.clip)
        for k, v in x.items():
            if isinstance(v, bool):
                v = float(v)
            elif not isinstance(v, int | float):
                continue
            v = float(v)
            if not math.isfinite(v) or v == 0.0:
                continue
            yield str(k), max(-lim, min(lim, v))

    def _logit(self, x: dict[str, Any]) -> float:
        return self._weight("_bias") + sum(self._weight(k) * v for k, v in self._values(x))

    def predict_proba_one(self, x: dict[Any, Any], **kwargs: Any) -> dict[base.typing.ClfTarget, float]:
        p = _sigmoid(self._logit(x))
        return {True: p, False: 1.0 - p}

    def predict_one(self, x: dict[Any, Any], **kwargs: Any) -> bool:
        return self.predict_proba_one(x)[True] >= 0.5

    def learn_one(self, x: dict[Any, Any], y: Any) -> None:
        target = _label(y)
        if target is None:
            logger.debug("churn model ignored label %r", y)
            return
        values = list(self._values(x))
        err = _sigmoid(self._logit(x)) - target
        for k, v in [("_bias", 1.0), *values]:
            w = self._weight(k)
            g = err * v + self.l2 * (w - self._prior(k))
            g2 = self._g2.get(k, 0.0) + g * g
            self._g2[k] = g2
            self._weights[k] = w - self.learning_rate * g / (math.sqrt(g2) + 1e-8)
        self.n_outcomes += 1
        self.n_churned += int(target)

    @property
    def weights(self) -> dict[str, float]:
        """Current weights (the intercept is ``_bias``), learned or prior."""
        names = set(self._weights) | ({k for k in PRIOR_WEIGHTS} if self.use_prior else set())
        return {k: self._weight(k) for k in sorted(names)}
