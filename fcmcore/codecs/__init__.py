"""The codec registry: every frame codec by name.

``get_codec(name)`` returns one shared instance per name (availability probes are
cached on it); ``list_codecs()`` returns them all, available or not (check
``codec.available()``). Optional packages are imported lazily, so importing this
module never fails on a machine that lacks one.

Names and quality parameters (``codec.quality``; ``to_json()`` spells them out):

=========  ==============================  ==========  ===========  ============
name       quality                         more bits   default      bit depths
=========  ==============================  ==========  ===========  ============
jpeg       JPEG quality 1..95              higher      75           8
webp       WebP quality 0..100             higher      75           8
avif       AVIF quality 0..100             higher      75           8
png        zlib level 0..9 (lossless)      lower       6            8, 10, 12, 16
jpeg2000   target bpp 0.01..24             higher      1.0          8, 10, 12, 16
jpegxl     JPEG XL quality 0..100 (100 =   higher      90           8, 10, 12, 16
           lossless)
hevc       slice QP 0..51 (x265 medium)    lower       32           8, 10
hevc-slow  slice QP 0..51 (x265 slow)      lower       32           8, 10
vvc        slice QP 2..63 (vvenc fast)     lower       32           10
vvc-slow   slice QP 2..63 (vvenc medium)   lower       32           10
=========  ==============================  ==========  ===========  ============

To add a codec: subclass ``FrameCodec`` in a new module and register it below. The learned
codecs (``fcmcore.learned``) are ``Codec`` + ``fcmcore.coding.FeatureCoder``: they code
tensors themselves, have no bit depth, and ``fcmcore.coding.coder_for`` uses them as they are.
"""

from __future__ import annotations

from ..registry import Registry
from .base import Codec, FrameCodec, QualitySpec
from .hevc import HEVCCodec, HEVCSlowCodec
from .jpegxl import JPEGXLCodec
from .pillow_codecs import AVIFCodec, JPEG2000Codec, JPEGCodec, PNGCodec, WebPCodec
from .vvc import VVCCodec, VVCSlowCodec

CODECS: Registry[Codec] = Registry("codec")

for _cls in (JPEGCodec, WebPCodec, AVIFCodec, PNGCodec, JPEG2000Codec, JPEGXLCodec, HEVCCodec, HEVCSlowCodec, VVCCodec, VVCSlowCodec):
    CODECS.register(_cls.name)(_cls)
del _cls

# Learned feature codecs and direct coding join the same registry (fcmcore.learned).
from ..learned import register_codecs as _register_learned  # noqa: E402

_register_learned(CODECS)

_INSTANCES: dict[str, Codec] = {}


def get_codec(name: str) -> Codec:
    """The shared instance of codec ``name`` (UnknownNameError lists the known names)."""
    if name not in _INSTANCES:
        _INSTANCES[name] = CODECS.create(name)
    return _INSTANCES[name]


def list_codecs() -> list[Codec]:
    return [get_codec(n) for n in CODECS.names()]


def is_frame_codec(codec: Codec) -> bool:
    """True for codecs of packed frames (standard codecs); False for learned codecs, which
    code feature tensors (or the model input) themselves."""
    return isinstance(codec, FrameCodec)


def frame_codec_names() -> list[str]:
    return [n for n in CODECS.names() if is_frame_codec(get_codec(n))]


__all__ = ["CODECS", "Codec", "FrameCodec", "QualitySpec", "frame_codec_names", "get_codec", "is_frame_codec", "list_codecs"]
