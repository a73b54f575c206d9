"""The model desk's service functions on a real Redis: versions, rollback, low-confidence samples, labels."""

from __future__ import annotations

import orjson
import pytest
import redis

from models import registry
from stream.audit import recent_actions
from stream.keys import Keys
from stream.model_desk import (
    ModelDeskError,
    low_confidence_sample,
    model_versions,
    rollback_model,
    send_labels,
)


def test_rollback_is_recorded_and_unknown_versions_refused(r: redis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    for _ in range(3):
        registry.save(r, key_prefix, "sentiment", registry.new_model("sentiment"), {"accuracy": 0.5})
    assert model_versions(r, keys, "sentiment")["version"] == 3
    assert rollback_model(r, keys, "sentiment", 1, "dana") == 1
    info = model_versions(r, keys, "sentiment")
    assert info["version"] == 1 and info["rolled_back_from"] == 3
    with pytest.raises(ModelDeskError, match="no kept version 7"):
        rollback_model(r, keys, "sentiment", 7, "dana")
    with pytest.raises(ModelDeskError, match="unknown model"):
        rollback_model(r, keys, "mood", 1, "dana")
    done = [(e.user, e.action, e.detail, e.outcome) for e in recent_actions(r, keys)]
    assert done[1] == ("dana", "model.rollback", {"from": 3, "to": 1}, "ok")
    assert done[0][3].startswith("refused")


def test_labels_go_to_the_feedback_stream_as_pulse_feedback_sends_them(r: redis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    assert send_labels(r, keys, "sentiment", [("twitter:1", "negative"), ("twitter:2", "positive")], "dana") == 2
    entries = r.xrange(keys.feedback)
    bodies = [orjson.loads(f[b"payload"]) for _, f in entries]
    assert bodies == [{"type": "feedback", "mention_id": "twitter:1", "model": "sentiment", "label": "negative",
                       "author": "dana"},
                      {"type": "feedback", "mention_id": "twitter:2", "model": "sentiment", "label": "positive",
                       "author": "dana"}]
    assert all(f[b"fmt"] == b"jsonl" for _, f in entries)
    with pytest.raises(ModelDeskError, match="not a sentiment label"):
        send_labels(r, keys, "sentiment", [("twitter:3", "angry")], "dana")
    assert r.xlen(keys.feedback) == 2  # nothing of a refused batch is sent
    [entry] = recent_actions(r, keys)
    assert entry.action == "model.label" and entry.detail["labels"] == 2


def test_low_confidence_sample_is_least_sure_first(r: redis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    texts = ["I love it, best service ever!!", "ok", "the app is", "worst experience, totally broken, awful"]
    for i, text in enumerate(texts):
        r.zadd(keys.latest, {orjson.dumps({"id": f"t:{i}", "channel": "twitter", "brand": "acme", "author": "a",
                                           "text": text, "sentiment": "neutral", "from_brand": False}): i})
    r.zadd(keys.latest, {orjson.dumps({"id": "t:brand", "text": "thanks", "from_brand": True}): 9})
    model = registry.load_default("sentiment")
    sample = low_confidence_sample(r, keys, "sentiment", model, n=4)
    assert [s["id"] for s in sample if s["id"] == "t:brand"] == []
    confidences = [s["confidence"] for s in sample]
    assert confidences == sorted(confidences) and len(sample) == 4
    assert {s["text"] for s in sample} == set(texts)
