"""Clips made at test time: a bundled CC0 photo filmed by a virtual camera (slow pan and
zoom, as a handheld camera would), and broken clips for the error paths."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples"


def camera_frames(n: int = 12, size: tuple[int, int] = (320, 240), image: str = "astronaut.jpg",
                  step: float = 3.0) -> list[np.ndarray]:
    """``n`` RGB frames of ``size`` (w, h): a crop window panning right and zooming in slowly."""
    src = Image.open(SAMPLES / image).convert("RGB")
    w, h = size
    sw, sh = src.size
    frames = []
    for i in range(n):
        scale = 1.0 - 0.01 * i  # zoom in 1 % per frame
        cw, ch = min(sw, sh * w / h) * 0.9 * scale, min(sh, sw * h / w) * 0.9 * scale
        x0 = min(sw - cw, 4 + step * i)
        y0 = (sh - ch) / 2
        crop = src.resize((w, h), Image.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
        frames.append(np.asarray(crop))
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10, codec: str = "libx264",
                rotation: int | None = None, pix_fmt: str = "yuv420p") -> Path:
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if codec == "libx264":
            s.options = {"preset": "ultrafast", "crf": "20"}
        if rotation is not None:
            s.set_display_rotation(rotation)
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    return path


def write_audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w", format="wav") as out:
        s = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for p in s.encode(frame):
            out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    return path


def truncate(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def write_zero_frames(path: Path) -> Path:
    """A Y4M clip: a valid header (a 64x48 video stream) and no frame."""
    path.write_bytes(b"YUV4MPEG2 W64 H48 F10:1 Ip A1:1 C420jpeg\n")
    return path
