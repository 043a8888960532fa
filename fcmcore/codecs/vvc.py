"""VVC (H.266) intra coding: libvvenc through the static ffmpeg of ``imageio-ffmpeg``.

Encoding spawns that ffmpeg (argument list, pipes, no temp files, 60 s timeout);
the binary is ``imageio_ffmpeg.get_ffmpeg_exe()``, which honours ``IMAGEIO_FFMPEG_EXE``.
Decoding runs in-process with PyAV's native VVC decoder when PyAV is installed, else
with the same ffmpeg (``-xerror``: a damaged stream is an error, not a concealed picture).

libvvenc takes only ``yuv420p10le``. A 10-bit feature frame is sent as that pixel
format built *by us*: luma = the frame, both chroma planes flat at 512, piped as
``rawvideo``. No ``-vf format=`` conversion is involved, so the full/limited range trap
(gray10 0..1023 silently mapped to 64..940 and back) cannot happen: decoding takes
the luma plane as is (``tests`` check that 0 and 1023 survive). Frames are padded by
edge replication to a multiple of 8 and at least 64 per side (vvenc fails on
smaller pictures at low QP), and cropped back.

Feature frames are coded **4:0:0** (``ChromaFormatIDC=400``: vvenc drops the flat chroma
planes ffmpeg makes us send, the stream holds ``gray10le`` pictures, as x265's monochrome
HEVC streams do); streams coded 4:2:0 by earlier versions still decode (luma taken).

Quality is the **slice QP** (2..63, lower = more bits): ``IntraQPOffset=0`` stops
vvenc coding intra slices at QP-3, and ``-qpa 0`` turns off perceptual QP adaptation.
vvenc fails on every picture below QP 2, and with preset ``faster`` at QP 2 on some
(5 of the 96 coco96 feature frames at ``expanded_conv_9``, "Generic error in an external
library", no message from vvenc); presets ``fast`` and ``medium`` code them.

Presets of equal intent to x265's (see docs/vvc-vs-hevc.md): ``vvc`` runs vvenc ``fast``
(like x265 ``medium``: the everyday setting), ``vvc-slow`` runs vvenc ``medium``
(like x265 ``slow``, ``hevc-slow``). Every encoder argument is in
:meth:`VVCCodec.encoder_args`. The full-input paradigm codes RGB as 10-bit full-range
BT.601 YCbCr 4:2:0 (converted in numpy).
"""

from __future__ import annotations

import subprocess

import numpy as np

from ..errors import BitstreamError, CodecUnavailableError, ParameterError
from . import _video
from ..registry import CODECS
from .base import FrameCodec, QualitySpec

TIMEOUT_S = 60
_MULT, _MIN = 8, 64  # vvenc fails on pictures under ~64x64 at low QP


def find_ffmpeg() -> str | None:
    """Path of imageio-ffmpeg's ffmpeg, or None (a function so tests can replace it)."""
    try:
        import imageio_ffmpeg  # noqa: PLC0415  why: only to locate ffmpeg when VVC runs

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:
        return None


def _run(cmd: list[str], data: bytes, what: str, error=CodecUnavailableError) -> bytes:
    try:
        r = subprocess.run(cmd, input=data, capture_output=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise error(f"vvc: ffmpeg {what} took longer than {TIMEOUT_S} s") from None
    except OSError as e:
        raise CodecUnavailableError(f"vvc: cannot run ffmpeg ({e})") from None
    if r.returncode != 0:
        lines = [ln for ln in r.stderr.decode(errors="replace").splitlines() if ln.strip()]
        raise error(f"vvc: ffmpeg {what} failed ({lines[-1][:200] if lines else f'exit {r.returncode}'})")
    return r.stdout


def _flat_chroma(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    c = np.full((h // 2, w // 2), 512, dtype=np.uint16)
    return c, c.copy()


@CODECS.register("vvc")
class VVCCodec(FrameCodec):
    name = "vvc"
    description = "VVC intra (libvvenc preset fast via imageio-ffmpeg's ffmpeg), 10-bit 4:0:0, QP = slice QP"
    # vvenc fails below QP 2 on every picture ("Generic error in an external library")
    quality = QualitySpec(2, 63, higher_is_better=False, default=32, integer=True,
                          meaning="VVC slice QP (vvenc fails below 2)")
    bit_depths = (10,)
    lossless = False
    preset = "fast"  # like x265 medium; "faster" fails at QP 2 on some frames, medium is ~3x slower
    monochrome_features = True  # feature frames coded 4:0:0
    # A 4:0:0 stream cut by a few bytes at its end decodes concealed (libavcodec's VVC decoder
    # reports nothing; with 4:2:0 the cut fell in chroma and failed). As for HEVC: the
    # container's length fields catch truncation in transit.
    detects_truncation = False
    max_side = 8192

    def __init__(self) -> None:
        self._avail: tuple[bool, str] | None = None

    def available(self) -> tuple[bool, str]:
        if self._avail is None:
            exe = find_ffmpeg()
            if exe is None:
                self._avail = (False, "no ffmpeg with libvvenc (pip install imageio-ffmpeg)")
            else:
                try:
                    out = subprocess.run(
                        [exe, "-hide_banner", "-encoders"], capture_output=True, timeout=TIMEOUT_S, check=False
                    ).stdout.decode(errors="replace")
                except (OSError, subprocess.TimeoutExpired) as e:
                    self._avail = (False, f"cannot run {exe} ({e})")
                else:
                    if "libvvenc" in out:
                        self._avail = (True, "")
                    else:
                        self._avail = (False, f"{exe} has no libvvenc encoder (pip install -U imageio-ffmpeg)")
        return self._avail

    # -- the one place where encoder settings live ----------------------------------------------
    def encoder_args(self, qp: int, monochrome: bool = False) -> list[str]:
        params = "IntraQPOffset=0"  # slice QP == qp (default codes intra at qp-3)
        if monochrome:
            params += ":ChromaFormatIDC=400"  # code luma only (ffmpeg's libvvenc takes only 4:2:0 input)
        return [
            "-c:v", "libvvenc",
            "-preset", self.preset,
            "-qp", str(qp),
            "-qpa", "0",  # no perceptual QP adaptation
            "-vvenc-params", params,
        ]  # fmt: skip

    def _encode_yuv(self, raw: bytes, w: int, h: int, qp: int, monochrome: bool = False) -> bytes:
        exe = find_ffmpeg()
        if exe is None:
            raise CodecUnavailableError("vvc: ffmpeg not found (pip install imageio-ffmpeg)")
        cmd = [
            exe, "-hide_banner", "-nostdin", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "yuv420p10le", "-s", f"{w}x{h}", "-i", "pipe:0",
            "-frames:v", "1", *self.encoder_args(qp, monochrome), "-f", "vvc", "pipe:1",
        ]  # fmt: skip
        out = _run(cmd, raw, f"encoding at QP {qp} ({self.preset} preset, {w}x{h})")
        if not out:
            raise CodecUnavailableError("vvc: ffmpeg produced no bitstream")
        return out

    def _decode_yuv(self, data: bytes, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> Y (h, w), Cb, Cr (h/2, w/2) uint16 of the padded picture, exactly as coded
        (a 4:0:0 picture decodes with flat chroma)."""
        try:
            _video.load_av()
            in_process = _video.av_has("vvc", "r")
        except ImportError:
            in_process = False
        if in_process:
            vf = _video.av_decode_one(data, "vvc")
            if vf.format.name not in ("yuv420p10le", "gray10le"):
                raise BitstreamError(f"vvc: stream holds {vf.format.name} pictures, expected yuv420p10le or gray10le")
            if (vf.height, vf.width) != (h, w):
                raise BitstreamError(f"vvc: picture is {vf.width}x{vf.height}, expected {w}x{h}")
            y = _video.plane(vf, 0, "<u2").astype(np.uint16)
            if vf.format.name == "gray10le":
                return y, *_flat_chroma(h, w)
            return y, *(_video.plane(vf, i, "<u2").astype(np.uint16) for i in (1, 2))
        exe = find_ffmpeg()
        if exe is None:
            raise CodecUnavailableError("vvc: no decoder (pip install av, or imageio-ffmpeg)")
        cmd = [
            exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-xerror", "-f", "vvc", "-i", "pipe:0",
            "-frames:v", "1", "-f", "rawvideo", "pipe:1",  # the stream's own pixel format: no conversion
        ]  # fmt: skip
        out = _run(cmd, data, "decoding", error=BitstreamError)
        a = np.frombuffer(out, "<u2").astype(np.uint16)
        if len(out) == h * w * 2:  # gray10le (4:0:0)
            return a.reshape(h, w), *_flat_chroma(h, w)
        if len(out) != h * w * 3:  # 1.5 samples per pixel, 2 bytes each
            raise BitstreamError(f"vvc: decoded {len(out)} bytes, expected a {w}x{h} picture")
        n, m = h * w, (h // 2) * (w // 2)
        return a[:n].reshape(h, w), a[n : n + m].reshape(h // 2, w // 2), a[n + m :].reshape(h // 2, w // 2)

    def _check_size(self, h: int, w: int) -> None:
        if max(h, w) > self.max_side:
            raise ParameterError(f"{self.name}: {w}x{h} exceeds the {self.max_side}-pixel limit per side")

    # -- feature frames ---------------------------------------------------------------------------
    def _encode(self, frame: np.ndarray, bit_depth: int, quality: float) -> bytes:
        self._check_size(*frame.shape)
        y = _video.pad_edge(frame, _MULT, _MIN)
        h, w = y.shape
        chroma = np.full((2, h // 2, w // 2), 1 << (bit_depth - 1), dtype="<u2")
        return self._encode_yuv(y.astype("<u2").tobytes() + chroma.tobytes(), w, h, int(quality),
                                monochrome=self.monochrome_features)

    def _decode(self, data: bytes, bit_depth: int, shape: tuple[int, int]) -> np.ndarray:
        h, w = shape
        y, _, _ = self._decode_yuv(data, _video.padded_size(w, _MULT, _MIN), _video.padded_size(h, _MULT, _MIN))
        return y[:h, :w].copy()

    # -- full-input paradigm ----------------------------------------------------------------------
    def _encode_image(self, rgb: np.ndarray, quality: float) -> bytes:
        self._check_size(*rgb.shape[:2])
        y, cb, cr = _video.rgb_to_yuv420(_video.pad_edge(rgb, _MULT, _MIN), 10)
        h, w = y.shape
        raw = b"".join(p.astype("<u2").tobytes() for p in (y, cb, cr))
        return self._encode_yuv(raw, w, h, int(quality))

    def _decode_image(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        h, w = shape
        y, cb, cr = self._decode_yuv(data, _video.padded_size(w, _MULT, _MIN), _video.padded_size(h, _MULT, _MIN))
        return _video.yuv420_to_rgb(y, cb, cr, 10)[:h, :w]


@CODECS.register("vvc-slow")
class VVCSlowCodec(VVCCodec):
    """vvenc preset medium: the like-for-like partner of x265 preset slow (``hevc-slow``)."""

    name = "vvc-slow"
    description = "VVC intra (libvvenc preset medium, ~3x slower than vvc), 10-bit 4:0:0, QP = slice QP"
    preset = "medium"
