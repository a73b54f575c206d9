"""Churn risk per customer: incremental features from what the customer posts and how the brand answers,
and an online logistic model that learns from churn outcomes as they arrive, with the reasons of each risk.

:class:`ChurnFeatures` is fed events (the flow's enriched mentions, the brand's replies, CRM records) and
describes one customer as a small dict of numbers; :class:`ChurnModel` turns that dict into
``{True: p, False: 1 - p}``, learns from ``(features, churned)`` when an outcome is known, and explains a
risk as feature contributions (:meth:`ChurnModel.reasons`). The model starts neutral: every weight is
zero until outcomes teach it, so what it knows comes from the outcomes it has seen, not from a guess.

Two baselines score the same features without learning: :func:`negative_share_score` (the share of a
customer's mentions that are negative) and :func:`rfm_complaint_score` (recency and frequency of
complaints, binned as RFM analysts do).
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from river import base

from models.spikes import to_epoch_seconds

__all__ = [
    "CHURN_INTENT",
    "FEATURE_NAMES",
    "REASON_TEXT",
    "ChurnFeatures",
    "ChurnModel",
    "negative_share_score",
    "rfm_complaint_score",
]

logger = logging.getLogger(__name__)

#: Phrases that announce leaving: cancelling, switching to a competitor, closing the account.
CHURN_INTENT = re.compile(
    r"\b(cancel+(?:ing|ed|ation)?|switch(?:ing|ed)?\s+(?:to|over)|leav(?:e|ing)\s+(?:you|for|\w+\s+for)|"
    r"(?:i'?m|am|we'?re)\s+leaving|moving\s+to|clos(?:e|ing)\s+my\s+account|terminat(?:e|ing)\s+my|"
    r"unsubscrib\w*|port(?:ing)?\s+my\s+number|tak(?:e|ing)\s+my\s+business|done\s+with\s+(?:you|this)|"
    r"never\s+(?:again|using|flying|buying)|last\s+straw|going\s+elsewhere|find\s+another)\b",
    re.IGNORECASE,
)

#: The features :meth:`ChurnFeatures.transform_one` returns (``tier_<tier>`` ones only when the tier is known).
FEATURE_NAMES = (
    "mentions",
    "negative",
    "positive",
    "neg_share",
    "sentiment_mean",
    "churn_intent",
    "queries",
    "answered_share",
    "unanswered",
    "slow_replies",
    "response_h",
    "cases",
    "days_quiet",
    "days_since_complaint",
    "complaints_90d",
    "tenure_years",
    "new_customer",
    "log_value",
    "known",
)

#: How a reason reads on the Customers page (the feature's value pushing the risk up).
REASON_TEXT: dict[str, str] = {
    "mentions": "posts a lot about us",
    "negative": "many negative mentions",
    "positive": "few positive mentions",
    "neg_share": "most of their mentions are negative",
    "sentiment_mean": "sentiment of their mentions",
    "churn_intent": "talks about cancelling or switching",
    "queries": "asked many questions",
    "answered_share": "share of their questions we answered",
    "unanswered": "questions left unanswered",
    "slow_replies": "slow replies to their questions",
    "response_h": "long waits for a first reply",
    "cases": "many service cases",
    "days_quiet": "time since they last posted",
    "days_since_complaint": "time since their last complaint",
    "complaints_90d": "complaints in the last 90 days",
    "tenure_years": "tenure",
    "new_customer": "new customer (under 6 months)",
    "log_value": "customer value",
    "known": "CRM record",
}

_DAY_S = 86400.0
_NEVER_DAYS = 365.0  # "days since the last complaint" of a customer who never complained
_RECENT_COMPLAINTS_S = 90 * _DAY_S
_MAX_COMPLAINT_TIMES = 64
_MAX_CASES = 16
_REPLY_TYPES = frozenset({"reply", "response"})
_CRM_TYPES = frozenset({"crm", "customer"})
_MIN_VARIANCE = 1e-6  # below this spread (features are on unit-ish scales) a feature is taken as constant
_SENTIMENT_VALUE = {"negative": -1.0, "neutral": 0.0, "positive": 1.0}


@dataclass
class _Customer:
    """What ChurnFeatures remembers about one customer; counts decay with ``halflife_days``."""

    t: float = 0.0  # event time the decayed counts refer to
    mentions: float = 0.0
    negative: float = 0.0
    positive: float = 0.0
    sentiment: float = 0.0  # decayed sum of sentiment scores
    intent: float = 0.0
    queries: float = 0.0
    answered: float = 0.0
    unanswered: float = 0.0
    slow: float = 0.0
    cases: float = 0.0
    frt_sum: float = 0.0
    frt_n: float = 0.0
    last_mention: float | None = None
    last_complaint: float | None = None
    complaint_times: deque[float] = field(default_factory=lambda: deque(maxlen=_MAX_COMPLAINT_TIMES))
    case_ids: OrderedDict[str, None] = field(default_factory=OrderedDict)
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
        self.positive *= f
        self.sentiment *= f
        self.intent *= f
        self.queries *= f
        self.answered *= f
        self.unanswered *= f
        self.slow *= f
        self.cases *= f
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
    """Incremental per-customer churn features, in event time, from observable behaviour only.

    ``learn_one(event)`` takes one of:

    * a customer's mention (an ``Enriched`` dict works as it is): ``customer_id``, ``ts``, ``id``,
      ``sentiment`` (and optionally ``sentiment_score`` in [-1, 1]), ``intent`` (``query``/``comment``),
      ``case_id`` and ``text``, scanned for churn intent ("cancel", "switching to", ...) unless a boolean
      ``churn_intent`` is given;
    * a brand reply: ``from_brand`` true (or ``type`` ``reply``) with ``in_reply_to`` the mention's id and
      ``ts``; the customer is found from the query it answers (or given as ``customer_id``); a
      ``first_response_ms`` field overrides the delay;
    * an unanswered query flagged by the SLA timer: ``type`` ``unanswered``, ``customer_id``, ``ts``;
    * a CRM record: ``type`` ``crm``, ``customer_id``, and any of ``tenure_days`` or ``tenure_months`` (at
      ``ts``, or ``since`` a date), ``value``, ``tier``.

    Events without a customer, or with an unreadable time, are ignored. A query without a reply after
    ``sla_h`` hours counts as unanswered (a late reply still counts as a response time); replies after
    ``slow_h`` hours count as slow. Counts decay with a half-life of ``halflife_days``.

    ``transform_one({"customer_id": ..., "ts": ...})`` returns the features at ``ts`` (default: the
    customer's last event), all of :data:`FEATURE_NAMES` plus ``tier_<tier>``: decayed counts on a log
    scale (``mentions``, ``negative``, ``positive``, ``churn_intent``, ``queries``, ``unanswered``,
    ``slow_replies``, ``cases``), shares (``neg_share``, ``answered_share``), ``sentiment_mean``,
    ``response_h`` (mean log hours to the first reply), ``days_quiet`` and ``days_since_complaint`` (log
    days), ``complaints_90d`` (log of the complaints of the last 90 days), ``tenure_years``,
    ``new_customer`` (under 180 days), ``log_value``, ``known`` (a CRM record was seen).

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
    >>> round(math.expm1(x["complaints_90d"])), x["answered_share"]
    (2, 1.0)
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
                          "sentiment": rng.choice(("negative", "neutral", "positive")), "case_id": f"K{k % 9}",
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
        label = x.get("sentiment")
        score = _number(x.get("sentiment_score"))
        if score is None:
            score = _SENTIMENT_VALUE.get(label, 0.0) if isinstance(label, str) else 0.0
        c.sentiment += w * max(-1.0, min(1.0, score))
        if label == "negative":
            c.negative += w
            c.complaint_times.append(t)
            c.last_complaint = t if c.last_complaint is None else max(c.last_complaint, t)
        elif label == "positive":
            c.positive += w
        intent = x.get("churn_intent")
        if not isinstance(intent, bool):
            text = x.get("text")
            intent = isinstance(text, str) and CHURN_INTENT.search(text[:2000]) is not None
        if intent:
            c.intent += w
        case_id = x.get("case_id")
        if isinstance(case_id, str) and case_id and case_id not in c.case_ids:
            c.case_ids[case_id] = None
            c.cases += w
            while len(c.case_ids) > _MAX_CASES:
                c.case_ids.popitem(last=False)
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
        else:
            c.answered += 1.0
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
        if tenure is None:
            months = _number(x.get("tenure_months"))
            tenure = months * 30.44 if months is not None else None
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

    def knows(self, customer_id: str) -> bool:
        """Whether a CRM record of this customer was seen (tenure, value or tier)."""
        c = self._customers.get(customer_id)
        return c is not None and (c.tenure_days is not None or c.value is not None or c.tier is not None)

    def transform_one(self, x: dict[Any, Any]) -> dict[Any, Any]:
        cid = x.get("customer_id") if isinstance(x, dict) else None
        c = self._customers.get(cid) if isinstance(cid, str) else None
        if c is None:
            out = {name: 0.0 for name in FEATURE_NAMES}
            out["days_since_complaint"] = math.log1p(_NEVER_DAYS)
            return out
        t = _event_time(x) if isinstance(x, dict) else None
        if t is None:
            t = c.t
        hl = self._halflife_s()
        f = 0.5 ** (max(0.0, t - c.t) / hl)
        sla = self.sla_h * 3600.0
        late = sum(0.5 ** (max(0.0, t - (qt + sla)) / hl) for qt in c.pending.values() if qt + sla <= t)
        tenure = None
        if c.tenure_days is not None:
            tenure = c.tenure_days + (max(0.0, t - c.tenure_at) / _DAY_S if c.tenure_at is not None else 0.0)
        unanswered = c.unanswered * f + late
        answered = c.answered * f
        since_complaint = (max(0.0, t - c.last_complaint) / _DAY_S) if c.last_complaint is not None else _NEVER_DAYS
        recent = sum(1 for ct in c.complaint_times if t - _RECENT_COMPLAINTS_S < ct <= t)
        out = {
            "mentions": math.log1p(c.mentions * f),
            "negative": math.log1p(c.negative * f),
            "positive": math.log1p(c.positive * f),
            "neg_share": (c.negative / c.mentions) if c.mentions > 0 else 0.0,
            "sentiment_mean": (c.sentiment / c.mentions) if c.mentions > 0 else 0.0,
            "churn_intent": math.log1p(c.intent * f),
            "queries": math.log1p(c.queries * f),
            "answered_share": answered / (answered + unanswered) if answered + unanswered > 0 else 0.0,
            "unanswered": math.log1p(unanswered),
            "slow_replies": math.log1p(c.slow * f),
            "response_h": c.frt_sum / c.frt_n if c.frt_n > 0 else 0.0,
            "cases": math.log1p(c.cases * f),
            "days_quiet": math.log1p(max(0.0, t - c.last_mention) / _DAY_S) if c.last_mention else 0.0,
            "days_since_complaint": math.log1p(min(since_complaint, _NEVER_DAYS)),
            "complaints_90d": math.log1p(recent),
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


# -- baselines -------------------------------------------------------------------------------------------


def negative_share_score(x: Mapping[str, Any]) -> float:
    """Baseline: the share of the customer's (decayed) mentions that are negative.

    >>> negative_share_score({"neg_share": 0.75})
    0.75
    """
    v = x.get("neg_share", 0.0)
    return float(v) if isinstance(v, int | float) else 0.0


def rfm_complaint_score(x: Mapping[str, Any]) -> int:
    """Baseline: recency plus frequency of complaints, each binned 0-5 as in RFM analysis.

    Recency (days since the last complaint): never 0, over 60 days 1, up to 60 days 2, 30 days 3, 14 days 4,
    7 days 5. Frequency (complaints in the last 90 days): 0, 1, 2, 3-4, 5-8, 9 or more score 0 to 5.

    >>> rfm_complaint_score({"days_since_complaint": math.log1p(3), "complaints_90d": math.log1p(4)})
    8
    >>> rfm_complaint_score({})
    0
    """
    r_log = x.get("days_since_complaint")
    f_log = x.get("complaints_90d", 0.0)
    days = math.expm1(float(r_log)) if isinstance(r_log, int | float) else _NEVER_DAYS
    n = round(math.expm1(float(f_log))) if isinstance(f_log, int | float) else 0
    if n <= 0 or days >= _NEVER_DAYS - 1e-6:
        recency = 0
    else:
        recency = 5 if days <= 7 else 4 if days <= 14 else 3 if days <= 30 else 2 if days <= 60 else 1
    frequency = 0 if n <= 0 else 1 if n == 1 else 2 if n == 2 else 3 if n <= 4 else 4 if n <= 8 else 5
    return recency + frequency


# -- the model -------------------------------------------------------------------------------------------


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
    """Online logistic regression for churn on standardised features, learning only from outcomes.

    Every weight starts at zero and the intercept at the log-odds of ``base_rate``: before its first
    outcome the model gives every customer the same risk, and ranks nobody. Each ``learn_one(x, churned)``
    updates the running mean and variance of every feature (standardisation), then takes one AdaGrad step
    on the log loss with an L2 penalty. Feature values that are not finite numbers are ignored; a feature
    missing from ``x`` counts as 0.

    :meth:`contributions` explains a risk: weight x standardised value per feature, whose sum (plus the
    intercept) is the log-odds; :meth:`reasons` lists the features that push the risk up most.

    Parameters
    ----------
    learning_rate
        AdaGrad base step.
    l2
        L2 penalty on the weights (not on the intercept).
    base_rate
        The churn rate assumed before any outcome (sets the starting intercept).
    clip
        Standardised values are clipped to [-clip, clip].

    Examples
    --------
    >>> import random
    >>> rng = random.Random(1)
    >>> model = ChurnModel()
    >>> calm = {"negative": 0.0, "unanswered": 0.0, "tenure_years": 4.0}
    >>> angry = {"negative": 1.6, "unanswered": 1.1, "tenure_years": 0.3}
    >>> model.predict_proba_one(angry) == model.predict_proba_one(calm)  # nothing learned yet
    True
    >>> for _ in range(2000):
    ...     x = {"negative": 2 * rng.random(), "unanswered": 1.5 * rng.random(), "tenure_years": 5 * rng.random()}
    ...     model.learn_one(x, rng.random() < 1 / (1 + math.exp(-(2 * x["unanswered"] - 3))))
    >>> model.predict_proba_one(angry)[True] > model.predict_proba_one(calm)[True]
    True
    >>> [r["feature"] for r in model.reasons(angry, n=1)]
    ['unanswered']
    """

    def __init__(self, learning_rate: float = 0.05, l2: float = 1e-4, base_rate: float = 0.1,
                 clip: float = 5.0) -> None:
        self.learning_rate = learning_rate
        self.l2 = l2
        self.base_rate = base_rate
        self.clip = clip
        self._weights: dict[str, float] = {}
        self._g2: dict[str, float] = {}
        self._bias: float | None = None
        self._g2_bias = 0.0
        self._sum: dict[str, float] = {}
        self._sumsq: dict[str, float] = {}
        self.n_outcomes = 0
        self.n_churned = 0

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {}
        yield {"learning_rate": 0.1, "base_rate": 0.3}

    @property
    def _multiclass(self) -> bool:
        return False

    def _start_bias(self) -> float:
        p = min(max(self.base_rate, 1e-6), 1 - 1e-6)
        return math.log(p / (1 - p))

    def _values(self, x: dict[str, Any]) -> Iterator[tuple[str, float]]:
        if not isinstance(x, dict):
            return
        for k, v in x.items():
            if isinstance(v, bool):
                v = float(v)
            elif not isinstance(v, int | float):
                continue
            v = float(v)
            if not math.isfinite(v) or abs(v) > 1e12:
                continue
            yield str(k), v

    def _z(self, name: str, v: float) -> float:
        """The standardised value of feature ``name`` (0 until its spread is known)."""
        n = self.n_outcomes
        if n < 2:
            return 0.0
        mean = self._sum.get(name, 0.0) / n
        var = self._sumsq.get(name, 0.0) / n - mean * mean
        if var <= _MIN_VARIANCE:  # a constant feature (up to rounding) says nothing yet
            return 0.0
        lim = abs(self.clip)
        return max(-lim, min(lim, (v - mean) / math.sqrt(var)))

    def _standardised(self, x: dict[str, Any]) -> dict[str, float]:
        """Every feature with a weight or a value: absent features count as 0 (they are, for the scaler)."""
        values = dict(self._values(x))
        names = set(self._weights) | set(values)
        return {k: self._z(k, values.get(k, 0.0)) for k in sorted(names)}

    def contributions(self, x: dict[Any, Any]) -> dict[str, float]:
        """Weight x standardised value per feature: how each moves the log-odds from the intercept."""
        return {k: self._weights.get(k, 0.0) * z for k, z in self._standardised(x).items()}

    def _logit(self, x: dict[str, Any]) -> float:
        bias = self._bias if self._bias is not None else self._start_bias()
        return bias + sum(self.contributions(x).values())

    def predict_proba_one(self, x: dict[Any, Any], **kwargs: Any) -> dict[base.typing.ClfTarget, float]:
        p = _sigmoid(self._logit(x))
        return {True: p, False: 1.0 - p}

    def predict_one(self, x: dict[Any, Any], **kwargs: Any) -> bool:
        return self.predict_proba_one(x)[True] >= 0.5

    def reasons(self, x: dict[Any, Any], n: int = 3) -> list[dict[str, Any]]:
        """The ``n`` features pushing this risk up most: ``feature``, ``value``, ``contribution``, ``text``.

        Only positive contributions are reasons (a feature that lowers the risk is not one).
        """
        values = dict(self._values(x)) if isinstance(x, dict) else {}
        ranked = sorted(((c, k) for k, c in self.contributions(x).items() if c > 1e-9), reverse=True)
        return [
            {"feature": k, "value": round(values.get(k, 0.0), 4), "contribution": round(c, 4),
             "text": REASON_TEXT.get(k, k.replace("_", " "))}
            for c, k in ranked[: max(0, n)]
        ]

    def learn_one(self, x: dict[Any, Any], y: Any) -> None:
        target = _label(y)
        if target is None:
            logger.debug("churn model ignored label %r", y)
            return
        values = dict(self._values(x))
        self.n_outcomes += 1
        self.n_churned += int(target)
        for k, v in values.items():
            self._sum[k] = self._sum.get(k, 0.0) + v
            self._sumsq[k] = self._sumsq.get(k, 0.0) + v * v
        z = self._standardised(x)
        if self._bias is None:
            self._bias = self._start_bias()
        err = _sigmoid(self._logit(x)) - target
        self._g2_bias += err * err
        self._bias -= self.learning_rate * err / (math.sqrt(self._g2_bias) + 1e-8)
        for k, zk in z.items():
            w = self._weights.get(k, 0.0)
            g = err * zk + self.l2 * w
            if g == 0.0:
                continue
            g2 = self._g2.get(k, 0.0) + g * g
            self._g2[k] = g2
            self._weights[k] = w - self.learning_rate * g / (math.sqrt(g2) + 1e-8)

    @property
    def weights(self) -> dict[str, float]:
        """Current weights on standardised features, and the intercept as ``_bias``."""
        out = dict(sorted(self._weights.items()))
        out["_bias"] = self._bias if self._bias is not None else self._start_bias()
        return out
