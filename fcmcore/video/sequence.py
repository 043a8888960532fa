"""Coding a sequence of frames as ONE video stream: HEVC (libx265, in-process PyAV) or VVC
(libvvenc, imageio-ffmpeg's ffmpeg, one process per sequence).

Structures (``gop``):

* ``intra``: every picture intra (what a per-frame image codec does, inside one stream).
* ``ldp``: low delay, pictures predicted from earlier ones only, no reordering. x265: P
  slices (``bframes=0``); vvenc: its low-delay configuration (``PicReordering=0``,
  ``DecodingRefreshType=0``, GOP 8: B slices with past references only).
* ``ra``: random access, hierarchical B pictures with reordering. x265: ``bframes=4``
  (closed GOPs); vvenc: its default random-access configuration (GOP 16/32 by preset).

``intra_period`` (frames) is the distance between intra pictures for ``ldp``/``ra``
(default 64; x265 honours it exactly, vvenc rounds it to its GOP structure: the intra
pictures actually coded are reported per frame from the NAL unit types).

Quality is the sequence's **base QP** with each encoder's own hierarchy around it, as in
the usual test conditions: x265 codes I slices at about QP-3 and B at about QP+2 (its
defaults ``ipratio=1.4``, ``pbratio=1.3``), vvenc its GOP's QP offsets. Compare structures
on RD curves, not at equal QP. No ``x265 info`` SEI (``info=0``), no scene-cut detection
(the structure is the one asked for), no perceptual QP adaptation (vvenc ``-qpa 0``).

Measured, never estimated: the stream is Annex-B; per-picture bytes come from cutting it into
access units at its NAL units (:mod:`fcmcore.video.nal`), and the display order of those
units from the encoder's packet timestamps (PyAV packets; for ffmpeg a ``framecrc`` log of
the same packets through the ``tee`` muxer). Decoding feeds one access unit per packet and
takes the pictures in output (display) order.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..codecs import _video, get_codec, vvc
from ..codecs.base import QualitySpec
from ..errors import BitstreamError, CodecUnavailableError, ParameterError
from .nal import access_units, split_access_units

GOPS = ("intra", "ldp", "ra")
DEFAULT_INTRA_PERIOD = 64
TIMEOUT_S = 600
_HEVC_IRAP = range(16, 24)
_VVC_IRAP = range(7, 11)


@dataclass
class CodedSequence:
    """One coded stream and what each picture cost, in display order."""

    data: bytes  # the Annex-B elementary stream, exactly what the decoder reads
    codec: str  # "hevc" or "vvc"
    frame_bytes: list[int]  # bytes of each picture's access unit (display order); sum = len(data)
    intra: list[bool]  # picture coded as an intra random-access point (IRAP NAL type)
    decode_order: list[int]  # display index of each access unit, in stream order

    @property
    def bits(self) -> int:
        return len(self.data) * 8


def check_gop(gop: str, intra_period: int | None) -> int:
    """Validate the structure; returns the intra period in frames (1 for ``intra``)."""
    if gop not in GOPS:
        raise ParameterError(f"--gop must be one of {', '.join(GOPS)}, not {gop!r}")
    if gop == "intra":
        if intra_period not in (None, 1):
            raise ParameterError("--intra-period applies to ldp/ra (intra codes every frame intra)")
        return 1
    period = DEFAULT_INTRA_PERIOD if intra_period is None else int(intra_period)
    if period < 1 or period > 100000:
        raise ParameterError(f"--intra-period must be in 1..100000 frames, got {intra_period}")
    return period


def _measure(data: bytes, codec: str, pts_in_stream_order: list[int], n: int) -> CodedSequence:
    groups = access_units(data, codec)
    if len(groups) != n or len(pts_in_stream_order) != n:
        raise BitstreamError(f"{codec}: {len(groups)} access units and {len(pts_in_stream_order)} packets "
                             f"for {n} pictures")
    if sorted(pts_in_stream_order) != list(range(n)):
        raise BitstreamError(f"{codec}: packet timestamps are not a permutation of 0..{n - 1}")
    irap = _HEVC_IRAP if codec == "hevc" else _VVC_IRAP
    frame_bytes, intra = [0] * n, [False] * n
    for pts, g in zip(pts_in_stream_order, groups):
        frame_bytes[pts] = sum(u.size for u in g)
        intra[pts] = any(u.vcl and u.type in irap for u in g)
    return CodedSequence(data, codec, frame_bytes, intra, list(pts_in_stream_order))


class SequenceCoder:
    """A video codec coding a whole sequence. ``encode`` takes 2-D uint16 frames of
    ``bit_depth`` bits (feature frames) and ``encode_rgb`` (H, W, 3) uint8 frames (the
    full-input anchor); both return a :class:`CodedSequence`."""

    name = ""
    quality: QualitySpec
    bit_depths: tuple[int, ...] = (10,)

    def check_quality(self, q) -> int:
        spec = self.quality
        if q is None:
            return int(spec.default)
        try:
            qf = float(q)
        except (TypeError, ValueError):
            raise ParameterError(f"{self.name}: quality must be a number, got {q!r}") from None
        if not (spec.lo <= qf <= spec.hi) or qf != int(qf):
            raise ParameterError(f"{self.name}: quality {q} must be a whole number in "
                                 f"[{spec.lo:g}, {spec.hi:g}] ({spec.meaning})")
        return int(qf)

    def check_frames(self, frames, bit_depth: int) -> tuple[int, int]:
        if not frames:
            raise ParameterError(f"{self.name}: no frames to code")
        if bit_depth not in self.bit_depths:
            raise ParameterError(f"{self.name} codes {', '.join(map(str, self.bit_depths))}-bit sequences, "
                                 f"not {bit_depth}-bit")
        shape = frames[0].shape
        for f in frames:
            if f.shape != shape or f.ndim != 2 or f.dtype != np.uint16:
                raise ParameterError(f"{self.name}: frames must all be 2-D uint16 of one size")
        if max(shape) > 8192:
            raise ParameterError(f"{self.name}: {shape[1]}x{shape[0]} exceeds 8192 samples per side")
        return shape


# -- HEVC --------------------------------------------------------------------------------------

class HEVCSequenceCoder(SequenceCoder):
    name = "hevc"
    quality = QualitySpec(0, 51, higher_is_better=False, default=32, integer=True,
                          meaning="HEVC base QP (P slices; I at about QP-3, B at about QP+2)")
    bit_depths = (8, 10)
    preset = "medium"
    min_side = 16

    def available(self) -> tuple[bool, str]:
        return get_codec("hevc").available()

    def x265_params(self, qp: int, gop: str, intra_period: int | None) -> dict[str, str | int]:
        """Every x265 parameter of a sequence, in one place."""
        period = check_gop(gop, intra_period)
        params: dict[str, str | int] = {"qp": qp, "keyint": period, "min-keyint": period, "scenecut": 0,
                                        "info": 0, "log-level": "error", "open-gop": 0}
        params["bframes"] = 4 if gop == "ra" else 0
        return params

    def _encode_frames(self, vframes, w: int, h: int, pix_fmt: str, qp: int, gop: str,
                       intra_period: int | None) -> CodedSequence:
        av = _video.load_av()
        ok, reason = self.available()
        if not ok:
            raise CodecUnavailableError(f"codec hevc is not available: {reason}")
        cc = av.CodecContext.create("libx265", "w")
        cc.width, cc.height, cc.pix_fmt = w, h, pix_fmt
        cc.time_base = Fraction(1, 1)
        params = ":".join(f"{k}={v}" for k, v in self.x265_params(qp, gop, intra_period).items())
        cc.options = {"preset": self.preset, "x265-params": params}
        packets = []
        n = 0
        for n, vf in enumerate(vframes, start=1):
            vf.pts = n - 1
            packets += cc.encode(vf)
        packets += cc.encode(None)
        data = b"".join(bytes(p) for p in packets)
        return _measure(data, "hevc", [int(p.pts) for p in packets], n)

    def encode(self, frames: list[np.ndarray], bit_depth: int, quality, gop: str = "ldp",
               intra_period: int | None = None) -> CodedSequence:
        h, w = self.check_frames(frames, bit_depth)
        qp = self.check_quality(quality)
        av = _video.load_av()
        fmt = "gray" if bit_depth == 8 else "gray10le"
        ph, pw = _video.padded_size(h, 1, self.min_side), _video.padded_size(w, 1, self.min_side)

        def gen():
            for f in frames:
                p = _video.pad_edge(f, 1, self.min_side)
                yield av.VideoFrame.from_ndarray(np.ascontiguousarray(p.astype(np.uint8) if bit_depth == 8 else p),
                                                 format=fmt)
        return self._encode_frames(gen(), pw, ph, fmt, qp, gop, intra_period)

    def encode_rgb(self, frames: list[np.ndarray], quality, gop: str = "ldp",
                   intra_period: int | None = None) -> CodedSequence:
        qp = self.check_quality(quality)
        av = _video.load_av()
        first = _video.pad_edge(frames[0], 2, self.min_side)
        h, w = first.shape[:2]

        def gen():
            for rgb in frames:
                y, cb, cr = _video.rgb_to_yuv420(_video.pad_edge(rgb, 2, self.min_side), 8)
                stacked = np.concatenate([y.ravel(), cb.ravel(), cr.ravel()]).astype(np.uint8).reshape(h * 3 // 2, w)
                yield av.VideoFrame.from_ndarray(stacked, format="yuv420p")
        return self._encode_frames(gen(), w, h, "yuv420p", qp, gop, intra_period)

    def _decode_frames(self, data: bytes, n: int):
        return _decode_pictures(data, "hevc", n)

    def decode(self, data: bytes, bit_depth: int, shape: tuple[int, int], n: int) -> list[np.ndarray]:
        h, w = shape
        want = "gray" if bit_depth == 8 else "gray10le"
        ph, pw = _video.padded_size(h, 1, self.min_side), _video.padded_size(w, 1, self.min_side)
        frames = []
        for vf in self._decode_frames(data, n):
            if vf.format.name != want or (vf.height, vf.width) != (ph, pw):
                raise BitstreamError(f"hevc: picture is {vf.format.name} {vf.width}x{vf.height}, "
                                     f"expected {want} {pw}x{ph}")
            y = _video.plane(vf, 0, np.uint8 if bit_depth == 8 else np.uint16)
            frames.append(y[:h, :w].astype(np.uint16))
        return frames

    def decode_rgb(self, data: bytes, shape: tuple[int, int], n: int) -> list[np.ndarray]:
        h, w = shape
        out = []
        for vf in self._decode_frames(data, n):
            if vf.format.name != "yuv420p":
                raise BitstreamError(f"hevc: picture is {vf.format.name}, expected yuv420p")
            y, cb, cr = (_video.plane(vf, i, np.uint8) for i in range(3))
            out.append(_video.yuv420_to_rgb(y, cb, cr, 8)[:h, :w])
        return out


def _decode_pictures(data: bytes, codec: str, n: int) -> list:
    """The ``n`` pictures of an Annex-B ``codec`` sequence through PyAV's decoder, one access
    unit per packet; BitstreamError for anything that does not decode to exactly ``n``."""
    av = _video.load_av()
    try:
        cc = av.CodecContext.create(codec, "r")
        out = []
        for i, au in enumerate(_split(data, codec)):
            pkt = av.Packet(au)
            pkt.pts = i
            out += cc.decode(pkt)
        out += cc.decode(None)
    except BitstreamError:
        raise
    except Exception as exc:  # libavcodec raises anything on garbage
        raise BitstreamError(f"{codec}: undecodable sequence ({type(exc).__name__}: {str(exc)[:160]})") from None
    if len(out) != n:
        raise BitstreamError(f"{codec}: decoded {len(out)} pictures, the header says {n}")
    return out


def _split(data: bytes, codec: str) -> list[bytes]:
    return split_access_units(data, codec)


# -- VVC ---------------------------------------------------------------------------------------

class VVCSequenceCoder(SequenceCoder):
    name = "vvc"
    quality = QualitySpec(2, 63, higher_is_better=False, default=32, integer=True,
                          meaning="VVC base QP (vvenc's GOP QP offsets around it)")
    bit_depths = (10,)
    preset = "faster"
    _mult, _min = 8, 64  # vvenc fails on pictures under ~64x64 at low QP

    def available(self) -> tuple[bool, str]:
        return get_codec("vvc").available()

    def encoder_args(self, qp: int, gop: str, intra_period: int | None) -> list[str]:
        """Every libvvenc argument of a sequence, in one place."""
        period = check_gop(gop, intra_period)
        args = ["-c:v", "libvvenc", "-preset", self.preset, "-qp", str(qp), "-qpa", "0"]
        if gop == "intra":
            params = "IntraPeriod=1"
        elif gop == "ldp":
            params = f"PicReordering=0:DecodingRefreshType=0:GOPSize=8:IntraPeriod={period}"
        else:
            params = f"IntraPeriod={period}"
        return args + ["-vvenc-params", params]

    def _run(self, raw: bytes, w: int, h: int, n: int, qp: int, gop: str, intra_period: int | None) -> CodedSequence:
        ok, reason = self.available()
        if not ok:
            raise CodecUnavailableError(f"codec vvc is not available: {reason}")
        exe = vvc.find_ffmpeg()  # through the module: a test can simulate ffmpeg missing
        cmd = [exe, "-hide_banner", "-nostdin", "-loglevel", "error",
               "-f", "rawvideo", "-pix_fmt", "yuv420p10le", "-s", f"{w}x{h}", "-r", "10", "-i", "pipe:0",
               "-map", "0:v", *self.encoder_args(qp, gop, intra_period),
               "-f", "tee", "[f=vvc]pipe\\:1|[f=framecrc]pipe\\:2"]
        try:
            r = subprocess.run(cmd, input=raw, capture_output=True, timeout=TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise CodecUnavailableError(f"vvc: encoding took longer than {TIMEOUT_S} s") from None
        log = r.stderr.decode(errors="replace").splitlines()
        crc = [ln for ln in log if ln.startswith("0,")]
        if r.returncode != 0 or not r.stdout:
            errs = [ln for ln in log if ln.strip() and not ln.startswith(("0,", "#"))]
            raise CodecUnavailableError(f"vvc: ffmpeg encoding failed ({errs[-1][:200] if errs else r.returncode})")
        pts = [int(ln.split(",")[2]) for ln in crc]
        base = min(pts) if pts else 0
        return _measure(r.stdout, "vvc", [p - base for p in pts], n)

    def encode(self, frames: list[np.ndarray], bit_depth: int, quality, gop: str = "ldp",
               intra_period: int | None = None) -> CodedSequence:
        self.check_frames(frames, bit_depth)
        qp = self.check_quality(quality)
        parts = []
        for f in frames:
            y = _video.pad_edge(f, self._mult, self._min)
            chroma = np.full((2, y.shape[0] // 2, y.shape[1] // 2), 1 << (bit_depth - 1), dtype="<u2")
            parts.append(y.astype("<u2").tobytes() + chroma.tobytes())
        h, w = y.shape
        return self._run(b"".join(parts), w, h, len(frames), qp, gop, intra_period)

    def encode_rgb(self, frames: list[np.ndarray], quality, gop: str = "ldp",
                   intra_period: int | None = None) -> CodedSequence:
        qp = self.check_quality(quality)
        parts = []
        for rgb in frames:
            y, cb, cr = _video.rgb_to_yuv420(_video.pad_edge(rgb, self._mult, self._min), 10)
            parts.append(b"".join(p.astype("<u2").tobytes() for p in (y, cb, cr)))
        h, w = y.shape
        return self._run(b"".join(parts), w, h, len(frames), qp, gop, intra_period)

    def _decode_frames(self, data: bytes, n: int, w: int, h: int):
        if not _video.av_has("vvc", "r"):
            raise CodecUnavailableError("vvc: this PyAV build has no VVC decoder")
        out = _decode_pictures(data, "vvc", n)
        planes = []
        for vf in out:
            if vf.format.name != "yuv420p10le" or (vf.height, vf.width) != (h, w):
                raise BitstreamError(f"vvc: picture is {vf.format.name} {vf.width}x{vf.height}, expected {w}x{h}")
            planes.append(tuple(_video.plane(vf, i, "<u2").astype(np.uint16) for i in range(3)))
        return planes

    def decode(self, data: bytes, bit_depth: int, shape: tuple[int, int], n: int) -> list[np.ndarray]:
        h, w = shape
        ph, pw = _video.padded_size(h, self._mult, self._min), _video.padded_size(w, self._mult, self._min)
        return [y[:h, :w].copy() for y, _, _ in self._decode_frames(data, n, pw, ph)]

    def decode_rgb(self, data: bytes, shape: tuple[int, int], n: int) -> list[np.ndarray]:
        h, w = shape
        ph, pw = _video.padded_size(h, self._mult, self._min), _video.padded_size(w, self._mult, self._min)
        return [_video.yuv420_to_rgb(y, cb, cr, 10)[:h, :w] for y, cb, cr in self._decode_frames(data, n, pw, ph)]


SEQUENCE_CODERS = {"hevc": HEVCSequenceCoder(), "vvc": VVCSequenceCoder()}


def sequence_coder(name: str) -> SequenceCoder:
    if name not in SEQUENCE_CODERS:
        raise ParameterError(f"{name} is not a video codec; sequence coding (--gop ldp/ra) needs "
                             f"{' or '.join(SEQUENCE_CODERS)}")
    return SEQUENCE_CODERS[name]
