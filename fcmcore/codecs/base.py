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

from ..errors import BitstreamError, CodecUnavailableError, FCMError, ParameterError


@dataclass(frozen=True)
class QualitySpec:
    lo: float
    hi: float
    higher_is_better: bool  # True: a higher value gives more bits (and less distortion)
    default: float
    integer: bool = True
    meaning: str = ""  # e.g. "JPEG quality", "HEVC QP"


class Codec:
    """What every registered codec has, whatever it codes: a name, a quality parameter,
    availability, and the guards every decoder shares. ``FrameCodec`` (packed frames and,
    full-input, images) and the learned feature codecs (``fcmcore.learned``, which code
    tensors themselves and implement ``fcmcore.coding.FeatureCoder``) both derive from it."""

    name: str = ""
    description: str = ""
    quality: QualitySpec
    bit_depths: tuple[int, ...] = ()  # sample bit depths of packed frames; () = no packing
    lossless: bool = False  # True when decode(encode(f)) == f at every quality
    detects_truncation: bool = True  # False when a cut-short stream may decode (concealed)
    supports_images: bool = False  # True when it can code the RGB image (full-input paradigm)

    # -- availability -------------------------------------------------------------------
    def available(self) -> tuple[bool, str]:
        """(True, "") when usable here, else (False, a reason a user can act on)."""
        return True, ""

    def require_available(self) -> None:
        """Raise CodecUnavailableError (with the reason) when the codec cannot run here."""
        ok, reason = self.available()
        if not ok:
            raise CodecUnavailableError(f"codec {self.name} is not available: {reason}")

    # -- validation ---------------------------------------------------------------------
    def _guarded_decode(self, fn):
        try:
            return fn()
        except FCMError:
            raise
        except MemoryError:
            raise BitstreamError(f"{self.name}: bitstream asks for more memory than available") from None
        except Exception as e:  # decoding libraries raise anything on garbage
            msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
            detail = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
            raise BitstreamError(f"{self.name}: undecodable bitstream ({detail})") from None

    def _check_data(self, data) -> bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ParameterError(f"{self.name}: bitstream must be bytes, got {type(data).__name__}")
        data = bytes(data)
        if not data:
            raise BitstreamError(f"{self.name}: empty bitstream")
        return data

    @staticmethod
    def _check_shape(shape) -> tuple[int, int]:
        try:
            h, w = (int(s) for s in shape)
        except (TypeError, ValueError):
            raise ParameterError(f"shape must be (height, width), got {shape!r}") from None
        if h < 1 or w < 1:
            raise ParameterError(f"shape must be positive, got {(h, w)}")
        return h, w

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


class FrameCodec(Codec):
    """Interface for codecs of packed frames (and images). Subclasses set the class
    attributes and implement ``_encode``/``_decode``; the base class validates inputs."""

    bit_depths: tuple[int, ...] = (8,)  # sample bit depths the codec accepts

    # -- coding -------------------------------------------------------------------------
    def encode(self, frame: np.ndarray, bit_depth: int, quality: float) -> bytes:
        self.check_frame(frame, bit_depth)
        q = self.check_quality(quality)
        self.require_available()
        return bytes(self._encode(frame, bit_depth, q))

    def decode(self, data: bytes, bit_depth: int, shape: tuple[int, int]) -> np.ndarray:
        """bytes -> (H, W) uint16 frame. ``shape`` and ``bit_depth`` come from the
        container's side information (a codec may pad internally and crops back).
        Raises BitstreamError for anything undecodable (any unexpected exception of the
        decoding library is turned into one), and checks the result's shape and range."""
        if bit_depth not in self.bit_depths:
            raise ParameterError(
                f"{self.name} codes {', '.join(map(str, self.bit_depths))}-bit frames, not {bit_depth}-bit"
            )
        shape = self._check_shape(shape)
        data = self._check_data(data)
        self.require_available()
        out = self._guarded_decode(lambda: self._decode(data, bit_depth, shape))
        out = np.asarray(out)
        if out.shape != shape or out.dtype != np.uint16:
            raise BitstreamError(f"{self.name}: decoded a {out.dtype} {out.shape} frame, expected uint16 {shape}")
        if out.size and int(out.max()) >= (1 << bit_depth):
            raise BitstreamError(f"{self.name}: decoded samples exceed {bit_depth} bits")
        return out

    def _encode(self, frame: np.ndarray, bit_depth: int, quality: float) -> bytes:
        raise NotImplementedError

    def _decode(self, data: bytes, bit_depth: int, shape: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError

    # -- full-input paradigm: the codec on the RGB image itself ---------------------------
    supports_images: bool = True

    def encode_image(self, rgb: np.ndarray, quality: float) -> bytes:
        """(H, W, 3) uint8 RGB image -> bytes, for the full-input paradigm."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ParameterError(f"{self.name}: expected an (H, W, 3) uint8 image, got {rgb.dtype} {rgb.shape}")
        if not self.supports_images:
            raise ParameterError(f"{self.name} codes feature frames only, not images (full-input)")
        q = self.check_quality(quality)
        self.require_available()
        return bytes(self._encode_image(rgb, q))

    def decode_image(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        """bytes -> (H, W, 3) uint8 RGB. Raises BitstreamError when undecodable."""
        shape = self._check_shape(shape)
        data = self._check_data(data)
        self.require_available()
        out = np.asarray(self._guarded_decode(lambda: self._decode_image(data, shape)))
        if out.shape != (*shape, 3) or out.dtype != np.uint8:
            raise BitstreamError(f"{self.name}: decoded a {out.dtype} {out.shape} image, expected uint8 {(*shape, 3)}")
        return out

    def _encode_image(self, rgb: np.ndarray, quality: float) -> bytes:
        raise NotImplementedError

    def _decode_image(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError

    def default_bit_depth(self) -> int:
        return max(self.bit_depths)

    def check_frame(self, frame: np.ndarray, bit_depth: int) -> None:
        if bit_depth not in self.bit_depths:
            raise ParameterError(
                f"{self.name} codes {', '.join(map(str, self.bit_depths))}-bit frames, not {bit_depth}-bit"
            )
        if frame.ndim != 2 or frame.dtype != np.uint16:
            raise ParameterError(f"{self.name}: expected a 2-D uint16 frame, got {frame.dtype} {frame.shape}")
        if frame.size == 0:
            raise ParameterError(f"{self.name}: empty frame {frame.shape}")
        if int(frame.max()) >= (1 << bit_depth):
            raise ParameterError(f"{self.name}: frame has samples above {(1 << bit_depth) - 1} ({bit_depth}-bit)")
