"""JPEG XL through ``imagecodecs`` (libjxl), bare codestream (no ISO-BMFF container).

Frames of 8, 10, 12 or 16 bits are coded as gray images declaring their true bit depth
(``bitspersample``), so a 10-bit frame is not treated as a dark 16-bit picture.

Quality is libjxl's quality 0..100 (higher = more bits), mapped by libjxl to a
Butteraugli distance (90 -> distance 1.0, the cjxl default; 30..100 -> 0.1 + (100-q)*0.09).
100 means mathematically **lossless** (modular mode). Near 100, lossy distances can
cost more bits than lossless: bits are monotone in quality up to ~95.
"""

from __future__ import annotations

import numpy as np

from ..errors import BitstreamError, ParameterError
from ..registry import CODECS
from .base import FrameCodec, QualitySpec


def load_imagecodecs():
    """Import imagecodecs (a separate function so tests can simulate it missing)."""
    import imagecodecs  # noqa: PLC0415  why: heavy; loaded when JPEG XL first runs

    return imagecodecs


@CODECS.register("jpegxl")
class JPEGXLCodec(FrameCodec):
    name = "jpegxl"
    description = "JPEG XL (libjxl via imagecodecs), 8..16-bit, quality 100 = lossless"
    quality = QualitySpec(0, 100, higher_is_better=True, default=90, meaning="JPEG XL quality (100 = lossless)")
    bit_depths = (8, 10, 12, 16)
    effort = 7  # libjxl default
    max_side = 65535

    def __init__(self) -> None:
        self._avail: tuple[bool, str] | None = None

    def available(self) -> tuple[bool, str]:
        if self._avail is None:
            try:
                ic = load_imagecodecs()
            except ImportError:
                self._avail = (False, "imagecodecs is not installed (pip install imagecodecs)")
            else:
                if getattr(getattr(ic, "JPEGXL", None), "available", False):
                    self._avail = (True, "")
                else:
                    self._avail = (False, "this imagecodecs has no JPEG XL (pip install -U imagecodecs)")
        return self._avail

    def encoder_kwargs(self, quality: float, bit_depth: int) -> dict:
        kw = {"effort": self.effort, "bitspersample": bit_depth, "usecontainer": False}
        if quality >= 100:
            return {**kw, "lossless": True}
        return {**kw, "level": int(quality)}

    def _check_size(self, h: int, w: int) -> None:
        if max(h, w) > self.max_side:
            raise ParameterError(f"{self.name}: {w}x{h} exceeds the {self.max_side}-pixel limit per side")

    def _encode(self, frame: np.ndarray, bit_depth: int, quality: float) -> bytes:
        self._check_size(*frame.shape)
        a = frame.astype(np.uint8) if bit_depth == 8 else np.ascontiguousarray(frame, dtype=np.uint16)
        return load_imagecodecs().jpegxl_encode(a, **self.encoder_kwargs(quality, bit_depth))

    def _decode_array(self, data: bytes) -> np.ndarray:
        ic = load_imagecodecs()
        if not ic.jpegxl_check(data):
            raise BitstreamError(f"{self.name}: not a JPEG XL codestream")
        return np.asarray(ic.jpegxl_decode(data))

    def _decode(self, data: bytes, bit_depth: int, shape: tuple[int, int]) -> np.ndarray:
        a = self._decode_array(data)
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[..., 0]
        if a.shape != tuple(shape):
            raise BitstreamError(f"{self.name}: decoded {a.shape}, expected a {shape[1]}x{shape[0]} gray frame")
        if a.dtype != np.uint8 and bit_depth == 8 or a.dtype == np.uint8 and bit_depth > 8:
            raise BitstreamError(f"{self.name}: stream sample type {a.dtype} does not match {bit_depth}-bit frames")
        return np.clip(a, 0, (1 << bit_depth) - 1).astype(np.uint16)

    def _encode_image(self, rgb: np.ndarray, quality: float) -> bytes:
        self._check_size(*rgb.shape[:2])
        return load_imagecodecs().jpegxl_encode(np.ascontiguousarray(rgb), **self.encoder_kwargs(quality, 8))

    def _decode_image(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        a = self._decode_array(data)
        if a.shape != (*shape, 3) or a.dtype != np.uint8:
            h, w = shape
            raise BitstreamError(f"{self.name}: decoded {a.dtype} {a.shape}, expected an 8-bit RGB {w}x{h}")
        return a
