"""Identity resolution: a mention's ``(channel, handle)`` -> customer id, prospects and their merge.

Handles are compared normalised (lower case, no leading ``@``, no surrounding spaces). An author with
no linked customer becomes a prospect ``p:{channel}:{handle}`` whose profile accumulates their mentions;
:func:`merge_prospect` (or a link code, or a customer import naming the handle) moves that history to
a customer, leaving the prospect as a pointer so late events still land on the customer.

>>> normalize_handle("  @DeltaFan ")
'deltafan'
>>> prospect_id("twitter", "@DeltaFan")
'p:twitter:deltafan'
"""

from __future__ import annotations

from dataclasses import dataclass

from crm.errors import CrmError
from crm.store import CrmStore

__all__ = ["Identity", "is_prospect_id", "merge_prospect", "normalize_handle", "prospect_id", "resolve_identity"]


def normalize_handle(handle: str) -> str:
    """The form handles are stored and looked up in."""
    return handle.strip().lstrip("@").strip().lower()


def prospect_id(channel: str, handle: str) -> str:
    return f"p:{channel.strip().lower()}:{normalize_handle(handle)}"


def is_prospect_id(customer_id: str) -> bool:
    """
    >>> is_prospect_id("p:twitter:bob"), is_prospect_id("C-100")
    (True, False)
    """
    return customer_id.startswith("p:")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who wrote a mention: a customer, a prospect (not yet known), or nobody (no handle).

    >>> Identity("p:twitter:bob", prospect=True).customer_id
    'p:twitter:bob'
    """

    customer_id: str | None
    prospect: bool = False


def resolve_identity(store: CrmStore, channel: str, handle: str) -> Identity:
    """Look the author up; an unknown author is a (possibly not yet stored) prospect."""
    h = normalize_handle(handle)
    ch = channel.strip().lower()
    if not h:
        return Identity(None)
    owner = store.lookup_identity(ch, h)
    if owner is None:
        return Identity(prospect_id(ch, h), prospect=True)
    record = store.get_customer(owner)
    if record and record.get("merged_into"):
        owner = record["merged_into"]
        record = store.get_customer(owner)
    return Identity(owner, prospect=bool(record and record.get("kind") == "prospect"))


def merge_prospect(store: CrmStore, prospect: str, customer_id: str, *, now_ms: int, keep: int = 50) -> bool:
    """Move a prospect's handles, mentions, cases and counters to ``customer_id``.

    Returns False when there was nothing to merge (already merged); raises for unknown targets.
    """
    target = store.get_customer(customer_id)
    if not target or target.get("kind") != "customer":
        raise CrmError(f"cannot merge into {customer_id!r}: no such customer")
    source = store.get_customer(prospect)
    if not source:
        raise CrmError(f"cannot merge {prospect!r}: no such prospect")
    if source.get("kind") == "merged":
        return False
    if source.get("kind") != "prospect":
        raise CrmError(f"cannot merge {prospect!r}: it is a customer, not a prospect")
    return store.merge_prospect(prospect, customer_id, now_ms, keep)
