"""The models inside the flow: classify every mention, learn from feedback, keep prequential metrics, and
keep serving the last good version of a model whose prequential error drifted up.

The flow's ``models`` step (:class:`ModelLogic`, one key) holds one :class:`ModelHost`: the three text
models (``models.MentionClassifier``), starting from the newest Redis checkpoint (else warm-started from
the shipped data). Mentions and labels reach it in input order. Feedback names a mention id: its text and
the predictions made for it come from the step's memory of recent mentions, else from Redis (written by the
sink), never re-sent. Accepted feedback is learned and scored (prequential), and the models are
checkpointed to Redis every ``checkpoint_every`` labels.

Results are a function of the input: the host's state (prediction counts, prequential metrics, drift
guards, which version each learning model was last saved as and the labels it learned since) is the step's
recovery state, so a flow killed and resumed classifies, learns, checkpoints (with the same version
numbers and event-time dates) and writes the same metrics as one that never stopped. Metrics are written
at points of the input (every ``metrics_every`` mentions, every label, the end), never on a timer.

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
import pickle
import secrets
import threading
import time
import weakref
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import redis
from bytewax.operators import StatefulBatchLogic

from models import MentionClassifier, PrequentialMetrics, registry
from models.classifiers import TEXT_MODELS
from models.prequential import DriftGuard
from stream.keys import Keys
from stream.redisconn import with_retry
from stream.schema import Alert, DeadLetter, Enriched, Feedback, Mention
from stream.settings import Settings

__all__ = ["ModelHost", "ModelLogic", "features_of", "flush_all", "model_signing_key"]

#: Every model host of this process, so the end of a run can write their final metrics.
_HOSTS: weakref.WeakSet[ModelHost] = weakref.WeakSet()

log = logging.getLogger(__name__)

#: Mention ids of recent mistakes kept per model, for the samples of a drift alert.
_SAMPLES = 5
#: The reason the flow records with its own rollbacks to the last good version.
_DRIFT = "drift"
#: How long (wall seconds) the state a run started from is kept for a restart or a replay of the same run.
_START_TTL_S = 30 * 86400


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
    """Models and their bookkeeping for one flow; created lazily on first use.

    Everything the models' results depend on is state of the flow (:meth:`state`): prediction counts and
    prequential metrics, drift guards, the version each learning model was last saved as and the labels
    it learned since, the version numbers it handed out. A resumed flow restores it (``resume``), so it
    classifies, learns, checkpoints and writes exactly what a flow that never stopped does. Writes happen
    at points of the input, never of the clock: the metrics every ``metrics_every`` mentions, after every
    label and at the end; checkpoints every ``checkpoint_every`` labels, numbered by the flow and dated
    by event time.

    >>> from stream.schema import parse_ts
    >>> host = ModelHost(redis_url=None, keys=Keys("doc:"), cache_dir=None, warm_start=False)
    >>> e = host.classify(Mention(id="t:1", channel="twitter", brand="acme", author="bob",
    ...                           text="my internet is down again, pls help", ts=parse_ts("2024-01-01T10:00:00Z")))
    >>> e.intent, e.department
    ('query', 'service')
    >>> again = ModelHost(redis_url=None, keys=Keys("doc:"), cache_dir=None, warm_start=False, resume=host.state())
    >>> again.classify(e.mention).intent, again.drift_status()["intent"]["labels"]
    ('query', 0)
    """

    def __init__(self, redis_url: str | None, keys: Keys, cache_dir: str | Path | None,
                 checkpoint_every: int = 50, metrics_every: int = 500, warm_start: bool = True,
                 signing_key: bytes | None = None, guard: DriftGuard | None = None,
                 resume: bytes | None = None, recent: int = 10_000, run_id: str | None = None) -> None:
        self.redis_url = redis_url
        self.keys = keys
        self.cache_dir = cache_dir
        self.checkpoint_every = checkpoint_every
        self.metrics_every = max(1, metrics_every)
        self.warm_start = warm_start
        self.signing_key = signing_key
        self.guard = guard
        self.recent = recent
        self.run_id = run_id
        self._resume = resume
        self._lock = threading.Lock()
        #: What classify serves; its models are the learners unless a guard pinned an older version.
        self._clf: MentionClassifier | None = None
        #: The learning copies (the same objects as served while nothing drifted).
        self._learning: MentionClassifier | None = None
        self._guards: dict[str, DriftGuard] = {}
        self._versions: dict[str, int | None] = {}  # the registry version each served model was loaded / saved as
        self._base: dict[str, int | None] = {}  # the version each learning model was loaded / last saved as
        self._since: dict[str, list[tuple[dict[str, Any], str]]] = {}  # labels it learned since
        self._latest: dict[str, int] = {}  # the highest version number of each model: the next save is one more
        self._rollbacks_seen: dict[str, str] = {}  # the last rollback (its time) of each model we acted on
        self._lineage: dict[str, list[dict[str, Any]]] = {}  # what each model was trained on before the flow
        self._mistakes: dict[str, list[str]] = {}
        self._client: redis.Redis | None = None
        self._metrics = PrequentialMetrics()
        self._n_classified = 0
        self._since_checkpoint = 0
        self._clock_ms = 0  # the newest event time seen: when checkpoints and rollbacks happened
        #: Recently classified mentions by id, for labels that follow them before the sink wrote them.
        self._recent_features: OrderedDict[str, Enriched] = OrderedDict()
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
            if self._resume is not None:
                self._restore(pickle.loads(self._resume))  # noqa: S301 - the flow's own recovery store
            elif not self._restart():
                self._start()
                self._record_start()
        assert self._clf is not None
        return self._clf

    @property
    def _start_key(self) -> str | None:
        return None if self.run_id is None else f"{self.keys.prefix}flow:models:start:{self.run_id}"

    def _record_start(self) -> None:
        """Keep the state this run started from (signed), for a restart of the same run (:meth:`_restart`)."""
        key, client = self._start_key, self.client
        if key is None or client is None or not self.signing_key:
            return
        blob = registry.seal(self._state_dict(), self.signing_key)
        with_retry(lambda: client.set(key, blob, nx=True, ex=_START_TTL_S), "model start state")

    def _restart(self) -> bool:
        """Start this run again from the state it first started from, when it has started before.

        A run killed before the flow took its first recovery snapshot starts again without one, but the
        registry and the prequential state already hold what it did before the kill; going on from them
        would learn and count it twice. The same holds for replaying the same input again (the same run
        id, see :mod:`stream.runs`): it rewrites its own results instead of adding to them.
        """
        key, client = self._start_key, self.client
        if key is None or client is None or not self.signing_key:
            return False
        blob = with_retry(lambda: client.get(key), "model start state")
        if blob is None:
            return False
        try:
            state = registry.unseal(blob, self.signing_key)
            self._restore(state)
        except registry.CheckpointRefused as exc:
            log.error("model start state at %s refused: %s; starting from the registry", key, exc)
            return False
        except Exception as exc:  # noqa: BLE001 - e.g. a version it started from is no longer kept
            log.warning("run %s cannot start again from where it first started (%s); starting from the registry",
                        self.run_id, exc)
            self._clf = self._learning = None
            self._guards.clear()
            return False
        log.info("run %s started again from the models and metrics it first started from", self.run_id)
        return True

    def _start(self) -> None:
        """A new run: the registry's current versions (else the defaults) and the saved prequential state."""
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
            elif self.client is not None:
                current = {"latest": with_retry(lambda: self.client.hget(  # type: ignore[union-attr]
                    registry.model_key(self.keys.prefix, name), "latest"), "model info")}  # noqa: B023
            self._versions[name] = self._base[name] = version
            self._since[name] = []
            self._latest[name] = int(current.get("latest") or 0)
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

    def _load_version(self, name: str, version: int | None) -> Any:
        """A fresh copy of one model: a registry version, or (``None``) the model a run starts from without one."""
        if version is None:
            if not self.warm_start:
                return MentionClassifier().model(name)
            return registry.load_default(name, cache_dir=self.cache_dir)
        client, key = self.client, self.signing_key
        if client is None or not key:
            raise RuntimeError(f"model {name!r}: version {version} cannot be loaded without Redis and a signing key")
        return with_retry(lambda: registry.load(client, self.keys.prefix, name, version, key=key), "load model")

    def state(self) -> bytes | None:
        """The host's state for the flow's recovery snapshots (pickled now: later changes do not leak in)."""
        with self._lock:
            if self._clf is None:
                return self._resume
            return pickle.dumps(self._state_dict(), protocol=pickle.HIGHEST_PROTOCOL)

    def _state_dict(self) -> dict[str, Any]:
        return {
            "metrics": self._metrics, "n_classified": self._n_classified, "clock_ms": self._clock_ms,
            "since_checkpoint": self._since_checkpoint, "dirty": self._dirty,
            "base": self._base, "since": self._since, "latest": self._latest, "versions": self._versions,
            "rollbacks_seen": self._rollbacks_seen, "lineage": self._lineage, "mistakes": self._mistakes,
            "guards": {name: guard.state() for name, guard in self._guards.items()},
        }

    def _restore(self, state: dict[str, Any]) -> None:
        """Go on from a recovery snapshot: each learning model is its saved version plus the labels since."""
        self._metrics = state["metrics"]
        for field in ("n_classified", "clock_ms", "since_checkpoint", "dirty"):
            setattr(self, f"_{field}", state[field])
        for field in ("base", "since", "latest", "versions", "rollbacks_seen", "lineage", "mistakes"):
            setattr(self, f"_{field}", state[field])
        learning = MentionClassifier(**{name: self._load_version(name, self._base[name]) for name in TEXT_MODELS})
        for name in TEXT_MODELS:
            for x, label in self._since[name]:
                learning.learn_one(name, x, label)
            self._guards[name] = DriftGuard.restore(state["guards"][name],
                                                    lambda v: self._load_version(name, v))  # noqa: B023
        self._learning = learning
        self._clf = MentionClassifier(**{name: self._guards[name].serving(learning.model(name))
                                         for name in TEXT_MODELS})
        self._resume = None
        log.info("text models resumed (%s)", ", ".join(
            f"{n} v{self._base[n] or 'default'} + {len(self._since[n])} label(s)" for n in TEXT_MODELS))

    # -- the classify step ---------------------------------------------------------------------------
    def classify(self, mention: Mention) -> Enriched:
        x = {"text": mention.text, "channel": mention.channel, "from_brand": mention.from_brand}
        with self._lock:
            out = self._classifier().classify_one(x)
            self._metrics.observe_classification(mention.channel, out)
            self._dirty = True
            self._n_classified += 1
            if mention.ts_ms > self._clock_ms:
                self._clock_ms = mention.ts_ms
            e = Enriched(mention=mention, intent=out["intent"], sentiment=out["sentiment"],
                         sentiment_score=float(out["sentiment_score"]), department=out["department"],
                         keywords=tuple(out["keywords"]))
            recent = self._recent_features
            recent[mention.id] = e
            if len(recent) > self.recent:
                recent.popitem(last=False)
            if self._n_classified % self.metrics_every == 0 and self.client is not None:
                self._write_metrics()
                self._follow_registry()
        return e

    def _write_metrics(self, only_changed: bool = True) -> None:
        assert self.client is not None
        client, prefix = self.client, self.keys.prefix
        sealed = registry.seal(self._metrics, self.signing_key) if self.signing_key else None

        def write() -> None:
            self._metrics.write(client, prefix, only_changed=only_changed)
            if sealed is not None:
                client.set(self.keys.prequential_state, sealed)

        with_retry(write, "model metrics")
        self._dirty = False

    def _restore_metrics(self) -> None:
        """Go on counting from the last saved prequential state (a new run must not reset the scores)."""
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
                raw = client.hmget(registry.model_key(self.keys.prefix, name),
                                   ["version", "rolled_back_at", "rolled_back_reason"])
            except redis.RedisError:
                return
            # Only an operator's rollbacks are followed: a version another process checkpointed must not
            # replace what this one has learned since, and the flow's own drift rollbacks (maybe written by
            # this flow before a crash, ahead of the state it resumed from) are its state's business.
            version_raw, rolled_raw, reason_raw = raw  # type: ignore[misc]
            rolled_at = rolled_raw.decode() if isinstance(rolled_raw, bytes) else ""
            if not rolled_at or rolled_at == self._rollbacks_seen.get(name) or not version_raw:
                continue
            if reason_raw == _DRIFT.encode():
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
            self._versions[name] = self._base[name] = current
            self._since[name] = []

    # -- the feedback step ---------------------------------------------------------------------------
    def learn(self, fb: Feedback) -> DeadLetter | Alert | None:
        """Learn one label; a label that cannot be used comes back as a dead letter with the reason, and a
        label that reveals (or ends) a drift comes back as a ``model_drift`` alert."""
        raw = orjson.dumps(fb.to_dict())
        key = f"feedback:{fb.mention_id}:{fb.model}:{fb.label}"
        if fb.model not in TEXT_MODELS:
            return DeadLetter(raw=raw, reason=f"feedback: unknown model {fb.model!r}; expected one of "
                              f"{list(TEXT_MODELS)}", source="feedback", key=key)
        features = self._features(fb.mention_id)
        if features is None:
            return DeadLetter(raw=raw, reason=f"feedback: unknown mention id {fb.mention_id!r}",
                              source="feedback", key=key)
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
            self._since[fb.model].append((x, fb.label))
            ts = features.get("ts")
            if isinstance(ts, int) and ts > self._clock_ms:
                self._clock_ms = ts
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
                at = self._event_time()
                try:
                    registry.rollback(self.client, self.keys.prefix, name, version, reason=_DRIFT, at=at)
                    self._versions[name] = version
                    self._rollbacks_seen[name] = at
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

    def _event_time(self) -> str:
        """The flow's clock for what it records: the newest event time it has seen."""
        return datetime.fromtimestamp(self._clock_ms / 1000, UTC).isoformat()

    def _features(self, mention_id: str) -> dict[str, Any] | None:
        """The model input and predictions of a mention: a recent one from memory (the sink may not have
        written it yet), else from Redis, newest hours first, in one round trip."""
        with self._lock:
            recent = self._recent_features.get(mention_id)
        if recent is not None:
            return orjson.loads(features_of(recent))
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

        stored = with_retry(read, "model features")
        return None if stored is None else orjson.loads(stored)

    def _save(self, name: str, model: Any, make_current: bool) -> int | None:
        """Save the learning model ``name`` as the next version (numbered by the flow: a replay rewrites it)."""
        if self.client is None or not self.signing_key:
            return None
        snap = self._metrics.snapshot()
        guard = self._guards[name]
        provenance = {"source": "flow feedback", "labels": guard.n_labels, "drift": guard.status(),
                      "started_from": f"v{self._versions[name]}" if self._versions.get(name) else "default",
                      "trained_on": self._lineage.get(name, [])}
        client, key = self.client, self.signing_key
        next_version, saved_at = self._latest.get(name, 0) + 1, self._event_time()
        version = with_retry(lambda: registry.save(client, self.keys.prefix, name, model, snap.get(name, {}).get("all"),
                                                   key=key, provenance=provenance, make_current=make_current,
                                                   version=next_version, saved_at=saved_at), "save model")
        self._latest[name] = version
        self._base[name] = version
        self._since[name] = []
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
        with self._lock:
            if self._dirty and self._clf is not None and self.client is not None:
                self._write_metrics(only_changed=False)

    def drift_status(self) -> dict[str, dict[str, Any]]:
        """Per text model: labels seen, drifts, whether an older version is served, and errors."""
        self._classifier()
        return {name: guard.status() for name, guard in self._guards.items()}


class ModelLogic(StatefulBatchLogic[Any, Any, Any]):
    """The flow's ``models`` step (one key): mentions in, :class:`Enriched` out; labels in, a dead letter
    (``("dlq", DeadLetter)``) or a drift alert (``("alert", Alert)``) out, in input order. Its snapshot
    is the host's :meth:`ModelHost.state`."""

    def __init__(self, host: ModelHost) -> None:
        self.host = host

    def on_batch(self, values: list[Mention | Feedback]) -> tuple[list[Any], bool]:
        out: list[Any] = []
        host = self.host
        for value in values:
            if isinstance(value, Mention):
                out.append(host.classify(value))
                continue
            outcome = host.learn(value)
            if outcome is not None:
                out.append(("dlq", outcome) if isinstance(outcome, DeadLetter) else ("alert", outcome))
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Any], bool]:
        self.host.flush()  # the final metrics, at the end of the input
        return [], StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes | None:
        return self.host.state()


def _fresh_guard(template: DriftGuard) -> DriftGuard:
    return DriftGuard(detector=template.detector, min_labels=template.min_labels, window=template.window,
                      snapshots=template.snapshots, min_recovery=template.min_recovery)


def features_of(e: Enriched) -> bytes:
    """What feedback on this mention needs later: the model input, the predictions made and the event time."""
    m = e.mention
    return orjson.dumps({"text": m.text, "channel": m.channel, "from_brand": m.from_brand, "intent": e.intent,
                         "sentiment": e.sentiment, "department": e.department, "ts": m.ts_ms})
