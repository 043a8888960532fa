"""Altair charts of evaluation results (no Streamlit here: the app and ``fcm plot`` share them).

* ``rd_chart(curves)``: bpp (log axis) vs mAP, one colour per curve, points with tooltips, each
  distinct uncompressed reference as a dashed horizontal rule.
* ``bd_chart(rows, anchor)``: BD-rate per curve as labelled bars (the BD-rate table as a chart).
* ``layers_chart(doc)``: split points ordered from input to output: BD-rate vs full-input, and
  mAP at each quality.
* ``save_chart(chart, path)``: ``.html`` (or ``.json`` spec) always; ``.png``/``.svg`` when
  ``vl-convert-python`` is installed, else a clear ``FCMError``.

Inputs are curves as in the results file (``fcmcore.evaluate.sweep``): dicts with ``name``,
``results`` {``bpp``, ``mAP``, ...} and optionally ``reference`` and ``config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import altair as alt
import pandas as pd

from ..errors import FCMError, ParameterError

METRIC_TITLES = {"mAP": "mAP@[.5:.95]", "mAP50": "mAP@.5", "mAP_vs_ref": "mAP vs uncompressed detections"}


def curves_frame(curves: Sequence[Mapping[str, Any]], metric: str = "mAP") -> pd.DataFrame:
    rows = []
    for order, c in enumerate(curves):
        res = c["results"]
        n = len(res["bpp"])
        for i in range(n):
            value = res.get(metric, [None] * n)[i]
            if value is None or res["bpp"][i] is None:
                continue
            rows.append({
                "curve": c["name"],
                "order": order,
                "bpp": float(res["bpp"][i]),
                "value": float(value) * 100,
                "quality": res.get("quality", [None] * n)[i],
                "mAP": _pct(res.get("mAP", [None] * n)[i]),
                "mAP50": _pct(res.get("mAP50", [None] * n)[i]),
                "target_bpp": res.get("target_bpp", [None] * n)[i],
            })
    return pd.DataFrame(rows, columns=["curve", "order", "bpp", "value", "quality", "mAP", "mAP50", "target_bpp"])


def _pct(v):
    return None if v is None else round(float(v) * 100, 2)


def rd_chart(curves: Sequence[Mapping[str, Any]], metric: str = "mAP", *, title: str | None = None,
             log_x: bool = True, width: int = 560, height: int = 360) -> alt.Chart:
    """Rate-accuracy curves with the uncompressed reference(s) as horizontal rules."""
    if not curves:
        raise ParameterError("no curves to plot")
    df = curves_frame(curves, metric)
    if df.empty:
        raise ParameterError(f"the curves have no {metric} values to plot")
    mtitle = METRIC_TITLES.get(metric, metric) + " (x100)"
    domain = list(dict.fromkeys(c["name"] for c in curves))
    color = alt.Color("curve:N", scale=alt.Scale(domain=domain), legend=alt.Legend(title=None, orient="bottom", columns=1, labelLimit=600))
    x = alt.X("bpp:Q", title="bits per pixel (of the input image)",
              scale=alt.Scale(type="log", nice=False, padding=12) if log_x else alt.Scale(zero=False, nice=False))
    y = alt.Y("value:Q", title=mtitle, scale=alt.Scale(zero=False))
    tooltip = [alt.Tooltip("curve:N"), alt.Tooltip("quality:Q"), alt.Tooltip("bpp:Q", format=".4f"),
               alt.Tooltip("mAP:Q", title="mAP x100"), alt.Tooltip("mAP50:Q", title="mAP50 x100")]
    if df["target_bpp"].notna().any():
        tooltip.append(alt.Tooltip("target_bpp:Q", title="target bpp"))
    base = alt.Chart(df)
    lines = base.mark_line().encode(x=x, y=y, color=color, order="bpp:Q")
    points = base.mark_point(filled=True, size=50).encode(x=x, y=y, color=color, tooltip=tooltip)
    layers: list[alt.Chart] = [lines, points]

    refs = []
    seen = set()
    for c in curves:
        ref = c.get("reference") or {}
        value = ref.get(metric)
        if value is None:
            continue
        key = round(float(value) * 100, 2)
        if key in seen:
            continue
        seen.add(key)
        refs.append({"reference": ref.get("name", "uncompressed"), "value": float(value) * 100,
                     "bpp": ref.get("bpp")})
    if refs:
        rdf = pd.DataFrame(refs)
        rdf["text"] = [f"uncompressed {v:.1f}" for v in rdf["value"]]
        rule_tip = [alt.Tooltip("reference:N", title="uncompressed"),
                    alt.Tooltip("value:Q", title=mtitle, format=".2f"),
                    alt.Tooltip("bpp:Q", title="its bpp", format=".2f")]
        layers.append(alt.Chart(rdf).mark_rule(strokeDash=[6, 4], color="gray").encode(y="value:Q", tooltip=rule_tip))
        layers.append(alt.Chart(rdf).mark_text(align="left", baseline="bottom", dx=4, dy=-2, color="gray").encode(
            x=alt.value(0), y="value:Q", text="text:N", tooltip=rule_tip))
    chart = alt.layer(*layers).properties(width=width, height=height)
    if title:
        chart = chart.properties(title=title)
    return chart.interactive()


def bd_chart(rows: Sequence[Any], anchor: str, *, width: int = 560) -> alt.Chart:
    """BD-rate (%) per curve against ``anchor`` as labelled bars; n/a rows shown as text."""
    data = []
    for r in rows:
        d = r.to_json() if hasattr(r, "to_json") else dict(r)
        data.append({"curve": d["name"], "bd_rate": d["bd_rate"], "bd_map": d["bd_map"],
                     "label": "n/a" if d["bd_rate"] is None else f"{d['bd_rate']:+.1f}%",
                     "better": None if d["bd_rate"] is None else d["bd_rate"] <= 0})
    df = pd.DataFrame(data)
    y = alt.Y("curve:N", sort=None, title=None, axis=alt.Axis(labelLimit=500))
    bars = alt.Chart(df).mark_bar().encode(
        x=alt.X("bd_rate:Q", title=f"BD-rate vs {anchor} (%; negative = fewer bits)"),
        y=y,
        color=alt.Color("better:N", scale=alt.Scale(domain=[True, False], range=["#2ca02c", "#d62728"]), legend=None),
        tooltip=[alt.Tooltip("curve:N"), alt.Tooltip("bd_rate:Q", format="+.2f", title="BD-rate %"),
                 alt.Tooltip("bd_map:Q", format="+.2f", title="BD-mAP (points)")],
    )
    text = alt.Chart(df).mark_text(align="left", dx=4).encode(x=alt.value(0), y=y, text="label:N")
    return alt.layer(bars, text).properties(width=width, height=max(60, 26 * len(df)),
                                            title=f"BD-rate vs {anchor}")


def layers_chart(doc: Mapping[str, Any], bd_rows: Sequence[Any] | None = None, metric: str = "mAP") -> alt.VConcatChart:
    """Split points from input to output: RD curves, BD-rate vs full-input, mAP per quality."""
    curves = doc["curves"]
    order = [_where(c) for c in curves]
    rows = []
    for c in curves:
        res = c["results"]
        for q, v, b in zip(res["quality"], res.get(metric, []), res["bpp"]):
            if v is not None:
                rows.append({"split": _where(c), "quality": str(q), "value": v * 100, "bpp": b})
    df = pd.DataFrame(rows)
    per_quality = alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("split:N", sort=order, title="split point (input -> output)"),
        y=alt.Y("value:Q", title=METRIC_TITLES.get(metric, metric) + " (x100)", scale=alt.Scale(zero=False)),
        color=alt.Color("quality:N", title="quality", sort=None),
        tooltip=["split:N", "quality:N", alt.Tooltip("value:Q", format=".2f"), alt.Tooltip("bpp:Q", format=".4f")],
    ).properties(width=420, height=260, title=f"{metric} at each quality")
    parts: list[Any] = [rd_chart(curves, metric, width=420, height=260)]
    if bd_rows:
        bd = pd.DataFrame([{"split": _where_name(r, curves), "bd_rate": r.bd_rate} for r in bd_rows])
        parts.append(alt.Chart(bd).mark_bar().encode(
            x=alt.X("split:N", sort=order, title="split point (input -> output)"),
            y=alt.Y("bd_rate:Q", title="BD-rate vs full input (%)"),
            color=alt.condition(alt.datum.bd_rate <= 0, alt.value("#2ca02c"), alt.value("#d62728")),
            tooltip=["split:N", alt.Tooltip("bd_rate:Q", format="+.2f")],
        ).properties(width=420, height=260, title="BD-rate vs full input"))
    parts.append(per_quality)
    top = alt.hconcat(*parts[:2]).resolve_scale(color="independent") if len(parts) > 2 else parts[0]
    rest = parts[2:] if len(parts) > 2 else parts[1:]
    return alt.vconcat(top, *rest).resolve_scale(color="independent")


def _where(curve: Mapping[str, Any]) -> str:
    split = (curve.get("config") or {}).get("split", "?")
    return "full input" if split is None else str(split)


def _where_name(row: Any, curves: Sequence[Mapping[str, Any]]) -> str:
    for c in curves:
        if c["name"] == row.name:
            return _where(c)
    return row.name


def save_chart(chart: Any, path: str | Path) -> Path:
    """Write ``chart`` as .html / .json, or .png / .svg (needs vl-convert-python)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".html", ".json", ".png", ".svg", ".pdf"):
        raise ParameterError(f"{p}: chart files are .html, .json, .png, .svg or .pdf")
    if suffix in (".png", ".svg", ".pdf"):
        try:
            import vl_convert  # noqa: F401  why: only PNG/SVG export needs it
        except ImportError:
            raise FCMError(f"{p}: {suffix[1:].upper()} export needs vl-convert-python "
                           "(pip install vl-convert-python); .html works without it") from None
    p.parent.mkdir(parents=True, exist_ok=True)
    chart.save(str(p))
    return p
