"""Models, for data scientists: how the online text models do, their versions, drift, and labels to teach them.

- **Quality now**: prequential (test-then-train) metrics per channel — every label that arrives for a
  mention scores the prediction made for it before the model learns from it.
- **Versions**: every kept checkpoint (:func:`stream.model_admin.model_versions`, as ``pulse models list``)
  with its provenance (files with rows and sha256, label map, where it started, lineage) and its prequential
  scores at the time, two side by side, and a rollback (:func:`stream.model_admin.rollback_model`, as
  ``pulse models rollback``; a running flow follows within seconds).
- **Drift**: the alerts of the flow's drift guard (``model_drift``: the prequential error rose, an earlier
  version is served until the learning copy recovers), the prediction mix per window over the chosen
  period and its distance from the period's mix, and the drift figures each checkpoint recorded.
- **Label**: the recent mentions the current model is least sure of; labels go to the flow's feedback
  stream (``pulse feedback`` does the same), so the scores above stop being zeros.

Acting (rollback, labels) needs a signed-in user and is recorded in the audit trail.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboard.auth import require_user
from dashboard.command_centre import SENTIMENT_COLOURS, time_axis, with_window
from dashboard.data import (
    CACHE_TTL_SECONDS,
    DashboardSettings,
    Filters,
    model_drift_alerts,
    prediction_mix,
    read_model_quality,
    redis_client,
    resolve_span,
)
from dashboard.ui import REDIS_ERRORS, md_escape, redis_down, show_chart, show_chart_template
from models import registry
from stream.audit import AuditError
from stream.keys import Keys
from stream.model_admin import model_versions, rollback_model
from stream.model_desk import (
    ModelDeskError,
    describe_version,
    flatten_version,
    label_classes,
    low_confidence_sample,
    send_labels,
)

__all__ = ["load_model_quality", "render"]

MODELS = ("sentiment", "intent", "department")
_COLUMNS = ["model", "channel", "version", "n_predictions", "n_labels", "accuracy", "macro_f1", "macro_recall",
            "rolling_accuracy", "rolling_macro_f1", "prediction_drift", "label_drift", "drifts_detected"]
_SCORES = ("accuracy", "macro_f1", "macro_recall", "rolling_accuracy", "rolling_macro_f1", "prediction_drift",
           "label_drift")
SAMPLE = 20


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False, max_entries=64)
def load_model_quality(url: str | None, prefix: str) -> list[dict]:
    return read_model_quality(redis_client(url), Keys(prefix))


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False, max_entries=64)
def load_versions(url: str | None, prefix: str, name: str) -> dict[str, Any] | None:
    """The model's registry entry (served version, rollback details, every kept version), None before any
    checkpoint."""
    found = model_versions(redis_client(url), prefix, name)
    return found[0] if found else None


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False, max_entries=64)
def load_drift_alerts(url: str | None, prefix: str, name: str) -> pd.DataFrame:
    return model_drift_alerts(redis_client(url), Keys(prefix), name)


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False, max_entries=64)
def load_prediction_mix(url: str | None, prefix: str, filters: Filters, name: str) -> pd.DataFrame:
    return prediction_mix(redis_client(url), Keys(prefix), filters, name)


@st.cache_resource(show_spinner="Loading the current model…", max_entries=8)
def _current_model(url: str | None, prefix: str, name: str, version: int | None, _key: bytes | None) -> Any:
    """The model the flow runs now (its current checkpoint, checked with the flow's signing key, else the
    warm-started default); read only."""
    del version  # part of the cache key: a new or rolled-back version loads again
    return registry.load_current(redis_client(url), prefix, name, key=_key)


@st.cache_data(ttl=30.0, show_spinner=False, max_entries=16)
def load_sample(url: str | None, prefix: str, name: str, version: int | None, _key: bytes | None
                ) -> list[dict[str, Any]]:
    return low_confidence_sample(redis_client(url), Keys(prefix), name,
                                 _current_model(url, prefix, name, version, _key), n=SAMPLE)


def _clear() -> None:
    load_model_quality.clear()
    load_versions.clear()
    load_drift_alerts.clear()
    load_sample.clear()


def render(settings: DashboardSettings, filters: Filters | None = None) -> None:
    filters = filters or Filters()
    title, pick = st.columns([4, 2.2], vertical_alignment="bottom")
    with title:
        st.title(":material/model_training: Models", anchor=False)
    with pick:
        name = st.segmented_control("Model", list(MODELS), default="sentiment", required=True,
                                    key="mdl_name") or "sentiment"
    flash = st.session_state.pop("mdl_flash", None)
    if flash:
        st.success(md_escape(flash), icon=":material/check:")
    try:
        rows = load_model_quality(settings.redis_url, settings.prefix)
        versions = load_versions(settings.redis_url, settings.prefix, name)
    except REDIS_ERRORS as exc:
        redis_down(settings, exc)
        return
    tabs = st.tabs(["Quality now", "Versions", "Drift", "Label mentions"])
    with tabs[0]:
        _quality(rows, name)
    with tabs[1]:
        _versions(settings, name, versions)
    with tabs[2]:
        _drift(settings, filters, name, versions)
    with tabs[3]:
        _label(settings, name, versions)


def _quality(rows: list[dict], name: str) -> None:
    st.caption("Prequential: a label scores the prediction made for its mention, then the model learns from it. "
               "Labels come from the Label tab, or `pulse feedback MENTION --model M --label L`.")
    if not rows:
        st.info("**No model metrics yet**: they appear once a flow has classified mentions "
                "(e.g. `pulse demo`).", icon=":material/hourglass_empty:")
        return
    frame = pd.DataFrame(rows)
    chosen = frame[frame["model"] == name]
    if chosen.empty:
        st.caption(f"No metrics for {name} yet.")
        return
    labels = int(chosen.loc[chosen["channel"] == "all", "n_labels"].max() or 0) if "n_labels" in chosen else 0
    if not labels:
        st.warning("**No labels have arrived yet**, so accuracy and F1 read zero: they measure predictions against "
                   "labels. Label a few mentions in the *Label mentions* tab.", icon=":material/label_off:")
    # a score over no labels is no score: shown as "–", not 0.000
    unlabelled = chosen["n_labels"].fillna(0) == 0 if "n_labels" in chosen else None
    if unlabelled is not None:
        chosen = chosen.copy()
        for column in ("accuracy", "macro_f1", "macro_recall", "rolling_accuracy", "rolling_macro_f1", "label_drift"):
            if column in chosen:
                chosen.loc[unlabelled, column] = float("nan")
    st.dataframe(chosen[[c for c in _COLUMNS if c in chosen.columns]], hide_index=True, placeholder="–",
                 column_config={c: st.column_config.NumberColumn(c.replace("_", " "), format="%.3f") for c in _SCORES})
    left, right = st.columns(2)
    overall = chosen[chosen["channel"] == "all"]
    with left, st.container(border=True):
        st.subheader("Predictions by class and channel", anchor=False)
        dist = [{"channel": r["channel"], "class": k, "share": v}
                for _, r in chosen.iterrows() if r["channel"] != "all"
                for k, v in (r.get("prediction_dist") or {}).items()]
        if dist:
            show_chart(alt.Chart(pd.DataFrame(dist)).mark_bar().encode(
                x=alt.X("share:Q", stack="normalize", title="share of predictions"),
                y=alt.Y("channel:N", title=None),
                color=alt.Color("class:N", title=None, scale=alt.Scale(domain=list(SENTIMENT_COLOURS),
                                                                       range=list(SENTIMENT_COLOURS.values()))
                                if name == "sentiment" else alt.Undefined),
                tooltip=["channel", "class", alt.Tooltip("share:Q", format=".1%")]))
        else:
            st.caption("No predictions yet.")
    with right, st.container(border=True):
        st.subheader("Confusion matrix (all channels)", anchor=False)
        confusion = overall.iloc[0]["confusion"] if len(overall) and isinstance(overall.iloc[0]["confusion"], dict) \
            else {}
        if confusion:
            st.dataframe(pd.DataFrame(confusion).T.fillna(0).astype(int).rename_axis("label \\ predicted"))
        else:
            st.caption("No labels yet: label some in the Label tab.")


def _version_frame(versions: dict[str, Any]) -> pd.DataFrame:
    """One row per kept version: what it is, what it was trained on, its scores (:func:`describe_version`)."""
    rows = [describe_version(meta) for meta in versions.get("versions") or []]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.dropna(axis="columns", how="all")


def _versions(settings: DashboardSettings, name: str, versions: dict[str, Any] | None) -> None:
    if not versions or not versions.get("versions"):
        st.info(f"**No checkpoint of {name} yet.** The flow runs the default model (warm-started from the shipped "
                "data) and saves a version to Redis after every batch of labels it learns from; label mentions, or "
                f"train one (`pulse train --model {name} --input FILE …`), to get the first one.",
                icon=":material/inventory_2:")
        return
    current = versions.get("version")
    rolled = versions.get("rolled_back_from")
    st.caption(f"Serving version {current} of {versions.get('latest')} saved"
               + (f" (rolled back from {rolled}: {versions.get('rolled_back_reason') or 'no reason given'})"
                  if rolled else "")
               + ". Each version keeps what it recorded when it was saved: what it was trained on (files, rows, "
               "sha256, label map, lineage) and its prequential scores then — as `pulse models list` shows them.")
    frame = _version_frame(versions)
    st.dataframe(frame, hide_index=True, placeholder="–", column_config={
        c: st.column_config.NumberColumn(c, format="%.3f") for c in frame.columns
        if c.startswith("score: ") and c not in ("score: n_labels", "score: train_rows", "score: drifts_detected")})
    numbers = [int(v) for v in frame["version"]]
    if len(numbers) >= 2:
        st.subheader("Side by side", anchor=False)
        a_col, b_col = st.columns(2)
        a = a_col.selectbox("Version", numbers, index=len(numbers) - 2, key="mdl_cmp_a")
        b = b_col.selectbox("against", numbers, index=len(numbers) - 1, key="mdl_cmp_b")
        by = {int(r["version"]): r for r in frame.to_dict("records")}
        fields = [c for c in frame.columns if c != "version"]
        side = pd.DataFrame({"field": fields, f"v{a}": [_cell(by[a].get(f)) for f in fields],
                             f"v{b}": [_cell(by[b].get(f)) for f in fields]})
        side["differs"] = side[f"v{a}"] != side[f"v{b}"]
        st.dataframe(side, hide_index=True, placeholder="–", height=min(720, 38 + 35 * len(side)),
                     column_config={"differs": st.column_config.CheckboxColumn("differs", width="small")})
    st.subheader("Roll back", anchor=False)
    user = require_user(settings, "roll back models")
    if user is None:
        return
    earlier = [v for v in numbers if v != current]
    if not earlier:
        st.caption("Only the current version is kept.")
        return
    target = st.selectbox("Make this version current", earlier, index=len(earlier) - 1, key="mdl_rb_to")
    confirm = st.checkbox(f"Yes, make version {target} of {name} current", key="mdl_rb_ok")
    if st.button("Roll back", key="mdl_rb", type="primary", icon=":material/history:", disabled=not confirm):
        try:
            done = rollback_model(redis_client(settings.redis_url), settings.prefix, name, int(target),
                                  reason="dashboard", user=user)
        except (LookupError, AuditError) as exc:
            st.error(md_escape(exc.args[0] if exc.args else exc), icon=":material/error:")
            return
        except REDIS_ERRORS as exc:
            redis_down(settings, exc)
            return
        _clear()
        st.session_state["mdl_flash"] = (f"{name} is now version {done['version']} (was {done['previous']}). A "
                                         "running flow follows within a few seconds.")
        st.rerun()


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.4g}"
    return str(value)


def _drift(settings: DashboardSettings, filters: Filters, name: str, versions: dict[str, Any] | None) -> None:
    try:
        mix = load_prediction_mix(settings.redis_url, settings.prefix, filters, name)
        span = resolve_span(redis_client(settings.redis_url), Keys(settings.prefix), filters)
        alerts = load_drift_alerts(settings.redis_url, settings.prefix, name)
    except REDIS_ERRORS as exc:
        redis_down(settings, exc)
        return
    with st.container(border=True):
        st.subheader("Drift alerts", anchor=False)
        if alerts.empty:
            st.caption(f"The flow's drift guard has raised no alert on {name}: it watches the prequential error on "
                       "the labels that arrive, and when it rises it serves the last good version until the "
                       "learning copy recovers.")
        else:
            live = alerts[alerts["state"] != "resolved"]
            if not live.empty:
                row = live.iloc[0]
                st.warning(f"**Drift on {name}**: the prequential error rose from {_pct(row['error before'])} to "
                           f"{_pct(row['error after'])} (since {md_escape(row['since'])}); the flow serves an earlier "
                           "version until the learning copy recovers.", icon=":material/trending_up:")
            st.dataframe(alerts, hide_index=True, placeholder="–", column_config={
                "error before": st.column_config.NumberColumn("error before", format="percent"),
                "error after": st.column_config.NumberColumn("error after", format="percent"),
                "message": st.column_config.TextColumn("message", width="large")})
    if mix.empty or span is None:
        st.caption("The flow's windows count sentiment and intent predictions; there are none for this model and "
                   "period." if name != "department" else "Department predictions are not counted per window; the "
                   "checkpoint history below is the drift record.")
    else:
        st.caption(f"What {name} predicted per window over {filters.describe()}, and how far each window's mix is "
                   "from the whole period's (total-variation distance: 0 the same mix, 1 nothing in common).")
        left, right = st.columns(2)
        data = with_window(mix, filters.tz)

        def mix_chart() -> alt.Chart:
            return alt.Chart(alt.NamedData("mix"), height=240).mark_area(opacity=0.85).encode(
                time_axis(span.start, span.end, span.gran, filters.tz),
                alt.Y("count:Q", stack="normalize", title="share", axis=alt.Axis(format="%")),
                alt.Color("class:N", legend=alt.Legend(orient="bottom", title=None),
                          scale=alt.Scale(domain=list(SENTIMENT_COLOURS), range=list(SENTIMENT_COLOURS.values()))
                          if name == "sentiment" else alt.Undefined),
                tooltip=[alt.Tooltip("window:N", title="window"), "class:N", "count:Q",
                         alt.Tooltip("share:Q", format=".1%")])

        def drift_chart() -> alt.Chart:
            return alt.Chart(alt.NamedData("drift"), height=240).mark_line(
                interpolate="monotone", color="#f2a541").encode(
                time_axis(span.start, span.end, span.gran, filters.tz),
                alt.Y("drift:Q", title="TV distance", scale=alt.Scale(domain=[0, 1])),
                tooltip=[alt.Tooltip("window:N", title="window"), alt.Tooltip("drift:Q", format=".3f")])

        with left, st.container(border=True):
            st.subheader("Prediction mix", anchor=False)
            show_chart_template(("models_mix", name, span, filters.tz), mix_chart, {"mix": data})
        with right, st.container(border=True):
            st.subheader("Distance from the period's mix", anchor=False)
            show_chart_template(("models_drift", span, filters.tz), drift_chart,
                                {"drift": data.drop_duplicates("start")})
    history = [flatten_version(v) for v in (versions or {}).get("versions") or []]
    drift_rows = [{"version": h.get("version"), "saved_at": h.get("saved_at"), "measure": m.split(".", 1)[1],
                   "value": h[m]} for h in history for m in ("metrics.prediction_drift", "metrics.label_drift")
                  if isinstance(h.get(m), (int, float))]
    if drift_rows:
        with st.container(border=True):
            st.subheader("Drift recorded by each checkpoint", anchor=False)
            show_chart(alt.Chart(pd.DataFrame(drift_rows), height=220).mark_line(point=True).encode(
                alt.X("version:O"), alt.Y("value:Q", title="TV distance"),
                alt.Color("measure:N", legend=alt.Legend(orient="bottom", title=None)),
                tooltip=["version:O", "saved_at:N", "measure:N", alt.Tooltip("value:Q", format=".3f")]))


def _pct(value: Any) -> str:
    return "–" if not isinstance(value, (int, float)) or value != value else f"{float(value) * 100:.0f} %"


def _label(settings: DashboardSettings, name: str, versions: dict[str, Any] | None) -> None:
    st.caption(f"The {SAMPLE} newest customer mentions the current {name} model is least sure of (lowest top "
               "probability). Pick the right label for the ones you know and send them: the flow learns from them "
               "and scores its earlier prediction.")
    user = require_user(settings, "label mentions")
    version = (versions or {}).get("version")
    try:
        sample = load_sample(settings.redis_url, settings.prefix, name, version, settings.signing_key())
        classes = label_classes(name)
    except REDIS_ERRORS as exc:
        redis_down(settings, exc)
        return
    if not sample:
        st.caption("No recent customer mentions are kept yet.")
        return
    frame = pd.DataFrame(sample)
    frame["label"] = None
    if user is None:
        st.dataframe(frame.drop(columns=["label"]), hide_index=True, placeholder="–",
                     column_order=["confidence", "predicted", "flow", "channel", "text", "id"])
        return
    edited = st.data_editor(
        frame, hide_index=True, key=f"mdl_labels_{name}", disabled=[c for c in frame.columns if c != "label"],
        column_order=["label", "confidence", "predicted", "flow", "channel", "text", "id"],
        column_config={
            "label": st.column_config.SelectboxColumn("your label", options=list(classes), width="small"),
            "confidence": st.column_config.ProgressColumn("confidence", min_value=0.0, max_value=1.0, format="%.2f"),
            "predicted": st.column_config.TextColumn("model now", width="small"),
            "flow": st.column_config.TextColumn("flow said", width="small"),
            "text": st.column_config.TextColumn("text", width="large"),
        })
    chosen = [(r["id"], r["label"]) for r in edited.to_dict("records") if r.get("label")]
    if st.button(f"Send {len(chosen)} label(s)", key="mdl_send", type="primary", icon=":material/label:",
                 disabled=not chosen):
        try:
            n = send_labels(redis_client(settings.redis_url), Keys(settings.prefix), name, chosen, user, classes)
        except ModelDeskError as exc:
            st.error(md_escape(exc), icon=":material/error:")
            return
        except REDIS_ERRORS as exc:
            redis_down(settings, exc)
            return
        _clear()
        st.session_state.pop(f"mdl_labels_{name}", None)
        st.session_state["mdl_flash"] = f"{n} label(s) sent to the flow's feedback stream."
        st.rerun()
