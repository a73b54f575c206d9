"""The service desk's page: open cases by deadline, queues, agents' load, SLA breaches, rules and tasks.

Read live from what the flow's CRM step keeps in Redis (:mod:`stream.service_desk`). Below the live panel an
agent answers a case (text and/or a suggested KB article, optionally moving to a private message) or resolves
it, exactly as `pulse crm reply / resolve` do: the reply goes to the outbox of the channel the case came from.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

import altair as alt
import pandas as pd
import redis
import streamlit as st

from dashboard.command_centre import format_minutes
from dashboard.data import CACHE_TTL_SECONDS, DashboardSettings, redis_client
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
def load_service_desk(url: str | None, prefix: str) -> ServiceDesk:
    """Cached :func:`stream.service_desk.read_service_desk` (shared by every session for a second)."""
    return read_service_desk(_store(url, prefix))


def render(settings: DashboardSettings) -> None:
    title, live_col = st.columns([6, 1], vertical_alignment="bottom")
    with title:
        st.title(":material/support_agent: Service desk", anchor=False)
    with live_col:
        live = st.toggle("Live", value=settings.refresh_seconds > 0, key="sd_live",
                         help=f"Refresh every {settings.refresh_seconds:g} s", disabled=settings.refresh_seconds <= 0)
    every = settings.refresh_seconds if live and settings.refresh_seconds > 0 else None
    st.fragment(_live_panel, run_every=every)(settings)
    # outside the live fragment: a refresh must not reset what the agent is typing
    _answer_panel(settings)


def _live_panel(settings: DashboardSettings) -> None:
    try:
        desk = load_service_desk(settings.redis_url, settings.prefix)
    except (RedisUnavailable, redis.RedisError, OSError) as exc:
        st.error(f"**Redis is unreachable** at `{settings.display_url}`. The page retries on every refresh.",
                 icon=":material/cloud_off:")
        st.text(str(exc))
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
        st.subheader(f"Open cases by deadline · {desk.open_cases:,}", anchor=False)
        _cases_table(desk)
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
    st.altair_chart(chart, width="stretch")


def _queues_chart(desk: ServiceDesk) -> None:
    if not desk.queues:
        st.caption("Nothing waiting: every open case has an agent.")
        return
    frame = pd.DataFrame([{**q, "oldest wait": format_minutes(_minutes(q["oldest_wait_ms"]))} for q in desk.queues])
    chart = alt.Chart(frame).mark_bar(color="#e45756").encode(
        x=alt.X("waiting:Q", title="cases waiting", axis=alt.Axis(tickMinStep=1, format="d")), y=alt.Y("queue:N", title=None, sort="-x"),
        tooltip=["queue", "waiting", "oldest wait"])
    st.altair_chart(chart, width="stretch")


def _cases_table(desk: ServiceDesk) -> None:
    if not desk.cases:
        st.caption("No open cases.")
        return
    frame = pd.DataFrame(desk.cases)
    frame["due"] = pd.to_datetime(frame["due_ms"], unit="ms", utc=True)
    frame["suggestions"] = frame["suggestions"].map(lambda s: " · ".join(a["title"] for a in s))
    st.dataframe(
        frame[["case", "status", "priority", "queue", "agent", "due", "overdue", "channel", "author", "text",
               "suggestions"]],
        hide_index=True, width="stretch", placeholder="–",
        column_config={
            "due": st.column_config.DatetimeColumn("due (UTC)", format="DD MMM HH:mm"),
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


def _answer_panel(settings: DashboardSettings) -> None:
    try:
        desk = load_service_desk(settings.redis_url, settings.prefix)
    except (RedisUnavailable, redis.RedisError, OSError):
        return  # the live panel above says why
    if not desk.cases:
        return
    with st.container(border=True):
        st.subheader("Answer a case", anchor=False)
        cases = {c["case"]: c for c in desk.cases}
        case_id = st.selectbox("Case", list(cases), key="sd_case",
                               format_func=lambda cid: f"{cid} · {cases[cid]['priority']} · {cases[cid]['text'][:70]}")
        case = cases[case_id]
        st.caption(f"{case['author']} on {case['channel']} · {case['status']} · queue {case['queue']} · "
                   f"agent {case['agent'] or '–'}")
        st.markdown(f"> {case['text']}")
        articles = {a["id"]: a["title"] for a in case["suggestions"]}
        with st.form("sd_answer", clear_on_submit=False, border=False):
            article = st.selectbox("Knowledge-base article (suggested for this case)", ["", *articles],
                                   format_func=lambda a: articles.get(a, "none"), key="sd_article")
            text = st.text_area("Reply", key="sd_text", placeholder="Sorry about that! …")
            private = st.checkbox("Move to a private message (DM request)", key="sd_private")
            send, resolve = st.columns(2)
            sent = send.form_submit_button("Send reply", type="primary", icon=":material/send:", width="stretch")
            closed = resolve.form_submit_button("Resolve case", icon=":material/task_alt:", width="stretch")
        if sent or closed:
            _act(settings, case_id, sent=bool(sent), text=text, article=article or None, private=private)


def _act(settings: DashboardSettings, case_id: str, *, sent: bool, text: str, article: str | None,
         private: bool) -> None:
    now_ms = int(time.time() * 1000)
    try:
        crm = desk_settings(settings.prefix, os.environ.get("PULSE_CRM_CONFIG") or None)
        store = _store(settings.redis_url, settings.prefix)
        if sent:
            res = answer_case(store, crm, case_id, text=text, article_id=article, private=private, now_ms=now_ms)
            reply = res["reply"]
            what = "was already sent" if res["outcome"] == "duplicate" else "sent"
            st.success(f"Reply {what} on {reply['channel']}, in reply to {reply['in_reply_to']}"
                       f"{' (DM request)' if private else ''}.", icon=":material/send:")
        else:
            res = close_case(store, crm, case_id, now_ms=now_ms)
            moved = ", ".join(f"{c} → {a}" for c, a in res["assigned"])
            st.success(f"{case_id} resolved.{' Assigned: ' + moved if moved else ''}", icon=":material/task_alt:")
    except (CrmError, RedisUnavailable, redis.RedisError) as exc:
        st.error(str(exc), icon=":material/error:")
        return
    load_service_desk.clear()
