"""Model registry: default models warm-started from the shipped data, and versioned checkpoints in Redis.

Defaults: :func:`load_default` builds a named model and warm-starts it from ``../shared/data`` on first
use, then keeps the result in a local cache file (``.pulse/models/<name>-<fingerprint>.pkl``) so the next
start takes milliseconds; the fingerprint covers the model code, the taxonomies, the data files and the
library versions, so a change to any of them rebuilds. Other model modules add their own defaults with
:func:`register_default`.

Checkpoints (this module owns these Redis keys; every name starts with the caller's prefix):

- ``{prefix}model:{name}`` (hash): ``version`` (the current one), ``latest``, ``class``, ``n_learned``,
  ``class_counts``, ``metrics`` and ``provenance`` (JSON), ``saved_at``, ``checksum``, and after a rollback
  ``rolled_back_from``, ``rolled_back_at``, ``rolled_back_reason``;
- ``{prefix}model:{name}:v{version}`` (string): that version, signed (:func:`seal`);
- ``{prefix}model:{name}:v{version}:texts`` (string): fingerprints of the texts it was trained on;
- ``{prefix}model:{name}:history`` (hash): version -> JSON metadata (with provenance) of every kept version;
- ``{prefix}model:{name}:metrics:{channel}`` (hash): prequential metrics (:mod:`models.prequential`);
- ``{prefix}models`` (set): the names of all checkpointed models.

Versions beyond the newest ``keep`` (default 10) are deleted with their texts. Blobs are signed with
HMAC-SHA256 under a key the caller passes (the flow's ``PULSE_MODEL_KEY``): a blob whose signature does
not match is refused before anything is unpickled, so write access to Redis is not code execution.

>>> model = load_default("department")
>>> type(model).__name__
'DepartmentClassifier'
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import logging
import os
import pickle
import platform
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable
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
    "MAX_TEXT_HASHES",
    "CheckpointRefused",
    "DEFAULT_CACHE_DIR",
    "DEFAULT_DATA_DIR",
    "DefaultSpec",
    "default_data_files",
    "default_names",
    "build_default",
    "current_version",
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
    "pack_fingerprints",
    "register_default",
    "rollback",
    "save",
    "seal",
    "text_fingerprint",
    "texts_key",
    "trained_texts",
    "unpack_fingerprints",
    "unseal",
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
#
# Everything from here on is the storage side of the registry: signed blobs, versions, provenance,
# rollback. The warm-start side above decides which data the defaults learn from.


class CheckpointRefused(ValueError):
    """A stored blob whose signature does not match its content under our key: it is never unpickled."""


_MAGIC = b"PSIG1"
_MAC_BYTES = 32
#: Text fingerprints kept per version (8 bytes each) to tell when evaluation data was trained on.
MAX_TEXT_HASHES = 1_000_000


def seal(obj: Any, key: bytes) -> bytes:
    """Serialise ``obj`` (zlib-compressed pickle) and sign it: ``PSIG1 | HMAC-SHA256(key, body) | body``.

    Only a holder of ``key`` can make a blob that :func:`unseal` accepts, so whoever can write to Redis
    but does not know the key cannot make the flow unpickle (and run) anything.

    >>> blob = seal({"weights": [1, 2]}, b"secret")
    >>> unseal(blob, b"secret")
    {'weights': [1, 2]}
    >>> unseal(blob, b"another key")
    Traceback (most recent call last):
    ...
    models.registry.CheckpointRefused: signature does not match (tampered, or signed with another key)
    """
    if not key:
        raise ValueError("a signing key is needed to store a model")
    body = zlib.compress(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), 6)
    return _MAGIC + hmac.new(key, body, hashlib.sha256).digest() + body


def unseal(blob: Any, key: bytes) -> Any:
    """The object in a blob made by :func:`seal`; :class:`CheckpointRefused` unless the signature matches.

    The signature is checked before anything is decompressed or unpickled.
    """
    if not key:
        raise ValueError("a signing key is needed to load a model")
    if not isinstance(blob, bytes | bytearray) or not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + _MAC_BYTES:
        raise CheckpointRefused("not a signed blob (written by an older version, or by someone else)")
    mac = bytes(blob[len(_MAGIC): len(_MAGIC) + _MAC_BYTES])
    body = bytes(blob[len(_MAGIC) + _MAC_BYTES:])
    if not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()):
        raise CheckpointRefused("signature does not match (tampered, or signed with another key)")
    return pickle.loads(zlib.decompress(body))  # noqa: S301 - signed with our key: written by us


def model_key(prefix: str, name: str) -> str:
    """The hash describing a model's current checkpoint.

    >>> model_key("pulse:", "sentiment")
    'pulse:model:sentiment'
    """
    return f"{prefix}model:{name}"


def version_key(prefix: str, name: str, version: int) -> str:
    """The signed blob of one checkpoint version."""
    return f"{prefix}model:{name}:v{int(version)}"


def texts_key(prefix: str, name: str, version: int) -> str:
    """Fingerprints of every text a version was trained on through ``pulse train`` (8 bytes each)."""
    return f"{prefix}model:{name}:v{int(version)}:texts"


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


def _json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def text_fingerprint(text: str) -> int:
    """A 64-bit fingerprint of a text, after case folding and collapsing white space.

    >>> text_fingerprint("Hello  World") == text_fingerprint("hello world")
    True
    """
    norm = " ".join(str(text).casefold().split())
    return int.from_bytes(hashlib.blake2b(norm.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def pack_fingerprints(fingerprints: Iterable[int]) -> bytes:
    """Sorted 8-byte fingerprints, zlib-compressed (at most :data:`MAX_TEXT_HASHES`)."""
    ordered = sorted(set(fingerprints))[:MAX_TEXT_HASHES]
    return zlib.compress(b"".join(f.to_bytes(8, "big") for f in ordered), 6)


def unpack_fingerprints(blob: bytes | None) -> set[int]:
    """The fingerprints packed by :func:`pack_fingerprints` (an empty set for nothing or garbage).

    >>> sorted(unpack_fingerprints(pack_fingerprints([3, 1, 3])))
    [1, 3]
    """
    if not blob:
        return set()
    try:
        raw = zlib.decompress(blob)
    except zlib.error:
        return set()
    return {int.from_bytes(raw[i: i + 8], "big") for i in range(0, len(raw) - len(raw) % 8, 8)}


def save(
    client: Any,
    prefix: str,
    name: str,
    model: Any,
    metrics: dict[str, Any] | None = None,
    *,
    key: bytes,
    keep: int = DEFAULT_KEEP,
    provenance: dict[str, Any] | None = None,
    texts: Iterable[int] | None = None,
    make_current: bool = True,
    version: int | None = None,
    saved_at: str | None = None,
) -> int:
    """Checkpoint ``model`` as a new version of ``name`` (signed with ``key``) and return the version.

    ``provenance`` says what the version was trained on (files with their sha256 and rows, label map,
    where it started from, ...); ``texts`` are fingerprints (:func:`text_fingerprint`) of the texts it was
    trained on, kept so that an evaluation can tell when its data overlaps. With ``make_current`` false the
    version is kept but not served (a candidate, e.g. a model learning while the flow serves an older one).
    The blob is written before the pointer moves, so a crash in between leaves the previous version
    current. Versions beyond the newest ``keep`` are deleted (never the current one).

    ``version`` and ``saved_at`` make saving idempotent for a caller that numbers its own versions and
    keeps its own clock (the flow: the same input gives the same versions, also when it is replayed after a
    crash); by default the next number and the current time.
    """
    if not name or ":" in name:
        raise ValueError(f"model name must be non-empty without ':', got {name!r}")
    blob = seal(model, key)
    checksum = hashlib.sha256(blob).hexdigest()
    if version is None:
        version = int(client.hincrby(model_key(prefix, name), "latest", 1))
    else:
        version = int(version)
        if int(_s(client.hget(model_key(prefix, name), "latest") or 0) or 0) < version:
            client.hset(model_key(prefix, name), "latest", version)
    counts = getattr(model, "class_counts", None)
    meta = {
        "version": version,
        "saved_at": saved_at if saved_at is not None else datetime.now(UTC).isoformat(),
        "class": type(model).__name__,
        "n_learned": int(getattr(model, "n_learned", 0) or 0),
        "class_counts": counts if isinstance(counts, dict) else {},
        "metrics": metrics or {},
        "bytes": len(blob),
        "checksum": checksum,
        "provenance": provenance or {},
        "served": bool(make_current),
    }
    pipe = client.pipeline(transaction=False)
    pipe.set(version_key(prefix, name, version), blob)
    if texts is not None:
        pipe.set(texts_key(prefix, name, version), pack_fingerprints(texts))
    pipe.hset(history_key(prefix, name), str(version), _json(meta))
    if make_current:
        pipe.hset(model_key(prefix, name), mapping=_current_fields(meta))
        pipe.hdel(model_key(prefix, name), "rolled_back_from", "rolled_back_at", "rolled_back_reason")
    pipe.sadd(models_key(prefix), name)
    pipe.execute()
    _prune(client, prefix, name, keep, current=_current(client, prefix, name) or version)
    return version


def _current_fields(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": int(meta["version"]),
        "saved_at": meta.get("saved_at", ""),
        "class": meta.get("class", ""),
        "n_learned": int(meta.get("n_learned", 0) or 0),
        "class_counts": _json(meta.get("class_counts", {})),
        "metrics": _json(meta.get("metrics", {})),
        "provenance": _json(meta.get("provenance", {})),
        "checksum": meta.get("checksum", ""),
    }


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
        pipe.delete(*[version_key(prefix, name, v) for v in drop], *[texts_key(prefix, name, v) for v in drop])
        pipe.hdel(history_key(prefix, name), *[str(v) for v in drop])
        pipe.execute()


def _current(client: Any, prefix: str, name: str) -> int | None:
    raw = client.hget(model_key(prefix, name), "version")
    return int(_s(raw)) if raw not in (None, b"", "") else None


def current_version(client: Any, prefix: str, name: str) -> int | None:
    """The version the flow serves (None: no checkpoint, the default is served)."""
    return _current(client, prefix, name)


def load(client: Any, prefix: str, name: str, version: int | None = None, *, key: bytes) -> Any | None:
    """The current checkpoint of ``name`` (or a given ``version``); ``None`` when there is none.

    Raises :class:`LookupError` when an explicitly requested version is not kept, and
    :class:`CheckpointRefused` when the blob's signature does not match ``key`` (nothing is unpickled).
    """
    target = version if version is not None else _current(client, prefix, name)
    if target is None:
        return None
    blob = client.get(version_key(prefix, name, target))
    if blob is None:
        if version is not None:
            raise LookupError(f"model {name!r} has no kept version {version}")
        return None
    try:
        return unseal(blob, key)
    except CheckpointRefused as exc:
        raise CheckpointRefused(f"model {name!r} version {target}: checkpoint refused: {exc}") from None


def load_current(
    client: Any | None,
    prefix: str,
    name: str,
    *,
    key: bytes | None = None,
    data_dir: Path | str | None = None,
    cache_dir: Path | str | None = None,
) -> Any:
    """The model the flow should start with: the current Redis checkpoint, else the warm-started default.

    A checkpoint whose signature does not match (or that cannot be read) is refused with one error line
    in the log, and the default is returned instead.
    """
    if client is not None:
        try:
            if not key:
                raise CheckpointRefused(f"model {name!r}: no signing key to check its checkpoint with")
            model = load(client, prefix, name, key=key)
        except CheckpointRefused as exc:
            logger.error("%s; starting from the default model", exc)
            model = None
        except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint must not stop the flow
            logger.error("model %r: checkpoint unreadable (%s); starting from the default model", name, exc)
            model = None
        if model is not None:
            return model
    return load_default(name, data_dir=data_dir, cache_dir=cache_dir)


def rollback(client: Any, prefix: str, name: str, version: int | None = None, *, reason: str = "",
             at: str | None = None) -> int:
    """Make an earlier version current (the one before the current, or ``version``); returns it.

    ``reason`` is recorded beside the pointer (e.g. ``"drift"`` or ``"cli"``), with ``at`` (default: now).
    """
    current = _current(client, prefix, name)
    versions = _versions(client, prefix, name)
    if version is None:
        earlier = [v for v in versions if current is None or v < current]
        if not earlier:
            raise LookupError(f"model {name!r} has no version before {current} to roll back to")
        version = earlier[-1]
    if int(version) not in versions or not client.exists(version_key(prefix, name, version)):
        kept = ", ".join(str(v) for v in versions) or "none"
        raise LookupError(f"model {name!r} has no kept version {version} (kept: {kept})")
    meta = versions[int(version)]
    fields = _current_fields({**meta, "version": int(version)})
    fields.update({
        "rolled_back_from": current if current is not None else "",
        "rolled_back_at": at if at is not None else datetime.now(UTC).isoformat(),
        "rolled_back_reason": reason,
    })
    client.hset(model_key(prefix, name), mapping=fields)
    return int(version)


def info(client: Any, prefix: str, name: str) -> dict[str, Any] | None:
    """The current checkpoint's metadata and every kept version's, or ``None`` for an unknown model."""
    raw = client.hgetall(model_key(prefix, name))
    if not raw:
        return None
    current = {_s(k): _s(v) for k, v in raw.items()}
    version = int(current["version"]) if current.get("version") else None
    out: dict[str, Any] = {
        "name": name,
        "version": version,
        "latest": int(current.get("latest", 0) or 0),
        "class": current.get("class", ""),
        "n_learned": int(current.get("n_learned", 0) or 0),
        "saved_at": current.get("saved_at", ""),
        "class_counts": orjson.loads(current.get("class_counts") or "{}"),
        "metrics": orjson.loads(current.get("metrics") or "{}"),
        "provenance": orjson.loads(current.get("provenance") or "{}"),
        "versions": [
            {**{k: meta.get(k) for k in ("version", "saved_at", "n_learned", "metrics", "bytes")},
             "provenance": meta.get("provenance") or {}, "current": meta.get("version") == version}
            for meta in _versions(client, prefix, name).values()
        ],
    }
    if current.get("rolled_back_from"):
        out["rolled_back_from"] = int(current["rolled_back_from"])
        out["rolled_back_at"] = current.get("rolled_back_at", "")
        out["rolled_back_reason"] = current.get("rolled_back_reason", "")
    return out


def trained_texts(client: Any, prefix: str, name: str, version: int) -> set[int]:
    """Fingerprints of the texts a version was trained on through ``pulse train`` (empty when unknown)."""
    return unpack_fingerprints(client.get(texts_key(prefix, name, version)))


def default_data_files(name: str) -> tuple[str, ...]:
    """The data files (relative to the data folder) the default of ``name`` is warm-started from.

    >>> default_data_files("department")
    ()
    """
    spec = _DEFAULTS.get(name)
    return spec.data_files if spec is not None else ()


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
