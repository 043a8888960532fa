"""Agreement of a secondary task's result with the uncompressed run of the same network.

* pose: OKS (COCO's object keypoint similarity, per-keypoint sigmas) of the keypoints
  against the uncompressed keypoints, which stand in for ground truth (coco96 has no
  keypoint annotations). The reference's keypoints with score >= ``VISIBLE`` count; the
  object area is the area of their bounding box. Images where fewer than
  ``MIN_VISIBLE`` reference keypoints are visible have no person to measure (None).
* classification: top-1 agreement (same class as the uncompressed top-1) and top-5
  agreement (the uncompressed top-1 is among the top 5).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..models.movenet import COCO_SIGMAS

VISIBLE = 0.3
MIN_VISIBLE = 4


def oks(keypoints: Sequence[Sequence[float]], reference: Sequence[Sequence[float]]) -> float | None:
    """OKS of 17 (x, y, score) keypoints against the reference's, in pixels."""
    kp, ref = np.asarray(keypoints, float), np.asarray(reference, float)
    if kp.shape != (17, 3) or ref.shape != (17, 3):
        raise ValueError("oks expects two (17, 3) keypoint arrays")
    vis = ref[:, 2] >= VISIBLE
    if vis.sum() < MIN_VISIBLE:
        return None
    pts = ref[vis, :2]
    area = max(float(np.ptp(pts[:, 0]) * np.ptp(pts[:, 1])), 1.0)
    var = (2 * np.asarray(COCO_SIGMAS)[vis]) ** 2
    d2 = ((kp[vis, :2] - pts) ** 2).sum(1)
    return float(np.mean(np.exp(-d2 / (2 * area * var + np.spacing(1)))))


def top1_agrees(top5: Sequence[int], reference_top5: Sequence[int]) -> bool:
    return int(top5[0]) == int(reference_top5[0])


def top5_agrees(top5: Sequence[int], reference_top5: Sequence[int]) -> bool:
    return int(reference_top5[0]) in {int(i) for i in top5[:5]}


def bootstrap_mean(values: Sequence[float], n_boot: int = 2000, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap interval over images."""
    v = np.asarray([x for x in values if x is not None], float)
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(1)
    a = (1 - level) / 2
    return float(v.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def bootstrap_diff(a: Sequence[float], b: Sequence[float], n_boot: int = 2000, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float, float]:
    """Paired (mean of a - b, low, high) over the images where both are defined."""
    pairs = np.asarray([(x, y) for x, y in zip(a, b) if x is not None and y is not None], float)
    if pairs.size == 0:
        return float("nan"), float("nan"), float("nan")
    return bootstrap_mean(pairs[:, 0] - pairs[:, 1], n_boot, seed, level)
