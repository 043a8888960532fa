"""Wrapper-aware RDO inside the real codecs: turning importance weights into bit allocation,
and measuring where the bits went.

Two mechanisms (``PipelineConfig.rdo``):

* ``wa`` — **per-tile gains at packing** (every codec): channel c's tile is scaled by
  g_c = sqrt(w_c) before n-bit quantisation and unscaled after decoding (``packing``), so
  the codec's plain SSE on the frame is the weighted SSE sum_c w_c SSE_c in the feature domain.
* ``wa-qp`` — **per-region QP offsets** (HEVC only): the frame is coded with x265 in CRF
  mode with adaptive quantisation on (strength ~0, so only our offsets act), and each
  channel tile gets dQP_c = -3 log2(w_c / geomean(w)) through ffmpeg ROI side data. At high
  rate D_c ~ step_c^2 and step doubles every 6 QP, so w_c * D_c is equal across channels:
  the optimum of sum_c w_c D_c at a given rate, and the same allocation the gains aim at.

``bits_per_channel`` (opt-in, ``PipelineConfig.bits_per_channel``): measured from real
bitstreams by leave-one-out: the frame is re-encoded once per channel with that channel's
tile replaced by its mean code value (a flat tile costs almost nothing), and
bits_c = bits(frame) - bits(frame with tile c flattened). It counts what the tile's
content costs in the presence of the others (intra prediction crosses tile borders, so
the values need not add up to the payload exactly). Costs k extra encodes per tensor.
"""

from __future__ import annotations

import numpy as np

from ..bitstream import qp_map_for
from ..errors import ParameterError

QP_OFFSET_RANGE = (-12.0, 12.0)  # keep offsets within 2 octaves of step either way


def qp_offsets_from_weights(weights, clip: tuple[float, float] = QP_OFFSET_RANGE) -> np.ndarray:
    """dQP_c = -3 log2(w_c / geometric mean of w), clipped; weights must be > 0."""
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise ParameterError("importance weights must be finite, >= 0 and not all zero")
    w = np.maximum(w, w.max() * 1e-6)
    logw = np.log2(w)
    return np.clip(-3.0 * (logw - logw.mean()), *clip)


def bits_per_channel(encoded, codec, quality, qp_offsets: dict | None = None) -> dict[str, list[int]]:
    """Leave-one-out bits of every channel tile of every tensor in ``encoded``
    (an ``EncodedFeatures``), re-encoding with ``codec`` at ``quality`` the way it was coded
    (with the same per-channel QP offsets when given). See the module docstring."""
    out: dict[str, list[int]] = {}
    for name, p in encoded.packed.items():
        c = p.chw[0]
        offsets = (qp_offsets or {}).get(name)
        qmap = None if offsets is None else qp_map_for(p, offsets)

        def code(frame: np.ndarray) -> int:
            if qmap is None:
                return len(codec.encode(frame, p.bit_depth, quality)) * 8
            return len(codec.encode_qp_map(frame, p.bit_depth, quality, qmap)) * 8

        total = code(p.frame)
        bits = []
        for ch in range(c):
            y, x, h, w = p.tile_rect(ch)
            flat = p.frame.copy()
            flat[y:y + h, x:x + w] = np.uint16(np.rint(p.frame[y:y + h, x:x + w].mean()))
            bits.append(int(total - code(flat)))
        out[name] = bits
    return out
