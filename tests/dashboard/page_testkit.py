"""Running one dashboard page under AppTest with the frame's sidebar filters, and checks shared by page tests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from dashboard_seed import HOSTILE
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "page-test-token-0123456789"

#: The page with the frame's filters in the sidebar (st.navigation pages are callables AppTest cannot switch to).
RUNNER = """
import sys
sys.path.insert(0, {root!r})
import streamlit as st
from dashboard.auth import sign_in_panel
from dashboard.data import DashboardSettings
from dashboard.filters import filter_panel
from dashboard import {page}
settings = DashboardSettings.from_env()
with st.sidebar:
    filters = filter_panel(settings)
    sign_in_panel(settings)
{page}.render(settings, filters)
"""

#: Pieces of the hostile text that would be markup if anything rendered user text as Markdown or HTML.
HOSTILE_PIECES = ("<script>", "**bold**", "![x]", "javascript:", "[click]", "mallory", "Mallory")


def run_page(monkeypatch: pytest.MonkeyPatch, redis_url: str, prefix: str, page: str, *, user: str | None = None,
             state: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> AppTest:
    """Run ``dashboard.<page>`` once; ``user`` signs in through the session (as the sign-in form does)."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("PULSE_PREFIX", prefix)
    monkeypatch.setenv("PULSE_DASHBOARD_TOKEN", TOKEN)
    monkeypatch.setenv("PULSE_DASHBOARD_REFRESH", "2")
    monkeypatch.delenv("PULSE_CRM_CONFIG", raising=False)
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    at = AppTest.from_string(RUNNER.format(root=str(ROOT), page=page), default_timeout=120)
    if user:
        at.session_state["pulse_user"] = user
    for k, v in (state or {}).items():
        at.session_state[k] = v
    return at.run()


def rendered(markdown: str) -> str:
    """What a Markdown string escaped with ``dashboard.ui.md_escape`` reads like on screen."""
    return re.sub(r"\\(.)", r"\1", markdown)


def markdown_texts(at: AppTest) -> list[str]:
    """Every piece of text the app rendered through Markdown (titles, captions, alerts, labels, ...)."""
    out: list[str] = []
    for kind in ("markdown", "caption", "title", "header", "subheader", "info", "error", "warning", "success",
                 "toast", "latex"):
        out.extend(str(e.value) for e in at.get(kind))
    out.extend(e.label for e in at.expander)
    out.extend(e.label for e in at.get("tab"))
    out.extend(str(m.label) for m in at.metric)
    for widget in ("selectbox", "multiselect", "text_input", "text_area", "button", "checkbox", "toggle"):
        out.extend(str(getattr(w, "label", "")) for w in at.get(widget))
    return out


def assert_no_markup_from_users(at: AppTest) -> None:
    """No user text reached a Markdown context (and no raw HTML element was used)."""
    leaks = [t for t in markdown_texts(at) if any(piece in t for piece in HOSTILE_PIECES)]
    assert not leaks, leaks
    assert not at.get("html")


def shows_literally(at: AppTest, text: str = HOSTILE) -> bool:
    """``text`` is shown as is: in a table cell, a plain-text or code element."""
    plain = [str(t.value) for t in at.text] + [str(c.value) for c in at.code]
    tables = [df.value for df in at.dataframe]
    return any(text in p for p in plain) or any(
        text in str(v) for frame in tables if isinstance(frame, pd.DataFrame) for v in frame.astype(str).values.ravel())


def table(at: AppTest, column: str, *more: str) -> pd.DataFrame:
    """The first table that has ``column`` (and the ``more`` columns)."""
    wanted = {column, *more}
    for df in at.dataframe:
        if isinstance(df.value, pd.DataFrame) and wanted <= set(df.value.columns):
            return df.value
    raise AssertionError(f"no table with columns {sorted(wanted)} among {[list(d.value.columns) for d in at.dataframe]}")
