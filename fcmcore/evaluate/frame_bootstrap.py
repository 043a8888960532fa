"""Intervals over the frames of a clip: the circular moving-block bootstrap.

Frames of a clip are correlated, so resampling single frames would be far too narrow: a
resample is made of blocks of consecutive frames (``block`` frames, one second by default,
wrapping around the clip's end), drawn with replacement until it has as many frames as the
clip. Video sweeps (``fcmcore.video.sweep``) keep per frame the bits, the pixels and the
(matched, missed, false) counts against the uncompressed run of every point, so F1, rates
and BD figures can be recomputed on each resample; ``fcm bdrate --metric f1`` does so for
two video curves (:func:`video_bd_samples`), the same resampled frames for every point of
both curves (paired).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np


def block_indices(n: int, block: int, samples: int, seed: int = 0) -> np.ndarray:
    """(samples, n) frame indices of circular moving-block bootstrap resamples."""
    block = max(1, min(int(block), n))
    k = -(-n // block)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, size=(samples, k))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]) % n
    return idx.reshape(samples, -1)[:, :n]


def default_block(fps: float, n: int) -> int:
    """One second of frames (at least 1, at most the clip)."""
    return max(1, min(n, int(round(fps))))


def f1_of(counts: np.ndarray) -> float | None:
    """Pooled F1 of (matched, missed, false) rows; None when there is nothing to match."""
    m, mi, f = (int(v) for v in np.asarray(counts).reshape(-1, 3).sum(axis=0))
    return 2 * m / (2 * m + mi + f) if (2 * m + mi + f) else None


def is_video_curve(curve: Mapping[str, Any]) -> bool:
    """A curve of a video sweep with the per-frame data intervals need."""
    pts = curve.get("points") or []
    return bool(pts) and all(isinstance(p, dict) and {"frame_bits", "pixels_per_frame", "frame_counts"} <= set(p)
                             for p in pts)


def video_block(curve: Mapping[str, Any]) -> int | None:
    """The block length (frames) its sweep used, None in files written before it was recorded."""
    b = curve["points"][0].get("block_frames")
    return int(b) if b else None


def video_bd_samples(curve: Mapping[str, Any], idx: np.ndarray) -> tuple[list[list[float]], list[list[float]]]:
    """Per resample (rows of ``idx``): the curve's rates (bits / pixels over the drawn frames)
    and pooled F1 at every point; F1 None -> nan."""
    rates, vals = [], []
    arrays = [(np.asarray(p["frame_bits"], dtype=np.float64), np.asarray(p["pixels_per_frame"], dtype=np.float64),
               np.asarray(p["frame_counts"], dtype=np.int64).reshape(-1, 3)) for p in curve["points"]]
    for row in idx:
        r, v = [], []
        for fb, px, c in arrays:
            r.append(float(fb[row].sum() / px[row].sum()))
            s = c[row].sum(axis=0)
            den = 2 * s[0] + s[1] + s[2]
            v.append(float(2 * s[0] / den) if den else float("nan"))
        rates.append(r)
        vals.append(v)
    return rates, vals
