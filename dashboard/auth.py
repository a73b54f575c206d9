"""Who is using the dashboard: Streamlit's OIDC sign-in when configured, else a shared token.

Pages that act (reply, resolve, acknowledge, send notices, roll back models, label) ask
:func:`require_user` for the signed-in user and record every action under that name. Two ways to sign in:

- **OIDC** (``st.login``) when ``.streamlit/secrets.toml`` has an ``[auth]`` section with ``redirect_uri``
  and ``cookie_secret`` (and a provider); the user is the identity provider's e-mail (or name, or subject);
- else a **token** from ``PULSE_DASHBOARD_TOKEN`` (``pulse dashboard`` / ``pulse demo`` make one up and
  print it when none is set), compared in constant time; the user types the name actions are recorded under.

Without either, actions stay locked. Read-only pages stay open unless ``PULSE_DASHBOARD_PUBLIC=0``.

>>> token_matches("s3cret-token-1", "s3cret-token-1"), token_matches("guess", "s3cret-token-1")
(True, False)
>>> token_matches("anything", None)
False
"""

from __future__ import annotations

import hmac
import logging
import os
import time

import streamlit as st

from dashboard.data import DashboardSettings
from stream.audit import MAX_USER_CHARS, AuditError, check_user

__all__ = ["auth_method", "current_user", "require_user", "sign_in_panel", "token_matches"]

log = logging.getLogger(__name__)

_USER = "pulse_user"
_FAILS = "pulse_sign_in_failures"
_LOCKED_UNTIL = "pulse_sign_in_locked_until"
#: After this many wrong tokens in a row a session waits :data:`LOCKOUT_SECONDS` before trying again.
MAX_FAILURES = 5
LOCKOUT_SECONDS = 60.0


def token_matches(given: str, expected: str | None) -> bool:
    """Constant-time comparison of a typed token with the configured one (no token configured: never)."""
    if not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _oidc_section() -> dict[str, object] | None:
    try:
        if not st.secrets.load_if_toml_exists():
            return None
        auth = st.secrets.get("auth")
    except Exception:  # a malformed secrets file: no OIDC (Streamlit reports the file itself)
        return None
    if not auth or "redirect_uri" not in auth or "cookie_secret" not in auth:
        return None
    return dict(auth)


def _oidc_provider(section: dict[str, object]) -> str | None:
    """The provider to sign in with: ``PULSE_DASHBOARD_OIDC_PROVIDER``, the only named one, or the default."""
    named = [k for k, v in section.items() if hasattr(v, "get") and k not in ("redirect_uri", "cookie_secret")]
    wanted = os.environ.get("PULSE_DASHBOARD_OIDC_PROVIDER")
    if wanted:
        return wanted
    return named[0] if len(named) == 1 and "client_id" not in section else None


def auth_method(settings: DashboardSettings) -> str:
    """``oidc``, ``token`` or ``none``."""
    if _oidc_section() is not None:
        return "oidc"
    return "token" if settings.token else "none"


def current_user(settings: DashboardSettings) -> str | None:
    """The signed-in user's name, or None."""
    method = auth_method(settings)
    if method == "oidc":
        if not st.user.get("is_logged_in", False):
            return None
        for claim in ("email", "preferred_username", "name", "sub"):
            value = st.user.get(claim)
            if isinstance(value, str) and value.strip():
                return value.strip()[:MAX_USER_CHARS]
        return None
    if method == "token":
        user = st.session_state.get(_USER)
        return user if isinstance(user, str) and user else None
    return None


def require_user(settings: DashboardSettings, what: str) -> str | None:
    """The signed-in user, or None after saying how to sign in to ``what`` (e.g. "acknowledge incidents")."""
    user = current_user(settings)
    if user:
        return user
    if auth_method(settings) == "none":
        st.info(f"Sign-in is needed to {what}, and none is configured: start the dashboard with "
                "`pulse dashboard` (it prints a sign-in token), set `PULSE_DASHBOARD_TOKEN`, or configure OIDC "
                "in `.streamlit/secrets.toml`.", icon=":material/lock:")
    else:
        st.info(f"Sign in (sidebar) to {what}.", icon=":material/lock:")
    return None


def sign_in_panel(settings: DashboardSettings) -> None:
    """The sidebar's sign-in / signed-in block."""
    method = auth_method(settings)
    user = current_user(settings)
    if user:
        st.caption("Signed in as")
        st.text(user)
        if st.button("Sign out", key="auth_sign_out", icon=":material/logout:"):
            if method == "oidc":
                st.logout()
            else:
                st.session_state.pop(_USER, None)
                st.rerun()
        return
    if method == "oidc":
        section = _oidc_section() or {}
        if st.button("Sign in", key="auth_sign_in", icon=":material/login:", type="primary"):
            st.login(_oidc_provider(section))
        st.caption("Sign in to act: reply, resolve, acknowledge, send notices, roll back or label models.")
        return
    if method == "none":
        st.caption("Read only: no sign-in is configured, so actions are locked. `pulse dashboard` prints a "
                   "sign-in token; or set `PULSE_DASHBOARD_TOKEN`, or OIDC in `.streamlit/secrets.toml`.")
        return
    with st.form("auth_form", border=False):
        name = st.text_input("Your name", key="auth_name", max_chars=MAX_USER_CHARS,
                             help="Every action you take is recorded under this name.")
        token = st.text_input("Access token", key="auth_token", type="password",
                              help="The token `pulse dashboard` printed (PULSE_DASHBOARD_TOKEN).")
        submitted = st.form_submit_button("Sign in", icon=":material/login:", type="primary")
    if submitted:
        _token_sign_in(settings, name, token)


def _token_sign_in(settings: DashboardSettings, name: str, token: str) -> None:
    now = time.monotonic()
    if st.session_state.get(_LOCKED_UNTIL, 0.0) > now:
        st.error("Too many wrong tokens: wait a minute and try again.", icon=":material/lock_clock:")
        return
    try:
        user = check_user(name)
    except AuditError:
        st.error("Type your name: actions are recorded under it.", icon=":material/badge:")
        return
    if not token_matches(token, settings.token):
        fails = int(st.session_state.get(_FAILS, 0)) + 1
        st.session_state[_FAILS] = fails
        if fails >= MAX_FAILURES:
            st.session_state[_LOCKED_UNTIL] = now + LOCKOUT_SECONDS
            st.session_state[_FAILS] = 0
        log.warning("dashboard sign-in refused (wrong token, attempt %d)", fails)
        time.sleep(1.0)  # slows guessing down
        st.error("Wrong token.", icon=":material/key_off:")
        return
    st.session_state[_FAILS] = 0
    st.session_state[_USER] = user
    log.info("dashboard sign-in: %s", user)
    st.rerun()
