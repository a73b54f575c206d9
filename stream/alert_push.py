"""Alert push: a WebSocket server that sends every new alert to every connected client, as it happens.

On connect a client receives the latest ``backlog`` alerts (from the ``alerts`` stream, oldest first),
then each alert state appended to that stream after them, one JSON text frame per alert. The relay tails the stream
itself (``XREAD`` from the last entry it sent), so nothing appended while it was away from Redis is skipped (the
flow's sink writes what it held back the moment Redis returns, before a pub/sub subscriber would be back) and a
state the sink wrote again (a replay, a retry) is sent once, as it is appended once.
Incident tooling (a pager bridge, a chat bot, the wall display) subscribes with any WebSocket client::

    python -m websockets ws://localhost:8765/
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import redis.asyncio as aredis
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve

from stream.keys import Keys
from stream.redisconn import RETRY, TRANSIENT_ERRORS, note_redis_back, note_redis_down

__all__ = ["AlertPushServer"]

log = logging.getLogger(__name__)


class AlertPushServer:
    """Relay the alerts stream ``{prefix}alerts`` to WebSocket clients, as entries are appended.

    >>> srv = AlertPushServer("redis://localhost:6379/0", Keys("pulse:"), port=0)
    >>> srv.backlog
    20
    """

    def __init__(self, redis_url: str, keys: Keys, host: str = "127.0.0.1", port: int = 8765,
                 backlog: int = 20) -> None:
        self.redis_url = redis_url
        self.keys = keys
        self.host = host
        self.port = port
        self.backlog = backlog
        self._clients: set[ServerConnection] = set()
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        #: The id of the last stream entry relayed (or the newest when the relay started): it resumes after it.
        self._last_id: Any = None

    async def _handler(self, ws: ServerConnection) -> None:
        client = aredis.Redis.from_url(self.redis_url)
        try:
            await self._catch_up(client, ws)  # joins the broadcast once level with the relay
        except TRANSIENT_ERRORS as exc:  # Redis away: the client still gets live alerts once it is back
            log.warning("alert backlog skipped, redis unreachable: %s", exc)
            self._clients.add(ws)
        finally:
            await client.aclose()
        try:
            await ws.wait_closed()
        finally:
            self._clients.discard(ws)

    async def _catch_up(self, client: aredis.Redis, ws: ServerConnection) -> None:
        """Send the latest ``backlog`` entries up to the relay's position, then what the relay sent meanwhile, until
        the client is level with it; then add it to the broadcast in the same step of the event loop (no await between
        the check and the add: an alert the relay sends in between would be lost for this client)."""
        pos = self._last_id
        entries: Any = await client.xrevrange(self.keys.alerts, count=self.backlog,
                                              **({} if pos is None else {"max": pos}))
        for _id, fields in reversed(entries or []):
            await ws.send(fields[b"alert"].decode())
        while pos is not None and pos != self._last_id:
            upto = self._last_id
            start = pos.decode() if isinstance(pos, bytes) else str(pos)
            entries = await client.xrange(self.keys.alerts, min=f"({start}", max=upto)
            for _id, fields in entries or []:
                await ws.send(fields[b"alert"].decode())
            pos = upto
        self._clients.add(ws)

    async def _relay(self) -> None:
        """Relay new alerts; while Redis is away, reconnect with the flow's backoff (and its log lines), then
        resume after the last entry relayed."""
        attempt = 0

        def back() -> None:
            nonlocal attempt
            attempt = 0
            note_redis_back()

        while True:
            try:
                await self._relay_once(on_connected=back)
            except TRANSIENT_ERRORS as exc:
                attempt += 1
                wait = RETRY.delay(attempt)
                note_redis_down(exc, attempt, wait, "alert push")
                await asyncio.sleep(wait)
            except Exception:  # anything else must not end the relay silently: said, then tried again
                attempt += 1
                log.exception("alert push relay failed; retrying")
                await asyncio.sleep(RETRY.delay(attempt))

    async def _anchor(self, client: aredis.Redis) -> None:
        """Start after the newest entry (clients get older ones as their backlog), once."""
        if self._last_id is None:
            newest: Any = await client.xrevrange(self.keys.alerts, count=1)
            self._last_id = newest[0][0] if newest else b"0-0"

    async def _relay_once(self, on_connected: Any) -> None:
        client = aredis.Redis.from_url(self.redis_url)
        try:
            await self._anchor(client)
            on_connected()
            while True:
                assert self._last_id is not None
                got: Any = await client.xread({self.keys.alerts: self._last_id}, count=500, block=1000)
                for _stream, entries in got or ():
                    for entry_id, fields in entries:
                        self._last_id = entry_id
                        body = fields.get(b"alert")
                        if body is not None:
                            broadcast(self._clients, body.decode())
        finally:
            await client.aclose()

    async def serve(self) -> None:
        """Serve until cancelled (or :meth:`stop` when started with :meth:`start`)."""
        self._stop = asyncio.Event()
        async with serve(self._handler, self.host, self.port) as server:
            self._server = server
            self.port = server.sockets[0].getsockname()[1] if self.port == 0 else self.port
            client = aredis.Redis.from_url(self.redis_url, socket_connect_timeout=2)
            try:  # anchored before start() returns: an alert appended after it is relayed
                await self._anchor(client)
            except TRANSIENT_ERRORS as exc:  # Redis away: anchored when the relay reaches it
                log.warning("alert push starts without redis (%s): it relays once Redis answers", exc)
            finally:
                await client.aclose()
            relay = asyncio.create_task(self._relay())
            self._ready.set()
            log.info("alert push on ws://%s:%d/", self.host, self.port)
            try:
                await self._stop.wait()
            finally:
                relay.cancel()

    def start(self) -> AlertPushServer:
        """Serve in a background thread; returns once the port is open."""

        failed: list[OSError] = []

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self.serve())
            except OSError as exc:  # e.g. the port is taken: said by start(), not lost in this thread
                failed.append(exc)
                self._loop.close()
                self._loop = None
                self._ready.set()

        self._thread = threading.Thread(target=run, name="alert-push", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"alert push server did not start on {self.host}:{self.port}")
        if failed:
            raise ValueError(f"alert push: cannot listen on {self.host}:{self.port} ({failed[0].strerror or failed[0]}); "
                             "is another pulse demo running? Set another port with PULSE_ALERTS_PORT")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/"
