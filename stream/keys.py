"""The flow's Redis key layout (ARCHITECTURE.md, "Redis layout"); every reader and writer goes through here.

Hash tags ``{brand}`` keep one brand's keys on one Redis Cluster slot.

>>> k = Keys("pulse:")
>>> k.window("acme", "twitter", "202401011200")
'pulse:m:{acme}:twitter:202401011200'
>>> k.minute_id(1704110400000)
'202401011200'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["Keys"]


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "pulse:"

    # -- per-minute windows --------------------------------------------------------------
    def window(self, brand: str, channel: str, minute: str) -> str:
        """Hash of one minute's counters for brand x channel."""
        return f"{self.prefix}m:{{{brand}}}:{channel}:{minute}"

    def authors(self, brand: str, channel: str, minute: str) -> str:
        """HyperLogLog of one minute's distinct authors."""
        return f"{self.prefix}hll:{{{brand}}}:{channel}:{minute}"

    def minutes(self, brand: str, channel: str) -> str:
        """Sorted set of the minute ids that have a window (score = minute start, epoch ms)."""
        return f"{self.prefix}mi:{{{brand}}}:{channel}"

    def response_times(self, brand: str, channel: str) -> str:
        """Sorted set of first responses: member ``mention_id|ms``, score = reply event time (epoch ms)."""
        return f"{self.prefix}rt:{{{brand}}}:{channel}"

    def unanswered(self, brand: str, channel: str) -> str:
        """Sorted set of queries unanswered within the SLA: member mention id, score = mention time."""
        return f"{self.prefix}ua:{{{brand}}}:{channel}"

    def brand_authors(self, brand: str) -> str:
        """HyperLogLog of every author ever seen for a brand (for attraction rate)."""
        return f"{self.prefix}hll:{{{brand}}}:all"

    @property
    def brands(self) -> str:
        """Set of brands seen."""
        return f"{self.prefix}brands"

    def channels(self, brand: str) -> str:
        """Set of channels seen for a brand."""
        return f"{self.prefix}channels:{{{brand}}}"

    # -- flow bookkeeping ----------------------------------------------------------------
    @property
    def stats(self) -> str:
        """Hash of absolute per-source counters: fields ``{source}|offered`` etc."""
        return f"{self.prefix}stats"

    @property
    def dlq(self) -> str:
        """Stream of dead letters (raw record, reason, source)."""
        return f"{self.prefix}dlq"

    @property
    def dlq_seen(self) -> str:
        """Set of record keys already in the dead-letter stream (keeps it idempotent)."""
        return f"{self.prefix}dlq:seen"

    @property
    def latest(self) -> str:
        """Sorted set of the latest enriched mentions (member JSON, score = event time ms)."""
        return f"{self.prefix}latest"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}alerts"

    @property
    def alerts_seen(self) -> str:
        return f"{self.prefix}alerts:seen"

    @property
    def alerts_live(self) -> str:
        """Pub/sub channel for alert push."""
        return f"{self.prefix}alerts:live"

    @property
    def calls(self) -> str:
        """Hash of call volume: field ``queue|minute`` -> calls."""
        return f"{self.prefix}calls"

    @property
    def churn(self) -> str:
        return f"{self.prefix}churn"

    @property
    def feedback(self) -> str:
        return f"{self.prefix}feedback"

    def input_stream(self, n: int) -> str:
        return f"{self.prefix}in:{n}"

    def outbox(self, channel: str) -> str:
        return f"{self.prefix}outbox:{channel}"

    # -- helpers -------------------------------------------------------------------------
    @staticmethod
    def minute_id(ts_ms: int) -> str:
        return datetime.fromtimestamp(ts_ms // 60_000 * 60, tz=UTC).strftime("%Y%m%d%H%M")

    @staticmethod
    def minute_start_ms(minute: str) -> int:
        dt = datetime.strptime(minute, "%Y%m%d%H%M").replace(tzinfo=UTC)
        return int(dt.timestamp() * 1000)
