"""Helpers shared by the video codecs (HEVC, VVC): padding, RGB <-> YCbCr 4:2:0, PyAV.

Colour for the full-input paradigm is converted here, in numpy, never by swscale/ffmpeg
filters: full-range BT.601 (JFIF) YCbCr, chroma as 2x2 means (centred siting) and
bilinear upsampling back. Encoder and decoder therefore use exactly the same matrices
whatever the stream's VUI says, and no full/limited range conversion ever happens.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..errors import BitstreamError

# -- padding -------------------------------------------------------------------------------------


def padded_size(n: int, multiple: int = 1, minimum: int = 1) -> int:
    n = max(n, minimum)
    return -(-n // multiple) * multiple


def pad_edge(a: np.ndarray, multiple: int = 1, minimum: int = 1) -> np.ndarray:
    """Pad the first two axes by edge replication to a multiple of ``multiple`` and at
    least ``minimum`` (replication costs almost no bits; the decoder crops back)."""
    h, w = a.shape[:2]
    ph, pw = padded_size(h, multiple, minimum) - h, padded_size(w, multiple, minimum) - w
    if not ph and not pw:
        return np.ascontiguousarray(a)
    pad = [(0, ph), (0, pw)] + [(0, 0)] * (a.ndim - 2)
    return np.pad(a, pad, mode="edge")


# -- colour ---------------------------------------------------------------------------------------
_RGB2YCC = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float64
)
_YCC2RGB = np.linalg.inv(_RGB2YCC)


def rgb_to_yuv420(rgb: np.ndarray, bit_depth: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 with even H, W -> Y (H, W), Cb, Cr (H/2, W/2) uint16 at ``bit_depth``."""
    scale = ((1 << bit_depth) - 1) / 255.0
    mid = 1 << (bit_depth - 1)
    ycc = rgb.astype(np.float64) @ _RGB2YCC.T
    h, w = rgb.shape[:2]
    top = (1 << bit_depth) - 1
    y = np.clip(np.rint(ycc[..., 0] * scale), 0, top).astype(np.uint16)
    c = ycc[..., 1:].reshape(h // 2, 2, w // 2, 2, 2).mean(axis=(1, 3))
    c = np.clip(np.rint(c * scale + mid), 0, top).astype(np.uint16)
    return y, c[..., 0], c[..., 1]


def _up2(c: np.ndarray, axis: int) -> np.ndarray:
    """2x linear upsampling along ``axis`` for centred chroma (weights 3/4, 1/4)."""
    n = c.shape[axis]
    prev = np.take(c, np.r_[0, np.arange(n - 1)], axis=axis)
    nxt = np.take(c, np.r_[np.arange(1, n), n - 1], axis=axis)
    even, odd = 0.75 * c + 0.25 * prev, 0.75 * c + 0.25 * nxt
    out = np.stack([even, odd], axis=axis + 1)
    shape = list(c.shape)
    shape[axis] = 2 * n
    return out.reshape(shape)


def yuv420_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Inverse of :func:`rgb_to_yuv420`: -> (H, W, 3) uint8 (H, W = y.shape)."""
    scale = 255.0 / ((1 << bit_depth) - 1)
    mid = 1 << (bit_depth - 1)
    h, w = y.shape
    if cb.shape != (h // 2, w // 2) or cr.shape != cb.shape:
        raise BitstreamError(f"chroma planes {cb.shape} do not match a {h}x{w} luma plane")
    c = np.stack([cb, cr], axis=-1).astype(np.float64) - mid
    c = _up2(_up2(c, 0), 1)
    ycc = np.concatenate([y.astype(np.float64)[..., None], c], axis=-1) * scale
    rgb = ycc @ _YCC2RGB.T
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


# -- PyAV -----------------------------------------------------------------------------------------


def load_av():
    """Import PyAV (a separate function so tests can simulate it missing)."""
    import av  # noqa: PLC0415  why: PyAV is heavy; loaded when a video codec first runs

    return av


def av_has(codec: str, mode: str) -> bool:
    av = load_av()
    try:
        av.codec.Codec(codec, mode)
    except Exception:
        return False
    return True


def av_encode(codec: str, frame, width: int, height: int, pix_fmt: str, options: dict[str, str]) -> bytes:
    """Encode one ``av.VideoFrame`` with a fresh encoder; returns the raw bitstream."""
    cc = load_av().CodecContext.create(codec, "w")
    cc.width, cc.height, cc.pix_fmt = width, height, pix_fmt
    cc.time_base = Fraction(1, 1)
    cc.options = dict(options)
    frame.pts = 0
    packets = list(cc.encode(frame)) + list(cc.encode(None))
    return b"".join(bytes(p) for p in packets)


def av_decode_one(data: bytes, codec: str):
    """Decode a one-picture elementary stream in-process -> the first ``av.VideoFrame``."""
    av = load_av()
    cc = av.CodecContext.create(codec, "r")
    frames = list(cc.decode(av.Packet(data)))
    frames += list(cc.decode(None))
    if not frames:
        raise BitstreamError(f"{codec}: no picture in the bitstream")
    return frames[0]


def plane(frame, index: int, dtype) -> np.ndarray:
    """One plane of an ``av.VideoFrame`` as a (height, width) array, line padding removed."""
    p = frame.planes[index]
    itemsize = np.dtype(dtype).itemsize
    a = np.frombuffer(memoryview(p), dtype=dtype)
    stride = p.line_size // itemsize
    return a[: p.height * stride].reshape(p.height, stride)[:, : p.width]
