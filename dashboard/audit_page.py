"""The audit log: who did what, when (answers, resolutions, incidents, notices, rollbacks, labels)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.data import CACHE_TTL_SECONDS, DashboardSettings, Filters, redis_client
from dashboard.ui import REDIS_ERRORS, local_frame, redis_down
from stream.audit import recent_actions
from stream.keys import Keys

__all__ = ["load_audit", "render"]


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False, max_entries=32)
def load_audit(url: str | None, prefix: str, n: int, user: str | None) -> pd.DataFrame:
    entries = recent_actions(redis_client(url), Keys(prefix), n, user=user or None)
    frame = pd.DataFrame([{"when": e.ts, "user": e.user, "action": e.action, "target": e.target,
                           "outcome": e.outcome, "detail": ", ".join(f"{k}={v}" for k, v in e.detail.items())}
                          for e in entries], columns=["when", "user", "action", "target", "outcome", "detail"])
    frame["when"] = pd.to_datetime(frame["when"], utc=True, errors="coerce", format="ISO8601")
    return frame


def render(settings: DashboardSettings, filters: Filters) -> None:
    st.title(":material/history: Audit log", anchor=False)
    st.caption("Every action taken from the dashboard (and by the service functions the command line shares), "
               "with the signed-in user. The newest first; the log keeps about 100,000 entries.")
    user = st.text_input("Only this user", key="audit_user", placeholder="any user")
    try:
        frame = load_audit(settings.redis_url, settings.prefix, 500, user.strip() or None)
    except REDIS_ERRORS as exc:
        redis_down(settings, exc)
        return
    if frame.empty:
        st.info("**Nothing recorded yet.** Actions appear here once someone signed in answers a case, "
                "acknowledges an incident, sends a notice, rolls back a model or labels mentions.",
                icon=":material/history:")
        return
    st.dataframe(local_frame(frame, filters.tz, "when"), hide_index=True, placeholder="–", height=600,
                 column_config={
                     "when": st.column_config.DatetimeColumn(f"when ({filters.tz})", format="DD MMM YYYY HH:mm:ss"),
                     "detail": st.column_config.TextColumn("detail", width="large")})
