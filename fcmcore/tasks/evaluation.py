"""Hooks that let sweeps record and summarise secondary tasks (called from
``fcmcore.evaluate``): per-image agreement in each record, means per point, and the
cache-key parts that make a run with tasks distinct from one without."""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Sequence

from .connectors import default_path

# Per-point metric names (results lists in a sweep document; `fcm bdrate --metric`).
TASK_METRICS = ("pose_oks", "cls_top1", "cls_top5")
PERSON_CATEGORY = 1  # COCO "person"


def record_tasks(result) -> dict[str, Any]:
    """{"tasks": {"pose_oks": v | None, "cls_top1": 0/1, "cls_top5": 0/1}} for a result
    that served secondary tasks, else {}."""
    outcomes = result.extra.get("tasks") if getattr(result, "extra", None) else None
    if not outcomes:
        return {}
    row: dict[str, Any] = {}
    if "pose" in outcomes:
        row["pose_oks"] = outcomes["pose"].agreement["oks_vs_uncompressed"]
    if "classification" in outcomes:
        a = outcomes["classification"].agreement
        row["cls_top1"], row["cls_top5"] = float(a["top1_agrees"]), float(a["top5_agrees"])
    return {"tasks": row}


def _people(dataset, image_ids: Sequence[int]) -> set[int] | None:
    if not getattr(dataset, "has_annotations", False):
        return None
    return {i for i in image_ids if any(a.get("category_id") == PERSON_CATEGORY for a in dataset.annotations_for(i))}


def per_image_tasks(dataset, image_ids: Sequence[int], rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
    """Per image, the task metrics that enter the point's means (pose OKS None on images
    without a person, as in ``summarise_tasks``): what paired intervals resample. None
    for detection only."""
    if not any("tasks" in r for r in rows):
        return None
    people = _people(dataset, image_ids)
    out = []
    for r, i in zip(rows, image_ids):
        t = dict(r.get("tasks") or {})
        if "pose_oks" in t and people is not None and i not in people:
            t["pose_oks"] = None
        out.append(t)
    return out


def summarise_tasks(dataset, image_ids: Sequence[int], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Means over images of each task metric present in ``rows``. Pose OKS counts the images
    with a person: a COCO person annotation when the dataset has annotations, and a
    defined OKS (>= 4 confident reference keypoints)."""
    if not any("tasks" in r for r in rows):
        return {}
    people = _people(dataset, image_ids)
    out: dict[str, Any] = {}
    for key in TASK_METRICS:
        vals = [r["tasks"].get(key) for r, i in zip(rows, image_ids) if "tasks" in r
                and (key != "pose_oks" or people is None or i in people)]
        vals = [float(v) for v in vals if v is not None]
        if any(key in r.get("tasks", {}) for r in rows):
            out[key] = sum(vals) / len(vals) if vals else None
            out[f"{key}_images"] = len(vals)
    return out


def key_parts(config: Mapping[str, Any]) -> dict[str, Any]:
    """Extra cache-key parts for a config that serves secondary tasks (none otherwise, so
    detection-only keys are unchanged): the tasks, the connector kind and the bundled
    connector files' contents."""
    tasks = tuple(config.get("tasks") or ("detection",))
    if len(tasks) <= 1:
        return {}
    parts: dict[str, Any] = {"tasks": list(tasks), "connector": config.get("connector", "conv")}
    if config.get("split") is not None:
        h = hashlib.sha256()
        for task in tasks[1:]:
            path = default_path(task, config["model"], config["split"], parts["connector"])
            h.update(path.read_bytes() if path.is_file() else b"missing")
        parts["connectors"] = h.hexdigest()[:16]
    return parts
