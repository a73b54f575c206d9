"""Small pieces every page uses: the Redis-down state, times in the chosen timezone, plain-text user content.

User text (mention texts, handles, names, KB titles, top terms) is only ever shown through :func:`plain`
(``st.text``), dataframes or disabled text areas, which show it literally; never through Markdown or HTML.

>>> to_local(datetime(2024, 1, 1, 12, 0, tzinfo=UTC), "Asia/Kolkata")
datetime.datetime(2024, 1, 1, 17, 30)
>>> local_series(pd.Series([datetime(2024, 1, 1, 12, 0, tzinfo=UTC)]), "America/New_York").iloc[0]
Timestamp('2024-01-01 07:00:00')
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import redis
import streamlit as st
from altair import MaxRowsError

from dashboard.data import DashboardSettings, RedisUnavailable
from stream.redisconn import mask_secrets

__all__ = ["REDIS_ERRORS", "chart_time", "chart_times", "local_frame", "chart_template", "md_escape", "records", "show_chart", "show_chart_template", "local_series", "plain", "redis_down", "to_local", "zone"]

#: What a read raises when Redis is away.
REDIS_ERRORS = (RedisUnavailable, redis.RedisError, OSError)


def zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def to_local(when: datetime | None, tz: str) -> datetime | None:
    """An aware time as the wall-clock time of ``tz``, naive (charts draw naive times as they are)."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(zone(tz)).replace(tzinfo=None)


def local_series(values: pd.Series, tz: str) -> pd.Series:
    """A column of times as naive wall-clock times of ``tz``."""
    return pd.to_datetime(values, utc=True).dt.tz_convert(zone(tz)).dt.tz_localize(None)


def local_frame(frame: pd.DataFrame, tz: str, *columns: str) -> pd.DataFrame:
    """``frame`` with the given time columns converted by :func:`local_series` (a copy)."""
    out = frame.copy()
    for c in columns:
        if c in out.columns and not out.empty:
            out[c] = local_series(out[c], tz)
    return out


def chart_times(frame: pd.DataFrame, tz: str, *columns: str) -> pd.DataFrame:
    """``frame`` with time columns as the wall-clock time of ``tz`` labelled UTC: charts draw them on a UTC
    scale, so the axis reads ``tz`` whatever the viewer's browser zone is (a copy)."""
    out = frame.copy()
    for c in columns:
        if c in out.columns and not out.empty:
            out[c] = local_series(out[c], tz).dt.tz_localize("UTC")
    return out


def chart_time(when: datetime, tz: str) -> datetime:
    """One time as :func:`chart_times` shows it (wall clock of ``tz``, labelled UTC)."""
    local = to_local(when, tz)
    assert local is not None
    return local.replace(tzinfo=UTC)


def md_escape(text: object) -> str:
    r"""Data-derived short text (ids, channel names) made inert for a Markdown context: every ASCII
    punctuation character backslash-escaped, line breaks as spaces. User text never goes to Markdown at all.

    >>> print(md_escape("[click](javascript:alert(1)) **b** :red[x] $x$"))
    \[click\]\(javascript\:alert\(1\)\) \*\*b\*\* \:red\[x\] \$x\$
    """
    flat = " ".join(str(text).split())
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", flat)


def show_chart(chart: Any, *, theme: Literal["streamlit"] | None = "streamlit") -> None:
    """Draw an Altair chart across the container.

    Its Vega-Lite spec is built here with Altair's own ``to_dict`` but without the JSON-schema pass that
    ``st.altair_chart`` runs on every refresh (it doubles the cost of a live chart); the data goes inline.
    """
    try:
        spec = chart.to_dict(validate=False)
    except MaxRowsError:  # more rows than inline data takes: Streamlit's own path sends them as Arrow
        st.altair_chart(chart, width="stretch", theme=theme)
        return
    st.vega_lite_chart(spec=spec, width="stretch", theme=theme)


#: Chart specs by their structure (see :func:`show_chart_template`); shared by every session, never mutated.
_TEMPLATES: OrderedDict[Hashable, dict[str, Any]] = OrderedDict()
_TEMPLATES_LOCK = threading.Lock()
TEMPLATES_KEPT = 256


def chart_template(key: Hashable, build: Callable[[], Any]) -> dict[str, Any]:
    """The Vega-Lite spec of ``build()`` (an Altair chart reading named datasets), built once per ``key``."""
    with _TEMPLATES_LOCK:
        spec = _TEMPLATES.get(key)
        if spec is not None:
            _TEMPLATES.move_to_end(key)
            return spec
    spec = build().to_dict()  # validated, once per structure
    with _TEMPLATES_LOCK:
        _TEMPLATES[key] = spec
        while len(_TEMPLATES) > TEMPLATES_KEPT:
            _TEMPLATES.popitem(last=False)
    return spec


def show_chart_template(key: Hashable, build: Callable[[], Any], data: Mapping[str, pd.DataFrame], *,
                        theme: Literal["streamlit"] | None = "streamlit") -> None:
    """Draw a live chart whose structure changes rarely: ``build()`` returns an Altair chart whose data are
    ``alt.NamedData(name)`` for each ``name`` in ``data``; its spec is built once per ``key`` (everything the
    structure depends on: range, timezone, series...) and each refresh only swaps the datasets in, as Altair
    would write them. A live panel refreshing every two seconds then costs the reads, not the chart building.
    """
    spec = chart_template(key, build)
    # Streamlit sends named datasets to the browser as Arrow, as it does for st.altair_chart
    st.vega_lite_chart(spec={**spec, "datasets": {**spec.get("datasets", {}), **data}}, width="stretch", theme=theme)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as Vega-Lite reads inline data: times as ISO 8601 (UTC as ``Z``), missing values as null.

    >>> records(pd.DataFrame({"start": pd.to_datetime(["2024-01-01 10:00"], utc=True), "n": [1.5], "m": [None]}))
    [{'start': '2024-01-01T10:00:00Z', 'n': 1.5, 'm': None}]
    """
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            out[column] = values.dt.tz_convert("UTC").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif pd.api.types.is_datetime64_any_dtype(values):
            out[column] = values.dt.strftime("%Y-%m-%dT%H:%M:%S")
    out = out.astype(object).where(out.notna(), None)
    return out.to_dict("records")


def plain(text: object) -> None:
    """Show user text exactly as written (no Markdown, no HTML)."""
    st.text(str(text))


def redis_down(settings: DashboardSettings, exc: BaseException | None = None) -> None:
    """What a panel shows when its read failed: the frame's banner says where and retries; this says what
    was not shown (passwords masked)."""
    detail = f" ({md_escape(mask_secrets(str(exc)))})" if exc is not None else ""
    st.caption(f"Not shown: Redis did not answer{detail}. This panel fills in by itself when Redis is back.")
