"""The CRM: customers and identity, cases and their lifecycle, assignment, SLAs, knowledge base, rules.

Pure domain logic over plain dicts and a small store port (:class:`crm.store.CrmStore`, backed by Redis
in :class:`crm.store.RedisCrmStore`). The flow calls one object, :class:`crm.processor.CrmProcessor`:

- ``process(enriched_dict)`` / ``process_batch([...])`` per enriched mention (identity, prospect
  profiles, link codes, rules, case open/append/reopen, priority, SLA, assignment, KB suggestions);
- ``on_brand_reply(reply_dict)`` for replies seen on a channel (response times);
- ``tick(now_ms)`` for SLA timers (``sla_breach`` alerts);
- ``identify(mention_dict)`` for the identity step.

Agent-side actions: :meth:`CrmProcessor.reply`, :meth:`CrmProcessor.resolve`, :mod:`crm.assignment`
(agents), :mod:`crm.customers` (import), :mod:`crm.linkcodes`, :mod:`crm.kb`, :mod:`crm.customer360`.
Keys: :mod:`crm.keys`. Settings: :class:`crm.settings.CrmSettings`. Outbound messages are written in the
outbox contract's encoding, injected as a :class:`crm.outbox.OutboxEncoder` (``stream/`` passes
``connectors.outbox.ENCODING``).
"""

from __future__ import annotations

from crm.assignment import Agent, add_agent, list_agents, set_agent_capacity, set_agent_online
from crm.customer360 import customer_360
from crm.customers import ImportReport, import_customers
from crm.errors import (
    AgentError,
    CaseError,
    CrmError,
    CrmInputError,
    CustomerImportError,
    KnowledgeBaseError,
    LinkCodeError,
    RuleError,
)
from crm.kb import KnowledgeBase, load_articles
from crm.keys import CrmKeys
from crm.linkcodes import issue_link_code, redeem_link_code
from crm.outbox import OutboxEncoder
from crm.processor import SAMPLE_KB, SAMPLE_RULES, CrmProcessor
from crm.rules import RuleSet, load_rules
from crm.settings import CrmSettings
from crm.store import CrmStore, RedisCrmStore, make_store

__all__ = [
    "SAMPLE_KB",
    "SAMPLE_RULES",
    "Agent",
    "AgentError",
    "CaseError",
    "CrmError",
    "CrmInputError",
    "CrmKeys",
    "CrmProcessor",
    "CrmSettings",
    "CrmStore",
    "CustomerImportError",
    "ImportReport",
    "KnowledgeBase",
    "KnowledgeBaseError",
    "LinkCodeError",
    "OutboxEncoder",
    "RedisCrmStore",
    "RuleError",
    "RuleSet",
    "add_agent",
    "customer_360",
    "import_customers",
    "issue_link_code",
    "list_agents",
    "load_articles",
    "load_rules",
    "make_store",
    "redeem_link_code",
    "set_agent_capacity",
    "set_agent_online",
]
