"""WebSocket firehose: a server that streams records as JSON frames, and a resumable Bytewax source.

Wire protocol (server → client, text frames of JSON):

- a data frame is one envelope or a JSON array of envelopes ``{"id": N, "fmt": F, "payload": P}``:
  ``id`` is the record's sequence number in the server's stream (1, 2, …), ``fmt`` tells the flow's
  parser how to read the payload, ``payload`` is a JSON object (a row, a simulator event) or a string
  (a raw JSONL line); bytes that are not UTF-8 travel as ``"payload_b64"`` instead, so a corrupt line
  reaches the dead-letter stream intact;
- the control frame ``{"eos": true, "last": N}`` ends a finite stream;
- the client resumes with ``?after=N`` in the URL: the server then starts with record ``N + 1``.

A frame that is not an envelope (a third-party firehose that sends bare mention objects) is passed
on as raw bytes with the source's default ``fmt``; the flow parses or dead-letters it.

>>> frame = encode_frame([(1, RawRecord("file:x", 0, b'{"id": "a"}', "jsonl"))])
>>> frame
b'[{"id":1,"fmt":"jsonl","payload":"{\\\\"id\\\\": \\\\"a\\\\"}"}]'
>>> decode_frame(frame, "ws://h/", "jsonl")
([(1, RawRecord(source='ws://h/', offset=1, payload=b'{"id": "a"}', fmt='jsonl', origin=''))], False)
>>> decode_frame(b'{"eos": true, "last": 1}', "ws://h/", "jsonl")
([], True)
>>> with_after("ws://h:1/firehose?track=acme", 41)
'ws://h:1/firehose?track=acme&after=41'
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import queue
import random
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from itertools import islice
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException
from websockets.http11 import Request, Response

from connectors.records import DEFAULT_MAX_WAIT_S, RawRecord

__all__ = [
    "BackgroundServer",
    "FirehoseServer",
    "TimedRecord",
    "WebSocketSource",
    "decode_frame",
    "encode_frame",
    "iter_timed",
    "with_after",
]

log = logging.getLogger(__name__)

#: A record and its event time in epoch milliseconds (None: unknown, sent without waiting).
TimedRecord = tuple[RawRecord, int | None]


# -- frames -----------------------------------------------------------------------------------------
def _envelope(seq: int, rec: RawRecord) -> dict[str, Any]:
    payload = rec.payload
    if isinstance(payload, bytes):
        try:
            return {"id": seq, "fmt": rec.fmt, "payload": payload.decode("utf-8")}
        except UnicodeDecodeError:
            return {"id": seq, "fmt": rec.fmt, "payload_b64": base64.b64encode(payload).decode("ascii")}
    return {"id": seq, "fmt": rec.fmt, "payload": payload}


def encode_frame(items: Iterable[tuple[int, RawRecord]]) -> bytes:
    """One data frame: a JSON array of envelopes for ``(sequence number, record)`` pairs."""
    return orjson.dumps([_envelope(seq, rec) for seq, rec in items])


def _end_frame(last: int) -> bytes:
    return orjson.dumps({"eos": True, "last": last})


def decode_frame(frame: bytes | str, source: str, default_fmt: str) -> tuple[list[tuple[Any, RawRecord]], bool]:
    """Records of one frame as ``(id, RawRecord)`` pairs, and whether it ended the stream.

    Never raises: a frame that is not envelopes becomes one raw record (id ``None``), which the
    flow's parser then reads or dead-letters with its reason.
    """
    raw = frame.encode("utf-8") if isinstance(frame, str) else frame
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return [(None, RawRecord(source, "frame", raw, default_fmt))], False
    if isinstance(doc, dict) and doc.get("eos") is True:
        return [], True
    docs = doc if isinstance(doc, list) else [doc]
    out: list[tuple[Any, RawRecord]] = []
    for item in docs:
        seq = item.get("id") if isinstance(item, dict) else None
        if not isinstance(item, dict) or not isinstance(seq, int | str) or isinstance(seq, bool) or not (
            "payload" in item or "payload_b64" in item
        ):
            out.append((None, RawRecord(source, "frame", orjson.dumps(item), default_fmt)))
            continue
        fmt = item.get("fmt")
        fmt = fmt if isinstance(fmt, str) and fmt else default_fmt
        payload: Any = item.get("payload")
        if "payload_b64" in item:
            try:
                payload = base64.b64decode(item["payload_b64"], validate=True)
            except (binascii.Error, TypeError, ValueError):
                payload = orjson.dumps(item)
        elif isinstance(payload, str):
            payload = payload.encode("utf-8")
        elif not isinstance(payload, dict):
            payload = orjson.dumps(payload)
        out.append((seq, RawRecord(source, seq, payload, fmt)))
    return out, False


def with_after(url: str, after: int | str | None) -> str:
    """The URL with its ``after`` query parameter set (or removed when ``after`` is None)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "after"]
    if after is not None:
        query.append(("after", str(after)))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


# -- server -----------------------------------------------------------------------------------------
class BackgroundServer:
    """Runs a subclass's ``serve(ready)`` coroutine on its own event loop in a thread (tests, benchmarks).

    The subclass sets ``self._stopped`` (an :class:`asyncio.Event`) in ``serve`` and returns from
    ``serve`` once it is set.
    """

    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _stopped: asyncio.Event | None = None

    async def serve(self, ready: Callable[[], None] | None = None) -> None:
        raise TypeError(f"{type(self).__name__} must define serve()")

    def start(self) -> Self:
        """Serve from a background thread; returns once listening (or raises what prevented it)."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self.serve(started.set))
            except BaseException as exc:  # surfaced to the caller of start()
                failure.append(exc)
                started.set()
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name=type(self).__name__, daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop serving and drop every connection (clients see a dropped connection)."""
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


class FirehoseServer(BackgroundServer):
    """A WebSocket server that streams records as JSON frames: the peer a vendor's firehose would be.

    ``records`` is called once per connection and must replay the same sequence each time (a list,
    a file read, a seeded simulator), so ``?after=N`` resumes exactly. With ``speed > 0`` records are
    paced by event time, ``speed`` times faster than real time, waiting at most ``max_wait_s`` between two
    records (0: no limit); with ``speed == 0`` as fast as the
    client reads (frames of up to ``frame_records`` records). A finite sequence ends with the control
    frame ``{"eos": true}``.

    >>> recs = [(RawRecord("file:x", i, b'{"n": %d}' % i, "jsonl"), None) for i in range(3)]
    >>> server = FirehoseServer(lambda: recs, port=0).start()
    >>> part = WebSocketSource(server.url).build_part("read", "ws", None)
    >>> got = []
    >>> while len(got) < 3:
    ...     got += part.next_batch()
    >>> [r.offset for r in got], got[0].payload
    ([1, 2, 3], b'{"n": 0}')
    >>> part.close(); server.stop()
    """

    def __init__(
        self,
        records: Callable[[], Iterable[TimedRecord]],
        *,
        host: str = "127.0.0.1",
        port: int = 8766,
        speed: float = 0.0,
        frame_records: int = 256,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
    ) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0, got {speed}")
        if not max_wait_s >= 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self.max_wait_s = max_wait_s
        self.records = records
        self.host = host
        self.port = port
        self.speed = speed
        self.frame_records = max(1, frame_records)
        self.connections = 0

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    @staticmethod
    def _process_request(connection: ServerConnection, request: Request) -> Response | None:
        after = dict(parse_qsl(urlsplit(request.path).query)).get("after")
        if after is not None and not after.isdigit():
            return connection.respond(HTTPStatus.BAD_REQUEST, f"after must be a record id (a number), got {after!r}\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        try:
            await self._stream(ws)
        except ConnectionClosed:
            log.info("firehose client %s disconnected", ws.remote_address)

    async def _stream(self, ws: ServerConnection) -> None:
        after = int(dict(parse_qsl(urlsplit(ws.request.path if ws.request else "/").query)).get("after", 0))
        loop = asyncio.get_running_loop()
        seq = after
        batch: list[tuple[int, RawRecord]] = []
        start: tuple[float, int] | None = None
        log.info("firehose client %s connected, after=%d", ws.remote_address, after)
        for rec, ts in islice(iter(self.records()), after, None):
            seq += 1
            if self.speed > 0 and ts is not None:
                if start is None:
                    start = (loop.time(), ts)
                delay = start[0] + (ts - start[1]) / 1000.0 / self.speed - loop.time()
                if 0 < self.max_wait_s < delay:  # a long silence (or a stray timestamp) is shortened
                    delay = self.max_wait_s
                    start = (loop.time() + delay, ts)  # the records after it keep their pace from here
                if delay > 0:
                    if batch:
                        await ws.send(encode_frame(batch), text=True)
                        batch = []
                    await asyncio.sleep(delay)
            batch.append((seq, rec))
            if len(batch) >= self.frame_records:
                await ws.send(encode_frame(batch), text=True)
                batch = []
        if batch:
            await ws.send(encode_frame(batch), text=True)
        await ws.send(_end_frame(seq), text=True)
        log.info("firehose stream to %s ended after record %d", ws.remote_address, seq)
        await ws.wait_closed()

    async def serve(self, ready: Callable[[], None] | None = None) -> None:
        """Serve until :meth:`stop` (or cancellation); ``ready`` is called once listening."""
        self._stopped = asyncio.Event()
        async with serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._process_request,
            compression=None,
            max_size=None,
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            log.info("firehose serving on %s", self.url)
            if ready is not None:
                ready()
            await self._stopped.wait()



# -- source -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _End:
    """Queue sentinel: the stream ended (``error`` None) or failed for good."""

    error: str | None = None


class _WebSocketPartition(StatefulSourcePartition[RawRecord, Any]):
    """Drains the bounded queue filled by a client thread; the snapshot is the last id emitted."""

    def __init__(self, source: WebSocketSource, resume_state: Any) -> None:
        self._src = source
        self._last: Any = resume_state if resume_state is not None else source.start_after
        self._queue: queue.Queue[list[tuple[Any, RawRecord]] | _End] = queue.Queue(maxsize=source.max_queue_frames)
        self._pending: list[tuple[Any, RawRecord]] = []
        self._frames = 0
        self._ended: _End | None = None
        self._next_awake: datetime | None = None
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._thread = threading.Thread(target=self._run, name=f"ws-source {source.url}", daemon=True)
        self._thread.start()

    # client thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._task = loop.create_task(self._client(self._last))
        self._loop = loop
        try:
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass  # close() cancelled the client
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _put(self, item: list[tuple[Any, RawRecord]] | _End) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put_nowait(item)
                return True
            except queue.Full:
                await asyncio.sleep(0.005)  # backpressure: the dataflow is behind
        return False

    async def _client(self, last: Any) -> None:
        src = self._src
        backoff = src.backoff_initial
        while not self._stop.is_set():
            url = with_after(src.url, last)
            try:
                async with connect(
                    url,
                    open_timeout=src.open_timeout,
                    max_size=None,
                    compression=None,
                    proxy=None,
                    additional_headers=src.headers,
                    close_timeout=1,
                ) as ws:
                    log.info("connected to %s", url)
                    # Leaving without the closing handshake: when we stop, the server may be
                    # blocked sending into a full socket and would never see our close frame.
                    self._transport = ws.transport
                    async for frame in ws:
                        items, ended = decode_frame(frame, src.url, src.fmt)
                        if items:
                            backoff = src.backoff_initial
                            for i, (seq, rec) in enumerate(items):
                                if seq is None:  # not an envelope: number it so its key is unique
                                    self._frames += 1
                                    items[i] = (None, RawRecord(rec.source, f"frame:{self._frames}",
                                                                rec.payload, rec.fmt))
                                else:
                                    last = seq
                            if not await self._put(items):
                                ws.transport.abort()
                                return
                        if ended:
                            if src.finite:
                                await self._put(_End())
                                return
                            break  # an endless source waits for the server's stream to grow
                    log.warning("connection to %s closed; resuming after %s", src.url, last)
            except (InvalidURI, InvalidStatus) as exc:
                status = getattr(getattr(exc, "response", None), "status_code", None)
                if isinstance(exc, InvalidURI) or status in (400, 401, 403, 404):
                    body = getattr(getattr(exc, "response", None), "body", b"") or b""
                    detail = body.decode("utf-8", "replace").strip()[:200]
                    await self._put(_End(error=f"{src.url}: {exc}" + (f" ({detail})" if detail else "")))
                    return
                log.warning("%s refused the connection (%s); retrying in %.1fs", src.url, exc, backoff)
            except (OSError, TimeoutError, WebSocketException) as exc:
                log.warning("%s unreachable or dropped (%s); retrying in %.1fs", src.url, exc, backoff)
            if self._stop.is_set():
                return
            await asyncio.sleep(backoff * (0.5 + random.random() / 2))
            backoff = min(backoff * 2, src.backoff_max)

    # dataflow side ---------------------------------------------------------------------------
    def next_batch(self) -> list[RawRecord]:
        out = self._pending
        self._pending = []
        limit = self._src.batch_size
        while len(out) < limit and self._ended is None:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _End):
                self._ended = item
            else:
                out.extend(item)
        if len(out) > limit:
            out, self._pending = out[:limit], out[limit:]
        if not out:
            if self._ended is not None:
                if self._ended.error:
                    raise RuntimeError(f"websocket source failed: {self._ended.error}")
                raise StopIteration
            self._next_awake = datetime.now(UTC) + timedelta(milliseconds=5)
            return []
        self._next_awake = None
        for seq, _ in reversed(out):
            if seq is not None:
                self._last = seq
                break
        return [rec for _, rec in out]

    def next_awake(self) -> datetime | None:
        return self._next_awake

    def snapshot(self) -> Any:
        return self._last

    def close(self) -> None:
        self._stop.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            try:
                loop.call_soon_threadsafe(self._abort, task)
            except RuntimeError:  # the loop has finished already
                pass
        self._thread.join(timeout=5)

    def _abort(self, task: asyncio.Task[None]) -> None:
        if self._transport is not None:
            self._transport.abort()
        task.cancel()


class WebSocketSource(FixedPartitionedSource[RawRecord, Any]):
    """Read a WebSocket firehose (``ws://`` or ``wss://``): one partition, resumable by record id.

    A client thread keeps the connection, reconnecting with exponential backoff (``backoff_initial``
    doubling up to ``backoff_max`` seconds, with jitter) and asking the server to resume after the
    last id it received (``?after=ID``); records wait in a bounded queue (``max_queue_frames``
    frames; a full queue stops reading, so the server is held back) that ``next_batch`` drains in
    batches of up to ``batch_size``. Records carry ``source=url`` and ``offset`` = their id.

    **Delivery guarantee: at-least-once with recovery.** A dropped connection loses nothing (the
    client resumes after the last id it received); after a crash the partition resumes after the
    last id of the recovered snapshot. Records may then arrive twice; the flow's dedupe removes
    them. Without recovery a restart begins at ``start_after`` (default: the server's beginning).
    Non-envelope frames (bare JSON from another vendor) get offset ``frame:N`` and no resume point.

    With ``finite=True`` the end-of-stream frame finishes the partition (a bounded run); with
    ``finite=False`` it reconnects and waits for more. A refused handshake (HTTP 400/401/403/404) or a
    malformed URL fails the run with that message instead of retrying forever.

    >>> WebSocketSource("ws://localhost:8766/").list_parts()
    ['ws://localhost:8766/']
    """

    def __init__(
        self,
        url: str,
        *,
        fmt: str = "jsonl",
        finite: bool = True,
        start_after: int | str | None = None,
        batch_size: int = 1000,
        max_queue_frames: int = 256,
        backoff_initial: float = 0.1,
        backoff_max: float = 10.0,
        open_timeout: float = 10.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.fmt = fmt
        self.finite = finite
        self.start_after = start_after
        self.batch_size = batch_size
        self.max_queue_frames = max_queue_frames
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.open_timeout = open_timeout
        self.headers = headers

    def list_parts(self) -> list[str]:
        return [self.url]

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _WebSocketPartition:
        return _WebSocketPartition(self, resume_state)


def iter_timed(records: Iterable[RawRecord], event_time: Callable[[RawRecord], int | None]) -> Iterator[TimedRecord]:
    """Pair records with their event time for :class:`FirehoseServer` pacing."""
    for rec in records:
        yield rec, event_time(rec)
