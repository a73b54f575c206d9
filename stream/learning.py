"""The models inside the flow: classify every mention, learn from feedback, keep prequential metrics, and
keep serving the last good version of a model whose prequential error drifted up.

One :class:`ModelHost` per process holds the three text models (``models.MentionClassifier``), starting
from the newest Redis checkpoint (else warm-started from the shipped data). Worker threads of the same
process share it behind a lock. Feedback names a mention id: its text and the predictions made for it
are looked up in Redis (written by the sink), never re-sent. Accepted feedback is learned and scored
(prequential), and the models are checkpointed to Redis every ``checkpoint_every`` labels.

Drift: each text model has a :class:`models.prequential.DriftGuard` fed with the learning model's
prequential errors (its prediction before it learns each label). When River's drift detector fires and
the error went up, the host logs it, raises a ``model_drift`` alert, serves the newest checkpoint taken
before the change (and points the registry back at it), while the learning copy goes on learning; when
the learning copy is again at least as good as the served version on the labels since, it is served
again, checkpointed as the current version, and the alert is resolved.

Checkpoints and the prequential state are signed (HMAC-SHA256, :func:`model_signing_key`): a blob
whose signature does not match is refused with one log line, and nothing in it runs.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
import weakref
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import redis

from models import MentionClassifier, PrequentialMetrics, registry
from models.classifiers import TEXT_MODELS
from models.prequential import DriftGuard
from stream.keys import Keys
from stream.redisconn import with_retry
from stream.schema import Alert, DeadLetter, Enriched, Feedback, Mention
from stream.settings import Settings

__all__ = ["ModelHost", "features_of", "flush_all", "model_signing_key"]

#: Every model host of this process, so the end of a run can write their final metrics.
_HOSTS: weakref.WeakSet[ModelHost] = weakref.WeakSet()

log = logging.getLogger(__name__)

#: Mention ids of recent mistakes kept per model, for the samples of a drift alert.
_SAMPLES = 5


def flush_all() -> None:
    """Write the final prequential metrics of every model host of this process (end of a run)."""
    for host in list(_HOSTS):
        host.flush()


def model_signing_key(settings: Settings) -> bytes:
    """The key that signs model checkpoints: ``PULSE_MODEL_KEY``, else one kept in ``{data_dir}/model.key``.

    The file is created once with a random key (readable by its owner only), so one machine just works;
    processes on several machines must share ``PULSE_MODEL_KEY``.

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> first = model_signing_key(Settings(data_dir=folder))
    >>> first == model_signing_key(Settings(data_dir=folder)), len(first)
    (True, 64)
    >>> model_signing_key(Settings(model_key="shared secret"))
    b'shared secret'
    """
    if settings.model_key:
        return settings.model_key.encode()
    path = Path(settings.data_dir) / "model.key"
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return _read_key(path)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    log.info("created a model signing key in %s (set PULSE_MODEL_KEY to share one across machines)", path)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    for _ in range(50):  # a key being written by another process is empty for a moment
        key = path.read_text(encoding="utf-8").strip()
        if key:
            return key.encode()
        time.sleep(0.01)
    raise ValueError(f"model signing key file {path} is empty")


class ModelHost:
    """Models and their bookkeeping for one process; created lazily on first use.

    >>> from stream.schema import parse_ts
    >>> host = ModelHost(redis_url=None, keys=Keys("doc:"), cache_dir=None, warm_start=False)
    >>> e = host.classify(Mention(id="t:1", channel="twitter", brand="acme", author="bob",
    ...                           text="my internet is down again, pls help", ts=parse_ts("2024-01-01T10:00:00Z")))
    >>> e.intent, e.department
    ('query', 'service')
    """

    def __init__(self, redis_url: str | None, keys: Keys, cache_dir: str | Path | None,
                 checkpoint_every: int = 50, metrics_every_s: float = 2.0, warm_start: bool = True,
                 signing_key: bytes | None = None, guard: DriftGuard | None = None) -> None:
        self.redis_url = redis_url
        self.keys = keys
        self.cache_dir = cache_dir
        self.checkpoint_every = checkpoint_every
        self.metrics_every_s = metrics_every_s
        self.warm_start = warm_start
        self.signing_key = signing_key
        self.guard = guard
        self._lock = threading.Lock()
        #: What classify serves; its models are the learners unless a guard pinned an older version.
        self._clf: MentionClassifier | None = None
        #: The learning copies (the same objects as served while nothing drifted).
        self._learning: MentionClassifier | None = None
        self._guards: dict[str, DriftGuard] = {}
        self._versions: dict[str, int | None] = {}  # the registry version each model was loaded from / saved as
        self._rollbacks_seen: dict[str, str] = {}  # the last rollback (its time) of each model we acted on
        self._lineage: dict[str, list[dict[str, Any]]] = {}  # what each model was trained on before the flow
        self._mistakes: dict[str, list[str]] = {}
        self._client: redis.Redis | None = None
        self._metrics = PrequentialMetrics()
        self._metrics_due = 0.0
        self._since_checkpoint = 0
        #: Something was observed since the metrics were last written.
        self._dirty = False
        _HOSTS.add(self)

    # -- set-up --------------------------------------------------------------------------------------
    @property
    def client(self) -> redis.Redis | None:
        if self._client is None and self.redis_url is not None:
            self._client = redis.Redis.from_url(self.redis_url)
        return self._client

    def _classifier(self) -> MentionClassifier:
        if self._clf is None:
            self._restore_metrics()
            if not self.warm_start:
                models: dict[str, Any] = dict(MentionClassifier().models)
            else:
                prefix = self.keys.prefix
                models = with_retry(lambda: {name: registry.load_current(self.client, prefix, name, key=self.signing_key,
                                                                         cache_dir=self.cache_dir)
                                             for name in TEXT_MODELS}, "load models")
            for name in TEXT_MODELS:
                version = None
                current: dict[str, Any] = {}
                if self.client is not None and self.warm_start:
                    current = with_retry(lambda: registry.info(self.client, self.keys.prefix, name) or {},  # noqa: B023
                                         "model info")
                    version = current.get("version")
                    self._rollbacks_seen[name] = current.get("rolled_back_at", "")
                self._versions[name] = version
                if version is not None:
                    self._lineage[name] = list((current.get("provenance") or {}).get("trained_on") or [])
                elif self.warm_start and int(getattr(models[name], "n_learned", 0) or 0) > 0:
                    self._lineage[name] = [{"default": True, "files": list(registry.default_data_files(name))}]
                guard = DriftGuard() if self.guard is None else _fresh_guard(self.guard)
                guard.remember(models[name], version)
                self._guards[name] = guard
            self._learning = MentionClassifier(**models)
            self._clf = MentionClassifier(**models)
            if self.warm_start:
                log.info("text models ready (%s)", ", ".join(
                    f"{n} v{self._versions[n] or 'default'}" for n in TEXT_MODELS))
        return self._clf

    # -- the classify step ---------------------------------------------------------------------------
    def classify(self, mention: Mention) -> Enriched:
        x = {"text": mention.text, "channel": mention.channel, "from_brand": mention.from_brand}
        with self._lock:
            out = self._classifier().classify_one(x)
            self._metrics.observe_classification(mention.channel, out)
            self._dirty = True
            self._maybe_write_metrics()
        return Enriched(mention=mention, intent=out["intent"], sentiment=out["sentiment"],
                        sentiment_score=float(out["sentiment_score"]), department=out["department"],
                        keywords=tuple(out["keywords"]))

    def _maybe_write_metrics(self) -> None:
        now = time.monotonic()
        if now >= self._metrics_due and self.client is not None:
            self._metrics_due = now + self.metrics_every_s
            self._write_metrics()
            self._follow_registry()

    def _write_metrics(self, only_changed: bool = True) -> None:
        assert self.client is not None
        try:
            self._metrics.write(self.client, self.keys.prefix, only_changed=only_changed)
            if self.signing_key:
                self.client.set(self.keys.prequential_state, registry.seal(self._metrics, self.signing_key))
            self._dirty = False
        except redis.RedisError as exc:  # metrics are best effort; the next write catches up
            log.warning("could not write model metrics: %s", exc)

    def _restore_metrics(self) -> None:
        """Go on counting from the last saved prequential state (a restart must not reset the scores)."""
        if self.client is None or not self.signing_key:
            return
        blob = self.client.get(self.keys.prequential_state)
        if not isinstance(blob, bytes):
            return
        try:
            restored = registry.unseal(blob, self.signing_key)
        except registry.CheckpointRefused as exc:
            log.error("prequential state at %s refused: %s; counting from zero", self.keys.prequential_state, exc)
            return
        except Exception as exc:  # noqa: BLE001 - a signed but unreadable state (another version) is skipped
            log.warning("ignoring unreadable prequential state: %s", exc)
            return
        if isinstance(restored, PrequentialMetrics):
            self._metrics = restored

    def _follow_registry(self) -> None:
        """Serve a version an operator rolled back to (``pulse models rollback``) since we last looked."""
        client = self.client
        if client is None or self._clf is None or self._learning is None or not self.warm_start:
            return
        for name in TEXT_MODELS:
            try:
                raw = client.hmget(registry.model_key(self.keys.prefix, name), ["version", "rolled_back_at"])
            except redis.RedisError:
                return
            # Only rollbacks are followed: a version another process checkpointed must not replace what
            # this one has learned since.
            version_raw, rolled_raw = raw  # type: ignore[misc]
            rolled_at = rolled_raw.decode() if isinstance(rolled_raw, bytes) else ""
            if not rolled_at or rolled_at == self._rollbacks_seen.get(name) or not version_raw:
                continue
            self._rollbacks_seen[name] = rolled_at
            current = int(version_raw)
            if current == self._versions.get(name):
                continue
            try:
                model = registry.load(client, self.keys.prefix, name, current, key=self.signing_key or b"")
            except (registry.CheckpointRefused, LookupError, ValueError) as exc:
                log.error("model %s: version %s made current elsewhere is not served: %s", name, current, exc)
                self._versions[name] = current
                continue
            if model is None:
                continue
            self._learning.replace(name, model)
            self._clf.replace(name, model)
            guard = DriftGuard() if self.guard is None else _fresh_guard(self.guard)
            guard.remember(model, current)
            self._guards[name] = guard
            log.warning("model %s: now serving version %s (made current in the registry, e.g. a rollback)",
                        name, current)
            self._versions[name] = current

    # -- the feedback step ---------------------------------------------------------------------------
    def learn(self, fb: Feedback) -> DeadLetter | Alert | None:
        """Learn one label; a label that cannot be used comes back as a dead letter with the reason, and a
        label that reveals (or ends) a drift comes back as a ``model_drift`` alert."""
        raw = orjson.dumps(fb.to_dict())
        key = f"feedback:{fb.mention_id}:{fb.model}:{fb.label}"
        if fb.model not in TEXT_MODELS:
            return DeadLetter(raw=raw, reason=f"feedback: unknown model {fb.model!r}; expected one of "
                              f"{list(TEXT_MODELS)}", source="feedback", key=key)
        stored = self._features(fb.mention_id)
        if stored is None:
            return DeadLetter(raw=raw, reason=f"feedback: unknown mention id {fb.mention_id!r}",
                              source="feedback", key=key)
        features = orjson.loads(stored)
        x = {"text": features["text"], "channel": features["channel"], "from_brand": features["from_brand"]}
        with self._lock:
            served = self._classifier()
            learning = self._learning
            assert learning is not None
            learner = learning.model(fb.model)
            guard = self._guards[fb.model]
            try:
                learner_pred = learner.predict_one(x)
                served_pred = served.model(fb.model).predict_one(x) if guard.pinned else learner_pred
                learning.learn_one(fb.model, x, fb.label)
            except ValueError as exc:
                return DeadLetter(raw=raw, reason=f"feedback: {exc}", source="feedback", key=key)
            self._metrics.observe_label(fb.model, features["channel"], fb.label, features[fb.model])
            if learner_pred != fb.label:
                samples = self._mistakes.setdefault(fb.model, [])
                samples.append(fb.mention_id)
                del samples[:-_SAMPLES]
            event = guard.observe(learner_pred != fb.label, served_pred != fb.label if guard.pinned else None)
            alert = self._on_guard_event(fb.model, event, features) if event else None
            self._dirty = True
            self._since_checkpoint += 1
            if self._since_checkpoint >= self.checkpoint_every:
                self.checkpoint()
            elif self.client is not None:
                self._write_metrics()  # labels are rare and are what the scores are about
        return alert

    def _on_guard_event(self, name: str, event: str, features: dict[str, Any]) -> Alert:
        assert self._clf is not None and self._learning is not None
        guard = self._guards[name]
        st = guard.status()
        onset = st["drift_at"]
        alert_id = f"model_drift:{name}:{onset}"
        ts_ms = features.get("ts")
        when = datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat() if isinstance(ts_ms, int | float) else ""
        before, after = st["error_before"] or 0.0, st["error_after"] or 0.0
        if event == "drift":
            pinned = guard.pinned_model
            assert pinned is not None
            self._clf.replace(name, pinned)
            version = guard.pinned_version
            log.warning("model %s: prequential error drifted up from %.3f to %.3f around label %s; serving "
                        "version %s (the last good one) while the learning copy catches up", name, before, after,
                        onset, version if version is not None else "default")
            if version is not None and self.client is not None:
                try:
                    registry.rollback(self.client, self.keys.prefix, name, version, reason="drift")
                    self._versions[name] = version
                    self._rollbacks_seen[name] = (registry.info(self.client, self.keys.prefix, name) or {}).get(
                        "rolled_back_at", "")
                except (LookupError, redis.RedisError) as exc:
                    log.warning("model %s: could not point the registry back at version %s: %s", name, version, exc)
            message = (f"open: {name} error rose from {before:.0%} to {after:.0%}; serving version "
                       f"{version if version is not None else 'default'} until the learning copy recovers")
            return Alert(id=alert_id, kind="model_drift", brand="", channel=None, topic=name, window_start=when,
                         observed=round(after, 4), expected=round(before, 4), score=round(min(1.0, after - before), 4),
                         severity="high" if after - before >= 0.25 else "medium",
                         sample_ids=tuple(self._mistakes.get(name, ())), message=message)
        learner = self._learning.model(name)
        self._clf.replace(name, learner)
        log.warning("model %s: the learning copy recovered (error %.3f over the labels since the drift); "
                    "serving it again", name, after)
        version = self._save(name, learner, make_current=True)
        message = f"resolved: {name} learning copy recovered (error {after:.0%}); serving version {version}"
        return Alert(id=alert_id, kind="model_drift", brand="", channel=None, topic=name, window_start=when,
                     observed=round(after, 4), expected=round(before, 4), score=0.0, severity="low",
                     message=message)

    def _features(self, mention_id: str) -> bytes | None:
        """The stored model input of a mention: newest hours first, one round trip."""
        client = self.client
        if client is None:
            return None
        def read() -> bytes | None:
            hours: list[bytes] = client.zrevrange(self.keys.features_hours, 0, -1)  # type: ignore[assignment]
            if not hours:
                return None
            pipe = client.pipeline(transaction=False)
            for hour in hours:
                pipe.hget(self.keys.features(hour.decode()), mention_id)
            return next((found for found in pipe.execute() if found is not None), None)

        return with_retry(read, "model features")

    def _save(self, name: str, model: Any, make_current: bool) -> int | None:
        if self.client is None or not self.signing_key:
            return None
        snap = self._metrics.snapshot()
        guard = self._guards[name]
        provenance = {"source": "flow feedback", "labels": guard.n_labels, "drift": guard.status(),
                      "started_from": f"v{self._versions[name]}" if self._versions.get(name) else "default",
                      "trained_on": self._lineage.get(name, [])}
        client, key = self.client, self.signing_key
        version = with_retry(lambda: registry.save(client, self.keys.prefix, name, model, snap.get(name, {}).get("all"),
                                                   key=key, provenance=provenance,
                                                   make_current=make_current), "save model")
        if make_current:
            self._versions[name] = version
        return version

    def checkpoint(self) -> None:
        """Save the three learning models to Redis as new versions, with their prequential metrics.

        A model whose guard serves an older version is saved as a candidate (kept, not current).
        """
        if self._learning is None or self.client is None:
            return
        for name, model in self._learning.models.items():
            guard = self._guards[name]
            version = self._save(name, model, make_current=not guard.pinned)
            if version is None:
                continue
            guard.remember(model, version)
            log.info("checkpointed model %s as version %d%s", name, version,
                     " (a candidate: an older version is served after a drift)" if guard.pinned else "")
        self._write_metrics(only_changed=False)
        self._since_checkpoint = 0

    def flush(self) -> None:
        """Write the metrics now if anything changed since the last write (at the end of a run)."""
        if self._dirty and self._clf is not None and self.client is not None:
            self._write_metrics(only_changed=False)

    def drift_status(self) -> dict[str, dict[str, Any]]:
        """Per text model: labels seen, drifts, whether an older version is served, and errors."""
        return {name: guard.status() for name, guard in self._guards.items()}


def _fresh_guard(template: DriftGuard) -> DriftGuard:
    return DriftGuard(detector=template.detector, min_labels=template.min_labels, window=template.window,
                      snapshots=template.snapshots, min_recovery=template.min_recovery)


def features_of(e: Enriched) -> bytes:
    """What feedback on this mention needs later: the model input, the predictions made and the event time."""
    m = e.mention
    return orjson.dumps({"text": m.text, "channel": m.channel, "from_brand": m.from_brand, "intent": e.intent,
                         "sentiment": e.sentiment, "department": e.department, "ts": m.ts_ms})
