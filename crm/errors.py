"""The CRM's errors: each one says in one line what is wrong, so a CLI prints it and a flow dead-letters it.

>>> raise LinkCodeError("link code LINK-ABCD2345 has expired")
Traceback (most recent call last):
...
crm.errors.LinkCodeError: link code LINK-ABCD2345 has expired
"""

from __future__ import annotations

__all__ = [
    "CaseError",
    "CrmError",
    "CrmInputError",
    "CustomerImportError",
    "KnowledgeBaseError",
    "LinkCodeError",
    "RuleError",
    "AgentError",
]


class CrmError(ValueError):
    """Base of every CRM error; the message is a complete sentence for a user."""


class CrmInputError(CrmError):
    """A record handed to the CRM that it cannot use (missing id, bad timestamp, ...); dead-letter it."""


class LinkCodeError(CrmError):
    """A link code that is unknown, expired, already used, or would steal a handle from another customer."""


class CaseError(CrmError):
    """An operation on a case that does not exist or is closed."""


class AgentError(CrmError):
    """An agent that does not exist or a bad agent setting."""


class RuleError(CrmError):
    """A business rules file that cannot be used; names the file, the rule and the line."""


class CustomerImportError(CrmError):
    """A customer file that cannot be read at all (missing file, no id column, unreadable format)."""


class KnowledgeBaseError(CrmError):
    """Knowledge-base articles that cannot be read."""
