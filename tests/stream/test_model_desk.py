"""The model desk's service functions on a real Redis: versions and rollback (``stream.model_admin``, as the
dashboard uses them), versions laid out side by side, low-confidence samples, labels."""

from __future__ import annotations

import orjson
import pytest
import redis

from models import registry
from stream.audit import recent_actions
from stream.keys import Keys
from stream.model_admin import model_versions, rollback_model
from stream.model_desk import (
    ModelDeskError,
    describe_version,
    low_confidence_sample,
    send_labels,
)


def test_rollback_is_recorded_and_unknown_versions_refused(r: redis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    for _ in range(3):
        registry.save(r, key_prefix, "sentiment", registry.new_model("sentiment"), {"accuracy": 0.5}, key=b"k")
    [meta] = model_versions(r, key_prefix, "sentiment")
    assert meta["version"] == 3
    assert rollback_model(r, key_prefix, "sentiment", 1, reason="dashboard", user="dana") == {
        "model": "sentiment", "version": 1, "previous": 3}
    [meta] = model_versions(r, key_prefix, "sentiment")
    assert meta["version"] == 1 and meta["rolled_back_from"] == 3 and meta["rolled_back_reason"] == "dashboard"
    with pytest.raises(LookupError, match="no kept version 7"):
        rollback_model(r, key_prefix, "sentiment", 7, user="dana")
    with pytest.raises(LookupError, match="unknown model"):
        rollback_model(r, key_prefix, "mood", 1, user="dana")
    done = [(e.user, e.action, e.detail, e.outcome) for e in recent_actions(r, keys)]
    assert done[2] == ("dana", "model.rollback", {"from": 3, "to": 1}, "ok")
    assert done[0][3].startswith("refused: unknown model") and done[1][3].startswith("refused: model")
    # the command line's rollback (no user) is not an audited person's action
    assert rollback_model(r, key_prefix, "sentiment", 2)["version"] == 2
    assert len(recent_actions(r, keys)) == 3


def test_versions_line_up_with_provenance_and_scores(r: redis.Redis, key_prefix: str) -> None:
    files = [{"name": "acts.csv", "rows": 50, "rows_used": 48, "sha256": "c0ffee" * 10}]
    registry.save(r, key_prefix, "intent", registry.new_model("intent"),
                  {"train_rows": 48, "train_prequential_accuracy": 0.75}, key=b"k",
                  provenance={"command": "pulse train", "files": files, "rows": 48, "label_map": "QUE=query,*=comment",
                              "started_from": "default (warm-started)", "trained_on": files, "epochs": 1})
    registry.save(r, key_prefix, "intent", registry.new_model("intent"),
                  {"n_labels": 12, "accuracy": 0.5, "confusion": {"query": {"query": 6}}}, key=b"k",
                  provenance={"source": "flow feedback", "labels": 12, "started_from": "v1", "trained_on": files,
                              "drift": {"labels": 12, "drifts": 0, "pinned": False}})
    [meta] = model_versions(r, key_prefix, "intent")
    v1, v2 = (describe_version(v) for v in meta["versions"])
    assert list(v1)[:4] == list(v2)[:4] == ["version", "current", "saved at", "learned (examples)"]
    assert (v1["made by"], v1["trained on"], v1["label map"], v1["score: train_prequential_accuracy"]) == (
        "pulse train", "acts.csv (48 rows, sha256 c0ffeec0ffee)", "QUE=query,*=comment", 0.75)
    assert (v2["made by"], v2["started from"], v2["labels learned (flow)"], v2["score: accuracy"]) == (
        "flow feedback", "v1", 12, 0.5)
    assert v2["lineage"] == v1["lineage"] and v2["current"] and not v1["current"]
    assert v1["provenance: epochs"] == 1 and "score: confusion" not in v2


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
