"""Customers: find one by name, handle or id, see everything known about them, and who may be leaving.

The 360 view is :func:`crm.customer360.customer_360` (profile, handles per channel, recent mentions with
sentiment, cases, churn risk, influence) with the reasons of the churn risk
(:func:`stream.churn.churn_reasons`: the features pushing it up most, each with its value and contribution);
the churn candidates are :func:`stream.churn.churn_candidates` (risk and reasons) with the customers' CRM
fields. Names, handles, e-mails and mention texts are user text: shown in tables and as plain text only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from crm.customer360 import customer_360
from dashboard.command_centre import SENTIMENT_COLOURS
from dashboard.data import (
    CACHE_TTL_SECONDS,
    DashboardSettings,
    Filters,
    load_churn_candidates,
    load_customer_search,
    redis_client,
    resolve_span,
)
from dashboard.ui import REDIS_ERRORS, chart_times, local_frame, md_escape, plain, redis_down, show_chart
from stream.churn import churn_reasons
from stream.keys import Keys
from stream.service_desk import CrmError, service_store

__all__ = ["load_customer", "render"]

CANDIDATES = 50


@st.cache_resource(show_spinner=False, max_entries=16)
def _store(url: str | None, prefix: str):  # type: ignore[no-untyped-def]
    return service_store(redis_client(url), prefix)


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False, max_entries=64)
def load_customer(url: str | None, prefix: str, customer_id: str) -> dict[str, Any]:
    """The 360 view plus the reasons of the customer's churn risk (``[]`` when nothing pushes it up)."""
    view = customer_360(_store(url, prefix), customer_id, mentions=200)
    view["churn_reasons"] = churn_reasons(redis_client(url), Keys(prefix), view["id"])
    return view


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False, max_entries=64)
def _span_ms(url: str | None, prefix: str, filters: Filters) -> tuple[int, int] | None:
    span = resolve_span(redis_client(url), Keys(prefix), filters)
    return None if span is None else (span.start_ms, span.end_ms)


def render(settings: DashboardSettings, filters: Filters) -> None:
    st.title(":material/group: Customers", anchor=False)
    search_col, list_col = st.columns([1, 1.6])
    with search_col, st.container(border=True):
        st.subheader("Find a customer", anchor=False)
        query = st.text_input("Name, handle or id", key="cust_q", placeholder="e.g. Lucas Smith, @lsmith185, C00746")
        options = _search(settings, filters, query)
    with list_col, st.container(border=True):
        st.subheader("Churn candidates", anchor=False)
        candidates = _candidates(settings, filters)
    if options is None:
        return
    if not options:
        ids = [] if candidates is None or candidates.empty else list(candidates["customer"])
        labels = {} if candidates is None or candidates.empty else dict(zip(candidates["customer"],
                                                                           candidates["name"], strict=True))
        if not ids:
            st.info("**No customers yet.** Import them (`pulse crm import customers.csv`) or start `pulse demo`; "
                    "search by name, handle (`@handle` or `twitter:handle`) or id.", icon=":material/person_search:")
            return
    else:
        ids = [o["id"] for o in options]
        labels = {o["id"]: o["name"] for o in options}
    customer_id = st.selectbox("Customer", ids, key="cust_pick",
                               format_func=lambda cid: f"{labels.get(cid) or cid} · {cid}")
    if customer_id:
        _view(settings, filters, customer_id)


def _search(settings: DashboardSettings, filters: Filters, query: str) -> list[dict[str, Any]] | None:
    if not query.strip():
        st.caption("Or pick one of the churn candidates below.")
        return []
    try:
        found = load_customer_search(settings.redis_url, settings.prefix, query)
    except REDIS_ERRORS as exc:
        redis_down(settings, exc)
        return None
    found = [f for f in found if filters.brand is None or not f["brand"] or f["brand"] == filters.brand]
    if not found:
        st.caption("No customer or prospect matches: try part of a name, a handle, or an id.")
        return []
    st.dataframe(pd.DataFrame(found), hide_index=True, placeholder="–",
                 column_order=["name", "id", "kind", "tier", "brand", "mentions", "matched"])
    return found


def _candidates(settings: DashboardSettings, filters: Filters) -> pd.DataFrame | None:
    try:
        frame = load_churn_candidates(settings.redis_url, settings.prefix, filters.brand, CANDIDATES)
    except REDIS_ERRORS as exc:
        redis_down(settings, exc)
        return None
    if frame.empty:
        st.caption("No churn scores yet: the flow scores every customer mention (`pulse demo`).")
        return frame
    if not (frame["reasons"] != "").any():
        st.caption("No reasons yet: the churn model learns from churn outcomes (the CRM's renewals and "
                   "cancellations, `churn` records) and starts neutral, so until it has learned some every "
                   "customer has the same risk and nothing pushes it up.")
    else:
        st.caption("Reasons: the features pushing each risk up most, with their contribution (log-odds).")
    st.dataframe(frame.drop(columns=["reason_list"]), hide_index=True, placeholder="–",
                 height=min(360, 38 + 35 * len(frame)),
                 column_order=["name", "customer", "tier", "brand", "value", "risk", "reasons", "mentions",
                               "negative"],
                 column_config={
                     "risk": st.column_config.ProgressColumn("churn risk", min_value=0.0, max_value=1.0,
                                                             format="percent"),
                     "value": st.column_config.NumberColumn("value", format="%.0f"),
                     "reasons": st.column_config.TextColumn("reasons (feature contributions)", width="large"),
                 })
    return frame


def _view(settings: DashboardSettings, filters: Filters, customer_id: str) -> None:
    try:
        view = load_customer(settings.redis_url, settings.prefix, customer_id)
        span = _span_ms(settings.redis_url, settings.prefix, filters)
    except CrmError as exc:
        st.warning(md_escape(exc), icon=":material/person_off:")
        return
    except REDIS_ERRORS as exc:
        redis_down(settings, exc)
        return
    crm = view["crm"]
    with st.container(border=True):
        st.subheader("Profile", anchor=False)
        plain(f"{crm.get('name') or '(no name)'} · {view['kind']} · {view['id']}")
        if view["id"] != customer_id:
            plain(f"{customer_id} was merged into {view['id']}")
        activity = view["activity"]
        cols = st.columns(6)
        cols[0].metric("Tier", str(crm.get("tier") or "–"), border=True)
        cols[1].metric("Value", "–" if crm.get("value") is None else f"{crm['value']:,.0f}", border=True)
        cols[2].metric("Churn risk", f"{float(view['churn_risk']) * 100:.0f} %", border=True)
        cols[3].metric("Mentions", f"{activity['mentions']:,}", border=True,
                       help=f"{activity['negative']} negative, {activity['neutral']} neutral, "
                            f"{activity['positive']} positive")
        cols[4].metric("Mean sentiment", f"{activity['mean_sentiment']:+.2f}", border=True)
        cols[5].metric("Influence", f"{view['influence']['score']:.2f}", border=True,
                       help="Log-scaled followers where the source gives them, else mention reach.")
        details = {"e-mail": crm.get("email"), "phone": crm.get("phone"),
                   "products": ", ".join(crm.get("products") or []), "tags": ", ".join(view["tags"]),
                   "merged prospects": ", ".join(view["merged_prospects"])}
        st.dataframe(pd.DataFrame([{"field": k, "value": v or "–"} for k, v in details.items()]), hide_index=True)
        _churn(view)
    left, right = st.columns([1, 2])
    with left, st.container(border=True):
        st.subheader("Handles", anchor=False)
        handles = [h.split(":", 1) for h in view["handles"]]
        if handles:
            st.dataframe(pd.DataFrame(handles, columns=["channel", "handle"]), hide_index=True)
        else:
            st.caption("No linked handles.")
    with right, st.container(border=True):
        st.subheader("Mentions and sentiment", anchor=False)
        _timeline(view, filters, span)
    with st.container(border=True):
        st.subheader("Cases", anchor=False)
        _cases(view, filters)


def _churn(view: dict[str, Any]) -> None:
    reasons = view.get("churn_reasons") or []
    st.caption("What drives the churn risk")
    if not reasons:
        plain("Nothing pushes this customer's risk up: no feature is above what the churn model has learned to "
              "worry about (or it has not learned from churn outcomes yet, and starts neutral).")
        return
    frame = pd.DataFrame([{"reason": str(r.get("text") or r.get("feature") or ""), "feature": str(r.get("feature") or ""),
                           "value": r.get("value"), "contribution": r.get("contribution")} for r in reasons])
    left, right = st.columns([1.2, 1])
    with left:
        st.dataframe(frame, hide_index=True, placeholder="–", column_config={
            "value": st.column_config.NumberColumn("value", format="%.2f", help="the feature's value for the customer"),
            "contribution": st.column_config.NumberColumn("contribution", format="%+.3f",
                                                          help="weight × standardised value: log-odds added to the risk")})
    with right:
        show_chart(alt.Chart(frame, height=alt.Step(26)).mark_bar(color="#e5484d").encode(
            alt.Y("reason:N", title=None, sort="-x"), alt.X("contribution:Q", title="contribution to the risk"),
            tooltip=["reason:N", alt.Tooltip("value:Q", format=".2f"), alt.Tooltip("contribution:Q", format="+.3f")]))


def _timeline(view: dict[str, Any], filters: Filters, span: tuple[int, int] | None) -> None:
    mentions = [m for m in view["recent_mentions"] if filters.channel_ok(m.get("channel"))]
    if not mentions:
        st.caption("No mentions from this customer" + (" on these channels." if filters.channels else " yet."))
        return
    only_range = st.toggle("Selected time range only", value=True, key="cust_range",
                           help="Off: the customer's whole recent history, whatever the time range filter.")
    shown = [m for m in mentions if span is None or not only_range or span[0] <= int(m.get("ts") or 0) < span[1]]
    if len(shown) < len(mentions):
        st.caption(f"{len(shown)} of {len(mentions)} mentions are in the selected range ({filters.describe()}).")
    if not shown:
        return
    frame = pd.DataFrame([{"time": datetime.fromtimestamp(int(m.get("ts") or 0) / 1000, tz=UTC),
                           "channel": str(m.get("channel") or ""), "sentiment": str(m.get("sentiment") or ""),
                           "score": float(m.get("score") or 0.0), "intent": str(m.get("intent") or ""),
                           "text": str(m.get("text") or "")} for m in shown])
    chart = alt.Chart(chart_times(frame, filters.tz, "time"), height=220).mark_circle(size=110, opacity=0.85).encode(
        alt.X("time:T", title=None, scale=alt.Scale(type="utc", nice=True),
              axis=alt.Axis(format="%d %b %H:%M", labelAngle=0, tickCount=5)),
        alt.Y("score:Q", title="sentiment", scale=alt.Scale(domain=[-1, 1])),
        alt.Color("sentiment:N", scale=alt.Scale(domain=list(SENTIMENT_COLOURS), range=list(SENTIMENT_COLOURS.values())),
                  legend=alt.Legend(orient="bottom", title=None)),
        tooltip=["channel:N", "sentiment:N", alt.Tooltip("score:Q", format="+.2f")])
    show_chart(chart)
    st.dataframe(local_frame(frame, filters.tz, "time"), hide_index=True, placeholder="–", column_config={
        "time": st.column_config.DatetimeColumn(f"time ({filters.tz})", format="DD MMM HH:mm", width="small"),
        "score": st.column_config.NumberColumn("score", format="%+.2f", width="small"),
        "text": st.column_config.TextColumn("text", width="large")})


def _cases(view: dict[str, Any], filters: Filters) -> None:
    cases = [c | {"state": "open"} for c in view["open_cases"]] + [c | {"state": "past"} for c in view["past_cases"]]
    cases = [c for c in cases if filters.channel_ok(c.get("channel"))]
    if not cases:
        st.caption("No cases.")
        return
    frame = pd.DataFrame(cases)
    frame["opened"] = pd.to_datetime(frame["created_ms"], unit="ms", utc=True)
    for name in ("first_response_ms", "resolution_ms"):
        frame[name.replace("_ms", " (min)")] = frame[name].astype("float") / 60_000
    frame = local_frame(frame, filters.tz, "opened")
    st.dataframe(frame, hide_index=True, placeholder="–",
                 column_order=["id", "state", "status", "priority", "queue", "channel", "agent", "opened",
                               "first_response (min)", "resolution (min)", "sla_breaches", "text"],
                 column_config={
                     "opened": st.column_config.DatetimeColumn(f"opened ({filters.tz})", format="DD MMM HH:mm"),
                     "first_response (min)": st.column_config.NumberColumn("first response", format="%.0f min"),
                     "resolution (min)": st.column_config.NumberColumn("resolution", format="%.0f min"),
                     "text": st.column_config.TextColumn("text", width="large")})
