"""Models learn from feedback in the stream: labels name a mention id, bad labels are dead letters."""

from __future__ import annotations

import orjson
import redis
from bytewax.testing import TestingSource, run_main

from connectors.records import RawRecord
from models import registry
from models.prequential import read_metrics
from stream.flow import build_flow
from stream.keys import Keys
from stream.settings import Settings
from stream.sinks import RedisSink


def _run(rows: list[dict], redis_url: str, prefix: str) -> None:
    settings = Settings(prefix=prefix, flush_seconds=0.05, checkpoint_every=2)
    records = [RawRecord("fb-test", i, orjson.dumps(x), "jsonl") for i, x in enumerate(rows)]
    run_main(build_flow(TestingSource(records), settings, RedisSink(redis_url, Keys(prefix)), redis_url=redis_url))


def test_feedback_is_learned_checkpointed_and_bad_labels_are_dead_letters(
    r: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    mentions = [{"id": f"forum:{i}", "channel": "forum", "brand": "acme", "author": f"u{i}",
                 "text": "the new firmware is ok i guess", "ts": 1_704_103_200_000 + i * 1000} for i in range(3)]
    _run(mentions, redis_url, key_prefix)
    keys = Keys(key_prefix)
    stored = orjson.loads(r.hget(keys.features("2024010110"), "forum:0"))
    assert stored["text"] == "the new firmware is ok i guess" and stored["sentiment"] in ("negative", "neutral", "positive")
    feedback = [
        {"type": "feedback", "mention_id": "forum:0", "model": "sentiment", "label": "negative"},
        {"type": "feedback", "mention_id": "forum:1", "model": "department", "label": "sales"},
        {"type": "feedback", "mention_id": "forum:404", "model": "sentiment", "label": "negative"},
        {"type": "feedback", "mention_id": "forum:2", "model": "sentiment", "label": "furious"},
        {"type": "feedback", "mention_id": "forum:2", "model": "mood", "label": "happy"},
    ]
    _run(feedback, redis_url, key_prefix)
    reasons = sorted(f[b"reason"].decode() for _, f in r.xrange(keys.dlq))
    assert len(reasons) == 3
    assert any("unknown mention id 'forum:404'" in x for x in reasons)
    assert any("furious" in x for x in reasons)
    assert any("unknown model 'mood'" in x for x in reasons)
    # Two accepted labels reach checkpoint_every=2: every text model is saved as a version in Redis.
    for name in ("intent", "sentiment", "department"):
        info = registry.info(r, key_prefix, name)
        assert info is not None and int(info["version"]) >= 1
    scored = read_metrics(r, key_prefix, "sentiment", "forum")
    assert scored, "prequential metrics for the sentiment model on the forum channel"


def test_live_run_learns_from_pulse_feedback(r: redis.Redis, redis_url: str, key_prefix: str) -> None:
    import os
    import subprocess
    import time

    from pulse_testkit import PULSE, make_mentions, pulse, redis_source

    from connectors.redis_streams import append_records
    from stream.metrics import totals

    rows = make_mentions(40)
    append_records(r, key_prefix, [orjson.dumps(x) for x in rows], partitions=2)
    env = dict(os.environ, REDIS_URL=redis_url, PULSE_PREFIX=key_prefix, PULSE_CHECKPOINT_EVERY="1",
               PULSE_EPOCH_SECONDS="0.2")
    source = redis_source(redis_url, key_prefix, partitions=2)
    proc = subprocess.Popen([*PULSE, "run", "--source", source], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    keys = Keys(key_prefix)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and totals(r, keys)["offered"] < len(rows):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
        assert totals(r, keys)["offered"] == len(rows)
        while time.monotonic() < deadline and not r.exists(keys.features_hours):
            time.sleep(0.1)
        pulse("feedback", rows[0]["id"], "--model", "sentiment", "--label", "negative",
              redis_url=redis_url, prefix=key_prefix)
        pulse("feedback", "twitter:nope", "--model", "sentiment", "--label", "negative",
              redis_url=redis_url, prefix=key_prefix)
        while time.monotonic() < deadline and not (registry.info(r, key_prefix, "sentiment") and r.exists(keys.dlq)):
            time.sleep(0.1)
        assert registry.info(r, key_prefix, "sentiment") is not None, "the label was learned and checkpointed"
        reasons = [f[b"reason"].decode() for _, f in r.xrange(keys.dlq)]
        assert any("unknown mention id 'twitter:nope'" in x for x in reasons)
        # An agent answers a query through the CRM: the reply goes to the twitter outbox, comes back
        # through the flow, and its first response time is measured like any reply seen on the channel.
        query = next(x for x in rows if x["id"] == "twitter:1")
        assert "how do i" in query["text"].lower()
        out = pulse("crm", "reply", "C-twitter:1", "--text", "Try turning it off and on again",
                    redis_url=redis_url, prefix=key_prefix, check=False)
        assert out.returncode == 0, out.stderr
        rt = keys.response_times(query["brand"], "twitter")
        while time.monotonic() < deadline and r.zscore(rt, "twitter:1") is None:
            time.sleep(0.1)
        assert r.zscore(rt, "twitter:1") is not None, "the CRM reply was measured as a first response"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
