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
