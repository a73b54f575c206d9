"""The dashboard as Streamlit runs it (AppTest), against a real Redis filled by the real flow."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from dashboard_seed import NASTY_TEXT, T0_MS, clean_prefix, expected_figures, seed_redis
from streamlit.testing.v1 import AppTest

from dashboard.command_centre import format_minutes
from dashboard.data import read_command_centre
from stream.keys import Keys
from stream.metrics import snapshot
from stream.redisconn import connect

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def seeded(redis_url: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """One prefix with two hours of conversations, shared by this module's tests (read only)."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    client = connect(redis_url)
    rows = seed_redis(redis_url, prefix)
    yield prefix, rows
    clean_prefix(client, prefix)
    client.close()


def _app(monkeypatch: pytest.MonkeyPatch, url: str, prefix: str, refresh: str = "2") -> AppTest:
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.setenv("PULSE_PREFIX", prefix)
    monkeypatch.setenv("PULSE_DASHBOARD_REFRESH", refresh)
    return AppTest.from_file(APP, default_timeout=60).run()


def _metrics(at: AppTest) -> dict[str, tuple[str, str | None]]:
    return {m.label: (m.value, m.delta) for m in at.metric}


def _markdown_texts(at: AppTest) -> list[str]:
    """Every piece of text the app rendered through Markdown."""
    out: list[str] = []
    for kind in ("markdown", "caption", "title", "header", "subheader", "info", "error", "warning", "success"):
        out.extend(str(e.value) for e in at.get(kind))
    out.extend(e.label for e in at.expander)
    return out


def test_command_centre_shows_kpis_charts_and_tables(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                                     seeded: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, rows = seeded
    exp = expected_figures(rows, minutes=60)
    at = _app(monkeypatch, redis_url, prefix)
    assert not at.exception
    shown = _metrics(at)
    assert shown["Mentions / min"][0] == f"{exp['mentions_per_min']:.1f}"
    authors = int(shown["Distinct authors"][0].replace(",", ""))
    assert abs(authors - exp["authors"]) <= max(2, exp["authors"] * 0.02)  # HyperLogLog
    assert shown["Mean response"][0] == format_minutes(exp["mean_response_min"])
    assert shown["p90 response"][0] == format_minutes(exp["p90_response_min"])
    assert shown["Answer rate"][0] == f"{exp['answer_rate'] * 100:.1f} %"
    assert shown["Dead letters"][0] == str(exp["dead_letters"])
    # The negative share agrees with `pulse metrics` over the same hour of windows.
    view = read_command_centre(connect(redis_url), Keys(prefix), None, 60)
    doc = snapshot(connect(redis_url), Keys(prefix), view.start, view.end)
    negative = sum(b["sentiment"]["negative"] for b in doc["brands"].values())
    mentions = sum(b["mentions"] for b in doc["brands"].values())
    assert mentions == exp["mentions"]
    assert shown["Negative share"][0] == f"{negative / mentions * 100:.1f} %"
    # Two hours of data: every tile that compares has a delta against the hour before.
    for label in ("Mentions / min", "Mean response", "Answer rate", "Negative share"):
        assert shown[label][1], label
    charts = at.get("vega_lite_chart")
    assert len(charts) == 3
    titles = [s.value for s in at.subheader]
    assert titles[:3] == ["Mentions per channel", "Sentiment", "First response time"]
    assert "Latest mentions" in titles and "Channels" in titles and "Brands" in titles
    latest = at.dataframe[0].value
    assert {"time", "brand", "channel", "author", "sentiment", "intent", "text"} <= set(latest.columns)
    assert latest.iloc[0]["text"] == NASTY_TEXT and latest.iloc[0]["author"] == "mallory"
    assert len(latest) == 50
    channels = at.dataframe[1].value
    assert set(channels["channel"]) == {"twitter", "forum", "facebook"}
    assert channels["mentions"].sum() == exp["mentions"]
    dead = at.dataframe[-1].value
    assert len(dead) == exp["dead_letters"]
    assert any(reason.startswith("json:") for reason in dead["reason"])
    assert any(reason.startswith("encoding:") for reason in dead["reason"])
    first_bad = len(rows) + 1  # the bad records follow the good rows in the file
    assert sorted(dead["where"]) == [f"line {first_bad + i}" for i in range(3)]
    assert "3 in total" in at.expander[0].label


def test_user_text_is_never_rendered_as_markdown(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                                 seeded: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, _ = seeded
    at = _app(monkeypatch, redis_url, prefix)
    assert not at.exception
    assert NASTY_TEXT in set(at.dataframe[0].value["text"])
    for text in _markdown_texts(at):
        assert "<script>" not in text and "**bold**" not in text and "mallory" not in text
    assert not at.get("html")


def test_brand_filter_narrows_every_figure(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                           seeded: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, rows = seeded
    exp = expected_figures(rows, minutes=60, brand="acme")
    at = _app(monkeypatch, redis_url, prefix)
    assert at.selectbox(key="f_brand").options == ["All brands", "acme", "globex"]
    at.selectbox(key="f_brand").select("acme").run()
    assert not at.exception
    shown = _metrics(at)
    assert shown["Mentions / min"][0] == f"{exp['mentions_per_min']:.1f}"
    assert shown["Mean response"][0] == format_minutes(exp["mean_response_min"])
    assert shown["Answer rate"][0] == f"{exp['answer_rate'] * 100:.1f} %"
    assert set(at.dataframe[0].value["brand"]) == {"acme"}
    assert "Brands" not in [s.value for s in at.subheader]
    assert at.main.caption[0].value.startswith("acme ·")


def test_time_ranges_read_minute_and_hour_windows(redis_url: str,
                                                  seeded: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, rows = seeded
    client = connect(redis_url)
    quarter = read_command_centre(client, Keys(prefix), None, 15)
    exp = expected_figures(rows, minutes=15)
    assert quarter.gran == "m" and quarter.kpis["mentions"] == exp["mentions"]
    assert quarter.by_channel["start"].nunique() == 15
    assert quarter.previous["mentions"] == expected_figures(rows, minutes=30)["mentions"] - exp["mentions"]
    day = read_command_centre(client, Keys(prefix), None, 1440)
    assert day.gran == "h"
    assert day.kpis["mentions"] == len([r for r in rows if not r.get("from_brand")])
    # Less than a day of data before the range: no made-up comparison.
    assert day.previous["mentions"] is None


def test_answer_trend_and_comparison_leave_out_queries_still_being_answered(
        monkeypatch: pytest.MonkeyPatch, redis_url: str, seeded: tuple[str, list[dict[str, Any]]]) -> None:
    """The newest queries are not answered *yet*: the answer-rate sparkline and its delta stop at the windows whose
    queries have had the range's p90 response time, so the trend does not fall to 0 at its end (an outage look-alike
    on a wall display); the tile's value stays answered ÷ queries of the whole range."""
    prefix, rows = seeded
    client = connect(redis_url)
    view = read_command_centre(client, Keys(prefix), None, 60)
    exp = expected_figures(rows, minutes=60)
    assert view.answer_wait_min == pytest.approx(exp["p90_response_min"], abs=1 / 60_000)
    assert view.kpis["answer_rate"] == pytest.approx(exp["answer_rate"])
    # plain arithmetic on the rows: the minutes whose queries are at least the wait old at the newest event
    newest = view.newest.timestamp() * 1000
    end = max(r["ts"] for r in rows) // 60_000 * 60_000
    wait = view.answer_wait_min * 60_000
    settled = [m for m in range(end - 59 * 60_000, end + 60_000, 60_000) if m + 60_000 + wait <= newest]
    assert 0 < len(settled) < 60
    replied = {r["in_reply_to"] for r in rows if r.get("from_brand")}
    rates, asked_all, answered_all = [], 0, 0
    for m in settled:
        asked = [r for r in rows if not r.get("from_brand") and m <= r["ts"] < m + 60_000
                 and r["text"].startswith("how do I")]
        if asked:
            rates.append(sum(r["id"] in replied for r in asked) / len(asked))
            asked_all += len(asked)
            answered_all += sum(r["id"] in replied for r in asked)
    assert view.sparklines["answer_rate"] == pytest.approx(rates)
    assert view.kpis["settled_answer_rate"] == pytest.approx(answered_all / asked_all)
    at = _app(monkeypatch, redis_url, prefix)
    assert not at.exception
    tile = next(m for m in at.metric if m.label == "Answer rate")
    assert f"Queries of the last {format_minutes(view.answer_wait_min)}" in tile.help
    assert "still being answered" in tile.help


def test_empty_prefix_says_waiting_for_data(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                            key_prefix: str, r: redis.Redis) -> None:
    at = _app(monkeypatch, redis_url, key_prefix)
    assert not at.exception
    assert any("Waiting for data" in i.value for i in at.info)
    assert not at.get("vega_lite_chart") and not at.metric and not at.error


def test_unreachable_redis_is_a_banner_and_the_password_never_shows(monkeypatch: pytest.MonkeyPatch,
                                                                    key_prefix: str) -> None:
    at = _app(monkeypatch, "redis://:hunter2-secret@127.0.0.1:1/0", key_prefix)
    assert not at.exception
    assert [e.value for e in at.error] == ["Redis unreachable at redis://:***@127.0.0.1:1/0 — retrying"]
    assert not at.metric
    # the password appears nowhere: no element, no message, no caption
    shown = [str(getattr(e, "value", "")) for e in at.main] + [str(getattr(e, "value", "")) for e in at.sidebar]
    shown += _markdown_texts(at) + [t.value for t in at.text]
    assert shown and not any("hunter2" in s for s in shown)
    assert any("redis://:***@127.0.0.1:1/0" in t.value for t in at.sidebar.text)


def test_the_page_comes_back_by_itself_when_redis_does(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                                       seeded: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, _ = seeded
    at = _app(monkeypatch, redis_url, prefix)
    at.session_state["redis_down"] = True  # what the banner remembers while Redis was away
    at.run()
    assert not at.exception and not at.error
    assert "redis_down" not in at.session_state
    assert at.metric


def test_bad_refresh_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                              key_prefix: str) -> None:
    at = _app(monkeypatch, redis_url, key_prefix, refresh="often")
    assert not at.exception
    assert any("PULSE_DASHBOARD_REFRESH" in e.value for e in at.error)


def test_dashboard_doctests() -> None:
    """The dashboard folder is outside the default doctest run (app.py is a script): run its modules here."""
    import doctest

    import dashboard.auth
    import dashboard.channel_insights
    import dashboard.command_centre
    import dashboard.data
    import dashboard.filters
    import dashboard.reports_page
    import dashboard.ui
    import dashboard.wall

    for module in (dashboard.data, dashboard.command_centre, dashboard.auth, dashboard.filters, dashboard.ui,
                   dashboard.wall, dashboard.channel_insights, dashboard.reports_page):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_alerts_panel_shows_current_state_of_each_alert(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                                        seeded: tuple[str, list[dict[str, Any]]]) -> None:
    from stream.schema import Alert
    from stream.sinks import RedisWriter

    prefix, _ = seeded
    alert_prefix = prefix + "alerts:"
    client = connect(redis_url)
    try:
        # The dashboard reads the same seeded windows under a second prefix plus two states of one incident.
        for key in client.scan_iter(match=prefix + "*"):
            if not key.decode().startswith(alert_prefix):
                client.copy(key, alert_prefix + key.decode()[len(prefix):], replace=True)
        writer = RedisWriter(client, Keys(alert_prefix))
        base = dict(id="spike:acme:twitter:202401011000", kind="spike", brand="acme", channel="twitter", topic=None,
                    window_start="2024-01-01T10:00:00+00:00", expected=4.0, score=0.97, severity="high",
                    sample_ids=("twitter:1",), top_terms=("outage", "login"))
        writer.write([("alert", Alert(**base, observed=40, message="open: acme twitter 40 mentions"))])
        writer.write([("alert", Alert(**base, observed=40, message="resolved: acme twitter back to 4"))])
        at = _app(monkeypatch, redis_url, alert_prefix)
        assert not at.exception
        assert any(s.value.startswith("Alerts · 0 open") for s in at.subheader)
        tables = [df.value for df in at.dataframe if "top terms" in df.value.columns]
        assert len(tables) == 1 and len(tables[0]) == 1
        row = tables[0].iloc[0]
        assert (row["state"], row["kind"], row["brand"], row["top terms"]) == ("resolved", "spike", "acme",
                                                                              "outage, login")
    finally:
        clean_prefix(client, alert_prefix)
        client.close()


def test_seven_day_range_equals_the_rows(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                         seeded: tuple[str, list[dict[str, Any]]]) -> None:
    """Over a week the page reads hour windows, the fewest day and hour windows for the range before and the
    distinct authors, and the hour and day DDSketches for p90: counts and means stay exact, p90 within 1 %."""
    import statistics

    prefix, rows = seeded
    at = _app(monkeypatch, redis_url, prefix)
    at.session_state["f_period"] = 10080
    at.run()
    assert not at.exception
    by_id = {r["id"]: r for r in rows}
    customers = [r for r in rows if not r.get("from_brand")]
    waits = sorted(r["ts"] - by_id[r["in_reply_to"]]["ts"] for r in rows if r.get("from_brand"))
    shown = _metrics(at)
    assert shown["Mean response"][0] == format_minutes(statistics.fmean(waits) / 60_000)
    assert shown["Mentions / min"][0] == f"{len(customers) / ((max(r['ts'] for r in rows) - T0_MS) / 60_000):.1f}"
    view = read_command_centre(connect(redis_url), Keys(prefix), None, 10080)
    assert view.gran == "h" and view.kpis["mentions"] == len(customers)
    assert view.kpis["responses"] == len(waits)
    exact_p90 = statistics.quantiles(waits, n=10, method="inclusive")[8] / 60_000
    assert view.kpis["p90_response_min"] == pytest.approx(exact_p90, rel=0.01)
    # the hourly series adds up to the rows, per channel
    per_channel = view.by_channel.groupby("channel")["mentions"].sum().to_dict()
    assert per_channel == {c: sum(1 for r in customers if r["channel"] == c) for c in per_channel}
    assert view.by_channel["start"].nunique() == 168
    # the mean line is each hour's exact mean (by the mention's hour), the p90 line its day's
    means = view.response[view.response.statistic == "mean"]
    hours: dict[int, list[int]] = {}
    for r in rows:
        if r.get("from_brand"):
            mention = by_id[r["in_reply_to"]]
            hours.setdefault(mention["ts"] - mention["ts"] % 3_600_000, []).append(r["ts"] - mention["ts"])
    assert {int(s.timestamp() * 1000): m for s, m in zip(means["start"], means["minutes"], strict=True)} == \
        pytest.approx({h: statistics.fmean(v) / 60_000 for h, v in hours.items()})
    p90s = list(view.response[view.response.statistic == "p90"]["minutes"])
    assert p90s and all(v == pytest.approx(exact_p90, rel=0.01) for v in p90s)  # one day of data
    # less than a week of data before the range: no made-up comparison
    assert view.previous["mentions"] is None
