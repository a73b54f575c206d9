"""Every page (AppTest) shows user text literally and never through Markdown: mention texts, handles, names,
KB titles, top terms — a script, bold, an image and a javascript link stay text."""

from __future__ import annotations

from typing import Any

import pytest
from dashboard_seed import HOSTILE, HOSTILE_NAME, NASTY_TEXT
from page_testkit import assert_no_markup_from_users, run_page, shows_literally

#: page -> (session state to open it on the user text, texts it must show literally)
PAGES: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "command_centre": ({}, (NASTY_TEXT,)),
    "incidents_page": ({}, (NASTY_TEXT, ", ".join(["refund", *HOSTILE.split(" ")]))),
    "service_page": ({}, (NASTY_TEXT, f"Refunds {HOSTILE}")),
    "customers_page": ({"cust_q": "mallory"}, (HOSTILE_NAME, NASTY_TEXT)),
    "channels_page": ({}, (NASTY_TEXT,)),
    "reports_page": ({}, ()),
    "models_page": ({}, ()),  # its sample holds whichever mentions the model is least sure of
    "audit_page": ({}, ()),
}


@pytest.mark.parametrize("page", list(PAGES))
def test_user_text_is_plain_on_every_page(monkeypatch: pytest.MonkeyPatch, redis_url: str, page: str,
                                          demo_like: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, _ = demo_like
    state, literal = PAGES[page]
    at = run_page(monkeypatch, redis_url, prefix, page, user="ines", state=state)
    assert not at.exception
    assert_no_markup_from_users(at)
    for text in literal:
        assert shows_literally(at, text), (page, text)
