"""Still-image codecs through Pillow: JPEG, WebP, AVIF, PNG, JPEG 2000.

Feature frames are coded as single-channel images (mode ``L`` for 8-bit, ``I;16`` for
deeper samples); the full-input paradigm codes the RGB image natively. Each decoder
checks the picture size in the header *before* decoding pixels (no decompression bombs).

Quality parameters (see each class' ``quality``):

- ``jpeg``: libjpeg quality 1..95, higher = more bits. 8-bit. Huffman tables optimised.
- ``webp``: libwebp quality 0..100, higher = more bits (lossy; gray goes through
  WebP's YUV 4:2:0 with flat chroma). 8-bit, at most 16383 pixels per side.
- ``avif``: libavif quality 0..100, higher = more bits; encoder speed 8 (of 0..10;
  speed 6 costs 2-3x the time for ~2 % fewer bits). 8-bit (Pillow would cut 16-bit to 8).
- ``png``: lossless; quality = zlib compression level 0..9, a *higher* level gives
  *fewer* bits (``higher_is_better=False``) for more time. 8-bit as ``L``; 10/12/16-bit
  samples stored as 16-bit ``I;16`` (exact).
- ``jpeg2000``: OpenJPEG, raw codestream (no JP2 boxes). Quality = target **bits per
  pixel** 0.01..24 (rate-controlled, higher = more bits); a target at or above the raw
  rate (the bit depth for frames, 24 for RGB images) codes losslessly with the reversible
  5/3 wavelet. 8..16-bit frames (stored with 8- or 16-bit precision).
"""

from __future__ import annotations

import io

import numpy as np

from ..errors import BitstreamError, ParameterError
from ..registry import CODECS
from .base import FrameCodec, QualitySpec


def _pil():
    """Import Pillow (a separate function so tests can simulate it missing)."""
    import PIL.features  # noqa: PLC0415  why: here, so tests can simulate Pillow missing
    from PIL import Image  # noqa: PLC0415  why: as above

    return Image, PIL.features


class PillowCodec(FrameCodec):
    """Base for Pillow codecs: subclasses set ``pil_format``/``feature`` and save options."""

    pil_format = ""
    feature: str | None = None  # PIL.features name to check, None = always built in
    trailer = b""  # bytes every complete stream ends with (a cheap truncation check)
    max_side = 65500
    pip_hint = "pip install -U pillow"

    def __init__(self) -> None:
        self._avail: tuple[bool, str] | None = None

    def available(self) -> tuple[bool, str]:
        if self._avail is None:
            try:
                _, features = _pil()
            except ImportError:
                self._avail = (False, "Pillow is not installed (pip install pillow)")
            else:
                if self.feature is None or features.check(self.feature):
                    self._avail = (True, "")
                else:
                    self._avail = (False, f"this Pillow has no {self.pil_format} support ({self.pip_hint})")
        return self._avail

    # -- hooks ----------------------------------------------------------------------------------
    def save_options(self, quality: float, bit_depth: int, image: bool) -> dict:
        raise NotImplementedError

    def _check_size(self, h: int, w: int) -> None:
        if max(h, w) > self.max_side:
            raise ParameterError(f"{self.name}: {w}x{h} exceeds the {self.max_side}-pixel limit per side")

    def _save(self, img, options: dict) -> bytes:
        bio = io.BytesIO()
        img.save(bio, format=self.pil_format, **options)
        return bio.getvalue()

    def _open(self, data: bytes, shape: tuple[int, int]):
        Image, _ = _pil()
        if not data.endswith(self.trailer):
            raise BitstreamError(f"{self.name}: bitstream truncated (no end marker)")
        img = Image.open(io.BytesIO(data), formats=[self.pil_format])
        h, w = shape
        if img.size != (w, h):
            raise BitstreamError(f"{self.name}: picture is {img.size[0]}x{img.size[1]}, expected {w}x{h}")
        img.load()
        return img

    # -- feature frames ---------------------------------------------------------------------------
    def _encode(self, frame: np.ndarray, bit_depth: int, quality: float) -> bytes:
        Image, _ = _pil()
        self._check_size(*frame.shape)
        if bit_depth == 8:
            img = Image.fromarray(frame.astype(np.uint8))
        else:
            img = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint16))  # mode I;16
        return self._save(img, self.save_options(quality, bit_depth, image=False))

    def _decode(self, data: bytes, bit_depth: int, shape: tuple[int, int]) -> np.ndarray:
        img = self._open(data, shape)
        if img.mode not in ("L", "I;16", "I"):
            img = img.convert("L")
        a = np.asarray(img)
        if img.mode == "L" and bit_depth > 8:
            raise BitstreamError(f"{self.name}: stream holds 8-bit samples, expected {bit_depth}-bit")
        return np.clip(a, 0, (1 << bit_depth) - 1).astype(np.uint16)

    # -- full-input paradigm ----------------------------------------------------------------------
    def _encode_image(self, rgb: np.ndarray, quality: float) -> bytes:
        Image, _ = _pil()
        self._check_size(*rgb.shape[:2])
        return self._save(Image.fromarray(rgb), self.save_options(quality, 8, image=True))

    def _decode_image(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        img = self._open(data, shape)
        return np.asarray(img.convert("RGB"))


@CODECS.register("jpeg")
class JPEGCodec(PillowCodec):
    name = "jpeg"
    description = "JPEG (libjpeg via Pillow), 8-bit, optimised Huffman tables"
    quality = QualitySpec(1, 95, higher_is_better=True, default=75, meaning="JPEG quality")
    bit_depths = (8,)
    pil_format = "JPEG"
    feature = "jpg"
    trailer = b"\xff\xd9"  # EOI

    def save_options(self, quality, bit_depth, image):
        return {"quality": int(quality), "optimize": True}


@CODECS.register("webp")
class WebPCodec(PillowCodec):
    name = "webp"
    description = "WebP lossy (libwebp via Pillow), 8-bit"
    quality = QualitySpec(0, 100, higher_is_better=True, default=75, meaning="WebP quality")
    bit_depths = (8,)
    pil_format = "WEBP"
    feature = "webp"
    max_side = 16383

    def save_options(self, quality, bit_depth, image):
        return {"quality": int(quality), "method": 4}


@CODECS.register("avif")
class AVIFCodec(PillowCodec):
    name = "avif"
    description = "AVIF (libavif/AV1 intra via Pillow), 8-bit, speed 8"
    quality = QualitySpec(0, 100, higher_is_better=True, default=75, meaning="AVIF quality")
    bit_depths = (8,)
    pil_format = "AVIF"
    feature = "avif"
    speed = 8

    def save_options(self, quality, bit_depth, image):
        return {"quality": int(quality), "speed": self.speed}


@CODECS.register("png")
class PNGCodec(PillowCodec):
    name = "png"
    description = "PNG (zlib via Pillow), lossless, 8-bit or 16-bit samples"
    quality = QualitySpec(
        0, 9, higher_is_better=False, default=6, meaning="zlib compression level, lossless"
    )
    bit_depths = (8, 10, 12, 16)
    lossless = True
    pil_format = "PNG"
    feature = "zlib"
    trailer = b"IEND\xaeB`\x82"

    def save_options(self, quality, bit_depth, image):
        return {"compress_level": int(quality)}


@CODECS.register("jpeg2000")
class JPEG2000Codec(PillowCodec):
    name = "jpeg2000"
    description = "JPEG 2000 (OpenJPEG via Pillow), raw codestream, rate-controlled, 8..16-bit"
    quality = QualitySpec(
        0.01, 24, higher_is_better=True, default=1.0, integer=False,
        meaning="target bits per pixel (lossless at >= raw bpp)",
    )  # fmt: skip
    bit_depths = (8, 10, 12, 16)
    pil_format = "JPEG2000"
    feature = "jpg_2000"
    trailer = b"\xff\xd9"  # EOC

    def save_options(self, quality, bit_depth, image):
        raw_bpp = 24 if image else bit_depth
        opts = {"no_jp2": True}
        if quality >= raw_bpp:
            return {**opts, "irreversible": False}  # reversible 5/3, no rate target: lossless
        # Pillow stores L with 8-bit and I;16 with 16-bit precision; rates are ratios to that.
        precision = 24 if image else (8 if bit_depth == 8 else 16)
        return {**opts, "irreversible": True, "quality_mode": "rates", "quality_layers": [precision / quality]}
