"""The command centre: the live overview (KPI tiles, trends, alerts, latest mentions); its big-screen twin is
:mod:`dashboard.wall`.

Filters (brand, channels, time range, timezone) come from the sidebar; everything below the title is one
fragment that reruns on its own every few seconds, reading cached figures from :mod:`dashboard.data`.

User text (mention texts, authors, dead-letter payloads) only ever reaches the screen inside dataframes,
which show it as plain text; nothing written by users goes through Markdown or HTML.

>>> format_minutes(51.2), format_minutes(135.0), format_minutes(None)
('51 min', '2h 15m', '–')
>>> format_delta(0.80, 0.75, "pp"), format_delta(12.0, 10.0, "%"), format_delta(None, 3.0, "min")
('+5.0 pp', '+20 %', None)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import altair as alt
import pandas as pd
import streamlit as st

from dashboard.data import (
    PERIODS,
    CommandCentre,
    DashboardSettings,
    Filters,
    load_brands,
    load_channels,
    load_command_centre,
)
from dashboard.ui import (
    REDIS_ERRORS,
    chart_time,
    chart_times,
    local_frame,
    md_escape,
    redis_down,
    show_chart_template,
    to_local,
)

__all__ = ["channel_colour", "draw_chart", "format_delta", "format_minutes", "format_rate", "mentions_chart", "render", "response_chart",
           "sentiment_chart", "time_axis", "utc_datetime", "with_window"]

SENTIMENT_COLOURS = {"negative": "#e5484d", "neutral": "#7d8897", "positive": "#3ecf8e"}
RESPONSE_COLOURS = {"mean": "#4f8cff", "p90": "#f2a541"}
CHART_HEIGHT = 240
#: One colour per channel everywhere, so a channel keeps its colour whatever the filter.
CHANNEL_COLOURS = {"twitter": "#4f8cff", "facebook": "#8b7cf6", "instagram": "#f472b6", "linkedin": "#2ec4d6",
                   "review": "#f2a541", "forum": "#3ecf8e", "blog": "#facc15", "email": "#94a3b8",
                   "calls": "#e5484d"}
_SPARE_COLOURS = ["#c084fc", "#fb923c", "#a3e635", "#67e8f9", "#fda4af", "#d6d3d1"]


# -- formatting ---------------------------------------------------------------------------------------

def format_minutes(value: float | None) -> str:
    """A duration in minutes for a tile: ``51 min``, ``2h 15m`` (short enough for a narrow tile)."""
    if value is None:
        return "–"
    if value < 1:
        return f"{value * 60:.0f} s"
    if value < 60:
        return f"{value:.0f} min"
    hours, minutes = divmod(round(value), 60)
    return f"{hours}h {minutes:02d}m" if minutes else f"{hours}h"


def format_rate(value: float | None) -> str:
    """Mentions per minute: one decimal, two below one a minute so a quiet stream does not read 0.0.

    >>> format_rate(60.04), format_rate(0.0169), format_rate(None)
    ('60.0', '0.02', '–')
    """
    if value is None:
        return "–"
    return f"{value:,.2f}" if value < 1 else f"{value:,.1f}"


def format_delta(now: float | None, before: float | None, unit: str) -> str | None:
    """The change from ``before`` to ``now``: ``%`` relative, ``pp`` for shares, else absolute in ``unit``."""
    if now is None or before is None:
        return None
    if unit == "%":
        if before == 0:
            return None
        return f"{(now - before) / before * 100:+.0f} %"
    if unit == "pp":
        return f"{(now - before) * 100:+.1f} pp"
    return f"{now - before:+.1f} {unit}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def _number(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


# -- the page -----------------------------------------------------------------------------------------

def render(settings: DashboardSettings, filters: Filters) -> None:
    """Draw the page: title and live switch, then the live panel (filters come from the sidebar)."""
    title, live_col = st.columns([6, 1], vertical_alignment="bottom")
    with title:
        st.title(":material/monitoring: Command centre", anchor=False)
    with live_col:
        live = st.toggle("Live", value=settings.refresh_seconds > 0, key="cc_live",
                         help=f"Refresh every {settings.refresh_seconds:g} s", disabled=settings.refresh_seconds <= 0)
    every = settings.refresh_seconds if live and settings.refresh_seconds > 0 else None
    try:
        shown_brands = load_brands(settings.redis_url, settings.prefix)
    except REDIS_ERRORS:
        shown_brands = []  # the frame's banner says why; the live panel retries
    st.fragment(_live_panel, run_every=every)(settings, filters, shown_brands)


def _live_panel(settings: DashboardSettings, filters: Filters, shown_brands: list[str]) -> None:
    try:
        view = load_command_centre(settings.redis_url, settings.prefix, filters)
    except REDIS_ERRORS as exc:
        redis_down(settings, exc)
        return
    if view.brands != shown_brands:
        # A brand appeared (or Redis came back): redraw the frame so the brand filter lists it.
        load_brands.clear()
        load_channels.clear()
        st.rerun(scope="app")
    if not view.has_data:
        st.info(f"**Waiting for data** under the key prefix `{settings.prefix}` in `{settings.display_url}`"
                f"{' for this selection' if filters.brand or filters.channels else ''}. "
                "Start a flow, e.g. `pulse demo`, `pulse run --source sim` or `pulse replay FILE --format twcs`; "
                "this page fills in by itself.", icon=":material/hourglass_empty:")
        _dead_letter_panel(view)
        return
    tz = filters.tz
    _status_line(view, tz)
    _kpi_tiles(view)
    charts = st.columns(3)
    with charts[0], st.container(border=True):
        st.subheader("Mentions per channel", anchor=False)
        draw_chart("mentions", view, tz)
    with charts[1], st.container(border=True):
        st.subheader("Sentiment", anchor=False)
        draw_chart("sentiment", view, tz)
    with charts[2], st.container(border=True):
        st.subheader("First response time", anchor=False)
        if view.response.empty:
            st.caption("No brand replies in this range yet.")
        else:
            draw_chart("response", view, tz)
    _alerts_panel(view)
    left, right = st.columns([2.2, 1.25])
    with left, st.container(border=True):
        st.subheader("Latest mentions", anchor=False)
        _latest_table(view, tz)
    with right, st.container(border=True):
        st.subheader("Channels", anchor=False)
        _breakdown_table(view.channels, "channel")
        if view.brand is None and len(view.brands_table) > 1:
            st.subheader("Brands", anchor=False)
            _breakdown_table(view.brands_table, "brand")
    _dead_letter_panel(view)


def _status_line(view: CommandCentre, tz: str = "UTC") -> None:
    assert view.start is not None and view.end is not None
    fmt = {"m": "%d %b %Y %H:%M", "h": "%d %b %Y %H:00", "d": "%d %b %Y"}[view.gran]
    scope = md_escape(view.brand) if view.brand else f"all {len(view.brands)} brands"
    grain = {"m": "minute", "h": "hour", "d": "day"}[view.gran]
    newest = view.newest or view.end
    filling = f" · shaded: the newest {grain}, so far" if view.filling_from is not None else ""
    start, last = to_local(view.start, tz), to_local(newest, tz)
    assert start is not None and last is not None
    st.caption(f"{scope} · event time {start.strftime(fmt)} – {last.strftime('%H:%M:%S')} {tz} · "
               f"per-{grain} windows{filling} · {view.totals.get('accepted', 0):,} records accepted in total · "
               f"updated {datetime.now().strftime('%H:%M:%S')}")


def _kpi_tiles(view: CommandCentre) -> None:
    k, p, spark = view.kpis, view.previous, view.sparklines
    versus = "vs the range before" if view.minutes not in PERIODS else f"vs the {PERIODS[view.minutes][5:]} before"
    tiles: list[tuple[str, str, str | None, Literal["normal", "inverse", "off"], str, str]] = [
        ("Mentions / min", format_rate(k["mentions_per_min"]),
         format_delta(k["mentions_per_min"], p["mentions_per_min"], "%"), "off", "mentions_per_min",
         f"{_number(k['mentions'])} mentions in the range, per minute of event time up to the newest one."),
        ("Distinct authors", _number(k["authors"]), format_delta(k["authors"], p["authors"], "%"), "off",
         "authors", "Distinct authors in the range (HyperLogLog, per brand)."),
        ("Mean response", format_minutes(k["mean_response_min"]),
         format_delta(k["mean_response_min"], p["mean_response_min"], "min"), "inverse", "mean_response_min",
         f"Mean time to the brand's first reply, over {_number(k['responses'])} "
         + ("replies posted in the range." if view.gran == "m" else "first replies to the range's mentions.")),
        ("p90 response", format_minutes(k["p90_response_min"]),
         format_delta(k["p90_response_min"], p["p90_response_min"], "min"), "inverse", "p90_response_min",
         "90th percentile of first response times of replies posted in the range." if view.gran == "m" else
         "90th percentile of first response times of the range's mentions (hour and day sketches, within 1 %)."),
        ("Answer rate", _percent(k["answer_rate"]),
         format_delta(k.get("settled_answer_rate"), p["answer_rate"], "pp"), "normal", "answer_rate",
         "Answered customer queries ÷ customer queries in the range (answered: the brand replied to it)."
         + (f" Queries of the last {format_minutes(view.answer_wait_min)} (the p90 response time) are still being "
            "answered: the trend line and the comparison with the range before leave them out."
            if view.answer_wait_min else "")),
        ("Negative share", _percent(k["negative_share"]),
         format_delta(k["negative_share"], p["negative_share"], "pp"), "inverse", "negative_share",
         "Share of mentions classified negative."),
    ]
    # the answer rate's delta compares the queries that have had time to be answered (see its help)
    described = {"Answer rate": f"queries over {format_minutes(view.answer_wait_min)} old, {versus}"
                 if view.answer_wait_min else versus}
    columns = st.columns(len(tiles) + 1)
    for column, (label, value, delta, colour, spark_key, help_text) in zip(columns, tiles, strict=False):
        with column:
            st.metric(label, value, delta, delta_color=colour, border=True, help=help_text,
                      chart_data=spark.get(spark_key) or None, chart_type="area",
                      delta_description=described.get(label, versus) if delta else None)
    share = k["dead_letter_share"]
    with columns[-1]:
        st.metric("Dead letters", _number(k["dead_letters"]),
                  None if share is None else f"{share * 100:.2f} % malformed", delta_color="off",
                  border=True, delta_arrow="off", height="stretch",
                  help="Entries of the dead-letter stream (all time): malformed records, and labels, late records "
                       "or CRM inputs the flow refused, each with its reason; see the list below.")


def channel_colour(channel: str) -> str:
    """The chart colour of a channel (known channels have fixed ones)."""
    if channel in CHANNEL_COLOURS:
        return CHANNEL_COLOURS[channel]
    return _SPARE_COLOURS[sum(channel.encode()) % len(_SPARE_COLOURS)]


def utc_datetime(when: datetime) -> alt.DateTime:
    """A Vega-Lite date-time literal on the UTC scale (what :func:`dashboard.ui.chart_time` gives)."""
    return alt.DateTime(year=when.year, month=when.month, date=when.day, hours=when.hour, minutes=when.minute,
                        utc=True)


def time_axis(start: datetime, end: datetime, gran: str, tz: str, field: str = "start") -> alt.X:
    """A time axis over ``[start, end]`` reading in ``tz`` (the data must go through ``chart_times``)."""
    fmt = {"m": "%H:%M", "h": "%d %b %H:00", "d": "%d %b"}[gran]
    # A UTC scale over wall-clock times of the chosen zone: the viewer's own browser zone must not shift
    # the axis away from the caption.
    domain = [utc_datetime(chart_time(start, tz)), utc_datetime(chart_time(end, tz))]
    return alt.X(f"{field}:T", title=None, scale=alt.Scale(type="utc", domain=domain),
                 axis=alt.Axis(format=fmt, labelAngle=0, tickCount=6, grid=False))


def _time_axis(view: CommandCentre, tz: str) -> alt.X:
    assert view.start is not None and view.end is not None
    # Every chart spans the whole range, so the three line up even when one has sparse data.
    return time_axis(view.start, view.end, view.gran, tz)


def with_window(frame: pd.DataFrame, tz: str, field: str = "start") -> pd.DataFrame:
    """Chart-ready times plus the window as text for tooltips (Vega would show the viewer's local time)."""
    out = chart_times(frame, tz, field)
    if out.empty:
        return out.assign(window=pd.Series(dtype=str))
    # each distinct time formatted once (a week of hours x channels repeats every time six times or more)
    times = out[field]
    unique = times.drop_duplicates()
    labels = pd.Series(unique.dt.strftime("%d %b %H:%M").to_numpy(), index=unique.to_numpy())
    return out.assign(window=times.map(labels).astype(str) + f" {tz}")


_WINDOW_TOOLTIP = alt.Tooltip("window:N", title="window")


def _with_filling(chart: alt.Chart | alt.LayerChart, view: CommandCentre, tz: str, band: Any = None
                  ) -> alt.LayerChart | alt.Chart:
    """Shade the newest window while it is still filling, so its low counts read as "so far"."""
    if view.filling_from is None or view.end is None:
        return chart
    shade = alt.Chart(band if band is not None else _band(view, tz)).mark_rect(opacity=0.18, color="#9aa4b2").encode(
        alt.X("start:T", scale=alt.Scale(type="utc")), alt.X2("stop:T"), tooltip=[alt.Tooltip("note:N", title="")])
    return alt.LayerChart(layer=[shade, chart])


def _band(view: CommandCentre, tz: str) -> pd.DataFrame:
    assert view.filling_from is not None and view.end is not None
    return pd.DataFrame({"start": [chart_time(view.filling_from, tz)], "stop": [chart_time(view.end, tz)],
                         "note": ["newest window, so far"]})


def _mentions_frame(view: CommandCentre, tz: str) -> pd.DataFrame:
    return with_window(view.by_channel[["start", "channel", "mentions"]], tz)  # every window x channel, zeros in


def _sentiment_frame(view: CommandCentre, tz: str) -> pd.DataFrame:
    order = view.sentiment["sentiment"].map({"negative": 0, "neutral": 1, "positive": 2})
    return with_window(view.sentiment.assign(order=order), tz)


def mentions_chart(view: CommandCentre, tz: str = "UTC", data: Any = None, band: Any = None
                   ) -> alt.Chart | alt.LayerChart:
    """Stacked areas of mentions per window, one band per channel (``data``: its rows, or a named dataset)."""
    channels = sorted(view.by_channel["channel"].unique())
    chart = (
        alt.Chart(_mentions_frame(view, tz) if data is None else data, height=CHART_HEIGHT)
        .mark_area(interpolate="monotone", opacity=0.88)
        .encode(
            _time_axis(view, tz),
            alt.Y("mentions:Q", stack="zero", title="mentions"),
            alt.Color("channel:N", scale=alt.Scale(domain=channels, range=[channel_colour(c) for c in channels]),
                      legend=alt.Legend(orient="bottom", title=None, columns=8, symbolType="circle")),
            tooltip=[_WINDOW_TOOLTIP, "channel:N", "mentions:Q"],
        )
    )
    return _with_filling(chart, view, tz, band)


def sentiment_chart(view: CommandCentre, tz: str = "UTC", data: Any = None, band: Any = None
                    ) -> alt.Chart | alt.LayerChart:
    """Stacked areas of mentions per sentiment (negative at the bottom, where a surge shows first)."""
    chart = (
        alt.Chart(_sentiment_frame(view, tz) if data is None else data, height=CHART_HEIGHT)
        .mark_area(interpolate="monotone", opacity=0.9)
        .encode(
            _time_axis(view, tz),
            alt.Y("mentions:Q", stack="zero", title="mentions"),
            alt.Color("sentiment:N",
                      scale=alt.Scale(domain=list(SENTIMENT_COLOURS), range=list(SENTIMENT_COLOURS.values())),
                      legend=alt.Legend(orient="bottom", title=None)),
            alt.Order("order:Q"),
            tooltip=[_WINDOW_TOOLTIP, "sentiment:N", "mentions:Q"],
        )
    )
    return _with_filling(chart, view, tz, band)


def response_chart(view: CommandCentre, tz: str = "UTC", data: Any = None, band: Any = None
                   ) -> alt.Chart | alt.LayerChart:
    """Mean and p90 first response time (minutes) of the replies posted in each window."""
    base = alt.Chart(with_window(view.response, tz) if data is None else data, height=CHART_HEIGHT).encode(
        _time_axis(view, tz),
        alt.Y("minutes:Q", title="minutes"),
        alt.Color("statistic:N",
                  scale=alt.Scale(domain=list(RESPONSE_COLOURS), range=list(RESPONSE_COLOURS.values())),
                  legend=alt.Legend(orient="bottom", title=None)),
        tooltip=[_WINDOW_TOOLTIP, "statistic:N",
                 alt.Tooltip("minutes:Q", format=".1f"), alt.Tooltip("replies:Q", title="replies")],
    )
    lines = base.mark_line(interpolate="monotone", strokeWidth=2, point=alt.OverlayMarkDef(size=18, opacity=0.6))
    return _with_filling(lines, view, tz, band)


_FRAMES = {"mentions": _mentions_frame, "sentiment": _sentiment_frame,
           "response": lambda view, tz: with_window(view.response, tz)}
_CHARTS = {"mentions": mentions_chart, "sentiment": sentiment_chart, "response": response_chart}


def draw_chart(kind: str, view: CommandCentre, tz: str) -> None:
    """Draw one of the live charts (``mentions``, ``sentiment``, ``response``): its spec is built once per
    range, timezone and set of channels, and each refresh only swaps the rows in."""
    data = {"points": _FRAMES[kind](view, tz)}
    if view.filling_from is not None and view.end is not None:
        data["band"] = _band(view, tz)
    channels = tuple(sorted(view.by_channel["channel"].unique())) if kind == "mentions" else ()
    key = ("command_centre", kind, view.gran, tz, view.start, view.end, view.filling_from is not None, channels)
    show_chart_template(key, lambda: _CHARTS[kind](view, tz, alt.NamedData("points"), alt.NamedData("band")), data)


def _latest_table(view: CommandCentre, tz: str = "UTC") -> None:
    if view.latest.empty:
        st.caption("No mentions for this selection yet.")
        return
    latest = local_frame(view.latest, tz, "time")
    st.dataframe(
        latest,
        hide_index=True,
        placeholder="–",
        height=420,
        column_order=["time", "brand", "channel", "author", "sentiment", "intent", "text"],
        column_config={
            "time": st.column_config.DatetimeColumn(f"time ({tz})", format="DD MMM HH:mm:ss", width="small"),
            "brand": st.column_config.TextColumn("brand", width="small"),
            "channel": st.column_config.TextColumn("channel", width="small"),
            "author": st.column_config.TextColumn("author", width="small"),
            "sentiment": st.column_config.TextColumn("sentiment", width="small"),
            "intent": st.column_config.TextColumn("intent", width="small"),
            "text": st.column_config.TextColumn("text", width="large"),
        },
    )


def _breakdown_table(frame: pd.DataFrame, by: str) -> None:
    st.dataframe(
        frame,
        hide_index=True,
        placeholder="–",
        column_config={
            by: st.column_config.TextColumn(by),
            "mentions": st.column_config.NumberColumn("mentions", format="%d"),
            "negative share": st.column_config.ProgressColumn("negative", min_value=0.0, max_value=1.0,
                                                              format="percent", width="small"),
            "answer rate": st.column_config.ProgressColumn("answered", min_value=0.0, max_value=1.0,
                                                           format="percent", width="small"),
            "mean first response (min)": st.column_config.NumberColumn("1st resp.", format="%.0f min",
                                                                       width="small"),
        },
    )


def _alerts_panel(view: CommandCentre) -> None:
    with st.container(border=True):
        open_now = int((view.alerts["state"] != "resolved").sum()) if not view.alerts.empty else 0
        st.subheader(f"Alerts · {open_now} open", anchor=False)
        if view.alerts.empty:
            st.caption("No alerts: no spike, SLA breach or rule alert so far.")
            return
        st.dataframe(
            view.alerts,
            hide_index=True,
            placeholder="–",
            column_config={
                "window": st.column_config.TextColumn("window (UTC)", width="small"),
                "observed": st.column_config.NumberColumn("observed", format="%.0f", width="small"),
                "expected": st.column_config.NumberColumn("expected", format="%.1f", width="small"),
                "message": st.column_config.TextColumn("message", width="large"),
            },
        )


def _dead_letter_panel(view: CommandCentre) -> None:
    total = max(view.totals.get("dead_letters", 0), view.totals.get("dead_letter_stream", 0))
    shown = len(view.dead_letters)
    with st.expander(f"Dead letters · {total:,} in total" + (f", latest {shown} below" if shown else ""),
                     icon=":material/report:"):
        if view.dead_letters.empty:
            st.caption("No dead letters: every record offered so far was accepted.")
            return
        st.dataframe(
            view.dead_letters,
            hide_index=True,
            placeholder="–",
            column_config={
                "received": st.column_config.TextColumn("received (UTC)", width="small"),
                "reason": st.column_config.TextColumn("reason", width="medium"),
                "source": st.column_config.TextColumn("source", width="small"),
                "where": st.column_config.TextColumn("where", width="small",
                                                     help="Where the record is in the file it came from"),
                "raw": st.column_config.TextColumn("raw record", width="large"),
            },
        )
