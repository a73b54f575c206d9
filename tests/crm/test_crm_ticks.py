"""The automatic timer ticks: skipped when nothing can be due, and the keys do not depend on the batches.

A tick that has nothing to do writes nothing, so whether a batch runs it (not knowing better) or skips it (its
bound says nothing can be due) leaves the same keys; the ticks that do something run in every batching, at the
same mention and event time.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
import redis
from crm_helpers import T0, iso
from pulse_testkit import stored_values

from connectors.outbox import ENCODING
from crm import CrmProcessor, CrmSettings, RuleSet
from crm.assignment import Agent, add_agent
from crm.processor import parse_ts_ms
from crm.store import RedisCrmStore, Retention, TimerRun

MIN = 60_000
DAY = 86_400_000


class CountingStore(RedisCrmStore):
    """The Redis store, noting the event time of each run of the timers (everything else as is)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        super().__init__(client, prefix)
        self.timer_runs: list[int] = []
        #: runs of the timers between two commits of one round trip (SLA timers only)
        self.inline_runs = 0
        #: runs of the SLA timers alone (the processor knew nothing else could be due)
        self.sla_only_runs = 0

    def timers(self, now_ms: int, idle_ms: int, limit: int, memo: str = "", memo_ttl_s: int = 0,
               retention: Retention | None = None, **kw: Any) -> TimerRun:
        self.timer_runs.append(now_ms)
        return super().timers(now_ms, idle_ms, limit, memo, memo_ttl_s, retention, **kw)

    def apply_ops(self, ops: Iterable[tuple[str, Any]]) -> list[dict[str, Any]]:
        kinds: list[str] = []

        def seen() -> Iterator[tuple[str, Any]]:
            for kind, payload in ops:
                if kind == "timers":
                    self.timer_runs.append(payload.now_ms)
                    self.sla_only_runs += payload.sla_only
                kinds.append(kind)
                yield kind, payload

        out = super().apply_ops(seen())
        self.inline_runs += sum(1 for a, b in zip(kinds, kinds[1:], strict=False) if a == "timers" and b == "commit")
        return out


class CrashingStore(CountingStore):
    """Applies everything, then raises (the process died before its results were used) after the round trip
    with the ``crash_at``-th inline run of the timers."""

    def __init__(self, client: redis.Redis, prefix: str, crash_at: int) -> None:
        super().__init__(client, prefix)
        self.crash_at = crash_at

    def apply_ops(self, ops: Iterable[tuple[str, Any]]) -> list[dict[str, Any]]:
        before = self.inline_runs
        out = super().apply_ops(ops)
        if before < self.crash_at <= self.inline_runs:
            raise SystemExit("killed")
        return out


def _settings(prefix: str) -> CrmSettings:
    # short retentions so that a few weeks of event time reach all of them
    return CrmSettings(prefix=prefix, auto_tick_ms=MIN, auto_resolve_minutes=120.0, stale_case_days=3.0,
                       case_retention_days=2.0, prospect_retention_days=6.0, processed_ttl_seconds=2 * 86400,
                       retention_sweep_minutes=60.0)


def _processor(r: redis.Redis, prefix: str, store: CountingStore | None = None) -> tuple[CrmProcessor, CountingStore]:
    store = store or CountingStore(r, prefix)
    for name, cap in (("ann", 2), ("bob", 1)):
        add_agent(store, Agent.create(name, capacity=cap), online=True, now_ms=T0)
    return CrmProcessor(store, RuleSet([]), None, _settings(prefix), outbox=ENCODING), store


def sparse_stream(n: int = 260, seed: int = 5) -> list[dict[str, Any]]:
    """Bursts of mentions (queries open cases, some follow-ups, brand replies) at random moments of 30 days:
    gaps of seconds to days, so that some ticks fire SLA warnings and breaches, resolve, expire and sweep, and
    many have nothing to do."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    t = T0
    while len(rows) < n:
        t += rng.choice((rng.randint(1, 50) * MIN, rng.randint(2, 40) * 60 * MIN, rng.randint(5, 90) * 1000))
        for _ in range(rng.randint(1, 6)):
            t += rng.randint(5_000, 25 * MIN)
            i = len(rows)
            channel = rng.choice(("twitter", "facebook", "forum"))
            prev = rng.choice(rows) if rows and rng.random() < 0.15 else None
            rows.append({
                "id": f"{channel}:{i}", "channel": channel, "brand": "acme", "author": f"u{rng.randrange(40)}",
                "text": "where is my refund?", "ts": iso(t), "in_reply_to": prev["id"] if prev else None,
                "from_brand": False, "lang": "en", "meta": {}, "intent": rng.choice(("query", "query", "comment")),
                "sentiment": rng.choice(("negative", "neutral", "positive")), "sentiment_score": 0.0,
                "department": "service", "keywords": ["refund"],
            })
            if rng.random() < 0.3:
                rows.append({"id": f"{channel}:r{i}", "channel": channel, "brand": "acme", "author": "acme_care",
                             "text": "we're on it", "ts": iso(t + rng.randint(1, 300) * MIN), "from_brand": True,
                             "in_reply_to": f"{channel}:{i}", "intent": "comment", "sentiment": "neutral"})
    rows = rows[:n]
    rows.sort(key=lambda row: row["ts"])
    return rows


def _run(r: redis.Redis, prefix: str, rows: list[dict[str, Any]], size: int
         ) -> tuple[dict[str, Any], dict[str, list[str]], list[int]]:
    proc, store = _processor(r, prefix)
    alerts: dict[str, list[str]] = {}
    _run.inline = 0  # type: ignore[attr-defined]
    for start in range(0, len(rows), size):
        for row, res in zip(rows[start:start + size], proc.process_batch(rows[start:start + size]), strict=True):
            assert "error" not in res, res
            if res.get("alerts"):
                alerts[row["id"]] = [a["id"] for a in res["alerts"]]
    _run.inline = store.inline_runs  # type: ignore[attr-defined]
    _run.sla_only = store.sla_only_runs  # type: ignore[attr-defined]
    return stored_values(r, prefix), alerts, store.timer_runs


def test_batchings_of_a_sparse_stream_give_identical_keys_while_skipping_ticks(
        r: redis.Redis, key_prefix: str) -> None:
    rows = sparse_stream()
    runs = {size: _run(r, f"{key_prefix}{size}:", rows, size) for size in (1, 7, len(rows))}
    assert _run.inline > 10  # type: ignore[attr-defined]  # the whole batch at once: SLA-only ticks ran between commits
    # ... as runs of the SLA scan alone (no auto-resolve, expiry or sweep): the keys below are still those of one
    # mention at a time, where every tick runs all the timers
    assert _run.sla_only >= _run.inline  # type: ignore[attr-defined]
    keys, alerts, timer_runs = runs[1]
    for size in (7, len(rows)):
        other_keys, other_alerts, other_runs = runs[size]
        assert sorted(other_keys) == sorted(keys)
        assert [k for k in keys if other_keys[k] != keys[k]] == []
        assert other_alerts == alerts  # the same alerts, on the same mentions
        # a batch knows less than Redis after every mention: it may run ticks that turn out to have nothing to do
        assert set(timer_runs) <= set(other_runs)
    # the timers did every kind of thing, at some ticks only
    stats = {k.decode(): int(v) for k, v in keys["cases:stats"].items()}
    assert stats["sla_breaches"] > 0 and stats["resolved"] > 0 and stats["expired"] > 0
    assert {a.rsplit(":", 1)[1] for ids in alerts.values() for a in ids} == {"warning", "breach"}
    assert "case:C-twitter:0" not in keys  # closed and retired
    customer = [row for row in rows if not row["from_brand"]]
    periods = {parse_ts_ms(row["ts"]) // MIN for row in customer}
    assert len(timer_runs) < len(periods) / 2  # most ticks were skipped
    # stored ticks (those of the last two days of event time: the processed-mark retention) all raised alerts:
    # [mention, time, fired (case, stage) pairs, the fired cases' hashes]
    stored = {k.rsplit(":", 1)[1]: orjson.loads(v) for k, v in keys.items()
              if k.startswith("crm:tick:") and k != "crm:tick:last"}
    assert stored and all(t[2] and len(t[3]) == len(t[2]) // 2 and t[0] in alerts for t in stored.values())
    assert sorted(k.rsplit(":", 1)[1] for k in keys if k.startswith("crm:tickscan:")) == sorted(stored)


def test_a_tick_with_nothing_due_is_skipped_and_leaves_no_trace_one_with_alerts_is_kept(
        r: redis.Redis, key_prefix: str, mention: Callable[..., dict[str, Any]]) -> None:
    proc, store = _processor(r, key_prefix)
    proc.process(mention(id="twitter:1", ts_ms=T0))
    case = store.get_case("C-twitter:1")
    assert case is not None
    warn_ms, due_ms = int(case["warn_ms"]), int(case["due_ms"])
    before = stored_values(r, key_prefix)
    assert not any(k.startswith("crm:tick") for k in before)
    quiet = proc.process(mention(id="twitter:2", ts_ms=warn_ms - 2 * MIN, intent="comment"))
    assert quiet["alerts"] == [] and store.timer_runs == []  # nothing could be due: not run
    assert not any(k.startswith("crm:tick") for k in stored_values(r, key_prefix))
    warned = proc.process(mention(id="twitter:3", ts_ms=warn_ms + MIN, intent="comment"))
    assert [a["id"] for a in warned["alerts"]] == [f"sla_breach:C-twitter:1:{due_ms}:warning"]
    assert store.timer_runs == [warn_ms + MIN]
    period = warn_ms + MIN - (warn_ms + MIN) % MIN
    assert r.exists(f"{key_prefix}crm:tick:{period}", f"{key_prefix}crm:tickscan:{period}") == 2
    # a replay returns the tick's alerts as stored, without running the timers again
    again = proc.process(mention(id="twitter:3", ts_ms=warn_ms + MIN, intent="comment"))
    assert again["duplicate"] and again["alerts"] == warned["alerts"]
    assert store.timer_runs == [warn_ms + MIN]


def test_an_automatic_sweep_waits_for_its_slack_or_a_full_sweep_and_the_state_says_when(
        r: redis.Redis, key_prefix: str, mention: Callable[..., dict[str, Any]]) -> None:
    settings = CrmSettings(prefix=key_prefix, auto_tick_ms=0, processed_ttl_seconds=86400)
    store = RedisCrmStore(r, key_prefix)
    proc = CrmProcessor(store, RuleSet([]), None, settings, outbox=ENCODING)
    for day in range(10):  # ten processed marks a day apart: behind the last, eight are past their day
        proc.process(mention(id=f"twitter:{day}", ts_ms=T0 + day * DAY, intent="comment"))
    now, ret = T0 + 9 * DAY + 1, Retention(processed_ms=DAY)
    marks = f"{key_prefix}crm:donet"
    late = store.timer_state(ret, 0, 30 * DAY)
    assert late.next_due is not None and late.next_due > now  # the oldest is 8 days past: a 30-day slack waits
    assert store.timers(now, 0, 20, retention=ret, slack_ms=30 * DAY).retired == 0 and r.zcard(marks) == 10
    # a sweep's worth (here 5) past retention: it sweeps now, whatever the slack
    full = store.timer_state(ret, 0, 30 * DAY, limit=5)
    assert full.next_due is not None and full.next_due <= now
    assert store.timers(now, 0, 5, retention=ret, slack_ms=30 * DAY).retired == 5 and r.zcard(marks) == 5
    # the slack passed: everything past retention goes
    assert store.timers(now, 0, 20, retention=ret, slack_ms=DAY).retired == 3 and r.zcard(marks) == 2


def test_a_crash_after_a_round_trip_with_ticks_between_commits_loses_no_alert(
        r: redis.Redis, key_prefix: str) -> None:
    """The process dies right after Redis applied a round trip in which SLA-only ticks ran between commits (their
    mentions committed, their alerts never published); as after a recovery, the batch in flight is run again and the
    stream goes on: every alert comes, on the same mentions, and the keys are those of an uninterrupted run."""
    rows, size = sparse_stream(), 40
    keys, alerts, _ = _run(r, f"{key_prefix}whole:", rows, size)
    for crash_at in (1, 5, 12):
        prefix = f"{key_prefix}crash{crash_at}:"
        proc, _ = _processor(r, prefix, CrashingStore(r, prefix, crash_at))
        got: dict[str, list[str]] = {}
        start, crashed = 0, False
        while start < len(rows):
            batch = rows[start:start + size]
            try:
                results = proc.process_batch(batch)
            except SystemExit:
                assert not crashed
                crashed = True
                proc, _ = _processor(r, prefix, CountingStore(r, prefix))  # a new process: the batch again
                continue
            for row, res in zip(batch, results, strict=True):
                assert "error" not in res, res
                if res.get("alerts"):
                    got[row["id"]] = [a["id"] for a in res["alerts"]]
            start += size
        assert crashed and got == alerts
        after = stored_values(r, prefix)
        assert sorted(after) == sorted(keys) and [k for k in keys if after[k] != keys[k]] == []
