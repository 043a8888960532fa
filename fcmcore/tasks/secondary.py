"""Secondary tasks served from the detector's bitstream.

Model-splitting paradigm: the server decodes the split tensor once; detection finishes in
the detector's tail, and each secondary task maps the *same decoded tensor* through its
connector into its own network at the connector's target layer (no extra bits).
Full-input paradigm: each task network runs on the decoded image.
Either way the uncompressed reference is the task network on the original image;
agreement with it is the metric (``fcmcore.tasks.metrics``).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import torch
from PIL import Image

from ..errors import ParameterError
from ..models.base import ImageMeta
from ..models.movenet import KEYPOINT_NAMES, SKELETON
from ..models.task_network import load_task_network
from . import connectors, metrics

TASKS = ("detection", "pose", "classification")
SECONDARY = ("pose", "classification")
CONNECTOR_KINDS = ("conv", "linear")


def parse_tasks(tasks: str | Iterable[str] | None) -> tuple[str, ...]:
    """'detection,pose' or a sequence -> validated tuple in canonical order (detection is
    always served: the bitstream is the detector's)."""
    if tasks is None:
        return ("detection",)
    items = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t and t.strip()]
    unknown = [t for t in items if t not in TASKS]
    if unknown:
        raise ParameterError(f"unknown task {unknown[0]!r}; known: {', '.join(TASKS)}")
    return tuple(t for t in TASKS if t in items or t == "detection")


@dataclass
class TaskOutcome:
    """One secondary task's result on one coded run, with its uncompressed reference."""

    task: str
    result: Any  # movenet.Pose or efficientnet_lite.Classification
    reference: Any
    source: str  # "connector", "linear" (naive projection) or "decoded image"
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def agreement(self) -> dict[str, Any]:
        if self.task == "pose":
            return {"oks_vs_uncompressed": metrics.oks(self.result.keypoints, self.reference.keypoints)}
        ours = [i for i, _, _ in self.result.top5]
        ref = [i for i, _, _ in self.reference.top5]
        return {"top1_agrees": metrics.top1_agrees(ours, ref), "top5_agrees": metrics.top5_agrees(ours, ref)}

    def to_json(self) -> dict[str, Any]:
        a = self.agreement
        if self.task == "pose":
            v = a["oks_vs_uncompressed"]
            return {"keypoints": self.result.to_json(), "oks_vs_uncompressed": None if v is None else round(v, 4),
                    "source": self.source}
        return {"top5": [{"label": d["label"], "score": d["score"]} for d in self.result.to_json()],
                "top1_agrees": a["top1_agrees"], "top5_agrees": a["top5_agrees"],
                "uncompressed_top1": self.reference.top5[0][1], "source": self.source}


# Uncompressed references per (image content, task): a sweep asks for the same image at
# every quality point.
_refs: OrderedDict[tuple[str, str], Any] = OrderedDict()
_refs_lock = threading.Lock()
_REFS_MAX = 256


def _image_key(rgb: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(rgb).tobytes() + str(rgb.shape).encode()).hexdigest()


def reference(image: Image.Image | np.ndarray, task: str) -> Any:
    """The task network's result on the original image (cached in memory)."""
    rgb = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.uint8)
    key = (_image_key(rgb), task)
    with _refs_lock:
        if key in _refs:
            _refs.move_to_end(key)
            return _refs[key]
    value = load_task_network(task).predict(Image.fromarray(rgb))
    with _refs_lock:
        _refs[key] = value
        while len(_refs) > _REFS_MAX:
            _refs.popitem(last=False)
    return value


def from_split(decoded: torch.Tensor, image: Image.Image | np.ndarray, tasks: Iterable[str], model: str,
               split: str, kind: str = "conv") -> dict[str, TaskOutcome]:
    """Secondary tasks from the decoded split tensor (1, C, h, w) of the detector's bitstream."""
    if kind not in CONNECTOR_KINDS:
        raise ParameterError(f"connector kind must be one of {', '.join(CONNECTOR_KINDS)}, not {kind!r}")
    rgb = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.uint8)
    meta = ImageMeta(width=rgb.shape[1], height=rgb.shape[0])
    out = {}
    for task in tasks:
        if task not in SECONDARY:
            continue
        net = load_task_network(task)
        module, info = connectors.load_default(task, model, split, kind)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        with torch.inference_mode():
            mapped = module(decoded.float())
        timings[f"{task}_connector"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        result = net.from_split(mapped, info["target"], meta)
        timings[f"{task}_tail"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        ref = reference(rgb, task)
        timings[f"{task}_reference"] = (time.perf_counter() - t0) * 1e3
        out[task] = TaskOutcome(task, result, ref, "connector" if kind == "conv" else "linear", timings)
    return out


def from_image(decoded_image: np.ndarray | Image.Image, original: Image.Image | np.ndarray,
               tasks: Iterable[str]) -> dict[str, TaskOutcome]:
    """Secondary tasks in the full-input paradigm: each network on the decoded image."""
    dec = decoded_image if isinstance(decoded_image, Image.Image) else Image.fromarray(np.asarray(decoded_image))
    out = {}
    for task in tasks:
        if task not in SECONDARY:
            continue
        t0 = time.perf_counter()
        result = load_task_network(task).predict(dec)
        timings = {f"{task}_network": (time.perf_counter() - t0) * 1e3}
        t0 = time.perf_counter()
        ref = reference(original, task)
        timings[f"{task}_reference"] = (time.perf_counter() - t0) * 1e3
        out[task] = TaskOutcome(task, result, ref, "decoded image", timings)
    return out


def overlay(outcomes: dict[str, TaskOutcome], min_score: float = metrics.VISIBLE) -> dict[str, Any]:
    """What a viewer draws for the secondary tasks of one run, in image pixels:

    ``{"pose": {"keypoints": [{"name", "x", "y", "score", "shown"}...17],
                "limbs": [{"from", "to", "x1", "y1", "x2", "y2"}...],   # both ends shown
                "reference_keypoints": [...same fields...], "oks": v | None},
       "classification": {"top5": [{"label", "score", "in_reference_top5", "is_reference_top1"}],
                          "reference_top5": [{"label", "score"}], "top1_agrees": bool}}``

    A keypoint is ``shown`` when its score is >= ``min_score``; a limb is listed when both
    its keypoints are shown. Colour by ``oks`` / ``top1_agrees`` / ``in_reference_top5``.
    """
    out: dict[str, Any] = {}
    if "pose" in outcomes:
        o = outcomes["pose"]

        def points(pose):
            return [{"name": n, "x": round(x, 1), "y": round(y, 1), "score": round(s, 3), "shown": s >= min_score}
                    for n, (x, y, s) in zip(KEYPOINT_NAMES, pose.keypoints)]

        kps = points(o.result)
        limbs = [{"from": KEYPOINT_NAMES[a], "to": KEYPOINT_NAMES[b], "x1": kps[a]["x"], "y1": kps[a]["y"],
                  "x2": kps[b]["x"], "y2": kps[b]["y"]}
                 for a, b in SKELETON if kps[a]["shown"] and kps[b]["shown"]]
        out["pose"] = {"keypoints": kps, "limbs": limbs, "reference_keypoints": points(o.reference),
                       "oks": o.agreement["oks_vs_uncompressed"]}
    if "classification" in outcomes:
        o = outcomes["classification"]
        ref_ids = [i for i, _, _ in o.reference.top5]
        out["classification"] = {
            "top5": [{"label": label, "score": round(p, 4), "in_reference_top5": i in ref_ids,
                      "is_reference_top1": i == ref_ids[0]} for i, label, p in o.result.top5],
            "reference_top5": [{"label": label, "score": round(p, 4)} for _, label, p in o.reference.top5],
            "top1_agrees": o.agreement["top1_agrees"]}
    return out
