"""The bitstream actually transmitted: a compact header + one codec stream per tensor.

**Rate**: ``bits = len(EncodedFeatures.data) * 8`` — the whole container (header and
every frame's codec bitstream), exactly the bytes :func:`decode_features` reads.
``header_bytes + sum(payload_bytes.values()) == len(data)``.

**Agreed out of band** (not in the stream): the model, the split point, the codec and its
quality parameter. The decoder is given the same codec object; a stream decoded with
another codec fails with ``BitstreamError``.

Layout (version 2; integers are unsigned LEB128 varints unless said otherwise)::

    u8        version = 2
    u8        bits 0-4: bit depth (8, 10, 12 or 16); bit 5: mode (0 tensor, 1 channel);
              bits 6-7: 0
    varint    number of tensors (>= 1)
    per tensor, in order:
      u8      name length n (1..255), then n bytes of UTF-8 name
      u8      flags: bit 0 gains present; bit 1 shape has a batch dim (1, C, H, W);
              bit 2 tiles padded (a u8 block size B in 2..64 follows W); others 0
      varint  C, H, W
      [u8     B: every tile is edge-padded to multiples of B (``packing``, tile padding)]
      f16 LE  ranges: tensor mode min, max; channel mode C mins then C maxs
      f16 LE  C gains (when flag bit 0)
      varint  payload length in bytes
    the payloads (each a complete codec bitstream of one tiled frame), concatenated
    in tensor order
    u32 LE    CRC-32 (zlib) of every preceding byte; nothing follows it

``header_bytes`` counts everything but the payloads (the CRC included). The tile grid and
the frame size follow from C, H, W (``packing.grid_for``). Anything that does not parse
exactly — truncation, trailing bytes, reserved bits set, ranges or gains out of domain, a
checksum mismatch (any changed byte: CRC-32 catches every burst up to 32 bits and all but
2^-32 of the rest), a payload the codec cannot decode — raises ``BitstreamError``.

Sizes are checked from the header alone, before the codec or numpy allocates anything: the
frames of one stream may hold at most ``MAX_DECODE_SAMPLES`` samples unless the decoder
states the shapes it expects (``expect=``, e.g. the model split's tensors), in which case
the tensor names and shapes must be exactly those. A forged stream with a valid checksum
declaring a huge frame is refused in microseconds. Version 1 streams (no checksum) are
refused with a message saying so; re-encode them.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from .codecs.base import FrameCodec
from .byteio import ByteReader, encode_varint
from .errors import BitstreamError, CodecUnavailableError, FCMError, ParameterError
from .packing import (BIT_DEPTHS, MAX_PAD, MODES, PackedTensor, grid_for, pack_tensor, pad_tiles, padded_tile,
                      tile_channels, unpack_tensor)

VERSION = 2
MAX_SIDE = 1 << 16  # frame side limit (samples), a guard against absurd headers
MAX_VALUES = 1 << 28  # C*H*W limit per tensor
# Frame samples one stream may declare when the decoder does not say what it expects:
# 32 M samples (64 MB of 16-bit frames) holds the largest split here at the default input
# size (Faster R-CNN layer3 at 800x1333: 30 M) and refuses an 8000x8000 forgery (64 M).
MAX_DECODE_SAMPLES = 1 << 25
CRC_BYTES = 4


@dataclass
class EncodedFeatures:
    data: bytes  # the whole transmitted bitstream
    frames: dict[str, np.ndarray]  # the packed frames the codec saw
    header_bytes: int
    payload_bytes: dict[str, int]
    packed: dict[str, PackedTensor] = field(default_factory=dict)  # side info + frames
    bit_depth: int = 0
    mode: str = "tensor"

    @property
    def bits(self) -> int:
        """Rate of the whole stream: ``len(data) * 8``."""
        return len(self.data) * 8


@dataclass
class DecodedFeatures:
    features: dict[str, torch.Tensor]
    frames: dict[str, np.ndarray]  # decoded frames, before unpacking
    packed: dict[str, PackedTensor] = field(default_factory=dict)


@dataclass
class TensorHeader:
    name: str
    shape: tuple[int, ...]
    mins: np.ndarray
    maxs: np.ndarray
    gains: np.ndarray | None
    payload_bytes: int
    pad: int = 0

    @property
    def frame_shape(self) -> tuple[int, int]:
        c, h, w = self.shape[-3:]
        rows, cols = grid_for(c)
        return rows * padded_tile(h, self.pad), cols * padded_tile(w, self.pad)


@dataclass
class StreamHeader:
    version: int
    bit_depth: int
    mode: str
    tensors: list[TensorHeader]
    header_bytes: int  # side information: everything but the payloads (CRC included)
    payload_offset: int = 0  # where the first payload starts


# -- writing ---------------------------------------------------------------------------------------


def _f16(a: np.ndarray) -> bytes:
    return np.asarray(a, dtype=np.float16).astype("<f2").tobytes()


def _tensor_header(p: PackedTensor, payload_len: int) -> bytes:
    name = p.name.encode("utf-8")
    c, h, w = p.chw
    flags = (1 if p.gains is not None else 0) | (2 if len(p.shape) == 4 else 0) | (4 if p.pad else 0)
    out = bytes([len(name)]) + name + bytes([flags]) + encode_varint(c) + encode_varint(h) + encode_varint(w)
    if p.pad:
        out += bytes([p.pad])
    if p.mode == "tensor":
        out += _f16(np.concatenate([p.mins, p.maxs]))
    else:
        out += _f16(p.mins) + _f16(p.maxs)
    if p.gains is not None:
        out += _f16(p.gains)
    return out + encode_varint(payload_len)


def encode_features(
    features: dict[str, torch.Tensor],
    codec: FrameCodec,
    quality=None,
    bit_depth: int | None = None,
    mode: str = "tensor",
    gains: dict[str, np.ndarray] | None = None,
    qp_offsets: dict[str, np.ndarray] | None = None,
    pad: int = 0,
) -> EncodedFeatures:
    """Pack every tensor into a frame, code it with ``codec`` at ``quality`` (None = the
    codec's default) and wrap all in one bitstream. ``bit_depth`` defaults to
    ``codec.default_bit_depth()``; ``gains`` maps tensor names to per-channel gains
    (see ``packing``); ``qp_offsets`` maps tensor names to a QP offset per channel tile, for
    codecs with per-region QP (``codec.supports_qp_offsets``: HEVC); the offsets live inside
    the codec stream, so the container and the decoder are unchanged. A tensor's offsets are
    C values (one per tile) or a (C, H, W) array (one per position; averaged over the
    codec's QP blocks). ``pad``: tiles padded to multiples of ``pad`` (see ``packing``)."""
    if not isinstance(features, dict) or not features:
        raise ParameterError("encode_features needs a non-empty dict of name -> tensor")
    if bit_depth is None:
        bit_depth = codec.default_bit_depth()
    if bit_depth not in codec.bit_depths or bit_depth not in BIT_DEPTHS:
        depths = [d for d in codec.bit_depths if d in BIT_DEPTHS]
        raise ParameterError(f"{codec.name} cannot code {bit_depth}-bit frames here; use {', '.join(map(str, depths))}")
    if mode not in MODES:
        raise ParameterError(f"packing mode {mode!r} unknown; use 'tensor' or 'channel'")
    gains = dict(gains or {})
    unknown = set(gains) - set(features)
    if unknown:
        raise ParameterError(f"gains given for unknown tensors: {', '.join(sorted(unknown))}")
    qp_offsets = dict(qp_offsets or {})
    unknown = set(qp_offsets) - set(features)
    if unknown:
        raise ParameterError(f"QP offsets given for unknown tensors: {', '.join(sorted(unknown))}")
    if qp_offsets and not getattr(codec, "supports_qp_offsets", False):
        raise ParameterError(f"{codec.name} has no per-region QP control here (HEVC only); use per-tile gains")
    quality = codec.check_quality(quality)
    codec.require_available()

    head = bytes([VERSION, bit_depth | (32 if mode == "channel" else 0)]) + encode_varint(len(features))
    payloads: dict[str, bytes] = {}
    packed: dict[str, PackedTensor] = {}
    for name, t in features.items():
        if not isinstance(name, str) or not 1 <= len(name.encode("utf-8")) <= 255:
            raise ParameterError(f"tensor names must be 1..255 bytes of UTF-8, got {name!r}")
        p = pack_tensor(t, name, bit_depth, mode, gains.get(name), pad=pad)
        c, h, w = p.chw
        fh, fw = p.frame.shape
        if max(fh, fw) > MAX_SIDE or c * h * w > MAX_VALUES:
            raise ParameterError(f"{name}: tensor {tuple(p.shape)} too large for one frame")
        if name in qp_offsets:
            payloads[name] = codec.encode_qp_map(p.frame, bit_depth, quality, qp_map_for(p, qp_offsets[name]))
        else:
            payloads[name] = codec.encode(p.frame, bit_depth, quality)
        packed[name] = p
        head += _tensor_header(p, len(payloads[name]))
    data = head + b"".join(payloads.values())
    data += struct.pack("<I", zlib.crc32(data))
    return EncodedFeatures(
        data=data,
        frames={n: p.frame for n, p in packed.items()},
        header_bytes=len(head) + CRC_BYTES,
        payload_bytes={n: len(b) for n, b in payloads.items()},
        packed=packed,
        bit_depth=bit_depth,
        mode=mode,
    )


def qp_map_for(p: PackedTensor, offsets) -> np.ndarray:
    """Per-sample QP offset map of ``p``'s frame: channel c's tile gets ``offsets[c]``
    (C values) or ``offsets[c, y, x]`` per position ((C, H, W) values; padding samples
    take their edge's offset), unused tiles 0."""
    c, h, w = p.chw
    off = np.asarray(offsets, dtype=np.float64)
    if off.size == c:
        off = np.repeat(off.reshape(-1), h * w).reshape(c, h, w)
    if off.shape != (c, h, w) or not np.all(np.isfinite(off)):
        raise ParameterError(f"{p.name}: expected {c} or {c}x{h}x{w} finite QP offsets, got shape {off.shape}")
    return tile_channels(pad_tiles(off, p.pad), fill=0.0)


# -- reading ---------------------------------------------------------------------------------------
class _Reader(ByteReader):
    def f16(self, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(2 * count, what), dtype="<f2").astype(np.float16)


Expect = Mapping[str, Sequence["int | None"]]


def _check_expected(name: str, shape: tuple[int, ...], expect: Expect) -> None:
    want = tuple(expect[name])
    if len(want) not in (3, 4) or (len(want) == 4 and len(shape) != 4):
        raise BitstreamError(f"{name}: stream declares shape {shape}, expected {want}")
    if any(w is not None and int(w) != got for w, got in zip(want[-3:], shape[-3:])):
        raise BitstreamError(f"{name}: stream declares shape {shape}, expected {want} for this split")


def read_header(data: bytes, *, expect: Expect | None = None, max_samples: int | None = None) -> StreamHeader:
    """Parse and validate the container (header, lengths, checksum; no decoding). Raises
    BitstreamError. ``expect`` (tensor name -> shape, ``None`` for a free dimension): the
    stream must hold exactly these tensors with these shapes. ``max_samples``: frame
    samples allowed in total (default ``MAX_DECODE_SAMPLES``, or what ``expect`` implies
    when it fixes every dimension)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ParameterError(f"bitstream must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise BitstreamError("empty bitstream")
    if expect is not None and (not isinstance(expect, Mapping) or not expect):
        raise ParameterError("expect must map tensor names to shapes")
    r = _Reader(data)
    version = r.u8("version")
    if version == 1:
        raise BitstreamError("FCM feature bitstream version 1 (no checksum) is no longer read; "
                             f"re-encode it with this version ({VERSION})")
    if version != VERSION:
        raise BitstreamError(f"not an FCM feature bitstream (version byte {version}, expected {VERSION})")
    b = r.u8("bit depth")
    bit_depth, mode_bit = b & 31, (b >> 5) & 1
    if b >> 6 or bit_depth not in BIT_DEPTHS:
        raise BitstreamError(f"corrupt header: bit depth/mode byte {b:#04x}")
    mode = MODES[mode_bit]
    n = r.varint("tensor count", 4096)
    if n < 1:
        raise BitstreamError("corrupt header: no tensors")
    if expect is not None and n != len(expect):
        raise BitstreamError(f"stream holds {n} tensors, expected {len(expect)} ({', '.join(expect)})")
    if max_samples is None:
        max_samples = MAX_DECODE_SAMPLES
        if expect is not None and all(all(d is not None for d in s) for s in expect.values()):
            shapes = [tuple(int(d) for d in s) for s in expect.values()]
            max_samples = max(max_samples, sum(_frame_samples(s[-3:]) for s in shapes if len(s) >= 3))
    tensors: list[TensorHeader] = []
    names: set[str] = set()
    samples = 0
    for i in range(n):
        ln = r.u8("name length")
        try:
            name = r.take(ln, "name").decode("utf-8")
        except UnicodeDecodeError:
            raise BitstreamError(f"corrupt header: tensor {i} name is not UTF-8") from None
        if not name or name in names:
            raise BitstreamError(f"corrupt header: empty or repeated tensor name {name!r}")
        if expect is not None and name not in expect:
            raise BitstreamError(f"stream holds tensor {name!r}, expected {', '.join(map(repr, expect))}")
        names.add(name)
        flags = r.u8("flags")
        if flags >> 3:
            raise BitstreamError(f"corrupt header: {name}: reserved flag bits set ({flags:#04x})")
        c = r.varint("channel count", MAX_VALUES)
        h = r.varint("height", MAX_SIDE)
        w = r.varint("width", MAX_SIDE)
        if min(c, h, w) < 1 or c * h * w > MAX_VALUES:
            raise BitstreamError(f"corrupt header: {name}: impossible shape {(c, h, w)}")
        pad = 0
        if flags & 4:
            pad = r.u8("tile padding")
            if not 2 <= pad <= MAX_PAD:
                raise BitstreamError(f"corrupt header: {name}: tile padding {pad} outside 2..{MAX_PAD}")
        rows, cols = grid_for(c)
        th_, tw_ = padded_tile(h, pad), padded_tile(w, pad)
        if rows * th_ > MAX_SIDE or cols * tw_ > MAX_SIDE:
            raise BitstreamError(f"corrupt header: {name}: frame too large")
        shape = (1, c, h, w) if flags & 2 else (c, h, w)
        if expect is not None:
            _check_expected(name, shape, expect)
        samples += rows * th_ * cols * tw_
        if samples > max_samples:
            raise BitstreamError(
                f"{name}: stream declares {samples:,} frame samples, over the {max_samples:,} limit "
                "(pass the expected shapes to decode larger splits)")
        if mode == "tensor":
            mins, maxs = r.f16(1, "range"), r.f16(1, "range")
        else:
            mins, maxs = r.f16(c, "ranges"), r.f16(c, "ranges")
        if not (np.all(np.isfinite(mins)) and np.all(np.isfinite(maxs)) and np.all(mins <= maxs)):
            raise BitstreamError(f"corrupt header: {name}: invalid value ranges")
        gains = None
        if flags & 1:
            gains = r.f16(c, "gains")
            if not (np.all(np.isfinite(gains)) and np.all(gains > 0) and np.all(gains <= 1)):
                raise BitstreamError(f"corrupt header: {name}: gains outside (0, 1]")
        plen = r.varint("payload length", len(data))
        if plen < 1:
            raise BitstreamError(f"corrupt header: {name}: empty payload")
        tensors.append(TensorHeader(name, shape, mins, maxs, gains, plen, pad))
    total = r.pos + sum(t.payload_bytes for t in tensors) + CRC_BYTES
    if total > len(data):
        raise BitstreamError(f"bitstream truncated: {len(data)} bytes, header announces {total}")
    if total < len(data):
        raise BitstreamError(f"bitstream has {len(data) - total} unexpected trailing bytes")
    if zlib.crc32(data[:-CRC_BYTES]) != struct.unpack("<I", data[-CRC_BYTES:])[0]:
        raise BitstreamError("bitstream checksum mismatch (corrupted or truncated in transit)")
    return StreamHeader(version, bit_depth, mode, tensors, r.pos + CRC_BYTES, payload_offset=r.pos)


def _frame_samples(chw: Sequence[int]) -> int:
    c, h, w = chw
    rows, cols = grid_for(c)
    return rows * h * cols * w


def decode_features(data: bytes, codec: FrameCodec, *, expect: Expect | None = None,
                    max_samples: int | None = None) -> DecodedFeatures:
    """Parse the container and decode every frame with ``codec`` (the one agreed out of
    band) back to tensors. Any malformed input raises ``BitstreamError``. ``expect`` and
    ``max_samples``: see ``read_header`` (pass the split's tensor shapes when known)."""
    header = read_header(data, expect=expect, max_samples=max_samples)
    data = bytes(data)
    if header.bit_depth not in codec.bit_depths:
        raise BitstreamError(
            f"stream holds {header.bit_depth}-bit frames; {codec.name} codes "
            f"{', '.join(map(str, codec.bit_depths))}-bit (decoding with the wrong codec?)"
        )
    pos = header.payload_offset
    features: dict[str, torch.Tensor] = {}
    frames: dict[str, np.ndarray] = {}
    packed: dict[str, PackedTensor] = {}
    for th in header.tensors:
        payload = data[pos : pos + th.payload_bytes]
        pos += th.payload_bytes
        try:
            frame = codec.decode(payload, header.bit_depth, th.frame_shape)
        except (BitstreamError, CodecUnavailableError):
            raise
        except FCMError as e:
            raise BitstreamError(f"{th.name}: {e}") from None
        c = th.shape[-3]
        p = PackedTensor(
            th.name, th.shape, header.bit_depth, header.mode, th.mins, th.maxs, th.gains, grid_for(c), frame, th.pad
        )
        frames[th.name] = frame
        packed[th.name] = p
        features[th.name] = unpack_tensor(p)
    return DecodedFeatures(features=features, frames=frames, packed=packed)


__all__ = [
    "MAX_DECODE_SAMPLES",
    "VERSION",
    "DecodedFeatures",
    "EncodedFeatures",
    "StreamHeader",
    "TensorHeader",
    "decode_features",
    "encode_features",
    "qp_map_for",
    "read_header",
]
