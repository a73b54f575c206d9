"""Reports: the management report of ``pulse report`` for the chosen period, on screen and to download.

The same :func:`stream.report.build_report` and :func:`stream.report.write_report` as the command line,
so the CSV, Parquet and HTML files are what ``pulse report --from … --to … --per …`` writes for that
period (times in UTC, as there); the tables on screen show times in the chosen timezone. Every column the
report has is shown (a column the report gains appears without a change here), formatted by what its
name says it is (:func:`column_config`: ``*_rate`` and ``*_share`` as percentages, ``*_min`` and ``*_h``
as durations, sentiment ``before``/``after`` with a sign).
"""

from __future__ import annotations

import dataclasses
import io
import shlex
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import altair as alt
import polars as pl
import streamlit as st

from dashboard.data import DashboardSettings, Filters, redis_client, resolve_span
from dashboard.ui import REDIS_ERRORS, local_frame, md_escape, redis_down, show_chart, to_local
from stream.keys import GRANULARITIES, Keys
from stream.report import Report, build_report, write_report

__all__ = ["column_config", "load_report", "render", "report_files"]

_PER = {"h": "hour", "d": "day"}
#: Reports over at most this much event time read exact quantiles; longer ones the hour and day sketches.
EXACT_QUANTILES_MS = 86_400_000


@st.cache_data(ttl=5.0, show_spinner=False, max_entries=32)
def load_report(url: str | None, prefix: str, filters: Filters, gran: str) -> Report | None:
    """The report over the filters' period (aligned to whole hours or days), or None before any data."""
    span = resolve_span(redis_client(url), Keys(prefix), filters)
    if span is None:
        return None
    length = GRANULARITIES[gran]
    lo = span.start_ms - span.start_ms % length
    hi = span.end_ms if span.end_ms % length == 0 else span.end_ms - span.end_ms % length + length
    # beyond a day, quantiles from the windows' sketches (within 1 %, the "quantiles" column says so): a week
    # holds tens of thousands of exact response times
    report = build_report(redis_client(url), Keys(prefix), datetime.fromtimestamp(lo / 1000, tz=UTC),
                          datetime.fromtimestamp(hi / 1000, tz=UTC), gran,  # type: ignore[arg-type]
                          filters.brands, exact_quantiles=hi - lo <= EXACT_QUANTILES_MS)
    if filters.channels:
        keep = pl.col("channel").is_in(list(filters.channels))
        report = dataclasses.replace(report, periods=report.periods.filter(keep), channels=report.channels.filter(keep))
    return report




def report_files(report: Report) -> dict[str, bytes]:
    """The report as ``pulse report`` writes it: ``csv``, ``parquet`` (one row per period × brand × channel)
    and ``html`` (brands, channels, periods)."""
    buf = io.BytesIO()
    report.periods.write_parquet(buf)
    return {"csv": (write_report(report, "csv", None) or "").encode(), "parquet": buf.getvalue(),
            "html": (write_report(report, "html", None) or "").encode()}


def render(settings: DashboardSettings, filters: Filters) -> None:
    title, per_col = st.columns([5, 1.4], vertical_alignment="bottom")
    with title:
        st.title(":material/summarize: Reports", anchor=False)
    with per_col:
        default = "h" if filters.span_minutes <= 2 * 1440 else "d"
        gran = st.segmented_control("Per", list(_PER), default=default, format_func=_PER.__getitem__, required=True,
                                    key="rep_per") or default
    try:
        report = load_report(settings.redis_url, settings.prefix, filters, gran)
    except REDIS_ERRORS as exc:
        redis_down(settings, exc)
        return
    if report is None or report.periods.is_empty():
        st.info("**No data in this period.** Pick a longer time range (sidebar) or start a flow; the report "
                "covers whatever the flow has written.", icon=":material/hourglass_empty:")
        return
    assert report.since is not None and report.until is not None
    since, until = to_local(report.since, filters.tz), to_local(report.until, filters.tz)
    assert since is not None and until is not None
    scope = (filters.brand or "All brands") + (" · " + ", ".join(filters.channels) if filters.channels else "")
    st.caption(f"{md_escape(scope)} · "
               f"{since:%d %b %Y %H:%M} – {until:%d %b %Y %H:%M} {filters.tz} · per {_PER[gran]} · "
               "answer rate = answered queries ÷ queries; first response = mention to the brand's first reply (event time)")
    files = report_files(report)
    stamp = f"{report.since:%Y%m%d%H%M}-{report.until:%Y%m%d%H%M}"
    cols = st.columns([1, 1, 1, 4])
    cols[0].download_button("CSV", files["csv"], f"pulse-report-{stamp}.csv", "text/csv", key="rep_csv",
                            icon=":material/download:")
    cols[1].download_button("Parquet", files["parquet"], f"pulse-report-{stamp}.parquet",
                            "application/vnd.apache.parquet", key="rep_parquet", icon=":material/download:")
    cols[2].download_button("HTML", files["html"], f"pulse-report-{stamp}.html", "text/html", key="rep_html",
                            icon=":material/download:")
    with cols[3]:
        st.caption("The same files from the command line:")
    command = (f"pulse report --from {report.since:%Y-%m-%dT%H:%M}Z --to {report.until:%Y-%m-%dT%H:%M}Z "
               f"--per {_PER[gran]}" + (f" --brand {shlex.quote(filters.brand)}" if filters.brand else "")
               + " --format html -o report.html")
    st.code(command, language="bash")
    with st.container(border=True):
        st.subheader("Brands", anchor=False)
        if filters.channels:
            st.caption("Brand totals cover every channel; the channel filter narrows the tables below.")
        brands = report.brands.to_pandas()
        st.dataframe(brands, hide_index=True, placeholder="–", column_config=column_config(brands.columns))
    left, right = st.columns([1.3, 1])
    with left, st.container(border=True):
        st.subheader("Channels", anchor=False)
        channels = report.channels.to_pandas()
        st.dataframe(channels, hide_index=True, placeholder="–", column_config=column_config(channels.columns))
    with right, st.container(border=True):
        st.subheader(f"Mentions per {_PER[gran]}", anchor=False)
        per = (report.periods.group_by("period", "brand").agg(pl.col("mentions").sum()).sort("period").to_pandas())
        per = local_frame(per, filters.tz, "period")
        per["when"] = per["period"].dt.strftime("%d %b %H:00" if gran == "h" else "%d %b %Y")
        show_chart(alt.Chart(per, height=280).mark_bar().encode(
            alt.X("when:O", title=None, sort=None, axis=alt.Axis(labelAngle=0, labelOverlap=True)),
            alt.Y("mentions:Q", stack="zero"),
            alt.Color("brand:N", legend=alt.Legend(orient="bottom", title=None)),
            tooltip=["when:N", "brand:N", "mentions:Q"]))
    with st.container(border=True):
        st.subheader(f"Per {_PER[gran]}, brand and channel", anchor=False)
        periods = local_frame(report.periods.to_pandas(), filters.tz, "period")
        st.dataframe(periods, hide_index=True, placeholder="–", height=420, column_config={
            **column_config(periods.columns),
            "period": st.column_config.DatetimeColumn(f"period ({filters.tz})", format="DD MMM YYYY HH:mm")})


_COLUMNS = {
    "negative_share": st.column_config.NumberColumn("negative share", format="percent"),
    "answer_rate": st.column_config.NumberColumn("answer rate", format="percent"),
    "first_response_mean_min": st.column_config.NumberColumn("1st resp. mean (min)", format="%.1f"),
    "first_response_p50_min": st.column_config.NumberColumn("1st resp. p50 (min)", format="%.1f"),
    "first_response_p90_min": st.column_config.NumberColumn("1st resp. p90 (min)", format="%.1f"),
}


def _format_of(name: str) -> str | None:
    """How a report column reads, from its name (None: as it is).

    >>> [_format_of(n) for n in ("attraction_rate", "after_reply_improved_share", "resolution_mean_h",
    ...                          "next_response_mean_min", "after_reply_before", "mentions")]
    ['percent', 'percent', '%.2f', '%.1f', '%+.2f', None]
    """
    if name.endswith(("_rate", "_share")):
        return "percent"
    if name.endswith("_min"):
        return "%.1f"
    if name.endswith("_h"):
        return "%.2f"
    if name.endswith(("_before", "_after", "_change")) or name in ("before", "after", "change"):
        return "%+.2f"
    return None


def column_config(columns: Iterable[str]) -> dict[str, Any]:
    """Column settings for whatever columns the report has: the known ones by name, the others by what
    their name says (a new insight column of ``pulse report`` is formatted without a change here)."""
    out: dict[str, Any] = {}
    for name in columns:
        if name in _COLUMNS:
            out[name] = _COLUMNS[name]
            continue
        fmt = _format_of(name)
        if fmt is not None:
            out[name] = st.column_config.NumberColumn(name.replace("_", " "), format=fmt)
    return out
