"""Confidence intervals by the paired bootstrap over images.

A figure measured on N images is one draw; how much it would move on another N images of the
same kind is estimated by resampling the images with replacement (``resample_weights``: B
rows of N counts, seeded) and recomputing the figure on each resample:

* a point's mAP: pycocotools' matching kept per image, the accumulation redone per resample
  (``coco_eval.PerImageEval``), 1000 resamples ~0.1 s of CPU per point;
* a point's rate: the mean of its per-image bpp under the same weights;
* agreement with the uncompressed run (matched / missed / false boxes, F1): per-image counts
  summed under the weights;
* BD-rate / BD-mAP of two curves (``bd_with_ci``): both curves on the *same* resample (paired:
  the images that are hard for one codec are hard for the other, so the difference is far
  less noisy than either curve), Pareto front and Bjøntegaard integral per resample.

Intervals are percentile intervals (2.5 % and 97.5 % of the resampled values for 95 %). A BD
figure is "significant" when its interval excludes 0. Every result says on how many images
it rests. Per-image data comes from the results file (``points[].coco_eval`` and
``points[].images``), written by ``fcm sweep`` since results carried intervals. Two video
curves (``fcm sweep --video``) are resampled over frame blocks instead (``frame_bootstrap``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..tasks.evaluation import TASK_METRICS
from .bdrate import bd_compare, curve_points, monotone_front, overlap_fractions
from .coco_eval import PerImageEval
from .frame_bootstrap import block_indices, is_video_curve, video_bd_samples, video_block

N_RESAMPLES = 1000
SEED = 0
CONFIDENCE = 0.95


def resample_weights(n_images: int, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(n_resamples, n_images) float counts: how often each image is drawn in each resample."""
    if n_images < 1:
        raise ValueError("no images to resample")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=n_resamples).astype(np.float64)


def percentile_interval(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> list[float] | None:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return None
    a = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(v, [a, 100 - a])
    return [float(lo), float(hi)]


# -- per-image data of a curve -------------------------------------------------------------------

class NoPerImageData(ValueError):
    """A curve lacks the per-image data an interval needs (an older results file, a bare curve)."""


def point_image_ids(point: Mapping[str, Any]) -> list[int]:
    rows = point.get("images")
    if not rows:
        raise NoPerImageData("no per-image rows")
    return [int(r["image_id"]) for r in rows]


def curve_image_ids(curve: Mapping[str, Any]) -> list[int]:
    points = curve.get("points")
    if not points:
        raise NoPerImageData(f"curve {curve.get('name')!r} has no per-point data (not an fcm sweep results file)")
    ids = point_image_ids(points[0])
    for p in points[1:]:
        if point_image_ids(p) != ids:
            raise NoPerImageData(f"curve {curve.get('name')!r}: its points cover different images")
    return ids


def _eval_key(point: Mapping[str, Any], metric: str) -> str:
    if metric in ("mAP", "mAP50"):
        if "coco_eval" in point:
            return "coco_eval"
        if "coco_eval_vs_ref" in point and point.get("mAP") == point.get("mAP_vs_ref"):
            return "coco_eval_vs_ref"  # a dataset without annotations: mAP is mAP vs reference
    elif metric in ("mAP_vs_ref", "mAP50_vs_ref") and "coco_eval_vs_ref" in point:
        return "coco_eval_vs_ref"
    raise NoPerImageData(f"no per-image COCO evaluation for {metric} (results written before intervals "
                         "existed: re-run fcm sweep, the cache makes it fast)")


def point_metric_samples(point: Mapping[str, Any], metric: str, weights: np.ndarray,
                         image_ids: Sequence[int]) -> np.ndarray:
    """(B,) the point's metric on each resample (rows of ``weights`` over ``image_ids``)."""
    if metric.endswith("_vs_ref") and point.get(metric) == 1.0 and "coco_eval_vs_ref" not in point:
        return np.ones(weights.shape[0])  # a reference against itself
    if metric in TASK_METRICS:
        return _task_metric_samples(point, metric, weights, image_ids)
    ev = PerImageEval.from_json(point[_eval_key(point, metric)])
    if ev.image_ids != list(image_ids):
        column = {i: n for n, i in enumerate(image_ids)}
        if set(column) != set(ev.image_ids):
            raise NoPerImageData("per-image evaluation covers other images than the point")
        weights = weights[:, [column[i] for i in ev.image_ids]]
    m, m50 = ev.map_for_weights(weights)
    return m50 if metric.startswith("mAP50") else m


def _task_metric_samples(point: Mapping[str, Any], metric: str, weights: np.ndarray,
                         image_ids: Sequence[int]) -> np.ndarray:
    """A secondary-task metric (a mean over the images where it is defined) on each resample."""
    rows = point.get("images") or []
    if not rows or any("tasks" not in r for r in rows):
        raise NoPerImageData(f"no per-image {metric} (results written before per-image task values: re-run "
                             "fcm sweep --tasks, the cache makes it fast)")
    if [int(r["image_id"]) for r in rows] != list(image_ids):
        raise NoPerImageData("per-image task values cover other images than the point")
    v = np.array([np.nan if r["tasks"].get(metric) is None else float(r["tasks"][metric]) for r in rows])
    ok = np.isfinite(v)
    num = weights[:, ok] @ v[ok]
    den = weights[:, ok].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def point_rate_samples(point: Mapping[str, Any], weights: np.ndarray) -> np.ndarray:
    bpp = np.array([float(r["bpp"]) for r in point["images"]])
    return weights @ bpp / weights.sum(axis=1)


def curve_samples(curve: Mapping[str, Any], metric: str, weights: np.ndarray,
                  image_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(rates, values), each (B, points): the curve on every resample."""
    if curve_image_ids(curve) != list(image_ids):
        raise NoPerImageData("curves cover different images")
    rates = np.stack([point_rate_samples(p, weights) for p in curve["points"]], axis=1)
    values = np.stack([point_metric_samples(p, metric, weights, image_ids) for p in curve["points"]], axis=1)
    return rates, values


def point_intervals(curve: Mapping[str, Any], metric: str = "mAP", *, n_resamples: int = N_RESAMPLES,
                    seed: int = SEED, confidence: float = CONFIDENCE) -> list[list[float] | None]:
    """A ``confidence`` interval of the metric at each point of a results-file curve."""
    ids = curve_image_ids(curve)
    w = resample_weights(len(ids), n_resamples, seed)
    return [percentile_interval(point_metric_samples(p, metric, w, ids), confidence) for p in curve["points"]]


def agreement_intervals(rows: Sequence[Mapping[str, Any]], weights: np.ndarray,
                        confidence: float = CONFIDENCE) -> dict[str, list[float] | None]:
    """Intervals of precision, recall and F1 vs the uncompressed run, from per-image rows
    carrying ``agreement: [matched, missed, false]``."""
    counts = np.array([r["agreement"] for r in rows], dtype=np.float64)  # (N, 3)
    m, mi, f = (weights @ counts).T
    with np.errstate(divide="ignore", invalid="ignore"):
        precision, recall, f1 = m / (m + f), m / (m + mi), 2 * m / (2 * m + mi + f)
    return {"precision": percentile_interval(precision, confidence), "recall": percentile_interval(recall, confidence),
            "f1": percentile_interval(f1, confidence)}


# -- BD figures with intervals ---------------------------------------------------------------------

@dataclass
class BDInterval:
    """BD figures of ``name`` against ``anchor`` with paired-bootstrap intervals.

    ``bd_rate`` (%) and ``bd_map`` (metric points x100) are the figures of the measured curves
    (None when refused: too little overlap, see ``notes``); ``*_ci`` the ``confidence``
    percentile intervals (None without per-image data). ``overlap``: the shared part of the
    two curves' metric ranges (what BD-rate integrates over), ``rate_overlap``: of their log
    rate ranges (BD-mAP). ``significant``: the BD-rate interval excludes 0."""

    name: str
    anchor: str
    metric: str = "mAP"
    bd_rate: float | None = None
    bd_rate_ci: list[float] | None = None
    bd_map: float | None = None
    bd_map_ci: list[float] | None = None
    n_images: int | None = None
    overlap: float | None = None
    rate_overlap: float | None = None
    significant: bool | None = None
    bd_map_significant: bool | None = None
    n_resamples: int = 0
    failed_resamples: int = 0
    confidence: float = CONFIDENCE
    notes: list[str] = field(default_factory=list)
    unit: str = "images"  # what n_images counts: "frames" for video curves (block bootstrap)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("anchor")
        return d

    def verdict(self) -> str:
        """"significant" / "not significant on N images" / why there is no interval."""
        if self.bd_rate is None:
            return "no BD-rate"
        if self.bd_rate_ci is None:
            return "no interval"
        return "significant" if self.significant else f"not significant on {self.n_images} {self.unit}"


def _excludes_zero(ci: list[float] | None) -> bool | None:
    return None if ci is None else bool(ci[0] > 0 or ci[1] < 0)


def bd_with_ci(anchor: Mapping[str, Any], test: Mapping[str, Any], *, metric: str = "mAP",
               n_resamples: int = N_RESAMPLES, seed: int = SEED, confidence: float = CONFIDENCE) -> BDInterval:
    """BD-rate and BD-mAP of curve ``test`` against curve ``anchor`` (results-file curves from
    ``fcm sweep``) with paired-bootstrap intervals over their images."""
    res = BDInterval(test["name"], anchor["name"], metric, confidence=confidence)
    try:
        res.n_images = len(curve_image_ids(test))
    except NoPerImageData:
        pass
    fa = monotone_front(anchor["name"], *curve_points(anchor, metric))
    ft = monotone_front(test["name"], *curve_points(test, metric))
    res.notes += [n for n in (fa.note(metric), ft.note(metric)) if n]
    point = bd_compare(fa, ft, metric)
    res.notes += point.notes
    res.bd_rate, res.bd_map = point.bd_rate, point.bd_map
    if len(fa.rates) >= 2 and len(ft.rates) >= 2:
        res.overlap, res.rate_overlap = overlap_fractions(fa, ft)
    if (res.bd_rate is None and res.bd_map is None) or n_resamples <= 0:
        return res
    if is_video_curve(anchor) and is_video_curve(test):
        return _video_interval(res, anchor, test, metric, n_resamples, seed, confidence)
    try:
        ids = curve_image_ids(anchor)
        if curve_image_ids(test) != ids:
            raise NoPerImageData("the two curves were measured on different images: no paired interval")
        res.n_images = len(ids)
        w = resample_weights(len(ids), n_resamples, seed)
        ra, va = curve_samples(anchor, metric, w, ids)
        rt, vt = curve_samples(test, metric, w, ids)
    except NoPerImageData as exc:
        res.notes.append(f"{test['name']}: no interval: {exc}")
        return res
    rates, maps = np.full(n_resamples, np.nan), np.full(n_resamples, np.nan)
    for b in range(n_resamples):
        r = bd_compare(monotone_front("a", ra[b], va[b]), monotone_front("t", rt[b], vt[b]), metric, fast=True)
        rates[b] = np.nan if r.bd_rate is None else r.bd_rate
        maps[b] = np.nan if r.bd_map is None else r.bd_map
    _set_intervals(res, rates, maps, confidence)
    return res


def _set_intervals(res: BDInterval, rates: np.ndarray, maps: np.ndarray, confidence: float) -> None:
    """``res``'s intervals and verdicts from the BD figures of every resample (NaN: none there)."""
    res.n_resamples = n_resamples = len(rates)
    if res.bd_rate is not None:
        res.bd_rate_ci = percentile_interval(rates, confidence)
        res.significant = _excludes_zero(res.bd_rate_ci)
    if res.bd_map is not None:
        res.bd_map_ci = percentile_interval(maps, confidence)
        res.bd_map_significant = _excludes_zero(res.bd_map_ci)
    res.failed_resamples = int(np.count_nonzero(~np.isfinite(rates if res.bd_rate is not None else maps)))
    if res.failed_resamples > 0.05 * n_resamples:
        res.notes.append(f"{res.name}: {res.failed_resamples} of {n_resamples} resamples gave no BD figure "
                         "(curves without overlap there); the interval covers the others only")


def _video_interval(res: BDInterval, anchor, test, metric: str, n_resamples: int, seed: int,
                    confidence: float) -> BDInterval:
    """Two video curves: the paired circular moving-block bootstrap over frames
    (``frame_bootstrap``), on F1 (the metric video points keep per frame)."""
    n = len(anchor["points"][0]["frame_bits"])
    block = video_block(anchor)
    if metric != "f1" or block is None or any(len(p["frame_bits"]) != n for c in (anchor, test) for p in c["points"]):
        why = ("per-frame intervals are on --metric f1" if metric != "f1" else
               "no block length recorded (re-run the sweep)" if block is None else "curves on different frames")
        res.notes.append(f"{test['name']}: no interval: {why}")
        return res
    res.n_images, res.unit = n, "frames"
    if n < 2 * block:  # one block: every resample is the clip itself, a zero-width "interval"
        res.notes.append(f"{test['name']}: no interval: {n} frames hold fewer than two blocks of {block} frames")
        return res
    idx = block_indices(n, block, n_resamples, seed)
    ra, va = video_bd_samples(anchor, idx)
    rt, vt = video_bd_samples(test, idx)
    rates, maps = np.full(n_resamples, np.nan), np.full(n_resamples, np.nan)
    for b in range(n_resamples):
        fa = _finite_front("a", ra[b], va[b])
        ft = _finite_front("t", rt[b], vt[b])
        if fa is None or ft is None:
            continue
        r = bd_compare(fa, ft, metric, fast=True)
        rates[b] = np.nan if r.bd_rate is None else r.bd_rate
        maps[b] = np.nan if r.bd_map is None else r.bd_map
    res.notes.append(f"{test['name']}: interval over {n} frames, circular blocks of {block} frames")
    _set_intervals(res, rates, maps, confidence)
    return res


def _finite_front(name: str, rates, values):
    keep = [(r, v) for r, v in zip(rates, values) if np.isfinite(v)]
    if len(keep) < 2:
        return None
    return monotone_front(name, [r for r, _ in keep], [v for _, v in keep])


def bd_table_with_ci(curves: Sequence[Mapping[str, Any]], anchor: str, metric: str = "mAP", *,
                     n_resamples: int = N_RESAMPLES, seed: int = SEED,
                     confidence: float = CONFIDENCE) -> list[BDInterval]:
    """``bd_with_ci`` of every curve against the one named ``anchor`` (its own row: 0)."""
    by_name = {c["name"]: c for c in curves}
    a = by_name[anchor]
    rows = []
    for c in curves:
        if c["name"] == anchor:
            rows.append(BDInterval(anchor, anchor, metric, bd_rate=0.0, bd_map=0.0, overlap=1.0, rate_overlap=1.0,
                                   n_images=len(c.get("points", [{}])[0].get("images", [])) or None,
                                   confidence=confidence))
            continue
        rows.append(bd_with_ci(a, c, metric=metric, n_resamples=n_resamples, seed=seed, confidence=confidence))
    return rows

def format_ci_table(rows: Sequence[BDInterval], anchor: str, metric: str = "mAP") -> str:
    """The ``fcm bdrate`` table: figures, 95 % intervals, overlap and a verdict per curve."""
    width = max([len(r.name) for r in rows] + [5])
    pct = int(round(rows[0].confidence * 100)) if rows else 95
    lines = [f"BD vs anchor {anchor!r} (akima; BD-{metric} in {metric} points x100; {pct}% paired bootstrap "
             f"intervals over images)",
             f"{'curve':{width}s}  {'BD-rate %':>9s}  {f'{pct}% CI':>17s}  {'BD-' + metric:>8s}  {f'{pct}% CI':>15s}  "
             f"{'overlap':>7s}  {'images':>6s}  verdict"]
    for r in rows:
        rate = "n/a" if r.bd_rate is None else f"{r.bd_rate:+.2f}"
        rci = "" if r.bd_rate_ci is None else f"[{r.bd_rate_ci[0]:+.1f}, {r.bd_rate_ci[1]:+.1f}]"
        dm = "n/a" if r.bd_map is None else f"{r.bd_map:+.2f}"
        mci = "" if r.bd_map_ci is None else f"[{r.bd_map_ci[0]:+.2f}, {r.bd_map_ci[1]:+.2f}]"
        ov = "" if r.overlap is None else f"{r.overlap:.0%}"
        n = "" if r.n_images is None else str(r.n_images)
        verdict = "anchor" if r.name == anchor else r.verdict()
        lines.append(f"{r.name:{width}s}  {rate:>9s}  {rci:>17s}  {dm:>8s}  {mci:>15s}  {ov:>7s}  {n:>6s}  {verdict}")
    return "\n".join(lines)
