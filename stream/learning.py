"""The models inside the flow: classify every mention, learn from feedback, keep prequential metrics.

One :class:`ModelHost` per process holds the three text models (``models.MentionClassifier``), starting
from the newest Redis checkpoint (else warm-started from the shipped data). Worker threads of the same
process share it behind a lock. Feedback names a mention id: its text and the predictions made for it
are looked up in Redis (written by the sink), never re-sent. Accepted feedback is learned and scored
(prequential), and the models are checkpointed to Redis every ``checkpoint_every`` labels.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
import weakref
from pathlib import Path

import orjson
import redis

from models import MentionClassifier, PrequentialMetrics, registry
from models.classifiers import TEXT_MODELS
from stream.keys import Keys
from stream.schema import DeadLetter, Enriched, Feedback, Mention

__all__ = ["ModelHost", "features_of", "flush_all"]

#: Every model host of this process, so the end of a run can write their final metrics.
_HOSTS: weakref.WeakSet[ModelHost] = weakref.WeakSet()


def flush_all() -> None:
    """Write the final prequential metrics of every model host of this process (end of a run)."""
    for host in list(_HOSTS):
        host.flush()

log = logging.getLogger(__name__)


class ModelHost:
    """Models and their bookkeeping for one process; created lazily on first use.

    >>> from stream.schema import parse_ts
    >>> host = ModelHost(redis_url=None, keys=Keys("doc:"), cache_dir=None, warm_start=False)
    >>> e = host.classify(Mention(id="t:1", channel="twitter", brand="acme", author="bob",
    ...                           text="my internet is down again, pls help", ts=parse_ts(0)))
    >>> e.intent, e.department
    ('query', 'service')
    """

    def __init__(self, redis_url: str | None, keys: Keys, cache_dir: str | Path | None,
                 checkpoint_every: int = 50, metrics_every_s: float = 2.0, warm_start: bool = True) -> None:
        self.redis_url = redis_url
        self.keys = keys
        self.cache_dir = cache_dir
        self.checkpoint_every = checkpoint_every
        self.metrics_every_s = metrics_every_s
        self.warm_start = warm_start
        self._lock = threading.Lock()
        self._clf: MentionClassifier | None = None
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
                self._clf = MentionClassifier()
            else:
                prefix = self.keys.prefix
                models = {name: registry.load_current(self.client, prefix, name, cache_dir=self.cache_dir)
                          for name in TEXT_MODELS}
                self._clf = MentionClassifier(**models)
                log.info("text models ready (%s)", ", ".join(
                    f"{n} v{(registry.info(self.client, prefix, n) or {}).get('version', 'default')}"
                    for n in TEXT_MODELS) if self.client is not None else "defaults")
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

    def _write_metrics(self, only_changed: bool = True) -> None:
        assert self.client is not None
        try:
            self._metrics.write(self.client, self.keys.prefix, only_changed=only_changed)
            self.client.set(self.keys.prequential_state, pickle.dumps(self._metrics))
            self._dirty = False
        except redis.RedisError as exc:  # metrics are best effort; the next write catches up
            log.warning("could not write model metrics: %s", exc)

    def _restore_metrics(self) -> None:
        """Go on counting from the last saved prequential state (a restart must not reset the scores)."""
        if self.client is None:
            return
        blob = self.client.get(self.keys.prequential_state)
        if not isinstance(blob, bytes):
            return
        try:
            restored = pickle.loads(blob)  # noqa: S301 - written by this flow into the operator's own Redis
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            log.warning("ignoring unreadable prequential state: %s", exc)
            return
        if isinstance(restored, PrequentialMetrics):
            self._metrics = restored

    # -- the feedback step ---------------------------------------------------------------------------
    def learn(self, fb: Feedback) -> DeadLetter | None:
        """Learn one label; a label that cannot be used comes back as a dead letter with the reason."""
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
            clf = self._classifier()
            try:
                clf.learn_one(fb.model, x, fb.label)
            except ValueError as exc:
                return DeadLetter(raw=raw, reason=f"feedback: {exc}", source="feedback", key=key)
            self._metrics.observe_label(fb.model, features["channel"], fb.label, features[fb.model])
            self._dirty = True
            self._since_checkpoint += 1
            if self._since_checkpoint >= self.checkpoint_every:
                self.checkpoint()
            elif self.client is not None:
                self._write_metrics()  # labels are rare and are what the scores are about
        return None

    def _features(self, mention_id: str) -> bytes | None:
        """The stored model input of a mention: newest hours first, one round trip."""
        client = self.client
        if client is None:
            return None
        hours: list[bytes] = client.zrevrange(self.keys.features_hours, 0, -1)  # type: ignore[assignment]
        if not hours:
            return None
        pipe = client.pipeline(transaction=False)
        for hour in hours:
            pipe.hget(self.keys.features(hour.decode()), mention_id)
        return next((found for found in pipe.execute() if found is not None), None)

    def checkpoint(self) -> None:
        """Save the three models to Redis as new versions, with their prequential metrics."""
        if self._clf is None or self.client is None:
            return
        snap = self._metrics.snapshot()
        for name, model in self._clf.models.items():
            version = registry.save(self.client, self.keys.prefix, name, model,
                                    snap.get(name, {}).get("all"))
            log.info("checkpointed model %s as version %d", name, version)
        self._write_metrics(only_changed=False)
        self._since_checkpoint = 0

    def flush(self) -> None:
        """Write the metrics now if anything changed since the last write (at the end of a run)."""
        if self._dirty and self._clf is not None and self.client is not None:
            self._write_metrics(only_changed=False)


def features_of(e: Enriched) -> bytes:
    """What feedback on this mention needs later: the model input and the predictions made."""
    m = e.mention
    return orjson.dumps({"text": m.text, "channel": m.channel, "from_brand": m.from_brand, "intent": e.intent,
                         "sentiment": e.sentiment, "department": e.department})
