"""The page's Altair charts (specs only; the data comes from fcmcore results).

* ``rd_chart``: rate–accuracy curves in their columns' colours, clickable points, each
  column's operating point as a ring with its letter, the references as labelled rules.
* ``channel_chart``: per-channel MSE (and bits when measured) of one tensor, click = pick.
* ``bit_allocation_chart``: importance weight over bits per channel, SSE vs WA side by side.
* ``block_heatmap``: per-block maps over the packed frame (weight, QP offset, error / bits change).
* ``error_chart``: per-channel MSE after decoding, SSE vs WA.

Every chart sets its own padding and axis-title limits so nothing is clipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

PADDING = {"left": 8, "right": 24, "top": 18, "bottom": 8}
RD_HEIGHT = 380


@dataclass
class RDCurve:
    legend: str  # e.g. "A, B · hevc @ expanded_conv_9 (vs uncompressed detector)"
    colour: str
    points: list[dict[str, Any]]  # {"bpp", "value" (x100), "quality"}
    reference: float | None = None  # the reference's value (x100) on this axis
    reference_label: str = "uncompressed"
    curve: str = ""  # the sweep's curve name (a click finds its columns by it)
    columns: list[int] = field(default_factory=list)


def rd_chart(curves: list[RDCurve], ops: list[dict[str, Any]], axis_title: str):
    """``ops``: {"column": letter, "colour", "bpp", "value", "quality", "curve"} per column."""
    import altair as alt
    import pandas as pd

    rows = [dict(p, legend=c.legend, curve=c.curve) for c in curves for p in c.points]
    df = pd.DataFrame(rows, columns=["bpp", "value", "quality", "legend", "curve"])
    values = list(df["value"]) + [o["value"] for o in ops] + [c.reference for c in curves if c.reference is not None]
    lo, hi = (min(values), max(values)) if values else (0.0, 100.0)
    pad = max((hi - lo) * 0.12, 1.0)
    bpps = list(df["bpp"]) + [o["bpp"] for o in ops]
    x = alt.X("bpp:Q", title="bits per pixel of the input image (log scale)",
              scale=alt.Scale(type="log", nice=False, padding=24,
                              domain=[min(bpps) / 1.3, max(bpps) * 1.3] if bpps else alt.Undefined),
              axis=alt.Axis(titleLimit=0, labelOverlap=True))
    y = alt.Y("value:Q", title=axis_title, scale=alt.Scale(domain=[lo - pad, hi + pad], nice=False, zero=False),
              axis=alt.Axis(titleLimit=0))
    colour = alt.Color("legend:N", scale=alt.Scale(domain=[c.legend for c in curves], range=[c.colour for c in curves]),
                       legend=alt.Legend(title=None, orient="bottom", direction="vertical", labelLimit=0))
    tooltip = [alt.Tooltip("legend:N", title="curve"), alt.Tooltip("quality:Q"), alt.Tooltip("bpp:Q", format=".3g"),
               alt.Tooltip("value:Q", title=axis_title, format=".1f")]
    select = alt.selection_point(name="pick", fields=["curve", "quality"], on="click")
    base = alt.Chart(df)
    layers = [base.mark_line(strokeWidth=2).encode(x=x, y=y, color=colour, order="bpp:Q"),
              base.mark_point(filled=True, size=90, opacity=0.9, cursor="pointer").encode(
                  x=x, y=y, color=colour, tooltip=tooltip).add_params(select)]
    refs: dict[float, str] = {}
    for c in curves:
        if c.reference is not None:
            refs.setdefault(round(c.reference, 1), c.reference_label)
    if refs:
        rdf = pd.DataFrame([{"value": v, "text": f"{label}: {v:.1f}"} for v, label in refs.items()])
        layers.append(alt.Chart(rdf).mark_rule(strokeDash=[6, 4], color="gray").encode(y="value:Q"))
        layers.append(alt.Chart(rdf).mark_text(align="right", baseline="bottom", dx=-4, dy=-3, color="#555").encode(
            x=alt.value("width"), y="value:Q", text="text:N"))
    if ops:
        odf = pd.DataFrame(ops)
        ring_tip = [alt.Tooltip("column:N"), alt.Tooltip("quality:Q"), alt.Tooltip("bpp:Q", format=".3g"),
                    alt.Tooltip("value:Q", title=axis_title, format=".1f")]
        layers.append(alt.Chart(odf).mark_point(size=380, strokeWidth=3, filled=False).encode(
            x=x, y=y, color=alt.Color("colour:N", scale=None), tooltip=ring_tip))
        layers.append(alt.Chart(odf).mark_text(dx=13, dy=-13, fontWeight="bold", fontSize=14).encode(
            x=x, y=y, text="column:N", color=alt.Color("colour:N", scale=None)))
    return alt.layer(*layers).properties(height=RD_HEIGHT, padding=PADDING)


def channel_chart(mse: np.ndarray, bits: np.ndarray | None, picked: int):
    import altair as alt
    import pandas as pd

    df = pd.DataFrame({"channel": np.arange(len(mse)), "mse": mse})
    tooltip = [alt.Tooltip("channel:Q"), alt.Tooltip("mse:Q", title="MSE", format=".3g")]
    if bits is not None:
        df["bits"] = bits
        tooltip.append(alt.Tooltip("bits:Q", format=",.0f"))
    select = alt.selection_point(name="channel", fields=["channel"], on="click")
    bars = alt.Chart(df).mark_bar().encode(
        x=alt.X("channel:O", axis=alt.Axis(labels=len(mse) <= 64, ticks=False, title="channel (click one)")),
        y=alt.Y("mse:Q", title="MSE after decoding", axis=alt.Axis(titleLimit=0)),
        color=alt.condition(alt.datum.channel == picked, alt.value("#d62728"), alt.value("#4c78a8")),
        tooltip=tooltip,
    ).add_params(select).properties(height=170)
    if bits is None:
        return bars.properties(padding=PADDING)
    line = alt.Chart(df).mark_line(color="#ff7f0e").encode(
        x="channel:O", y=alt.Y("bits:Q", title="bits (orange)", axis=alt.Axis(titleLimit=0)), tooltip=tooltip)
    return alt.layer(bars, line).resolve_scale(y="independent").properties(padding=PADDING)


def bit_allocation_chart(rows: list[dict[str, Any]]):
    """Importance weight per coded channel (top) over bits per channel for SSE and WA side by side."""
    import altair as alt
    import pandas as pd

    df = pd.DataFrame(rows)
    x = alt.X("channel:O", axis=alt.Axis(labels=df["channel"].nunique() <= 64, ticks=False))
    wdf = df.drop_duplicates(["tensor", "channel"])
    weight = alt.Chart(wdf).mark_bar(color="#54a24b").encode(
        x=x, y=alt.Y("weight:Q", title="importance weight", axis=alt.Axis(titleLimit=0)),
        tooltip=["tensor:N", "channel:Q", alt.Tooltip("weight:Q", format=".3g")]).properties(height=130)
    bits = alt.Chart(df).mark_bar().encode(
        x=x, xOffset="rdo:N",
        y=alt.Y("bits:Q", title="bits per channel (leave-one-out)", axis=alt.Axis(titleLimit=0)),
        color=alt.Color("rdo:N", title="RDO"),
        tooltip=["tensor:N", "channel:Q", "rdo:N", alt.Tooltip("bits:Q", format=",.0f"),
                 alt.Tooltip("weight:Q", format=".3g")]).properties(height=210)
    return alt.vconcat(weight, bits).properties(padding=PADDING)


def block_heatmap(rows: list[dict[str, Any]]):
    """Per-block heat maps over the packed frame, one panel per quantity (``panel``), side by
    side: rows hold ``x``, ``y`` (block indices), ``value`` and ``panel``."""
    import altair as alt
    import pandas as pd

    df = pd.DataFrame(rows)
    charts = []
    for panel in dict.fromkeys(df["panel"]):
        sub = df[df["panel"] == panel]
        diverging = panel.startswith(("QP offset", "error change", "bits change"))
        scale = alt.Scale(scheme="redblue", domainMid=0) if diverging else alt.Scale(scheme="viridis")
        charts.append(alt.Chart(sub).mark_rect().encode(
            x=alt.X("x:O", axis=None), y=alt.Y("y:O", axis=None),
            color=alt.Color("value:Q", title=None, scale=scale, legend=alt.Legend(orient="bottom")),
            tooltip=["panel:N", "x:Q", "y:Q", alt.Tooltip("value:Q", format=".3g")],
        ).properties(title=panel, width=170, height=170))
    return alt.hconcat(*charts).resolve_scale(color="independent").properties(padding=PADDING)


def error_chart(rows: list[dict[str, Any]]):
    import altair as alt
    import pandas as pd

    df = pd.DataFrame(rows)
    return alt.Chart(df).mark_line().encode(
        x=alt.X("channel:Q"),
        y=alt.Y("mse:Q", title="MSE after decoding (symlog)", scale=alt.Scale(type="symlog"),
                axis=alt.Axis(titleLimit=0)),
        color=alt.Color("rdo:N", title="RDO"),
        tooltip=["tensor:N", "channel:Q", "rdo:N", alt.Tooltip("mse:Q", format=".3g")],
    ).properties(height=180, padding=PADDING)
