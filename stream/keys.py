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

__all__ = ["AUDIT_MAXLEN", "GRANULARITIES", "INCIDENT_EVENTS_KEPT", "INCIDENT_RETENTION_S", "Keys"]


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "pulse:"

    # -- windows: per minute ("m"), hour roll-up ("h"), day roll-up ("d") -------------------
    def window(self, brand: str, channel: str, bucket: str, gran: str = "m") -> str:
        """Hash of one window's counters for brand x channel (``bucket`` from :meth:`bucket_id`)."""
        return f"{self.prefix}{gran}:{{{brand}}}:{channel}:{bucket}"

    def authors(self, brand: str, channel: str, bucket: str, gran: str = "m") -> str:
        """HyperLogLog of one window's distinct authors."""
        hll = "hll" if gran == "m" else f"hll{gran}"
        return f"{self.prefix}{hll}:{{{brand}}}:{channel}:{bucket}"

    def windows_index(self, brand: str, channel: str, gran: str = "m") -> str:
        """Sorted set of the bucket ids that have a window (score = window start, epoch ms)."""
        return f"{self.prefix}{gran}i:{{{brand}}}:{channel}"

    def response_times(self, brand: str, channel: str) -> str:
        """Sorted set of first response times: member = mention id, score = response time in ms."""
        return f"{self.prefix}rt:{{{brand}}}:{channel}"

    def response_times_at(self, brand: str, channel: str) -> str:
        """Sorted set: member = mention id, score = the mention's event time (ms), to filter by range."""
        return f"{self.prefix}rtt:{{{brand}}}:{channel}"

    def unanswered(self, brand: str, channel: str) -> str:
        """Sorted set of queries unanswered within the SLA: member mention id, score = mention time."""
        return f"{self.prefix}ua:{{{brand}}}:{channel}"

    def sketch(self, brand: str, channel: str, bucket: str, gran: str = "h") -> str:
        """Hash ``DDSketch bucket -> count`` of the first response times of one hour (``h``) or day (``d``)
        window's mentions (:mod:`stream.sketch`)."""
        return f"{self.prefix}sk{gran}:{{{brand}}}:{channel}:{bucket}"

    @property
    def response_cutoff(self) -> str:
        """Hash ``brand|channel -> event ms``: exact response times and unanswered ids of mentions before it are
        forgotten (``response_retention_seconds`` behind the series' newest mention)."""
        return f"{self.prefix}rcut"

    @property
    def response_oldest(self) -> str:
        """Hash ``brand|channel -> event ms`` of the oldest mention that got a response: when it is not before
        the cut-off, the exact values are complete."""
        return f"{self.prefix}rmin"

    @property
    def response_newest(self) -> str:
        """Hash ``brand|channel -> event ms`` of the newest mention (the cut-off follows it)."""
        return f"{self.prefix}rnew"

    @property
    def pending(self) -> str:
        """Hash ``mention id -> reply-matching record`` (:mod:`stream.replies`), at most ``pending_keep`` of them."""
        return f"{self.prefix}pend"

    @property
    def pending_at(self) -> str:
        """Sorted set ``mention id -> event ms`` of :attr:`pending`, to forget old records."""
        return f"{self.prefix}pend:t"

    @property
    def high_water(self) -> str:
        """The newest event time (ms) reply matching has seen (a placeholder's time when its mention is not known)."""
        return f"{self.prefix}hw"

    def seen(self, day: str) -> str:
        """Hash ``record id -> run/offset`` of the records accepted for event day ``day`` (``YYYYmmdd``): which
        run accepted each id first, for de-duplication across runs (:mod:`stream.dedupe`)."""
        return f"{self.prefix}seen:{day}"

    @property
    def seen_days(self) -> str:
        """Sorted set of the days that have a :meth:`seen` hash (score = day start, epoch ms)."""
        return f"{self.prefix}seen:days"

    @property
    def runs(self) -> str:
        """Hash ``run id -> JSON`` describing each run that wrote here (source, first and last write)."""
        return f"{self.prefix}runs"

    # -- audience: new authors, active customers, sentiment around replies (stream/insights.py) ----------
    def first_authors(self, brand: str) -> str:
        """Hash ``author -> "first ms\tchannel\tminute"``: each author's first mention of the brand
        (written by the reply-matching script; authors first seen ``author_retention_seconds`` before the
        brand's newest are forgotten)."""
        return f"{self.prefix}af:{{{brand}}}"

    def first_authors_at(self, brand: str) -> str:
        """Sorted set ``author -> first ms`` (the index of :meth:`first_authors`)."""
        return f"{self.prefix}aft:{{{brand}}}"

    def customers_active(self, brand: str, channel: str, bucket: str, gran: str = "d") -> str:
        """HyperLogLog of the CRM customers who mentioned the brand on a channel in an hour or day window."""
        return f"{self.prefix}hllk{gran}:{{{brand}}}:{channel}:{bucket}"

    def channel_owned(self, brand: str) -> str:
        """Hash ``channel -> 1 (the brand's own community) or 0 (a third-party web)``."""
        return f"{self.prefix}owned:{{{brand}}}"

    def sentiment_timeline(self, customer: str) -> str:
        """Sorted set ``mention id|sentiment score -> event ms`` of a customer's (or handle's) mentions, the last
        ``timeline_retention_seconds`` (60 days) of event time behind their newest, and none more than twice that
        behind the flow's watermark (:mod:`stream.retention`)."""
        return f"{self.prefix}snt:{customer}"

    @property
    def sentiment_timelines_at(self) -> str:
        """Sorted set ``customer -> event ms of the oldest mention in their timeline``: what finds the timelines
        holding mentions that fell behind the flow's watermark (:mod:`stream.retention`)."""
        return f"{self.prefix}snti"

    @property
    def watermarks(self) -> str:
        """Hash ``brand|channel -> event ms`` of each series' confirmed newest event time, and ``*`` -> the
        flow's (the newest of all): what event-time retention follows (:mod:`stream.retention`)."""
        return f"{self.prefix}wm"

    def replied(self, brand: str) -> str:
        """Sorted set ``mention id\tcustomer\tchannel\tagent -> reply ms`` of the brand's first responses."""
        return f"{self.prefix}rp:{{{brand}}}"

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
        """Hash of per-source counters, absolute per run: fields ``{source}@{run}|offered`` etc."""
        return f"{self.prefix}stats"

    @property
    def dlq(self) -> str:
        """Stream of dead letters (raw record, reason, source)."""
        return f"{self.prefix}dlq"

    @property
    def dlq_seen(self) -> str:
        """Sorted set of the record keys already in the dead-letter stream (keeps it idempotent; capped like the
        stream, oldest first out)."""
        return f"{self.prefix}dlq:marks"

    @property
    def late(self) -> str:
        """Sorted set of mention ids that arrived after their window was final (score: event ms; also in the
        dead-letter stream), the newest million kept."""
        return f"{self.prefix}late:ids"

    @property
    def latest(self) -> str:
        """Sorted set of the latest enriched mentions (member JSON, score = event time ms)."""
        return f"{self.prefix}latest"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}alerts"

    @property
    def alerts_seen(self) -> str:
        """Sorted set of the alert states already in the alerts stream (capped like the stream)."""
        return f"{self.prefix}alerts:marks"

    @property
    def alerts_current(self) -> str:
        """Hash of alert id -> its newest state (an incident's open/update/resolved share one id); an alert goes
        ``alert_retention_seconds`` (event time) after its window."""
        return f"{self.prefix}alerts:current"

    @property
    def alerts_current_at(self) -> str:
        """Sorted set ``alert id -> its window start (ms)``, the index :attr:`alerts_current` retires by."""
        return f"{self.prefix}alerts:current:t"

    @property
    def alerts_live(self) -> str:
        """Pub/sub channel for alert push."""
        return f"{self.prefix}alerts:live"

    @property
    def calls(self) -> str:
        """Hash of call volume: field ``brand|queue|minute`` -> calls, kept ``calls_retention_seconds``."""
        return f"{self.prefix}calls"

    @property
    def calls_at(self) -> str:
        """Sorted set ``brand|queue|minute -> minute start (ms)``, the index :attr:`calls` retires by."""
        return f"{self.prefix}calls:t"

    @property
    def churn(self) -> str:
        return f"{self.prefix}churn"

    @property
    def churn_reasons(self) -> str:
        """Hash customer -> JSON list of the top reasons of their churn risk (capped with ``churn``)."""
        return f"{self.prefix}churn:reasons"

    @property
    def feedback(self) -> str:
        """Stream of labels from agents and analysts (``{mention_id, model, label}``) the flow learns from."""
        return f"{self.prefix}feedback"

    @property
    def prequential_state(self) -> str:
        """The flow's prequential bookkeeping (pickled), so a restart goes on counting where it was."""
        return f"{self.prefix}flow:prequential"

    def features(self, hour: str) -> str:
        """Hash ``mention id -> what the models saw and predicted``, per hour of event time (``YYYYmmddHH``).

        Feedback names only a mention id; its text is looked up here. One hash per hour keeps the write
        to one command per batch (and lets whole hours go: :mod:`stream.retention` deletes an hour
        ``features_retention_seconds`` of event time after it ended).
        """
        return f"{self.prefix}x:{hour}"

    @property
    def features_hours(self) -> str:
        """Sorted set of the hours that have a features hash (score = hour start, epoch ms)."""
        return f"{self.prefix}x:hours"

    # -- the dashboard's desks: incident handling and the audit trail ----------------------
    def incident(self, alert_id: str) -> str:
        """Hash of an incident's handling (``status``, who acknowledged/closed it and when, notice drafts as
        ``notice:{channel}`` JSON); the alert id is the hash tag, so it shares a slot with its timeline.
        Expires :data:`INCIDENT_RETENTION_S` after the last action."""
        return f"{self.prefix}incident:{{{alert_id}}}"

    def incident_events(self, alert_id: str) -> str:
        """List of JSON events of an incident's handling (acknowledged, notice approved/sent, closed), oldest
        first; capped at :data:`INCIDENT_EVENTS_KEPT` and expiring with :meth:`incident`."""
        return f"{self.prefix}incident:{{{alert_id}}}:events"

    @property
    def audit(self) -> str:
        """Stream of who did what from the dashboard or the CLI (``ts``, ``user``, ``action``, ``target``,
        ``detail``, ``outcome``); trimmed to about :data:`AUDIT_MAXLEN` entries."""
        return f"{self.prefix}audit"

    def input_stream(self, n: int) -> str:
        return f"{self.prefix}in:{n}"

    def outbox(self, channel: str) -> str:
        return f"{self.prefix}outbox:{channel}"

    # -- helpers -------------------------------------------------------------------------
    @staticmethod
    def minute_id(ts_ms: int) -> str:
        return Keys.bucket_id("m", ts_ms)

    @staticmethod
    def bucket_id(gran: str, start_ms: int) -> str:
        """``YYYYmmddHHMM`` for minutes, ``YYYYmmddHH`` for hours, ``YYYYmmdd`` for days.

        >>> Keys.bucket_id("h", 1704110400000)
        '2024010112'
        """
        return datetime.fromtimestamp(start_ms // 1000, tz=UTC).strftime(_BUCKET_FORMATS[gran])

    @staticmethod
    def bucket_start_ms(gran: str, bucket: str) -> int:
        dt = datetime.strptime(bucket, _BUCKET_FORMATS[gran]).replace(tzinfo=UTC)
        return int(dt.timestamp() * 1000)


#: An incident's handling is kept this long after its last action (30 days).
INCIDENT_RETENTION_S = 30 * 86_400
#: Handling events kept per incident.
INCIDENT_EVENTS_KEPT = 200
#: Entries kept (approximately) in the audit stream.
AUDIT_MAXLEN = 100_000

#: Window granularities: name -> length in ms.
GRANULARITIES = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}
_BUCKET_FORMATS = {"m": "%Y%m%d%H%M", "h": "%Y%m%d%H", "d": "%Y%m%d"}
