"""Business rules: the shipped examples, every action, hit counts and outcomes, malformed files refused."""

from __future__ import annotations

import orjson
import polars as pl
import pytest
from crm_helpers import MIN, T0

from connectors.outbox import ENCODING, OutboxMessage, read_messages
from crm import SAMPLE_RULES, CrmProcessor, RuleError, RuleSet, import_customers, load_rules
from crm.rules import MENTION_FIELDS
from stream.schema import Alert, Enriched, Mention


@pytest.fixture()
def rules_proc(store, crm_settings, agents):
    import_customers(store, pl.DataFrame({
        "customer_id": ["C-A", "C-G", "C-X"], "name": ["Ann", "Gil", "Xi"], "tier": ["silver", "gold", "bronze"],
        "products": ["A;B", "C", "B"], "review": ["ann_r", "gil_r", "xi_r"], "twitter": ["ann", "gil", "xi"],
    }), now_ms=T0)
    agents(("svc", 10, {"departments": "service"}), ("boss", 10, {"departments": "supervisor"}),
           ("pr1", 10, {"departments": "pr"}))
    return CrmProcessor(store, load_rules(SAMPLE_RULES), settings=crm_settings, outbox=ENCODING)


def test_mention_fields_match_the_schema():
    m = Mention.from_dict({"id": "x", "channel": "twitter", "brand": "b", "author": "a", "text": "t",
                           "ts": "2024-01-01T00:00:00Z"})
    assert set(Enriched(mention=m).to_dict()) == MENTION_FIELDS


def test_positive_review_by_product_a_owner_gets_community_invite(rules_proc, mention, store, r, key_prefix):
    out = rules_proc.process(mention(id="review:1", channel="review", author="ann_r", intent="comment",
                                     sentiment="positive", sentiment_score=0.8, text="Love it, 5 stars"))
    assert [h["rule"] for h in out["rule_hits"]] == ["community-invite"]
    assert out["tags"] == ["community-invite"]
    [reply] = out["outbox"]
    assert reply["channel"] == "review" and reply["in_reply_to"] == "review:1" and reply["kind"] == "dm_request"
    assert reply["text"].startswith("Thank you Ann!") and reply["agent"] == "rule:community-invite"
    assert reply["customer_id"] == "C-A" and reply["case_id"] == ""  # a comment opens no case
    assert read_messages(r, key_prefix, "review") == [OutboxMessage.from_dict(reply)]
    [task] = out["tasks"]
    assert task["title"] == "Welcome Ann to the product community" and task["queue"] == "marketing"
    assert store.tasks(10)[0]["id"] == task["id"] and store.tasks(10)[0]["customer_id"] == "C-A"
    assert r.xlen(f"{key_prefix}outbox:review") == 1
    assert store.customer_tags("C-A") == ["community-invite"]
    # a non-owner's positive review does not match
    other = rules_proc.process(mention(id="review:2", channel="review", author="xi_r", intent="comment",
                                       sentiment="positive", sentiment_score=0.8))
    assert other["rule_hits"] == []


def test_negative_gold_customer_is_escalated_to_supervisor(rules_proc, mention):
    out = rules_proc.process(mention(id="twitter:1", author="gil", sentiment="negative", sentiment_score=-0.3,
                                     text="third time my bill is wrong"))
    assert out["queue"] == "supervisor" and out["assigned_agent"] == "boss" and out["priority"] == "urgent"
    [alert] = out["alerts"]
    assert Alert.from_dict(alert).kind == "rule" and alert["severity"] == "high"
    assert alert["message"] == "gold customer Gil is unhappy on twitter: third time my bill is wrong"


def test_cancel_with_high_churn_creates_retention_task(rules_proc, mention):
    out = rules_proc.process(mention(id="twitter:1", author="xi", intent="comment", churn_risk=0.85,
                                     text="I'm going to cancel my contract"))
    assert [h["rule"] for h in out["rule_hits"]] == ["cancel-retention"]
    assert out["tasks"][0]["title"] == "Retention call for Xi (C-X)" and out["tasks"][0]["queue"] == "sales"
    assert out["tasks"][0]["due_ms"] == T0 + 1000 + 240 * MIN
    calm = rules_proc.process(mention(id="twitter:2", author="xi", intent="comment", churn_risk=0.2,
                                      text="I'm going to cancel my contract"))
    assert calm["rule_hits"] == []


def test_unscored_mention_uses_the_authors_latest_churn_risk(rules_proc, mention, r, key_prefix, store):
    # in the flow the churn step scores after the CRM: the CRM sees the risk it last wrote for the customer
    r.zadd(f"{key_prefix}churn", {"C-X": 0.9})
    out = rules_proc.process(mention(id="twitter:1", author="xi", intent="query", churn_risk=None,
                                     text="I'm going to cancel my contract"))
    assert [h["rule"] for h in out["rule_hits"]] == ["cancel-retention"]
    score = float(store.get_case(out["case_id"])["priority_score"])  # bronze value + churn (+ a little influence)
    assert score == pytest.approx(0.25 * 0.25 + 0.25 * 0.9, abs=0.01)
    # a mention that carries its own score uses it
    own = rules_proc.process(mention(id="twitter:2", author="xi", intent="comment", churn_risk=0.1,
                                     text="I'm going to cancel my contract"))
    assert own["rule_hits"] == []
    # an author with no known risk: no retention task
    nobody = rules_proc.process(mention(id="twitter:3", author="stranger", intent="comment", churn_risk=None,
                                        text="I'm going to cancel my contract"))
    assert nobody["rule_hits"] == []


def test_press_goes_to_pr_queue_even_as_a_comment(rules_proc, mention):
    out = rules_proc.process(mention(id="blog:1", channel="blog", author="techblog", intent="comment",
                                     text="Acme launches new plan"))
    assert out["case_event"] == "opened" and out["queue"] == "pr" and out["assigned_agent"] == "pr1"
    news = rules_proc.process(mention(id="twitter:5", author="reporter", intent="comment",
                                      meta={"source_type": "press"}))
    assert news["queue"] == "pr" and news["tags"] == ["press"]


def test_history_rule_and_outcomes_are_counted(rules_proc, mention, store):
    for i in range(3):
        rules_proc.process(mention(id=f"twitter:{i}", author="xi", intent="comment", sentiment="negative",
                                   sentiment_score=-0.5, ts_ms=T0 + i * MIN))
    rules_proc.process(mention(id="twitter:9", author="xi", intent="comment", sentiment="positive",
                               sentiment_score=0.5, ts_ms=T0 + 9 * MIN))
    stats = rules_proc.rule_stats()
    # the 3rd negative mention (2 negatives in recent history) hit; the next mention was positive
    assert stats["repeat-complainer"] == {"hits": 1, "next_positive": 1}
    assert stats["community-invite"] == {"hits": 0}
    # a supervisor reviews repeated complaints (a task, not a page on the wall display)
    [task] = [t for t in store.tasks(10) if t["rule"] == "repeat-complainer"]
    assert task["queue"] == "supervisor" and task["customer_id"] == "C-X"
    assert task["title"] == "Review the complaints of xi on twitter (2 negative mentions recently)"
    # a replay does not count twice
    rules_proc.process(mention(id="twitter:2", author="xi", intent="comment", sentiment="negative",
                               sentiment_score=-0.5, ts_ms=T0 + 2 * MIN))
    assert store.rule_stats()["repeat-complainer|hits"] == 1
    store.record_rule_outcome("repeat-complainer", "called_back", 1)
    assert store.rule_stats()["repeat-complainer|called_back"] == 1


def test_webhook_and_outbox_actions_are_written_once(store, crm_settings, mention, r, key_prefix):
    rules = RuleSet.from_toml("""
[[rule]]
name = "outage"
[rule.when]
mention.text = { matches = "\\\\bdown\\\\b" }
[[rule.then]]
webhook = { url = "https://hooks.example.com/x", event = "outage_report" }
[[rule.then]]
outbox = "Sorry {mention.author}, we are on it: https://status.example.com"
""")
    p = CrmProcessor(store, rules, settings=crm_settings, outbox=ENCODING)
    m = mention(id="twitter:1", author="bob", text="site is down again", intent="comment")
    out = p.process(m)
    p.process(m)
    [hook] = read_messages(r, key_prefix, "webhook")
    assert hook.kind == "webhook" and hook.url == "https://hooks.example.com/x" and hook.in_reply_to == "twitter:1"
    payload = orjson.loads(hook.text)
    assert payload["event"] == "outage_report" and payload["mention"]["id"] == "twitter:1"
    [reply] = read_messages(r, key_prefix, "twitter")
    assert reply.kind == "reply" and reply.text == "Sorry bob, we are on it: https://status.example.com"
    assert [m["reply_id"] for m in out["outbox"]] == [hook.reply_id, reply.reply_id]


def _err(text: str) -> str:
    with pytest.raises(RuleError) as info:
        RuleSet.from_toml(text, source="r.toml")
    return str(info.value)


@pytest.mark.parametrize(("text", "message"), [
    ('[[rule]]\nname = "a"\n[rule.when]\n"mention.sentimnt" = "negative"\n[[rule.then]]\ntag = "x"\n',
     "r.toml: rule 'a' (line 4): mention.sentimnt: the enriched mention has no field 'sentimnt'"),
    ('[[rule]]\nname = "a"\n[rule.when]\n"customer.value" = { gt = "lots" }\n[[rule.then]]\ntag = "x"\n',
     "r.toml: rule 'a' (line 4): customer.value: gt: expected a number, got 'lots'"),
    ('[[rule]]\nname = "a"\n[rule.when]\n"mention.text" = { matches = "(" }\n[[rule.then]]\ntag = "x"\n',
     "r.toml: rule 'a' (line 4): mention.text: matches: bad regular expression"),
    ('[[rule]]\nname = "ok"\n[rule.when]\n"mention.intent" = "query"\n[[rule.then]]\ntag = "x"\n\n'
     '[[rule]]\nname = "b"\n[rule.when]\n"mention.intent" = "query"\n[[rule.then]]\nsend_sms = "hi"\n',
     "r.toml: rule 'b' (line 13): unknown action 'send_sms'"),
    ('[[rule]]\nname = "a"\n[rule.when]\n"mention.intent" = "query"\n',
     "r.toml: rule 'a' (line 2): no actions"),
    ('[[rule]]\nname = "a"\n[[rule.then]]\ntag = "x"\n', "r.toml: rule 'a' (line 2): no conditions"),
    ('[[rule]]\ndescription = "no name"\n[rule.when]\n"mention.intent" = "query"\n[[rule.then]]\ntag = "x"\n',
     "r.toml: rule #1 (line 1): missing name"),
    ('[[rule]]\nname = "a"\n[rule.when]\n"mention.intent" = "query"\n[[rule.then]]\nroute = "Sales Team"\n',
     "r.toml: rule 'a' (line 6): action route: queue must be a lower-case word"),
    ('[[rule]]\nname = "a"\n[rule.when]\n"mention.intent" = "query"\n[[rule.then]]\n'
     'outbox = "hi {customer.name!r:>{x}}"\n', "r.toml: rule 'a' (line 6): action outbox"),
    ('[[rule]]\nname = "a"\n[rule.when]\n"mention.intent" = "query"\n[[rule.then]]\nalert = { message = "{secret}" }\n',
     "r.toml: rule 'a' (line 6): action alert: message: template field {secret} must start with"),
    ('[[rule]]\nname = "a"\n[rule.when]\n"mention.intent" = "query"\n[[rule.then]]\ntag = "x"\n'
     '[[rule]]\nname = "a"\n[rule.when]\n"mention.intent" = "query"\n[[rule.then]]\ntag = "y"\n',
     "r.toml: rule 'a' (line 8): duplicate rule name"),
    ('[[rule]]\nname = "a"\n[rule.when]\n"history.favourite_colour" = "red"\n[[rule.then]]\ntag = "x"\n',
     "r.toml: rule 'a' (line 4): history.favourite_colour: history has no field"),
    ('[[rule]]\nname = "a"\nwhen = 3\n[[rule.then]]\ntag = "x"\n', "r.toml: rule 'a' (line 3): when must be a table"),
    ('[[rule]]\nname = "a"\n[rule.when]\n"mention.intent" = \n', "r.toml: not valid TOML: Invalid value (at line 4"),
    ('[[rule]]\nname = "a"\n[rule.when]\n"mention.intent" = "query"\n[[rule.then]]\ntag = "x"\nroute = "pr"\n',
     "r.toml: rule 'a' (line 5): each [[rule.then]] holds exactly one action"),
    ('[settings]\nx = 1\n', "r.toml: unknown top-level key(s) settings"),
])
def test_malformed_rules_name_the_rule_and_line(text, message):
    assert message in _err(text)


def test_engine_refuses_to_start_with_malformed_rules(tmp_path, r, key_prefix):
    bad = tmp_path / "rules.toml"
    bad.write_text('[[rule]]\nname = "x"\n[rule.when]\n"customer.tier" = { within = ["gold"] }\n[[rule.then]]\ntag = "y"\n')
    from crm import CrmSettings

    with pytest.raises(RuleError, match=r"rules.toml: rule 'x' \(line 4\): customer.tier: unknown operator 'within'"):
        CrmProcessor.from_redis(r, CrmSettings(prefix=key_prefix), rules_path=bad)
    with pytest.raises(RuleError, match="does not exist"):
        load_rules(tmp_path / "missing.toml")


def test_operators_and_disabled_rules():
    rules = RuleSet.from_toml("""
[[rule]]
name = "ops"
[rule.when]
"mention.keywords" = { contains_any = ["refund", "money"] }
"customer.value" = { gte = 100, lt = 1000 }
"customer.email" = { exists = true }
"mention.lang" = { not_in = ["de"] }
"customer.tier" = { ne = "bronze" }
[[rule.then]]
tag = ["a", "b"]

[[rule]]
name = "off"
enabled = false
[rule.when]
"mention.intent" = "query"
[[rule.then]]
tag = "never"
""")
    assert rules.names == ["ops"]
    hit = rules.evaluate({"keywords": ["Refund"], "lang": "en"}, {"value": 500.0, "email": "a@b", "tier": "Gold"}, {})
    assert [h.actions for h in hit] == [[{"kind": "tag", "tags": ["a", "b"]}]]
    assert rules.evaluate({"keywords": ["refund"], "lang": "de"}, {"value": 500.0, "email": "a@b"}, {}) == []
    assert rules.evaluate({"keywords": ["refund"]}, {"value": 5000.0, "email": "a@b"}, {}) == []
    assert rules.evaluate({"keywords": ["refund"]}, {"value": 500.0}, {}) == []
