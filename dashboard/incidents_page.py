"""Incidents, for incident managers: live and past incidents, what each looks like, and what to tell customers.

The list refreshes on its own; below it the chosen incident: its volume against the detector's expected
band, top terms, sample mentions (plain text), channels affected, the timeline (opened, updated,
acknowledged, notices, resolved/closed), and — for a signed-in user — acknowledge, close, and a public notice
per affected channel and the owned community to edit, approve and send to the outboxes
(:mod:`stream.incident_desk`, which records who did what).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboard.auth import require_user
from dashboard.command_centre import time_axis, with_window
from dashboard.data import CACHE_TTL_SECONDS, DashboardSettings, Filters, redis_client
from dashboard.ui import (
    REDIS_ERRORS,
    chart_times,
    local_frame,
    md_escape,
    plain,
    redis_down,
    show_chart,
    to_local,
)
from stream.incident_desk import (
    Incident,
    IncidentDeskError,
    acknowledge,
    approve_notice,
    close_incident,
    draft_notice,
    incident_timeline,
    incident_volume,
    interval_words,
    notice_channels,
    read_incidents,
    sample_mentions,
    save_notice,
    send_notice,
)
from stream.keys import Keys

__all__ = ["incident_label", "load_incident_detail", "load_incidents", "render", "volume_chart"]

SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}
KINDS = ("spike", "sla_breach", "rule", "churn")


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False, max_entries=64)
def load_incidents(url: str | None, prefix: str, brand: str | None, channels: tuple[str, ...],
                   kinds: tuple[str, ...] = ()) -> list[Incident]:
    """Cached :func:`stream.incident_desk.read_incidents`."""
    return read_incidents(redis_client(url), Keys(prefix), brand, channels or None, kinds or None)


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False, max_entries=64)
def load_incident_detail(url: str | None, prefix: str, incident: Incident) -> dict[str, Any]:
    """Timeline, volume around it and sample mentions of one incident."""
    client, keys = redis_client(url), Keys(prefix)
    return {"timeline": incident_timeline(client, keys, incident), "volume": incident_volume(client, keys, incident),
            "samples": sample_mentions(client, keys, incident)}


def _clear() -> None:
    load_incidents.clear()
    load_incident_detail.clear()


def incident_label(i: Incident, tz: str = "UTC") -> str:
    """How an incident is named in the picker (plain text)."""
    when = _when(i, tz)
    state = "resolved" if i.state == "resolved" else "live"
    return f"{when} · {i.severity} · {i.kind} · {i.brand} {i.where} · {state}, {i.status}"


def _when(i: Incident, tz: str) -> str:
    from datetime import UTC, datetime

    ms = i.start_ms
    if ms is None:
        return i.window_start[:16]
    local = to_local(datetime.fromtimestamp(ms / 1000, tz=UTC), tz)
    return local.strftime("%d %b %H:%M") if local else ""


def render(settings: DashboardSettings, filters: Filters) -> None:
    title, kinds_col, past_col, live_col = st.columns([3.2, 2.6, 1.2, 0.8], vertical_alignment="bottom")
    with title:
        st.title(":material/emergency: Incidents", anchor=False)
    with kinds_col:
        kinds = st.multiselect("Kinds", list(KINDS), default=["spike"], key="inc_kinds",
                               help="spike: a burst of complaints; sla_breach: a case missed its deadline; "
                                    "rule: a business rule raised it; churn: a customer at risk.")
    with past_col:
        past = st.toggle("Past too", value=True, key="inc_past", help="Also list resolved and closed incidents.")
    with live_col:
        live = st.toggle("Live", value=settings.refresh_seconds > 0, key="inc_live",
                         disabled=settings.refresh_seconds <= 0, help=f"Refresh every {settings.refresh_seconds:g} s")
    every = settings.refresh_seconds if live and settings.refresh_seconds > 0 else None
    st.fragment(_live_list, run_every=every)(settings, filters, tuple(kinds), past)
    # outside the live fragment: a refresh must not reset a notice being edited
    _detail(settings, filters, tuple(kinds), past)


def _chosen(settings: DashboardSettings, filters: Filters, kinds: tuple[str, ...], past: bool) -> list[Incident]:
    incidents = load_incidents(settings.redis_url, settings.prefix, filters.brand, filters.channels, kinds)
    return [i for i in incidents if past or i.live]


def _live_list(settings: DashboardSettings, filters: Filters, kinds: tuple[str, ...], past: bool) -> None:
    try:
        incidents = _chosen(settings, filters, kinds, past)
    except REDIS_ERRORS as exc:
        redis_down(settings, exc)
        return
    live = [i for i in incidents if i.live]
    cols = st.columns(4)
    cols[0].metric("Live", f"{len(live):,}", border=True, help="Not resolved by the detector, not closed.")
    cols[1].metric("Awaiting acknowledgement", f"{sum(i.needs_ack for i in incidents):,}", border=True,
                   help="Live and nobody has acknowledged them: the wall display flashes these.")
    cols[2].metric("Acknowledged", f"{sum(i.status == 'acknowledged' for i in incidents):,}", border=True)
    cols[3].metric("Resolved or closed", f"{sum(not i.live for i in incidents):,}", border=True)
    if not incidents:
        st.info("**No incidents** for this selection. The spike detector opens one when a brand's mentions on a "
                "channel rise far above what it expects; add kinds above (SLA breaches, rules, churn) or widen the "
                "brand and channel filters to see the other alerts.", icon=":material/check_circle:")
        return
    rows = [{"opened": _when(i, filters.tz), "severity": i.severity, "kind": i.kind, "brand": i.brand,
             "where": i.where, "detector": i.state, "desk": i.status, "observed": i.observed,
             "expected": i.expected, "per": i.per, "top terms": ", ".join(i.top_terms),
             "acknowledged by": i.acknowledged_by,
             "id": i.id} for i in incidents]
    st.dataframe(pd.DataFrame(rows), hide_index=True, placeholder="–", height=min(420, 38 + 35 * len(rows)),
                 column_config={
                     "opened": st.column_config.TextColumn(f"opened ({filters.tz})", width="small"),
                     "observed": st.column_config.NumberColumn("peak", format="%.0f", width="small"),
                     "expected": st.column_config.NumberColumn("expected", format="%.1f", width="small"),
                     "per": st.column_config.TextColumn("per", width="small",
                                                        help="A spike's peak and expectation count mentions per this "
                                                             "interval (the series' own: 1, 5 or 60 minutes)"),
                     "top terms": st.column_config.TextColumn("top terms", width="medium"),
                     "id": st.column_config.TextColumn("id", width="small"),
                 })


def _detail(settings: DashboardSettings, filters: Filters, kinds: tuple[str, ...], past: bool) -> None:
    try:
        incidents = _chosen(settings, filters, kinds, past)
    except REDIS_ERRORS:
        return
    flash = st.session_state.pop("inc_flash", None)
    if flash:
        st.success(md_escape(flash), icon=":material/check:")
    if not incidents:
        return
    by_id = {i.id: i for i in incidents}
    order = sorted(incidents, key=lambda i: (not i.needs_ack, not i.live, SEVERITY_ORDER.get(i.severity, 9),
                                             _neg_time(i)))
    incident_id = st.selectbox("Incident", [i.id for i in order], key="inc_pick",
                               format_func=lambda x: incident_label(by_id[x], filters.tz))
    inc = by_id[incident_id]
    try:
        detail = load_incident_detail(settings.redis_url, settings.prefix, inc)
    except REDIS_ERRORS as exc:
        redis_down(settings, exc)
        return
    with st.container(border=True):
        _summary(inc, incidents, filters)
        left, right = st.columns([1.6, 1])
        with left:
            st.subheader("Volume and the expected band", anchor=False)
            if detail["volume"]:
                show_chart(volume_chart(inc, detail["volume"], filters.tz))
                if inc.topic:
                    st.caption(f"All {inc.channel or 'channel'} mentions: the detector watched the {inc.topic} ones "
                               f"(peak {inc.observed:,.0f} per {inc.per}, expected {band_text(inc)}), which the "
                               "minute windows do not keep apart, so no band is drawn.")
            else:
                st.caption("No minute windows around this incident are kept (older than the retention, or not "
                           "a brand × channel series).")
            st.subheader("Sample mentions", anchor=False)
            if detail["samples"]:
                st.dataframe(pd.DataFrame(detail["samples"]), hide_index=True, placeholder="–",
                             column_order=["channel", "sentiment", "text", "id"],
                             column_config={"text": st.column_config.TextColumn("text", width="large")})
            else:
                st.caption("The detector kept no sample mentions for this incident.")
        with right:
            st.subheader("Timeline", anchor=False)
            _timeline(detail["timeline"], filters.tz)
            _actions(settings, inc, filters.tz)
    _notices(settings, inc, filters.tz)


def _flash(message: str) -> None:
    """Say what was done after the page reloads with the new state."""
    st.session_state["inc_flash"] = message
    st.rerun()


def _neg_time(i: Incident) -> int:
    return -(i.start_ms or 0)


def band_text(inc: Incident) -> str:
    low, high = inc.band
    return f"{low:.1f}" if high == low else f"{low:.1f} – {high:.1f}"


def _summary(inc: Incident, incidents: list[Incident], filters: Filters) -> None:
    low, high = inc.band
    band = band_text(inc)
    cols = st.columns([1, 1.5, 0.9, 1, 0.9])  # the band ("30.6 – 208.8") needs the room
    watched = f"{inc.channel or 'all channels'}" + (f" · {inc.topic}" if inc.topic else "")
    if inc.kind == "spike":
        cols[0].metric(f"Peak / {inc.per}", f"{inc.observed:,.0f}", border=True,
                       help=f"Mentions in the busiest {inc.per} interval of the series the detector watched ({watched}).")
        cols[1].metric(f"Expected / {inc.per}", band, border=True,
                       help="The detector's expectation for the peak interval" + (
                           " and the count at which it would have raised the alert." if high > low else "."))
    else:  # an SLA breach, a rule, churn, model drift: the alert's own figures (its message says what they are)
        cols[0].metric("Observed", f"{inc.observed:,.4g}", border=True)
        cols[1].metric("Expected", band, border=True)
    cols[2].metric("Severity", inc.severity or "–", border=True)
    cols[3].metric("Detector", inc.state, border=True, help="open → update → resolved, as the detector sees it.")
    cols[4].metric("Desk", inc.status, border=True, help="new → acknowledged → closed, as people handle it.")
    st.caption("Top terms")
    plain(", ".join(inc.top_terms) if inc.top_terms else "–")
    st.caption("Channels affected (this brand's live incidents within an hour of this one)")
    plain(", ".join(_affected(inc, incidents)) or "–")
    if inc.message:
        st.caption("Detector says")
        plain(inc.message)


def _affected(inc: Incident, incidents: list[Incident]) -> list[str]:
    start = inc.start_ms or 0
    near = [i for i in incidents if i.brand == inc.brand and i.channel and i.kind == inc.kind
            and abs((i.start_ms or 0) - start) <= 3_600_000 and (i.live or i.id == inc.id)]
    return sorted({i.channel for i in near} | ({inc.channel} if inc.channel else set()))


def _step_s(inc: Incident) -> int:
    """The chart's interval: a spike's own, else the minute windows'."""
    return max(60, int(inc.interval_s or 60))


def per_interval(inc: Incident, volume: list[dict[str, Any]]) -> pd.DataFrame:
    """The minute windows summed into the detector's intervals (aligned on the incident's first one): the unit its
    peak and band count in.

    >>> from datetime import UTC, datetime
    >>> inc = Incident.from_alert({"id": "x", "kind": "spike", "window_start": "2024-01-01T10:05:00+00:00",
    ...                            "interval_s": 300})
    >>> rows = [{"start": datetime(2024, 1, 1, 10, m, tzinfo=UTC), "mentions": m, "negative": 1} for m in range(3, 11)]
    >>> per_interval(inc, rows).to_dict("list")["mentions"], per_interval(inc, rows).to_dict("list")["negative"]
    ([7, 35, 10], [2, 5, 1])
    """
    frame = pd.DataFrame(volume)
    step = _step_s(inc)
    if step == 60 or frame.empty:
        return frame
    anchor = inc.start_ms or 0
    ms = frame["start"].map(lambda t: int(t.timestamp() * 1000))
    first = ms - (ms - anchor) % (step * 1000)
    frame = frame.assign(start=pd.to_datetime(first, unit="ms", utc=True))
    return frame.groupby("start", as_index=False)[["mentions", "negative"]].sum()


def volume_chart(inc: Incident, volume: list[dict[str, Any]], tz: str) -> alt.LayerChart:
    """Mentions and negative mentions per interval of the detector (its peak and band count per that interval), the
    expected band (not for a topic's series: the windows count every topic together), and the opening interval."""
    frame = per_interval(inc, volume)
    long = frame.melt(id_vars="start", value_vars=["mentions", "negative"], var_name="series", value_name="count")
    step = _step_s(inc)
    start, end = frame["start"].min(), frame["start"].max() + timedelta(seconds=step)
    axis = time_axis(start, end, "m", tz)
    lines = alt.Chart(with_window(long, tz), height=260).mark_line(interpolate="step-after", strokeWidth=2).encode(
        axis, alt.Y("count:Q", title=f"mentions per {interval_words(step)}"),
        alt.Color("series:N", scale=alt.Scale(domain=["mentions", "negative"], range=["#4f8cff", "#e5484d"]),
                  legend=alt.Legend(orient="bottom", title=None)),
        tooltip=[alt.Tooltip("window:N", title="from"), "series:N", "count:Q"])
    layers: list[Any] = [lines]
    if not inc.topic:
        low, high = inc.band
        band = chart_times(pd.DataFrame({"start": [start], "stop": [end], "low": [low],
                                         "high": [max(high, low + 0.25)]}), tz, "start", "stop")
        layers.insert(0, alt.Chart(band).mark_rect(opacity=0.22, color="#3ecf8e").encode(
            alt.X("start:T", scale=alt.Scale(type="utc")), alt.X2("stop:T"), alt.Y("low:Q"), alt.Y2("high:Q"),
            tooltip=[alt.Tooltip("low:Q", title="expected", format=".1f"),
                     alt.Tooltip("high:Q", title="alert at", format=".1f")]))
    if inc.start_ms is not None:
        opened = with_window(pd.DataFrame({"start": [pd.Timestamp(inc.start_ms, unit="ms", tz="UTC")]}), tz)
        layers.append(alt.Chart(opened).mark_rule(color="#f2a541", strokeDash=[4, 3], strokeWidth=2).encode(
            alt.X("start:T", scale=alt.Scale(type="utc")), tooltip=[alt.Tooltip("window:N", title="opened")]))
    return alt.layer(*layers)


def _timeline(rows: list[dict[str, Any]], tz: str) -> None:
    if not rows:
        st.caption("Nothing recorded yet.")
        return
    frame = local_frame(pd.DataFrame(rows), tz, "at")
    st.dataframe(frame, hide_index=True, placeholder="–", column_config={
        "at": st.column_config.DatetimeColumn(f"when ({tz})", format="DD MMM HH:mm:ss", width="medium"),
        "detail": st.column_config.TextColumn("detail", width="large")})
    st.caption("Detector events are stamped when the flow wrote them; desk events when someone acted.")


def _stamp(iso: str, tz: str) -> str:
    """An action's time (ISO, UTC) in the chosen timezone."""
    from datetime import datetime

    try:
        local = to_local(datetime.fromisoformat(iso), tz)
    except ValueError:
        return iso
    return f"{local:%d %b %H:%M:%S} {tz}" if local else iso


def _actions(settings: DashboardSettings, inc: Incident, tz: str) -> None:
    st.subheader("Handle", anchor=False)
    if inc.acknowledged_by:
        st.caption("Acknowledged by")
        plain(f"{inc.acknowledged_by} at {_stamp(inc.acknowledged_at, tz)}")
    if inc.closed_by:
        st.caption("Closed by")
        plain(f"{inc.closed_by} at {_stamp(inc.closed_at, tz)}")
    user = require_user(settings, "acknowledge, close or send notices")
    if user is None:
        return
    note = st.text_input("Note (optional)", key=f"inc_note_{inc.id}", max_chars=500)
    ack_col, close_col = st.columns(2)
    ack = ack_col.button("Acknowledge", key=f"inc_ack_{inc.id}", type="primary", icon=":material/front_hand:",
                         disabled=inc.status != "new")
    close = close_col.button("Close incident", key=f"inc_close_{inc.id}", icon=":material/task_alt:",
                             disabled=inc.status == "closed")
    if not (ack or close):
        return
    client, keys = redis_client(settings.redis_url), Keys(settings.prefix)
    try:
        done = (acknowledge if ack else close_incident)(client, keys, inc.id, user, note)
    except IncidentDeskError as exc:
        st.error(md_escape(exc), icon=":material/error:")
        return
    except REDIS_ERRORS as exc:
        redis_down(settings, exc)
        return
    _clear()
    what = "acknowledged" if ack else "closed"
    _flash(f"Incident {what}." if done else f"Incident was already {what}.")


def _notices(settings: DashboardSettings, inc: Incident, tz: str) -> None:
    with st.container(border=True):
        st.subheader("Public notice", anchor=False)
        st.caption("A draft per affected channel and the owned community, from a template and the top terms. "
                   "Edit, approve, then send: it goes to the channel's outbox (once per incident and channel).")
        user = require_user(settings, "draft, approve and send notices")
        channels = notice_channels(inc, settings.owned_channels)
        for column, channel in zip(st.columns(len(channels)), channels, strict=True):
            with column:
                _notice(settings, inc, channel, user, tz)


def _notice(settings: DashboardSettings, inc: Incident, channel: str, user: str | None, tz: str) -> None:
    notice = inc.notices.get(channel)
    owned = channel in settings.owned_channels
    st.markdown(f"**{md_escape(channel)}**" + (" · owned community" if owned else ""))
    status = notice.status if notice else "draft (not saved)"
    plain(f"Status: {status}" + (f" · approved by {notice.approved_by}" if notice and notice.approved_by else "")
          + (f" · sent by {notice.sent_by} at {_stamp(notice.sent_at, tz)}" if notice and notice.sent_by
             else ""))
    key = f"notice_{inc.id}_{channel}"
    default = notice.text if notice and notice.text else draft_notice(inc, channel, owned=owned)
    sent = notice is not None and notice.status == "sent"
    text = st.text_area("Notice text", value=default, key=key, height=150, disabled=sent or user is None,
                        label_visibility="collapsed")
    if user is None or sent:
        return
    approved = notice is not None and notice.status == "approved" and notice.text == (text or "").strip()
    save_col, approve_col, send_col = st.columns(3)
    save = save_col.button("Save", key=f"{key}_save", icon=":material/save:")
    approve = approve_col.button("Approve", key=f"{key}_approve", icon=":material/verified:")
    send = send_col.button("Send", key=f"{key}_send", type="primary", icon=":material/campaign:",
                           disabled=not approved, width="stretch",
                           help=None if approved else "Approve this text first.")
    if not (save or approve or send):
        return
    client, keys = redis_client(settings.redis_url), Keys(settings.prefix)
    try:
        if save:
            save_notice(client, keys, inc.id, channel, text or "", user)
            message = f"Notice for {channel} saved"
        elif approve:
            approve_notice(client, keys, inc.id, channel, text or "", user)
            message = f"Notice for {channel} approved"
        else:
            queued = send_notice(client, keys, inc.id, channel, user)
            message = f"Notice sent to the {channel} outbox" if queued else f"Notice for {channel} was already sent"
    except IncidentDeskError as exc:
        st.error(md_escape(exc), icon=":material/error:")
        return
    except REDIS_ERRORS as exc:
        redis_down(settings, exc)
        return
    _clear()
    _flash(message + ".")
