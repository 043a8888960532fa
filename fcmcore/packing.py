"""Packing: a float feature tensor <-> one 2-D frame of n-bit unsigned integers.

Two steps, both exactly invertible except for the rounding of step 1:

1. **Min-max quantisation** to ``bit_depth`` bits (8, 10, 12 or 16). ``mode="tensor"``
   uses one range for the whole tensor, ``mode="channel"`` a range per channel. Ranges
   are stored as float16 (they travel in the bitstream header): the minimum is rounded
   *down* and the maximum *up* to a float16, so every value stays inside its range, and
   quantisation uses those float16 values, so encoder and decoder agree exactly.

   With ``L = 2**bit_depth - 1``, channel ``c`` of range ``[lo, hi]`` and gain ``g_c``::

       u  = (x - lo) / (hi - lo)                   # in [0, 1]; 0.5 when hi == lo
       o  = floor((1 - g_c) * L / 2 + 1/2)          # integer offset centring the band
       q  = o + round(u * g_c * L)                  # coded sample, in [0, L]
       u' = clip((q - o) / (g_c * L), 0, 1)
       x' = lo + u' * (hi - lo)                     # decoded value

   Without gains ``g_c = 1``, ``o = 0`` and this is plain ``q = round(u * L)``: at 16 bits
   the round-trip error is at most ``(hi - lo) / 65535 / 2`` per value; with a gain it is
   at most ``(hi - lo) / (g_c * L) / 2``.

   **Gains** (optional, one per channel) multiply the number of code levels channel ``c``
   uses: its range is mapped onto a band of ``g_c * L`` levels centred on mid-grey
   instead of all ``L``. The feature-domain quantisation step of that channel, and the
   feature-domain effect of any codec error on it, are multiplied by ``1 / g_c``; so a
   codec minimising plain SSE on the frame minimises ``sum_c g_c**2 * SSE_c`` in the
   feature domain. For weighted RDO with channel importance weights ``w_c``, pass
   ``g_c = sqrt(w_c)``. Gains are **relative**: they are divided by their largest value
   (that channel gets all ``L`` levels), floored at ``2**-14`` and rounded to float16
   before use; those values travel in the header and are what ``PackedTensor.gains``
   holds. A channel whose ``g_c * L`` is below 1 keeps less than one level and decodes
   to (about) its minimum.

2. **Tiling**: the C channels of H x W become one frame of ``rows x cols`` tiles in
   row-major order, ``cols = ceil(sqrt(C))``, ``rows = ceil(C / cols)``; unused tiles are
   mid-grey (``2**(bit_depth-1)``). :func:`tile_rect` gives a channel's tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .errors import ParameterError

BIT_DEPTHS = (8, 10, 12, 16)
MODES = ("tensor", "channel")
F16_MAX = float(np.finfo(np.float16).max)
MIN_GAIN = 2.0**-14  # smallest normal float16


@dataclass
class PackedTensor:
    """One tensor packed into one frame, with everything needed to unpack it.

    ``mins``/``maxs``: float16 arrays of length 1 (``mode="tensor"``) or C (``"channel"``).
    ``gains``: float16 array of length C in (0, 1], or None. ``grid``: (rows, cols).
    ``frame``: 2-D uint16 array of ``bit_depth``-bit samples, shape (rows*H, cols*W).
    ``shape``: the original tensor shape, (1, C, H, W) or (C, H, W).
    """

    name: str
    shape: tuple[int, ...]
    bit_depth: int
    mode: str
    mins: np.ndarray
    maxs: np.ndarray
    gains: np.ndarray | None
    grid: tuple[int, int]
    frame: np.ndarray
    pad: int = 0  # tiles padded to multiples of ``pad`` samples (0: not padded)

    @property
    def chw(self) -> tuple[int, int, int]:
        c, h, w = self.shape[-3:]
        return int(c), int(h), int(w)

    @property
    def tile_hw(self) -> tuple[int, int]:
        """(height, width) of one tile in the frame (padded when ``pad``)."""
        _, h, w = self.chw
        return padded_tile(h, self.pad), padded_tile(w, self.pad)

    def tile_rect(self, channel: int) -> tuple[int, int, int, int]:
        """(y, x, h, w) of channel ``channel``'s whole tile (padding included)."""
        c = self.chw[0]
        return tile_rect(channel, (c, *self.tile_hw), self.grid)


MAX_PAD = 64


def padded_tile(n: int, pad: int) -> int:
    """``n`` rounded up to a multiple of ``pad`` (``pad`` 0: ``n``)."""
    return n if not pad else -(-int(n) // int(pad)) * int(pad)


def check_pad(pad: int) -> int:
    if pad is None:
        return 0
    if isinstance(pad, bool) or int(pad) != pad or not 0 <= int(pad) <= MAX_PAD:
        raise ParameterError(f"tile padding must be an integer block size in [0, {MAX_PAD}], got {pad!r}")
    return int(pad)


def pad_tiles(arr: np.ndarray, pad: int, fill: str = "edge") -> np.ndarray:
    """(C, H, W) -> (C, H', W') with H', W' multiples of ``pad``: by edge replication
    (``fill="edge"``) or with each channel's rounded mean (``"mean"``, the packer's)."""
    if not pad:
        return arr
    c, h, w = arr.shape
    widths = ((0, 0), (0, padded_tile(h, pad) - h), (0, padded_tile(w, pad) - w))
    if fill == "edge":
        return np.pad(arr, widths, mode="edge")
    if fill != "mean":
        raise ParameterError(f"tile padding fill must be 'edge' or 'mean', not {fill!r}")
    out = np.empty((c, h + widths[1][1], w + widths[2][1]), dtype=arr.dtype)
    out[...] = np.rint(arr.reshape(c, -1).mean(axis=1)).astype(arr.dtype).reshape(c, 1, 1)
    out[:, :h, :w] = arr
    return out


# -- tiling --------------------------------------------------------------------------------
def grid_for(channels: int) -> tuple[int, int]:
    """(rows, cols) of the tile grid for ``channels`` channels."""
    if channels < 1:
        raise ParameterError(f"need at least one channel, got {channels}")
    cols = math.isqrt(channels)
    if cols * cols < channels:
        cols += 1
    rows = -(-channels // cols)
    return rows, cols


def tile_rect(channel: int, shape: tuple[int, ...], grid: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """(y, x, h, w) of channel ``channel``'s tile in the frame. ``shape`` ends with
    (C, H, W); ``grid`` defaults to :func:`grid_for` (C)."""
    c, h, w = (int(s) for s in shape[-3:])
    rows, cols = grid if grid is not None else grid_for(c)
    if not 0 <= channel < c:
        raise ParameterError(f"channel {channel} out of range [0, {c})")
    r, k = divmod(channel, cols)
    if r >= rows:
        raise ParameterError(f"channel {channel} does not fit a {rows}x{cols} grid")
    return r * h, k * w, h, w


def tile_channels(arr: np.ndarray, fill: int | float = 0) -> np.ndarray:
    """(C, H, W) -> 2-D (rows*H, cols*W) frame, same dtype; unused tiles set to ``fill``."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ParameterError(f"tile_channels expects (C, H, W), got shape {arr.shape}")
    c, h, w = arr.shape
    rows, cols = grid_for(c)
    pad = rows * cols - c
    if pad:
        arr = np.concatenate([arr, np.full((pad, h, w), fill, dtype=arr.dtype)])
    return np.ascontiguousarray(arr.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(rows * h, cols * w))


def untile_channels(frame: np.ndarray, c: int, h: int, w: int) -> np.ndarray:
    """2-D frame -> (C, H, W): the inverse of :func:`tile_channels`."""
    frame = np.asarray(frame)
    rows, cols = grid_for(c)
    if frame.shape != (rows * h, cols * w):
        raise ParameterError(f"frame is {frame.shape}, expected {(rows * h, cols * w)} for C={c}, H={h}, W={w}")
    return np.ascontiguousarray(frame.reshape(rows, h, cols, w).transpose(0, 2, 1, 3).reshape(rows * cols, h, w)[:c])


# -- float16 side information -------------------------------------------------------------------
def f16_floor(x: np.ndarray) -> np.ndarray:
    """Largest float16 <= x (elementwise)."""
    x = np.asarray(x, dtype=np.float64)
    h = x.astype(np.float16)
    over = h.astype(np.float64) > x
    h[over] = np.nextafter(h[over], np.float16(-np.inf))
    return h


def f16_ceil(x: np.ndarray) -> np.ndarray:
    """Smallest float16 >= x (elementwise)."""
    x = np.asarray(x, dtype=np.float64)
    h = x.astype(np.float16)
    under = h.astype(np.float64) < x
    h[under] = np.nextafter(h[under], np.float16(np.inf))
    return h


def check_gains(gains, channels: int) -> np.ndarray:
    """Validate per-channel gains (>= 0, finite, not all 0) and return the transmitted
    values: divided by the largest, floored at ``MIN_GAIN``, rounded to float16."""
    g = np.asarray(gains.detach().cpu().numpy() if isinstance(gains, torch.Tensor) else gains, dtype=np.float64)
    g = g.reshape(-1)
    if g.shape != (channels,):
        raise ParameterError(f"gains: expected {channels} values (one per channel), got {g.size}")
    if not np.all(np.isfinite(g)) or np.any(g < 0) or not np.any(g > 0):
        raise ParameterError("gains must be finite, >= 0 and not all zero")
    g16 = np.maximum(g / g.max(), MIN_GAIN).astype(np.float16)
    return g16


def _check_bit_depth(bit_depth: int) -> int:
    if bit_depth not in BIT_DEPTHS:
        raise ParameterError(f"bit depth {bit_depth} not supported; use one of {', '.join(map(str, BIT_DEPTHS))}")
    return int(bit_depth)


def _per_channel(v: np.ndarray, c: int) -> np.ndarray:
    """A length-1 or length-C vector -> (C, 1, 1) float64 for broadcasting."""
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    return np.broadcast_to(v, (c,)).reshape(c, 1, 1)


# -- quantisation ----------------------------------------------------------------------------------
def _offsets(g, levels: int):
    """Integer offset of each channel's band: floor((1 - g) * L / 2 + 1/2); 0 when g = 1."""
    return np.floor((1.0 - g) * levels / 2 + 0.5)


def quantise(x: np.ndarray, mins, maxs, bit_depth: int, gains=None) -> np.ndarray:
    """(C, H, W) float64 -> (C, H, W) uint16 codes, with float16 ``mins``/``maxs``."""
    c = x.shape[0]
    levels = (1 << bit_depth) - 1
    lo, hi = _per_channel(mins, c), _per_channel(maxs, c)
    span = hi - lo
    u = np.divide(x - lo, span, out=np.full(x.shape, 0.5), where=np.broadcast_to(span > 0, x.shape))
    if gains is None:
        q = np.rint(u * levels)
    else:
        g = _per_channel(gains, c)
        q = _offsets(g, levels) + np.rint(u * g * levels)
    return np.clip(q, 0, levels).astype(np.uint16)


def dequantise(q: np.ndarray, mins, maxs, bit_depth: int, gains=None) -> np.ndarray:
    """(C, H, W) codes -> (C, H, W) float64 values: the inverse of :func:`quantise`."""
    c = q.shape[0]
    levels = (1 << bit_depth) - 1
    lo, hi = _per_channel(mins, c), _per_channel(maxs, c)
    q = q.astype(np.float64)
    if gains is None:
        u = q / levels
    else:
        g = _per_channel(gains, c)
        u = np.clip((q - _offsets(g, levels)) / (g * levels), 0.0, 1.0)
    return lo + u * (hi - lo)


# -- pack / unpack ---------------------------------------------------------------------------------
def _as_chw(t) -> tuple[np.ndarray, tuple[int, ...]]:
    if isinstance(t, torch.Tensor):
        arr = t.detach().to("cpu", torch.float64).numpy()
    else:
        arr = np.asarray(t, dtype=np.float64)
    shape = tuple(int(s) for s in arr.shape)
    if arr.ndim == 4:
        if shape[0] != 1:
            raise ParameterError(f"can only pack one tensor of batch size 1, got shape {shape}")
        arr = arr[0]
    elif arr.ndim != 3:
        raise ParameterError(f"expected a (1, C, H, W) or (C, H, W) tensor, got shape {shape}")
    if min(arr.shape) < 1:
        raise ParameterError(f"cannot pack an empty tensor of shape {shape}")
    return arr, shape


def pack_tensor(t, name: str, bit_depth: int, mode: str = "tensor", gains=None, pad: int = 0) -> PackedTensor:
    """Quantise and tile a (1, C, H, W) (or (C, H, W)) float tensor into a frame (tiles
    padded to multiples of ``pad`` when given, see the module docstring)."""
    bit_depth = _check_bit_depth(bit_depth)
    pad = check_pad(pad)
    if mode not in MODES:
        raise ParameterError(f"packing mode {mode!r} unknown; use 'tensor' or 'channel'")
    x, shape = _as_chw(t)
    c, h, w = x.shape
    if not np.all(np.isfinite(x)):
        raise ParameterError(f"{name}: tensor has NaN or infinite values")
    if np.abs(x).max() > F16_MAX:
        raise ParameterError(f"{name}: values beyond +-{F16_MAX:g} cannot have float16 ranges")
    if mode == "tensor":
        lo_raw, hi_raw = np.array([x.min()]), np.array([x.max()])
    else:
        flat = x.reshape(c, -1)
        lo_raw, hi_raw = flat.min(axis=1), flat.max(axis=1)
    mins, maxs = f16_floor(lo_raw), f16_ceil(hi_raw)
    g16 = None if gains is None else check_gains(gains, c)
    q = quantise(x, mins, maxs, bit_depth, g16)
    frame = tile_channels(pad_tiles(q, pad, "mean"), fill=1 << (bit_depth - 1))
    return PackedTensor(name, shape, bit_depth, mode, mins, maxs, g16, grid_for(c), frame, pad)


def unpack_tensor(p: PackedTensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Frame -> tensor of the original shape (float32 by default)."""
    c, h, w = p.chw
    frame = np.asarray(p.frame)
    q = untile_channels(frame, c, *p.tile_hw)[:, :h, :w]
    x = dequantise(q, p.mins, p.maxs, p.bit_depth, p.gains)
    return torch.from_numpy(x.reshape(p.shape)).to(dtype)
