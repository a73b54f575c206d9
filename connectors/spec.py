"""One parser for ``--source SPEC``: the simulator, a file, a WebSocket firehose or Redis input streams.

Accepted forms (anything else is a :class:`ValueError` whose message shows the accepted forms):

- ``sim`` or ``sim:SEED`` — the seeded simulator;
- ``file:PATH`` — a file replay (the format comes from ``--format``);
- ``ws://HOST[:PORT][/PATH][?QUERY]`` or ``wss://…`` — a WebSocket firehose;
- ``redis://[USER:PASS@]HOST[:PORT][/DB]/PREFIX[?partitions=N&group=G]`` (also ``rediss://``) — the
  input streams ``{PREFIX}in:{n}``; ``unix:///path/to/redis.sock?prefix=PREFIX[&db=N&partitions=N]``
  does the same over a Unix socket (the embedded server).

>>> parse_source("sim")
SimSpec(seed=0)
>>> parse_source("ws://localhost:8766/firehose")
WebSocketSpec(url='ws://localhost:8766/firehose')
>>> parse_source("redis://localhost:6379/2/pulse:?partitions=8")
RedisSpec(url='redis://localhost:6379/2', prefix='pulse:', partitions=8, group='pulse')
>>> parse_source("kafka://broker:9092/topic")
Traceback (most recent call last):
...
ValueError: unsupported source 'kafka://broker:9092/topic': expected sim, sim:SEED, file:PATH, ws://HOST[:PORT]/…, wss://…, or redis://HOST:PORT[/DB]/PREFIX
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

__all__ = [
    "DEFAULT_PARTITIONS",
    "FileSpec",
    "RedisSpec",
    "SimSpec",
    "SourceSpec",
    "WebSocketSpec",
    "parse_source",
]

#: Number of input streams ``{prefix}in:{n}`` when the spec does not say.
DEFAULT_PARTITIONS = 4

_FORMS = "sim, sim:SEED, file:PATH, ws://HOST[:PORT]/…, wss://…, or redis://HOST:PORT[/DB]/PREFIX"


@dataclass(frozen=True, slots=True)
class SimSpec:
    """The seeded simulator.

    >>> SimSpec(seed=7).seed
    7
    """

    seed: int = 0


@dataclass(frozen=True, slots=True)
class FileSpec:
    """A file to replay.

    >>> FileSpec(Path("data.jsonl")).path.name
    'data.jsonl'
    """

    path: Path


@dataclass(frozen=True, slots=True)
class WebSocketSpec:
    """A WebSocket firehose URL (``ws://`` or ``wss://``).

    >>> WebSocketSpec("wss://example.org/stream").url
    'wss://example.org/stream'
    """

    url: str


@dataclass(frozen=True, slots=True)
class RedisSpec:
    """Redis input streams: connection ``url`` (no prefix in it), key ``prefix``, how many partitions.

    >>> RedisSpec("redis://localhost:6379", "pulse:").stream_keys()
    ['pulse:in:0', 'pulse:in:1', 'pulse:in:2', 'pulse:in:3']
    """

    url: str
    prefix: str
    partitions: int = DEFAULT_PARTITIONS
    group: str = "pulse"

    def stream_keys(self) -> list[str]:
        return [f"{self.prefix}in:{n}" for n in range(self.partitions)]


SourceSpec = SimSpec | FileSpec | WebSocketSpec | RedisSpec


def _bad(text: str, why: str) -> ValueError:
    return ValueError(f"unsupported source {text!r}: {why}")


def _int_param(text: str, params: dict[str, list[str]], name: str, default: int, low: int) -> int:
    values = params.pop(name, None)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise _bad(text, f"{name} must be a whole number, got {values[-1]!r}") from None
    if value < low:
        raise _bad(text, f"{name} must be at least {low}, got {value}")
    return value


def _check_prefix(text: str, prefix: str) -> str:
    if not prefix:
        raise _bad(text, "the key prefix is missing (e.g. redis://localhost:6379/0/pulse:)")
    if not prefix.endswith(":"):
        raise _bad(text, f"the key prefix must end with ':' (did you mean {prefix + ':'!r}?)")
    return prefix


def _parse_redis(text: str) -> RedisSpec:
    parts = urlsplit(text)
    params = parse_qs(parts.query, keep_blank_values=True)
    partitions = _int_param(text, params, "partitions", DEFAULT_PARTITIONS, 1)
    group = (params.pop("group", None) or ["pulse"])[-1] or "pulse"
    if parts.scheme == "unix":
        if not parts.path:
            raise _bad(text, "the socket path is missing (unix:///path/to/redis.sock?prefix=pulse:)")
        prefix = _check_prefix(text, (params.pop("prefix", None) or [""])[-1])
        query = urlencode(params, doseq=True)
        url = f"unix://{parts.path}" + (f"?{query}" if query else "")
        return RedisSpec(url=url, prefix=prefix, partitions=partitions, group=group)
    if not parts.hostname:
        raise _bad(text, "the host is missing (redis://HOST:PORT[/DB]/PREFIX)")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise _bad(text, "the port is not a number") from None
    segments = [s for s in parts.path.split("/") if s]
    db = ""
    if segments and segments[0].isdigit():
        db = segments.pop(0)
    if len(segments) > 1:
        raise _bad(text, "expected at most /DB/PREFIX after the host")
    prefix = _check_prefix(text, segments[0] if segments else "")
    url = urlunsplit((parts.scheme, parts.netloc, f"/{db}" if db else "", urlencode(params, doseq=True), ""))
    return RedisSpec(url=url, prefix=prefix, partitions=partitions, group=group)


def parse_source(text: str, *, check_files: bool = True) -> SourceSpec:
    """Parse a ``--source`` value into a typed spec; ``check_files`` makes a missing file an error.

    >>> parse_source("sim:42")
    SimSpec(seed=42)
    >>> parse_source("redis://localhost/pulse")
    Traceback (most recent call last):
    ...
    ValueError: unsupported source 'redis://localhost/pulse': the key prefix must end with ':' (did you mean 'pulse:'?)
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty source: expected {_FORMS}")
    text = text.strip()
    if text == "sim":
        return SimSpec()
    if text.startswith("sim:"):
        seed = text[4:]
        if not seed.lstrip("-").isdigit():
            raise _bad(text, f"the simulator seed must be a whole number, got {seed!r}")
        return SimSpec(seed=int(seed))
    if text.startswith("file:"):
        path = text[5:]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise _bad(text, "the file path is missing (file:PATH)")
        if check_files and not Path(path).is_file():
            raise _bad(text, f"no such file: {path}")
        return FileSpec(Path(path))
    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    if scheme in ("ws", "wss"):
        parts = urlsplit(text)
        if not parts.hostname:
            raise _bad(text, "the host is missing (ws://HOST[:PORT]/PATH)")
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise _bad(text, "the port is not a number") from None
        return WebSocketSpec(url=text)
    if scheme in ("redis", "rediss", "unix"):
        return _parse_redis(text)
    raise _bad(text, f"expected {_FORMS}")
