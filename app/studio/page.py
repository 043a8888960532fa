"""The page: a one-line top bar, the columns (results first), then the tabs.

Layout and widgets only: results come from ``compute`` (fcmcore), pictures from ``draw``,
columns from ``columns``/``state``, the configuration in the URL from ``url``.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from fcmcore.pipeline import DISPLAY_SCORE_THRESHOLD
from fcmcore.models import DEFAULT_MODEL

from . import bits, columns, compute, draw, fmt, inputs, keys, maps, rd, state, trace, url

# Less empty space above the columns, so every column's results fit a 1280x800 screen.
CSS = """<style>
.block-container {padding-top: 3.4rem; padding-bottom: 2rem;}
[data-testid="stSidebarContent"] {padding-top: 0.5rem;}
</style>"""
TAB_LABELS = list(url.TABS.values())


def main() -> None:
    with trace.span("page run"):
        _page()


def _page() -> None:
    st.html(CSS)
    ss = st.session_state
    ss[columns.RUN_ID] = ss.get(columns.RUN_ID, 0) + 1
    with trace.span("codec table"):
        codecs = compute.codec_table()
    url.load(codecs, list(inputs.sample_files()))
    state.apply_pending_pick()
    with trace.span("warm model"):
        compute.warm(DEFAULT_MODEL)
    with trace.span("sidebar"):
        images, shown, threshold, refused = sidebar()
    top_bar()
    for note in ss.pop(keys.URL_NOTES, []):
        st.warning(f"Part of the link was not applied: {fmt.md_escape(note)}")
    for message in refused:  # new refusals only: they clear when the next upload is fine
        st.error(f"Upload refused: {fmt.md_escape(message)}")
    outcomes = columns.comparison(codecs, shown, threshold)
    if ss.get(keys.TAB) not in TAB_LABELS:
        ss[keys.TAB] = TAB_LABELS[0]
    tabs = st.tabs(TAB_LABELS, key=keys.TAB, on_change="rerun")
    url.sync()  # early, so the address bar is right while the tabs render; again at the end for late changes
    rd_doc = None
    with tabs[0]:
        if tabs[0].open:
            maps_tab(shown)
    with tabs[1]:
        if tabs[1].open:
            bits_tab(shown)
    with tabs[2]:
        if tabs[2].open:
            rd_doc = rd.rd_section(images, outcomes)
    with tabs[3]:
        if tabs[3].open:
            export_section(outcomes, shown, rd_doc)
    url.sync()


# The two tabs that show one column are fragments of their own: a change in that column reruns the
# column and the tab (columns.on_column_change), not the page. They read the columns' last outcomes
# from the session, since a fragment rerun gets the arguments of the last page run.
@st.fragment(key=keys.MAPS_FRAGMENT)
def maps_tab(shown: inputs.LoadedImage | None) -> None:
    with trace.span("tab feature maps"):
        maps.feature_maps(columns.stored_outcomes(), shown)


@st.fragment(key=keys.BITS_FRAGMENT)
def bits_tab(shown: inputs.LoadedImage | None) -> None:
    with trace.span("tab bit allocation"):
        bits.bit_allocation(columns.stored_outcomes(), shown)


def top_bar() -> None:
    left, add, share = st.columns([7, 1.3, 1.3], vertical_alignment="center", gap="small")
    left.markdown(
        "<div style='font-size:1.35rem;font-weight:700;line-height:1.3'>FCM Studio "
        "<span style='font-size:0.85rem;font-weight:400;color:#555'>· detector split between an edge and a "
        f"server, features coded by a real codec · boxes vs the uncompressed detector: "
        f"<b style='color:{draw.COLOURS_HEX['matched']}'>■ matched</b> "
        f"<b style='color:{draw.COLOURS_HEX['missed']}'>┅ missed</b> "
        f"<b style='color:{draw.COLOURS_HEX['false']}'>■ false</b></span></div>", unsafe_allow_html=True)
    full = len(state.column_ids()) >= state.MAX_COLUMNS
    add.button("Column", icon=":material/add:", on_click=state.add_column, disabled=full, width="stretch",
               key=keys.ADD_COLUMN,
               help=f"At most {state.MAX_COLUMNS} columns: remove one to add another." if full
               else f"Compare up to {state.MAX_COLUMNS} configurations; the new one copies the last.")
    with share.popover("Link", icon=":material/link:", width="stretch", help="A link that reproduces this page"):
        link = url.share_link(url.encode(url.current()))
        st.caption("This link opens the page as it is now: images (bundled samples), columns, tab, dataset. "
                   "Copy it with the button at the right of the box. Uploaded images are not in links.")
        st.code(link, language=None, wrap_lines=True)


# -- inputs ---------------------------------------------------------------------------------
def sidebar() -> tuple[list[inputs.LoadedImage], inputs.LoadedImage | None, float, list[str]]:
    ss = st.session_state
    with st.sidebar:
        st.header("Images")
        names = list(inputs.sample_files())
        ss.setdefault(keys.SAMPLES, [n for n in inputs.DEFAULT_SAMPLES if n in names] or names[:1])
        picked = st.multiselect("Bundled samples (public domain)", names, key=keys.SAMPLES)
        uploads = st.file_uploader(
            "Upload images", type=inputs.UPLOAD_TYPES, accept_multiple_files=True, key=keys.UPLOADS,
            help="JPEG, PNG, WebP, ... up to the server's upload limit. Uploads are kept in this server's memory "
                 "for your session; a rate–accuracy sweep on them writes a copy into a private temporary folder "
                 "of the server process (readable by it only), deleted when the server stops.")
        entries = [inputs.sample_entry(n) for n in picked] + inputs.uploaded_entries(uploads)
        images, errors = inputs.load_entries(entries)
        for name, message in errors:
            st.caption(f":material/block: {fmt.md_escape(message)}")
        seen_refused = ss.setdefault(keys.REFUSED_SEEN, set())
        refused = [m for k, m in errors if k not in seen_refused]
        seen_refused.clear()
        seen_refused.update(k for k, _ in errors)
        shown = None
        if images:
            labels = [im.entry.key for im in images]
            seen = ss.setdefault(keys.SEEN_IMAGES, set())
            fresh = [k for k in labels if k not in seen and k.startswith("upload:")]
            seen.update(labels)
            linked = ss.pop(keys.SHOWN_SAMPLE, None)
            if fresh:  # a new upload is what the user wants to look at
                ss[keys.SHOWN] = fresh[-1]
            elif linked and f"sample:{linked}" in {k.rsplit(':', 1)[0] for k in labels}:
                ss[keys.SHOWN] = next(k for k in labels if k.rsplit(":", 1)[0] == f"sample:{linked}")
            elif ss.get(keys.SHOWN) not in labels:
                ss[keys.SHOWN] = labels[0]
            key = st.selectbox("Image shown in the columns", labels, key=keys.SHOWN,
                               format_func=lambda k: k.split(":", 1)[1].rsplit(":", 1)[0])
            shown = images[labels.index(key)]
            st.caption(f"{shown.image.width}×{shown.image.height} px. Rate–accuracy curves on the sidebar images "
                       f"use all {len(images)} listed here.")
        st.header("Display")
        ss.setdefault(keys.THRESHOLD, DISPLAY_SCORE_THRESHOLD)
        threshold = st.slider("Score threshold for boxes", 0.05, 0.95, step=0.05, key=keys.THRESHOLD,
                              help="Detections below this score are hidden, in every column and in the uncompressed reference.")
        st.header("Tasks")
        ss.setdefault(keys.TASKS, [])
        st.multiselect(
            "Also served from the same bits", list(state.SECONDARY_TASKS), key=keys.TASKS,
            format_func=lambda t: {"pose": "pose (MoveNet, 17 keypoints)",
                                   "classification": "classification (EfficientNet-Lite3, top-5)"}[t],
            help="Split model: each task maps the decoded split tensor through its trained connector into its own "
                 "network (no extra bits; connectors exist for expanded_conv_9). Full input: each network runs on "
                 "the decoded image. Agreement is with the same network on the original image.")
    return images, shown, threshold, refused


# -- export ---------------------------------------------------------------------------------
def export_section(outcomes: list[columns.ColumnOutcome], shown: inputs.LoadedImage | None,
                   rd_doc: dict[str, Any] | None) -> None:
    import json

    from . import export

    ready = [o for o in outcomes if o.result is not None]
    st.markdown("##### Reproduce a column on the command line")
    for o in outcomes:
        if o.config is None or shown is None:
            continue
        st.caption(f"Column {o.letter}")
        st.code(export.cli_command(o.config, shown.entry, o.result), language="bash")
    if not ready:
        return
    st.markdown("##### Download")
    cols = st.columns(3)
    rows = export.column_records(ready, shown)
    cols[0].download_button("Columns (JSON)", json.dumps(rows, indent=1), "fcm_columns.json", "application/json",
                            key="dl.columns.json", icon=":material/download:")
    cols[1].download_button("Columns (CSV)", export.columns_csv(rows), "fcm_columns.csv", "text/csv",
                            key="dl.columns.csv", icon=":material/download:")
    rd_doc = rd_doc or st.session_state.get(keys.RD_DOC)
    if rd_doc:
        cols[2].download_button("RD curves (CompressAI JSON)", json.dumps(export.compressai_curves(rd_doc), indent=1),
                                "fcm_rd_curves.json", "application/json", key="dl.rd.json", icon=":material/download:")
        cols[2].download_button("RD curves (CSV)", export.curves_csv(rd_doc), "fcm_rd_curves.csv", "text/csv",
                                key="dl.rd.csv", icon=":material/download:")
    else:
        cols[2].caption("RD curves: open the rate–accuracy tab first; its curves are then offered here.")
