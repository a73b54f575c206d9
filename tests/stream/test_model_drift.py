"""Drift in the flow's models: a vocabulary change raises a model_drift alert, the last good version is served
(and made current in the registry) while the learning copy catches up, then the alert resolves."""

from __future__ import annotations

import logging
import pickle
import random
from pathlib import Path

import pytest
import redis

from models import registry
from models.prequential import DriftGuard
from stream.keys import Keys
from stream.learning import ModelHost, features_of, model_signing_key
from stream.schema import Alert, Enriched, Feedback, Mention, parse_ts
from stream.settings import Settings
from stream.sinks import RedisWriter

KEY = b"drift-test-key"
T0 = 1_709_510_400_000
OLD = {"positive": ("lovely", "wonderful", "great"), "negative": ("awful", "terrible", "horrible")}
NEW = {"positive": ("zimzam", "blorpy", "quaxy"), "negative": ("grindle", "snarfy", "vexxed")}  # unseen words


def _mentions(n: int, vocab: dict[str, tuple[str, ...]], start: int, rng: random.Random) -> list[tuple[Mention, str]]:
    out = []
    for i in range(n):
        label = rng.choice(("positive", "negative"))
        word = rng.choice(vocab[label])
        m = Mention(id=f"forum:{start + i}", channel="forum", brand="acme", author=f"u{i % 40}",
                    text=f"the flight today was {word} {rng.choice(('honestly', 'tbh', 'really', ''))}".strip(),
                    ts=parse_ts(T0 + (start + i) * 60_000))
        out.append((m, label))
    return out


def test_vocabulary_change_pins_the_last_good_version_until_the_learner_recovers(
    r: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    keys = Keys(key_prefix)
    host = ModelHost(redis_url, keys, cache_dir=None, checkpoint_every=25, warm_start=False, signing_key=KEY,
                     guard=DriftGuard(min_labels=40, min_recovery=25))
    writer = RedisWriter(r, keys)
    rng = random.Random(5)
    stream = _mentions(250, OLD, 0, rng) + _mentions(400, NEW, 250, rng)
    alerts: list[Alert] = []
    served_at_drift = None
    for m, label in stream:
        e = host.classify(m)
        writer.write([("mention", e.to_json(), m.ts_ms, m.id, features_of(e))])
        out = host.learn(Feedback(mention_id=m.id, model="sentiment", label=label))
        if isinstance(out, Alert):
            alerts.append(out)
            if out.message.startswith("open"):
                served_at_drift = registry.info(r, key_prefix, "sentiment")
                probe = Mention(id="probe", channel="forum", brand="acme", author="p",
                                text="the flight today was grindle", ts=m.ts)
                assert host._clf is not None and host._learning is not None
                assert host._clf.sentiment is not host._learning.sentiment, "an older version is served"
                assert host.classify(probe).sentiment in ("negative", "neutral", "positive")
        else:
            assert out is None
    assert [a.message.split(":")[0] for a in alerts] == ["open", "resolved"]
    opened, resolved = alerts
    assert opened.kind == resolved.kind == "model_drift" and opened.id == resolved.id
    assert opened.topic == "sentiment" and opened.observed > opened.expected + 0.2
    assert opened.sample_ids and all(s.startswith("forum:") for s in opened.sample_ids)
    assert opened.window_start.startswith("2024-03-04")
    drift_label = int(opened.id.rsplit(":", 1)[1])
    assert 230 <= drift_label <= 330, "the change (at label 250) was located"
    # the registry served the version checkpointed before the change while the learner caught up
    assert served_at_drift is not None and served_at_drift["rolled_back_reason"] == "drift"
    assert served_at_drift["version"] <= 250 // 25
    status = host.drift_status()["sentiment"]
    assert status["drifts"] == 1 and status["recoveries"] == 1 and not status["pinned"]
    after = registry.info(r, key_prefix, "sentiment")
    assert after is not None and "rolled_back_from" not in after and after["version"] > served_at_drift["version"]
    # the learner now knows the new words, and it is what classify serves
    probe = Mention(id="probe2", channel="forum", brand="acme", author="p", text="the flight today was vexxed",
                    ts=parse_ts(T0))
    assert host.classify(probe).sentiment == "negative"
    # the other models saw no labels and no drift
    assert host.drift_status()["intent"]["drifts"] == 0


def test_stationary_labels_raise_no_alert(r: redis.Redis, redis_url: str, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    host = ModelHost(redis_url, keys, cache_dir=None, checkpoint_every=50, warm_start=False, signing_key=KEY)
    writer = RedisWriter(r, keys)
    rng = random.Random(9)
    for m, label in _mentions(300, OLD, 0, rng):
        e: Enriched = host.classify(m)
        writer.write([("mention", e.to_json(), m.ts_ms, m.id, features_of(e))])
        if rng.random() < 0.1:
            label = "neutral"  # some noise in the labels, steady over time
        assert host.learn(Feedback(mention_id=m.id, model="sentiment", label=label)) is None
    assert host.drift_status()["sentiment"]["drifts"] == 0


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_forged_prequential_state_is_refused_with_one_line(
    r: redis.Redis, redis_url: str, key_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(key_prefix)
    marker = tmp_path / "ran"
    r.set(keys.prequential_state, pickle.dumps(_Exploit(marker)))  # what the flow used to unpickle
    host = ModelHost(redis_url, keys, cache_dir=None, warm_start=False, signing_key=KEY)
    with caplog.at_level(logging.ERROR, logger="stream.learning"):
        host.classify(Mention(id="t:1", channel="forum", brand="acme", author="a", text="hi", ts=parse_ts(T0)))
    refused = [rec.getMessage() for rec in caplog.records if "refused" in rec.getMessage()]
    assert len(refused) == 1 and "prequential state" in refused[0] and "counting from zero" in refused[0]
    assert not marker.exists()
    host.flush()  # what it writes back is signed, and a host with the same key reads it
    assert r.get(keys.prequential_state).startswith(b"PSIG1")
    again = ModelHost(redis_url, keys, cache_dir=None, warm_start=False, signing_key=KEY)
    again._restore_metrics()
    assert again._metrics.snapshot()["sentiment"]["forum"]["n_predictions"] == 1


def test_signing_key_from_settings_or_a_private_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path / "state"))
    key = model_signing_key(settings)
    path = tmp_path / "state" / "model.key"
    assert path.stat().st_mode & 0o777 == 0o600 and len(key) == 64
    assert model_signing_key(settings) == key  # created once, then read
    assert model_signing_key(Settings.load(env={"PULSE_MODEL_KEY": "k1"}, config_path=None)) == b"k1"
    assert "k1" not in repr(Settings.load(env={"PULSE_MODEL_KEY": "k1"}, config_path=None))


def test_a_running_host_follows_a_rollback(r: redis.Redis, redis_url: str, key_prefix: str) -> None:
    from models.classifiers import MentionClassifier
    from stream.model_admin import rollback_model

    fresh = MentionClassifier()
    for name, model in fresh.models.items():
        registry.save(r, key_prefix, name, model, key=KEY)  # v1 of each
    trained = MentionClassifier().sentiment
    for word, label in (("lovely", "positive"), ("awful", "negative")) * 3:
        trained.learn_one({"text": f"it was {word}", "channel": "forum"}, label)
    registry.save(r, key_prefix, "sentiment", trained, key=KEY)  # v2, current
    host = ModelHost(redis_url, Keys(key_prefix), cache_dir=None, metrics_every=1, signing_key=KEY)
    m = Mention(id="t:1", channel="forum", brand="acme", author="a", text="hello", ts=parse_ts(T0))
    host.classify(m)
    assert host._clf is not None and host._clf.sentiment.n_learned == 6
    assert rollback_model(r, key_prefix, "sentiment", 1) == {"model": "sentiment", "version": 1, "previous": 2}
    host.classify(m)  # the next metrics write looks at the registry
    assert host._clf.sentiment.n_learned == 0 and host._learning is not None
    assert host._learning.sentiment is host._clf.sentiment
    host.classify(m)
    assert host._clf.sentiment.n_learned == 0  # followed once, not reloaded again
