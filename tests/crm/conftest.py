"""Fixtures for the CRM tests: a store under the test's unique prefix, processors, mention factories."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from crm_helpers import T0, iso

from connectors.outbox import ENCODING
from crm import CrmProcessor, CrmSettings, KnowledgeBase, RuleSet, make_store
from crm.assignment import Agent, add_agent
from crm.store import CrmStore


@pytest.fixture()
def crm_settings(key_prefix: str) -> CrmSettings:
    return CrmSettings(prefix=key_prefix, auto_tick_ms=0)


@pytest.fixture()
def store(r: redis.Redis, key_prefix: str) -> CrmStore:
    return make_store(r, key_prefix)


@pytest.fixture()
def processor(store: CrmStore, crm_settings: CrmSettings) -> CrmProcessor:
    return CrmProcessor(store, RuleSet([]), KnowledgeBase(store), crm_settings, outbox=ENCODING)


@pytest.fixture()
def mention() -> Callable[..., dict[str, Any]]:
    """An enriched mention dict (the shape of Enriched.to_dict()) with overrides."""
    counter = iter(range(1, 1_000_000))

    def make(**kw: Any) -> dict[str, Any]:
        n = next(counter)
        ts = kw.pop("ts_ms", T0 + n * 1000)
        d: dict[str, Any] = {
            "id": f"twitter:{n}", "channel": "twitter", "owned": False, "brand": "acme", "author": "someone",
            "text": "how do I reset my password?", "ts": iso(ts), "in_reply_to": None, "from_brand": False,
            "url": None, "lang": "en", "meta": {}, "customer_id": None, "intent": "query", "sentiment": "neutral",
            "sentiment_score": 0.0, "department": "service", "keywords": [], "churn_risk": 0.0, "case_id": None,
        }
        d.update(kw)
        return d

    return make


@pytest.fixture()
def agents(store: CrmStore) -> Callable[..., None]:
    def make(*specs: tuple[str, int] | tuple[str, int, dict[str, str]], online: bool = True) -> None:
        for spec in specs:
            extra = spec[2] if len(spec) > 2 else {}
            add_agent(store, Agent.create(spec[0], capacity=spec[1], **extra), online=online, now_ms=T0)

    return make
