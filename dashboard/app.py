"""Social Pulse dashboard: the frame around every page (``streamlit run dashboard/app.py``).

Settings come from the environment ``pulse dashboard`` sets (see :class:`dashboard.data.DashboardSettings`);
pages are registered once with ``st.navigation`` below. The frame draws the filters every page honours,
the sign-in, and a banner while Redis is unreachable (it checks on its own and reloads the page when Redis
is back). ``?wall=1`` (or ``pulse dashboard --wall``) is the wall display: no sidebar, one page.
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

from dashboard import (  # noqa: E402
    audit_page,
    channels_page,
    command_centre,
    customers_page,
    incidents_page,
    models_page,
    reports_page,
    service_page,
    wall,
)
from dashboard.auth import auth_method, current_user, sign_in_panel  # noqa: E402
from dashboard.data import DashboardSettings, DashboardSettingsError, Filters, redis_client  # noqa: E402
from dashboard.filters import filter_panel  # noqa: E402
from dashboard.ui import REDIS_ERRORS  # noqa: E402

st.set_page_config(layout="wide", page_title="Social Pulse", page_icon=":material/monitoring:",
                   initial_sidebar_state="expanded")

try:
    settings = DashboardSettings.from_env()
except DashboardSettingsError as exc:
    st.error(f"The dashboard cannot start: {exc}", icon=":material/error:")
    st.stop()


def _redis_banner() -> None:
    """A banner while Redis is unreachable; when it answers again the whole page reloads by itself."""
    try:
        redis_client(settings.redis_url).ping()
    except REDIS_ERRORS:
        st.session_state["redis_down"] = True
        st.error(f"Redis unreachable at {settings.display_url} — retrying", icon=":material/cloud_off:")
        return
    if st.session_state.pop("redis_down", False):
        st.rerun(scope="app")


banner_every = settings.refresh_seconds if settings.refresh_seconds > 0 else 5.0
in_wall = settings.wall or st.query_params.get("wall") in ("1", "true", "yes")

if not settings.public_read and current_user(settings) is None:
    # Nothing is shown before sign-in (PULSE_DASHBOARD_PUBLIC=0).
    with st.sidebar:
        st.header("Social Pulse", anchor=False)
        sign_in_panel(settings)
    st.title("Social Pulse", anchor=False)
    if auth_method(settings) == "none":
        st.error("PULSE_DASHBOARD_PUBLIC=0 hides every page until sign-in, but no sign-in is configured: set "
                 "PULSE_DASHBOARD_TOKEN or OIDC in .streamlit/secrets.toml.", icon=":material/lock:")
    else:
        st.info("Sign in (sidebar) to see the dashboard.", icon=":material/lock:")
    st.stop()

if in_wall:
    wall_filters = Filters(brand=st.query_params.get("brand") or None)
    st.fragment(_redis_banner, run_every=banner_every)()
    page = st.navigation([st.Page(partial(wall.render, settings, wall_filters), title="Wall", url_path="wall",
                                  icon=":material/tv:", default=True)], position="hidden")
    page.run()
    st.stop()

with st.sidebar:
    st.header("Social Pulse", anchor=False)
    filters = filter_panel(settings)

pages = [
    st.Page(partial(command_centre.render, settings, filters), title="Command centre",
            icon=":material/monitoring:", url_path="command-centre", default=True),
    st.Page(partial(incidents_page.render, settings, filters), title="Incidents", icon=":material/emergency:",
            url_path="incidents"),
    st.Page(partial(service_page.render, settings, filters), title="Service desk", icon=":material/support_agent:",
            url_path="service-desk"),
    st.Page(partial(customers_page.render, settings, filters), title="Customers", icon=":material/group:",
            url_path="customers"),
    st.Page(partial(channels_page.render, settings, filters), title="Channels", icon=":material/hub:",
            url_path="channels"),
    st.Page(partial(reports_page.render, settings, filters), title="Reports", icon=":material/summarize:",
            url_path="reports"),
    st.Page(partial(models_page.render, settings, filters), title="Models", icon=":material/model_training:",
            url_path="models"),
    st.Page(partial(audit_page.render, settings, filters), title="Audit log", icon=":material/history:",
            url_path="audit"),
]
page = st.navigation(pages, position="sidebar")

with st.sidebar:
    st.divider()
    sign_in_panel(settings)
    st.divider()
    refresh = f"every {settings.refresh_seconds:g} s" if settings.refresh_seconds else "off"
    st.text(f"Redis: {settings.display_url}\nKey prefix: {settings.prefix}\nRefresh: {refresh}")
    st.link_button("Wall display", "./?wall=1", icon=":material/tv:")

st.fragment(_redis_banner, run_every=banner_every)()
page.run()
