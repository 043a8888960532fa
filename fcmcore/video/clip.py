"""Reading the clips a user hands us, safely (PyAV).

``probe_clip(path)`` reads the container header only: frame rate, declared frame count,
size, rotation. ``read_clip(path, start=, frames=, stride=)`` decodes the frames asked for
as (H, W, 3) uint8 RGB arrays, rotation applied (the display matrix: a phone clip shot
upright comes out upright), and refuses before decoding anything it would not finish:

* more than ``MAX_FRAMES`` frames, or more than ``MAX_TOTAL_PIXELS`` decoded pixels in all;
* frames larger than ``MAX_FRAME_PIXELS`` (read from the stream header, before decoding);
* files above ``MAX_BYTES``.

Every bad clip (not a video, no video stream, truncated, zero frames, huge resolution)
raises ``InputError`` with one line. Truncation is seen two ways: the demuxer or decoder
fails part way (an error), or the clip ends well before the frame count its header
declares (more than ``TRUNCATION_SLACK`` short: declared counts of some containers are
estimates from the duration).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InputError, ParameterError

MAX_BYTES = 2 * 1024**3
MAX_FRAME_PIXELS = 4096 * 2304  # 4K UHD-ish; larger frames are refused before decoding
MAX_FRAMES = 3000
MAX_TOTAL_PIXELS = 1_500_000_000  # e.g. 3000 frames of 768x576, or 180 frames of 4K
TRUNCATION_SLACK = 0.1  # a clip may end up to 10 % (and 2 frames) short of its declared count
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv",
                  ".ogv", ".3gp", ".y4m", ".hevc", ".h264", ".265", ".264")


@dataclass(frozen=True)
class ClipInfo:
    """What the container header says (``frames`` is None when it does not say)."""

    path: str
    width: int  # as displayed (after rotation)
    height: int
    fps: float
    frames: int | None
    rotation: int  # degrees counter-clockwise applied to decoded frames (0, 90, 180, 270)
    codec: str
    duration_s: float | None

    def to_json(self) -> dict:
        return {"width": self.width, "height": self.height, "fps": round(self.fps, 4), "frames": self.frames,
                "rotation": self.rotation, "codec": self.codec, "duration_s": self.duration_s}


@dataclass
class Clip:
    """Decoded frames and where they came from."""

    info: ClipInfo
    frames: list[np.ndarray]  # (H, W, 3) uint8 RGB, in display order; empty when streamed
    indices: list[int]  # index of each frame in the source clip
    start: int
    stride: int

    @property
    def fps(self) -> float:
        """The rate of the frames *we* hand on: the clip's rate divided by the stride."""
        return self.info.fps / self.stride

    @property
    def width(self) -> int:
        return self.frames[0].shape[1] if self.frames else self.info.width

    @property
    def height(self) -> int:
        return self.frames[0].shape[0] if self.frames else self.info.height

    def __len__(self) -> int:
        return len(self.indices)


def _open(path: str | Path):
    import av  # why: PyAV is heavy; loaded when a clip is read or written

    p = Path(path)
    label = str(path)
    if not p.exists():
        raise InputError(f"{label}: no such file")
    if p.is_dir():
        raise InputError(f"{label}: is a folder, not a video clip")
    if not p.is_file():
        raise InputError(f"{label}: not a regular file")
    size = p.stat().st_size
    if size == 0:
        raise InputError(f"{label}: file is empty (0 bytes)")
    if size > MAX_BYTES:
        raise InputError(f"{label}: file is {size / 1e9:.1f} GB, larger than the {MAX_BYTES / 1e9:.0f} GB limit")
    try:
        container = av.open(str(p), "r")
    except av.error.FFmpegError as exc:
        raise InputError(f"{label}: not a readable video (not a video file, or truncated / corrupt: {_reason(exc)})") from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        container.close()
        raise InputError(f"{label}: has no video stream ({', '.join(kinds)})")
    return container


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).strip().splitlines()[0][:160] if str(text).strip() else type(exc).__name__


def _rotation(stream, first_frame=None) -> int:
    """Counter-clockwise degrees that make the frame upright (display matrix / 'rotate' tag)."""
    deg = None
    if first_frame is not None:
        deg = getattr(first_frame, "rotation", None)
    if not deg:
        tag = stream.metadata.get("rotate") if stream.metadata else None
        if tag:
            try:
                deg = -int(float(tag))  # the tag is clockwise
            except ValueError:
                deg = 0
    return int(round((deg or 0) / 90.0)) * 90 % 360


def _stream_info(path, container, stream, rotation: int) -> ClipInfo:
    cc = stream.codec_context
    w, h = int(cc.width or 0), int(cc.height or 0)
    if w <= 0 or h <= 0:
        raise InputError(f"{path}: video stream has no frame size (not a decodable video)")
    if w * h > MAX_FRAME_PIXELS:
        raise InputError(f"{path}: {w}x{h} frames ({w * h / 1e6:.1f} MP) exceed the "
                         f"{MAX_FRAME_PIXELS / 1e6:.1f} MP limit per frame")
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    if not (0 < fps < 1000):
        fps = 25.0  # no usable rate in the header: the usual default; reported as such
    frames = int(stream.frames) if stream.frames else None
    duration = None
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / 1e6
    if frames is None and duration:
        frames = int(round(duration * fps))
    if rotation in (90, 270):
        w, h = h, w
    return ClipInfo(str(path), w, h, fps, frames, rotation, cc.name, duration)


def probe_clip(path: str | Path) -> ClipInfo:
    """The clip's header facts, decoding at most one frame (for its rotation)."""
    import av  # why: PyAV is heavy; loaded when a clip is read or written

    container = _open(path)
    try:
        stream = container.streams.video[0]
        first = None
        try:
            for first in container.decode(stream):
                break
        except av.error.FFmpegError:
            first = None
        return _stream_info(path, container, stream, _rotation(stream, first))
    finally:
        container.close()


def _to_rgb(frame, rotation: int) -> np.ndarray:
    rgb = frame.to_ndarray(format="rgb24")
    if rotation:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=rotation // 90))
    return rgb


def iter_clip(path: str | Path, *, start: int = 0, frames: int | None = None, stride: int = 1,
              max_frames: int = MAX_FRAMES, max_total_pixels: int = MAX_TOTAL_PIXELS
              ) -> Iterator[tuple[ClipInfo, int, np.ndarray]]:
    """Yield (info, source index, RGB frame) for frames ``start``, ``start + stride``, ...
    (``frames`` of them, default: to the end). Raises InputError / ParameterError."""
    import av  # why: PyAV is heavy; loaded when a clip is read or written

    if start < 0:
        raise ParameterError(f"--start must be >= 0, got {start}")
    if stride < 1:
        raise ParameterError(f"--stride must be >= 1, got {stride}")
    if frames is not None and frames < 1:
        raise ParameterError(f"--frames must be >= 1, got {frames}")
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        # Header facts first: a huge frame size or frame count is refused before decoding.
        info = _stream_info(path, container, stream, 0)
        if start and info.frames is not None and start >= info.frames:
            raise ParameterError(f"--start {start} is beyond the clip's {info.frames} frames")
        expected = _expected_count(info, start, stride, frames)
        if expected is not None and expected > max_frames:
            raise InputError(f"{path}: {expected} frames asked for, more than the {max_frames} "
                             "frame limit (use --frames / --stride)")
        if expected is not None and expected * info.width * info.height > max_total_pixels:
            raise InputError(f"{path}: {expected} frames of {info.width}x{info.height} exceed the "
                             f"{max_total_pixels / 1e9:.1f} G decoded-pixel limit (use --frames / --stride)")
        index = -1
        taken = 0
        try:
            for frame in container.decode(stream):
                index += 1
                if index == 0:
                    rotation = _rotation(stream, frame)
                    if rotation:
                        info = _stream_info(path, container, stream, rotation)
                if index < start or (index - start) % stride:
                    continue
                if frame.width * frame.height > MAX_FRAME_PIXELS:  # size changed mid-stream
                    raise InputError(f"{path}: frame {index} is {frame.width}x{frame.height}, over the limit")
                taken += 1
                if taken > max_frames or taken * info.width * info.height > max_total_pixels:
                    raise InputError(f"{path}: more than the {max_frames}-frame / "
                                     f"{max_total_pixels / 1e9:.1f} G-pixel decoding limit (use --frames / --stride)")
                yield info, index, _to_rgb(frame, info.rotation)
                if frames is not None and taken >= frames:
                    return
        except av.error.FFmpegError as exc:
            where = f"after frame {index}" if index >= 0 else "before its first frame"
            raise InputError(f"{path}: truncated or corrupt video ({where}: {_reason(exc)})") from None
        declared = info.frames
        if index < 0:
            if declared:
                raise InputError(f"{path}: truncated or corrupt video: its header declares {declared} frames, "
                                 "none decode")
            raise InputError(f"{path}: video stream has zero frames")
        if taken == 0:
            raise ParameterError(f"--start {start} is beyond the clip's {index + 1} frames")
        if declared and index + 1 < declared * (1 - TRUNCATION_SLACK) - 2:
            raise InputError(f"{path}: truncated video: its header declares {declared} frames, "
                             f"only {index + 1} decode")
    finally:
        container.close()


def _expected_count(info: ClipInfo, start: int, stride: int, want: int | None) -> int | None:
    if info.frames is None:
        return want
    available = max(0, -(-(info.frames - start) // stride))
    return available if want is None else min(want, available)


def read_clip(path: str | Path, *, start: int = 0, frames: int | None = None, stride: int = 1,
              max_frames: int = MAX_FRAMES, max_total_pixels: int = MAX_TOTAL_PIXELS) -> Clip:
    """Decode the frames asked for (see :func:`iter_clip`) into memory."""
    out, idx = [], []
    info = None
    for info, index, rgb in iter_clip(path, start=start, frames=frames, stride=stride,
                                      max_frames=max_frames, max_total_pixels=max_total_pixels):
        if out and rgb.shape != out[0].shape:
            raise InputError(f"{path}: frame size changes mid-clip ({out[0].shape[1]}x{out[0].shape[0]} -> "
                             f"{rgb.shape[1]}x{rgb.shape[0]} at frame {index}); not supported")
        out.append(rgb)
        idx.append(index)
    assert info is not None
    return Clip(info, out, idx, start, stride)


def write_clip(path: str | Path, frames: list[np.ndarray], fps: float, *, codec: str = "libx264",
               crf: int = 18) -> None:
    """Write RGB frames as a video file (annotated clips, test clips). H.264 in MP4 plays in
    browsers (``st.video``); sides are padded to even sizes for 4:2:0."""
    import av  # why: PyAV is heavy; loaded when a clip is read or written

    if not frames:
        raise ParameterError("no frames to write")
    h, w = frames[0].shape[:2]
    eh, ew = h + (h % 2), w + (w % 2)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height = ew, eh
        stream.pix_fmt = "yuv420p"
        if codec in ("libx264", "libx265"):
            stream.options = {"crf": str(crf), "preset": "veryfast"}
        for rgb in frames:
            if (eh, ew) != rgb.shape[:2]:
                rgb = np.pad(rgb, ((0, eh - h), (0, ew - w), (0, 0)), mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
