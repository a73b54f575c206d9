"""The service desk's page: open cases by deadline, queues, agents' load, SLA breaches, rules and tasks.

Read live from what the flow's CRM step keeps in Redis (:mod:`stream.service_desk`). Below the live panel a
signed-in agent answers a case (text and/or a suggested KB article, optionally moving to a private message) or
resolves it, exactly as `pulse crm reply / resolve` do: the reply goes to the outbox of the channel the case
came from, and the audit trail records who did it. The brand and channel filters narrow the cases shown; the
time range does not (an open case is open whatever its age). Case texts, handles and KB titles are user text:
they are shown in tables and as plain text only.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

import altair as alt
import pandas as pd
import redis
import streamlit as st

from dashboard.auth import require_user
from dashboard.command_centre import format_minutes
from dashboard.data import CACHE_TTL_SECONDS, DashboardSettings, Filters, case_brands, redis_client
from dashboard.ui import REDIS_ERRORS, local_frame, md_escape, plain, redis_down, show_chart
from stream.audit import record_action
from stream.keys import Keys
from stream.redisconn import RedisUnavailable
from stream.service_desk import (
    CrmError,
    ServiceDesk,
    answer_case,
    close_case,
    desk_settings,
    read_service_desk,
    service_store,
)

__all__ = ["load_service_desk", "render"]


@st.cache_resource(show_spinner=False, max_entries=16)
def _store(url: str | None, prefix: str):  # type: ignore[no-untyped-def]
    return service_store(redis_client(url), prefix)


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False, max_entries=64)
def load_service_desk(url: str | None, prefix: str, brand: str | None = None,
                      channels: tuple[str, ...] = ()) -> ServiceDesk:
    """Cached :func:`stream.service_desk.read_service_desk` (shared by every session for a second), its open
    cases narrowed to ``brand`` and ``channels``."""
    desk = read_service_desk(_store(url, prefix))
    if brand is None and not channels:
        return desk
    brands = case_brands(redis_client(url), prefix, [c["case"] for c in desk.cases])
    cases = [c for c in desk.cases if (brand is None or brands.get(c["case"]) == brand)
             and (not channels or c["channel"] in channels)]
    return dataclasses.replace(desk, cases=cases)


def render(settings: DashboardSettings, filters: Filters | None = None) -> None:
    filters = filters or Filters()
    title, live_col = st.columns([6, 1], vertical_alignment="bottom")
    with title:
        st.title(":material/support_agent: Service desk", anchor=False)
    with live_col:
        live = st.toggle("Live", value=settings.refresh_seconds > 0, key="sd_live",
                         help=f"Refresh every {settings.refresh_seconds:g} s", disabled=settings.refresh_seconds <= 0)
    every = settings.refresh_seconds if live and settings.refresh_seconds > 0 else None
    st.fragment(_live_panel, run_every=every)(settings, filters)
    # outside the live fragment: a refresh must not reset what the agent is typing
    _answer_panel(settings, filters)


def _live_panel(settings: DashboardSettings, filters: Filters) -> None:
    try:
        desk = load_service_desk(settings.redis_url, settings.prefix, filters.brand, filters.channels)
    except REDIS_ERRORS as exc:
        redis_down(settings, exc)
        return
    if not desk.has_data:
        st.info("**No cases or agents yet.** Add agents (`pulse crm agents add ann --capacity 5`) and run a flow "
                "with the CRM on (`pulse demo`, `pulse run`); queries open cases here.",
                icon=":material/hourglass_empty:")
        return
    now = datetime.fromtimestamp(desk.now_ms / 1000, UTC).strftime("%d %b %Y %H:%M") if desk.now_ms else "–"
    st.caption(f"{desk.total_cases:,} cases in total · event time of the newest: {now} UTC · "
               f"updated {datetime.now().strftime('%H:%M:%S')}")
    _kpis(desk)
    _side_by_side(desk, ("Agents", _agents_chart), ("Waiting for an agent", _queues_chart))
    with st.container(border=True):
        narrowed = filters.brand is not None or bool(filters.channels)
        shown = f"{len(desk.cases):,} shown for this brand/channel" if narrowed else f"{desk.open_cases:,}"
        st.subheader(f"Open cases by deadline · {shown}", anchor=False)
        _cases_table(desk, filters.tz)
    _side_by_side(desk, ("Business rules", _rules_table), ("Tasks", _tasks_table))


def _side_by_side(desk: ServiceDesk, *panels: tuple[str, Callable[[ServiceDesk], None]]) -> None:
    for column, (title, draw) in zip(st.columns(len(panels)), panels, strict=True):
        with column, st.container(border=True):
            st.subheader(title, anchor=False)
            draw(desk)


def _kpis(desk: ServiceDesk) -> None:
    s = desk.stats
    online = sum(a["status"] == "online" for a in desk.agents)
    tiles = [
        ("Open cases", f"{desk.open_cases:,}", "Cases not resolved yet (awaiting an agent, or replied and awaiting "
                                               "the customer)."),
        ("Waiting", f"{desk.waiting:,}", "Cases in a queue: every agent who could take them is full or offline."),
        ("SLA breaches", f"{s.get('sla_breaches', 0):,}", "First/next responses that missed their deadline "
                                                          "(per channel and priority)."),
        ("Mean first response", format_minutes(_minutes(desk.first_response_mean_ms)),
         f"Over {s.get('first_responses', 0):,} cases answered (event time)."),
        ("Mean resolution", format_minutes(_minutes(desk.resolution_mean_ms)),
         f"Opened to resolved, over {s.get('resolved', 0):,} resolved cases."),
        ("Agents online", f"{online} / {len(desk.agents)}", "Agents taking cases now."),
    ]
    for column, (label, value, help_text) in zip(st.columns(len(tiles)), tiles, strict=True):
        with column:
            st.metric(label, value, border=True, help=help_text)


def _minutes(ms: float | None) -> float | None:
    return None if ms is None else ms / 60_000


def _agents_chart(desk: ServiceDesk) -> None:
    if not desk.agents:
        st.caption("No agents: `pulse crm agents add ID --capacity N --departments service`.")
        return
    rows = []
    for a in desk.agents:
        label = a["agent"] if a["status"] == "online" else f"{a['agent']} (offline)"
        rows.append({"agent": label, "part": "cases", "n": a["load"], "departments": a["departments"]})
        rows.append({"agent": label, "part": "free", "n": max(0, a["capacity"] - a["load"]),
                     "departments": a["departments"]})
    chart = alt.Chart(pd.DataFrame(rows)).mark_bar().encode(
        x=alt.X("n:Q", title="cases held / capacity", axis=alt.Axis(tickMinStep=1, format="d")), y=alt.Y("agent:N", title=None, sort=None),
        color=alt.Color("part:N", title=None, scale=alt.Scale(domain=["cases", "free"], range=["#4c78a8", "#d8dde6"])),
        order=alt.Order("part:N"), tooltip=["agent", "departments", "part", "n"])
    show_chart(chart)


def _queues_chart(desk: ServiceDesk) -> None:
    if not desk.queues:
        st.caption("Nothing waiting: every open case has an agent.")
        return
    frame = pd.DataFrame([{**q, "oldest wait": format_minutes(_minutes(q["oldest_wait_ms"]))} for q in desk.queues])
    chart = alt.Chart(frame).mark_bar(color="#e45756").encode(
        x=alt.X("waiting:Q", title="cases waiting", axis=alt.Axis(tickMinStep=1, format="d")), y=alt.Y("queue:N", title=None, sort="-x"),
        tooltip=["queue", "waiting", "oldest wait"])
    show_chart(chart)


def _cases_table(desk: ServiceDesk, tz: str = "UTC") -> None:
    if not desk.cases:
        st.caption("No open cases.")
        return
    frame = pd.DataFrame(desk.cases)
    frame["due"] = pd.to_datetime(frame["due_ms"], unit="ms", utc=True)
    frame = local_frame(frame, tz, "due")
    frame["suggestions"] = frame["suggestions"].map(lambda s: " · ".join(a["title"] for a in s))
    st.dataframe(
        frame[["case", "status", "priority", "queue", "agent", "due", "overdue", "channel", "author", "text",
               "suggestions"]],
        hide_index=True, width="stretch", placeholder="–",
        column_config={
            "due": st.column_config.DatetimeColumn(f"due ({tz})", format="DD MMM HH:mm"),
            "overdue": st.column_config.CheckboxColumn("overdue", help="Past its response deadline"),
            "text": st.column_config.TextColumn("text", width="large"),
            "suggestions": st.column_config.TextColumn("KB suggestions", width="medium"),
        })
    st.caption("Answer below, or with `pulse crm reply CASE --text … | --article ID`; `pulse crm resolve CASE` "
               "frees the agent.")


def _rules_table(desk: ServiceDesk) -> None:
    if not desk.rules:
        st.caption("No rule has matched yet.")
        return
    frame = pd.DataFrame(desk.rules)
    answered = frame[["next_positive", "next_neutral", "next_negative"]].sum(axis=1)
    frame["landed"] = (frame["next_positive"] / answered).where(answered > 0)
    st.dataframe(frame, hide_index=True, width="stretch", placeholder="–", column_config={
        "next_positive": st.column_config.NumberColumn("then positive"),
        "next_neutral": st.column_config.NumberColumn("then neutral"),
        "next_negative": st.column_config.NumberColumn("then negative"),
        "landed": st.column_config.ProgressColumn("landed", format="percent", min_value=0.0, max_value=1.0,
                                                  help="Share of the customers' next mentions after a hit that "
                                                       "were positive"),
    })


def _tasks_table(desk: ServiceDesk) -> None:
    if not desk.tasks:
        st.caption("No open tasks.")
        return
    frame = pd.DataFrame(desk.tasks)
    frame["due"] = pd.to_datetime(frame["due_ms"].astype("int64"), unit="ms", utc=True)
    columns = [c for c in ("title", "rule", "queue", "due", "customer_id", "case_id") if c in frame.columns]
    st.dataframe(frame[columns], hide_index=True, width="stretch", placeholder="–", column_config={
        "due": st.column_config.DatetimeColumn("due (UTC)", format="DD MMM HH:mm")})


def _answer_panel(settings: DashboardSettings, filters: Filters) -> None:
    try:
        desk = load_service_desk(settings.redis_url, settings.prefix, filters.brand, filters.channels)
    except REDIS_ERRORS:
        return  # the live panel above says why
    if not desk.cases:
        return
    with st.container(border=True):
        st.subheader("Answer a case", anchor=False)
        cases = {c["case"]: c for c in desk.cases}
        # selectbox options are plain text
        case_id = st.selectbox("Case", list(cases), key="sd_case",
                               format_func=lambda cid: f"{cid} · {cases[cid]['priority']} · {cases[cid]['text'][:70]}")
        case = cases[case_id]
        plain(f"{case['author']} on {case['channel']} · {case['status']} · queue {case['queue']} · "
              f"agent {case['agent'] or '–'}")
        st.caption("Customer wrote")
        st.code(case["text"], language=None, wrap_lines=True)
        user = require_user(settings, "answer or resolve cases")
        if user is None:
            return
        articles = {a["id"]: a["title"] for a in case["suggestions"]}
        with st.form("sd_answer", clear_on_submit=False, border=False):
            article = st.selectbox("Knowledge-base article (suggested for this case)", ["", *articles],
                                   format_func=lambda a: articles.get(a, "none"), key="sd_article")
            text = st.text_area("Reply", key="sd_text", placeholder="Sorry about that! …")
            private = st.checkbox("Move to a private message (DM request)", key="sd_private")
            send, resolve = st.columns(2)
            sent = send.form_submit_button("Send reply", type="primary", icon=":material/send:")
            closed = resolve.form_submit_button("Resolve case", icon=":material/task_alt:")
        if sent or closed:
            _act(settings, case_id, user, sent=bool(sent), text=text, article=article or None, private=private)


def _act(settings: DashboardSettings, case_id: str, user: str, *, sent: bool, text: str, article: str | None,
         private: bool) -> None:
    now_ms = int(time.time() * 1000)
    keys = Keys(settings.prefix)
    action = "case.reply" if sent else "case.resolve"
    detail: dict[str, object] = {"article": article, "private": private, "chars": len(text)} if sent else {}
    try:
        crm = desk_settings(settings.prefix, os.environ.get("PULSE_CRM_CONFIG") or None)
        store = _store(settings.redis_url, settings.prefix)
        client = redis_client(settings.redis_url)
        if sent:
            res = answer_case(store, crm, case_id, text=text, article_id=article, private=private, now_ms=now_ms,
                              agent=user)
            reply = res["reply"]
            duplicate = res["outcome"] == "duplicate"
            record_action(client, keys, user, action, case_id, detail | {"in_reply_to": reply["in_reply_to"],
                                                                         "channel": reply["channel"]},
                          outcome="duplicate" if duplicate else "ok")
            what = "was already sent" if duplicate else "sent"
            st.success(f"Reply {what} on {md_escape(reply['channel'])}, in reply to {md_escape(reply['in_reply_to'])}"
                       f"{' (DM request)' if private else ''}.", icon=":material/send:")
        else:
            res = close_case(store, crm, case_id, now_ms=now_ms, by=user)
            record_action(client, keys, user, action, case_id, {"assigned": [list(x) for x in res["assigned"]]})
            moved = ", ".join(f"{c} → {a}" for c, a in res["assigned"])
            st.success(f"{md_escape(case_id)} resolved.{' Assigned: ' + md_escape(moved) if moved else ''}",
                       icon=":material/task_alt:")
    except CrmError as exc:
        try:
            record_action(redis_client(settings.redis_url), keys, user, action, case_id, detail,
                          outcome=f"refused: {exc}")
        except REDIS_ERRORS:
            pass
        st.error(md_escape(exc), icon=":material/error:")
        return
    except (RedisUnavailable, redis.RedisError) as exc:
        redis_down(settings, exc)
        return
    load_service_desk.clear()
