"""Equal-rate mode: pick, per image, the codec quality whose rate lands closest to a target.

``quality_for_rate(image, config, target_bpp)`` bisects over the codec's quality range
(``QualitySpec``: direction from ``higher_is_better``, whole numbers when ``integer``),
assuming rate grows monotonically with quality, and returns the quality whose measured bpp
is closest to the target (ties: the cheaper one) with its ``PipelineResult``. Targets
outside the reachable range give the nearest end of the range. About log2(range) + 1
encodes per image (7 for HEVC QP 0..51).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

from ..codecs import get_codec
from ..errors import ParameterError
from .. import pipeline  # called as pipeline.run_*: one place to patch (tests count the runs)

if TYPE_CHECKING:
    from PIL import Image

    from ..codecs.base import QualitySpec
    from ..pipeline import HeadOutput, PipelineConfig, PipelineResult

FLOAT_STEPS = 14  # bisection steps for codecs with a continuous quality


def _ordered(spec: "QualitySpec") -> Callable[[float], float]:
    """t in [0, 1] (0 = fewest bits) -> quality."""
    lo, hi = float(spec.lo), float(spec.hi)
    if spec.higher_is_better:
        return lambda t: lo + t * (hi - lo)
    return lambda t: hi - t * (hi - lo)


def bisect_quality(spec: "QualitySpec", bpp_of: Callable[[float], float], target_bpp: float) -> float:
    """The quality in ``spec``'s range whose ``bpp_of(quality)`` is closest to ``target_bpp``.
    ``bpp_of`` is called once per distinct quality tried."""
    if not (target_bpp > 0) or not math.isfinite(target_bpp):
        raise ParameterError(f"target bpp must be a positive number, got {target_bpp}")
    seen: dict[float, float] = {}

    def rate(q: float) -> float:
        if q not in seen:
            seen[q] = float(bpp_of(q))
        return seen[q]

    if spec.integer:
        # qualities ordered from fewest to most bits
        lo_q, hi_q = int(math.ceil(spec.lo)), int(math.floor(spec.hi))
        order = list(range(lo_q, hi_q + 1))
        if not spec.higher_is_better:
            order.reverse()
        left, right = 0, len(order) - 1  # find the first index whose rate >= target
        if rate(order[right]) < target_bpp:
            return float(order[right])
        if rate(order[left]) >= target_bpp:
            return float(order[left])
        while right - left > 1:
            mid = (left + right) // 2
            if rate(order[mid]) >= target_bpp:
                right = mid
            else:
                left = mid
        candidates = [order[left], order[right]]
    else:
        at = _ordered(spec)
        a, b = 0.0, 1.0
        if rate(at(b)) < target_bpp:
            return at(b)
        if rate(at(a)) >= target_bpp:
            return at(a)
        for _ in range(FLOAT_STEPS):
            m = (a + b) / 2
            if rate(at(m)) >= target_bpp:
                b = m
            else:
                a = m
        candidates = [at(a), at(b)]
    best = min(candidates, key=lambda q: (abs(seen[q] - target_bpp), seen[q]))
    return float(best)


def quality_spec(codec_name: str | None) -> "QualitySpec":
    if codec_name is None:
        raise ParameterError("equal-rate mode needs a codec (the uncompressed reference has one rate)")

    return get_codec(codec_name).quality


def quality_for_rate(image: "Image.Image", config: "PipelineConfig", target_bpp: float, *,
                     head: "HeadOutput | None" = None) -> tuple[float, "PipelineResult"]:
    """(quality, result) for the quality whose rate on ``image`` is closest to ``target_bpp``.
    ``head`` (from ``run_head``) saves recomputing the edge part."""
    spec = quality_spec(config.codec)
    if head is None:
        head = pipeline.run_head(image, config.model, config.split)
    results: dict[float, "PipelineResult"] = {}

    def bpp_of(q: float) -> float:
        results[q] = pipeline.run_from_head(head, config.with_quality(q))
        return results[q].bpp

    q = bisect_quality(spec, bpp_of, target_bpp)
    if q not in results:  # only when the range has a single quality
        bpp_of(q)
    return q, results[q]
