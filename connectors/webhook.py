"""Deliver outbox replies to a webhook: signed with HMAC-SHA256, retried with backoff, dead-lettered.

Each delivery is an HTTP POST of the reply's body with the headers ``Content-Type:
application/json``, ``X-Pulse-Signature: sha256=<hex HMAC-SHA256 of the body with the shared
secret>``, ``X-Pulse-Delivery: <reply id>`` (the receiver's idempotency key) and ``X-Pulse-Channel``.
Connection errors, timeouts and HTTP 408/425/429/5xx are retried with exponential backoff (a
``Retry-After`` in seconds is honoured up to the backoff cap); other answers (4xx) fail at once. A
delivery that finally fails is appended to the dead-letter stream ``{prefix}dlq`` with the fields
of a dead letter (``raw`` = the body, ``reason``, ``source`` = ``webhook:{channel}``, ``key`` =
``outbox:{channel}:{reply_id}``, ``ts_received``), once per key.

>>> sign(b"s3cret", b'{"text":"hi"}')
'sha256=033b6215e0418d45ead2c73e9d3059b3efba91da4d5f556dc6aa782294cff195'
>>> verify_signature(b"s3cret", b'{"text":"hi"}', sign(b"s3cret", b'{"text":"hi"}'))
True
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.outbox import OutboxItem, outbox_key

__all__ = [
    "SIGNATURE_HEADER",
    "Delivery",
    "OutboxRelay",
    "RelayStats",
    "Webhook",
    "WebhookSink",
    "dead_letter",
    "sign",
    "verify_signature",
]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Pulse-Signature"
_RETRYABLE = {408, 425, 429}

_DEAD_LETTER_ONCE = """
if redis.call('SADD', KEYS[2], ARGV[4]) == 0 then
  return false
end
return redis.call('XADD', KEYS[1], '*', 'raw', ARGV[1], 'reason', ARGV[2], 'source', ARGV[3],
                  'key', ARGV[4], 'ts_received', ARGV[5])
"""


def sign(secret: bytes, body: bytes) -> str:
    """The signature header value for a body: ``sha256=`` and the hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """What a receiver does: recompute the signature and compare in constant time."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of delivering one reply: ``ok``, how many attempts, last HTTP status, why not.

    >>> Delivery(ok=True, attempts=3, status=200).ok
    True
    """

    ok: bool
    attempts: int
    status: int | None = None
    reason: str | None = None


class Webhook:
    """POST replies to ``url`` signed with ``secret``; up to ``max_attempts`` tries with backoff.

    The wait before retry ``n`` is ``backoff_initial * 2**(n-1)`` seconds, capped at ``backoff_max``.

    >>> Webhook("http://localhost:9/hook", b"k", max_attempts=0)
    Traceback (most recent call last):
    ...
    ValueError: max_attempts must be at least 1, got 0
    """

    def __init__(
        self,
        url: str,
        secret: bytes | str,
        *,
        timeout: float = 10.0,
        max_attempts: int = 5,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must be http:// or https://, got {url!r}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.url = url
        self.secret = secret.encode() if isinstance(secret, str) else secret
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._sleep = sleep

    def _post(self, item: OutboxItem) -> tuple[int | None, str | None, float | None]:
        """One attempt: (status, failure reason or None, Retry-After seconds or None)."""
        request = urllib.request.Request(
            self.url,
            data=item.body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(self.secret, item.body),
                "X-Pulse-Delivery": item.reply_id,
                "X-Pulse-Channel": item.channel,
                "User-Agent": "social-pulse-webhook/1",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
                return response.status, None, None
        except urllib.error.HTTPError as exc:
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
            wait = float(retry_after) if retry_after and retry_after.isdigit() else None
            return exc.code, f"HTTP {exc.code} {exc.reason}", wait
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return None, f"unreachable: {reason}", None

    def deliver(self, item: OutboxItem) -> Delivery:
        """Deliver one reply, retrying transient failures; never raises for HTTP or network trouble."""
        status: int | None = None
        reason: str | None = None
        for attempt in range(1, self.max_attempts + 1):
            status, reason, retry_after = self._post(item)
            if reason is None:
                return Delivery(ok=True, attempts=attempt, status=status)
            retryable = status is None or status in _RETRYABLE or status >= 500
            if not retryable:
                return Delivery(ok=False, attempts=attempt, status=status, reason=reason)
            if attempt < self.max_attempts:
                wait = min(self.backoff_initial * 2 ** (attempt - 1), self.backoff_max)
                if retry_after is not None:
                    wait = min(max(wait, retry_after), self.backoff_max)
                log.info("webhook %s: %s for %s; retry %d in %.2fs", self.url, reason, item.reply_id,
                         attempt + 1, wait)
                self._sleep(wait)
        return Delivery(ok=False, attempts=self.max_attempts, status=status,
                        reason=f"gave up after {self.max_attempts} attempts: {reason}")


def dead_letter(client: redis.Redis, prefix: str, item: OutboxItem, reason: str) -> str | None:
    """Append a failed delivery to ``{prefix}dlq`` (once per reply); the entry id, or None if already there."""
    key = f"outbox:{item.channel}:{item.reply_id}"
    script = client.register_script(_DEAD_LETTER_ONCE)
    result = script(
        keys=[f"{prefix}dlq", f"{prefix}dlq:seen"],
        args=[item.body, reason, f"webhook:{item.channel}", key, datetime.now(UTC).isoformat()],
    )
    return result.decode() if isinstance(result, bytes) else None


class _WebhookPartition(StatelessSinkPartition[OutboxItem]):
    def __init__(self, sink: WebhookSink) -> None:
        self._webhook = sink.webhook
        self._prefix = sink.prefix
        self._client = redis.Redis.from_url(sink.redis_url, socket_connect_timeout=5)

    def write_batch(self, items: list[OutboxItem]) -> None:
        for item in items:
            result = self._webhook.deliver(item)
            if not result.ok:
                log.warning("webhook delivery of %s failed: %s", item.reply_id, result.reason)
                dead_letter(self._client, self._prefix, item, result.reason or "failed")

    def close(self) -> None:
        self._client.close()


class WebhookSink(DynamicSink[OutboxItem]):
    """Bytewax sink delivering each :class:`~connectors.outbox.OutboxItem` with a :class:`Webhook`.

    **Delivery guarantee: at-least-once.** A restart may deliver a reply again; the receiver
    de-duplicates by the ``X-Pulse-Delivery`` header (the reply id). A reply that cannot be
    delivered after the retries goes to the dead-letter stream with its reason. Deliveries are
    sequential per worker; put the :class:`~connectors.outbox.OutboxSink` in the flow and an
    :class:`OutboxRelay` beside it when the webhook is slow.

    >>> WebhookSink(Webhook("http://localhost:9/hook", b"k"), "redis://localhost:6379").prefix
    'pulse:'
    """

    def __init__(self, webhook: Webhook, redis_url: str, prefix: str = "pulse:") -> None:
        self.webhook = webhook
        self.redis_url = redis_url
        self.prefix = prefix

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _WebhookPartition:
        return _WebhookPartition(self)


@dataclass(slots=True)
class RelayStats:
    """What a relay pass did.

    >>> RelayStats(delivered=2, dead=1)
    RelayStats(delivered=2, dead=1)
    """

    delivered: int = 0
    dead: int = 0


class OutboxRelay:
    """Deliver a channel's outbox stream to a webhook with a consumer group (``group``).

    Each entry is XACKed after it was delivered or dead-lettered, so a crashed relay re-delivers
    what it had not finished (its own pending entries come first on restart): at-least-once.

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
        group: str = "webhook",
        consumer: str = "relay",
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.channel = channel
        self.webhook = webhook
        self.group = group
        self.consumer = consumer
        self.key = outbox_key(prefix, channel)
        try:
            client.xgroup_create(self.key, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._backlog = True  # first read our own pending entries (a previous run's unfinished work)

    def run_once(self, count: int = 100, block_ms: int | None = None) -> RelayStats:
        """Deliver up to ``count`` entries (waiting up to ``block_ms`` for new ones); what happened."""
        stats = RelayStats()
        start = "0" if self._backlog else ">"
        reply: Any = self.client.xreadgroup(self.group, self.consumer, {self.key: start}, count=count,
                                       block=None if self._backlog else block_ms)
        entries = reply[0][1] if reply else []
        if self._backlog and not entries:
            self._backlog = False
            return self.run_once(count, block_ms)
        for entry_id, fields in entries:
            if fields:
                item = OutboxItem.from_fields(fields)
                result = self.webhook.deliver(item)
                if result.ok:
                    stats.delivered += 1
                else:
                    dead_letter(self.client, self.prefix, item, result.reason or "failed")
                    stats.dead += 1
            self.client.xack(self.key, self.group, entry_id)
        return stats

    def run(self, should_stop: Callable[[], bool], block_ms: int = 1000) -> RelayStats:
        """Deliver until ``should_stop()`` is true; totals."""
        total = RelayStats()
        while not should_stop():
            stats = self.run_once(block_ms=block_ms)
            total.delivered += stats.delivered
            total.dead += stats.dead
        return total
