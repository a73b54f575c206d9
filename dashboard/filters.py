"""The filters every page honours (brand, channels, time range, timezone), drawn once in the sidebar.

Widget state lives in the session under fixed keys (``f_brand``, ``f_channels``, ``f_period``, ``f_days``,
``f_tz``), so a choice follows the user from page to page. Options come from Redis (brands and channels
seen so far); when Redis is away the filters show what they can and the pages say why they are empty.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import available_timezones

import streamlit as st

from dashboard.data import PERIODS, DashboardSettings, Filters, load_brands, load_channels
from dashboard.ui import REDIS_ERRORS

__all__ = ["ALL_BRANDS", "CALENDAR", "filter_panel", "timezones"]

ALL_BRANDS = "All brands"
#: The time-range choice that shows the calendar-day picker.
CALENDAR = -1
_PERIOD_LABELS = {**{m: label.capitalize() for m, label in PERIODS.items()}, CALENDAR: "Calendar days…"}
_COMMON_ZONES = ("UTC", "Europe/London", "Europe/Paris", "America/New_York", "America/Chicago",
                 "America/Los_Angeles", "Asia/Kolkata", "Asia/Singapore", "Asia/Tokyo", "Australia/Sydney")


@functools.lru_cache(maxsize=32)
def timezones(browser: str | None = None) -> list[str]:
    """UTC, the browser's zone, common ones, then every other IANA zone.

    >>> timezones("Asia/Kolkata")[:3]
    ['UTC', 'Asia/Kolkata', 'Europe/London']
    """
    every = available_timezones()
    first = ["UTC"] + ([browser] if browser and browser in every and browser != "UTC" else [])
    common = [z for z in _COMMON_ZONES if z not in first]
    return first + common + sorted(every - set(first) - set(common))


def filter_panel(settings: DashboardSettings) -> Filters:
    """Draw the filters (in the current container, normally the sidebar) and return the choice."""
    try:
        brands = load_brands(settings.redis_url, settings.prefix)
        channels = load_channels(settings.redis_url, settings.prefix)
    except REDIS_ERRORS:
        brands, channels = [], []
    chosen_brand = st.session_state.get("f_brand")
    if chosen_brand and chosen_brand not in brands:
        brands = [*brands, chosen_brand]  # keep a choice while Redis is away
    brand = st.selectbox("Brand", [ALL_BRANDS, *brands], key="f_brand")
    kept = [c for c in st.session_state.get("f_channels", []) if c not in channels]
    picked = st.multiselect("Channels", [*channels, *kept], key="f_channels", placeholder="All channels")
    period = st.selectbox("Time range", list(_PERIOD_LABELS), index=1, key="f_period",
                          format_func=_PERIOD_LABELS.__getitem__,
                          help="Event time: the last minutes of the data (a replay of old data looks like live "
                               "traffic), or whole calendar days in the chosen timezone.")
    days = None
    if period == CALENDAR:
        today = datetime.now(UTC).date()
        picked_days = st.date_input("Days", value=(today - timedelta(days=6), today), key="f_days",
                                    max_value=today + timedelta(days=366), format="YYYY-MM-DD")
        if isinstance(picked_days, (list, tuple)) and len(picked_days) == 2:
            days = (picked_days[0], picked_days[1])
        elif isinstance(picked_days, (list, tuple)) and len(picked_days) == 1:
            days = (picked_days[0], picked_days[0])
        elif isinstance(picked_days, date):
            days = (picked_days, picked_days)
    browser = getattr(st.context, "timezone", None)
    tz = st.selectbox("Timezone", timezones(browser), key="f_tz",
                      help="Times and chart axes are shown in this zone; windows are kept in UTC.")
    return Filters(brand=None if brand == ALL_BRANDS else brand, channels=tuple(sorted(picked)),
                   minutes=60 if period == CALENDAR else int(period), days=days, tz=tz or "UTC")
