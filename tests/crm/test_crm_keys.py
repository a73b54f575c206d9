"""Every key the CRM writes (Python and server-side scripts) is one that crm.keys names."""

from __future__ import annotations

import inspect
import re

import polars as pl
from crm_helpers import MIN, T0, iso

from connectors.outbox import ENCODING
from crm import SAMPLE_KB, SAMPLE_RULES, CrmKeys, CrmProcessor, KnowledgeBase, load_articles, load_rules
from crm.assignment import Agent, add_agent, set_agent_online
from crm.customers import import_customers
from crm.linkcodes import issue_link_code
from crm.rules import RuleSet


def _patterns(prefix: str) -> list[re.Pattern[str]]:
    keys = CrmKeys(prefix)
    out = []
    for name, member in inspect.getmembers(CrmKeys):
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            out.append(re.escape(getattr(keys, name)))
        elif callable(member):
            n_args = len(inspect.signature(member).parameters) - 1
            if n_args:
                text = getattr(keys, name)(*(["\x00"] * n_args))
                out.append(re.escape(text).replace("\x00", ".+"))
    return [re.compile(p) for p in out]


def test_all_written_keys_follow_the_layout(store, key_prefix, crm_settings, mention, r, agents):
    import_customers(store, pl.DataFrame({"customer_id": ["C1"], "name": ["Ann"], "tier": ["gold"],
                                          "products": ["A"], "twitter": ["ann"], "review": ["ann_r"],
                                          "email": ["ann@example.com"]}), now_ms=T0)
    kb = KnowledgeBase(store)
    kb.import_articles(load_articles(SAMPLE_KB)[0])
    rules = load_rules(SAMPLE_RULES)
    extra = RuleSet.from_toml('[[rule]]\nname = "hook"\n[rule.when]\n"mention.text" = { matches = "down" }\n'
                              '[[rule.then]]\nwebhook = "https://hooks.example.com/x"\n')
    rules.rules.extend(extra.rules)
    p = CrmProcessor(store, rules, kb, crm_settings, outbox=ENCODING)
    agents(("a1", 1, {"departments": "service,supervisor", "languages": "en"}), ("a2", 1, {"departments": "pr"}))
    p.on_brand_reply({"id": "twitter:99", "channel": "twitter", "brand": "acme", "author": "acme", "text": "hi",
                      "ts": iso(T0 + MIN), "in_reply_to": "twitter:1", "from_brand": True})
    p.process(mention(id="twitter:1", author="ann", sentiment="negative", sentiment_score=-0.7, ts_ms=T0))
    p.process(mention(id="twitter:2", author="stranger", text="site is down", ts_ms=T0 + 1000))
    p.process(mention(id="review:3", channel="review", author="ann_r", intent="comment", sentiment="positive",
                      sentiment_score=0.9, ts_ms=T0 + 2000))
    p.process(mention(id="blog:4", channel="blog", author="press", intent="comment", ts_ms=T0 + 3000))
    p.process(mention(id="twitter:5", author="cancelguy", text="I will cancel", churn_risk=0.9, ts_ms=T0 + 4000))
    code = issue_link_code(store, "C1", now_ms=T0)
    p.process(mention(id="twitter:6", author="stranger", text=f"code {code.code}", intent="comment", ts_ms=T0 + 5000))
    p.reply("C-twitter:2", article_id="service-outage", now_ms=T0 + 6000)
    p.resolve("C-twitter:1", now_ms=T0 + 7000)
    set_agent_online(store, "a1", False, now_ms=T0 + 8000)
    add_agent(store, Agent.create("a3", capacity=3), online=True, now_ms=T0 + 9000)
    p.tick(T0 + 10_000 * MIN)
    store.record_rule_outcome("hook", "acknowledged", 1)

    patterns = _patterns(key_prefix)
    written = sorted(k.decode() for k in r.scan_iter(match=key_prefix + "*"))
    assert len(written) > 40
    strays = [k for k in written if not any(p.fullmatch(k) for p in patterns)]
    assert strays == []
