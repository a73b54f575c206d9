"""Model registry: default models warm-started from the shipped data, and versioned checkpoints in Redis.

Defaults: :func:`load_default` builds a named model and warm-starts it from ``../shared/data`` on first
use, then keeps the result in a local cache file (``.pulse/models/<name>-<fingerprint>.pkl``) so the next
start takes milliseconds; the fingerprint covers the model code, the taxonomies, the data files and the
library versions, so a change to any of them rebuilds. Other model modules add their own defaults with
:func:`register_default`.

Checkpoints (this module owns these Redis keys; every name starts with the caller's prefix):

- ``{prefix}model:{name}`` (hash): ``version`` (the current one), ``latest``, ``class``, ``n_learned``,
  ``class_counts`` and ``metrics`` (JSON), ``saved_at``, ``checksum``;
- ``{prefix}model:{name}:v{version}`` (string): the zlib-compressed pickle of that version;
- ``{prefix}model:{name}:history`` (hash): version -> JSON metadata of every kept version;
- ``{prefix}model:{name}:metrics:{channel}`` (hash): prequential metrics (:mod:`models.prequential`);
- ``{prefix}models`` (set): the names of all checkpointed models.

Checkpoints are pickles: load them only from a Redis you trust (the checksum catches corruption, not
tampering).

>>> model = load_default("department")
>>> type(model).__name__
'DepartmentClassifier'
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pickle
import platform
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import river

from models.corpora import SENTIMENT_SETS
from models.department import DepartmentClassifier
from models.intent import IntentClassifier, warm_start_intent
from models.sentiment import SentimentClassifier, warm_start_sentiment
from models.text import TAXONOMY_DIR

__all__ = [
    "DEFAULT_CACHE_DIR",
    "DEFAULT_DATA_DIR",
    "DefaultSpec",
    "default_names",
    "build_default",
    "history_key",
    "info",
    "list_models",
    "load",
    "load_current",
    "load_default",
    "metrics_key",
    "model_key",
    "models_key",
    "new_model",
    "register_default",
    "rollback",
    "save",
    "version_key",
]

logger = logging.getLogger(__name__)

_PACKAGE_DIR = Path(__file__).resolve().parent
#: ``../shared/data`` next to the project folder: where the public data sets live.
DEFAULT_DATA_DIR = _PACKAGE_DIR.parent.parent / "shared" / "data"
#: Warm-started defaults are cached here (relative to the working directory).
DEFAULT_CACHE_DIR = Path(".pulse") / "models"
#: Checkpoint versions kept per model (older ones are deleted on save; the current one never is).
DEFAULT_KEEP = 10


@dataclass(frozen=True)
class DefaultSpec:
    """How to build a default model: an untrained model, then an optional warm start from the data.

    ``sources`` are the modules whose code decides the model (a change to one invalidates the cache).

    >>> spec = DefaultSpec("intent", IntentClassifier, sources=("models.intent",))
    >>> spec.build().classes
    ('query', 'comment')
    """

    name: str
    build: Callable[[], Any]
    warm_start: Callable[[Any, Path], int] | None = None
    data_files: tuple[str, ...] = ()
    version: str = "1"
    sources: tuple[str, ...] = ()


_DEFAULTS: dict[str, DefaultSpec] = {}


def register_default(
    name: str,
    build: Callable[[], Any],
    warm_start: Callable[[Any, Path], int] | None = None,
    data_files: tuple[str, ...] = (),
    version: str = "1",
    sources: tuple[str, ...] | None = None,
) -> None:
    """Declare a default model: ``build()`` makes it untrained; ``warm_start(model, data_dir)`` teaches it.

    ``data_files`` (relative to the data folder) are the files the warm start reads: a change to them
    invalidates the cache, and when one is missing the model is returned untrained with a warning.
    ``sources`` (module names; default: the module defining ``build``) are hashed into the cache key too.
    """
    if sources is None:
        sources = (getattr(build, "__module__", "") or "models",)
    _DEFAULTS[name] = DefaultSpec(name, build, warm_start, tuple(data_files), version, tuple(sources))


def default_names() -> tuple[str, ...]:
    """Names :func:`load_default` knows.

    >>> default_names()[:3]
    ('intent', 'sentiment', 'department')
    """
    return tuple(_DEFAULTS)


def _spec(name: str) -> DefaultSpec:
    spec = _DEFAULTS.get(name)
    if spec is None:
        raise ValueError(f"unknown model {name!r}; expected one of {list(_DEFAULTS)}")
    return spec


def new_model(name: str) -> Any:
    """An untrained model of a registered name (its prior alone, for the text models).

    >>> new_model("intent").n_learned
    0
    """
    return _spec(name).build()


def build_default(name: str, data_dir: Path | str | None = None) -> tuple[Any, int]:
    """Build and warm-start a default model without any cache; returns ``(model, examples learned)``."""
    spec = _spec(name)
    model = spec.build()
    if spec.warm_start is None:
        return model, 0
    folder = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    missing = [f for f in spec.data_files if not (folder / f).is_file()]
    if missing:
        logger.warning("model %s starts untrained: data file(s) %s missing under %s", name, missing, folder)
        return model, 0
    started = time.perf_counter()
    n = spec.warm_start(model, folder)
    logger.info("model %s warm-started on %d examples in %.1f s", name, n, time.perf_counter() - started)
    return model, n


def _fingerprint(spec: DefaultSpec, folder: Path) -> str:
    h = hashlib.sha256()
    h.update(f"{spec.name}|{spec.version}|{river.__version__}|{platform.python_version()}".encode())
    paths = []
    for module in spec.sources:
        found = importlib.util.find_spec(module)
        if found is not None and found.origin and Path(found.origin).is_file():
            paths.append(Path(found.origin))
    for path in paths + sorted(TAXONOMY_DIR.glob("*.toml")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    for rel in spec.data_files:
        path = folder / rel
        if path.is_file():
            st = path.stat()
            h.update(f"{rel}|{st.st_size}|{st.st_mtime_ns}".encode())
        else:
            h.update(f"{rel}|missing".encode())
    return h.hexdigest()[:16]


def load_default(
    name: str,
    *,
    data_dir: Path | str | None = None,
    cache_dir: Path | str | None = None,
    use_cache: bool = True,
) -> Any:
    """A default model, warm-started from the shipped data; cached on disk after the first build.

    Each call returns a fresh object (the caller may train it). An unreadable cache file is rebuilt.
    """
    spec = _spec(name)
    folder = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    if not use_cache or spec.warm_start is None:
        return build_default(name, folder)[0]
    cache = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    path = cache / f"{name}-{_fingerprint(spec, folder)}.pkl"
    if path.is_file():
        try:
            with open(path, "rb") as fh:
                return pickle.load(fh)
        except Exception as exc:  # a truncated or stale cache file is rebuilt, never fatal
            logger.warning("ignoring unreadable model cache %s: %s", path, exc)
    model, n = build_default(name, folder)
    if n:
        try:
            cache.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache, prefix=f".{name}-", suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(model, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
            for old in cache.glob(f"{name}-*.pkl"):
                if old != path:
                    old.unlink(missing_ok=True)
        except OSError as exc:
            logger.warning("could not cache model %s in %s: %s", name, cache, exc)
    return model


# -- Redis checkpoints ---------------------------------------------------------------------------


def model_key(prefix: str, name: str) -> str:
    """The hash describing a model's current checkpoint.

    >>> model_key("pulse:", "sentiment")
    'pulse:model:sentiment'
    """
    return f"{prefix}model:{name}"


def version_key(prefix: str, name: str, version: int) -> str:
    """The blob of one checkpoint version."""
    return f"{prefix}model:{name}:v{int(version)}"


def history_key(prefix: str, name: str) -> str:
    """The hash of kept versions (version -> JSON metadata)."""
    return f"{prefix}model:{name}:history"


def metrics_key(prefix: str, name: str, channel: str) -> str:
    """The hash of a model's prequential metrics on one channel (``all`` for every channel)."""
    return f"{prefix}model:{name}:metrics:{channel}"


def models_key(prefix: str) -> str:
    """The set of checkpointed model names."""
    return f"{prefix}models"


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def save(
    client: Any,
    prefix: str,
    name: str,
    model: Any,
    metrics: dict[str, Any] | None = None,
    *,
    keep: int = DEFAULT_KEEP,
) -> int:
    """Checkpoint ``model`` as a new version of ``name``, make it current, and return the version.

    The blob is written before the pointer moves, so a crash in between leaves the previous version
    current. Versions beyond the newest ``keep`` are deleted.
    """
    if not name or ":" in name:
        raise ValueError(f"model name must be non-empty without ':', got {name!r}")
    blob = zlib.compress(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL), 6)
    checksum = hashlib.sha256(blob).hexdigest()
    version = int(client.hincrby(model_key(prefix, name), "latest", 1))
    counts = getattr(model, "class_counts", None)
    meta = {
        "version": version,
        "saved_at": datetime.now(UTC).isoformat(),
        "class": type(model).__name__,
        "n_learned": int(getattr(model, "n_learned", 0) or 0),
        "class_counts": counts if isinstance(counts, dict) else {},
        "metrics": metrics or {},
        "bytes": len(blob),
        "checksum": checksum,
    }
    pipe = client.pipeline(transaction=False)
    pipe.set(version_key(prefix, name, version), blob)
    pipe.hset(history_key(prefix, name), str(version), orjson.dumps(meta, option=orjson.OPT_NON_STR_KEYS))
    pipe.hset(
        model_key(prefix, name),
        mapping={
            "version": version,
            "saved_at": meta["saved_at"],
            "class": meta["class"],
            "n_learned": meta["n_learned"],
            "class_counts": orjson.dumps(meta["class_counts"], option=orjson.OPT_NON_STR_KEYS),
            "metrics": orjson.dumps(meta["metrics"], option=orjson.OPT_NON_STR_KEYS),
            "checksum": checksum,
        },
    )
    pipe.sadd(models_key(prefix), name)
    pipe.execute()
    _prune(client, prefix, name, keep, current=version)
    return version


def _versions(client: Any, prefix: str, name: str) -> dict[int, dict[str, Any]]:
    raw = client.hgetall(history_key(prefix, name)) or {}
    out: dict[int, dict[str, Any]] = {}
    for k, v in raw.items():
        try:
            out[int(_s(k))] = orjson.loads(v)
        except (ValueError, orjson.JSONDecodeError):
            continue
    return dict(sorted(out.items()))


def _prune(client: Any, prefix: str, name: str, keep: int, current: int) -> None:
    versions = sorted(_versions(client, prefix, name))
    if len(versions) <= keep:
        return
    drop = [v for v in versions[: len(versions) - keep] if v != current]
    if drop:
        pipe = client.pipeline(transaction=False)
        pipe.delete(*[version_key(prefix, name, v) for v in drop])
        pipe.hdel(history_key(prefix, name), *[str(v) for v in drop])
        pipe.execute()


def _current(client: Any, prefix: str, name: str) -> int | None:
    raw = client.hget(model_key(prefix, name), "version")
    return int(_s(raw)) if raw is not None else None


def load(client: Any, prefix: str, name: str, version: int | None = None) -> Any | None:
    """The current checkpoint of ``name`` (or a given ``version``); ``None`` when there is none.

    Raises :class:`LookupError` when an explicitly requested version is not kept, and
    :class:`ValueError` when a blob fails its checksum.
    """
    target = version if version is not None else _current(client, prefix, name)
    if target is None:
        return None
    blob = client.get(version_key(prefix, name, target))
    if blob is None:
        if version is not None:
            raise LookupError(f"model {name!r} has no kept version {version}")
        return None
    meta = _versions(client, prefix, name).get(int(target), {})
    expected = meta.get("checksum")
    if expected and hashlib.sha256(blob).hexdigest() != expected:
        raise ValueError(f"model {name!r} version {target}: checkpoint fails its checksum")
    return pickle.loads(zlib.decompress(blob))


def load_current(
    client: Any | None,
    prefix: str,
    name: str,
    *,
    data_dir: Path | str | None = None,
    cache_dir: Path | str | None = None,
) -> Any:
    """The model the flow should start with: the current Redis checkpoint, else the warm-started default."""
    if client is not None:
        model = load(client, prefix, name)
        if model is not None:
            return model
    return load_default(name, data_dir=data_dir, cache_dir=cache_dir)


def rollback(client: Any, prefix: str, name: str, version: int | None = None) -> int:
    """Make an earlier version current (the one before the current, or ``version``); returns it."""
    current = _current(client, prefix, name)
    versions = _versions(client, prefix, name)
    if version is None:
        earlier = [v for v in versions if current is None or v < current]
        if not earlier:
            raise LookupError(f"model {name!r} has no version before {current} to roll back to")
        version = earlier[-1]
    if int(version) not in versions or not client.exists(version_key(prefix, name, version)):
        raise LookupError(f"model {name!r} has no kept version {version}")
    meta = versions[int(version)]
    client.hset(
        model_key(prefix, name),
        mapping={
            "version": int(version),
            "saved_at": meta.get("saved_at", ""),
            "class": meta.get("class", ""),
            "n_learned": int(meta.get("n_learned", 0)),
            "class_counts": orjson.dumps(meta.get("class_counts", {}), option=orjson.OPT_NON_STR_KEYS),
            "metrics": orjson.dumps(meta.get("metrics", {}), option=orjson.OPT_NON_STR_KEYS),
            "checksum": meta.get("checksum", ""),
            "rolled_back_from": current if current is not None else "",
            "rolled_back_at": datetime.now(UTC).isoformat(),
        },
    )
    return int(version)


def info(client: Any, prefix: str, name: str) -> dict[str, Any] | None:
    """The current checkpoint's metadata and every kept version's, or ``None`` for an unknown model."""
    raw = client.hgetall(model_key(prefix, name))
    if not raw:
        return None
    current = {_s(k): _s(v) for k, v in raw.items()}
    out: dict[str, Any] = {
        "name": name,
        "version": int(current["version"]) if current.get("version") else None,
        "latest": int(current.get("latest", 0) or 0),
        "class": current.get("class", ""),
        "n_learned": int(current.get("n_learned", 0) or 0),
        "saved_at": current.get("saved_at", ""),
        "class_counts": orjson.loads(current.get("class_counts") or "{}"),
        "metrics": orjson.loads(current.get("metrics") or "{}"),
        "versions": [
            {k: meta.get(k) for k in ("version", "saved_at", "n_learned", "metrics", "bytes")}
            for meta in _versions(client, prefix, name).values()
        ],
    }
    if current.get("rolled_back_from"):
        out["rolled_back_from"] = int(current["rolled_back_from"])
    return out


def list_models(client: Any, prefix: str) -> list[str]:
    """Names of checkpointed models, sorted."""
    return sorted(_s(n) for n in client.smembers(models_key(prefix)))


_TEXT_SOURCES = ("models.text", "models._online")
register_default(
    "intent",
    IntentClassifier,
    lambda model, folder: warm_start_intent(model, folder / "tweet_acts" / "tweet_acts_5000.csv"),
    data_files=("tweet_acts/tweet_acts_5000.csv",),
    sources=(*_TEXT_SOURCES, "models.intent"),
)
register_default(
    "sentiment",
    SentimentClassifier,
    warm_start_sentiment,  # every labelled set in SENTIMENT_SETS, each set and class weighed equally
    data_files=tuple(s.path for s in SENTIMENT_SETS.values()),
    version="2",
    sources=(
        *_TEXT_SOURCES,
        "models.sentiment",
        "models.sentiment_features",
        "models.lexicons",
        "models.corpora",
    ),
)
register_default("department", DepartmentClassifier, sources=(*_TEXT_SOURCES, "models.department"))
