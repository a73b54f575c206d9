"""The audit trail: who did what, when, from the dashboard or the command line (a bounded Redis stream).

Every action a person takes on the engine (answer or resolve a case, acknowledge or close an incident,
approve or send a notice, roll back a model, label mentions) is recorded once here by the service function
that performs it, with the user, the target and the outcome. The stream keeps about
:data:`stream.keys.AUDIT_MAXLEN` entries.

>>> e = AuditEntry(ts="2024-01-01T10:00:00+00:00", user="ann", action="incident.acknowledge",
...                target="spike:acme:twitter:202401011000", detail={"note": "on it"})
>>> AuditEntry.from_fields(dict(zip(e.fields()[::2], e.fields()[1::2]))) == e
True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import redis

from stream.keys import AUDIT_MAXLEN, Keys

__all__ = ["AuditEntry", "AuditError", "check_user", "recent_actions", "record_action"]

log = logging.getLogger(__name__)

#: The longest user name recorded (a name is what a person typed or what the identity provider gave).
MAX_USER_CHARS = 120


class AuditError(ValueError):
    """An action without a usable user: nothing is done or recorded."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded action: ``outcome`` is ``ok`` or what went wrong; ``detail`` is plain JSON."""

    ts: str
    user: str
    action: str
    target: str
    detail: dict[str, Any] = field(default_factory=dict)
    outcome: str = "ok"

    def fields(self) -> list[str]:
        """``[name, value, ...]``: the arguments of an XADD."""
        return ["ts", self.ts, "user", self.user, "action", self.action, "target", self.target,
                "detail", orjson.dumps(self.detail).decode(), "outcome", self.outcome]

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> AuditEntry:
        def text(name: str) -> str:
            v = fields.get(name.encode(), fields.get(name, b""))
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v or "")

        try:
            detail = orjson.loads(text("detail") or "{}")
        except orjson.JSONDecodeError:
            detail = {"raw": text("detail")}
        return cls(ts=text("ts"), user=text("user"), action=text("action"), target=text("target"),
                   detail=detail if isinstance(detail, dict) else {"value": detail},
                   outcome=text("outcome") or "ok")


def check_user(user: str | None) -> str:
    """The user an action is recorded under, stripped; :class:`AuditError` when there is none.

    >>> check_user("  ann ")
    'ann'
    >>> check_user("")
    Traceback (most recent call last):
    ...
    stream.audit.AuditError: an action needs a signed-in user
    """
    name = (user or "").strip()
    if not name:
        raise AuditError("an action needs a signed-in user")
    if len(name) > MAX_USER_CHARS or any(ord(c) < 32 for c in name):
        raise AuditError(f"user name must be at most {MAX_USER_CHARS} printable characters")
    return name


def record_action(client: redis.Redis | redis.client.Pipeline, keys: Keys, user: str, action: str, target: str,
                  detail: dict[str, Any] | None = None, outcome: str = "ok", ts: str | None = None) -> None:
    """Append one action to the audit stream (on a client, or queued on a pipeline)."""
    entry = AuditEntry(ts=ts or datetime.now(UTC).isoformat(), user=check_user(user), action=action,
                       target=target, detail=detail or {}, outcome=outcome)
    f = entry.fields()
    client.xadd(keys.audit, dict(zip(f[::2], f[1::2], strict=True)), maxlen=AUDIT_MAXLEN, approximate=True)
    log.info("audit: %s %s %s (%s)", entry.user, action, target, outcome)


def recent_actions(client: redis.Redis, keys: Keys, n: int = 100, user: str | None = None,
                   target: str | None = None) -> list[AuditEntry]:
    """The newest ``n`` recorded actions, newest first (optionally one user's, or on one target)."""
    out: list[AuditEntry] = []
    last: str | None = None
    # Filtering reads further back, a bounded number of pages at a time.
    for _ in range(20):
        entries: Any = client.xrevrange(keys.audit, max=f"({last}" if last else "+", count=max(n, 200)) or []
        if not entries:
            break
        for _entry_id, fields in entries:
            e = AuditEntry.from_fields(fields)
            if (user is None or e.user == user) and (target is None or e.target == target):
                out.append(e)
                if len(out) >= n:
                    return out
        last = entries[-1][0].decode() if isinstance(entries[-1][0], bytes) else entries[-1][0]
        if user is None and target is None:
            break
    return out
