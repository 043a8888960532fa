"""Unlabelled training images for distillation (connectors need no labels, only the teacher).

A source is an image file, a folder of image files (not recursive), or a video file whose
every ``frame_step``-th frame is used. Images smaller than ``min_side`` pixels on their
short side (logos, icons) are skipped. Sources are read in the order given, files of a
folder sorted by name, so a seed gives the same bank.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
from PIL import Image

from ..errors import InputError, ParameterError
from ..imageio import load_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm")


def _video_frames(path: Path, frame_step: int) -> Iterator[tuple[str, Image.Image]]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"cannot read video {path.name}")
    try:
        k = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if k % frame_step == 0:
                yield f"{path.name}#{k}", Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1]))
            k += 1
    finally:
        cap.release()


def unlabelled_images(sources: Sequence[str | Path], frame_step: int = 10,
                      min_side: int = 96) -> Iterator[tuple[str, Image.Image]]:
    """(name, RGB image) for every usable image of ``sources`` (see the module docstring)."""
    if frame_step < 1:
        raise ParameterError(f"--frame-step must be >= 1, got {frame_step}")
    for source in sources:
        path = Path(source)
        if not path.exists():
            raise InputError(f"unlabelled source not found: {source}")
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES) \
            if path.is_dir() else [path]
        for f in files:
            suffix = f.suffix.lower()
            if suffix in VIDEO_SUFFIXES:
                items = _video_frames(f, frame_step)
            elif suffix in IMAGE_SUFFIXES:
                items = iter([(f.name, load_image(f))])
            else:
                raise InputError(f"{f.name}: not an image or video file ({', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)})")
            for name, image in items:
                image = image.convert("RGB")
                if min(image.size) >= min_side:
                    yield name, image
