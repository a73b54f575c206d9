"""The ``pulse crm`` / ``pulse kb`` commands against a real Redis: output, exit codes, one-line errors."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import typer
from crm_helpers import T0
from typer.testing import CliRunner

from connectors.outbox import ENCODING
from crm import SAMPLE_KB, CrmProcessor, CrmSettings
from stream.cli.crm import register

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_CUSTOMERS = ROOT / "crm" / "data" / "customers_sample.csv"


@pytest.fixture()
def cli(redis_url, key_prefix, r):
    app = typer.Typer()
    register(app)
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, list(args), env={"REDIS_URL": redis_url, "PULSE_PREFIX": key_prefix,
                                                   "COLUMNS": "200"})

    return run


def test_import_link_code_and_show_customer(cli, store):
    res = cli("crm", "import", str(SAMPLE_CUSTOMERS))
    assert res.exit_code == 0, res.output
    assert "4 rows: 4 created, 0 updated" in res.output
    again = cli("crm", "import", str(SAMPLE_CUSTOMERS))
    assert "0 created, 4 updated" in again.output
    code = cli("crm", "link-code", "C-1001", "--ttl-hours", "2")
    assert code.exit_code == 0 and code.output.strip().splitlines()[0].startswith("LINK-")
    shown = cli("crm", "show", "C-1001", "--json")
    assert shown.exit_code == 0
    assert orjson.loads(shown.stdout)["crm"]["name"] == "Ann Archer"


def test_import_reports_rejected_rows(cli, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,name,twitter\n,NoId,@x\nC1,Ann,@a\nC2,Bob,@a\nC3,Cy,@c\n")
    report = tmp_path / "rejected.csv"
    res = cli("crm", "import", str(bad), "--strict", "--report", str(report))
    assert res.exit_code == 1
    assert "4 rows: 1 created" in res.output and "missing customer_id" in res.output
    lines = report.read_text().splitlines()
    assert lines[0] == "line,customer_id,reason" and len(lines) == 4
    missing = cli("crm", "import", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 2 and "error: customer file" in missing.output and "Traceback" not in missing.output


def test_bad_input_is_one_line_and_exit_2(cli, tmp_path):
    res = cli("crm", "link-code", "C-404")
    assert res.exit_code == 2 and "no customer 'C-404'" in res.output and "Traceback" not in res.output
    res = cli("crm", "reply", "C-nope", "--text", "hi")
    assert res.exit_code == 2 and "no case 'C-nope'" in res.output
    res = cli("crm", "reply", "C-nope")
    assert res.exit_code == 2 and "give --text and/or --article" in res.output
    res = cli("crm", "agents", "online", "ghost")
    assert res.exit_code == 2 and "no agent 'ghost'" in res.output
    bad_rules = tmp_path / "rules.toml"
    bad_rules.write_text('[[rule]]\nname = "x"\n[rule.when]\n"mention.moood" = "sad"\n[[rule.then]]\ntag = "y"\n')
    res = cli("crm", "rules", "check", str(bad_rules))
    assert res.exit_code == 2 and "rule 'x' (line 4): mention.moood" in res.output
    ok = cli("crm", "rules", "check", str(ROOT / "crm" / "data" / "rules.toml"))
    assert ok.exit_code == 0 and "5 rule(s) OK" in ok.output
    res = cli("crm", "sla", "--now", "soon")
    assert res.exit_code == 2 and "unparseable timestamp" in res.output
    res = cli("crm", "show", "nobody")
    assert res.exit_code == 2 and "no customer or prospect 'nobody'" in res.output


def test_agents_cases_reply_resolve(cli, store, key_prefix, mention, r):
    assert cli("crm", "agents", "add", "ann", "--capacity", "1", "--departments", "service",
               "--languages", "en").exit_code == 0
    assert cli("crm", "agents", "add", "bob", "--capacity", "1", "--offline").exit_code == 0
    proc = CrmProcessor(store, settings=CrmSettings(prefix=key_prefix, auto_tick_ms=0), outbox=ENCODING)
    proc.process(mention(id="twitter:1", author="zed", ts_ms=T0))
    proc.process(mention(id="twitter:2", author="kim", ts_ms=T0 + 1000))
    listed = cli("crm", "agents", "list", "--json")
    loads = {a["id"]: (a["load"], a["status"]) for a in orjson.loads(listed.stdout)}
    assert loads == {"ann": (1, "online"), "bob": (0, "offline")}
    cases = cli("crm", "cases", "--json")
    assert [c["id"] for c in orjson.loads(cases.stdout)] == ["C-twitter:1", "C-twitter:2"]
    online = cli("crm", "agents", "online", "bob")
    assert "assigned C-twitter:2 -> bob" in online.output
    off = cli("crm", "agents", "offline", "ann")
    assert off.exit_code == 0 and "queued C-twitter:1" in off.output
    more = cli("crm", "agents", "capacity", "bob", "2")
    assert "assigned C-twitter:1 -> bob" in more.output
    sent = cli("crm", "reply", "C-twitter:1", "--text", "We're on it", "--private")
    assert sent.exit_code == 0 and f"{key_prefix}outbox:twitter in reply to twitter:1" in sent.output
    assert cli("crm", "reply", "C-twitter:1", "--text", "We're on it", "--private").output.count("already sent") == 1
    assert r.xlen(f"{key_prefix}outbox:twitter") == 1
    shown = orjson.loads(cli("crm", "show", "C-twitter:1", "--json").stdout)
    assert shown["case"]["status"] == "replied"
    assert [e["event"] for e in shown["events"]][:3] == ["opened", "assigned", "unassigned"]
    done = cli("crm", "resolve", "C-twitter:1")
    assert done.exit_code == 0 and "resolved" in done.output
    again = cli("crm", "reply", "C-twitter:1", "--text", "hello?")
    assert again.exit_code == 2 and "is resolved" in again.output
    stats = cli("crm", "rules", "stats", "--rules", str(ROOT / "crm" / "data" / "rules.toml"), "--json")
    assert orjson.loads(stats.stdout)["press-to-pr"] == {"hits": 0}
    sla = cli("crm", "sla", "--now", "2030-01-01T00:00:00Z", "--json")
    assert [a["kind"] for a in orjson.loads(sla.stdout)] == ["sla_breach"]  # C-twitter:2 never answered


def test_kb_import_and_search(cli, tmp_path):
    res = cli("kb", "import", str(SAMPLE_KB))
    assert res.exit_code == 0 and "article(s) imported, 0 rejected" in res.output
    hits = orjson.loads(cli("kb", "search", "my luggage is lost", "--json").stdout)
    assert hits[0]["id"] == "lost-baggage" and len(hits) <= 3
    assert "no matching article" in cli("kb", "search", "qqqq zzzz").output
    empty = tmp_path / "empty"
    empty.mkdir()
    res = cli("kb", "import", str(empty))
    assert res.exit_code == 2 and "no usable articles" in res.output


def test_merge_a_prospect_and_list_rule_tasks(cli, store, key_prefix, mention):
    assert cli("crm", "import", str(SAMPLE_CUSTOMERS)).exit_code == 0
    rules = CrmSettings(prefix=key_prefix, auto_tick_ms=0)
    from crm import SAMPLE_RULES, load_rules

    proc = CrmProcessor(store, load_rules(SAMPLE_RULES), settings=rules, outbox=ENCODING)
    first = proc.process(mention(id="twitter:p1", author="newbie", text="where is my order?", ts_ms=T0))
    assert first["prospect"] is True and first["customer_id"] == "p:twitter:newbie"
    # an agent recognises the prospect as C-1002 (same person, new handle)
    res = cli("crm", "merge", "p:twitter:newbie", "C-1002")
    assert res.exit_code == 0 and "merged p:twitter:newbie into C-1002" in res.output
    shown = orjson.loads(cli("crm", "show", "C-1002", "--json").stdout)
    assert "twitter:p1" in [m["id"] for m in shown["recent_mentions"]]
    assert "C-twitter:p1" in [c["id"] for c in shown["open_cases"]]
    assert "already merged" in cli("crm", "merge", "p:twitter:newbie", "C-1002").output
    for args, needle in ((("p:twitter:ghost", "C-1002"), "no such prospect"),
                         (("p:twitter:newbie", "C-9999"), "no such customer"),
                         (("C-1001", "C-1002"), "not a prospect")):
        bad = cli("crm", "merge", *args)
        assert bad.exit_code == 2 and needle in bad.output and len(bad.output.strip().splitlines()) == 1
    # a rule's task: cancel intent with a high churn risk -> retention call in the sales queue
    proc.process(mention(id="twitter:c1", author="@bobbaker", text="I want to cancel my plan", churn_risk=0.9,
                         intent="comment", ts_ms=T0 + 1000))
    listed = orjson.loads(cli("crm", "tasks", "--json").stdout)
    assert [(t["rule"], t["queue"], t["customer_id"]) for t in listed] == [("cancel-retention", "sales", "C-1002")]
    table = cli("crm", "tasks")
    assert table.exit_code == 0 and "Retention call for Bob Baker" in table.output
