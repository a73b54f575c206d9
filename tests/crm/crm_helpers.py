"""Constants and small helpers shared by the CRM tests (a uniquely named module, importable from tests)."""

from __future__ import annotations

from crm.sla import iso_ms

T0 = 1_714_557_600_000  # 2024-05-01T10:00:00Z
MIN = 60_000


def iso(ms: int) -> str:
    return iso_ms(ms)
