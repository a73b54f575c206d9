"""The ``pulse crm …`` and ``pulse kb …`` commands: customers, link codes, agents, cases, replies, rules, KB.

Wired into the ``pulse`` app by ``register(app)``. Every command reaches Redis at ``--redis-url`` /
``REDIS_URL`` (else the embedded server under ``.pulse/``) with the key prefix ``--prefix`` /
``PULSE_PREFIX``; CRM settings come from ``--crm-config`` / ``PULSE_CRM_CONFIG`` (e.g. ``crm/data/crm.toml``).
Bad input gives one line on stderr and exit code 2; nothing is half-written.

>>> import typer
>>> app = typer.Typer()
>>> register(app)
>>> sorted(g.name for g in app.registered_groups)
['crm', 'kb']
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from crm import (
    CrmError,
    CrmProcessor,
    CrmSettings,
    KnowledgeBase,
    customer_360,
    import_customers,
    issue_link_code,
    load_articles,
    load_rules,
    make_store,
)
from crm.assignment import Agent, add_agent, list_agents, set_agent_capacity, set_agent_online
from crm.cases import case_from_hash
from crm.customers import read_customer_file
from crm.identity import merge_prospect
from crm.processor import parse_ts_ms
from crm.sla import iso_ms
from crm.store import CrmStore
from stream.redisconn import RedisUnavailable, connect, ensure_redis_url
from stream.service_desk import answer_case, close_case

__all__ = ["register"]

log = logging.getLogger(__name__)
out = Console()
err = Console(stderr=True)

RedisUrl = Annotated[str | None, typer.Option("--redis-url", envvar="REDIS_URL", show_default=False,
                                             help="Redis URL; default: an embedded redis-server under .pulse/.")]
Prefix = Annotated[str | None, typer.Option("--prefix", envvar="PULSE_PREFIX", show_default=False,
                                           help="Key prefix (default pulse:, or the one in --crm-config).")]
Config = Annotated[Path | None, typer.Option("--crm-config", envvar="PULSE_CRM_CONFIG", show_default=False,
                                            help="CRM settings TOML (SLAs, assignment strategies, ...).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _now_ms() -> int:
    return int(time.time() * 1000)


@contextmanager
def _crm(redis_url: str | None, prefix: str | None, config: Path | None) -> Iterator[tuple[CrmStore, CrmSettings]]:
    """Settings and store for one command; CRM errors and unreachable Redis become one clean line."""
    try:
        settings = CrmSettings.from_toml(config) if config else CrmSettings()
        if prefix:
            settings = settings.with_changes(prefix=prefix)
        client = connect(ensure_redis_url(redis_url))
        yield make_store(client, settings.prefix), settings
    except (CrmError, RedisUnavailable) as exc:
        raise _fail(str(exc)) from None


def _print_json(data: Any) -> None:
    out.print_json(orjson.dumps(data, default=str).decode())


# -- pulse crm ----------------------------------------------------------------------------------------
crm_app = typer.Typer(name="crm", no_args_is_help=True,
                      help="CRM: customers and identity, link codes, agents, cases, replies, rules.")
agents_app = typer.Typer(no_args_is_help=True, help="Service agents: add, list, online/offline, capacity.")
rules_app = typer.Typer(no_args_is_help=True, help="Business rules: check a file, hit counts and outcomes.")
kb_app = typer.Typer(name="kb", no_args_is_help=True, help="Knowledge base: import articles, search them.")


@crm_app.command("import")
def import_cmd(
    path: Annotated[Path, typer.Argument(help="Customer file: .csv or .parquet (customer_id, name, email, "
                                              "tier, value, products, handles …).")],
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any row is rejected.")] = False,
    report: Annotated[Path | None, typer.Option("--report", help="Write the rejected rows (line, customer_id, "
                                                                 "reason) to this CSV.")] = None,
    redis_url: RedisUrl = None, prefix: Prefix = None, config: Config = None,
) -> None:
    """Import customers idempotently (re-importing the same file changes nothing); rejected rows are reported."""
    with _crm(redis_url, prefix, config) as (store, settings):
        df = read_customer_file(path)
        with Progress(TextColumn("[bold]importing[/]"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeRemainingColumn(), console=err, transient=True) as bar:
            task = bar.add_task("import", total=df.height)
            rep = import_customers(store, df, now_ms=_now_ms(), keep=settings.history_keep,
                                   progress=lambda n: bar.advance(task, n))
    out.print(f"{rep.rows} rows: {rep.created} created, {rep.updated} updated, {rep.handles} handles linked, "
              f"{len(rep.merged_prospects)} prospects merged, {len(rep.rejected)} rejected")
    for w in rep.warnings[:20]:
        err.print(f"[yellow]warning:[/] {w}", highlight=False)
    if rep.rejected:
        table = Table("line", "customer", "reason", title="rejected rows")
        for r in rep.rejected[:50]:
            table.add_row(str(r.line), r.customer_id or "-", r.reason)
        err.print(table)
        if len(rep.rejected) > 50:
            err.print(f"… and {len(rep.rejected) - 50} more" + ("" if report else " (use --report FILE)"))
    if report is not None:
        with report.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["line", "customer_id", "reason"])
            writer.writerows([r.line, r.customer_id, r.reason] for r in rep.rejected)
    if strict and rep.rejected:
        raise typer.Exit(1)


@crm_app.command("link-code")
def link_code_cmd(
    customer: Annotated[str, typer.Argument(help="Customer id to link a social handle to.")],
    ttl_hours: Annotated[float | None, typer.Option("--ttl-hours", help="Hours the code stays valid "
                                                                        "(default from settings, 168).")] = None,
    redis_url: RedisUrl = None, prefix: Prefix = None, config: Config = None,
) -> None:
    """Issue a one-time, expiring code; a mention or DM containing it links its author's handle to CUSTOMER."""
    if ttl_hours is not None and ttl_hours <= 0:
        raise typer.BadParameter("must be > 0", param_hint="--ttl-hours")
    with _crm(redis_url, prefix, config) as (store, settings):
        code = issue_link_code(store, customer, now_ms=_now_ms(),
                               ttl_hours=ttl_hours or settings.link_code_ttl_hours, prefix=settings.link_code_prefix)
    out.print(code.code)
    err.print(f"for customer {code.customer_id}, single use, valid until {iso_ms(code.expires_ms)}")


@agents_app.command("add")
def agents_add(
    agent_id: Annotated[str, typer.Argument(help="Agent id (letters, digits, _ . @ -).")],
    name: Annotated[str, typer.Option("--name", help="Display name (default: the id).")] = "",
    capacity: Annotated[int, typer.Option("--capacity", min=0, help="Unresolved cases the agent can hold.")] = 5,
    departments: Annotated[str, typer.Option("--departments", help="Queues served, comma separated "
                                                                     "(service, sales, marketing, pr, …); "
                                                                     "empty = all.")] = "",
    channels: Annotated[str, typer.Option("--channels", help="Channels handled (skill-based); empty = all.")] = "",
    languages: Annotated[str, typer.Option("--languages", help="Languages spoken (skill-based); empty = all.")] = "",
    offline: Annotated[bool, typer.Option("--offline", help="Add the agent as offline.")] = False,
    redis_url: RedisUrl = None, prefix: Prefix = None, config: Config = None,
) -> None:
    """Add or update an agent (their open cases are kept); waiting cases they can take are assigned."""
    with _crm(redis_url, prefix, config) as (store, _):
        res = add_agent(store, Agent.create(agent_id, name=name, capacity=capacity, departments=departments,
                                            channels=channels, languages=languages),
                        online=not offline, now_ms=_now_ms())
    out.print(f"agent {agent_id} {'added' if res['created'] else 'updated'} ({'offline' if offline else 'online'})")
    for case_id, agent in res["assigned"]:
        out.print(f"  assigned {case_id} -> {agent}")


@agents_app.command("list")
def agents_list(json: Json = False, redis_url: RedisUrl = None, prefix: Prefix = None, config: Config = None) -> None:
    """Agents with status, load/capacity and skills."""
    with _crm(redis_url, prefix, config) as (store, _):
        agents = list_agents(store)
    if json:
        _print_json([_agent_dict(a) for a in agents])
        return
    table = Table("agent", "name", "status", "load", "departments", "channels", "languages")
    for a in agents:
        table.add_row(a.id, a.name, a.status, f"{a.load}/{a.capacity}", a.departments or "*", a.channels or "*",
                      a.languages or "*")
    out.print(table)


def _agent_dict(a: Agent) -> dict[str, Any]:
    return {"id": a.id, "name": a.name, "status": a.status, "load": a.load, "capacity": a.capacity,
            "departments": a.departments, "channels": a.channels, "languages": a.languages}


def _status(agent_id: str, online: bool, redis_url: str | None, prefix: str | None, config: Path | None) -> None:
    with _crm(redis_url, prefix, config) as (store, _):
        res = set_agent_online(store, agent_id, online, now_ms=_now_ms())
    out.print(f"agent {agent_id} is {'online' if online else 'offline'}")
    for case_id, agent in res["assigned"]:
        out.print(f"  assigned {case_id} -> {agent}")
    for case_id in res["queued"]:
        out.print(f"  queued {case_id} (no agent with room)")


@agents_app.command("online")
def agents_online(agent_id: Annotated[str, typer.Argument(help="Agent id.")], redis_url: RedisUrl = None,
                  prefix: Prefix = None, config: Config = None) -> None:
    """Bring an agent online: waiting cases they can take are assigned at once."""
    _status(agent_id, True, redis_url, prefix, config)


@agents_app.command("offline")
def agents_offline(agent_id: Annotated[str, typer.Argument(help="Agent id.")], redis_url: RedisUrl = None,
                   prefix: Prefix = None, config: Config = None) -> None:
    """Take an agent offline: their unresolved cases go to other agents, or wait in the queue."""
    _status(agent_id, False, redis_url, prefix, config)


@agents_app.command("capacity")
def agents_capacity(
    agent_id: Annotated[str, typer.Argument(help="Agent id.")],
    capacity: Annotated[int, typer.Argument(min=0, help="Unresolved cases the agent can hold.")],
    redis_url: RedisUrl = None, prefix: Prefix = None, config: Config = None,
) -> None:
    """Set an agent's capacity; more room assigns waiting cases at once."""
    with _crm(redis_url, prefix, config) as (store, _):
        res = set_agent_capacity(store, agent_id, capacity, now_ms=_now_ms())
    out.print(f"agent {agent_id} capacity {capacity}")
    for case_id, agent in res["assigned"]:
        out.print(f"  assigned {case_id} -> {agent}")


@crm_app.command("reply")
def reply_cmd(
    case_id: Annotated[str, typer.Argument(help="Case id (C-…).")],
    text: Annotated[str | None, typer.Option("--text", help="Reply text.")] = None,
    article: Annotated[str | None, typer.Option("--article", help="Answer with this KB article (and teach the "
                                                                  "KB that it fits this case).")] = None,
    private: Annotated[bool, typer.Option("--private", help="Move the conversation to a private message "
                                                            "(a DM request).")] = False,
    agent: Annotated[str | None, typer.Option("--agent", help="Agent replying (default: the assignee).")] = None,
    reply_id: Annotated[str | None, typer.Option("--reply-id", help="Idempotency key (default: derived from "
                                                                    "case, text and privacy).")] = None,
    redis_url: RedisUrl = None, prefix: Prefix = None, config: Config = None,
) -> None:
    """Reply on the channel the case came from, as a reply to the customer's mention (idempotent by reply id)."""
    if not (text and text.strip()) and not article:
        raise typer.BadParameter("give --text and/or --article", param_hint="--text/--article")
    with _crm(redis_url, prefix, config) as (store, settings):
        res = answer_case(store, settings, case_id, text=text or "", article_id=article, private=private, agent=agent,
                          reply_id=reply_id, now_ms=_now_ms())
    r = res["reply"]
    what = "already sent" if res["outcome"] == "duplicate" else "sent"
    out.print(f"{r['kind'].replace('_', ' ')} {r['reply_id']} {what} to {store.keys.outbox(r['channel'])} "
              f"in reply to {r['in_reply_to']}")
    if res["response_ms"] is not None:
        out.print(f"response time {res['response_ms'] / 60_000:.1f} min")


@crm_app.command("resolve")
def resolve_cmd(
    case_id: Annotated[str, typer.Argument(help="Case id (C-…).")],
    agent: Annotated[str, typer.Option("--agent", help="Who resolved it.")] = "",
    redis_url: RedisUrl = None, prefix: Prefix = None, config: Config = None,
) -> None:
    """Resolve a case (a new customer mention in its thread reopens it); the agent's slot goes to the queue."""
    with _crm(redis_url, prefix, config) as (store, settings):
        res = close_case(store, settings, case_id, now_ms=_now_ms(), by=agent)
    out.print(f"case {case_id} resolved after {(res['resolution_ms'] or 0) / 60_000:.1f} min")
    for cid, who in res["assigned"]:
        out.print(f"  assigned {cid} -> {who}")


@crm_app.command("show")
def show_cmd(
    item_id: Annotated[str, typer.Argument(help="A case id (C-…) or a customer / prospect id.")],
    json: Json = False, redis_url: RedisUrl = None, prefix: Prefix = None, config: Config = None,
) -> None:
    """Show a case (with its timeline) or a customer's 360 view."""
    data: dict[str, Any]
    with _crm(redis_url, prefix, config) as (store, _):
        case = store.get_case(item_id)
        if case is not None:
            data = {"case": case_from_hash(case), "events": store.case_events(item_id),
                    "tags": store.case_tags(item_id)}
        else:
            data = customer_360(store, item_id)
    if json:
        _print_json(data)
        return
    if "case" in data:
        c = data["case"]
        out.print(f"[bold]{c['id']}[/] {c.get('status')} · {c.get('priority')} · queue {c.get('queue')} · "
                  f"{c.get('channel')} · agent {c.get('agent') or '-'} · customer {c.get('customer_id') or '-'}")
        out.print(c.get("text", ""), markup=False, highlight=False)
        for s in c.get("suggestions") or []:
            out.print(f"  suggested: {s['id']} ({s['title']})", markup=False)
        table = Table("time", "event", "detail")
        for e in data["events"]:
            detail = ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("ts", "event") and v != "")
            table.add_row(iso_ms(e["ts"]), e["event"], detail)
        out.print(table)
        return
    crm_fields = ", ".join(f"{k}={v}" for k, v in data["crm"].items() if v not in (None, [], ""))
    out.print(f"[bold]{data['id']}[/] ({data['kind']}) {crm_fields}", highlight=False)
    out.print(f"handles: {', '.join(data['handles']) or '-'}", markup=False)
    out.print(f"churn risk {data['churn_risk']:.2f} · influence {data['influence']['score']:.2f} · "
              f"{data['activity']['mentions']} mentions · tags {', '.join(data['tags']) or '-'}")
    for m in data["recent_mentions"][:10]:
        out.print(f"  {iso_ms(m['ts'])} {m['channel']:9} {m['sentiment']:8} {m['text'][:80]}", markup=False)
    for c in data["open_cases"]:
        out.print(f"  open case {c['id']} {c['status']} {c['priority']} agent {c['agent'] or '-'}", markup=False)


@crm_app.command("merge")
def merge_cmd(
    prospect: Annotated[str, typer.Argument(help="Prospect id (p:CHANNEL:HANDLE, as `pulse crm show` and the "
                                                 "cases list give it).")],
    customer: Annotated[str, typer.Argument(help="Customer id the prospect turned out to be.")],
    redis_url: RedisUrl = None, prefix: Prefix = None, config: Config = None,
) -> None:
    """Merge a prospect into a customer: handles, mentions, cases, counters and tags move with it."""
    with _crm(redis_url, prefix, config) as (store, settings):
        moved = merge_prospect(store, prospect, customer, now_ms=_now_ms(), keep=settings.history_keep)
    out.print(f"merged {prospect} into {customer}" if moved else f"{prospect} was already merged")


@crm_app.command("tasks")
def tasks_cmd(
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many.")] = 20,
    json: Json = False, redis_url: RedisUrl = None, prefix: Prefix = None, config: Config = None,
) -> None:
    """Open tasks the business rules created (retention calls, community invitations, ...), by due time."""
    with _crm(redis_url, prefix, config) as (store, _):
        tasks = store.tasks(limit)
    if json:
        _print_json(tasks)
        return
    table = Table("task", "rule", "queue", "due", "customer", "title")
    for t in tasks:
        table.add_row(t.get("id", ""), t.get("rule", ""), t.get("queue", ""),
                      iso_ms(int(t["due_ms"])) if t.get("due_ms") else "-", t.get("customer_id") or "-",
                      t.get("title", ""))
    out.print(table)


@crm_app.command("cases")
def cases_cmd(
    all_cases: Annotated[bool, typer.Option("--all", help="Every case, newest first (default: open ones by "
                                                          "deadline).")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many.")] = 20,
    json: Json = False, redis_url: RedisUrl = None, prefix: Prefix = None, config: Config = None,
) -> None:
    """List open cases by response deadline (or all cases)."""
    with _crm(redis_url, prefix, config) as (store, _):
        ids = store.case_ids(open_only=not all_cases, limit=limit)
        cases = [case_from_hash(h) for h in store.get_cases(ids) if h]
    if json:
        _print_json(cases)
        return
    # one line per case, the id whole (it is what `pulse crm reply` takes); the text gives way to the rest
    rows = [(c["id"], c.get("status", ""), c.get("priority", ""), c.get("queue", ""), c.get("agent") or "-",
             iso_ms(c["due_ms"])[5:16].replace("T", " ") if c.get("due_ms") else "-",
             " ".join((c.get("text") or "").split())) for c in cases]
    names = ("case", "status", "priority", "queue", "agent", "due (UTC)")
    widths = [max([len(n), *(len(r[i]) for r in rows)]) for i, n in enumerate(names)]
    table = Table(box=None, pad_edge=False)
    for name, width in zip(names, widths, strict=True):
        table.add_column(name, no_wrap=True, min_width=width)
    table.add_column("text", no_wrap=True, overflow="ellipsis",
                     max_width=max(12, out.width - sum(widths) - 2 * len(widths) - 1))
    for row in rows:
        table.add_row(*row)
    out.print(table)


@crm_app.command("sla")
def sla_cmd(
    now: Annotated[str | None, typer.Option("--now", help="Event time to check the timers at (ISO; default now).")] = None,
    json: Json = False, redis_url: RedisUrl = None, prefix: Prefix = None, config: Config = None,
) -> None:
    """Fire the SLA timers that are due: sla_breach alerts (a warning before, a breach at the deadline)."""
    try:
        now_ms = parse_ts_ms(now) if now else _now_ms()
    except CrmError as exc:
        raise typer.BadParameter(str(exc), param_hint="--now") from None
    with _crm(redis_url, prefix, config) as (store, settings):
        alerts = CrmProcessor(store, settings=settings).tick(now_ms)
    if json:
        _print_json(alerts)
        return
    for a in alerts:
        out.print(f"[{a['severity']}] {a['message']}", markup=False)
    out.print(f"{len(alerts)} alert(s)")


@rules_app.command("check")
def rules_check(path: Annotated[Path, typer.Argument(help="Rules TOML file.")]) -> None:
    """Compile a rules file; a malformed one names the rule and line."""
    try:
        rules = load_rules(path)
    except CrmError as exc:
        raise _fail(str(exc)) from None
    out.print(f"{path}: {len(rules)} rule(s) OK: {', '.join(rules.names)}")


@rules_app.command("stats")
def rules_stats(
    rules_path: Annotated[Path | None, typer.Option("--rules", help="Rules file, to list rules never hit too.")] = None,
    json: Json = False, redis_url: RedisUrl = None, prefix: Prefix = None, config: Config = None,
) -> None:
    """Hit counts and outcomes (the customer's next mention after a hit, and recorded outcomes) per rule."""
    with _crm(redis_url, prefix, config) as (store, settings):
        rules = load_rules(rules_path) if rules_path else None
        stats = CrmProcessor(store, rules, settings=settings).rule_stats()
    if json:
        _print_json(stats)
        return
    table = Table("rule", "hits", "outcomes")
    for name, counts in sorted(stats.items()):
        outcomes = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()) if k != "hits")
        table.add_row(name, str(counts.get("hits", 0)), outcomes or "-")
    out.print(table)


# -- pulse kb -----------------------------------------------------------------------------------------
@kb_app.command("import")
def kb_import(
    path: Annotated[Path, typer.Argument(help="A CSV (title, body, tags, id, url) or a folder of .md/.txt/.json/"
                                              ".csv articles.")],
    redis_url: RedisUrl = None, prefix: Prefix = None, config: Config = None,
) -> None:
    """Import knowledge-base articles (same id replaces); rejected ones are listed."""
    with _crm(redis_url, prefix, config) as (store, settings):
        articles, rejected = load_articles(path)
        if not articles:
            raise _fail(f"{path}: no usable articles" + (f" ({rejected[0]})" if rejected else ""))
        KnowledgeBase(store, feedback_weight=settings.kb_feedback_weight).import_articles(articles)
    out.print(f"{len(articles)} article(s) imported, {len(rejected)} rejected")
    for r in rejected:
        err.print(f"[yellow]rejected:[/] {r}", highlight=False)


@kb_app.command("search")
def kb_search(
    query: Annotated[str, typer.Argument(help="What the customer asked.")],
    k: Annotated[int, typer.Option("-k", "--top", min=1, help="How many articles.")] = 3,
    json: Json = False, redis_url: RedisUrl = None, prefix: Prefix = None, config: Config = None,
) -> None:
    """Search articles with BM25 plus what agents' choices taught the KB."""
    with _crm(redis_url, prefix, config) as (store, settings):
        hits = KnowledgeBase(store, feedback_weight=settings.kb_feedback_weight).search(query, k)
    if json:
        _print_json(hits)
        return
    if not hits:
        out.print("no matching article")
    for h in hits:
        out.print(f"{h['score']:.3f}  {h['id']}  {h['title']}", markup=False)


def register(app: typer.Typer) -> None:
    """Add the ``crm`` (with ``agents`` and ``rules``) and ``kb`` command groups to the ``pulse`` app."""
    if not any(g.name == "agents" for g in crm_app.registered_groups):
        crm_app.add_typer(agents_app, name="agents")
        crm_app.add_typer(rules_app, name="rules")
    app.add_typer(crm_app, name="crm")
    app.add_typer(kb_app, name="kb")

