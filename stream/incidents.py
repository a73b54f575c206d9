"""Spike detection in the flow: one :class:`models.SpikeAlerter` per brand, fed closed minute windows.

Each brand x channel is a series, and so is each topic (the mentions' department) within it once the
brand x channel is dense enough to be watched at 5-minute intervals or finer (a series watched hourly has
too few mentions to split: its topic series could never reach an alert's minimum excess, and would only
triple the work per mention of sparse streams). The alerter
watches each series at its own interval (1, 5 or 60 minutes, from its density) and costs O(1) per window
whatever the gap since the last one, so sparse real streams cost what dense ones do. Alerts come out as
:class:`stream.schema.Alert` with one id per incident (open, update, resolved), written once per
(id, message) and kept current per id for the dashboard.

>>> logic = SpikeLogic(resume_state=None)
>>> out, _ = logic.on_item(("closed", "acme", "twitter", 1704103200000, 4, 0, ["t:1"], ["wifi"],
...                          {"service": (3, 0), "sales": (1, 0)}))
>>> out
[]
"""

from __future__ import annotations

from typing import Any

from bytewax.operators import StatefulLogic

from models import SpikeAlerter
from stream.schema import Alert

__all__ = ["TOPICS", "TOPIC_MAX_INTERVAL_S", "SpikeLogic"]

#: The topic series of every brand x channel: the departments mentions are routed to.
TOPICS = ("service", "sales", "marketing", "pr")
#: Topic series are watched only within a brand x channel watched at this interval or finer (seconds).
TOPIC_MAX_INTERVAL_S = 300


class SpikeLogic(StatefulLogic[tuple[Any, ...], tuple[str, Alert], SpikeAlerter]):
    """State of one brand: its alerter (per-series detectors and open incidents)."""

    def __init__(self, resume_state: SpikeAlerter | None) -> None:
        self.alerter = resume_state if resume_state is not None else SpikeAlerter(window_s=60.0)

    def on_item(self, value: tuple[Any, ...]) -> tuple[list[tuple[str, Alert]], bool]:
        _, brand, channel, start_ms, mentions, negative, samples, terms, topics = value
        start = start_ms / 1000  # epoch seconds: what the alerter reads a datetime as, without building one
        alerts = self.alerter.update(brand, channel, start, mentions, sample_ids=samples, top_terms=terms,
                                     negative=negative)
        interval = self.alerter.interval_of(brand, channel)
        split = interval is not None and interval <= TOPIC_MAX_INTERVAL_S
        for topic in TOPICS:
            n, neg = topics.get(topic, (0, 0))
            if not (n and split) and not self.alerter.waiting(brand, channel, topic):
                # an empty window changes nothing the next one would not (gaps are implicit zeros); a topic
                # series already open is still fed until it has nothing pending
                continue
            alerts += self.alerter.update(brand, channel, start, n, sample_ids=samples, top_terms=terms,
                                          topic=topic, negative=neg)
        return [("alert", Alert.from_dict(a)) for a in alerts], StatefulLogic.RETAIN

    def on_eof(self) -> tuple[list[tuple[str, Alert]], bool]:
        return [("alert", Alert.from_dict(a)) for a in self.alerter.close_all()], StatefulLogic.RETAIN

    def snapshot(self) -> SpikeAlerter:
        return self.alerter
