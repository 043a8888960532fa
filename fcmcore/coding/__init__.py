"""The feature-coder stage (see ``coding.base`` for the interface and the data flow).

``coder_for(codec_name, ...)`` turns a registered codec into the ``FeatureCoder`` the
pipeline runs: a ``FrameCodec`` is wrapped in a ``PackedFrameCoder`` (packing options
apply); a codec that is itself a ``FeatureCoder`` (learned codecs, direct coding) is
returned as it is, and packing options given to it are refused, not ignored.
"""

from __future__ import annotations

from ..codecs import get_codec
from ..codecs.base import FrameCodec
from ..errors import ParameterError
from .base import FEATURES, MODEL_INPUT, Decoded, Encoded, EncodedSequence, FeatureCoder
from .frames import RDO_MODES, PackedFrameCoder, check_bit_depth
from .raw import RawFeatureCoder


def coder_for(codec_name: str, *, bit_depth: int | None = None, quant: str = "tensor",
              rdo: str = "sse", expect: dict[str, tuple[int, ...]] | None = None, tile_pad: int = 0,
              wa_strength: float = 1.0) -> FeatureCoder:
    """The coder for codec ``codec_name`` with these packing options (ParameterError for
    options the codec has no use for)."""
    codec = get_codec(codec_name)
    if isinstance(codec, FrameCodec):
        return PackedFrameCoder(codec, bit_depth=bit_depth, quant=quant, rdo=rdo, expect=expect, tile_pad=tile_pad,
                                wa_strength=wa_strength)
    if not isinstance(codec, FeatureCoder):
        raise TypeError(f"codec {codec_name!r} is neither a FrameCodec nor a FeatureCoder")
    what = f"{codec_name} codes the features themselves (no packing into frames)"
    if bit_depth is not None:
        raise ParameterError(f"{what}: it has no bit depth, drop --bits {bit_depth}")
    if quant != "tensor":
        raise ParameterError(f"{what}: --quant {quant} does not apply")
    if rdo != "sse":
        raise ParameterError(f"{what}: --rdo {rdo} (wrapper-aware packing) does not apply")
    if tile_pad:
        raise ParameterError(f"{what}: --tile-pad {tile_pad} does not apply")
    if wa_strength != 1.0:
        raise ParameterError(f"{what}: --wa-strength {wa_strength:g} does not apply")
    return codec


def packing_bit_depth(codec_name: str, bit_depth: int | None) -> int | None:
    """The bit depth a config codes with: the codec's default or ``bit_depth`` checked for a
    frame codec; None for coders without packing (``bit_depth`` given -> ParameterError)."""
    codec = get_codec(codec_name)
    if isinstance(codec, FrameCodec):
        return check_bit_depth(codec, bit_depth)
    if bit_depth is not None:
        raise ParameterError(f"{codec_name} codes the features themselves (no packing into frames): "
                             f"it has no bit depth, drop --bits {bit_depth}")
    return None


__all__ = ["FEATURES", "MODEL_INPUT", "RDO_MODES", "Decoded", "Encoded", "EncodedSequence", "FeatureCoder",
           "PackedFrameCoder", "RawFeatureCoder", "coder_for", "packing_bit_depth"]
