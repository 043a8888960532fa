"""Task metrics over a clip, and their intervals.

* Per frame: the decoded-side detections matched to the uncompressed run's (same class,
  IoU >= 0.5, score >= 0.4; ``fcmcore.evaluate.metrics.match_detections``) -> matched /
  missed / false and F1 (None on a frame where neither side has a box).
* Over the clip: the counts summed (``agreement``), F1 = 2m / (2m + missed + false);
  mAP with the uncompressed detections (score >= 0.4) as pseudo ground truth
  (``map_vs_reference``, pycocotools); mAP against a COCO-style video annotation file when
  one is given (:func:`load_video_annotations`).
* Intervals: frames of a clip are strongly correlated (the same objects for seconds), so
  resampling single frames would give intervals far too narrow. We use the **circular
  moving-block bootstrap** over frames: blocks of ``block`` consecutive frames (default one
  second of video, ``round(fps)``), drawn with replacement to the clip's length, 1000
  resamples, percentile 95 % interval. BD-rate intervals resample the *same* blocks for
  every point of both curves (paired), and recompute rates and F1 per resample.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..evaluate.frame_bootstrap import block_indices, default_block, f1_of  # shared with fcm bdrate
from ..evaluate.metrics import (MATCH_IOU, REFERENCE_SCORE_THRESHOLD, agreement, coco_map, map_vs_reference,
                                match_detections)

BOOTSTRAP_SAMPLES = 1000
CONFIDENCE = 0.95


def frame_counts(detections: Sequence[Sequence], reference: Sequence[Sequence]) -> np.ndarray:
    """(N, 3) matched, missed, false per frame."""
    out = np.zeros((len(detections), 3), dtype=np.int64)
    for i, (d, r) in enumerate(zip(detections, reference)):
        m = match_detections(d, r, iou_threshold=MATCH_IOU, score_threshold=REFERENCE_SCORE_THRESHOLD)
        out[i] = (len(m.matched), len(m.missed), len(m.false))
    return out


def per_frame_f1(counts: np.ndarray) -> list[float | None]:
    return [f1_of(c) for c in counts]


def f1_interval(counts: np.ndarray, block: int, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
                ) -> tuple[float, float] | None:
    counts = np.asarray(counts)
    n = len(counts)
    if n < 2 or f1_of(counts) is None:
        return None
    idx = block_indices(n, block, samples, seed)
    sums = counts[idx].sum(axis=1)  # (samples, 3)
    den = 2 * sums[:, 0] + sums[:, 1] + sums[:, 2]
    f1 = np.where(den > 0, 2 * sums[:, 0] / np.maximum(den, 1), np.nan)
    f1 = f1[np.isfinite(f1)]
    if not len(f1):
        return None
    a = (1 - CONFIDENCE) / 2
    return float(np.quantile(f1, a)), float(np.quantile(f1, 1 - a))


def clip_metrics(detections: Sequence[Sequence], reference: Sequence[Sequence], *, fps: float,
                 annotations: dict[int, list] | None = None, ground_truth: dict | None = None,
                 block: int | None = None, with_map: bool = True) -> dict[str, Any]:
    """Agreement (with F1 interval), pseudo-GT mAP and (given annotations) mAP of one clip."""
    counts = frame_counts(detections, reference)
    n = len(detections)
    block = block or default_block(fps, n)
    by_frame = {i: list(d) for i, d in enumerate(detections)}
    ref_by_frame = {i: list(r) for i, r in enumerate(reference)}
    agr = agreement(by_frame, ref_by_frame)
    ci = f1_interval(counts, block)
    agr["f1_ci"] = list(ci) if ci else None
    agr["interval"] = f"95 % circular moving-block bootstrap over frames, blocks of {block} frames"
    out: dict[str, Any] = {"agreement": agr, "counts": counts, "per_frame_f1": per_frame_f1(counts)}
    if with_map:
        m = map_vs_reference(by_frame, ref_by_frame)
        out["mAP_vs_ref"], out["mAP50_vs_ref"] = m.mAP, m.mAP50
    if ground_truth is not None:
        out.update(annotation_map(detections, ground_truth))
    return out


# -- COCO-style video annotations ---------------------------------------------------------------

def load_video_annotations(path: str | Path) -> dict:
    """A COCO instances file for a clip: ``images`` are frames, each with ``frame_index``
    (the 0-based index of the frame in the source clip; when absent, the image ``id`` is
    taken as the frame index), ``annotations`` with ``bbox`` [x, y, w, h] in pixels,
    ``category_id`` COCO ids (1..90), as the detector predicts them."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"annotations {p}: no such file")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"annotations {p}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) or not isinstance(
            doc.get("annotations"), list):
        raise InputError(f"annotations {p}: not a COCO file (needs 'images' and 'annotations')")
    try:
        for im in doc["images"]:
            im["_frame"] = int(im.get("frame_index", im["id"]))
        for a in doc["annotations"]:
            if len(a["bbox"]) != 4 or not all(math.isfinite(float(v)) for v in a["bbox"]):
                raise ValueError("bad bbox")
            a.setdefault("iscrowd", 0)
            a.setdefault("area", float(a["bbox"][2]) * float(a["bbox"][3]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"annotations {p}: malformed entry ({exc})") from None
    doc.setdefault("categories", [{"id": c, "name": str(c)} for c in
                                  sorted({int(a["category_id"]) for a in doc["annotations"]})])
    return doc


def annotation_map(detections: Sequence[Sequence], ground_truth: dict, indices: Sequence[int] | None = None
                   ) -> dict[str, Any]:
    """mAP of the decoded-side detections against a video annotation file; frames without an
    annotated image are left out. ``indices``: source index of each detection list."""
    indices = list(range(len(detections))) if indices is None else list(indices)
    frame_to_image = {im["_frame"]: im["id"] for im in ground_truth["images"]}
    results, ids = [], []
    for dets, fi in zip(detections, indices):
        if fi not in frame_to_image:
            continue
        image_id = frame_to_image[fi]
        ids.append(image_id)
        for d in dets:
            x1, y1, x2, y2 = (float(v) for v in d.box)
            results.append({"image_id": image_id, "category_id": int(d.category_id),
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(d.score)})
    if not ids:
        return {"mAP": None, "mAP50": None, "annotated_frames": 0}
    m = coco_map(ground_truth, results, ids)
    return {"mAP": m.mAP, "mAP50": m.mAP50, "annotated_frames": len(ids)}
