"""The BD-rate table: full width, one decimal, each figure with its interval, notes in words."""

from __future__ import annotations

from typing import Any

import streamlit as st

from . import compute, fmt


def _interval(ci) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return "—"
    return f"[{ci[0]:+.1f}, {ci[1]:+.1f}]"


@st.cache_data(show_spinner="Bootstrapping BD-rate intervals over the images…", max_entries=32)
def rows(curves: list[dict[str, Any]], anchor: str, metric: str) -> tuple[list[dict[str, Any]], list[str], bool]:
    """(table rows, notes, whether intervals were computed): fcmcore's BD-rate with paired
    bootstrap intervals over the images (once per curves, anchor and metric)."""
    from fcmcore.evaluate.bootstrap import bd_table_with_ci

    table = bd_table_with_ci(curves, anchor, metric)
    out = [{"curve": r.name, "bd_rate": r.bd_rate, "bd_rate_ci": r.bd_rate_ci, "bd_map": r.bd_map,
            "bd_map_ci": r.bd_map_ci, "n_images": r.n_images, "verdict": r.verdict()} for r in table]
    notes = [n for r in table for n in r.notes]
    has_ci = any(r["bd_rate_ci"] for r in out)
    # the front's dropped points are said in plain words by the caller
    notes = list(dict.fromkeys(n for n in notes if "not on the increasing" not in n))
    return out, notes, has_ci


def show(curves: list[dict[str, Any]], anchor: str, metric: str) -> None:
    import pandas as pd

    try:
        table, notes, has_ci = rows(curves, anchor, metric)
    except Exception as exc:
        st.error(fmt.md_escape(compute.error_message(exc)))
        return
    unit = "mAP points" if metric.startswith("mAP") else "F1 points"
    df = pd.DataFrame([{
        "curve": r["curve"] + (" (anchor)" if r["curve"] == anchor else ""),
        "BD-rate %": r["bd_rate"],
        "BD-rate 95% interval": _interval(r["bd_rate_ci"]),
        f"BD-{metric} ({unit})": r["bd_map"],
        f"BD-{metric} 95% interval": _interval(r["bd_map_ci"]),
        "verdict": "anchor" if r["curve"] == anchor else r["verdict"],
    } for r in table])
    st.dataframe(df, hide_index=True, width="stretch", column_config={
        "curve": st.column_config.TextColumn(width="large"),
        "BD-rate %": st.column_config.NumberColumn(format="%+.1f"),
        f"BD-{metric} ({unit})": st.column_config.NumberColumn(format="%+.1f"),
    })
    st.caption("BD-rate: average bit difference at equal accuracy; negative = fewer bits than the anchor. "
               f"BD-{metric}: average accuracy difference at equal rate; positive = more accurate."
               + (" Intervals: 95% paired bootstrap over the images; a difference whose interval holds 0 is "
                  "not significant." if has_ci else " No interval for this axis (it needs per-image COCO "
                  "evaluations: use a mAP axis), so no difference here is called significant."))
    for note in notes:
        st.caption(fmt.md_escape(note))
