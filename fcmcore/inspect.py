"""Measurements for looking inside one run, shared by the dashboard and scripts.

* ``channel_errors(original, decoded)``: per-channel mean squared error of a (C, H, W) tensor
  after coding, the absolute error map and its largest value.
* ``operating_point(results, references)``: a column's (bpp, agreement, mAP vs reference) over
  several images, measured the way ``fcmcore.evaluate`` measures a sweep point.
* ``point_at_quality(curve, quality)``: a swept curve's point at one quality, or None.
* ``skipped_points(curve, metric)``: how many of a curve's points left its increasing
  rate-accuracy front ("more bits, no gain"), as BD-rate leaves them out.
* ``typical_stream_bytes(codec)``: a learned codec's mean stream size per quality on its
  validation images (from its manifest), so a model index can be shown with a rate.

Nothing here draws or knows about Streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import FCMError, ParameterError
from .evaluate.bdrate import curve_points, monotone_front
from .evaluate.metrics import agreement, map_vs_reference


@dataclass(frozen=True)
class ChannelErrors:
    abs_error: np.ndarray  # (C, H, W) |decoded - original|
    mse: np.ndarray  # (C,) mean squared error per channel (float64)

    @property
    def largest(self) -> float:
        return float(self.abs_error.max()) if self.abs_error.size else 0.0

    @property
    def worst_channel(self) -> int:
        return int(np.argmax(self.mse)) if self.mse.size else 0


def channel_errors(original, decoded) -> ChannelErrors:
    """Per-channel error of a coded (C, H, W) tensor (numpy arrays or CPU torch tensors)."""
    a = _numpy(original)
    b = _numpy(decoded)
    if a.shape != b.shape or a.ndim != 3:
        raise ParameterError(f"channel errors need two (C, H, W) tensors of one shape, got {a.shape} and {b.shape}")
    err = np.abs(b - a)
    mse = (err.astype(np.float64) ** 2).mean(axis=(1, 2))
    return ChannelErrors(err, mse)


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def operating_point(results: Sequence[Any], references: Sequence[Any]) -> dict[str, Any]:
    """(bpp, F1 agreement, mAP vs reference) of one configuration over images.

    ``results[i]`` and ``references[i]`` are ``PipelineResult`` (or anything with ``bpp`` and
    ``detections``) of image i under the configuration and under its uncompressed reference.
    bpp is the mean over images, as in a sweep point."""
    if not results or len(results) != len(references):
        raise ParameterError("an operating point needs one reference per result, and at least one result")
    dets = {i: r.detections for i, r in enumerate(results, start=1)}
    refs = {i: r.detections for i, r in enumerate(references, start=1)}
    agree = agreement(dets, refs)
    return {"bpp": float(np.mean([r.bpp for r in results])), "f1": agree["f1"], "agreement": agree,
            "mAP_vs_ref": map_vs_reference(dets, refs).mAP}


def point_at_quality(curve: Mapping[str, Any], quality: float) -> dict[str, Any] | None:
    """The point of a swept curve (``evaluate`` results document) at ``quality``."""
    for p in curve.get("points", []):
        q = p.get("quality")
        if q is not None and abs(float(q) - float(quality)) <= 1e-9 * max(1.0, abs(float(quality))):
            return p
    return None


def skipped_points(curve: Mapping[str, Any], metric: str) -> int:
    """Points of ``curve`` that BD-rate leaves out: not on its increasing rate-``metric``
    front (a cheaper point is at least as accurate), or without a value."""
    return len(monotone_front(curve.get("name", ""), *curve_points(curve, metric)).dropped)


def typical_stream_bytes(codec) -> dict[int, float] | None:
    """Learned codec -> {quality: mean stream bytes on its validation images}; None when the
    codec has no such record (frame codecs, a manifest without validation figures)."""
    try:
        manifest = getattr(codec, "manifest", None)
    except FCMError:  # a learned codec without weights: no rate to show
        return None
    if not isinstance(manifest, Mapping):
        return None
    out = {}
    for entry in manifest.get("qualities", []):
        size = (entry.get("val") or {}).get("stream_bytes")
        if size is not None and entry.get("quality") is not None:
            out[int(entry["quality"])] = float(size)
    return out or None
