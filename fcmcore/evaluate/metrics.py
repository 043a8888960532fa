"""Task metrics: COCO mAP (pycocotools) and agreement with the uncompressed run.

* ``coco_map(ground_truth, results, image_ids)``: COCO mAP@[.5:.95] and mAP@.5 of COCO-format
  detection results against a COCO ground-truth dict, with pycocotools (its prints silenced).
  Feed it every detection the model keeps (score floor ~0.01): mAP integrates over scores.
* ``match_detections(detections, reference)``: one image, boxes of the same class matched at
  IoU >= 0.5 greedily by score; returns matched pairs, missed reference boxes and false boxes
  (the dashboard colours them).
* ``agreement(...)``: those counts summed over images, with precision/recall/F1.
* ``map_vs_reference(...)``: mAP when the uncompressed run's detections with score >= 0.4
  are taken as ground truth: the accuracy measure for images without annotations.

Detections are anything with ``category_id``, ``score`` and ``box`` (x1, y1, x2, y2 in image
pixels), e.g. ``fcmcore.models.base.Detection``.
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol, Sequence

import numpy as np

from .coco_eval import PerImageEval

REFERENCE_SCORE_THRESHOLD = 0.4  # uncompressed detections at or above this are "ground truth"
MATCH_IOU = 0.5


class BoxLike(Protocol):
    category_id: int
    score: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class MapResult:
    mAP: float | None  # COCO AP@[.5:.95]; None when the ground truth has no boxes
    mAP50: float | None  # AP@.5
    stats: list[float] = field(default_factory=list)  # the 12 COCOeval summary numbers
    per_image: Any = field(default=None, compare=False, repr=False)  # PerImageEval when asked for

    def to_json(self) -> dict[str, Any]:
        return {"mAP": self.mAP, "mAP50": self.mAP50}


def _quiet():
    return contextlib.redirect_stdout(io.StringIO())


def coco_map(ground_truth: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
             image_ids: Iterable[int] | None = None, *, per_image: bool = False) -> MapResult:
    """COCO bbox mAP of ``results`` (dicts with image_id, category_id, bbox [x, y, w, h], score).

    ``ground_truth`` is a COCO dict (images, annotations, categories); ``image_ids`` restricts
    the evaluation (default: every image of the ground truth). Images without annotations
    count: their detections are false positives. ``per_image=True`` also keeps the per-image
    matching (``MapResult.per_image``, a ``coco_eval.PerImageEval``) for bootstrap intervals.
    """
    from pycocotools.coco import COCO  # why: pulls matplotlib; only mAP needs it
    from pycocotools.cocoeval import COCOeval  # why: as above

    ids = sorted({int(i) for i in image_ids}) if image_ids is not None else sorted(
        int(im["id"]) for im in ground_truth["images"])
    id_set = set(ids)
    anns = [a for a in ground_truth.get("annotations", []) if a["image_id"] in id_set]
    if not any(not a.get("iscrowd", 0) for a in anns):
        return MapResult(None, None, per_image=PerImageEval(ids, {}) if per_image else None)
    results = [r for r in results if r["image_id"] in id_set]
    if not results:
        empty = None
        if per_image:  # ground truth only: every category present scores 0
            counts: dict[int, dict[int, int]] = {}
            for a in anns:
                if not a.get("iscrowd", 0) and not a.get("ignore", 0):
                    c = counts.setdefault(int(a["image_id"]), {})
                    c[int(a["category_id"])] = c.get(int(a["category_id"]), 0) + 1
            empty = PerImageEval(ids, {i: [(k, n, [], [], []) for k, n in sorted(c.items())]
                                       for i, c in counts.items()})
        return MapResult(0.0, 0.0, [0.0] * 12, per_image=empty)
    with _quiet():
        gt = COCO()
        gt.dataset = {
            "images": [dict(im) for im in ground_truth["images"] if im["id"] in id_set],
            "annotations": [dict(a) for a in anns],
            "categories": [dict(c) for c in ground_truth.get("categories", [])],
        }
        gt.createIndex()
        dt = gt.loadRes([dict(r, bbox=list(r["bbox"])) for r in results])
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.imgIds = ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(s) for s in ev.stats]
    return MapResult(_valid(stats[0]), _valid(stats[1]), stats,
                     per_image=PerImageEval.from_cocoeval(ev) if per_image else None)


def _valid(value: float) -> float | None:
    return None if value < 0 or math.isnan(value) else float(value)


# -- agreement with the uncompressed run -----------------------------------------------------

def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of (N, 4) and (M, 4) boxes in x1, y1, x2, y2."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


@dataclass
class MatchResult:
    """One image: detections compared with reference boxes (same class, IoU >= threshold)."""

    matched: list[tuple[Any, Any, float]]  # (detection, reference box, IoU)
    missed: list[Any]  # reference boxes no detection matched
    false: list[Any]  # detections that match no reference box

    @property
    def counts(self) -> dict[str, int]:
        return {"matched": len(self.matched), "missed": len(self.missed), "false": len(self.false)}


def match_detections(detections: Sequence[BoxLike], reference: Sequence[BoxLike], *,
                     iou_threshold: float = MATCH_IOU,
                     score_threshold: float = REFERENCE_SCORE_THRESHOLD,
                     reference_score_threshold: float | None = None) -> MatchResult:
    """Match one image's detections to reference boxes (e.g. the uncompressed run's).

    Both lists are first cut at their score thresholds (``reference_score_threshold``
    defaults to ``score_threshold``; ground-truth boxes without a score always count).
    Detections are taken by decreasing score; each takes the unmatched reference box of the
    same class with the highest IoU >= ``iou_threshold``.
    """
    ref_thr = score_threshold if reference_score_threshold is None else reference_score_threshold
    dets = sorted((d for d in detections if d.score >= score_threshold), key=lambda d: -d.score)
    refs = [r for r in reference if getattr(r, "score", 1.0) >= ref_thr]
    if not dets or not refs:
        return MatchResult([], list(refs), list(dets))
    iou = box_iou(np.array([d.box for d in dets]), np.array([r.box for r in refs]))
    same = np.array([[d.category_id == r.category_id for r in refs] for d in dets])
    iou = np.where(same, iou, -1.0)
    taken = np.zeros(len(refs), dtype=bool)
    matched, false = [], []
    for i, d in enumerate(dets):
        row = np.where(taken, -1.0, iou[i])
        j = int(np.argmax(row))
        if row[j] >= iou_threshold:
            taken[j] = True
            matched.append((d, refs[j], float(row[j])))
        else:
            false.append(d)
    missed = [r for j, r in enumerate(refs) if not taken[j]]
    return MatchResult(matched, missed, false)


def agreement(detections_by_image: Mapping[int, Sequence[BoxLike]],
              reference_by_image: Mapping[int, Sequence[BoxLike]], *,
              iou_threshold: float = MATCH_IOU,
              score_threshold: float = REFERENCE_SCORE_THRESHOLD) -> dict[str, float | int | None]:
    """Matched / missed / false boxes summed over images, plus precision, recall and F1
    (None when undefined), comparing each image's detections with its reference's."""
    m = mi = f = 0
    for image_id, ref in reference_by_image.items():
        res = match_detections(detections_by_image.get(image_id, []), ref,
                               iou_threshold=iou_threshold, score_threshold=score_threshold)
        m, mi, f = m + len(res.matched), mi + len(res.missed), f + len(res.false)
    precision = m / (m + f) if m + f else None
    recall = m / (m + mi) if m + mi else None
    f1 = 2 * m / (2 * m + mi + f) if (2 * m + mi + f) else None
    return {"matched": m, "missed": mi, "false": f, "precision": precision, "recall": recall, "f1": f1}


def map_vs_reference(detections_by_image: Mapping[int, Sequence[BoxLike]],
                     reference_by_image: Mapping[int, Sequence[BoxLike]], *,
                     score_threshold: float = REFERENCE_SCORE_THRESHOLD, per_image: bool = False) -> MapResult:
    """mAP of the detections when the reference detections with score >= ``score_threshold``
    are the ground truth (every detection, at any score, is evaluated)."""
    image_ids = sorted(reference_by_image)
    images, anns, cats = [], [], set()
    for image_id in image_ids:
        images.append({"id": int(image_id)})
        for r in reference_by_image[image_id]:
            if r.score < score_threshold:
                continue
            x1, y1, x2, y2 = (float(v) for v in r.box)
            w, h = x2 - x1, y2 - y1
            anns.append({"id": len(anns) + 1, "image_id": int(image_id), "category_id": int(r.category_id),
                         "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": 0})
            cats.add(int(r.category_id))
    results = []
    for image_id in image_ids:
        for d in detections_by_image.get(image_id, []):
            x1, y1, x2, y2 = (float(v) for v in d.box)
            cats.add(int(d.category_id))
            results.append({"image_id": int(image_id), "category_id": int(d.category_id),
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(d.score)})
    gt = {"images": images, "annotations": anns, "categories": [{"id": c, "name": str(c)} for c in sorted(cats)]}
    return coco_map(gt, results, image_ids, per_image=per_image)
