"""The CRM's outbox port: how replies, DM requests and rule messages become outbox stream entries.

The CRM decides *what* to send (a plain dict per message with the contract's field names: ``reply_id``,
``kind``, ``channel``, ``brand``, ``in_reply_to``, ``case_id``, ``customer_id``, ``agent``, ``text``, ``url``,
``ts``) and writes it inside its own Lua scripts, atomically with the case update and once per reply id
(the mark ``{prefix}outbox:sent:{reply_id}``). *How* an entry is encoded belongs to the outbox contract,
which lives in ``connectors/outbox.py``; ``crm/`` never imports it. Whoever builds a
:class:`~crm.processor.CrmProcessor` that sends (``stream/`` does, for the flow and for agents) injects an
:class:`OutboxEncoder`: ``connectors.outbox.ENCODING`` is the adapter. A processor built without one refuses
to send, with :class:`NoOutbox`'s clear error, instead of writing entries no reader understands.

>>> NO_OUTBOX.encode({"reply_id": "r-1"})
Traceback (most recent call last):
...
crm.errors.CaseError: this CRM has no outbox: build the CrmProcessor with outbox=connectors.outbox.ENCODING (stream/ does)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from crm.errors import CaseError

__all__ = ["NO_OUTBOX", "WEBHOOK_CHANNEL", "NoOutbox", "OutboxEncoder"]

#: The channel of rule webhooks (their stream is :attr:`crm.keys.CrmKeys.webhooks`).
WEBHOOK_CHANNEL = "webhook"


@runtime_checkable
class OutboxEncoder(Protocol):
    """The port: a message dict in, the XADD field list out (``ValueError`` for a message the contract
    refuses); ``maxlen`` caps each channel's stream (``XADD MAXLEN ~``)."""

    maxlen: int

    def encode(self, message: Mapping[str, Any]) -> list[str]: ...


class NoOutbox:
    """The stand-in when nothing was injected: every send is refused with a clear error."""

    maxlen: int = 0

    def encode(self, message: Mapping[str, Any]) -> list[str]:
        raise CaseError("this CRM has no outbox: build the CrmProcessor with outbox=connectors.outbox.ENCODING "
                        "(stream/ does)")


NO_OUTBOX = NoOutbox()
