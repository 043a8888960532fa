"""The codec stage: a packed 2-D frame of unsigned integers <-> bytes.

A codec codes one frame (a 2-D ``uint16`` array holding ``bit_depth``-bit samples)
into a self-contained bitstream and back. The reported rate of anything in FCM Studio
is ``len(bytes) * 8`` of what a decoder reads: never an estimate.

Each codec declares its quality parameter: the range, whether a higher value means
more bits (``higher_is_better``) and a default. A codec whose package or binary is
missing reports ``available() == (False, reason)`` instead of failing at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ParameterError


@dataclass(frozen=True)
class QualitySpec:
    lo: float
    hi: float
    higher_is_better: bool  # True: a higher value gives more bits (and less distortion)
    default: float
    integer: bool = True
    meaning: str = ""  # e.g. "JPEG quality", "HEVC QP"


class FrameCodec:
    """Interface for every codec. Subclasses set the class attributes and implement
    ``_encode``/``_decode``; the base class validates inputs."""

    name: str = ""
    description: str = ""
    quality: QualitySpec
    bit_depths: tuple[int, ...] = (8,)  # sample bit depths the codec accepts
    lossless: bool = False  # True when decode(encode(f)) == f at every quality

    # -- availability -------------------------------------------------------------------
    def available(self) -> tuple[bool, str]:
        """(True, "") when usable here, else (False, a reason a user can act on)."""
        return True, ""

    # -- coding -------------------------------------------------------------------------
    def encode(self, frame: np.ndarray, bit_depth: int, quality: float) -> bytes:
        self.check_frame(frame, bit_depth)
        q = self.check_quality(quality)
        return self._encode(frame, bit_depth, q)

    def decode(self, data: bytes, bit_depth: int, shape: tuple[int, int]) -> np.ndarray:
        """bytes -> (H, W) uint16 frame. ``shape`` and ``bit_depth`` come from the
        container's side information (a codec may pad internally and crops back).
        Raises BitstreamError for anything undecodable."""
        return self._decode(data, bit_depth, shape)

    def _encode(self, frame: np.ndarray, bit_depth: int, quality: float) -> bytes:
        raise NotImplementedError

    def _decode(self, data: bytes, bit_depth: int, shape: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError

    # -- full-input paradigm: the codec on the RGB image itself ---------------------------
    supports_images: bool = True  # False for codecs made for features only

    def encode_image(self, rgb: np.ndarray, quality: float) -> bytes:
        """(H, W, 3) uint8 RGB image -> bytes, for the full-input paradigm."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ParameterError(f"{self.name}: expected an (H, W, 3) uint8 image, got {rgb.dtype} {rgb.shape}")
        if not self.supports_images:
            raise ParameterError(f"{self.name} codes feature frames only, not images (full-input)")
        return self._encode_image(rgb, self.check_quality(quality))

    def decode_image(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        """bytes -> (H, W, 3) uint8 RGB. Raises BitstreamError when undecodable."""
        return self._decode_image(data, shape)

    def _encode_image(self, rgb: np.ndarray, quality: float) -> bytes:
        raise NotImplementedError

    def _decode_image(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError

    # -- validation ---------------------------------------------------------------------
    def default_bit_depth(self) -> int:
        return max(self.bit_depths)

    def check_quality(self, quality: float | None) -> float:
        spec = self.quality
        if quality is None:
            return spec.default
        try:
            q = float(quality)
        except (TypeError, ValueError):
            raise ParameterError(f"{self.name}: quality must be a number, got {quality!r}") from None
        if not (spec.lo <= q <= spec.hi) or q != q:
            raise ParameterError(
                f"{self.name}: quality {quality} out of range [{spec.lo:g}, {spec.hi:g}] ({spec.meaning})"
            )
        if spec.integer:
            if q != int(q):
                raise ParameterError(f"{self.name}: quality must be a whole number, got {quality}")
            q = int(q)
        return q

    def check_frame(self, frame: np.ndarray, bit_depth: int) -> None:
        if bit_depth not in self.bit_depths:
            raise ParameterError(
                f"{self.name} codes {', '.join(map(str, self.bit_depths))}-bit frames, not {bit_depth}-bit"
            )
        if frame.ndim != 2 or frame.dtype != np.uint16:
            raise ParameterError(f"{self.name}: expected a 2-D uint16 frame, got {frame.dtype} {frame.shape}")

    def to_json(self) -> dict[str, Any]:
        ok, reason = self.available()
        spec = self.quality
        return {
            "name": self.name,
            "available": ok,
            "reason": reason,
            "quality_range": [spec.lo, spec.hi],
            "higher_is_better": spec.higher_is_better,
            "default_quality": spec.default,
            "quality_meaning": spec.meaning,
            "bit_depths": list(self.bit_depths),
            "lossless": self.lossless,
            "supports_images": self.supports_images,
            "description": self.description,
        }
