"""A sequence of split features <-> one transmitted bitstream (header + one video stream
per tensor).

Each frame's tensors are min-max quantised and tiled exactly as ``fcmcore.packing`` does for
one image, with the range taken **per sequence** (one min/max for the whole clip, sent
once: the frames stay comparable, which inter prediction needs; the encoder must see the
whole clip first) or **per frame** (a min/max per frame, sent with each frame: causal, and
the cost of the side information is counted in that frame's bits). ``quant`` picks one
range per tensor or per channel, as for images.

Layout (version 1; varints are unsigned LEB128)::

    4 bytes   magic "FCMV"
    u8        version = 1
    u8        bits 0-4 bit depth; bit 5 quant (0 tensor, 1 channel); bit 6 ranges (0 sequence,
              1 frame); bit 7 gains present (wrapper-aware RDO, per-tile gains)
    varint    number of frames N
    varint    number of tensors T; per tensor: u8 name length, name, varint C, H, W
    ranges    sequence: per tensor f16 LE mins then maxs (1 or C each);
              frame: for each frame, per tensor, the same
    gains     (bit 7 only) varint G gain sets; per set: varint run length R (frames), then per
              tensor C f16 LE gains; the sets apply to consecutive runs of frames (R's sum to N)
    per tensor: varint stream length in bytes
    the T Annex-B streams, concatenated

Rate: ``bits = len(data) * 8``. Per-frame bits (display order) = the frame's access units
in every stream + its ranges (frame mode) + the gain set starting at it, if any; everything
else (magic, shapes, sequence ranges, lengths) is counted in the first frame. They sum to
``bits`` exactly.

**Gains** (wrapper-aware RDO, ``channel_weights``): channel c of frame i is packed with gain
g_c = sqrt(w_c) (``fcmcore.packing``: its range mapped onto g_c * L levels, so the codec's
SSE on the frame is sum_c w_c SSE_c in the feature domain), the per-image mechanism of
``coding.frames`` applied per frame. Consecutive frames with the same (float16) gains share
one gain set: weights fixed for the clip cost one set, weights per GOP one set per GOP,
weights per frame one set per frame. A gain change inside a GOP rescales a channel's
samples between a frame and its reference, which inter prediction pays for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..byteio import ByteReader, encode_varint
from ..errors import BitstreamError, FCMError, ParameterError
from ..packing import (check_gains, dequantise, f16_ceil, f16_floor, grid_for, quantise, tile_channels,
                       untile_channels)
from .sequence import CodedSequence, SequenceCoder

MAGIC = b"FCMV"
VERSION = 1
RANGE_SCOPES = ("sequence", "frame")


@dataclass
class EncodedFeatureSequence:
    data: bytes
    frame_bits: list[int]  # display order; sums to len(data) * 8
    intra: list[bool]
    header_bytes: int  # everything that is not a coded picture (ranges included)
    frames: dict[str, list[np.ndarray]]  # the packed frames the codec saw, per tensor

    @property
    def bits(self) -> int:
        return len(self.data) * 8


def _ranges(arrs: list[np.ndarray], quant: str) -> tuple[np.ndarray, np.ndarray]:
    """float16 (floor min, ceil max) over ``arrs`` (each (C, H, W)), per tensor or channel."""
    stack = np.stack(arrs)  # (N, C, H, W)
    if quant == "tensor":
        lo, hi = np.array([stack.min()]), np.array([stack.max()])
    else:
        lo, hi = stack.min(axis=(0, 2, 3)), stack.max(axis=(0, 2, 3))
    return f16_floor(lo), f16_ceil(hi)


def encode_feature_sequence(features: list[dict[str, torch.Tensor]], coder: SequenceCoder, quality, *,
                            gop: str = "ldp", intra_period: int | None = None, bit_depth: int = 10,
                            quant: str = "tensor", ranges: str = "sequence",
                            channel_weights: list[dict[str, np.ndarray]] | None = None) -> EncodedFeatureSequence:
    """Pack every frame's tensors and code each tensor's frames as one video stream.
    ``channel_weights``: per frame, name -> (C,) importance (wrapper-aware RDO: per-tile
    gains sqrt(w), see the module docstring); None: no gains."""
    if not features:
        raise ParameterError("no frames to code")
    if channel_weights is not None and len(channel_weights) != len(features):
        raise ParameterError(f"channel_weights: {len(channel_weights)} entries for {len(features)} frames")
    if quant not in ("tensor", "channel"):
        raise ParameterError(f"quant must be 'tensor' or 'channel', not {quant!r}")
    if ranges not in RANGE_SCOPES:
        raise ParameterError(f"--range must be one of {', '.join(RANGE_SCOPES)}, not {ranges!r}")
    names = list(features[0])
    n = len(features)
    arrays: dict[str, list[np.ndarray]] = {}
    for name in names:
        arrs = []
        for f in features:
            t = f[name].detach().to("cpu", torch.float64).numpy()
            arrs.append(t.reshape(t.shape[-3:]))
        if not all(np.all(np.isfinite(a)) for a in arrs):
            raise ParameterError(f"{name}: features have NaN or infinite values")
        arrays[name] = arrs
    head = bytearray(MAGIC)
    head.append(VERSION)
    has_gains = channel_weights is not None
    head.append(bit_depth | (32 if quant == "channel" else 0) | (64 if ranges == "frame" else 0)
                | (128 if has_gains else 0))
    head += encode_varint(n) + encode_varint(len(names))
    for name in names:
        raw = name.encode()
        c, h, w = arrays[name][0].shape
        head += bytes([len(raw)]) + raw + encode_varint(c) + encode_varint(h) + encode_varint(w)
    frame_side = [0] * n
    packed: dict[str, list[np.ndarray]] = {}
    range_bytes = bytearray()
    per_frame_ranges: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for name in names:
        if ranges == "sequence":
            lo, hi = _ranges(arrays[name], quant)
            per_frame_ranges[name] = [(lo, hi)] * n
            range_bytes += lo.astype("<f2").tobytes() + hi.astype("<f2").tobytes()
        else:
            per_frame_ranges[name] = [_ranges([a], quant) for a in arrays[name]]
    if ranges == "frame":
        for i in range(n):
            for name in names:
                lo, hi = per_frame_ranges[name][i]
                chunk = lo.astype("<f2").tobytes() + hi.astype("<f2").tobytes()
                range_bytes += chunk
                frame_side[i] += len(chunk)
    gains = _frame_gains(channel_weights, names, arrays, per_frame_ranges) if has_gains else None
    if gains is not None:
        sets = _gain_runs(gains, names)
        range_bytes += encode_varint(len(sets))
        for first, run in sets:
            chunk = encode_varint(run) + b"".join(gains[first][name].astype("<f2").tobytes() for name in names)
            range_bytes += chunk
            frame_side[first] += len(chunk)
    streams: list[CodedSequence] = []
    for name in names:
        frames = []
        for i, (a, (lo, hi)) in enumerate(zip(arrays[name], per_frame_ranges[name])):
            g = None if gains is None else gains[i][name]
            frames.append(tile_channels(quantise(a, lo, hi, bit_depth, g), fill=1 << (bit_depth - 1)))
        packed[name] = frames
        streams.append(coder.encode(frames, bit_depth, quality, gop, intra_period))
    lengths = b"".join(encode_varint(len(s.data)) for s in streams)
    data = bytes(head) + bytes(range_bytes) + lengths + b"".join(s.data for s in streams)
    frame_bits = [8 * (frame_side[i] + sum(s.frame_bytes[i] for s in streams)) for i in range(n)]
    header_bytes = len(data) - sum(len(s.data) for s in streams)
    frame_bits[0] += 8 * (header_bytes - sum(frame_side))
    assert sum(frame_bits) == len(data) * 8
    intra = [any(s.intra[i] for s in streams) for i in range(n)]
    return EncodedFeatureSequence(data, frame_bits, intra, header_bytes, packed)


def _frame_gains(weights, names, arrays, per_frame_ranges) -> list[dict[str, np.ndarray]]:
    """Per frame, name -> the transmitted float16 gains sqrt(w_c) (normalised by
    ``packing.check_gains``). With one range per channel the range already scales each
    channel's step: the weights are multiplied by range_c^2 (as ``coding.frames`` does)."""
    out = []
    for i, wf in enumerate(weights):
        if wf is None or any(name not in wf for name in names):
            raise ParameterError(f"frame {i}: wrapper-aware RDO needs importance weights for every tensor")
        g = {}
        for name in names:
            c = arrays[name][i].shape[0]
            w = np.asarray(wf[name], dtype=np.float64).reshape(-1)
            if w.shape != (c,):
                raise ParameterError(f"{name}: {w.size} channel weights for {c} channels (per-tile gains take "
                                     "channel weights only)")
            lo, hi = per_frame_ranges[name][i]
            span = np.broadcast_to(hi.astype(np.float64) - lo.astype(np.float64), (c,))
            g[name] = check_gains(np.sqrt(np.maximum(w, 0) * np.maximum(span, 1e-12) ** 2), c)
        out.append(g)
    return out


def _gain_runs(gains: list[dict[str, np.ndarray]], names) -> list[tuple[int, int]]:
    """(first frame, run length) of each run of consecutive frames with equal gains."""
    runs: list[tuple[int, int]] = []
    for i, g in enumerate(gains):
        if runs and all(np.array_equal(g[n], gains[runs[-1][0]][n]) for n in names):
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs


def decode_feature_sequence(data: bytes, coder: SequenceCoder) -> list[dict[str, torch.Tensor]]:
    """The inverse of :func:`encode_feature_sequence`: per frame, name -> (1, C, H, W) float32."""
    try:
        return _decode(bytes(data), coder)
    except FCMError:
        raise
    except (IndexError, ValueError, EOFError, OverflowError) as exc:
        raise BitstreamError(f"feature sequence: malformed ({type(exc).__name__}: {exc})") from None


def _decode(data: bytes, coder: SequenceCoder) -> list[dict[str, torch.Tensor]]:
    r = ByteReader(data, "feature sequence")
    if r.take(4, "magic") != MAGIC:
        raise BitstreamError("feature sequence: not an FCM video feature stream (bad magic)")
    version = r.u8("version")
    if version != VERSION:
        raise BitstreamError(f"feature sequence: version {version}, this fcm reads {VERSION}")
    flags = r.u8("flags")
    bit_depth, quant, scope = flags & 31, ("channel" if flags & 32 else "tensor"), ("frame" if flags & 64 else "sequence")
    has_gains = bool(flags & 128)
    if bit_depth not in coder.bit_depths:
        raise BitstreamError(f"feature sequence: bad flags {flags:#x} for {coder.name}")
    n, t = r.varint("frame count", 100000), r.varint("tensor count", 64)
    if not (1 <= n <= 100000 and 1 <= t <= 64):
        raise BitstreamError(f"feature sequence: {n} frames / {t} tensors out of range")
    shapes = []
    for _ in range(t):
        name = r.take(r.u8("name length"), "name").decode("utf-8", errors="strict")
        c, h, w = r.varint("C", 65536), r.varint("H", 4096), r.varint("W", 4096)
        if not (1 <= c <= 65536 and 1 <= h <= 4096 and 1 <= w <= 4096):
            raise BitstreamError(f"feature sequence: tensor {name} shape {c}x{h}x{w} out of range")
        shapes.append((name, c, h, w))

    def read_range(c):
        k = 1 if quant == "tensor" else c
        lo = np.frombuffer(r.take(2 * k, "ranges"), "<f2").astype(np.float64)
        hi = np.frombuffer(r.take(2 * k, "ranges"), "<f2").astype(np.float64)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi >= lo)):
            raise BitstreamError("feature sequence: ranges out of domain")
        return lo, hi

    if scope == "sequence":
        rng = {name: [read_range(c)] * n for name, c, _, _ in shapes}
    else:
        rng = {name: [] for name, _, _, _ in shapes}
        for _ in range(n):
            for name, c, _, _ in shapes:
                rng[name].append(read_range(c))
    gains: list[dict[str, np.ndarray] | None] = [None] * n
    if has_gains:
        g_sets = r.varint("gain sets", n)
        first = 0
        for _ in range(g_sets):
            run = r.varint("gain run", n)
            if run < 1 or first + run > n:
                raise BitstreamError(f"feature sequence: gain runs do not cover the {n} frames")
            g = {}
            for name, c, _, _ in shapes:
                v = np.frombuffer(r.take(2 * c, "gains"), "<f2").astype(np.float64)
                if not (np.all(np.isfinite(v)) and np.all(v > 0) and np.all(v <= 1)):
                    raise BitstreamError("feature sequence: gains out of domain")
                g[name] = v
            gains[first:first + run] = [g] * run
            first += run
        if first != n:
            raise BitstreamError(f"feature sequence: gain runs cover {first} of {n} frames")
    lengths = [r.varint("stream length", 1 << 31) for _ in shapes]
    streams = [r.take(k, "stream") for k in lengths]
    if r.pos != len(data):
        raise BitstreamError(f"feature sequence: {len(data) - r.pos} trailing bytes")
    out: list[dict[str, torch.Tensor]] = [dict() for _ in range(n)]
    for (name, c, h, w), stream in zip(shapes, streams):
        rows, cols = grid_for(c)
        frames = coder.decode(stream, bit_depth, (rows * h, cols * w), n)
        for i, fr in enumerate(frames):
            lo, hi = rng[name][i]
            g = None if gains[i] is None else gains[i][name]
            x = dequantise(untile_channels(fr, c, h, w), lo, hi, bit_depth, g)
            out[i][name] = torch.from_numpy(x.reshape(1, c, h, w)).to(torch.float32)
    return out
