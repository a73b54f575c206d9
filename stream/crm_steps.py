"""The CRM inside the flow: who wrote each mention, and the service process for it (cases, rules, SLAs).

The step takes a batch at a time (``op.flat_map_batch``) because the CRM answers a whole batch in a
couple of Redis round trips. The CRM stores everything itself, idempotent by mention id; the flow
takes back the customer (or prospect) id, the case id, and the alerts to publish. A record the CRM
cannot use becomes a dead letter.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.outbox import ENCODING
from crm import CrmProcessor, CrmSettings
from stream.redisconn import with_retry
from stream.schema import Alert, DeadLetter, Enriched

if TYPE_CHECKING:
    from stream.demo_agents import DemoStaff

__all__ = ["CrmHost"]

log = logging.getLogger(__name__)


def _crm_input(e: Enriched) -> dict[str, Any]:
    d = e.to_dict()
    d["churn_risk"] = None
    return d


class CrmHost:
    """One :class:`crm.CrmProcessor` per process, built on first use (or by :meth:`check` at start-up).

    >>> host = CrmHost(redis_url=None, settings=CrmSettings(prefix="doc:"), rules_path=None)
    >>> host.enabled
    False
    """

    def __init__(self, redis_url: str | None, settings: CrmSettings, rules_path: str | Path | None,
                 staff: DemoStaff | None = None) -> None:
        self.redis_url = redis_url
        self.settings = settings
        self.rules_path = rules_path
        #: The demo's simulated agents and analysts (stream/demo_agents.py): they act at each minute of event
        #: time before the CRM sees the mentions after it, so what they do is a function of the input.
        self.staff = staff
        self._proc: CrmProcessor | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.redis_url is not None

    def processor(self) -> CrmProcessor:
        """The processor; a malformed rules file raises ``crm.RuleError`` naming the rule and line."""
        with self._lock:
            if self._proc is None:
                assert self.redis_url is not None
                # rule replies, DM requests and webhooks are written in the outbox contract's encoding
                # the churn step scores after the CRM and stores the risk from the sink: reading it back here
                # would make a case's priority depend on how far the sink had got (not a function of the input)
                self._proc = CrmProcessor.from_redis(self.redis_url, self.settings, rules_path=self.rules_path,
                                                     outbox=ENCODING, stored_churn_risk=False)
                log.info("CRM ready (rules: %s)", self.rules_path or "none")
            return self._proc

    def process(self, batch: list[Enriched]) -> list[tuple[str, Any]]:
        """Cases, assignment, rules and SLA timers for a batch; returns the flow's items.

        ``("enriched", Enriched)`` for every mention (with ``case_id``), ``("alert", Alert)`` for rule
        and SLA-breach alerts, ``("dlq", DeadLetter)`` for what the CRM refused.
        """
        if not self.enabled or not batch:
            return [("enriched", e) for e in batch]
        staff = self.staff
        if staff is None:
            return self._process(batch)
        items: list[tuple[str, Any]] = []
        start = 0
        for i, e in enumerate(batch):
            if staff.due(e.mention.ts_ms):
                items.extend(self._process(batch[start:i]))
                start = i
                staff.advance(self.processor(), e.mention.ts_ms)
            staff.observe(e)
        items.extend(self._process(batch[start:]))
        return items

    def _process(self, batch: list[Enriched]) -> list[tuple[str, Any]]:
        if not batch:
            return []
        # The churn step scores after the CRM (it needs the customer id): the CRM gets no risk to store.
        inputs = [_crm_input(e) for e in batch]
        # idempotent by mention, reply and tick: a batch cut short by a Redis outage is sent again whole
        results = with_retry(lambda: self.processor().process_batch(inputs), "crm")
        items: list[tuple[str, Any]] = []
        for e, res in zip(batch, results, strict=True):
            if "error" in res:
                items.append(("dlq", DeadLetter(raw=e.to_json(), reason=f"crm: {res['error']}", source="crm",
                                                key=f"crm:{e.mention.id}")))
            elif not e.mention.from_brand:
                e = dataclasses.replace(e, case_id=res.get("case_id"), customer_id=res.get("customer_id"))
            items.append(("enriched", e))
            # the alerts of the timers its event time ticked, even when the mention itself was refused: the tick ran
            for alert in res.get("alerts") or ():
                try:
                    items.append(("alert", Alert.from_dict(alert)))
                except (TypeError, ValueError) as exc:
                    log.error("CRM alert not publishable (%s): %r", exc, alert)
        return items
