"""The owned-community ingest endpoint: the company's forum or app posts events over a WebSocket.

Clients authenticate with ``Authorization: Bearer TOKEN`` (or ``?token=TOKEN`` for browsers, whose
WebSocket API cannot set headers); anything else is refused with HTTP 401 before the upgrade. Each
frame (text or binary: the raw event, uninterpreted) is appended to an input stream
``{prefix}in:{n}`` (:func:`connectors.redis_streams.partition_for`) and acknowledged to the sender
only after Redis answered the XADD:

- ``{"ack": SEQ, "stream": KEY, "entry": ID}`` — stored; ``SEQ`` counts this connection's frames
  from 1, so a client can match acks to what it sent and resend what was never acknowledged;
- ``{"nack": SEQ, "reason": "..."}`` — not stored (empty frame, Redis unreachable, or the stream already
  holds ``max_backlog`` entries because the flow is behind or stopped); resend later.

Bounded: a frame is appended only while its stream holds fewer than ``max_backlog`` entries (checked and
appended in one server-side step); the flow's reader trims what it has acknowledged (see
:mod:`connectors.redis_streams`). An acknowledged frame is therefore never trimmed before the flow processed it.

Durability: an acknowledged frame is in the Redis server's memory. It survives a Redis crash when
Redis runs with AOF (``appendonly yes``, ``appendfsync always`` for no loss at all); with replicas,
``wait_replicas=N`` also waits (``WAIT N``) until N replicas have it before acknowledging.

>>> IngestServer(token="", redis_url="redis://localhost:6379")
Traceback (most recent call last):
...
ValueError: an ingest token is required (PULSE_INGEST_TOKEN): refusing to accept unauthenticated events
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import redis
import redis.asyncio as aioredis
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from connectors.redis_streams import (
    APPEND_IF_ROOM,
    DEFAULT_MAX_BACKLOG,
    FMT_FIELD,
    PAYLOAD_FIELD,
    partition_for,
    stream_key,
)
from connectors.websocket import BackgroundServer

__all__ = ["IngestServer", "token_from_request"]

log = logging.getLogger(__name__)


def token_from_request(request: Request) -> str | None:
    """The bearer token of a handshake request: the Authorization header, else ``?token=``.

    >>> from websockets.datastructures import Headers
    >>> token_from_request(Request("/ingest?token=s3cret", Headers()))
    's3cret'
    >>> token_from_request(Request("/ingest", Headers({"Authorization": "Bearer abc"})))
    'abc'
    """
    auth = request.headers.get("Authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None
    return dict(parse_qsl(urlsplit(request.path).query)).get("token")


class IngestServer(BackgroundServer):
    """Token-authenticated WebSocket endpoint appending each accepted frame to the input streams.

    Frames of one connection are stored in order, in batches: everything received while the
    previous XADD round trip was in flight goes to Redis in one pipeline, then each frame of the
    batch is acknowledged. ``fmt`` is stored with each entry for the flow's parser (``jsonl``: one
    Mention-shaped JSON object per frame). The token comes from the caller (the CLI reads
    ``PULSE_INGEST_TOKEN``); an empty one is refused.

    **Delivery guarantee: at-least-once** for a client that resends unacknowledged frames (a frame
    whose ack was lost in a dropped connection may be stored twice; the flow's dedupe drops the
    copy). Nothing is acknowledged that Redis has not stored.

    >>> IngestServer(token="s3cret", redis_url="redis://localhost:6379", port=0).partitions
    4
    """

    def __init__(
        self,
        token: str,
        redis_url: str,
        *,
        prefix: str = "pulse:",
        partitions: int = 4,
        host: str = "127.0.0.1",
        port: int = 8767,
        fmt: str = "jsonl",
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
        max_frame_bytes: int = 1 << 20,
        max_batch: int = 500,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
    ) -> None:
        if not token:
            raise ValueError(
                "an ingest token is required (PULSE_INGEST_TOKEN): refusing to accept unauthenticated events"
            )
        if partitions < 1:
            raise ValueError(f"partitions must be at least 1, got {partitions}")
        self._token = token.encode()
        self.redis_url = redis_url
        self.prefix = prefix
        self.partitions = partitions
        self.host = host
        self.port = port
        self.fmt = fmt
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.max_frame_bytes = max_frame_bytes
        self.max_batch = max_batch
        self.max_backlog = max_backlog
        self._redis: aioredis.Redis | None = None
        self._append: Any = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    def _authenticate(self, connection: ServerConnection, request: Request) -> Response | None:
        token = token_from_request(request)
        if token is None or not hmac.compare_digest(token.encode(), self._token):
            log.warning("refused ingest connection from %s: bad or missing token", connection.remote_address)
            return connection.respond(HTTPStatus.UNAUTHORIZED, "a valid ingest token is required\n")
        return None

    async def _store(self, frames: list[bytes]) -> list[bytes | str]:
        """Append the frames, one script call per stream (in order, only while it has room), in one pipeline;
        per frame the ack's JSON tail, or a nack reason (str)."""
        assert self._redis is not None and self._append is not None
        by_key: dict[str, list[int]] = {}
        for i, payload in enumerate(frames):
            by_key.setdefault(stream_key(self.prefix, partition_for(payload, self.partitions)), []).append(i)
        pipe = self._redis.pipeline(transaction=False)
        for key, idx in by_key.items():
            await self._append(keys=[key], args=[self.max_backlog, PAYLOAD_FIELD, FMT_FIELD, self.fmt,
                                                 *(frames[i] for i in idx)], client=pipe)
        replies = await pipe.execute()
        if self.wait_replicas > 0:
            acked = await self._redis.wait(self.wait_replicas, self.wait_timeout_ms)
            if acked < self.wait_replicas:
                raise redis.RedisError(f"only {acked} of {self.wait_replicas} replicas confirmed the write")
        answers: list[bytes | str] = [b""] * len(frames)
        for (key, idx), ids in zip(by_key.items(), replies, strict=True):
            for i, entry_id in zip(idx, ids, strict=True):
                if isinstance(entry_id, int):  # the stream is full: not stored
                    answers[i] = (f"backlog full: {key} holds {entry_id} entries the flow has not caught up "
                                  "with; retry later")
                else:
                    entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                    answers[i] = orjson.dumps({"stream": key, "entry": entry})
        return answers

    async def _handler(self, ws: ServerConnection) -> None:
        inbox: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=self.max_batch * 4)

        async def receive() -> None:
            try:
                async for frame in ws:
                    await inbox.put(frame.encode("utf-8") if isinstance(frame, str) else frame)
            except ConnectionClosed:
                pass
            finally:
                await inbox.put(None)

        receiver = asyncio.create_task(receive())
        seq = 0
        done = False
        try:
            while not done:
                first = await inbox.get()
                batch = [first] if first is not None else []
                done = first is None
                while not done and len(batch) < self.max_batch and not inbox.empty():
                    frame = inbox.get_nowait()
                    if frame is None:
                        done = True
                    else:
                        batch.append(frame)
                if not batch:
                    continue
                good = [f for f in batch if f.strip()]
                try:
                    stored = await self._store(good) if good else []
                    error = None
                except (redis.RedisError, OSError) as exc:
                    log.error("ingest: could not store %d frames: %s", len(good), exc)
                    stored, error = [], f"not stored: {exc}"
                it = iter(stored)
                for frame in batch:
                    seq += 1
                    if not frame.strip():
                        answer = orjson.dumps({"nack": seq, "reason": "empty frame"})
                    elif error is not None:
                        answer = orjson.dumps({"nack": seq, "reason": error})
                    else:
                        tail = next(it)
                        if isinstance(tail, str):
                            answer = orjson.dumps({"nack": seq, "reason": tail})
                        else:
                            answer = b'{"ack":%d,' % seq + tail[1:]
                    await ws.send(answer, text=True)
        except ConnectionClosed:
            log.info("ingest client %s left after %d frames", ws.remote_address, seq)
        finally:
            receiver.cancel()

    async def serve(self, ready: Callable[[], None] | None = None) -> None:
        """Serve until :meth:`stop` (or cancellation); ``ready`` is called once listening."""
        self._stopped = asyncio.Event()
        self._redis = aioredis.Redis.from_url(self.redis_url, socket_connect_timeout=5)
        self._append = self._redis.register_script(APPEND_IF_ROOM)
        try:
            await self._redis.ping()
            async with serve(
                self._handler,
                self.host,
                self.port,
                process_request=self._authenticate,
                compression=None,
                max_size=self.max_frame_bytes,
            ) as server:
                self.port = server.sockets[0].getsockname()[1]
                log.info("ingest endpoint on %s -> %sin:0..%d", self.url, self.prefix, self.partitions - 1)
                if ready is not None:
                    ready()
                await self._stopped.wait()
        finally:
            await self._redis.aclose()
