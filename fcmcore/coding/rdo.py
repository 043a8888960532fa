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

Weights come in three kinds (``PipelineConfig.wa_weights``, see ``wrappers.importance``):
``channel`` (k values, one per tile), ``spatial`` (h x w values shared by every tile:
how much each position of the reduced tensor matters) and ``both`` (k x h x w, one per
coded sample). Spatial kinds need ``wa-qp``: the offsets are computed per QP block of the
packed frame (x265's 8x8 quantisation groups) from the mean weight of the block,
dQP_b = -3 log2(mean_b(w) / geomean over blocks), so with tiles padded to the block grid
(``PipelineConfig.tile_pad``) every block lies inside one channel's tile.
``sse-qp`` is the like-for-like anchor of ``wa-qp``: the same x265 configuration (CRF +
aq-mode, 16x16 CTUs) with an all-zero offset map.

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
from ..packing import pad_tiles

QP_OFFSET_RANGE = (-12.0, 12.0)  # keep offsets within 2 octaves of step either way


def qp_offsets_from_weights(weights, clip: tuple[float, float] = QP_OFFSET_RANGE, strength: float = 1.0) -> np.ndarray:
    """dQP_c = -3 S log2(w_c / geometric mean of w), clipped; weights must be > 0; S = ``strength``."""
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise ParameterError("importance weights must be finite, >= 0 and not all zero")
    w = np.maximum(w, w.max() * 1e-6)
    logw = np.log2(w)
    return np.clip(-3.0 * strength * (logw - logw.mean()), *clip)


def block_qp_offsets(weights, pad: int, block: int, clip: tuple[float, float] = QP_OFFSET_RANGE,
                     strength: float = 1.0) -> np.ndarray:
    """Per-position QP offsets (k, h, w) from per-position weights (k, h, w), constant over
    each ``block`` x ``block`` block of every tile padded to ``pad`` (edge replication, as
    the packer pads): dQP_b = -3 S log2(mean_b w / geomean_b(mean_b w)), clipped (S = ``strength``). Without
    padding to a multiple of ``block`` the blocks are those of each tile's own grid (the
    codec then averages offsets of blocks that straddle tiles)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 3 or not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise ParameterError("per-position importance weights must be a finite (k, h, w) array, >= 0, not all 0")
    k, h, wd = w.shape
    bpad = block if not pad or pad % block else pad
    wp = pad_tiles(w, bpad)
    H, W = wp.shape[1:]
    means = wp.reshape(k, H // block, block, W // block, block).mean(axis=(2, 4))
    means = np.maximum(means, means.max() * 1e-6)
    logm = np.log2(means)
    dqp = np.clip(-3.0 * strength * (logm - logm.mean()), *clip)
    full = np.repeat(np.repeat(dqp, block, axis=1), block, axis=2)
    return full[:, :h, :wd]


def _coder_of(p, codec, quality, offsets):
    """frame -> bits, coded the way packed frame ``p`` was (with its QP offsets when given)."""
    qmap = None if offsets is None else qp_map_for(p, offsets)

    def code(frame: np.ndarray) -> int:
        if qmap is None:
            return len(codec.encode(frame, p.bit_depth, quality)) * 8
        return len(codec.encode_qp_map(frame, p.bit_depth, quality, qmap)) * 8

    return code


def bits_per_channel(encoded, codec, quality, qp_offsets: dict | None = None) -> dict[str, list[int]]:
    """Leave-one-out bits of every channel tile of every tensor in ``encoded``
    (an ``EncodedFeatures``), re-encoding with ``codec`` at ``quality`` the way it was coded
    (with the same per-channel QP offsets when given). See the module docstring."""
    out: dict[str, list[int]] = {}
    for name, p in encoded.packed.items():
        c = p.chw[0]
        code = _coder_of(p, codec, quality, (qp_offsets or {}).get(name))
        total = code(p.frame)
        bits = []
        for ch in range(c):
            y, x, h, w = p.tile_rect(ch)
            flat = p.frame.copy()
            flat[y:y + h, x:x + w] = np.uint16(np.rint(p.frame[y:y + h, x:x + w].mean()))
            bits.append(int(total - code(flat)))
        out[name] = bits
    return out


def block_grid(p, block: int) -> tuple[int, int]:
    """(rows, cols) of ``block`` x ``block`` blocks covering packed frame ``p`` (partial
    blocks at the right and bottom edges count)."""
    fh, fw = p.frame.shape
    return -(-fh // block), -(-fw // block)


def bits_per_block(encoded, codec, quality, qp_offsets: dict | None = None, block: int = 8) -> dict[str, np.ndarray]:
    """Leave-one-out bits of every ``block`` x ``block`` block of every packed frame: the
    frame is re-encoded once per block with that block flattened to its mean code (as
    ``bits_per_channel`` does per tile), bits_b = bits(frame) - bits(frame, block b flat).
    Costs one encode per block (a 24-tile frame of 24x24 padded tiles: 216 encodes)."""
    out: dict[str, np.ndarray] = {}
    for name, p in encoded.packed.items():
        code = _coder_of(p, codec, quality, (qp_offsets or {}).get(name))
        total = code(p.frame)
        rows, cols = block_grid(p, block)
        bits = np.zeros((rows, cols))
        for j in range(rows):
            for i in range(cols):
                flat = p.frame.copy()
                sl = (slice(j * block, (j + 1) * block), slice(i * block, (i + 1) * block))
                flat[sl] = np.uint16(np.rint(p.frame[sl].mean()))
                bits[j, i] = total - code(flat)
        out[name] = bits
    return out


def block_means(frame_values: np.ndarray, block: int) -> np.ndarray:
    """Mean of a 2-D per-sample array over ``block`` x ``block`` blocks (edge blocks: their
    own samples)."""
    a = np.asarray(frame_values, dtype=np.float64)
    h, w = a.shape
    rows, cols = -(-h // block), -(-w // block)
    sums = np.zeros((rows, cols))
    counts = np.zeros((rows, cols))
    np.add.at(sums, (np.arange(h)[:, None] // block, np.arange(w)[None, :] // block), a)
    np.add.at(counts, (np.arange(h)[:, None] // block, np.arange(w)[None, :] // block), 1.0)
    return sums / counts

