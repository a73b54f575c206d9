"""Channels, for marketing: which social webs bring the customers, how they feel there, owned vs third-party.

Over the chosen period and filters (:func:`dashboard.data.read_channels`): the footprint of each channel
(mentions and distinct authors), share of voice, sentiment and volume, the brands' own communities beside
the third-party networks, and the newest negative mentions. The page is a list of panels
(:data:`PANELS`): a new insight is one function ``(view, filters) -> None`` and one line there.
"""

from __future__ import annotations

from collections.abc import Callable

import altair as alt
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

__all__ = ["PANELS", "render"]

Panel = Callable[[ChannelsView, Filters], None]


def render(settings: DashboardSettings, filters: Filters) -> None:
    st.title(":material/hub: Channels", anchor=False)
    try:
        view = load_channels_view(settings.redis_url, settings.prefix, filters, settings.owned_channels)
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
    [volume_over_time],
    [channel_table],
    [notable_mentions],
]
PANELS: list[Panel] = [p for row in PANEL_ROWS for p in row]

