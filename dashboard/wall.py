"""The wall display (``?wall=1``, ``pulse dashboard --wall``): a dark, large-type screen for the command centre.

No sidebar; a few big figures readable from five metres on a 1080p screen; the views rotate every
``PULSE_WALL_ROTATE`` seconds (``?view=incidents`` pins one). Live incidents nobody has acknowledged flash
in a red band on every view until someone acknowledges them on the Incidents page. Read only: nothing on
the wall acts. Top terms and other user text are shown as plain text.

>>> wall_view(0.0, 15.0), wall_view(16.0, 15.0), wall_view(100.0, 15.0, pinned="desk")
('now', 'incidents', 'desk')
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboard.command_centre import (
    SENTIMENT_COLOURS,
    channel_colour,
    format_minutes,
    format_rate,
    time_axis,
    with_window,
)
from dashboard.data import DashboardSettings, Filters, load_channels_view, load_command_centre
from dashboard.incidents_page import load_incidents
from dashboard.service_page import load_service_desk
from dashboard.ui import REDIS_ERRORS, plain, show_chart, show_chart_template, to_local

__all__ = ["VIEWS", "WALL_CSS", "render", "wall_view"]

#: The rotating views, in order.
VIEWS = ("now", "incidents", "channels", "desk")
_TITLES = {"now": "Right now", "incidents": "Incidents", "channels": "Channels", "desk": "Service desk"}
_FG, _MUTED, _GRID = "#f1f5f9", "#94a3b8", "#1e293b"

WALL_CSS = """
<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stHeader"],
[data-testid="stToolbar"], [data-testid="stDecoration"], footer {display: none !important;}
.stApp, [data-testid="stAppViewContainer"], [data-testid="stMain"] {background: #05070d !important; color: #f1f5f9;}
.block-container, [data-testid="stMainBlockContainer"] {padding: 1rem 2.2rem !important; max-width: 100% !important;}
.stApp h1, .stApp h2, .stApp h3, .stApp p, .stApp label, .stApp span {color: #f1f5f9;}
.stApp h1 {font-size: 3.2rem !important; letter-spacing: .02em;}
.stApp h2 {font-size: 2.4rem !important;}
[data-testid="stMetric"] {background: #0f172a; border: 2px solid #1e293b !important; border-radius: 14px;
  padding: 1rem 1.4rem !important;}
[data-testid="stMetricLabel"] p, [data-testid="stMetricLabel"] div {font-size: 2rem !important; color: #cbd5e1 !important;}
[data-testid="stMetricValue"], [data-testid="stMetricValue"] div {font-size: 5.6rem !important; line-height: 1.05;
  color: #ffffff !important; font-weight: 700;}
[data-testid="stMetricDelta"], [data-testid="stMetricDelta"] div {font-size: 1.7rem !important;}
[data-testid="stText"], [data-testid="stText"] div {font-size: 2rem !important; color: #e2e8f0; line-height: 1.3;}
[data-testid="stCaptionContainer"], [data-testid="stCaptionContainer"] p {font-size: 1.5rem !important; color: #94a3b8 !important;}
.st-key-wall_alarm {border-radius: 14px; padding: 1rem 1.6rem; animation: wall-flash 1.2s steps(1) infinite;}
.st-key-wall_alarm [data-testid="stText"], .st-key-wall_alarm [data-testid="stText"] div {font-size: 2.4rem !important;
  color: #ffffff !important; font-weight: 700;}
@keyframes wall-flash {0% {background: #dc2626;} 50% {background: #450a0a;}}
.st-key-wall_calm {border-radius: 14px; padding: 1rem 1.6rem; background: #064e3b;}
.st-key-wall_calm [data-testid="stText"], .st-key-wall_calm [data-testid="stText"] div {font-size: 2.4rem !important;
  color: #ecfdf5 !important;}
[class*="st-key-wall_inc_"] {background: #0f172a; border-radius: 14px; padding: .8rem 1.4rem;
  border-left: 12px solid #64748b;}
[class*="st-key-wall_inc_new_"] {border-left-color: #dc2626; animation: wall-flash-soft 1.2s steps(1) infinite;}
[class*="st-key-wall_inc_acknowledged_"] {border-left-color: #f59e0b;}
@keyframes wall-flash-soft {0% {background: #3f0d0d;} 50% {background: #0f172a;}}
</style>
"""


def wall_view(now_s: float, rotate_s: float, pinned: str | None = None) -> str:
    """The view shown at ``now_s`` (epoch seconds): ``pinned`` if it is one, else the next every ``rotate_s``."""
    if pinned in VIEWS:
        return pinned  # type: ignore[return-value]
    return VIEWS[int(now_s // max(rotate_s, 1.0)) % len(VIEWS)]


def _dark(chart: Any) -> Any:
    return (chart.configure(background="transparent")
            .configure_view(stroke=None)
            .configure_axis(labelColor=_FG, titleColor=_MUTED, labelFontSize=22, titleFontSize=20, gridColor=_GRID,
                            domainColor=_GRID, tickColor=_GRID)
            .configure_legend(labelColor=_FG, labelFontSize=22, titleColor=_MUTED, symbolSize=260))


def render(settings: DashboardSettings, filters: Filters) -> None:
    st.html(WALL_CSS)
    every = settings.refresh_seconds if settings.refresh_seconds > 0 else None
    pinned = st.query_params.get("view")
    st.fragment(_wall, run_every=every)(settings, filters, pinned)


def _wall(settings: DashboardSettings, filters: Filters, pinned: str | None) -> None:
    view = wall_view(time.time(), settings.rotate_seconds, pinned)
    now = to_local(datetime.now(UTC), filters.tz)
    head, clock = st.columns([4, 1.3], vertical_alignment="bottom")
    with head:
        st.title(f"Social Pulse · {_TITLES[view]}", anchor=False)
    with clock:
        dots = " ".join("●" if v == view else "○" for v in VIEWS)
        plain(f"{now:%H:%M:%S} {filters.tz}   {dots}" if now else dots)
    try:
        incidents = load_incidents(settings.redis_url, settings.prefix, filters.brand, (), ("spike",))
    except REDIS_ERRORS:
        st.caption("Redis did not answer: the wall fills in by itself when it is back.")
        return
    _alarm([i for i in incidents if i.needs_ack and i.kind == "spike"])
    try:
        {"now": _now, "incidents": _incidents, "channels": _channels, "desk": _desk}[view](settings, filters, incidents)
    except REDIS_ERRORS:
        st.caption("Redis did not answer: the wall fills in by itself when it is back.")


def _alarm(waiting: list[Any]) -> None:
    if not waiting:
        return
    with st.container(key="wall_alarm"):
        plain(f"⚠ {len(waiting)} live incident{'s' if len(waiting) != 1 else ''} awaiting acknowledgement")
        for inc in waiting[:3]:
            plain(f"{inc.severity.upper()} · {inc.brand} {inc.where} · {inc.observed:,.0f}/{inc.per} vs "
                  f"{inc.expected:,.1f} expected")


def _now(settings: DashboardSettings, filters: Filters, incidents: list[Any]) -> None:
    cc = load_command_centre(settings.redis_url, settings.prefix, filters)
    if not cc.has_data:
        plain("Waiting for data…")
        return
    k = cc.kpis
    tiles = [("Mentions / min", format_rate(k["mentions_per_min"])),
             ("Negative", "–" if k["negative_share"] is None else f"{k['negative_share'] * 100:.0f} %"),
             ("Answered", "–" if k["answer_rate"] is None else f"{k['answer_rate'] * 100:.0f} %"),
             ("p90 response", format_minutes(k["p90_response_min"]))]
    for column, (label, value) in zip(st.columns(len(tiles)), tiles, strict=True):
        column.metric(label, value, border=True)
    if cc.by_channel.empty or cc.start is None or cc.end is None:
        return
    start, end = cc.start, cc.end
    frame = with_window(cc.by_channel[["start", "channel", "mentions"]], filters.tz)
    channels = sorted(frame["channel"].unique())

    def build() -> Any:
        return _dark(alt.Chart(alt.NamedData("points"), height=520).mark_area(interpolate="monotone", opacity=0.9)
                     .encode(time_axis(start, end, cc.gran, filters.tz),
                             alt.Y("mentions:Q", stack="zero", title="mentions / window"),
                             alt.Color("channel:N", scale=alt.Scale(domain=channels,
                                                                    range=[channel_colour(c) for c in channels]),
                                       legend=alt.Legend(orient="right", title=None))))

    show_chart_template(("wall_now", cc.gran, filters.tz, start, end, tuple(channels)), build, {"points": frame},
                        theme=None)


def _incidents(settings: DashboardSettings, filters: Filters, incidents: list[Any]) -> None:
    live = [i for i in incidents if i.live and i.kind == "spike"]
    if not live:
        with st.container(key="wall_calm"):
            plain("✓ No live incidents")
        recent = [i for i in incidents if i.kind == "spike"][:4]
        for inc in recent:
            plain(f"{inc.state} · {inc.brand} {inc.where} · peak {inc.observed:,.0f}/{inc.per}")
        return
    order = {"new": 0, "acknowledged": 1}
    for n, inc in enumerate(sorted(live, key=lambda i: (order.get(i.status, 2), -(i.start_ms or 0)))[:5]):
        with st.container(key=f"wall_inc_{inc.status}_{n}"):
            plain(f"{inc.severity.upper()} · {inc.brand} {inc.where} · {inc.observed:,.0f}/{inc.per} vs "
                  f"{inc.expected:,.1f} expected · "
                  f"{'AWAITING ACK' if inc.status == 'new' else 'acknowledged by ' + inc.acknowledged_by}")
            if inc.top_terms:
                plain("Top terms: " + ", ".join(inc.top_terms[:6]))


def _channels(settings: DashboardSettings, filters: Filters, incidents: list[Any]) -> None:
    view = load_channels_view(settings.redis_url, settings.prefix, filters, settings.owned_channels,
                              with_insights=False)
    if not view.has_data:
        plain("No mentions in the last hour.")
        return
    left, right = st.columns(2)
    table = view.table
    channels = list(table["channel"])  # busiest first

    def mentions() -> Any:
        bars = alt.Chart(alt.NamedData("channels"), height=560).mark_bar(cornerRadiusEnd=6).encode(
            alt.Y("channel:N", title=None, sort=channels), alt.X("mentions:Q", title=None),
            alt.Color("channel:N", scale=alt.Scale(domain=channels, range=[channel_colour(c) for c in channels]),
                      legend=None))
        return _dark(bars + bars.mark_text(align="left", dx=8, fontSize=26, color=_FG).encode(text="mentions:Q"))

    def sentiment() -> Any:
        return _dark(alt.Chart(alt.NamedData("sentiment"), height=560).mark_bar().encode(
            alt.Y("channel:N", title=None, sort=channels),
            alt.X("n:Q", stack="normalize", title=None, axis=alt.Axis(format="%")),
            alt.Color("sentiment:N", scale=alt.Scale(domain=list(SENTIMENT_COLOURS),
                                                     range=list(SENTIMENT_COLOURS.values())),
                      legend=alt.Legend(orient="bottom", title=None)), alt.Order("order:Q")))

    with left:
        st.subheader("Mentions", anchor=False)
        show_chart_template(("wall_mentions", tuple(channels)), mentions,
                            {"channels": table[["channel", "mentions"]]}, theme=None)
    with right:
        st.subheader("Sentiment", anchor=False)
        long = table.melt(id_vars=["channel"], value_vars=["negative", "neutral", "positive"], var_name="sentiment",
                          value_name="n")
        long["order"] = long["sentiment"].map({"negative": 0, "neutral": 1, "positive": 2})
        show_chart_template(("wall_sentiment", tuple(channels)), sentiment, {"sentiment": long}, theme=None)


def _desk(settings: DashboardSettings, filters: Filters, incidents: list[Any]) -> None:
    desk = load_service_desk(settings.redis_url, settings.prefix, filters.brand, ())
    if not desk.has_data:
        plain("No cases or agents yet.")
        return
    online = sum(a["status"] == "online" for a in desk.agents)
    overdue = sum(bool(c["overdue"]) for c in desk.cases)
    tiles = [("Open cases", f"{desk.open_cases:,}"), ("Waiting", f"{desk.waiting:,}"),
             ("Overdue", f"{overdue:,}"), ("Agents online", f"{online}/{len(desk.agents)}")]
    for column, (label, value) in zip(st.columns(len(tiles)), tiles, strict=True):
        column.metric(label, value, border=True)
    if desk.agents:
        frame = pd.DataFrame([{"agent": a["agent"], "cases": a["load"], "free": max(0, a["capacity"] - a["load"])}
                              for a in desk.agents]).melt(id_vars="agent", var_name="part", value_name="n")
        chart = alt.Chart(frame, height=480).mark_bar().encode(
            alt.Y("agent:N", title=None), alt.X("n:Q", title="cases held / capacity", axis=alt.Axis(tickMinStep=1, tickCount=8)),
            alt.Color("part:N", scale=alt.Scale(domain=["cases", "free"], range=["#4f8cff", "#334155"]),
                      legend=alt.Legend(orient="bottom", title=None)), alt.Order("part:N"))
        show_chart(_dark(chart), theme=None)
