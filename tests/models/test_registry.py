"""Registry: warm-start defaults with an on-disk cache, Redis checkpoints with versions and rollback."""

from __future__ import annotations

import hashlib
import hmac
import logging
import pickle
import zlib
from pathlib import Path

import pytest
import redis

from models import registry
from models.intent import IntentClassifier
from models.sentiment import SentimentClassifier

X = {"text": "can you help me with my booking?", "channel": "twitter"}
KEY = b"registry-test-key"


def _tiny_data(folder: Path) -> Path:
    """A small tweet_acts-shaped file, so the intent default warm-starts in a blink."""
    (folder / "tweet_acts").mkdir(parents=True)
    rows = ["text,act"]
    for i in range(60):
        rows.append(f'"how do I fix thing {i}?",QUE')
        rows.append(f'"nice day number {i}",EXP')
    (folder / "tweet_acts" / "tweet_acts_5000.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def test_load_default_builds_once_then_reads_the_cache(tmp_path: Path) -> None:
    data = _tiny_data(tmp_path / "data")
    cache = tmp_path / "cache"
    first = registry.load_default("intent", data_dir=data, cache_dir=cache)
    files = list(cache.glob("intent-*.pkl"))
    assert len(files) == 1 and first.n_learned == 240
    # The second call reads the file: prove it by altering the cached model on disk.
    marked = pickle.loads(files[0].read_bytes())
    marked.learn_one({"text": "cache marker"}, "comment")
    files[0].write_bytes(pickle.dumps(marked))
    second = registry.load_default("intent", data_dir=data, cache_dir=cache)
    assert second.n_learned == 241 and second is not first


def test_cache_is_rebuilt_when_data_changes_or_file_is_corrupt(tmp_path: Path) -> None:
    data = _tiny_data(tmp_path / "data")
    cache = tmp_path / "cache"
    registry.load_default("intent", data_dir=data, cache_dir=cache)
    old = next(cache.glob("intent-*.pkl"))
    old.write_bytes(b"not a pickle")
    rebuilt = registry.load_default("intent", data_dir=data, cache_dir=cache)
    assert rebuilt.n_learned == 240
    with open(data / "tweet_acts" / "tweet_acts_5000.csv", "a", encoding="utf-8") as fh:
        fh.write('"where is it?",QUE\n')
    again = registry.load_default("intent", data_dir=data, cache_dir=cache)
    assert again.n_learned == 242
    assert len(list(cache.glob("intent-*.pkl"))) == 1  # the stale file was replaced, not kept


def test_missing_data_gives_an_untrained_model(tmp_path: Path) -> None:
    model = registry.load_default("sentiment", data_dir=tmp_path / "nowhere", cache_dir=tmp_path / "c")
    assert isinstance(model, SentimentClassifier) and model.n_learned == 0
    assert not (tmp_path / "c").exists()
    with pytest.raises(ValueError, match="unknown model 'churnz'"):
        registry.load_default("churnz")


def test_save_load_versions_and_metadata(r: redis.Redis, key_prefix: str) -> None:
    assert registry.load(r, key_prefix, "intent", key=KEY) is None
    model = IntentClassifier()
    model.learn_one(X, "query")
    v1 = registry.save(r, key_prefix, "intent", model, {"accuracy": 0.9}, key=KEY)
    model.learn_one(X, "query")
    v2 = registry.save(r, key_prefix, "intent", model, {"accuracy": 0.95}, key=KEY)
    assert (v1, v2) == (1, 2)
    loaded = registry.load(r, key_prefix, "intent", key=KEY)
    assert isinstance(loaded, IntentClassifier) and loaded.n_learned == 2
    assert loaded.predict_proba_one(X) == model.predict_proba_one(X)
    assert registry.load(r, key_prefix, "intent", version=1, key=KEY).n_learned == 1
    meta = registry.info(r, key_prefix, "intent")
    assert meta is not None
    assert meta["version"] == 2 and meta["n_learned"] == 2 and meta["class_counts"] == {"query": 2}
    assert meta["metrics"] == {"accuracy": 0.95}
    assert [v["version"] for v in meta["versions"]] == [1, 2]
    assert registry.list_models(r, key_prefix) == ["intent"]
    assert r.type(registry.model_key(key_prefix, "intent")) == b"hash"
    with pytest.raises(LookupError, match="no kept version 7"):
        registry.load(r, key_prefix, "intent", version=7, key=KEY)


def test_rollback_to_previous_and_to_a_given_version(r: redis.Redis, key_prefix: str) -> None:
    model = IntentClassifier()
    for _ in range(3):
        model.learn_one(X, "query")
        registry.save(r, key_prefix, "intent", model, key=KEY)
    assert registry.rollback(r, key_prefix, "intent") == 2
    assert registry.load(r, key_prefix, "intent", key=KEY).n_learned == 2
    assert registry.rollback(r, key_prefix, "intent") == 1
    with pytest.raises(LookupError, match="no version before 1"):
        registry.rollback(r, key_prefix, "intent")
    assert registry.rollback(r, key_prefix, "intent", version=3) == 3
    assert registry.info(r, key_prefix, "intent")["rolled_back_from"] == 1
    # A save after a rollback gets a fresh number; history is never overwritten.
    assert registry.save(r, key_prefix, "intent", model, key=KEY) == 4
    with pytest.raises(LookupError):
        registry.rollback(r, key_prefix, "nothing")


def test_old_versions_are_pruned_but_the_current_is_kept(r: redis.Redis, key_prefix: str) -> None:
    model = IntentClassifier()
    for _ in range(5):
        registry.save(r, key_prefix, "intent", model, key=KEY, keep=2)
    meta = registry.info(r, key_prefix, "intent")
    assert [v["version"] for v in meta["versions"]] == [4, 5]
    assert not r.exists(registry.version_key(key_prefix, "intent", 1))
    registry.rollback(r, key_prefix, "intent", version=4)
    registry.save(r, key_prefix, "intent", model, key=KEY, keep=1)  # version 6; current was 4
    assert registry.load(r, key_prefix, "intent", key=KEY).n_learned == 0


def test_corrupt_checkpoint_is_refused(r: redis.Redis, key_prefix: str) -> None:
    registry.save(r, key_prefix, "sentiment", SentimentClassifier(), key=KEY)
    r.set(registry.version_key(key_prefix, "sentiment", 1), b"garbage")
    with pytest.raises(registry.CheckpointRefused, match="version 1: checkpoint refused"):
        registry.load(r, key_prefix, "sentiment", key=KEY)


class _Exploit:
    """A pickle that runs code when loaded: it would create the file named by ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_a_tampered_checkpoint_is_refused_and_nothing_runs(
    r: redis.Redis, key_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = _tiny_data(tmp_path / "data")
    registry.save(r, key_prefix, "intent", IntentClassifier(), key=KEY)
    marker = tmp_path / "pwned"
    body = zlib.compress(pickle.dumps(_Exploit(marker)))
    forged = [
        body,  # a bare pickle, as older versions stored
        b"PSIG1" + hmac.new(b"a guessed key", body, hashlib.sha256).digest() + body,  # signed with another key
        registry.seal(_Exploit(marker), b"attacker's own key"),
    ]
    for blob in forged:
        r.set(registry.version_key(key_prefix, "intent", 1), blob)
        with pytest.raises(registry.CheckpointRefused, match="checkpoint refused"):
            registry.load(r, key_prefix, "intent", key=KEY)
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="models.registry"):
            model = registry.load_current(r, key_prefix, "intent", key=KEY, data_dir=data, cache_dir=tmp_path / "c")
        assert model.n_learned == 240, "fell back to the default"
        refused = [rec for rec in caplog.records if "refused" in rec.getMessage()]
        assert len(refused) == 1 and "starting from the default model" in refused[0].getMessage()
        assert "\n" not in refused[0].getMessage()
    assert not marker.exists(), "the forged pickle never ran"
    # A genuine blob under our key loads; a key is required
    r.set(registry.version_key(key_prefix, "intent", 1), registry.seal(IntentClassifier(), KEY))
    assert registry.load(r, key_prefix, "intent", key=KEY).n_learned == 0
    with pytest.raises(ValueError, match="signing key"):
        registry.load(r, key_prefix, "intent", key=b"")


def test_provenance_candidates_and_text_fingerprints(r: redis.Redis, key_prefix: str) -> None:
    model = IntentClassifier()
    provenance = {"files": [{"name": "a.csv", "sha256": "ab" * 32, "rows": 3}], "label_map": "QUE=query"}
    texts = {registry.text_fingerprint(t) for t in ("Where is it?", "hello there")}
    v1 = registry.save(r, key_prefix, "intent", model, key=KEY, provenance=provenance, texts=texts)
    v2 = registry.save(r, key_prefix, "intent", model, key=KEY, make_current=False)  # a candidate
    meta = registry.info(r, key_prefix, "intent")
    assert meta["version"] == v1 == 1 and v2 == 2 and meta["provenance"] == provenance
    assert [(v["version"], v["current"]) for v in meta["versions"]] == [(1, True), (2, False)]
    assert meta["versions"][0]["provenance"]["files"][0]["sha256"] == "ab" * 32
    assert registry.trained_texts(r, key_prefix, "intent", 1) == texts
    assert registry.text_fingerprint("where  IS it?") in registry.trained_texts(r, key_prefix, "intent", 1)
    assert registry.trained_texts(r, key_prefix, "intent", 2) == set()
    assert registry.rollback(r, key_prefix, "intent", 2, reason="cli") == 2
    assert registry.info(r, key_prefix, "intent")["rolled_back_reason"] == "cli"
    for _ in range(3):
        registry.save(r, key_prefix, "intent", model, key=KEY, keep=2)
    assert not r.exists(registry.texts_key(key_prefix, "intent", 1)), "pruned with its version"


def test_load_current_prefers_the_checkpoint(r: redis.Redis, key_prefix: str, tmp_path: Path) -> None:
    data = _tiny_data(tmp_path / "data")
    default = registry.load_current(r, key_prefix, "intent", key=KEY, data_dir=data, cache_dir=tmp_path / "c")
    assert default.n_learned == 240
    fresh = IntentClassifier()
    registry.save(r, key_prefix, "intent", fresh, key=KEY)
    assert (
        registry.load_current(r, key_prefix, "intent", key=KEY, data_dir=data, cache_dir=tmp_path / "c").n_learned == 0
    )


def test_bad_names_are_refused(r: redis.Redis, key_prefix: str) -> None:
    with pytest.raises(ValueError, match="without ':'"):
        registry.save(r, key_prefix, "a:b", IntentClassifier(), key=KEY)


def test_mention_classifier_default_uses_the_registry(tmp_path: Path) -> None:
    from models.classifiers import MentionClassifier

    data = _tiny_data(tmp_path / "data")  # intent data only: sentiment starts from its prior
    clf = MentionClassifier.default(data_dir=data, cache_dir=tmp_path / "cache")
    assert clf.intent.n_learned == 240 and clf.sentiment.n_learned == 0 and clf.department.n_learned == 0
    assert clf.classify_one({"text": "how do I fix thing 3?"})["intent"] == "query"
