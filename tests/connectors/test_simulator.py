"""The simulated world: determinism, realistic content, ground truth, calls, churn, and the Bytewax source."""

from __future__ import annotations

import collections
import hashlib
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import bytewax.operators as op
import orjson
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, run_main

from connectors.records import RawRecord
from connectors.simulator import CHANNELS, DEFAULT_BRANDS, DEFAULT_START, SimState, SimulatorSource, World

ROOT = Path(__file__).resolve().parents[2]


@cache
def _day() -> tuple[World, list[RawRecord]]:
    """One simulated day and a half of the default world (shared by the content tests; ~100k records)."""
    w = World(seed=7)
    return w, list(w.events(until=w.start + timedelta(hours=36)))


def _mentions(recs: list[RawRecord]) -> list[dict[str, Any]]:
    return [r.payload for r in recs if r.fmt == "mention"]  # type: ignore[misc]


def _ts(p: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(p["ts"])


def _digest(seed: int, n: int) -> str:
    h = hashlib.sha256()
    for r in World(seed=seed).events(limit=n):
        h.update(orjson.dumps([r.source, r.offset, r.fmt, r.payload]))
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ determinism


def test_same_seed_same_events_byte_for_byte_even_across_processes() -> None:
    here = _digest(11, 3000)
    assert here == _digest(11, 3000)
    assert here != _digest(12, 3000)
    # another interpreter with another string-hash seed must produce the very same bytes
    code = "from tests.connectors.test_simulator import _digest; print(_digest(11, 3000))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == here


def test_events_are_in_event_time_order_with_consecutive_offsets() -> None:
    _, recs = _day()
    times = [datetime.fromisoformat(r.payload["ts"]) for r in recs]  # type: ignore[index]
    assert times == sorted(times)
    assert [r.offset for r in recs[:100]] == list(range(100))
    assert {r.source for r in recs} == {"sim:7"}
    ids = [m["id"] for m in _mentions(recs)]
    assert len(ids) == len(set(ids))


def test_limit_until_and_kinds() -> None:
    w = World(seed=3, n_customers=100)
    assert len(list(w.events(limit=123))) == 123
    assert list(w.events(limit=0)) == []
    until = w.start + timedelta(minutes=45)
    recs = list(w.events(until=until))
    assert recs and all(datetime.fromisoformat(r.payload["ts"]) < until for r in recs)  # type: ignore[index]
    calls = list(w.events(limit=20, kinds={"calls"}))
    assert {r.fmt for r in calls} == {"calls"} and [r.offset for r in calls] == list(range(20))


# -------------------------------------------------------------------------------------------- people


def test_customers_are_crm_records_with_handles_on_several_channels() -> None:
    w, _ = _day()
    customers = w.customers()
    assert len(customers) == 1000
    assert len({c["customer_id"] for c in customers}) == 1000
    keys = {
        "customer_id",
        "name",
        "email",
        "phone",
        "brand",
        "tier",
        "value",
        "tenure_days",
        "products",
        "handles",
    }
    assert all(keys <= set(c) for c in customers)
    assert {c["tier"] for c in customers} == {"gold", "silver", "bronze"}
    assert {c["brand"] for c in customers} == {b.id for b in DEFAULT_BRANDS}
    for ch in CHANNELS:
        handles = [c["handles"][ch] for c in customers if ch in c["handles"]]
        assert len(handles) > 50, ch
        assert len(handles) == len(set(handles)), f"duplicate {ch} handles"
    assert sum(len(c["handles"]) > 1 for c in customers) > 500
    customers[0]["handles"].clear()  # a copy: the world is unchanged
    assert w.customers()[0]["handles"]
    assert w.prospects and not set(w.prospects) & {h for c in customers for h in c["handles"].values()}


# ------------------------------------------------------------------------------------------- content


def test_posts_carry_their_truth_and_look_like_social_media() -> None:
    w, recs = _day()
    posts = [m for m in _mentions(recs) if not m["from_brand"]]
    assert len(posts) > 30_000
    intents = collections.Counter(m["meta"]["truth_intent"] for m in posts)
    assert 0.25 < intents["query"] / len(posts) < 0.5
    assert set(collections.Counter(m["meta"]["truth_sentiment"] for m in posts)) == {
        "negative",
        "neutral",
        "positive",
    }
    assert set(collections.Counter(m["meta"]["truth_department"] for m in posts)) == {
        "service",
        "sales",
        "marketing",
        "pr",
    }
    assert {m["channel"] for m in posts} == set(CHANNELS)
    assert all(m["owned"] == (m["channel"] == "forum") for m in posts)
    kinds = collections.Counter(m["meta"]["author_kind"] for m in posts)
    assert kinds["customer"] > 300 and kinds["prospect"] > 100 and kinds["public"] > kinds["customer"]
    crm = {c["customer_id"]: c for c in w.customers()}
    for m in posts:
        cid = m["meta"]["truth_customer_id"]
        if cid is not None:  # a customer posts under their own handle on that channel, about their brand
            assert crm[cid]["handles"][m["channel"]] == m["author"] and crm[cid]["brand"] == m["brand"]
    texts = " ".join(m["text"] for m in posts)
    words = set(texts.split())
    assert {"pls", "thx", "u", "smh"} <= words
    assert {"pwn3d", "hax0rs", "suxx0r", "r0xx0rs"} & words
    assert any(w.startswith(("sooooo", "pleeeease", "whyyyy")) for w in words)
    assert any(e in texts for e in ("😡", "😍", "🙄", "🔥"))
    # ratings only on the review site, in line with the truth
    reviews = [m for m in posts if m["channel"] == "review" and m["in_reply_to"] is None]
    assert reviews and all("rating" in m["meta"] for m in reviews)
    assert all(m["meta"]["rating"] <= 2 for m in reviews if m["meta"]["truth_sentiment"] == "negative")
    assert all(m["meta"]["rating"] >= 4 for m in reviews if m["meta"]["truth_sentiment"] == "positive")


def test_brand_agents_reply_after_realistic_delays() -> None:
    _, recs = _day()
    mentions = _mentions(recs)
    by_id = {m["id"]: m for m in mentions}
    handles = {b.id: b.handles for b in DEFAULT_BRANDS}
    replies = [m for m in mentions if m["from_brand"]]
    assert len(replies) > 5000
    delays = []
    for r in replies:
        original = by_id.get(r["in_reply_to"])
        assert original is not None, "a reply to a mention that was never emitted"
        assert r["author"] == handles[r["brand"]][r["channel"]]
        assert (original["brand"], original["channel"]) == (r["brand"], r["channel"])
        delay = (_ts(r) - _ts(original)).total_seconds()
        assert delay == r["meta"]["reply_delay_s"] and delay >= 30
        delays.append(delay)
    delays.sort()
    median = delays[len(delays) // 2]
    assert 5 * 60 < median < 3 * 3600  # minutes to hours
    assert delays[int(0.95 * len(delays))] > 3600
    posts = [m for m in mentions if not m["from_brand"]]
    answered = {r["in_reply_to"] for r in replies}

    def rate(intent: str) -> float:
        xs = [
            m
            for m in posts
            if m["meta"]["truth_intent"] == intent and _ts(m) < _ts(posts[-1]) - timedelta(days=1)
        ]
        return sum(m["id"] in answered for m in xs) / len(xs)

    assert 0.5 < rate("query") < 0.95  # some queries are never answered
    assert rate("comment") < rate("query") / 2
    # customers sometimes answer back, in the same thread
    followups = [m for m in posts if m["in_reply_to"] is not None]
    assert followups and all(by_id[m["in_reply_to"]]["from_brand"] for m in followups)


def test_incidents_are_bursts_of_negative_posts_sharing_terms() -> None:
    w, recs = _day()
    incidents = w.incidents
    assert incidents, "36 hours of the default world hold at least one incident"
    posts = [m for m in _mentions(recs) if not m["from_brand"]]
    for inc in incidents:
        tagged = [m for m in posts if m["meta"]["incident"] == inc.id and m["in_reply_to"] is None]
        assert len(tagged) > 20
        assert all((m["brand"], m["channel"]) == (inc.brand, inc.channel) for m in tagged)
        assert all(inc.start <= _ts(m) < inc.end for m in tagged)
        assert all(m["meta"]["truth_sentiment"] == "negative" for m in tagged)
        assert all(sum(t.lower() in m["text"].lower() for t in inc.terms) >= 1 for m in tagged)
        # far more posts on that brand x channel during the incident than in the hour before
        during = sum(
            inc.start <= _ts(m) < inc.end
            for m in posts
            if (m["brand"], m["channel"]) == (inc.brand, inc.channel)
        )
        before = sum(
            inc.start - timedelta(hours=1) <= _ts(m) < inc.start
            for m in posts
            if (m["brand"], m["channel"]) == (inc.brand, inc.channel)
        )
        per_min_during = during / ((inc.end - inc.start).total_seconds() / 60)
        assert per_min_during > 2 * before / 60
    # bursts are buzz, not incidents
    for b in w.bursts:
        tagged = [m for m in posts if m["meta"].get("burst") == b.id]
        assert tagged and all(m["meta"]["incident"] is None for m in tagged)
        assert all(m["meta"]["truth_sentiment"] in ("positive", "neutral") for m in tagged)
    assert [i.to_dict()["id"] for i in incidents] == [
        i.id for i in w.incidents_between(w.start, w._horizon) if i.start < w._horizon
    ]


def test_ground_truth_windows_include_events_running_past_midnight() -> None:
    w = World(seed=7)
    month = w.start + timedelta(days=30)
    incidents = w.incidents_between(w.start, month)
    bursts = w.bursts_between(w.start, month)
    day = timedelta(days=1)
    assert any((i.start - w.start) // day != (i.end - w.start) // day for i in incidents + bursts)  # type: ignore[operator]
    for i in incidents:
        assert i in w.incidents_between(i.end - timedelta(minutes=1), i.end)
        assert i.start >= w.start + timedelta(hours=6)  # warm-up
    for b in bursts:
        assert b in w.bursts_between(b.end - timedelta(minutes=1), b.end)
    assert 15 < len(incidents) < 60  # about one a day
    # without a warm-up, incidents may start right away (a live demo shows one sooner)
    six = timedelta(hours=6)
    assert not any(World(seed=s).incidents_between(w.start, w.start + six) for s in range(20))
    assert any(World(seed=s, warmup_hours=0).incidents_between(w.start, w.start + six) for s in range(20))


def test_traffic_series_counts_and_labels() -> None:
    w, recs = _day()
    inc = w.incidents[0]
    until = inc.end + timedelta(minutes=30)
    assert until < w.start + timedelta(hours=36)
    rows = list(w.traffic_series(until, interval=timedelta(minutes=5), brand=inc.brand, channel=inc.channel))
    assert len(rows) == int((until - w.start).total_seconds() // 300) + (
        1 if (until - w.start).seconds % 300 else 0
    )
    assert [r["ts"] for r in rows] == sorted(r["ts"] for r in rows)
    labelled = [r for r in rows if r["incident"] == inc.id]
    quiet = [r for r in rows if not r["incident"] and not r["burst"]]
    assert labelled and quiet
    assert sum(r["count"] for r in labelled) / len(labelled) > 2 * sum(r["count"] for r in quiet) / len(quiet)
    total = sum(r["count"] for r in rows)
    direct = sum(
        1
        for m in _mentions(recs)
        if not m["from_brand"] and _ts(m) < until and (m["brand"], m["channel"]) == (inc.brand, inc.channel)
    )
    assert total == direct
    every = list(w.traffic_series(w.start + timedelta(minutes=3)))
    assert len(every) == 3 * len(DEFAULT_BRANDS) * len(CHANNELS)
    with pytest.raises(ValueError, match="interval"):
        next(w.traffic_series(until, interval=timedelta(0)))


# ------------------------------------------------------------------------------------- calls & churn


def test_call_volume_per_queue_per_quarter_hour_rises_in_incidents() -> None:
    w, recs = _day()
    calls = [r.payload for r in recs if r.fmt == "calls"]
    slots = collections.Counter(c["ts"] for c in calls)  # type: ignore[index]
    assert set(slots.values()) == {3 * len(DEFAULT_BRANDS)}
    assert all(datetime.fromisoformat(t).minute % 15 == 0 for t in slots)
    weight = {b.id: b.weight for b in DEFAULT_BRANDS}
    for inc in w.incidents:
        during = [
            c
            for c in calls
            if c["queue"] == "technical"  # type: ignore[index]
            and inc.start - timedelta(minutes=15) < datetime.fromisoformat(c["ts"]) < inc.end
        ]  # type: ignore[index]
        mine = sum(c["calls"] for c in during if c["brand"] == inc.brand) / weight[inc.brand]  # type: ignore[index]
        others = [b for b in weight if b != inc.brand]
        theirs = sum(c["calls"] / weight[c["brand"]] for c in during if c["brand"] in others) / len(others)  # type: ignore[index]
        assert mine > 1.5 * theirs


def test_calls_fall_as_social_answers_grow() -> None:
    # fast growth of social traffic (15% a day): more brand answers on social, fewer calls, Monday to Friday
    w = World(seed=3, n_customers=100, rate_per_hour=200, growth_per_day=0.15)
    calls: collections.Counter[str] = collections.Counter()
    answers: collections.Counter[str] = collections.Counter()
    for r in w.events(until=w.start + timedelta(days=5), kinds={"mention", "calls"}):
        p = r.payload
        assert isinstance(p, dict)
        if r.fmt == "calls":
            calls[p["ts"][:10]] += p["calls"]
        elif p["from_brand"]:
            answers[p["ts"][:10]] += 1
    days = sorted(calls)
    assert len(days) == 5
    assert answers[days[-1]] > 1.2 * answers[days[0]]
    assert calls[days[-1]] < 0.85 * calls[days[0]]


def test_churn_follows_a_hidden_process_driven_by_bad_experiences() -> None:
    w = World(seed=5, n_customers=400, rate_per_hour=400, posts_per_customer_day=4, renewal_days=7)
    neg: collections.Counter[str] = collections.Counter()
    outcomes: dict[str, bool] = {}
    for r in w.events(until=w.start + timedelta(days=7), kinds={"mention", "churn"}):
        p = r.payload
        assert isinstance(p, dict)
        if r.fmt == "churn":
            assert set(p) == {"type", "customer_id", "ts", "churned"} and isinstance(p["churned"], bool)
            outcomes.setdefault(p["customer_id"], p["churned"])
        elif p["meta"].get("truth_customer_id") and p["meta"]["truth_sentiment"] == "negative":
            if p["meta"]["truth_customer_id"] not in outcomes:
                neg[p["meta"]["truth_customer_id"]] += 1
    assert len(outcomes) > 350  # every customer renews once a week
    unhappy = [c for c in outcomes if neg[c] >= 5]
    calm = [c for c in outcomes if neg[c] <= 1]
    assert len(unhappy) > 30 and len(calm) > 30

    def rate(group: list[str]) -> float:
        return sum(outcomes[c] for c in group) / len(group)

    assert rate(unhappy) > 0.15
    assert rate(calm) < 0.1
    assert 0 < sum(outcomes.values()) < len(outcomes) / 2


# -------------------------------------------------------------------------------------- Bytewax source


def _run(source: SimulatorSource, out: list[RawRecord], flow_id: str = "sim_test", **kw: Any) -> None:
    flow = Dataflow(flow_id)
    op.output("out", op.input("read", flow, source), TestingSink(out))
    run_main(flow, **kw)


def test_simulator_source_in_a_flow_equals_the_world() -> None:
    seen: list[tuple[int, int]] = []
    src = SimulatorSource(
        seed=4, limit=2500, n_customers=200, batch_size=300, on_progress=lambda e, t: seen.append((e, t))
    )
    out: list[RawRecord] = []
    _run(src, out)
    assert out == list(World(seed=4, n_customers=200).events(limit=2500))
    assert seen[-1] == (2500, 2500) and src.emitted == 2500
    assert src.world is not None and src.world.start == DEFAULT_START


def test_simulator_source_resumes_from_a_snapshot() -> None:
    src = SimulatorSource(seed=4, limit=1000, n_customers=200, batch_size=150)
    part = src.build_part("read", "sim:4", None)
    first = part.next_batch() + part.next_batch()
    state = part.snapshot()
    assert isinstance(state, SimState) and state.emitted == 300
    resumed = src.build_part("read", "sim:4", state)
    rest: list[RawRecord] = []
    while True:
        try:
            rest.extend(resumed.next_batch())
        except StopIteration:
            break
    assert first + rest == list(World(seed=4, n_customers=200).events(limit=1000))


def test_simulator_source_recovery_with_bytewax(tmp_path: Path) -> None:
    db = tmp_path / "recovery"
    db.mkdir()
    init_db_dir(db, 1)
    crashed: list[bool] = []

    def crash_once(rec: RawRecord) -> RawRecord:
        if rec.offset == 700 and not crashed:
            crashed.append(True)
            raise RuntimeError("crash")
        return rec

    out: list[RawRecord] = []
    flow = Dataflow("sim_recovery")
    recs = op.input("read", flow, SimulatorSource(seed=9, limit=1000, n_customers=100, batch_size=100))
    op.output("out", op.map("maybe_crash", recs, crash_once), TestingSink(out))
    with pytest.raises(RuntimeError):
        run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(db))
    before = len(out)
    run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(db))
    offsets = [r.offset for r in out]
    assert crashed and offsets[before] > 0
    assert sorted(set(offsets)) == list(range(1000))
    want = {r.offset: r for r in World(seed=9, n_customers=100).events(limit=1000)}
    assert all(want[r.offset] == r for r in out)


def test_live_pacing_uses_next_awake_and_starts_now() -> None:
    # a thousand times slower than real time: after the first record, the next is far in the future
    slow = SimulatorSource(seed=1, speed=0.001, start=DEFAULT_START, n_customers=50, kinds={"mention"})
    part = slow.build_part("read", "sim:1", None)
    batch = part.next_batch()
    awake = part.next_awake()
    assert len(batch) <= 1
    assert awake is not None and awake > datetime.now(UTC)
    assert part.next_batch() == [] and part.snapshot().emitted == len(batch)
    # live: the world starts now, so event times are current
    live = SimulatorSource(seed=1, speed=1.0, n_customers=50)
    live_part = live.build_part("read", "sim:1", None)
    assert live.world is not None
    assert abs(live.world.start - datetime.now(UTC)) < timedelta(hours=1)
    state = live_part.snapshot()
    assert state.start == live.world.start.isoformat()
    with pytest.raises(ValueError, match="speed"):
        SimulatorSource(speed=-2)


def test_a_live_world_with_history_emits_it_at_once_then_runs_in_time() -> None:
    """``backfill_hours``: the world starts that long before now; those hours come at once (a dashboard's past, a
    detector's baseline), the records after them in time with the clock."""
    live = SimulatorSource(seed=1, speed=1.0, n_customers=50, kinds={"mention"}, backfill_hours=2, batch_size=100_000)
    part = live.build_part("read", "sim:1", None)
    assert live.world is not None
    now = datetime.now(UTC)
    assert abs(live.world.start - (now - timedelta(hours=2))) < timedelta(seconds=5)
    history = part.next_batch()
    times = [datetime.fromisoformat(r.payload["ts"]) for r in history]  # type: ignore[index]
    assert len(history) > 50 and max(times) <= now + timedelta(seconds=1)
    assert max(times) - min(times) > timedelta(hours=1, minutes=45)  # the two hours, not a paced trickle
    awake = part.next_awake()
    assert awake is not None and now - timedelta(seconds=5) < awake < now + timedelta(minutes=30)
    with pytest.raises(ValueError, match="backfill"):
        SimulatorSource(backfill_hours=-1)


def test_ids_name_the_world_so_a_new_live_run_never_reuses_them() -> None:
    # `pulse demo` / `pulse run --source sim` start the world now: a restart must not replay ids the CRM
    # (idempotent by mention id) and the dedupe already know, while the same world keeps its ids
    def ids(start: datetime) -> list[str]:
        return [r.payload["id"] for r in World(seed=7, start=start).events(limit=200) if r.fmt == "mention"]

    first = ids(DEFAULT_START)
    assert first == ids(DEFAULT_START)
    later = ids(DEFAULT_START + timedelta(minutes=3))
    assert not set(first) & set(later)
    assert all(i.split(":", 1)[1].startswith("sim7-") for i in first)
