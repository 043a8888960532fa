"""The rate–accuracy tab: every column's configuration swept over its codec's qualities, each
column's operating point on its curve, and BD-rate figures of the curves against an anchor.

Runs only while its tab is open (the sweeps are the heaviest work of the page). Accuracy is
COCO mAP on a server dataset when there is one, else agreement with the uncompressed
detector on the sidebar's images; the page says which, beside the chart and on each
reference line, and a wrapper curve scored against its own uncoded run says so in its legend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from fcmcore.inspect import point_at_quality, skipped_points
from fcmcore.pipeline import PipelineConfig

from . import charts, compute, fmt, inputs, keys, state
from .columns import ColumnOutcome, _sanitise

SAMPLES_SOURCE = "sidebar images"
LIMITS = [8, 16, 32, 96]
DEFAULT_LIMIT = 8
METRICS_SAMPLES = {"f1": "agreement with the uncompressed detector (F1 of boxes)",
                   "mAP_vs_ref": "mAP against the uncompressed detector's boxes"}
METRICS_ANNOTATED = {"mAP": "COCO mAP@[.5:.95] (annotations)", "mAP50": "COCO mAP@.5 (annotations)",
                     **METRICS_SAMPLES}
METRICS_TASKS = {"pose_oks": "pose: OKS vs the uncompressed MoveNet (images with a person)",
                 "cls_top1": "classification: top-1 agreement with the uncompressed EfficientNet",
                 "cls_top5": "classification: top-1 of the uncompressed EfficientNet within the top-5"}
VS_REFERENCE = ("f1", "mAP_vs_ref", *METRICS_TASKS)


@dataclass
class Curve:
    key: tuple  # configuration without quality
    config: PipelineConfig
    columns: list[ColumnOutcome]
    doc: dict[str, Any] | None = None  # fcmcore.evaluate's results document
    problem: str | None = None

    @property
    def letters(self) -> str:
        return ", ".join(o.letter for o in self.columns)

    @property
    def wrapped(self) -> bool:
        return self.config.wrapper not in (None, "", "none")

    def legend(self, metric: str) -> str:
        c = self.config
        where = "full input" if c.split is None else c.split
        text = f"{self.letters} · {c.codec} @ {where}"
        if self.wrapped:
            text += f" + {c.wrapper}" + (f" ({c.rdo})" if c.rdo != "sse" else "")
            if metric in VS_REFERENCE:
                text += f" — scored vs its own uncoded {c.wrapper} run"
        return text


def curves_for(outcomes: list[ColumnOutcome]) -> list[Curve]:
    """One curve per configuration-without-quality; columns differing only in quality share it."""
    curves: dict[tuple, Curve] = {}
    for o in outcomes:
        if o.config is None or o.config.codec is None or o.problem:
            continue
        base = o.config.with_quality(None)
        k = compute.config_key(base)
        curves.setdefault(k, Curve(k, base, [])).columns.append(o)
    return list(curves.values())


def with_f1(curve: dict[str, Any]) -> dict[str, Any]:
    """The curve with ``results['f1']`` from its points' agreement (and 1.0 for the reference)."""
    out = dict(curve, results=dict(curve["results"]))
    out["results"]["f1"] = [(p.get("agreement") or {}).get("f1") for p in curve.get("points", [])]
    if curve.get("reference"):
        out["reference"] = dict(curve["reference"], f1=1.0)
    return out


def rd_section(images: list[inputs.LoadedImage], outcomes: list[ColumnOutcome]) -> dict[str, Any] | None:
    datasets = compute.dataset_choices()
    sources = list(datasets) + [SAMPLES_SOURCE]  # a dataset first: mAP against annotations by default
    _sanitise(keys.RD_SOURCE, sources, sources[0])
    controls = st.columns([2, 1, 3, 2], vertical_alignment="bottom")
    source = controls[0].selectbox("Measured on", sources, key=keys.RD_SOURCE,
                                   format_func=lambda s: f"dataset {s} (server)" if s in datasets else
                                   f"the {len(images)} {s}")
    on_dataset = source in datasets
    limit = None
    if on_dataset:
        _sanitise(keys.RD_LIMIT, LIMITS, DEFAULT_LIMIT)
        limit = controls[1].selectbox("Images", LIMITS, key=keys.RD_LIMIT)
    curves = curves_for(outcomes)
    if not curves:
        st.info("No column uses a codec: nothing to sweep.")
        return None
    if not on_dataset and not images:
        st.info("No usable image to sweep.")
        return None
    run_sweeps(curves, images, source if on_dataset else None, limit)
    for curve in curves:
        if curve.problem:
            st.error(f"Curve {curve.letters}: {fmt.md_escape(curve.problem)}")
    done = [c for c in curves if c.doc is not None]
    if not done:
        return None
    annotated = any(c.doc.get("ground_truth") == "annotations" for c in done)
    metrics = dict(METRICS_ANNOTATED if annotated else METRICS_SAMPLES)
    # the sidebar's tasks: their agreement metrics, once every curve carries them
    metrics.update({k: v for k, v in METRICS_TASKS.items() if all(k in c.doc["curves"][0]["results"] for c in done)})
    _sanitise(keys.RD_METRIC, list(metrics), list(metrics)[0])
    metric = controls[2].selectbox("Accuracy axis", list(metrics), key=keys.RD_METRIC, format_func=metrics.get)
    shared = [c for c in done if len(c.columns) > 1]
    if shared:
        letters = {o.cid: o.letter for c in shared for o in c.columns}
        _sanitise(keys.RD_TARGET, list(letters), next(iter(letters)))
        controls[3].selectbox("A click sets column", list(letters), key=keys.RD_TARGET, format_func=letters.get,
                              help="Columns that differ only in quality share a curve: this one takes the clicked quality.")
    where = (f"{done[0].doc['dataset']['num_images'] if 'dataset' in done[0].doc else limit} images of {source}"
             if on_dataset else f"the {len(images)} sidebar image(s)")
    st.markdown(f"**Accuracy:** {metrics[metric]} on {where}, ×100. "
                + ("Reference lines: each curve's configuration without coding. " if metric not in VS_REFERENCE else
                   ("The uncompressed network scores 100 by definition. " if metric in METRICS_TASKS else "The uncompressed detector scores 100 by definition. "))
                + "Click a point to use that quality in its column; rings are the columns' current settings.")
    docs = {id(c): with_f1(c.doc["curves"][0]) for c in done}
    ops = operating_points(done, docs, images, metric, (source, int(limit)) if on_dataset else None)
    rd_curves = []
    for c in done:
        doc = docs[id(c)]
        ref = (doc.get("reference") or {}).get(metric)
        ref_label = ("uncompressed detector" if not c.wrapped else f"uncoded, {c.config.wrapper} wrapper")
        pts = [{"bpp": b, "value": v * 100, "quality": q} for b, v, q in
               zip(doc["results"]["bpp"], doc["results"].get(metric, []), doc["results"].get("quality", []))
               if b is not None and v is not None]
        rd_curves.append(charts.RDCurve(c.legend(metric), c.columns[0].colour, pts,
                                        None if ref is None else float(ref) * 100, ref_label, doc["name"],
                                        [o.cid for o in c.columns]))
    try:
        st.altair_chart(charts.rd_chart(rd_curves, ops, f"{metrics[metric]} ×100"), key=keys.RD_CHART,
                        on_select=on_select, selection_mode="pick", width="stretch")
    except Exception as exc:
        st.error(fmt.md_escape(compute.error_message(exc)))
    st.session_state[keys.RD_CURVE_COLUMNS] = {c.curve: c.columns for c in rd_curves}
    bd_section(done, docs, metric)
    dropped = sum(len(c.doc.get("skipped", [])) for c in done)
    if dropped:
        st.warning(f"{dropped} image(s) could not be read and were left out of the sweep.")
    doc = {"curves": [dict(docs[id(c)], name=c.legend(metric)) for c in done], "metric": metric,
           "operating_points": ops, "source": source if on_dataset else [im.entry.name for im in images]}
    st.session_state[keys.RD_DOC] = doc
    return doc


def run_sweeps(curves: list[Curve], images, dataset: str | None, limit: int | None) -> None:
    codecs = compute.codec_table()
    items = [(im.entry.sha, im.entry.name, im.entry.data,
              str(inputs.sample_files()[im.entry.name]) if im.entry.source == "sample" else None) for im in images]
    for curve in curves:
        qualities = compute.sweep_qualities(codecs[curve.config.codec])
        try:
            if dataset is not None:
                curve.doc = compute.sweep_dataset(dataset, int(limit), curve.key, qualities, curve.config)
            else:
                curve.doc = compute.sweep_images(tuple(im.entry.sha for im in images), curve.key, qualities,
                                                 items, curve.config)
        except Exception as exc:
            curve.problem = compute.error_message(exc)


def operating_points(curves: list[Curve], docs: dict[int, dict[str, Any]], images: list[inputs.LoadedImage],
                     metric: str, dataset: tuple[str, int] | None) -> list[dict[str, Any]]:
    """Each column's current (bpp, accuracy) on the same images as its curve: the curve's own
    point when the column's quality is on the swept grid, else measured once (cached)."""
    ops = []
    for curve in curves:
        doc = docs[id(curve)]
        for o in curve.columns:
            quality = o.result.quality if o.result is not None else None
            if quality is None:
                continue
            try:
                p = point_at_quality(doc, quality)
                if p is None and dataset is not None:
                    one = compute.sweep_dataset(dataset[0], dataset[1], curve.key, (float(quality),), curve.config)
                    p = one["curves"][0]["points"][0]
                if p is not None:
                    point = {"bpp": p["bpp"], "mAP": p.get("mAP"), "mAP50": p.get("mAP50"),
                             "mAP_vs_ref": p.get("mAP_vs_ref"), "f1": (p.get("agreement") or {}).get("f1"),
                             **{k: p.get(k) for k in METRICS_TASKS}}
                else:
                    point = compute.operating_point(tuple(im.entry.sha for im in images), compute.config_key(o.config),
                                                    [(im.entry.sha, im.image) for im in images], o.config)
            except Exception as exc:  # the column shows its own error; say why the ring is absent
                st.caption(f"Column {o.letter}: no operating point ({fmt.md_escape(compute.error_message(exc))})")
                continue
            if point.get(metric) is not None:
                ops.append({"column": o.letter, "cid": o.cid, "colour": o.colour, "curve": doc["name"],
                            "quality": quality, "bpp": point["bpp"], "value": float(point[metric]) * 100})
    return ops


def on_select() -> None:
    """Chart click -> a pending quality for the column using that curve (applied before widgets)."""
    picked = st.session_state.get(keys.RD_CHART)
    points = (picked or {}).get("selection", {}).get("pick") or []
    if not points:
        return
    point = points[0]
    cids = st.session_state.get(keys.RD_CURVE_COLUMNS, {}).get(point.get("curve"), [])
    target = st.session_state.get(keys.RD_TARGET)
    cid = target if target in cids else (cids[0] if cids else None)
    if cid is not None and point.get("quality") is not None:
        state.request_quality(cid, point["quality"])


def bd_section(curves: list[Curve], docs: dict[int, dict[str, Any]], metric: str) -> None:
    from . import bdtable

    st.markdown("##### BD-rate: bits saved at equal accuracy")
    if len(curves) < 2:
        st.caption("Give a column another codec, split point or wrapper to get BD-rate figures "
                   "(columns that differ only in quality share one curve).")
        return
    named = [dict(docs[id(c)], name=c.legend(metric)) for c in curves]
    names = [c["name"] for c in named]
    _sanitise(keys.RD_ANCHOR, names, names[0])
    anchor = st.selectbox("Anchor (the curve the others are compared with)", names, key=keys.RD_ANCHOR)
    bdtable.show(named, anchor, metric)
    for c in named:
        n = skipped_points(c, metric)
        if n:
            st.caption(f"{c['name'].split(' · ')[0]}: {n} point{'s' if n > 1 else ''} skipped: more bits, no gain "
                       "(BD-rate needs accuracy rising with rate).")
