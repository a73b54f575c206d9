"""The Channels page (AppTest): footprint, sentiment, owned vs third-party, equal to the rows written."""

from __future__ import annotations

from typing import Any

import pytest
from page_testkit import assert_no_markup_from_users, run_page, table


def _expected(rows: list[dict[str, Any]], brand: str | None = None) -> dict[str, dict[str, int]]:
    newest = max(r["ts"] for r in rows)
    end = newest - newest % 60_000 + 60_000
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        if r.get("from_brand") or not end - 60 * 60_000 <= r["ts"] < end or (brand and r["brand"] != brand):
            continue
        acc = out.setdefault(r["channel"], {"mentions": 0, "authors": 0})
        acc["mentions"] += 1
    for channel in out:
        out[channel]["authors"] = sum(len({r["author"] for r in rows if r["channel"] == channel and r["brand"] == b
                                           and not r.get("from_brand") and end - 3_600_000 <= r["ts"] < end})
                                      for b in {r["brand"] for r in rows if not brand or r["brand"] == brand})
    return out


def test_channels_page_figures_equal_the_rows(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                              demo_like: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, rows = demo_like
    exp = _expected(rows)
    at = run_page(monkeypatch, redis_url, prefix, "channels_page")
    assert not at.exception
    per = table(at, "share of voice").set_index("channel")
    assert set(per.index) == set(exp)
    for channel, figures in exp.items():
        assert per.loc[channel, "mentions"] == figures["mentions"], channel
        assert abs(per.loc[channel, "authors"] - figures["authors"]) <= max(1, figures["authors"] * 0.02)  # HLL
    assert bool(per.loc["forum", "owned"]) and not bool(per.loc["twitter", "owned"])
    assert abs(per["share of voice"].sum() - 1.0) < 1e-9
    owned = {m.label: m.value for m in at.metric}
    assert owned["Owned communities"] == f"{exp['forum']['mentions']:,} mentions"
    assert owned["Third-party webs"] == f"{sum(v['mentions'] for c, v in exp.items() if c != 'forum'):,} mentions"
    assert len(at.get("vega_lite_chart")) == 3  # footprint, sentiment, volume
    negative = table(at, "sentiment score")
    assert "twitter:nasty" not in negative.columns and (negative["author"] == "mallory").any()
    assert_no_markup_from_users(at)


def test_channel_and_brand_filters_narrow_the_page(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                                                   demo_like: tuple[str, list[dict[str, Any]]]) -> None:
    prefix, rows = demo_like
    at = run_page(monkeypatch, redis_url, prefix, "channels_page",
                  state={"f_brand": "globex", "f_channels": ["twitter", "forum"]})
    assert not at.exception
    per = table(at, "share of voice").set_index("channel")
    exp = _expected(rows, brand="globex")
    assert set(per.index) == {"twitter", "forum"}
    assert {c: int(per.loc[c, "mentions"]) for c in per.index} == {c: exp[c]["mentions"] for c in per.index}
    # globex had no negative mention on those channels (the hostile one is acme's)
    assert any("No negative mention" in c.value for c in at.caption)


def test_empty_period_says_what_to_do(monkeypatch: pytest.MonkeyPatch, redis_url: str, key_prefix: str) -> None:
    at = run_page(monkeypatch, redis_url, key_prefix, "channels_page")
    assert not at.exception and any("No mentions in this period" in i.value for i in at.info)
