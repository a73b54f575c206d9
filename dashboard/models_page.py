"""The data scientists' page: how the online models do in the stream (prequential, per channel).

Every prediction counts towards the prediction distribution and its drift; every label from feedback
(``pulse feedback``) scores the prediction made for that mention (test-then-train).
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import redis
import streamlit as st

from dashboard.data import CACHE_TTL_SECONDS, DashboardSettings, redis_client
from stream.keys import Keys
from stream.metrics import model_quality
from stream.redisconn import RedisUnavailable

__all__ = ["load_model_quality", "render"]

_COLUMNS = ["model", "channel", "version", "n_predictions", "n_labels", "accuracy", "macro_f1", "macro_recall",
            "rolling_accuracy", "rolling_macro_f1", "prediction_drift", "label_drift", "drifts_detected"]


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False, max_entries=64)
def load_model_quality(url: str | None, prefix: str) -> list[dict]:
    return model_quality(redis_client(url), Keys(prefix))


def render(settings: DashboardSettings) -> None:
    st.title("Models", anchor=False)
    st.caption("Prequential quality of the text models in the stream: predictions are scored when a label "
               "arrives for their mention (`pulse feedback MENTION --model M --label L`).")
    try:
        rows = load_model_quality(settings.redis_url, settings.prefix)
    except (RedisUnavailable, redis.RedisError, OSError) as exc:
        st.error(f"**Redis is unreachable** at `{settings.display_url}`.", icon=":material/cloud_off:")
        st.text(str(exc))
        return
    if not rows:
        st.info("**No model metrics yet**: they appear once a flow has classified mentions "
                "(e.g. `pulse demo`).", icon=":material/hourglass_empty:")
        return
    frame = pd.DataFrame(rows)
    model = st.segmented_control("Model", ["intent", "sentiment", "department"], default="sentiment")
    chosen = frame[frame["model"] == (model or "sentiment")]
    st.dataframe(chosen[[c for c in _COLUMNS if c in chosen.columns]], hide_index=True, placeholder="–",
                 column_config={c: st.column_config.NumberColumn(c.replace("_", " "), format="%.3f")
                                for c in ("accuracy", "macro_f1", "macro_recall", "rolling_accuracy",
                                          "rolling_macro_f1", "prediction_drift", "label_drift")})
    left, right = st.columns(2)
    overall = chosen[chosen["channel"] == "all"]
    with left, st.container(border=True):
        st.subheader("Predictions by class and channel", anchor=False)
        dist = [{"channel": r["channel"], "class": k, "share": v}
                for _, r in chosen.iterrows() if r["channel"] != "all"
                for k, v in (r.get("prediction_dist") or {}).items()]
        if dist:
            st.altair_chart(alt.Chart(pd.DataFrame(dist)).mark_bar().encode(
                x=alt.X("share:Q", stack="normalize", title="share of predictions"),
                y=alt.Y("channel:N", title=None), color=alt.Color("class:N", title=None),
                tooltip=["channel", "class", alt.Tooltip("share:Q", format=".1%")]), width="stretch")
        else:
            st.caption("No predictions yet.")
    with right, st.container(border=True):
        st.subheader("Confusion matrix (all channels)", anchor=False)
        confusion = overall.iloc[0]["confusion"] if len(overall) and isinstance(overall.iloc[0]["confusion"], dict) \
            else {}
        if confusion:
            st.dataframe(pd.DataFrame(confusion).T.fillna(0).astype(int).rename_axis("label \\ predicted"))
        else:
            st.caption("No labels yet: send some with `pulse feedback`.")
