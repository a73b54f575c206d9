"""Value-exchange linking: one-time, expiring codes that tie a social handle to a known customer.

The brand gives a customer a code (``pulse crm link-code CUSTOMER``), e.g. in exchange for a voucher;
when a mention or DM containing the code arrives, its author's handle is linked to that customer and
any prospect profile of that handle is merged in. A code works once (the same handle may present it
again harmlessly), and not after it expires (in event time).

>>> find_link_codes("hi! my code is link-7kq2mx9d, thanks", "LINK")
['LINK-7KQ2MX9D']
>>> find_link_codes("no code here", "LINK")
[]
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from functools import lru_cache

from crm.errors import LinkCodeError
from crm.identity import normalize_handle
from crm.store import CrmStore

__all__ = ["LinkCode", "LinkResult", "find_link_codes", "issue_link_code", "redeem_link_code"]

#: No 0/O, 1/I/L: codes are read off screens and typed on phones.
_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
_CODE_LEN = 8


@dataclass(frozen=True, slots=True)
class LinkCode:
    """An issued code and when it stops working (epoch ms).

    >>> LinkCode("LINK-ABCD2345", "c1", 0, 1000).customer_id
    'c1'
    """

    code: str
    customer_id: str
    created_ms: int
    expires_ms: int


@dataclass(frozen=True, slots=True)
class LinkResult:
    """A successful redemption: the customer now owning the handle, and the prospect merged, if any.

    >>> LinkResult("LINK-ABCD2345", "c1", "twitter:bob", merged_prospect=None).customer_id
    'c1'
    """

    code: str
    customer_id: str
    handle: str
    merged_prospect: str | None

    def to_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "customer_id": self.customer_id, "handle": self.handle,
                "merged_prospect": self.merged_prospect, "status": "linked"}


@lru_cache(maxsize=8)
def _pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"\b{re.escape(prefix)}-([{_ALPHABET}]{{{_CODE_LEN}}})\b", re.IGNORECASE)


def find_link_codes(text: str, prefix: str = "LINK") -> list[str]:
    """Codes that appear in ``text``, normalised to upper case."""
    if prefix.lower() not in text.lower():
        return []
    return [f"{prefix.upper()}-{m.upper()}" for m in _pattern(prefix).findall(text)]


def issue_link_code(store: CrmStore, customer_id: str, *, now_ms: int, ttl_hours: float = 168.0,
                    prefix: str = "LINK") -> LinkCode:
    """A fresh code for a known customer, valid ``ttl_hours`` from ``now_ms``."""
    record = store.get_customer(customer_id)
    if not record or record.get("kind") != "customer":
        raise LinkCodeError(f"no customer {customer_id!r}: import the customer before issuing a link code")
    if ttl_hours <= 0:
        raise LinkCodeError(f"link code lifetime must be > 0 hours, got {ttl_hours}")
    expires = now_ms + int(ttl_hours * 3_600_000)
    for _ in range(8):
        code = f"{prefix.upper()}-" + "".join(secrets.choice(_ALPHABET) for _ in range(_CODE_LEN))
        if store.put_link_code(code, customer_id, now_ms, expires):
            return LinkCode(code, customer_id, now_ms, expires)
    raise LinkCodeError("could not find an unused link code; try again")  # pragma: no cover - 31^8 codes


def redeem_link_code(store: CrmStore, code: str, channel: str, handle: str, *, mention_id: str, now_ms: int,
                     keep: int = 50) -> LinkResult:
    """Link ``handle`` on ``channel`` to the code's customer, or raise :class:`LinkCodeError` saying why."""
    code = code.strip().upper()
    ch = channel.strip().lower()
    h = normalize_handle(handle)
    if not h:
        raise LinkCodeError(f"link code {code} arrived without an author handle to link")
    status, customer, detail = store.redeem_link_code(code, ch, h, mention_id, now_ms, keep)
    if status == "linked":
        return LinkResult(code, customer, f"{ch}:{h}", detail or None)
    if status == "unknown":
        raise LinkCodeError(f"link code {code} is unknown")
    if status == "used":
        raise LinkCodeError(f"link code {code} was already used by {detail}")
    if status == "expired":
        raise LinkCodeError(f"link code {code} has expired")
    if status == "taken":
        raise LinkCodeError(f"link code {code}: handle {ch}:{h} already belongs to customer {detail}")
    raise LinkCodeError(f"link code {code}: unexpected outcome {status!r}")  # pragma: no cover
