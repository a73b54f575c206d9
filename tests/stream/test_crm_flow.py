"""The CRM step inside the flow, driven through `pulse` as a user runs it: settings file, rules, refusal."""

from __future__ import annotations

from pathlib import Path

import redis
from pulse_testkit import make_mentions, pulse

from crm import CrmProcessor, CrmSettings, RuleSet, make_store
from crm.sla import iso_ms
from stream.crm_steps import CrmHost
from stream.keys import Keys
from stream.metrics import totals
from stream.schema import Enriched

CRM_TOML = """
[crm]
prefix = "ignored:"          # the flow's prefix wins: the CRM and the analytics share one key space

[crm.sla.minutes]
forum = { urgent = 7, high = 7, medium = 7, low = 7 }

[crm.assignment]
default = "round_robin"
service = "round_robin"
"""


def _cases(r: redis.Redis, prefix: str) -> list[dict[str, str]]:
    store = make_store(r, prefix)
    ids = store.case_ids(open_only=False, limit=100_000)
    return [c for c in store.get_cases(ids) if c]


def test_flow_opens_cases_with_the_crm_settings_file(write_jsonl, tmp_path: Path, redis_url: str, key_prefix: str,
                                                     r: redis.Redis) -> None:
    config = tmp_path / "crm.toml"
    config.write_text(CRM_TOML)
    for agent in ("ann", "bob"):
        pulse("crm", "agents", "add", agent, "--capacity", "50", redis_url=redis_url, prefix=key_prefix)
    rows = [m for m in make_mentions(40) if not m.get("from_brand")]
    path = write_jsonl(rows)
    run = pulse("replay", str(path), "--speed", "0", "-v", redis_url=redis_url, prefix=key_prefix,
                extra_env={"PULSE_CRM_CONFIG": str(config), "PULSE_RULES": "none"})
    assert f"CRM settings from {config}" in run.stderr
    assert totals(r, Keys(key_prefix))["accepted"] == len(rows)
    cases = _cases(r, key_prefix)
    queries = [m for m in rows if "how do i" in m["text"].lower()]
    assert len(cases) == len(queries) > 10, "every query opened one case in the flow"
    assert {c["strategy"] for c in cases} == {"round_robin"}
    assert {c["sla_ms"] for c in cases if c["channel"] == "forum"} == {str(7 * 60_000)}
    assert {c["sla_ms"] for c in cases if c["channel"] == "twitter"} != {str(7 * 60_000)}  # defaults elsewhere
    # round robin over two agents with room: fair within one
    agents = [c["agent"] for c in sorted(cases, key=lambda c: int(c["created_ms"]))]
    assert abs(agents.count("ann") - agents.count("bob")) <= 1
    assert not r.exists("ignored:cases:all")


def test_flow_refuses_to_start_on_a_malformed_rules_or_crm_file(write_jsonl, tmp_path: Path, redis_url: str,
                                                               key_prefix: str, r: redis.Redis) -> None:
    path = write_jsonl(make_mentions(5))
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "vip"\n[rule.when]\n"mention.moood" = "sad"\n[[rule.then]]\ntag = "y"\n')
    bad_config = tmp_path / "crm.toml"
    bad_config.write_text('[crm.assignment]\nservice = "fastest"\n')
    for env, needles in (({"PULSE_RULES": str(rules)}, ("vip", "line", "moood")),
                         ({"PULSE_CRM_CONFIG": str(bad_config)}, (str(bad_config), "assignment.service",
                                                                  "fastest"))):
        proc = pulse("replay", str(path), "--speed", "0", redis_url=redis_url, prefix=key_prefix, check=False,
                     extra_env=env)
        assert proc.returncode == 2, proc.stderr
        line = proc.stderr.strip()
        assert len(line.splitlines()) == 1 and "Traceback" not in line, line
        assert all(n in line for n in needles), line
    assert totals(r, Keys(key_prefix))["offered"] == 0, "nothing ran"


def test_demo_team_answers_its_cases_and_frees_up(redis_url: str, key_prefix: str, r: redis.Redis) -> None:
    # `pulse demo` at 3600x: an event hour a second. The simulated team (stream/demo_agents.py) answers the cases
    # assigned to its agents, escalations to the supervisor queue included, and resolves them, freeing the slots.
    import os
    import signal
    import subprocess
    import time

    from pulse_testkit import PULSE, free_ports

    from stream.demo_agents import StaffPlan

    [port] = free_ports()
    env = dict(os.environ, REDIS_URL=redis_url, PULSE_PREFIX=key_prefix, PULSE_ALERTS_PORT=str(port), COLUMNS="250")
    env.pop("PULSE_CRM_CONFIG", None)
    proc = subprocess.Popen([*PULSE, "demo", "--no-dashboard", "--speed", "3600"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    store = make_store(r, key_prefix)
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            if store.case_stats().get("resolved", 0) >= 20:
                break
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert f"demo on the prefix you gave, {key_prefix}" in stderr
    team = {agent for agent, _ in StaffPlan().roster()}
    resolved = [c for c in _cases(r, key_prefix) if c.get("status") == "resolved"]
    assert len(resolved) >= 20, store.case_stats()
    assert all(c["resolved_by"] == c["agent"] and c["agent"] in team for c in resolved)
    assert all(int(c["resolved_ms"]) >= int(c["replied_ms"]) >= int(c["created_ms"]) for c in resolved)
    served = {c["queue"] for c in resolved}
    assert "service" in served, served


def test_alerts_of_a_tick_survive_the_refusal_of_the_mention_that_ticked(r: redis.Redis, key_prefix: str) -> None:
    """A mention the CRM refuses (here: a rule reply that a CRM without an outbox cannot send) may still have ticked
    the timers at its event time: the SLA breaches that tick fired are published, beside the mention's dead letter."""
    t0 = 1_714_557_600_000
    settings = CrmSettings(prefix=key_prefix)
    rules = RuleSet.from_toml('[[rule]]\nname = "thank"\n[rule.when]\n"mention.text" = { contains = "thanks" }\n'
                              '[[rule.then]]\noutbox = { text = "You are welcome" }\n')
    host = CrmHost(redis_url="unused: the processor is set below", settings=settings, rules_path=None)
    host._proc = CrmProcessor(make_store(r, key_prefix), rules, settings=settings)  # no outbox: sends are refused

    def enriched(i: int, text: str, ts_ms: int, intent: str) -> Enriched:
        return Enriched.from_dict({"id": f"twitter:{i}", "channel": "twitter", "brand": "acme", "author": f"u{i}",
                                   "text": text, "ts": iso_ms(ts_ms), "intent": intent, "sentiment": "negative",
                                   "sentiment_score": -0.5})

    first = host.process([enriched(1, "how do I get my refund?", t0, "query")])
    assert [kind for kind, _ in first] == ["enriched"] and first[0][1].case_id
    later = host.process([enriched(2, "thanks anyway", t0 + 2 * 86_400_000, "comment")])  # past its SLA
    kinds = [kind for kind, _ in later]
    assert kinds.count("dlq") == 1 and "no outbox" in next(item.reason for kind, item in later if kind == "dlq")
    alerts = [item for kind, item in later if kind == "alert"]
    assert alerts and {a.kind for a in alerts} == {"sla_breach"}
    assert all(first[0][1].case_id in a.message for a in alerts)
