"""The frame (AppTest of dashboard/app.py): wall mode, sign-in by token or OIDC, pages hidden before sign-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
from dashboard_seed import HOSTILE
from page_testkit import HOSTILE_PIECES, TOKEN
from streamlit.testing.v1 import AppTest

from dashboard.incidents_page import load_incidents
from stream.incident_desk import acknowledge
from stream.keys import Keys

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
LIVE = "spike:acme:twitter:202401011140"


def _frame(monkeypatch: pytest.MonkeyPatch, url: str, prefix: str, **env: str) -> AppTest:
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.setenv("PULSE_PREFIX", prefix)
    monkeypatch.setenv("PULSE_DASHBOARD_TOKEN", TOKEN)
    for k in ("PULSE_DASHBOARD_PUBLIC", "PULSE_DASHBOARD_WALL"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return AppTest.from_file(APP, default_timeout=120)


def _texts(at: AppTest) -> list[str]:
    return [t.value for t in at.text]


def test_wall_shows_big_figures_and_flashes_until_acknowledged(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                                               demo_copy: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, _ = demo_copy
    at = _frame(monkeypatch, redis_url, prefix)
    at.query_params.update({"wall": "1", "view": "now"})
    at.run()
    assert not at.exception
    assert not at.sidebar.children  # no sidebar, no filters, no sign-in on the wall
    assert at.title[0].value == "Social Pulse · Right now"
    assert {m.label for m in at.metric} == {"Mentions / min", "Negative", "Answered", "p90 response"}
    assert "1 live incident awaiting acknowledgement" in " ".join(_texts(at))
    [css] = at.get("html")  # the wall's style sheet: no user text in it
    assert "wall-flash" in str(css.proto.body) and not any(p in str(css.proto.body) for p in HOSTILE_PIECES)
    at.query_params["view"] = "incidents"
    at.run()
    shown = " ".join(_texts(at))
    assert "AWAITING ACK" in shown and f"Top terms: refund, {', '.join(HOSTILE.split(' '))}" in shown
    assert "14/5 min vs 2.0 expected" in shown  # the detector's unit (its series is watched at 5 minutes)
    assert not [m for m in at.markdown if any(p in str(m.value) for p in HOSTILE_PIECES)]
    acknowledge(redis.Redis.from_url(redis_url), Keys(prefix), LIVE, "ines")
    load_incidents.clear()  # what the next refresh reads once the one-second cache has expired
    at.run()
    shown = " ".join(_texts(at))
    assert "awaiting acknowledgement" not in shown and "acknowledged by ines" in shown
    for view, title in (("channels", "Channels"), ("desk", "Service desk")):
        at.query_params["view"] = view
        at.run()
        assert not at.exception and at.title[0].value == f"Social Pulse · {title}"
        assert at.get("vega_lite_chart") or at.metric


def test_token_sign_in(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                       demo_like: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, _ = demo_like
    at = _frame(monkeypatch, redis_url, prefix)
    at.run()
    at.text_input(key="auth_name").input("ines")
    at.text_input(key="auth_token").input("not-the-token")
    at.button(key="FormSubmitter:auth_form-Sign in").click().run()
    assert [e.value for e in at.sidebar.error] == ["Wrong token."]
    assert "pulse_user" not in at.session_state
    at.text_input(key="auth_token").input(TOKEN)
    at.button(key="FormSubmitter:auth_form-Sign in").click().run()
    assert not at.exception
    assert at.session_state["pulse_user"] == "ines"
    assert "ines" in [t.value for t in at.sidebar.text]
    at.button(key="auth_sign_out").click().run()
    assert "pulse_user" not in at.session_state


def test_nothing_before_sign_in_when_reading_is_private(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                                        demo_like: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, _ = demo_like
    at = _frame(monkeypatch, redis_url, prefix, PULSE_DASHBOARD_PUBLIC="0")
    at.run()
    assert not at.exception
    assert any("Sign in (sidebar) to see the dashboard" in i.value for i in at.info)
    assert not at.metric and not at.dataframe
    at.session_state["pulse_user"] = "ines"
    at.run()
    assert at.metric and at.dataframe


def test_oidc_when_secrets_configure_it(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                        demo_like: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, _ = demo_like
    at = _frame(monkeypatch, redis_url, prefix)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "c" * 40,
                          "client_id": "pulse", "client_secret": "s",
                          "server_metadata_url": "https://id.example.com/.well-known/openid-configuration"}
    at.user = {"is_logged_in": False}
    at.run()
    assert not at.exception
    assert [b.label for b in at.sidebar.button if b.label == "Sign in"] == ["Sign in"]  # st.login, not the token
    assert not [t for t in at.sidebar.text_input if t.key == "auth_token"]
    at.user = {"is_logged_in": True, "email": "ines@example.com"}
    at.run()
    assert "ines@example.com" in [t.value for t in at.sidebar.text]


def test_no_sign_in_configured_keeps_actions_locked(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                                    demo_like: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, _ = demo_like
    at = _frame(monkeypatch, redis_url, prefix)
    monkeypatch.delenv("PULSE_DASHBOARD_TOKEN")
    at.run()
    assert not at.exception
    assert any("actions are locked" in c.value for c in at.sidebar.caption)
    assert not [t for t in at.sidebar.text_input if t.key == "auth_token"]


def test_short_token_is_refused(monkeypatch: pytest.MonkeyPatch, redis_url: str, key_prefix: str) -> None:
    at = _frame(monkeypatch, redis_url, key_prefix, PULSE_DASHBOARD_TOKEN="short")
    at.run()
    assert any("PULSE_DASHBOARD_TOKEN: use at least 12 characters" in e.value for e in at.error)
