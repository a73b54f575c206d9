"""The real dashboard (`streamlit run`) in headless Chromium against a live demo-like dataset in a real Redis.

One Streamlit server and one browser serve every test of this module (they run in file order): every page
and the wall load with no error element, are screenshot at 1920×1080 under ``.pulse/screenshots/``, and show
hostile user text literally; then a signed-in user acknowledges an incident and sends a notice (it lands in
the outbox), and answers a case on the Service desk.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_seed import (
    HOSTILE,
    HOSTILE_NAME,
    LIVE_SPIKE,
    add_mentions,
    expected_figures,
    seeded_demo_like,
)
from pulse_testkit import free_ports

from connectors.outbox import read_messages
from stream.incident_desk import read_incident
from stream.keys import Keys
from stream.redisconn import connect

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = ROOT / ".pulse" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
TOKEN = "browser-test-token-0123456789"
VIEWPORT = {"width": 1920, "height": 1080}
#: page url path -> (screenshot name, what must be on it)
PAGES = {
    "": ("command_centre", ("Command centre", "Mentions / min", "Latest mentions")),
    "incidents": ("incidents", ("Incidents", "Volume and the expected band", "Timeline", "Public notice")),
    "service-desk": ("service_desk", ("Service desk", "Open cases by deadline", "Answer a case")),
    "customers": ("customers", ("Customers", "Churn candidates", "Profile", "Handles", "What drives the churn risk")),
    "channels": ("channels", ("Channels", "Footprint", "Owned vs third-party", "Attraction and participation",
                              "Behaviour after interaction", "Resolution and next response",
                              "First response in business hours", "Volume")),
    "reports": ("reports", ("Reports", "Brands", "Channels", "CSV", "Parquet", "HTML")),
    "models": ("models", ("Models", "Quality now", "Versions", "Label mentions")),
    "audit": ("audit", ("Audit log",)),
}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is absent: install Debian's chromium (make test does when root)"),
]


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    pytest.fail(f"streamlit did not become healthy in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def dataset(redis_url: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """This module's own copy of the demo-like dataset: its tests act on it."""
    with seeded_demo_like(redis_url) as data:
        yield data


@pytest.fixture(scope="module")
def server(redis_url: str, dataset: tuple[str, list[dict[str, Any]]], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[int]:
    """The real dashboard (`streamlit run dashboard/app.py`) on a free port, stopped afterwards."""
    prefix, _ = dataset
    tmp = tmp_path_factory.mktemp("streamlit")
    [port] = free_ports()
    log = tmp / "streamlit.log"
    env = dict(os.environ, REDIS_URL=redis_url, PULSE_PREFIX=prefix, PULSE_DASHBOARD_REFRESH="2",
               PULSE_DASHBOARD_TOKEN=TOKEN, PULSE_WALL_ROTATE="15")
    env.pop("PULSE_CRM_CONFIG", None)
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
           "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        _wait_healthy(port, proc, log)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _settle(page: Any, charts: bool = True) -> None:
    """Wait until the page has drawn: a chart's svg (a just-started app screenshots blank otherwise)."""
    page.locator("[data-testid='stMain']").first.wait_for(state="visible", timeout=60_000)
    if charts:
        page.locator("[data-testid='stVegaLiteChart'] svg").first.wait_for(state="visible", timeout=60_000)
    else:
        page.locator("h1").first.wait_for(state="visible", timeout=60_000)
    page.wait_for_timeout(1500)


def _no_markup_from_users(page: Any) -> None:
    """Nothing the hostile text asks for exists in the DOM: no image, no javascript link, no bold, no script."""
    assert page.locator("img[src*='example.com']").count() == 0
    assert page.locator("a[href^='javascript']").count() == 0
    assert page.locator("strong", has_text="bold").count() == 0
    assert page.locator("script", has_text="alert(1)").count() == 0
    assert "<script>alert(1)</script>" not in page.content()


def _no_error_element(page: Any) -> None:
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.locator("[data-testid='stAlertContentError']").count() == 0


def _sign_in(page: Any, name: str) -> None:
    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.get_by_role("textbox", name="Your name").fill(name)
    sidebar.get_by_role("textbox", name="Access token").fill(TOKEN)
    sidebar.get_by_role("button", name="Sign in", exact=True).click()
    sidebar.get_by_text("Signed in as").wait_for(state="visible", timeout=30_000)


def _open(page: Any, title: str) -> None:
    """Go to a page through the sidebar (a reload would start a new session, signed out)."""
    page.locator("[data-testid='stSidebarNav']").get_by_text(title, exact=True).click()
    page.locator("h1", has_text=title).first.wait_for(state="visible", timeout=60_000)
    page.wait_for_timeout(1200)


def test_command_centre_live(server: int, browser: Any, dataset: tuple[str, list[dict[str, Any]]],
                             redis_url: str) -> None:
    prefix, rows = dataset
    exp = expected_figures(rows, minutes=60)
    # A screen far from UTC: the axes read UTC, the timezone filter's default, like the caption says.
    page = browser.new_page(viewport=VIEWPORT, timezone_id="Asia/Kolkata")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"http://127.0.0.1:{server}/", wait_until="domcontentloaded")
    page.wait_for_function("document.querySelectorAll(\"[data-testid='stVegaLiteChart'] svg\").length >= 3",
                           timeout=60_000)
    _settle(page)
    body = page.locator("body").inner_text()
    for text in ("Command centre", "Mentions / min", "Distinct authors", "p90 response", "Answer rate",
                 "Negative share", "Dead letters", "Mentions per channel", "Sentiment", "First response time",
                 "Latest mentions", "Channels", "all 2 brands"):
        assert text in body, text
    assert f"{exp['mentions_per_min']:.1f}" in body
    assert f"{exp['answer_rate'] * 100:.1f} %" in body
    assert page.title() == "Social Pulse"
    ticks = page.locator("[data-testid='stVegaLiteChart'] svg").first.locator(
        "g[aria-label^='X-axis'] g.role-axis-label text").all_text_contents()
    assert ticks and all(re.fullmatch(r"1[12]:[0-5]\d", t) for t in ticks), ticks
    _no_markup_from_users(page)
    assert not dialogs
    # Live: a new brand's mention reaches the open page without a reload.
    add_mentions(redis_url, prefix, [{"id": "blog:new1", "channel": "blog", "brand": "initech", "author": "newbie",
                                      "text": "first post about initech", "ts": max(r["ts"] for r in rows)}])
    page.get_by_text("all 3 brands", exact=False).first.wait_for(state="visible", timeout=60_000)
    page.close()


def test_every_page_and_the_wall_load_clean(server: int, browser: Any) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport=VIEWPORT)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    for path, (name, texts) in PAGES.items():
        page.goto(f"http://127.0.0.1:{server}/{path}", wait_until="domcontentloaded")
        _settle(page, charts=name not in ("audit",))
        if name == "customers":  # open mallory's 360 view: her name and mention are hostile
            search = page.get_by_role("textbox", name="Name, handle or id")
            search.fill("mallory")
            search.press("Enter")
            page.get_by_text("Profile", exact=True).wait_for(state="visible", timeout=30_000)
            page.wait_for_timeout(1500)
        if name == "service_desk":  # the answer panel comes after the live panel
            page.get_by_text("Customer wrote", exact=True).wait_for(state="visible", timeout=30_000)
            page.locator("[data-testid='stCode']").first.wait_for(state="visible", timeout=30_000)
        if name == "incidents":
            page.get_by_text("Top terms", exact=True).wait_for(state="visible", timeout=30_000)
        body = page.locator("[data-testid='stMain']").inner_text()
        for text in texts:
            assert text in body, (name, text)
        _no_error_element(page)
        _no_markup_from_users(page)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
        assert (SCREENSHOTS / f"{name}.png").stat().st_size > 30_000, name
        if name == "incidents":  # top terms as plain text, literally
            assert ", ".join(["refund", *HOSTILE.split(" ")]) in body
        if name == "customers":
            assert HOSTILE_NAME in body
        if name == "service_desk":  # the most urgent case's text, in a code block, literally
            assert HOSTILE in body
        if name == "models":  # versions with their provenance, and the drift guard's alert
            page.get_by_role("tab", name="Versions").click()
            page.get_by_text("Side by side", exact=True).wait_for(state="visible", timeout=30_000)
            page.wait_for_timeout(1000)
            versions = page.locator("[data-testid='stMain']").inner_text()
            assert "Serving version 2 of 2 saved" in versions
            page.get_by_role("tab", name="Drift").click()
            page.get_by_text("Drift on sentiment", exact=False).wait_for(state="visible", timeout=30_000)
            page.wait_for_timeout(1000)
            _no_error_element(page)
            page.screenshot(path=str(SCREENSHOTS / "models_drift.png"))
    for view in ("now", "incidents"):
        page.goto(f"http://127.0.0.1:{server}/?wall=1&view={view}", wait_until="domcontentloaded")
        page.locator("h1", has_text="Social Pulse").first.wait_for(state="visible", timeout=60_000)
        if view == "now":
            page.locator("[data-testid='stVegaLiteChart'] svg").first.wait_for(state="visible", timeout=60_000)
        page.wait_for_timeout(1500)
        assert page.locator("[data-testid='stSidebar']").count() == 0 or not page.locator(
            "[data-testid='stSidebar']").first.is_visible()
        alarm = page.locator(".st-key-wall_alarm")
        assert alarm.is_visible() and "awaiting acknowledgement" in alarm.inner_text()
        animation = alarm.evaluate("e => getComputedStyle(e).animationName")
        assert animation == "wall-flash"
        _no_error_element(page)
        _no_markup_from_users(page)
        if view == "incidents":
            assert f"Top terms: refund, {', '.join(HOSTILE.split(' '))}" in page.locator("body").inner_text()
        page.screenshot(path=str(SCREENSHOTS / f"wall_{view}.png"))
    assert not dialogs
    page.close()


def test_acknowledge_and_send_a_notice(server: int, browser: Any, redis_url: str,
                                       dataset: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, _ = dataset
    client = connect(redis_url)
    page = browser.new_page(viewport={"width": 1920, "height": 2400})
    page.goto(f"http://127.0.0.1:{server}/", wait_until="domcontentloaded")
    _settle(page)
    _sign_in(page, "ines")
    _open(page, "Incidents")
    page.get_by_role("button", name="Acknowledge", exact=True).click()
    page.get_by_text("Incident acknowledged", exact=False).wait_for(state="visible", timeout=30_000)
    inc = read_incident(client, Keys(prefix), LIVE_SPIKE)
    assert inc is not None and (inc.status, inc.acknowledged_by) == ("acknowledged", "ines")
    notices = page.locator("[data-testid='stTextArea'] textarea")
    notices.first.fill("We know about the refund problem and are fixing it. Updates here.")
    page.get_by_role("button", name="Approve", exact=True).first.click()
    page.get_by_text("Notice for twitter approved", exact=False).wait_for(state="visible", timeout=30_000)
    page.get_by_role("button", name="Send", exact=True).first.click()
    page.get_by_text("Notice sent to the twitter outbox", exact=False).wait_for(state="visible", timeout=30_000)
    page.get_by_text("Status: sent", exact=False).wait_for(state="visible", timeout=30_000)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(SCREENSHOTS / "incidents_notice_sent.png"))
    [msg] = read_messages(client, prefix, "twitter")
    assert (msg.kind, msg.agent, msg.brand) == ("notice", "ines", "acme")
    assert msg.text == "We know about the refund problem and are fixing it. Updates here."
    page.close()


def test_agent_answers_a_case(server: int, browser: Any, redis_url: str,
                              dataset: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, _ = dataset
    client = connect(redis_url)
    page = browser.new_page(viewport={"width": 1920, "height": 2400})
    page.goto(f"http://127.0.0.1:{server}/", wait_until="domcontentloaded")
    _settle(page)
    _sign_in(page, "ann")
    _open(page, "Service desk")
    # the first case offered is the most urgent: mallory's escalation
    page.get_by_role("textbox", name="Reply").fill("Sorry Mallory, a supervisor is on it")
    page.get_by_role("button", name="Send reply", exact=True).click()
    page.get_by_text("in reply to twitter", exact=False).wait_for(state="visible", timeout=30_000)
    from connectors.outbox import read_messages

    posted = [m for m in read_messages(client, prefix, "twitter", count=100) if m.kind == "reply"]
    assert [(p.in_reply_to, p.text) for p in posted] == [("twitter:nasty", "Sorry Mallory, a supervisor is on it")]
    page.close()
