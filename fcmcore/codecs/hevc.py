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
Per-region QP offsets (WA-RDO, ``encode_qp_map``): CRF + ``aq-mode`` + ``addroi`` side data,
see ``x265_roi_params``.

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

import threading
from collections import OrderedDict
from fractions import Fraction

import numpy as np

from ..errors import BitstreamError, ParameterError
from . import _video
from ..registry import CODECS
from .base import FrameCodec, QualitySpec

_PIX_FMT = {8: "gray", 10: "gray10le"}


@CODECS.register("hevc")
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
    def _video_frame(self, frame: np.ndarray, bit_depth: int):
        """The padded monochrome picture x265 codes: (VideoFrame, pixel format, height, width)."""
        av = _video.load_av()
        self._check_size(*frame.shape)
        fmt = _PIX_FMT[bit_depth]
        padded = _video.pad_edge(frame, 1, self.min_side)
        arr = padded.astype(np.uint8) if bit_depth == 8 else padded
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt)
        return vf, fmt, *padded.shape

    def _encode(self, frame: np.ndarray, bit_depth: int, quality: float) -> bytes:
        vf, fmt, h, w = self._video_frame(frame, bit_depth)
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

    # -- per-region QP offsets (WA-RDO, ``--rdo wa-qp``) -------------------------------------------
    # x265 honours ffmpeg's ROI side data only with adaptive quantisation on, which constant QP
    # turns off: ROI encodes run in CRF mode with aq-mode=1 at a negligible strength (only our
    # offsets move the QP), qg-size 8 (libavcodec then maps ROIs onto 8x8 blocks) and 16x16 CTUs:
    # x265 gives a CU the mean offset of the blocks it covers, and with 64x64 CTUs it picks CUs
    # that straddle channel tiles, blurring the offsets (a -6 on one 19x19 tile then acts as
    # about -1). Measured here: crf=Q codes like qp=Q (bits within ~1 %, same distortion), a ROI
    # qoffset of d/qp_range moves a block by d QP (qp_range = 51 + 6 * (bit_depth - 8), as
    # libavcodec scales it), and 16x16 CTUs cost ~2 % more bits at zero offsets.
    supports_qp_offsets = True
    roi_block = 8
    roi_aq_strength = 0.01
    roi_ctu = 16

    def x265_roi_params(self, qp: int) -> dict[str, str | int | float]:
        """x265 parameters for one intra picture at (CRF) ``qp`` with per-region QP offsets."""
        params = self.x265_params(qp)
        del params["qp"]
        params.update({"crf": qp, "aq-mode": 1, "aq-strength": self.roi_aq_strength, "qg-size": self.roi_block,
                       "ctu": self.roi_ctu})
        return params

    def encode_qp_map(self, frame: np.ndarray, bit_depth: int, quality: float, qp_map: np.ndarray) -> bytes:
        """Like ``encode``, with a QP offset per sample (``qp_map``, same shape as ``frame``;
        negative = finer). Offsets are averaged over x265's 8x8 quantisation groups and rounded
        to whole QPs; the decoder needs nothing (the QPs are in the stream)."""
        self.check_frame(frame, bit_depth)
        q = int(self.check_quality(quality))
        qp_map = np.asarray(qp_map, dtype=np.float64)
        if qp_map.shape != frame.shape or not np.all(np.isfinite(qp_map)):
            raise ParameterError(f"{self.name}: QP offset map must be finite and {frame.shape}, got {qp_map.shape}")
        self.require_available()
        vf, fmt, h, w = self._video_frame(frame, bit_depth)
        qp_range = 51 + 6 * (bit_depth - 8)
        regions = roi_regions(_video.pad_edge(qp_map, 1, self.min_side), self.roi_block, qp_range)
        if regions:
            vf = _with_rois(_video.load_av(), vf, regions, fmt, qp_range)
        params = ":".join(f"{k}={v}" for k, v in self.x265_roi_params(q).items())
        return bytes(_video.av_encode("libx265", vf, w, h, fmt, {"preset": self.preset, "x265-params": params}))

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


def roi_regions(qp_map: np.ndarray, block: int, qp_range: int) -> list[tuple[int, int, int, int, int]]:
    """(x, y, w, h, dqp) rectangles covering ``block`` x ``block`` blocks whose mean offset,
    rounded to a whole QP (clipped to +-qp_range), is not 0; runs of equal blocks along a row
    are merged. Rectangles do not overlap."""
    h, w = qp_map.shape
    by, bx = -(-h // block), -(-w // block)
    padded = np.pad(qp_map, ((0, by * block - h), (0, bx * block - w)), mode="edge")
    means = padded.reshape(by, block, bx, block).mean(axis=(1, 3))
    dqp = np.clip(np.rint(means), -qp_range, qp_range).astype(int)
    out = []
    for j in range(by):
        i = 0
        while i < bx:
            n = 1
            while i + n < bx and dqp[j, i + n] == dqp[j, i]:
                n += 1
            if dqp[j, i]:
                out.append((i * block, j * block, n * block, block, int(dqp[j, i])))
            i += n
    return out


# Configured ``addroi`` chains by (width, height, format, qp_range, regions). Building one costs
# one filter per rectangle (~100-200 for a spatial map) and was most of WA-RDO's encoder
# overhead; fixed weights give the same map for every picture of a tile layout, so the chain
# is built once and every later picture only passes through it. A graph keeps no state
# between pictures (addroi only attaches side data), so the bytes are those of a fresh chain.
_ROI_GRAPHS: "OrderedDict[tuple, object]" = OrderedDict()
_ROI_GRAPHS_MAX = 16  # per-image maps differ every picture: keep only a few
_ROI_LOCK = threading.Lock()


def _roi_graph(av, width: int, height: int, fmt: str, regions, qp_range: int):
    """[configured graph buffer -> addroi x len(regions) -> buffersink, next pts], cached."""
    key = (width, height, fmt, qp_range, tuple(regions))
    hit = _ROI_GRAPHS.get(key)
    if hit is not None:
        _ROI_GRAPHS.move_to_end(key)
        return hit
    graph = av.filter.Graph()
    last = graph.add_buffer(width=width, height=height, format=fmt, time_base=Fraction(1, 1))
    for x, y, w, h, d in regions:
        node = graph.add("addroi", f"x={x}:y={y}:w={w}:h={h}:qoffset={d}/{qp_range}")
        last.link_to(node)
        last = node
    sink = graph.add("buffersink")
    last.link_to(sink)
    graph.configure()
    hit = _ROI_GRAPHS[key] = [graph, 0]  # [graph, next pts]: buffersrc wants increasing timestamps
    while len(_ROI_GRAPHS) > _ROI_GRAPHS_MAX:
        _ROI_GRAPHS.popitem(last=False)
    return hit


def _with_rois(av, vf, regions, fmt: str, qp_range: int):
    """The frame with ROI side data attached by a (cached) chain of ffmpeg ``addroi`` filters."""
    with _ROI_LOCK:
        hit = _roi_graph(av, vf.width, vf.height, fmt, regions, qp_range)
        graph, vf.pts = hit[0], hit[1]  # the encoder resets pts to 0 (``_video.av_encode``)
        hit[1] += 1
        graph.push(vf)
        return graph.pull()


@CODECS.register("hevc-slow")
class HEVCSlowCodec(HEVCCodec):
    """x265 preset slow: the like-for-like partner of vvenc preset medium (``vvc-slow``)."""

    name = "hevc-slow"
    description = "HEVC intra (libx265 preset slow via PyAV), true monochrome 8/10-bit, QP = slice QP"
    preset = "slow"
