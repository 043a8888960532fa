"""The BD-rate table: full width, one decimal, each figure with its interval, notes in words."""

from __future__ import annotations

from typing import Any

import streamlit as st

from . import compute, fmt


def _interval(ci) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return "—"
    return f"[{ci[0]:+.1f}, {ci[1]:+.1f}]"


def _significance(value, ci) -> str:
    if value is None:
        return "n/a"
    if not ci or ci[0] is None or ci[1] is None:
        return "no interval"
    if ci[0] <= 0 <= ci[1]:
        return "not significant"
    return "significant"


def rows(curves: list[dict[str, Any]], anchor: str, metric: str) -> tuple[list[dict[str, Any]], list[str], bool]:
    """(table rows, notes, whether intervals were computed) from fcmcore's BD-rate."""
    from fcmcore.evaluate.bdrate import bd_table

    table, notes = bd_table(curves, anchor, metric)
    out = []
    for r in table:
        out.append({"curve": r.name, "bd_rate": r.bd_rate, "bd_rate_ci": getattr(r, "bd_rate_ci", None),
                    "bd_map": r.bd_map, "bd_map_ci": getattr(r, "bd_map_ci", None),
                    "n_images": getattr(r, "n_images", None)})
    has_ci = any(r["bd_rate_ci"] for r in out)
    # the front's dropped points are said in plain words by the caller
    notes = [n for n in notes if "not on the increasing" not in n]
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
        "verdict": "anchor" if r["curve"] == anchor else _significance(r["bd_rate"], r["bd_rate_ci"]),
    } for r in table])
    st.dataframe(df, hide_index=True, width="stretch", column_config={
        "curve": st.column_config.TextColumn(width="large"),
        "BD-rate %": st.column_config.NumberColumn(format="%+.1f"),
        f"BD-{metric} ({unit})": st.column_config.NumberColumn(format="%+.1f"),
    })
    st.caption("BD-rate: average bit difference at equal accuracy; negative = fewer bits than the anchor. "
               f"BD-{metric}: average accuracy difference at equal rate; positive = more accurate."
               + ("" if has_ci else " Intervals: this fcmcore computes no bootstrap interval yet, so no "
                                    "difference here is called significant."))
    for note in notes:
        st.caption(fmt.md_escape(note))
