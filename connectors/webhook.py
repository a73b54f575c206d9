"""Deliver outbox messages over HTTP: signed, retried with backoff, once per reply id, dead-lettered at the end.

:class:`OutboxRelay` reads one channel's outbox (``{prefix}outbox:{channel}``, the contract of
:mod:`connectors.outbox`) with a consumer group and hands each message to a :class:`Webhook`, which POSTs the
message's JSON (:meth:`~connectors.outbox.OutboxMessage.to_json`: reply text, channel, brand, case and customer
ids, reply id, ...) with these headers:

- ``X-Pulse-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`` — the scheme the big payment
  providers use: the timestamp is signed with the body, so a captured request cannot be replayed later
  (receivers reject it outside a tolerance); one ``v1`` per active secret while secrets are rotated;
- ``X-Pulse-Delivery: <reply id>`` — the same on every attempt and after a relay restart: the receiver's
  idempotency key;
- ``X-Pulse-Channel``, ``X-Pulse-Kind``, ``Content-Type: application/json``.

Receivers check a request with :func:`verify_signature` (constant-time, timestamp tolerance, several ``v1``).

Connection errors, timeouts and HTTP 408/425/429/5xx are retried with exponential backoff (``Retry-After`` in
seconds is honoured up to the cap); redirects and other 4xx fail at once. A message that finally fails goes to
the dead-letter stream ``{prefix}dlq`` with its reason. A rule webhook (kind ``webhook``) goes to its own
``url``; other messages go to the relay's URL.

>>> header = sign(b'{"text":"hi"}', b"s3cret", timestamp=1700000000)
>>> header
't=1700000000,v1=a4abab2c9ec335a751cf8c3848e413a84a4e0eef17a9660d993911fafacadb66'
>>> verify_signature(b'{"text":"hi"}', header, b"s3cret", now=1700000100)
True
>>> verify_signature(b'{"text":"hi"}', header, b"s3cret", now=1700000400)  # replayed 400 s later
False
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from connectors.outbox import SENT_MARK_SECONDS, OutboxMessage, outbox_key
from connectors.redis_streams import XADD_NEXT_LUA

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "Delivery",
    "OutboxRelay",
    "RelayStats",
    "Webhook",
    "dead_letter",
    "sign",
    "verify_signature",
]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Pulse-Signature"
DELIVERY_HEADER = "X-Pulse-Delivery"
_RETRYABLE = {408, 425, 429}
#: The dead-letter stream keeps about this many entries (as the flow's own dead letters).
DLQ_MAXLEN = 1_000_000

# KEYS[1] dead-letter stream, KEYS[2] once-mark; ARGV: mark lifetime, maxlen, raw, reason, source, key, ts.
_DEAD_LETTER_ONCE = XADD_NEXT_LUA + """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  return false
end
return xadd_next(KEYS[1], ARGV[2], {'raw', ARGV[3], 'reason', ARGV[4], 'source', ARGV[5], 'key', ARGV[6],
                                    'ts_received', ARGV[7]})
"""


def _bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _v1(body: bytes, secret: bytes, timestamp: int) -> str:
    return hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(body: bytes | str, secret: bytes | str | Sequence[bytes | str], timestamp: int | None = None) -> str:
    """The ``X-Pulse-Signature`` value for ``body``: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">``,
    with one ``v1`` per secret when several are given (secret rotation).

    >>> sign(b"{}", [b"new", b"old"], timestamp=1).count("v1=")
    2
    """
    t = int(time.time()) if timestamp is None else int(timestamp)
    secrets = [secret] if isinstance(secret, bytes | str) else list(secret)
    if not secrets:
        raise ValueError("sign needs at least one secret")
    return ",".join([f"t={t}", *(f"v1={_v1(_bytes(body), _bytes(s), t)}" for s in secrets)])


def verify_signature(body: bytes | str, header: str | None, secret: bytes | str, tolerance_s: float = 300,
                     *, now: float | None = None) -> bool:
    """What a receiver does with a request: True when ``header`` (``X-Pulse-Signature``) signs exactly this
    ``body`` with ``secret`` and its timestamp is within ``tolerance_s`` seconds of ``now`` (default: the
    clock). Compares in constant time; any one of several ``v1`` values may match (secret rotation).

    >>> h = sign("body", "k", timestamp=100)
    >>> verify_signature("body", h, "k", now=100), verify_signature("body!", h, "k", now=100)
    (True, False)
    >>> verify_signature("body", h, "other", now=100), verify_signature("body", "v1=abc", "k", now=100)
    (False, False)
    """
    if not header:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif name == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = _v1(_bytes(body), _bytes(secret), timestamp)
    matched = False
    for candidate in candidates:  # no early exit: the time taken does not say which one matched
        matched |= hmac.compare_digest(expected, candidate)
    return matched


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of delivering one message: ``ok``, how many attempts, last HTTP status, why not.

    >>> Delivery(ok=True, attempts=3, status=200).ok
    True
    """

    ok: bool
    attempts: int
    status: int | None = None
    reason: str | None = None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook answers where it was asked: a redirect is a failure, never a re-sent (or dropped) body."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _http_url(url: str) -> bool:
    scheme, sep, rest = url.partition("://")
    return bool(sep) and scheme in ("http", "https") and bool(rest.strip())


class Webhook:
    """POST outbox messages, signed with ``secret`` (or several while rotating), up to ``max_attempts`` tries.

    ``url`` is where messages go; ``None`` sends each message to its own ``url`` (rule webhooks), and a
    message with its own ``url`` goes there in any case. The wait before retry ``n`` is
    ``backoff_initial * 2**(n-1)`` seconds, capped at ``backoff_max``, spread by ``±jitter`` (a fraction) so
    that relays recovering together do not retry in lockstep; ``sleep``, ``clock`` and ``rng`` are injectable
    (tests pass ``jitter=0`` and a recording ``sleep`` to check the exact waits).

    >>> Webhook("http://localhost:9/hook", b"k", max_attempts=0)
    Traceback (most recent call last):
    ...
    ValueError: max_attempts must be at least 1, got 0
    >>> waits = []
    >>> hook = Webhook("http://127.0.0.1:9/hook", "k", max_attempts=4, backoff_initial=0.5, jitter=0,
    ...                sleep=waits.append, timeout=1)
    >>> result = hook.deliver(OutboxMessage(reply_id="r-1", kind="reply", channel="forum", text="hi"))
    >>> result.ok, result.attempts, waits
    (False, 4, [0.5, 1.0, 2.0])
    """

    def __init__(
        self,
        url: str | None,
        secret: bytes | str | Sequence[bytes | str],
        *,
        timeout: float = 10.0,
        max_attempts: int = 5,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        jitter: float = 0.1,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if url is not None and not _http_url(url):
            raise ValueError(f"webhook URL must be http:// or https://, got {url!r}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        secrets = [secret] if isinstance(secret, bytes | str) else list(secret)
        if not secrets or not all(secrets):
            raise ValueError("a webhook needs a non-empty signing secret")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.url = url
        self.secrets = [_bytes(s) for s in secrets]
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.jitter = jitter
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self._opener = urllib.request.build_opener(_NoRedirect)

    def target(self, message: OutboxMessage) -> str | None:
        """Where ``message`` goes: its own ``url`` (rule webhooks), else this webhook's."""
        return message.url or self.url

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt ``attempt`` (1-based)."""
        wait = min(self.backoff_initial * 2 ** (attempt - 1), self.backoff_max)
        if self.jitter:
            wait *= 1.0 + self.jitter * (2.0 * self._rng() - 1.0)
        return wait

    def _post(self, url: str, message: OutboxMessage, body: bytes) -> tuple[int | None, str | None, float | None]:
        """One attempt: (status, failure reason or None, Retry-After seconds or None)."""
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(body, self.secrets, int(self._clock())),
                DELIVERY_HEADER: message.reply_id,
                "X-Pulse-Channel": message.channel,
                "X-Pulse-Kind": message.kind,
                "User-Agent": "social-pulse-relay/2",
            },
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read()
                return response.status, None, None
        except urllib.error.HTTPError as exc:
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
            wait = float(retry_after) if retry_after and retry_after.strip().isdigit() else None
            return exc.code, f"HTTP {exc.code} {exc.reason}", wait
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return None, f"unreachable: {reason}", None

    def deliver(self, message: OutboxMessage) -> Delivery:
        """Deliver one message, retrying transient failures; never raises for HTTP or network trouble."""
        url = self.target(message)
        if not url:
            return Delivery(ok=False, attempts=0, reason="no URL to deliver to (the message has none and the "
                                                          "relay was given none)")
        if not _http_url(url):
            return Delivery(ok=False, attempts=0, reason=f"not an http(s) URL: {url[:200]!r}")
        body = message.to_json()
        status: int | None = None
        reason: str | None = None
        for attempt in range(1, self.max_attempts + 1):
            status, reason, retry_after = self._post(url, message, body)
            if reason is None:
                return Delivery(ok=True, attempts=attempt, status=status)
            retryable = status is None or status in _RETRYABLE or status >= 500
            if not retryable:
                return Delivery(ok=False, attempts=attempt, status=status, reason=reason)
            if attempt < self.max_attempts:
                wait = self.backoff(attempt)
                if retry_after is not None:
                    wait = min(max(wait, retry_after), self.backoff_max)
                log.info("relay %s: %s for %s; retry %d in %.2fs", url, reason, message.reply_id, attempt + 1, wait)
                self._sleep(wait)
        return Delivery(ok=False, attempts=self.max_attempts, status=status,
                        reason=f"gave up after {self.max_attempts} attempts: {reason}")


def dead_letter(client: redis.Redis, prefix: str, channel: str, reply_id: str, raw: bytes, reason: str) -> str | None:
    """Append an undeliverable outbox entry to ``{prefix}dlq`` (the flow's dead-letter fields: ``raw``,
    ``reason``, ``source`` = ``relay:{channel}``, ``key`` = ``outbox:{channel}:{reply_id}``, ``ts_received``),
    once per key (a mark ``{prefix}outbox:dead:{channel}:{reply_id}`` kept as long as the sent marks);
    the entry id, or None if it was dead-lettered before."""
    key = f"outbox:{channel}:{reply_id}"
    script = client.register_script(_DEAD_LETTER_ONCE)
    result = script(
        keys=[f"{prefix}dlq", f"{prefix}outbox:dead:{channel}:{reply_id}"],
        args=[SENT_MARK_SECONDS, DLQ_MAXLEN, raw, reason, f"relay:{channel}", key, datetime.now(UTC).isoformat()],
    )
    return result.decode() if isinstance(result, bytes) else None


@dataclass(slots=True)
class RelayStats:
    """What a relay pass did: messages delivered (2xx), dead-lettered, and entries skipped (deleted while
    pending: nothing left to send).

    >>> RelayStats(delivered=2, dead=1)
    RelayStats(delivered=2, dead=1, skipped=0)
    """

    delivered: int = 0
    dead: int = 0
    skipped: int = 0

    def add(self, other: RelayStats) -> None:
        self.delivered += other.delivered
        self.dead += other.dead
        self.skipped += other.skipped

    @property
    def handled(self) -> int:
        return self.delivered + self.dead + self.skipped


class OutboxRelay:
    """Deliver one channel's outbox with a consumer group ``group``: each message once, in order.

    **Delivery guarantee: at-least-once, once per reply id in effect.** An entry is XACKed only after the
    receiver answered 2xx (or after it was dead-lettered), one at a time, so a relay that crashes or is killed
    re-delivers on restart exactly the message it had in flight, with the same ``X-Pulse-Delivery`` (the reply
    id): a receiver that remembers delivery ids sees each reply once. On start the relay first re-reads its own
    pending entries (same ``consumer`` name), then takes over entries another consumer of the group left
    pending longer than ``claim_idle_ms`` (a relay that died on another host), then reads new ones. Messages
    are delivered one after another (a slow receiver holds up the channel, never reorders it).

    >>> OutboxRelay.__name__
    'OutboxRelay'
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        channel: str,
        webhook: Webhook,
        *,
        group: str = "relay",
        consumer: str = "relay",
        claim_idle_ms: int = 60_000,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.channel = channel
        self.webhook = webhook
        self.group = group
        self.consumer = consumer
        self.claim_idle_ms = claim_idle_ms
        self.key = outbox_key(prefix, channel)
        try:
            client.xgroup_create(self.key, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._own_pending = True  # a previous run's unfinished work first
        self._claim_cursor: str | None = "0-0"

    def _read(self, count: int, block_ms: int | None) -> list[tuple[Any, Any]]:
        if self._own_pending:
            reply: Any = self.client.xreadgroup(self.group, self.consumer, {self.key: "0"}, count=count)
            entries = reply[0][1] if reply else []
            if entries:
                return entries  # type: ignore[no-any-return]
            self._own_pending = False
        while self._claim_cursor is not None:
            claimed: Any = self.client.xautoclaim(self.key, self.group, self.consumer, self.claim_idle_ms,
                                                  start_id=self._claim_cursor, count=count)
            cursor = claimed[0].decode() if isinstance(claimed[0], bytes) else str(claimed[0])
            self._claim_cursor = None if cursor == "0-0" else cursor
            if claimed[1]:
                return claimed[1]  # type: ignore[no-any-return]
        reply = self.client.xreadgroup(self.group, self.consumer, {self.key: ">"}, count=count, block=block_ms)
        return reply[0][1] if reply else []

    def _handle(self, entry_id: Any, fields: Any) -> RelayStats:
        stats = RelayStats()
        if not fields:  # deleted while pending (trimmed by the stream's cap): nothing to send
            log.warning("outbox %s: entry %r was gone before it was delivered", self.channel, entry_id)
            stats.skipped += 1
        else:
            try:
                message = OutboxMessage.from_fields(fields)
            except ValueError as exc:
                raw = repr({_text(k): _text(v) for k, v in fields.items()}).encode()
                dead_letter(self.client, self.prefix, self.channel, _text(entry_id), raw,
                            f"not an outbox message: {exc}")
                stats.dead += 1
            else:
                result = self.webhook.deliver(message)
                if result.ok:
                    stats.delivered += 1
                else:
                    log.warning("outbox %s: %s not delivered: %s", self.channel, message.reply_id, result.reason)
                    dead_letter(self.client, self.prefix, self.channel, message.reply_id, message.to_json(),
                                result.reason or "failed")
                    stats.dead += 1
        self.client.xack(self.key, self.group, entry_id)
        return stats

    def run_once(self, count: int = 100, block_ms: int | None = None) -> RelayStats:
        """Deliver up to ``count`` entries (waiting up to ``block_ms`` for new ones); what happened."""
        stats = RelayStats()
        for entry_id, fields in self._read(count, block_ms):
            stats.add(self._handle(entry_id, fields))
        return stats

    def run(self, should_stop: Callable[[], bool], block_ms: int = 1000) -> RelayStats:
        """Deliver until ``should_stop()`` is true; totals."""
        total = RelayStats()
        while not should_stop():
            total.add(self.run_once(block_ms=block_ms))
        return total

    def drain(self) -> RelayStats:
        """Deliver everything queued now (pending entries included), then return."""
        total = RelayStats()
        while True:
            stats = self.run_once()
            total.add(stats)
            if not stats.handled and not self._own_pending and self._claim_cursor is None:
                return total


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
