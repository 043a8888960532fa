"""Detections drawn on frames, written as a playable clip (H.264 MP4, browsers play it)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..evaluate.metrics import REFERENCE_SCORE_THRESHOLD
from .clip import write_clip

_PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def draw_detections(rgb: np.ndarray, detections: Sequence, score_threshold: float = REFERENCE_SCORE_THRESHOLD,
                    caption: str | None = None) -> np.ndarray:
    """A copy of ``rgb`` with the boxes (score >= threshold), labels and an optional caption."""
    out = np.ascontiguousarray(rgb.copy())
    thick = max(1, round(min(out.shape[:2]) / 300))
    for d in detections:
        if d.score < score_threshold:
            continue
        colour = _PALETTE[int(d.category_id) % len(_PALETTE)]
        x1, y1, x2, y2 = (int(round(v)) for v in d.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick)
        text = f"{d.label} {d.score:.2f}"
        cv2.putText(out, text, (x1 + 2, max(12, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, colour, thick,
                    cv2.LINE_AA)
    if caption:
        cv2.putText(out, caption, (6, out.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * thick, (255, 255, 255),
                    thick + 1, cv2.LINE_AA)
        cv2.putText(out, caption, (6, out.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * thick, (0, 0, 0), thick,
                    cv2.LINE_AA)
    return out


def write_annotated(path: str | Path, frames: Sequence[np.ndarray], detections: Sequence[Sequence], fps: float,
                    frame_bits: Sequence[int] | None = None) -> Path:
    """Write ``frames`` with their detections (and each frame's bits as a caption)."""
    drawn = []
    for i, (rgb, dets) in enumerate(zip(frames, detections)):
        cap = f"frame {i}  {frame_bits[i]:,} bits" if frame_bits is not None else None
        drawn.append(draw_detections(rgb, dets, caption=cap))
    write_clip(path, drawn, fps)
    return Path(path)
