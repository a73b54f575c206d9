"""The real dashboard (`streamlit run`) in headless Chromium against a real Redis with data; screenshot saved."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dashboard_seed import add_mentions, clean_prefix, expected_figures, seed_redis
from pulse_testkit import free_ports

from stream.redisconn import connect

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = ROOT / ".pulse" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]

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


@contextlib.contextmanager
def _streamlit(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[int]:
    """The real dashboard (`streamlit run dashboard/app.py`) on a free port, stopped afterwards."""
    [port] = free_ports()
    log = tmp_path / "streamlit.log"
    env = dict(os.environ, REDIS_URL=redis_url, PULSE_PREFIX=prefix, PULSE_DASHBOARD_REFRESH="2")
    env.pop("PULSE_CRM_CONFIG", None)
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
           "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        _wait_healthy(port, proc, log)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_dashboard_in_headless_chromium(redis_url: str, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    client = connect(redis_url)
    rows = seed_redis(redis_url, prefix)
    exp = expected_figures(rows, minutes=60)
    try:
        with _streamlit(redis_url, prefix, tmp_path) as port, sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                # A screen far from UTC: the axes must still read UTC, like the caption says.
                page = browser.new_page(viewport={"width": 1920, "height": 1400}, timezone_id="Asia/Kolkata")
                dialogs: list[str] = []
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
                charts = page.locator("[data-testid='stVegaLiteChart'] svg")
                charts.first.wait_for(state="visible", timeout=60_000)
                page.wait_for_function(
                    "document.querySelectorAll(\"[data-testid='stVegaLiteChart'] svg\").length >= 3",
                    timeout=60_000)
                page.locator("[data-testid='stDataFrame']").first.wait_for(state="visible", timeout=30_000)
                # Give the grid and the charts a moment to paint before the picture.
                page.wait_for_timeout(1500)
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                shot = SCREENSHOTS / "command_centre.png"
                page.screenshot(path=str(shot), full_page=True)
                body = page.locator("body").inner_text()
                for text in ("Command centre", "Mentions / min", "Distinct authors", "p90 response",
                             "Answer rate", "Negative share", "Dead letters", "Mentions per channel",
                             "Sentiment", "First response time", "Latest mentions", "Channels"):
                    assert text in body, text
                assert f"{exp['mentions_per_min']:.1f}" in body
                assert f"{exp['answer_rate'] * 100:.1f} %" in body
                # The hostile mention is in the table as text: nothing bold, no script, no alert.
                assert page.locator("strong", has_text="bold").count() == 0
                assert page.locator("script", has_text="alert(1)").count() == 0
                assert not dialogs
                assert "<script>alert(1)</script>" not in page.content()
                assert shot.stat().st_size > 50_000
                assert page.title() == "Social Pulse"
                # The data's last hour is 11:00-12:00 UTC (16:30-17:30 in Kolkata).
                ticks = charts.first.locator("g[aria-label^='X-axis'] g.role-axis-label text").all_text_contents()
                assert ticks and all(re.fullmatch(r"1[12]:[0-5]\d", t) for t in ticks), ticks
                assert "all 2 brands" in body
                # Live: a new brand's mention reaches the open page without a reload.
                newest = max(r["ts"] for r in rows)
                add_mentions(redis_url, prefix, [{"id": "blog:new1", "channel": "blog", "brand": "initech",
                                                  "author": "newbie", "text": "first post about initech",
                                                  "ts": newest}])
                page.get_by_text("all 3 brands", exact=False).first.wait_for(state="visible", timeout=60_000)
            finally:
                browser.close()
    finally:
        clean_prefix(client, prefix)
        client.close()


def test_agent_answers_a_case_in_headless_chromium(r, redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    from dashboard_seed import seed_service_desk

    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    seed_service_desk(r, key_prefix)
    with _streamlit(redis_url, key_prefix, tmp_path) as port, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1800})
            page.goto(f"http://127.0.0.1:{port}/service-desk", wait_until="domcontentloaded")
            page.locator("[data-testid='stVegaLiteChart'] svg").first.wait_for(state="visible", timeout=60_000)
            body = page.locator("body").inner_text()
            for text in ("Service desk", "Open cases", "Waiting", "Agents", "Waiting for an agent",
                         "Open cases by deadline", "Business rules", "Answer a case"):
                assert text in body, text
            # the first case offered is the most urgent: the escalated gold customer's
            page.get_by_label("Reply").fill("Sorry Gil, a supervisor is on it")
            page.get_by_role("button", name="Send reply").click()
            page.get_by_text("in reply to twitter:9", exact=False).wait_for(state="visible", timeout=30_000)
            page.wait_for_timeout(500)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "service_desk.png"), full_page=True)
        finally:
            browser.close()
    from connectors.outbox import read_messages

    [posted] = read_messages(r, key_prefix, "twitter", count=1)
    assert posted.in_reply_to == "twitter:9" and posted.text == "Sorry Gil, a supervisor is on it"
    assert make_store_status(r, key_prefix, "C-twitter:9") == "replied"


def make_store_status(r, prefix: str, case_id: str) -> str:
    from crm import make_store

    return (make_store(r, prefix).get_case(case_id) or {}).get("status", "")
