"""HEVC (H.265) intra coding with libx265, in-process through PyAV (``pip install av``).

Feature frames are coded as true monochrome (4:0:0) pictures, ``gray`` (8-bit) or
``gray10le`` (10-bit): no chroma planes, no colour conversion, the decoded luma plane
is the frame. In-process PyAV avoids the ~60 ms cost of spawning ffmpeg per frame.

Quality is the **slice QP** (0..51, lower = more bits). By default x265 codes an intra
picture at ``QP - 6*log2(ipratio)`` ~= ``QP - 3``; we set ``ipratio=1`` so the QP you pick
is the QP the slice is coded at. Every encoder parameter is in :meth:`HEVCCodec.x265_params`
(one place): ``keyint=1`` (intra), ``info=0`` (no ~2.2 KB "x265 info" SEI of settings in
every stream: the bits reported are those of the stream *without* it, which a real
deployment would also leave out), constant QP so adaptive quantisation is off.
A later ROI mode (CRF + ``aq-mode`` + ``addroi`` side data) belongs there too.

**Truncation**: libavcodec's HEVC decoder conceals a slice cut short and reports
nothing, so ``decode`` can only reject streams damaged in their headers or unparsable
(``detects_truncation = False``). Catching that would take x265's MD5 picture-hash SEI
(``hash=1``, +25 bytes per picture, checked with ``err_detect=crccheck``); we do not pay
for it: the container's length fields catch truncation in transit.

Frames smaller than 16x16 are padded by edge replication (x265 refuses smaller
pictures) and cropped back on decode. The full-input paradigm codes RGB as 8-bit
full-range BT.601 YCbCr 4:2:0 (converted in numpy, see ``_video``).
"""

from __future__ import annotations

import numpy as np

from ..errors import BitstreamError, ParameterError
from . import _video
from .base import FrameCodec, QualitySpec

_PIX_FMT = {8: "gray", 10: "gray10le"}


class HEVCCodec(FrameCodec):
    name = "hevc"
    description = "HEVC intra (libx265 via PyAV), true monochrome 8/10-bit, QP = slice QP"
    quality = QualitySpec(0, 51, higher_is_better=False, default=32, integer=True, meaning="HEVC slice QP")
    bit_depths = (8, 10)
    lossless = False
    detects_truncation = False  # see the module docstring
    preset = "medium"
    min_side = 16  # x265 refuses smaller pictures
    max_side = 8192

    def __init__(self) -> None:
        self._avail: tuple[bool, str] | None = None

    def available(self) -> tuple[bool, str]:
        if self._avail is None:
            try:
                _video.load_av()
            except ImportError:
                self._avail = (False, "PyAV is not installed (pip install av)")
            else:
                if not _video.av_has("libx265", "w"):
                    self._avail = (False, "this PyAV build has no libx265 encoder (pip install --force-reinstall av)")
                elif not _video.av_has("hevc", "r"):
                    self._avail = (False, "this PyAV build has no HEVC decoder")
                else:
                    self._avail = (True, "")
        return self._avail

    # -- the one place where encoder settings live ----------------------------------------------
    def x265_params(self, qp: int) -> dict[str, str | int]:
        """x265 parameters for one intra picture at slice QP ``qp``."""
        return {
            "qp": qp,
            "ipratio": 1,  # slice QP == qp (default ipratio 1.4 would code at qp-3)
            "keyint": 1,  # every picture intra
            "info": 0,  # no "x265 info" SEI (~2.2 KB of settings text)
            "frame-threads": 1,  # one picture: frame threads only add latency
            "log-level": "error",
        }

    def encoder_options(self, qp: int) -> dict[str, str]:
        params = ":".join(f"{k}={v}" for k, v in self.x265_params(qp).items())
        return {"preset": self.preset, "x265-params": params}

    def _check_size(self, h: int, w: int) -> None:
        if max(h, w) > self.max_side:
            raise ParameterError(f"{self.name}: {w}x{h} exceeds the {self.max_side}-pixel limit per side")

    # -- feature frames ---------------------------------------------------------------------------
    def _encode(self, frame: np.ndarray, bit_depth: int, quality: float) -> bytes:
        av = _video.load_av()
        self._check_size(*frame.shape)
        fmt = _PIX_FMT[bit_depth]
        padded = _video.pad_edge(frame, 1, self.min_side)
        arr = padded.astype(np.uint8) if bit_depth == 8 else padded
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt)
        h, w = padded.shape
        return _video.av_encode("libx265", vf, w, h, fmt, self.encoder_options(int(quality)))

    def _decode(self, data: bytes, bit_depth: int, shape: tuple[int, int]) -> np.ndarray:
        vf = _video.av_decode_one(data, "hevc")
        fmt = vf.format.name
        if fmt != _PIX_FMT[bit_depth]:
            raise BitstreamError(f"{self.name}: stream holds {fmt} pictures, expected {_PIX_FMT[bit_depth]}")
        y = _video.plane(vf, 0, np.uint8 if bit_depth == 8 else np.uint16)
        h, w = shape
        if y.shape != (_video.padded_size(h, 1, self.min_side), _video.padded_size(w, 1, self.min_side)):
            raise BitstreamError(f"{self.name}: picture is {y.shape[1]}x{y.shape[0]}, expected {w}x{h}")
        return y[:h, :w].astype(np.uint16)

    # -- full-input paradigm ----------------------------------------------------------------------
    def _encode_image(self, rgb: np.ndarray, quality: float) -> bytes:
        av = _video.load_av()
        self._check_size(*rgb.shape[:2])
        padded = _video.pad_edge(rgb, 2, self.min_side)
        y, cb, cr = _video.rgb_to_yuv420(padded, 8)
        h, w = y.shape
        stacked = np.concatenate([y.ravel(), cb.ravel(), cr.ravel()]).astype(np.uint8).reshape(h * 3 // 2, w)
        vf = av.VideoFrame.from_ndarray(stacked, format="yuv420p")
        return _video.av_encode("libx265", vf, w, h, "yuv420p", self.encoder_options(int(quality)))

    def _decode_image(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        vf = _video.av_decode_one(data, "hevc")
        if vf.format.name != "yuv420p":
            raise BitstreamError(f"{self.name}: stream holds {vf.format.name} pictures, expected yuv420p")
        h, w = shape
        if (vf.height, vf.width) != (_video.padded_size(h, 2, self.min_side), _video.padded_size(w, 2, self.min_side)):
            raise BitstreamError(f"{self.name}: picture is {vf.width}x{vf.height}, expected {w}x{h}")
        y, cb, cr = (_video.plane(vf, i, np.uint8) for i in range(3))
        return _video.yuv420_to_rgb(y, cb, cr, 8)[:h, :w]
