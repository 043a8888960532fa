"""One RD point of a sweep from its per-image records: rate, mAP, agreement, intervals.

``summarise`` turns the records of one spec (one quality, or one target rate, or the
uncompressed reference) on the sweep's images into the point of the results file: mean bpp,
COCO mAP by pycocotools, agreement with the reference, and the per-image data that intervals
need later (``coco_eval``: pycocotools' per-image matching; ``images[].agreement``), plus
95 % bootstrap intervals of the point's own figures (``mAP_ci``, ``agreement.f1_ci``...)
on the sweep's shared resamples (``bootstrap.resample_weights``: the same for every point).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from ..pipeline import PipelineConfig
from ..tasks.evaluation import per_image_tasks, summarise_tasks
from .bootstrap import agreement_intervals, percentile_interval
from .coco_eval import PerImageEval
from .datasets import Dataset, detections_to_coco
from .metrics import REFERENCE_SCORE_THRESHOLD, coco_map, map_vs_reference, match_detections
from .sweep_worker import RunSpec, record_detections


def label_of(cfg: dict[str, Any]) -> str:
    return PipelineConfig(**{k: v for k, v in cfg.items() if k != "paradigm"}).label()


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _map_intervals(ev: PerImageEval, weights: np.ndarray | None) -> tuple[list[float] | None, list[float] | None]:
    if weights is None:
        return None, None
    m, m50 = ev.map_for_weights(weights)
    return percentile_interval(m), percentile_interval(m50)


def summarise(dataset: Dataset, image_ids: list[int], spec: RunSpec, recs: dict[int, dict[str, Any]],
              reference: dict[int, list] | None, weights: np.ndarray | None = None) -> dict[str, Any]:
    """Metrics of one point (or of a reference when ``reference`` is None). ``weights``:
    bootstrap resamples over ``image_ids`` (None: no intervals)."""
    rows = [recs[i] for i in image_ids]
    dets = {i: record_detections(recs[i]) for i in image_ids}
    point: dict[str, Any] = {}
    qualities = [r["quality"] for r in rows if r["quality"] is not None]
    point["quality"] = (_mean([float(q) for q in qualities]) if spec.target_bpp is not None
                        else (qualities[0] if qualities else None))
    if spec.target_bpp is not None:
        point["target_bpp"] = spec.target_bpp
    point["config"] = dict(spec.config) if spec.target_bpp is None else dict(spec.config, quality=None)
    point["bpp"] = _mean([r["bpp"] for r in rows])
    point["bits_mean"] = _mean([float(r["bits"]) for r in rows])
    if weights is not None:
        bpp = np.array([r["bpp"] for r in rows])
        point["bpp_ci"] = percentile_interval(weights @ bpp / weights.sum(axis=1))

    dropped = 0
    coco_eval = None
    if dataset.has_annotations:
        results = []
        for i in image_ids:
            entries, n = detections_to_coco(dataset, i, dets[i])
            results += entries
            dropped += n
        m = coco_map(dataset.ground_truth(), results, image_ids, per_image=True)
        point["mAP"], point["mAP50"] = m.mAP, m.mAP50
        point["mAP_ci"], point["mAP50_ci"] = _map_intervals(m.per_image, weights)
        coco_eval = m.per_image.to_json()
    per_image_agreement = None
    vs_ref_eval = None
    if reference is not None:
        mr = map_vs_reference(dets, reference, per_image=True)
        point["mAP_vs_ref"], point["mAP50_vs_ref"] = mr.mAP, mr.mAP50
        point["mAP_vs_ref_ci"], point["mAP50_vs_ref_ci"] = _map_intervals(mr.per_image, weights)
        vs_ref_eval = mr.per_image.to_json()
        per_image_agreement = []
        for i in image_ids:
            res = match_detections(dets[i], reference.get(i, []))
            per_image_agreement.append([len(res.matched), len(res.missed), len(res.false)])
        m_, mi, f = (sum(c[j] for c in per_image_agreement) for j in range(3))
        point["agreement"] = {
            "matched": m_, "missed": mi, "false": f,
            "precision": m_ / (m_ + f) if m_ + f else None,
            "recall": m_ / (m_ + mi) if m_ + mi else None,
            "f1": 2 * m_ / (2 * m_ + mi + f) if (2 * m_ + mi + f) else None,
        }
        if weights is not None:
            cis = agreement_intervals([{"agreement": c} for c in per_image_agreement], weights)
            point["agreement"].update({f"{k}_ci": v for k, v in cis.items()})
    else:
        point["mAP_vs_ref"], point["mAP50_vs_ref"] = 1.0, 1.0
    if not dataset.has_annotations:
        point["mAP"], point["mAP50"] = point["mAP_vs_ref"], point["mAP50_vs_ref"]
        point["mAP_ci"], point["mAP50_ci"] = point.get("mAP_vs_ref_ci"), point.get("mAP50_vs_ref_ci")
    point["dropped_detections"] = dropped
    stages: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        for k, v in r["timings_ms"].items():
            stages[k].append(v)
    point["timings_ms"] = {k: round(_mean(v), 3) for k, v in stages.items()}
    point.update(_task_summary(dataset, image_ids, rows))
    per_image_task = per_image_tasks(dataset, image_ids, rows)
    point["num_images"] = len(rows)
    point["cached_images"] = sum(1 for r in rows if r.get("cached"))
    point["images"] = [
        {"image_id": r["image_id"], "quality": r["quality"], "bits": r["bits"], "bpp": round(r["bpp"], 7),
         "num_detections": len(r["detections"]),
         "num_shown": sum(1 for d in r["detections"] if d[1] >= REFERENCE_SCORE_THRESHOLD),
         "cached": bool(r.get("cached")),
         **({"agreement": per_image_agreement[n]} if per_image_agreement is not None else {}),
         **({"tasks": per_image_task[n]} if per_image_task is not None else {})}
        for n, r in enumerate(rows)
    ]
    # per-image data for intervals computed later (fcm bdrate): kept last, one line per image
    if coco_eval is not None:
        point["coco_eval"] = coco_eval
    if vs_ref_eval is not None:
        point["coco_eval_vs_ref"] = vs_ref_eval
    return point


def _task_summary(dataset: Dataset, image_ids: list[int], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Secondary-task means of one point (pose_oks, cls_top1, cls_top5), {} for detection only."""
    return summarise_tasks(dataset, image_ids, rows)
