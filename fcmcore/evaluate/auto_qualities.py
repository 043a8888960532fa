"""Quality grids whose curves overlap: ``--qualities auto`` and the default grids.

A BD figure only means something over the part of the range both curves cover; two codecs at
the same nominal qualities can land on rates a decade apart (HEVC at QP 22..47 on full images
is 0.08-1.9 bpp, on ``expanded_conv_9`` features 0.009-0.3 bpp). ``auto_qualities`` picks,
for each configuration, the qualities whose rates span one *common* bpp range:

1. on a few probe images, the mean bpp at both ends of each codec's quality range gives the
   rates it can reach; the common range is their intersection, cut to ``MAX_DECADES`` above
   its low end (the low end is where accuracy falls off, the knee the curves must show; far
   above it accuracy is flat);
2. ``n_points`` target rates log-spaced over that range; per configuration and target, the
   quality whose mean probe bpp is closest (``equal_rate.bisect_quality``, evaluations shared
   between targets).

``align="accuracy"`` (``fcm layers``' default) aligns the other axis: BD-rate integrates over the
*accuracy* range both curves share, and split points far apart in rate (``Conv`` vs
``expanded_conv_9``: a decade at equal mAP) share little of it on one bpp range. On ``ACCURACY_PROBES``
probe images the agreement F1 with the uncompressed detector is measured per quality; the common
range runs from the highest F1 any configuration has at its fewest bits to the lowest any has at
its most; ``n_points`` targets evenly spaced over it, each matched per configuration by the same
bisection (F1 grows with bits, up to noise).

``default_qualities(codec)``: a fixed grid of at least 6 points per codec for when no probe is
wanted.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..codecs import get_codec
from ..errors import InputError, ParameterError
from ..imageio import decode_image_bytes
from .. import pipeline  # called as pipeline.run_*: one place to patch (tests count the runs)
from ..pipeline import PipelineConfig
from .equal_rate import bisect_quality
from .metrics import agreement

N_POINTS = 6
PROBE_IMAGES = 3
ACCURACY_PROBES = 8  # F1 on 3 images moves in steps of ~0.1: too coarse to aim at
MAX_DECADES = 2.3
ALIGNS = ("rate", "accuracy")

_DEFAULT_GRIDS = {  # >= 6 points, spanning the knee and the flat part on coco96
    "hevc": [22, 27, 32, 37, 42, 47], "hevc-slow": [22, 27, 32, 37, 42, 47],
    "vvc": [22, 27, 32, 37, 42, 47, 52], "vvc-slow": [22, 27, 32, 37, 42, 47, 52],
    "jpeg": [5, 10, 20, 35, 55, 75, 90], "webp": [5, 15, 30, 50, 70, 90],
    "avif": [5, 15, 30, 50, 70, 90], "jpegxl": [10, 30, 50, 70, 85, 95],
    "jpeg2000": [0.05, 0.1, 0.2, 0.4, 0.8, 1.6],
}


def default_qualities(codec_name: str, n_points: int = N_POINTS) -> list[float]:
    """A fixed grid of at least ``n_points`` qualities for ``codec_name``."""
    if codec_name in _DEFAULT_GRIDS and len(_DEFAULT_GRIDS[codec_name]) >= n_points:
        return list(_DEFAULT_GRIDS[codec_name])
    spec = get_codec(codec_name).quality
    values = np.linspace(spec.lo, spec.hi, n_points + 2)[1:-1]
    if spec.integer:
        values = sorted({int(round(v)) for v in values})
    return [float(v) for v in values]


def _fewest_most(spec) -> tuple[float, float]:
    lo, hi = float(spec.lo), float(spec.hi)
    return (lo, hi) if spec.higher_is_better else (hi, lo)


def auto_qualities(dataset, configs: Sequence[PipelineConfig], *, n_points: int = N_POINTS, probe_images: int | None = None,
                   bpp_range: tuple[float, float] | None = None,
                   align: str = "rate") -> tuple[list[list[float]], dict[str, Any]]:
    """Per configuration (``PipelineConfig`` with a codec), ``n_points`` qualities spanning one
    common bpp range (``align="rate"``) or one common range of agreement F1 with the uncompressed
    detector (``align="accuracy"``). Returns (qualities per config, {"align", "bpp_range" or
    "f1_range", "probe_images", "targets"})."""
    if n_points < 2:
        raise ParameterError(f"auto qualities need at least 2 points, got {n_points}")
    if align not in ALIGNS:
        raise ParameterError(f"auto qualities: align must be one of {', '.join(ALIGNS)}, got {align!r}")
    if probe_images is None:
        probe_images = ACCURACY_PROBES if align == "accuracy" else PROBE_IMAGES
    images = []
    for im in dataset.images:
        try:
            images.append(decode_image_bytes(im.path.read_bytes(), im.file_name))
        except (OSError, InputError):
            continue
        if len(images) >= probe_images:
            break
    if not images:
        raise InputError(f"dataset {dataset.name}: no readable image to probe rates on")
    if align == "accuracy":
        return _accuracy_aligned(images, configs, n_points)
    probes = []
    for config in configs:
        if config.codec is None:
            raise ParameterError("auto qualities need a codec")
        heads = [pipeline.run_head(img, config.model, config.split) for img in images]
        memo: dict[float, float] = {}

        def bpp_of(q: float, config=config, heads=heads, memo=memo) -> float:
            if q not in memo:
                memo[q] = float(np.mean([pipeline.run_from_head(h, config.with_quality(q)).bpp for h in heads]))
            return memo[q]

        spec = get_codec(config.codec).quality
        few, most = _fewest_most(spec)
        probes.append((config, spec, bpp_of, bpp_of(few), bpp_of(most)))
    if bpp_range is None:
        lo = max(p[3] for p in probes)
        hi = min(p[4] for p in probes)
        if not (hi > lo > 0):
            raise ParameterError("the configurations reach no common rate range; give qualities by hand")
        hi = min(hi, lo * 10 ** MAX_DECADES)
    else:
        lo, hi = (float(v) for v in bpp_range)
    targets = [float(t) for t in np.geomspace(lo, hi, n_points)]
    out = []
    for config, spec, bpp_of, _, _ in probes:
        qs = []
        for t in targets:
            q = bisect_quality(spec, bpp_of, t)
            if q not in qs:
                qs.append(q)
        out.append([float(q) if not spec.integer else float(int(q)) for q in qs])
    return out, {"align": "rate", "bpp_range": [lo, hi], "probe_images": len(images), "targets": targets}


def _accuracy_aligned(images: list, configs: Sequence[PipelineConfig],
                      n_points: int) -> tuple[list[list[float]], dict[str, Any]]:
    probes = []
    references: dict[str, list] = {}
    for config in configs:
        if config.codec is None:
            raise ParameterError("auto qualities need a codec")
        if config.model not in references:  # the uncompressed detector on each probe image
            references[config.model] = [pipeline.run(img, PipelineConfig(model=config.model, split=None, codec=None)).detections
                                        for img in images]
        refs = references[config.model]
        heads = [pipeline.run_head(img, config.model, config.split) for img in images]
        memo: dict[float, float] = {}

        def f1_of(q: float, config=config, heads=heads, refs=refs, memo=memo) -> float:
            if q not in memo:
                dets = {i: pipeline.run_from_head(h, config.with_quality(q)).detections for i, h in enumerate(heads)}
                f1 = agreement(dets, dict(enumerate(refs)))["f1"]
                memo[q] = 1.0 if f1 is None else f1  # nothing to find and nothing found: full agreement
            return memo[q]

        spec = get_codec(config.codec).quality
        few, most = _fewest_most(spec)
        probes.append((spec, f1_of, f1_of(few), f1_of(most)))
    lo = max(p[2] for p in probes)
    hi = min(p[3] for p in probes)
    if not hi > lo:
        raise ParameterError("the configurations reach no common accuracy range on the probe images; give qualities by hand")
    # the ends are where only one configuration gets to: aim a little inside them
    margin = 0.05 * (hi - lo)
    targets = [float(t) for t in np.linspace(max(lo + margin, 1e-3), hi - margin, n_points)]
    out = []
    for spec, f1_of, _, _ in probes:
        qs = []
        for t in targets:
            q = bisect_quality(spec, f1_of, t)  # any measure that grows with bits: here F1
            if q not in qs:
                qs.append(q)
        out.append([float(q) if not spec.integer else float(int(q)) for q in _densify(qs, spec, n_points)])
    return out, {"align": "accuracy", "f1_range": [lo, hi], "probe_images": len(images), "targets": targets}


def _densify(qs: list[float], spec, n_points: int) -> list[float]:
    """Where F1 rises steeply with quality, several targets land on one quality; fill the widest
    gaps between the chosen ones (in quality) until there are ``n_points`` or no gap is left."""
    ordered = sorted(qs, reverse=not spec.higher_is_better)  # fewest bits first
    while len(ordered) < n_points and len(ordered) >= 2:
        gaps = [(abs(b - a), i) for i, (a, b) in enumerate(zip(ordered, ordered[1:]))]
        width, i = max(gaps)
        if width <= (1 if spec.integer else 1e-3 * abs(float(spec.hi) - float(spec.lo))):
            break
        mid = (ordered[i] + ordered[i + 1]) / 2
        ordered.insert(i + 1, float(round(mid)) if spec.integer else mid)
    return ordered


def parse_qualities(text: str | None) -> str | list[float] | None:
    """``--qualities``: "auto", "default", or comma-separated numbers."""
    if text is None:
        return None
    t = str(text).strip().lower()
    if t in ("auto", "default"):
        return t
    try:
        values = [float(v) for v in t.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ParameterError(f"--qualities must be comma-separated numbers, 'auto' or 'default', got {text!r}") from None
    if not values or any(math.isnan(v) for v in values):
        raise ParameterError(f"--qualities: give at least one number, got {text!r}")
    return values
