"""The small functions and state builders that ``stream/flow.py`` wires together."""

from __future__ import annotations

import gc
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import redis

from connectors.records import RawRecord
from crm import CrmSettings
from crm.identity import is_prospect_id
from stream.churn import ChurnLogic, customer_key
from stream.counters import CounterLogic
from stream.crm_steps import CrmHost
from stream.dedupe import Deduplicator
from stream.incidents import SpikeLogic
from stream.keys import Keys
from stream.learning import ModelHost, ModelLogic, features_of, model_signing_key
from stream.parse import Parsed, parse_record
from stream.redisconn import with_retry
from stream.replies import brand_post_event, reply_event
from stream.replies import mention_event as match_mention
from stream.schema import CallVolume, ChurnOutcome, DeadLetter, Enriched, Feedback, Mention
from stream.service_desk import desk_settings
from stream.settings import Settings
from stream.windows import WindowLogic, window_key

__all__ = ["GC_YOUNG_THRESHOLD", "Steps", "tune_gc"]

#: Allocations between two collections of Python's youngest garbage-collector generation (its default is 700).
GC_YOUNG_THRESHOLD = 10_000


def tune_gc(young: int = GC_YOUNG_THRESHOLD) -> None:
    """Collect the youngest generation every ``young`` allocations instead of every 700 (a higher setting, or
    collection switched off with a threshold of 0, is left as it is).

    The flow keeps a large long-lived state (models, windows, spike detectors, customers) and allocates many
    short-lived objects per record. At the default threshold the objects of the batch in flight are still alive
    at most young collections, get promoted, and their number soon triggers a full collection, which walks the
    whole state: a fifth to a third of the flow's CPU in benchmarks/throughput.py, and more on sparse streams,
    whose state is larger. Collections still happen, less often: nothing the flow computes depends on them.
    """
    g0, g1, g2 = gc.get_threshold()
    if 0 < g0 < young:
        gc.set_threshold(young, g1, g2)


def parse(raw: RawRecord) -> Parsed:
    return parse_record(raw)


def is_valid(p: Parsed) -> bool:
    return not isinstance(p.record, DeadLetter)


def dead_outcome(p: Parsed) -> tuple[str, str]:
    return (p.source, "dead_letters")


def dedupe_outcome(item: tuple[bool, Parsed]) -> tuple[str, str]:
    return (item[1].source, "duplicate" if item[0] else "accepted")


def first(pair: tuple[str, Any]) -> str:
    return pair[0]


def fresh_record(item: tuple[bool, Parsed]) -> Any:
    return None if item[0] else item[1].record


def calls_only(record: Any) -> tuple[str, CallVolume] | None:
    return ("calls", record) if isinstance(record, CallVolume) else None


def reply_facts(e: Enriched) -> list[tuple[Any, ...]]:
    """Per-mention facts for Redis: a customer mention (and who is talking), or a brand's post and its reply."""
    m = e.mention
    if m.from_brand:
        out = [("fact", brand_post_event(m.id, m.brand, m.ts_ms))]
        if m.in_reply_to is not None:
            agent = m.meta.get("agent") if isinstance(m.meta, dict) else None
            out.append(("fact", reply_event(m.in_reply_to, m.ts_ms, m.brand, str(agent or m.author))))
        return out
    known = e.customer_id if e.customer_id and not is_prospect_id(e.customer_id) else None
    return [("fact", match_mention(m.id, m.brand, m.channel, m.ts_ms, e.intent == "query", m.author, e.sentiment,
                                   m.in_reply_to, e.customer_id)),
            ("audience", m.brand, m.channel, m.owned, m.ts_ms, m.id, known, e.sentiment_score,
             e.customer_id or f"{m.channel}:{m.author}")]


def mention_event(e: Enriched) -> tuple[Any, ...]:
    m = e.mention
    return ("mention", m.brand, m.channel, m.ts_ms, m.author, m.from_brand, e.intent, e.sentiment, m.id,
            e.keywords, e.department)


def brand_channel_key(event: tuple[Any, ...]) -> str:
    return window_key(event[1], event[2])


def crm_settings(settings: Settings) -> CrmSettings:
    """The CRM's settings for the flow: ``crm_config`` (or the defaults) under the flow's key prefix."""
    return desk_settings(settings.prefix, settings.crm_config or None)


def rules_path(settings: Settings) -> str | None:
    """The business rules file the settings name (None: no rules)."""
    from crm import SAMPLE_RULES

    if settings.rules.lower() == "none":
        return None
    return settings.rules or str(SAMPLE_RULES)


def is_enriched(item: tuple[str, Any]) -> bool:
    return item[0] == "enriched"


def second(item: tuple[str, Any]) -> Any:
    return item[1]


def churn_outcome_only(record: Any) -> ChurnOutcome | None:
    return record if isinstance(record, ChurnOutcome) else None


def churn_key(_: Any) -> str:
    return "churn"


def scored_mention(item: tuple[Enriched, Any]) -> Enriched:
    return item[0]


def churn_item(item: tuple[Enriched, list[dict[str, Any]] | None]) -> tuple[str, str, float, bytes] | None:
    e, reasons = item
    return None if reasons is None else ("churn", customer_key(e), e.churn_risk, orjson.dumps(reasons))


def is_closed_minute(item: tuple[Any, ...]) -> bool:
    return item[0] == "closed"


def brand_of(item: tuple[Any, ...]) -> str:
    return str(item[1])


def model_input(record: Any) -> Mention | Feedback | None:
    return record if isinstance(record, Mention | Feedback) else None


def models_key(_: Any) -> str:
    return "models"


def is_classified(item: Any) -> bool:
    return isinstance(item, Enriched)


def mention_item(e: Enriched) -> tuple[str, bytes, int, str, bytes]:
    """For the sink: the mention for the latest-mentions table, and its model input for feedback."""
    return ("mention", e.to_json(), e.mention.ts_ms, e.mention.id, features_of(e))


def dead_letter_item(p: Parsed) -> tuple[str, DeadLetter]:
    return ("dlq", p.record)  # type: ignore[return-value]


def _event_ms(record: Any) -> int | None:
    if isinstance(record, Mention):
        return record.ts_ms
    ts = getattr(record, "ts", None)
    return None if ts is None else int(ts.timestamp() * 1000)


class Steps:
    """State builders and stateful step functions, configured from :class:`Settings`.

    ``run_id`` names this run (stream/runs.py): de-duplication remembers which run accepted each record.
    """

    def __init__(self, settings: Settings, redis_url: str | None, run_id: str = "0") -> None:
        tune_gc()
        self.settings = settings
        self.redis_url = redis_url
        self.run_id = run_id
        self._local = threading.local()
        staff = None
        if settings.demo_staff and settings.crm and redis_url:
            from stream.demo_agents import DemoStaff, StaffPlan

            staff = DemoStaff(StaffPlan.parse(settings.demo_staff), Keys(settings.prefix))
        self.crm = CrmHost(redis_url if settings.crm else None, crm_settings(settings), rules_path(settings), staff)

    def _deduplicator(self) -> Deduplicator:
        found: Deduplicator | None = getattr(self._local, "dedupe", None)
        if found is None:
            if self.redis_url is None:
                raise ValueError("the flow needs a Redis URL to de-duplicate records")
            found = self._local.dedupe = Deduplicator(redis.Redis.from_url(self.redis_url), Keys(self.settings.prefix),
                                                      self.run_id, int(self.settings.dedupe_seconds * 1000))
        return found

    def dedupe(self, batch: list[Parsed]) -> list[tuple[bool, Parsed]]:
        """``(is_duplicate, record)`` for a batch of valid records, in their order."""
        records = [(p.key, _event_ms(p.record), p.offset) for p in batch]
        # idempotent: a record's owner is its run and position, so a retried check gives the same answer
        flags = with_retry(lambda: self._deduplicator().check(records), "dedupe")
        return list(zip(flags, batch, strict=True))

    def counter(self, resume: dict[str, Any] | None) -> CounterLogic:
        return CounterLogic(self.settings.flush_seconds, resume)

    def window(self, resume: dict[str, Any] | None) -> WindowLogic:
        s = self.settings
        return WindowLogic(int(s.window_horizon_seconds * 1000), int(s.allowed_lateness_seconds * 1000),
                           int(s.sla_seconds * 1000), s.flush_seconds, resume,
                           max_jump_ms=int(s.watermark_jump_seconds * 1000))

    def churn(self, resume: dict[str, Any] | None) -> ChurnLogic:
        return ChurnLogic(resume, profile=self._customer_profile if self.crm.enabled else None)

    def _customer_profile(self, customer_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        store = self.crm.processor().store
        return with_retry(lambda: store.get_customers(customer_ids), "customer profiles")

    def spikes(self, resume: Any) -> SpikeLogic:
        return SpikeLogic(resume)

    def models(self, resume: bytes | None) -> ModelLogic:
        """The text models, their learning and monitoring: one host for the flow (one key), restored from
        the recovery snapshot when resuming."""
        s = self.settings
        return ModelLogic(ModelHost(self.redis_url, Keys(s.prefix), Path(s.data_dir) / "models",
                                    checkpoint_every=s.checkpoint_every,
                                    signing_key=model_signing_key(s) if self.redis_url else None, resume=resume,
                                    run_id=None if self.run_id == "0" else self.run_id))  # "0": unnamed runs
