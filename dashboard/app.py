"""Social Pulse dashboard: the frame around every page (``streamlit run dashboard/app.py``).

Settings come from the environment ``pulse dashboard`` sets (``REDIS_URL``, ``PULSE_PREFIX``,
``PULSE_DASHBOARD_REFRESH``); pages are registered once with ``st.navigation`` below.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import streamlit as st

# `streamlit run dashboard/app.py` puts dashboard/ on sys.path, not the project root.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from dashboard import command_centre, models_page, service_page  # noqa: E402
from dashboard.data import DashboardSettings, DashboardSettingsError  # noqa: E402

st.set_page_config(layout="wide", page_title="Social Pulse", page_icon=":material/monitoring:",
                   initial_sidebar_state="collapsed")

try:
    settings = DashboardSettings.from_env()
except DashboardSettingsError as exc:
    st.error(f"The dashboard cannot start: {exc}", icon=":material/error:")
    st.stop()

pages = [
    st.Page(partial(command_centre.render, settings), title="Command centre", icon=":material/monitoring:",
            url_path="command-centre", default=True),
    st.Page(partial(service_page.render, settings), title="Service desk", icon=":material/support_agent:",
            url_path="service-desk"),
    st.Page(partial(models_page.render, settings), title="Models", icon=":material/model_training:",
            url_path="models"),
]
page = st.navigation(pages, position="sidebar")

with st.sidebar:
    st.header("Social Pulse", anchor=False)
    st.caption("Social media → CRM → analytics, live from Redis.")
    refresh = f"every {settings.refresh_seconds:g} s" if settings.refresh_seconds else "off"
    st.text(f"Redis: {settings.display_url}\nKey prefix: {settings.prefix}\nRefresh: {refresh}")

page.run()
