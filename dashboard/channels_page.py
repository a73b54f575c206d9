"""Channels, for marketing: which social webs bring the customers, how they feel there, owned vs third-party.

Over the chosen period and filters (:func:`dashboard.data.read_channels`): the footprint of each channel
(mentions and distinct authors), share of voice, sentiment and volume, the brands' own communities beside
the third-party networks, attraction and participation rates, behaviour after interaction, resolution and
next response per channel and agent, first response in business hours (when ``PULSE_BUSINESS_HOURS`` names
the brand), and the newest negative mentions. The insights are ``pulse metrics --json``'s, read by the same
functions (:mod:`dashboard.channel_insights`). The page is a list of panels (:data:`PANELS`): a new insight
is one function ``(view, filters) -> None`` and one line there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboard.command_centre import SENTIMENT_COLOURS, channel_colour, time_axis, with_window
from dashboard.data import ChannelsView, DashboardSettings, Filters, load_channels_view
from dashboard.ui import (
    REDIS_ERRORS,
    local_frame,
    md_escape,
    redis_down,
    show_chart_template,
    to_local,
)

__all__ = ["PANELS", "render", "sides_table"]

Panel = Callable[[ChannelsView, Filters], None]


def render(settings: DashboardSettings, filters: Filters) -> None:
    st.title(":material/hub: Channels", anchor=False)
    try:
        view = load_channels_view(settings.redis_url, settings.prefix, filters, settings.owned_channels,
                                  settings.business_hours, settings.after_reply_days)
    except REDIS_ERRORS as exc:
        redis_down(settings, exc)
        return
    if not view.has_data:
        st.info("**No mentions in this period** for the chosen brand and channels. Pick a longer time range or "
                "other channels in the sidebar, or start a flow (`pulse demo`, `pulse replay FILE`).",
                icon=":material/hourglass_empty:")
        return
    assert view.span is not None
    start, end = to_local(view.span.start, filters.tz), to_local(view.span.end, filters.tz)
    assert start is not None and end is not None
    grain = {"m": "minute", "h": "hour", "d": "day"}[view.span.gran]
    owned = ", ".join(sorted(set(view.table.loc[view.table["owned"], "channel"]))) or "none in range"
    st.caption(f"{md_escape(filters.brand or 'All brands')} · {filters.describe()} · {start:%d %b %Y %H:%M} – "
               f"{end:%d %b %Y %H:%M} {filters.tz} (event time) · per-{grain} windows · owned communities: "
               f"{md_escape(owned)}")
    for row in PANEL_ROWS:
        for column, panel in zip(st.columns(len(row)), row, strict=True):
            with column, st.container(border=True):
                panel(view, filters)


def footprint(view: ChannelsView, filters: Filters) -> None:
    """Mentions and distinct authors per channel: where the customers are."""
    st.subheader("Footprint", anchor=False)
    frame = view.table.melt(id_vars=["channel", "owned"], value_vars=["mentions", "authors"], var_name="measure",
                            value_name="count")
    order = list(view.table["channel"])

    def build() -> alt.Chart:
        return alt.Chart(alt.NamedData("footprint"), height=alt.Step(34)).mark_bar().encode(
            alt.Y("channel:N", title=None, sort=order),
            alt.X("count:Q", title=None),
            alt.YOffset("measure:N"),
            alt.Color("measure:N", scale=alt.Scale(domain=["mentions", "authors"], range=["#4f8cff", "#f2a541"]),
                      legend=alt.Legend(orient="bottom", title=None)),
            tooltip=["channel:N", "measure:N", "count:Q"])

    show_chart_template(("channels_footprint", tuple(order)), build, {"footprint": frame})
    st.caption("Authors: distinct per brand (HyperLogLog), summed over brands.")


def owned_vs_third_party(view: ChannelsView, filters: Filters) -> None:
    """The brands' own communities beside the third-party networks."""
    st.subheader("Owned vs third-party", anchor=False)
    sides = st.columns(2)
    for side, (owned, label) in zip(sides, [(True, "Owned communities"), (False, "Third-party webs")], strict=True):
        part = view.table[view.table["owned"] == owned]
        mentions = int(part["mentions"].sum())
        negative = int(part["negative"].sum())
        queries = int(part["queries"].sum())
        with side:
            st.metric(label, f"{mentions:,} mentions",
                      f"{negative / mentions * 100:.0f} % negative" if mentions else None, delta_color="off",
                      delta_arrow="off", border=True,
                      help=f"{int(part['authors'].sum()):,} authors, {queries:,} queries on "
                           f"{len(part)} channel(s)")
            if part.empty:
                st.caption("None in this period.")
            else:
                st.dataframe(part[["channel", "mentions", "authors", "negative share", "answer rate"]],
                             hide_index=True, placeholder="–", column_config=_RATE_COLUMNS)
    side_by_side = sides_table(view)
    if not side_by_side.empty:
        st.caption("Side by side: the insights below, per side (authors and customers distinct per brand, "
                   "summed over brands)")
        st.dataframe(side_by_side, hide_index=True, placeholder="–", width="stretch",
                     height=38 + 35 * len(side_by_side))


def _pct(v: Any, digits: int = 1) -> str:
    return "–" if v is None or v != v else f"{float(v) * 100:.{digits}f} %"


def _num(v: Any, fmt: str) -> str:
    return "–" if v is None or v != v else format(float(v), fmt)


#: The rows of the owned vs third-party comparison: label, column of ``insights.sides``, how it reads.
_SIDE_ROWS: list[tuple[str, str, Any]] = [
    ("authors", "authors", lambda v: f"{int(v):,}"),
    ("new authors", "new authors", lambda v: f"{int(v):,}"),
    ("attraction rate", "attraction rate", _pct),
    ("active customers", "active customers", lambda v: f"{int(v):,}"),
    ("participation rate", "participation rate", _pct),
    ("customers replied to (with mentions before and after)", "customers", lambda v: f"{int(v):,}"),
    ("sentiment before the reply", "before", lambda v: _num(v, "+.2f")),
    ("sentiment after the reply", "after", lambda v: _num(v, "+.2f")),
    ("improved", "improved share", _pct),
    ("worsened", "worsened share", _pct),
    ("resolved cases", "resolved cases", lambda v: f"{int(v):,}"),
    ("mean resolution", "mean resolution (h)", lambda v: _num(v, ".2f") + " h" if v == v and v is not None else "–"),
    ("next responses", "next responses", lambda v: f"{int(v):,}"),
    ("mean next response", "mean next response (min)",
     lambda v: _num(v, ".1f") + " min" if v == v and v is not None else "–"),
]


def sides_table(view: ChannelsView) -> pd.DataFrame:
    """The owned communities and the third-party webs side by side: one row per measure, as text."""
    sides = view.insights.sides
    if sides.empty:
        return pd.DataFrame(columns=["measure", "owned", "third-party"])
    by = sides.set_index("side")
    return pd.DataFrame([{"measure": label, **{side: show(by.loc[side, column]) for side in ("owned", "third-party")}}
                         for label, column, show in _SIDE_ROWS])


def sentiment_by_channel(view: ChannelsView, filters: Filters) -> None:
    """The share of negative, neutral and positive mentions on each channel."""
    st.subheader("Sentiment per channel", anchor=False)
    frame = view.table.melt(id_vars=["channel"], value_vars=["negative", "neutral", "positive"],
                            var_name="sentiment", value_name="n")
    frame["order"] = frame["sentiment"].map({"negative": 0, "neutral": 1, "positive": 2})
    order = list(view.table["channel"])

    def build() -> alt.Chart:
        return alt.Chart(alt.NamedData("sentiment"), height=alt.Step(34)).mark_bar().encode(
            alt.Y("channel:N", title=None, sort=order),
            alt.X("n:Q", stack="normalize", title="share of mentions", axis=alt.Axis(format="%")),
            alt.Color("sentiment:N", scale=alt.Scale(domain=list(SENTIMENT_COLOURS),
                                                     range=list(SENTIMENT_COLOURS.values())),
                      legend=alt.Legend(orient="bottom", title=None)),
            alt.Order("order:Q"),
            tooltip=["channel:N", "sentiment:N", alt.Tooltip("n:Q", title="mentions")])

    show_chart_template(("channels_sentiment", tuple(order)), build, {"sentiment": frame})


def audience(view: ChannelsView, filters: Filters) -> None:
    """Attraction rate (new authors ÷ authors) and participation rate (active customers ÷ CRM customers)."""
    st.subheader("Attraction and participation", anchor=False)
    found = view.insights
    frame = found.audience
    st.caption(f"Attraction rate: authors whose first mention of the brand is in this period ÷ distinct authors. "
               f"Participation rate: distinct CRM customers who mentioned the brand ÷ the {found.customers:,} "
               "customers in the CRM. Per brand, summed over brands.")
    if frame.empty:
        st.caption("No authors in this period.")
        return
    if not found.customers:
        st.caption("No customers in the CRM: participation needs them (`pulse crm import customers.csv`).")
    labels = {c: f"{c} (owned)" if owned else c for c, owned in zip(frame["channel"], frame["owned"], strict=True)}
    long = frame.melt(id_vars=["channel"], value_vars=["attraction rate", "participation rate"], var_name="rate",
                      value_name="share").dropna(subset=["share"])
    long["label"] = long["channel"].map(labels)
    order = [labels[c] for c in sorted(frame["channel"], key=lambda c: (not labels[c].endswith("(owned)"), c))]

    def build() -> alt.Chart:
        # one panel per rate, each on its own scale: participation (over every CRM customer) is often a
        # fraction of a percent where attraction is tens of percent
        return alt.Chart(alt.NamedData("audience"), height=alt.Step(26), width=230).mark_bar().encode(
            alt.Y("label:N", title=None, sort=order),
            alt.X("share:Q", title=None, axis=alt.Axis(format="%", tickCount=4)),
            alt.Color("rate:N", scale=alt.Scale(domain=["attraction rate", "participation rate"],
                                                range=["#8b7cf6", "#2ec4d6"]), legend=None),
            tooltip=[alt.Tooltip("channel:N"), "rate:N", alt.Tooltip("share:Q", format=".2%")]).facet(
            column=alt.Column("rate:N", title=None, sort=["attraction rate", "participation rate"],
                              header=alt.Header(labelFontSize=13))).resolve_scale(x="independent")

    show_chart_template(("channels_audience", tuple(order)), build, {"audience": long})
    st.dataframe(frame, hide_index=True, placeholder="–", column_config={
        "owned": st.column_config.CheckboxColumn("owned"),
        "attraction rate": st.column_config.NumberColumn("attraction rate", format="percent"),
        "participation rate": st.column_config.NumberColumn("participation rate", format="percent")})


_AFTER_CONFIG = {
    "before": st.column_config.NumberColumn("before", format="%+.2f", help="mean sentiment (−1…1) before the reply"),
    "after": st.column_config.NumberColumn("after", format="%+.2f", help="mean sentiment (−1…1) after the reply"),
    "change": st.column_config.NumberColumn("change", format="%+.2f"),
    "improved share": st.column_config.NumberColumn("improved", format="percent"),
    "worsened share": st.column_config.NumberColumn("worsened", format="percent"),
}


def after_interaction(view: ChannelsView, filters: Filters) -> None:
    """Behaviour after interaction: customers' sentiment before and after the brand's reply."""
    st.subheader("Behaviour after interaction", anchor=False)
    found = view.insights
    st.caption(f"For each customer a brand replied to in this period: the mean sentiment of their mentions in the "
               f"{found.days:g} days after the first reply minus the {found.days:g} days before (customers with "
               "mentions on both sides). Per channel of the reply, and per agent who wrote it.")
    rows = pd.concat([found.after_channels.rename(columns={"channel": "name"}).assign(by="channel"),
                      found.after_agents.rename(columns={"agent": "name"}).assign(by="agent")], ignore_index=True)
    rows = rows[rows["customers"] > 0]
    if not (rows["by"] == "channel").any():
        st.caption("No customer a brand replied to in this period" + (" on these channels" if filters.channels else "")
                   + f" has mentions both {found.days:g} days before and after the reply. Pick a longer period, or "
                   "other channels.")
        if rows.empty:
            return
    rows["label"] = rows["by"] + " " + rows["name"]
    rows["direction"] = rows["change"].map(lambda d: "improved" if d > 0 else ("worsened" if d < 0 else "unchanged"))
    order = list(rows["label"])

    def build() -> alt.Chart:
        base = alt.Chart(alt.NamedData("after")).encode(alt.Y("label:N", title=None, sort=order))
        x_scale = alt.Scale(domain=[-1, 1])
        span_ = base.mark_rule(strokeWidth=3, color="#7d8897").encode(
            alt.X("before:Q", scale=x_scale, title="mean sentiment (−1…1)"), alt.X2("after:Q"))
        before = base.mark_circle(size=90, color="#7d8897").encode(
            alt.X("before:Q", scale=x_scale), tooltip=["label:N", alt.Tooltip("before:Q", format="+.2f"),
                                                       alt.Tooltip("customers:Q")])
        after = base.mark_circle(size=140, opacity=1).encode(
            alt.X("after:Q", scale=x_scale),
            alt.Color("direction:N", scale=alt.Scale(domain=["improved", "unchanged", "worsened"],
                                                     range=["#3ecf8e", "#7d8897", "#e5484d"]),
                      legend=alt.Legend(orient="bottom", title="after the reply")),
            tooltip=["label:N", alt.Tooltip("after:Q", format="+.2f"), alt.Tooltip("change:Q", format="+.2f"),
                     alt.Tooltip("improved share:Q", format=".0%"), alt.Tooltip("customers:Q")])
        return alt.layer(span_, before, after, height=alt.Step(28))

    chart, tables = st.columns([1, 1.1])
    with chart:
        show_chart_template(("channels_after", tuple(order)), build, {"after": rows.drop(columns=["by", "name"])})
    with tables:
        st.dataframe(found.after_channels, hide_index=True, placeholder="–", column_config=_AFTER_CONFIG)
        st.dataframe(found.after_agents, hide_index=True, placeholder="–", column_config=_AFTER_CONFIG)
        if found.agents_all_channels:
            st.caption("Per agent: every channel of the brand (the channel filter narrows the channels only).")


_SERVICE_CONFIG = {
    "mean resolution (h)": st.column_config.NumberColumn("mean resolution", format="%.2f h"),
    "p50 resolution (h)": st.column_config.NumberColumn("p50 resolution", format="%.2f h",
                                                        help="shown where one brand's cases make it"),
    "mean next response (min)": st.column_config.NumberColumn("mean next response", format="%.1f min"),
}


def service_times(view: ChannelsView, filters: Filters) -> None:
    """Resolution and next response of the CRM's cases opened in the period, per channel and agent."""
    st.subheader("Resolution and next response", anchor=False)
    found = view.insights
    st.caption("Cases opened in this period: opened → resolved, and each later reply's time from the customer's "
               "previous message.")
    if not (found.service_channels["resolved cases"].sum() or found.service_channels["next responses"].sum()):
        st.caption("No case opened in this period is resolved or has a second reply yet. Cases come from the CRM "
                   "step (one per customer query); agents resolve them on the Service desk.")
        return
    left, right = st.columns(2)
    with left:
        st.dataframe(found.service_channels, hide_index=True, placeholder="–", column_config=_SERVICE_CONFIG)
    with right:
        st.dataframe(found.service_agents, hide_index=True, placeholder="–", column_config=_SERVICE_CONFIG)
        if found.agents_all_channels:
            st.caption("Per agent: every channel of the brand (the channel filter narrows the channels only).")


def business_hours(view: ChannelsView, filters: Filters) -> None:
    """First response counted in business time, for the brands with business hours."""
    st.subheader("First response in business hours", anchor=False)
    found = view.insights
    if not found.business_brands:
        st.caption("No business hours configured: set `PULSE_BUSINESS_HOURS`, e.g. "
                   "`acme=Europe/Berlin Mon-Fri 09:00-18:00; other=…` (or `business_hours` in pulse.toml), to "
                   "count first response in business time.")
        return
    if found.business.empty:
        st.caption("Business hours are set for " + md_escape(", ".join(found.business_brands))
                   + " only: pick one of them (or all brands) in the sidebar.")
        return
    st.caption("Time from a customer mention to the brand's first reply, counting only the brand's business hours "
               "(its time zone), beside the same responses on the clock.")
    st.dataframe(found.business, hide_index=True, placeholder="–", column_config={
        "mean in business hours (min)": st.column_config.NumberColumn("mean, business hours", format="%.1f min"),
        "p50 in business hours (min)": st.column_config.NumberColumn("p50, business hours", format="%.1f min"),
        "mean on the clock (min)": st.column_config.NumberColumn("mean, on the clock", format="%.1f min")})


def volume_over_time(view: ChannelsView, filters: Filters) -> None:
    """Mentions per window and channel over the period."""
    st.subheader("Volume", anchor=False)
    span = view.span
    assert span is not None
    channels = sorted(view.series["channel"].unique())

    def build() -> alt.Chart:
        return alt.Chart(alt.NamedData("series"), height=260).mark_line(strokeWidth=2).encode(
            time_axis(span.start, span.end, span.gran, filters.tz),
            alt.Y("mentions:Q", title="mentions"),
            alt.Color("channel:N", scale=alt.Scale(domain=channels, range=[channel_colour(c) for c in channels]),
                      legend=alt.Legend(orient="bottom", title=None, columns=8)),
            tooltip=[alt.Tooltip("window:N", title="window"), "channel:N", "mentions:Q", "negative:Q"])

    show_chart_template(("channels_volume", span, filters.tz, tuple(channels)), build,
                        {"series": with_window(view.series, filters.tz)})


def channel_table(view: ChannelsView, filters: Filters) -> None:
    """Every figure per channel."""
    st.subheader("Per channel", anchor=False)
    st.dataframe(view.table, hide_index=True, placeholder="–", column_config={
        **_RATE_COLUMNS,
        "owned": st.column_config.CheckboxColumn("owned"),
        "net sentiment": st.column_config.NumberColumn("net sentiment", format="%+.2f",
                                                       help="(positive − negative) ÷ mentions"),
        "mean first response (min)": st.column_config.NumberColumn("1st response", format="%.0f min"),
        "share of voice": st.column_config.ProgressColumn("share of voice", min_value=0.0, max_value=1.0,
                                                          format="percent"),
    })


def notable_mentions(view: ChannelsView, filters: Filters) -> None:
    """The newest negative mentions of the period (among those the flow keeps)."""
    st.subheader("Newest negative mentions", anchor=False)
    if view.notable.empty:
        st.caption("No negative mention among the newest kept for this period.")
        return
    st.dataframe(local_frame(view.notable, filters.tz, "time"), hide_index=True, placeholder="–", column_config={
        "time": st.column_config.DatetimeColumn(f"time ({filters.tz})", format="DD MMM HH:mm", width="small"),
        "sentiment score": st.column_config.NumberColumn("score", format="%+.2f", width="small"),
        "text": st.column_config.TextColumn("text", width="large")})


_RATE_COLUMNS = {
    "negative share": st.column_config.ProgressColumn("negative", min_value=0.0, max_value=1.0, format="percent"),
    "answer rate": st.column_config.ProgressColumn("answered", min_value=0.0, max_value=1.0, format="percent"),
}

#: The page's panels, row by row.
PANEL_ROWS: list[list[Panel]] = [
    [footprint, sentiment_by_channel],
    [owned_vs_third_party],
    [audience, business_hours],
    [after_interaction],
    [service_times],
    [volume_over_time],
    [channel_table],
    [notable_mentions],
]
PANELS: list[Panel] = [p for row in PANEL_ROWS for p in row]

