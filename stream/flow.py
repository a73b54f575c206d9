"""The Social Pulse dataflow: named steps only; each step's logic lives in the module it belongs to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from connectors.records import RawRecord
from stream import steps
from stream.settings import Settings

__all__ = ["build_flow"]


def build_flow(source: Source[RawRecord], settings: Settings, sink: Sink[Any], redis_url: str | None = None,
               live: Sequence[Source[RawRecord]] = (), flow_id: str = "social_pulse", run_id: str = "0") -> Dataflow:
    """Wire the flow: parse, dead letters, dedupe, classify, CRM, churn, replies, windows, spikes -> Redis.

    ``redis_url`` is where records are de-duplicated, the models start from their checkpoint and feedback
    looks up mentions; ``live`` are extra (endless) inputs of live runs: labels, the brand's own replies;
    ``run_id`` names this run (stream/runs.py). No keyed step comes before the windows except the single
    models and churn keys, so every brand x channel sees its records in input order.
    """
    redis_url = redis_url or getattr(sink, "url", None)  # the sink's server, when not given
    s = steps.Steps(settings, redis_url, run_id)
    flow = Dataflow(flow_id)
    raw = op.input("read", flow, source)  # RawRecord
    for n, extra in enumerate(live):
        raw = op.merge(f"with_live_input_{n}", raw, op.input(f"read_live_input_{n}", flow, extra))
    parsed = op.map("parse", raw, steps.parse)  # Parsed(source, key, record)
    split = op.branch("split_dead_letters", parsed, steps.is_valid)  # trues: records, falses: DeadLetter
    checked = op.flat_map_batch("dedupe", split.trues, s.dedupe)  # (is_duplicate, Parsed), in input order
    outcomes = op.merge("merge_outcomes", op.map("dead_outcome", split.falses, steps.dead_outcome),
                        op.map("dedupe_outcome", checked, steps.dedupe_outcome))  # (source, outcome)
    counted = op.stateful("count_outcomes", op.key_on("key_by_source", outcomes, steps.first), s.counter)
    fresh = op.filter_map("drop_duplicates", checked, steps.fresh_record)  # Mention | CallVolume | ChurnOutcome
    calls = op.filter_map("calls_only", fresh, steps.calls_only)  # ("calls", CallVolume)
    # one key: mentions are classified and labels learned in input order, the models' state is recovery state
    modeled = op.key_rm("unkey_models", op.stateful_batch("models", op.key_on(
        "one_model_host", op.filter_map("mentions_and_labels", fresh, steps.model_input), steps.models_key),
        s.models))
    split_models = op.branch("split_classified", modeled, steps.is_classified)
    classified = split_models.trues  # Enriched
    rejected = split_models.falses  # ("dlq", DeadLetter) for unusable labels, ("alert", Alert) on model drift
    serviced = op.branch("split_service_items", op.flat_map_batch("identify_and_serve", classified, s.crm.process),
                         steps.is_enriched)  # trues: ("enriched", E + customer_id, case_id); falses: alerts, dlq
    outcomes_in = op.filter_map("churn_outcomes_only", fresh, steps.churn_outcome_only)  # ChurnOutcome
    churn_in = op.key_on("one_churn_model", op.merge("churn_inputs", op.map("unwrap_enriched", serviced.trues,
                         steps.second), outcomes_in), steps.churn_key)
    scored = op.key_rm("unkey_churn", op.stateful_batch("score_churn", churn_in, s.churn))  # (E + churn_risk, reasons)
    enriched = op.map("drop_churn_reasons", scored, steps.scored_mention)  # Enriched + churn_risk
    facts = op.flat_map("mention_facts", enriched, steps.reply_facts)  # ("fact", event), ("audience", ...)
    window_events = op.map("mention_event", enriched, steps.mention_event)
    windowed = op.key_rm("unkey_windows", op.stateful(
        "window", op.key_on("key_by_brand_channel", window_events, steps.brand_channel_key), s.window))
    split_closed = op.branch("split_closed_minutes", windowed, steps.is_closed_minute)  # trues: ("closed", ...)
    # falses: ("windows", ...) once per brand x channel and flush, ("late", ...), ("sla", ...), ("watermark", ...)
    alerts = op.key_rm("unkey_alerts", op.stateful(
        "detect_spikes", op.key_on("key_by_brand", split_closed.trues, steps.brand_of), s.spikes))  # ("alert", Alert)
    churn_scores = op.filter_map("churn_scores", scored, steps.churn_item)  # ("churn", customer, risk, reasons)
    latest = op.map("mention_items", enriched, steps.mention_item)  # ("mention", json, ts_ms, id, features)
    dead = op.map("dead_letter_items", split.falses, steps.dead_letter_item)  # ("dlq", DeadLetter)
    out = op.merge("sink_items", dead, op.key_rm("unkey_counts", counted), split_closed.falses, alerts,
                   facts, latest, calls, rejected, churn_scores, serviced.falses)
    op.output("write_redis", out, sink)
    return flow
