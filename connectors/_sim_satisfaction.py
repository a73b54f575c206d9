"""The simulator's hidden churn process: a latent satisfaction per customer that drifts with what happens.

Only :mod:`connectors.simulator` uses this module. The models never import it (``models/`` never imports
``connectors/``) and never see its state: they see the records the simulator emits (mentions, the brand's
replies, churn outcomes) and the CRM fields, and must learn from those.

Each customer has a satisfaction ``s`` that

* starts at a baseline nobody observes: a random part, plus loyalty from tenure and tier;
* reverts towards that baseline (an Ornstein-Uhlenbeck walk: ``reversion_per_day``, ``noise_per_day``);
* moves with experiences, each at its own event time: a complaint the customer posts (the bad
  experience behind it) or a happy post, a query answered after a wait (or never answered), an outage on
  the customer's brand (felt by a share of its customers whether or not they post about it), and
  experiences nobody sees (a billing error, a dropped call, a good deal: a Poisson rate of shocks).

At each renewal the customer churns with probability ``sigmoid(churn_intercept - churn_slope * s)``.
Satisfaction also shapes what is observed: unhappy customers are more likely to be the author of a
complaint and happy ones of praise (``complain_bias``), and some complaints of unhappy customers say they
are thinking of leaving (``threat_odds``).

Every coefficient is drawn from the seed (:meth:`Coefficients.draw`), so a model tuned on one seed's
world meets different weights on another seed's.

>>> sat = Satisfaction(seed=7, tenure_days=[30, 2000], tiers=["bronze", "gold"], brands=["a", "a"], start=0)
>>> sat.experience(0, 3600, sat.coef.neg_post * -1)
>>> p_new, p_old = sat.churn_probability(0, 86400), sat.churn_probability(1, 86400)
>>> 0.0 < p_new < 1.0 and 0.0 < p_old < 1.0
True
>>> Satisfaction(seed=7, tenure_days=[30], tiers=["bronze"], brands=["a"], start=0).coef == sat.coef
True
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["THREATS", "Coefficients", "Satisfaction"]

_DAY = 86400.0

#: What an unhappy customer sometimes adds to a complaint; some say it plainly, some do not.
THREATS = (
    " Seriously thinking about switching.",
    " One more time and I'm cancelling.",
    " Looking at other providers now.",
    " Why am I still paying for this?",
    " My contract is up soon and I'm not renewing.",
    " Starting to regret ever signing up.",
    " Done with this, going elsewhere.",
    " Competitors are looking better every day.",
)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@dataclass(frozen=True)
class Coefficients:
    """How a world's customers react: one draw per seed.

    >>> Coefficients.draw(1) == Coefficients.draw(1), Coefficients.draw(1) == Coefficients.draw(2)
    (True, False)
    """

    neg_post: float  # satisfaction lost with the bad experience behind a complaint
    pos_post: float  # gained with a happy post
    answered: float  # gained when a query is answered
    wait_per_log_h: float  # lost per log(1 + hours) waited for that answer
    unanswered: float  # lost when a query is not answered within a day
    incident: float  # lost by a customer an outage of their brand touches
    incident_exposure: float  # share of the brand's customers an outage touches
    private_per_day: float  # rate of bad experiences nobody sees
    private_shock: float  # mean size of one of them (exponentially distributed)
    private_good_share: float  # unseen experiences can be good too: this share of them are
    reversion_per_day: float  # pull back towards the baseline
    noise_per_day: float  # random walk per square root of a day
    base_sd: float  # spread of baselines nobody sees
    loyalty_per_log_tenure: float  # baseline gained per log(1 + tenure in years)
    tier_gold: float  # baseline of gold customers (bronze: minus this, silver: 0)
    churn_intercept: float
    churn_slope: float
    complain_bias: float  # how strongly satisfaction picks who writes complaints and praise
    threat_odds: float  # chance that a complaint of a very unhappy customer says they may leave

    @classmethod
    def draw(cls, seed: int | str) -> Coefficients:
        """The coefficients of the world of ``seed``: each uniform within a plausible range."""
        rng = random.Random(f"{seed}:satisfaction:coefficients")
        u = rng.uniform
        return cls(
            neg_post=u(0.03, 0.2),
            pos_post=u(0.02, 0.15),
            answered=u(0.0, 0.15),
            wait_per_log_h=u(0.02, 0.12),
            unanswered=u(0.05, 0.35),
            incident=u(0.05, 0.4),
            incident_exposure=u(0.1, 0.5),
            private_per_day=u(0.02, 0.1),
            private_shock=u(0.2, 0.6),
            private_good_share=u(0.2, 0.6),
            reversion_per_day=u(0.03, 0.1),
            noise_per_day=u(0.05, 0.2),
            base_sd=u(0.3, 0.8),
            loyalty_per_log_tenure=u(0.0, 0.6),
            tier_gold=u(0.0, 0.5),
            churn_intercept=u(-3.3, -2.5),
            churn_slope=u(0.8, 1.6),
            complain_bias=u(0.5, 2.0),
            threat_odds=u(0.05, 0.3),
        )


class Satisfaction:
    """The latent satisfaction of every customer of one simulated world, advanced in event time.

    ``tenure_days``, ``tiers`` and ``brands`` are per customer index (as at ``start``, epoch seconds).
    Experiences are queued with their event time and applied in time order when a later time is asked
    about, so an answer that comes after a renewal does not count towards it. All randomness comes from
    the seed, in the order the simulator asks: the same world gives the same outcomes.
    """

    def __init__(self, seed: int | str, tenure_days: Sequence[float], tiers: Sequence[str],
                 brands: Sequence[str], start: float) -> None:
        self.coef = Coefficients.draw(seed)
        self._rng = random.Random(f"{seed}:satisfaction")
        c = self.coef
        n = len(tenure_days)
        tier_shift = {"gold": c.tier_gold, "silver": 0.0, "bronze": -c.tier_gold}
        self._base = [
            self._rng.gauss(0.0, c.base_sd) + c.loyalty_per_log_tenure * math.log1p(tenure_days[i] / 365.0)
            + tier_shift.get(tiers[i], 0.0)
            for i in range(n)
        ]
        # centred so that churn_intercept sets the base rate whatever the tenure mix
        mean = sum(self._base) / n if n else 0.0
        self._base = [b - mean for b in self._base]
        self._s = list(self._base)
        self._t = [float(start)] * n
        self._queue: list[tuple[float, int, int, float]] = []  # (time, order, customer, change)
        self._order = 0
        self._gone = [False] * n
        self._by_brand: dict[str, list[int]] = {}
        for i, b in enumerate(brands):
            self._by_brand.setdefault(b, []).append(i)
        self._incidents_seen: set[str] = set()

    def __len__(self) -> int:
        return len(self._s)

    # -- experiences --------------------------------------------------------------------------------
    def experience(self, idx: int, ts: float, change: float) -> None:
        """Queue a change of customer ``idx``'s satisfaction at event time ``ts``."""
        if 0 <= idx < len(self._s) and not self._gone[idx]:
            self._order += 1
            heapq.heappush(self._queue, (float(ts), self._order, idx, change))

    def posted(self, idx: int, ts: float, sentiment: str) -> None:
        """The customer posted: a complaint carries the bad experience behind it, praise a good one."""
        if sentiment == "negative":
            self.experience(idx, ts, -self.coef.neg_post)
        elif sentiment == "positive":
            self.experience(idx, ts, self.coef.pos_post)

    def answered(self, idx: int, asked_ts: float, delay_s: float | None) -> None:
        """A query of the customer was answered after ``delay_s`` seconds (None or over a day: not answered)."""
        c = self.coef
        if delay_s is None or delay_s > _DAY:
            self.experience(idx, asked_ts + _DAY, -c.unanswered)
        else:
            self.experience(idx, asked_ts + delay_s, c.answered - c.wait_per_log_h * math.log1p(delay_s / 3600.0))

    def outage(self, incident_id: str, brand: str, start: float, end: float) -> None:
        """An outage of ``brand``: a share of its customers feel it, at a time within it (once per id)."""
        if incident_id in self._incidents_seen:
            return
        self._incidents_seen.add(incident_id)
        if len(self._incidents_seen) > 10_000:  # ids are only needed while their incident lasts
            self._incidents_seen = {incident_id}
        c, rng = self.coef, self._rng
        for idx in self._by_brand.get(brand, ()):
            if rng.random() < c.incident_exposure:
                self.experience(idx, start + rng.random() * max(0.0, end - start), -c.incident)

    # -- state --------------------------------------------------------------------------------------
    def _advance(self, idx: int, ts: float) -> None:
        """Bring one customer to ``ts``: reversion, random walk and unseen shocks since its last time."""
        dt = (ts - self._t[idx]) / _DAY
        if dt <= 0:
            return
        c, rng = self.coef, self._rng
        decay = math.exp(-c.reversion_per_day * dt)
        sd = c.noise_per_day * math.sqrt((1.0 - decay * decay) / (2.0 * c.reversion_per_day))
        s = self._base[idx] + (self._s[idx] - self._base[idx]) * decay + rng.gauss(0.0, sd)
        lam = c.private_per_day * dt
        k = 0
        p, limit = 1.0, math.exp(-lam)
        while True:  # Knuth's Poisson draw: lam is small here
            p *= rng.random()
            if p <= limit:
                break
            k += 1
        for _ in range(k):
            sign = 1.0 if rng.random() < c.private_good_share else -1.0
            s += sign * rng.expovariate(1.0 / c.private_shock)
        self._s[idx] = s
        self._t[idx] = ts

    def _apply_until(self, ts: float) -> None:
        q = self._queue
        while q and q[0][0] <= ts:
            t, _, idx, change = heapq.heappop(q)
            if self._gone[idx]:
                continue
            self._advance(idx, t)
            self._s[idx] += change

    def level(self, idx: int, ts: float) -> float:
        """Customer ``idx``'s satisfaction at event time ``ts`` (experiences up to then applied)."""
        self._apply_until(ts)
        self._advance(idx, ts)
        return self._s[idx]

    def current(self, idx: int) -> float:
        """The satisfaction as last computed (no time passes: for choices made on the hot path)."""
        return self._s[idx]

    def churn_probability(self, idx: int, ts: float) -> float:
        """The chance that customer ``idx`` leaves at a renewal at ``ts``."""
        c = self.coef
        return _sigmoid(c.churn_intercept - c.churn_slope * self.level(idx, ts))

    def renew(self, idx: int, ts: float) -> tuple[bool, float]:
        """Draw the renewal outcome at ``ts``: ``(churned, probability)``; a churned customer is gone."""
        p = self.churn_probability(idx, ts)
        churned = self._rng.random() < p
        if churned:
            self._gone[idx] = True
        return churned, p

    # -- what satisfaction does to what is observed --------------------------------------------------
    def keeps_author(self, idx: int, sentiment: str, roll: float) -> bool:
        """Whether customer ``idx`` stays the author of a post of this sentiment (else another is drawn).

        Unhappy customers write more of the complaints and happy ones more of the praise.
        """
        if sentiment not in ("negative", "positive"):
            return True
        s = self._s[idx] if sentiment == "positive" else -self._s[idx]
        return roll < min(1.0, 2.0 * _sigmoid(self.coef.complain_bias * s))

    def threat(self, idx: int, roll: float) -> str:
        """A sentence about leaving to add to a complaint of customer ``idx``, or ``""``."""
        odds = self.coef.threat_odds * _sigmoid(-2.0 * self._s[idx] - 2.0) * 2.0
        if roll >= odds:
            return ""
        return THREATS[int(roll / max(odds, 1e-9) * len(THREATS)) % len(THREATS)]
