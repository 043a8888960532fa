"""Sequence coding as a ``fcmcore.coding.FeatureCoder``: the sequence hook with inter prediction.

``VideoFeatureCoder(codec, structure=...)`` implements ``encode_sequence`` / ``decode_sequence``
by packing every item's tensors and coding each tensor's frames as ONE HEVC/VVC stream
(``fcmcore.video.features``); ``encode``/``decode`` of one item are the one-frame sequence.
``gop`` of ``encode_sequence`` is the intra period (None: the structure's default; ignored
for ``intra``). Each item of the returned ``EncodedSequence`` carries its measured bits
(``extra["bits"]``: its access units + its ranges, header in the first) and whether it was
coded intra; their own ``bitstream`` is empty (one stream cannot be cut into independent items).
``rdo="wa"``: wrapper-aware RDO by per-tile gains at packing, from ``channel_weights`` (one
name -> (C,) dict per item; ``fcmcore.video.features``); ``"sse"`` ignores weights.
"""

from __future__ import annotations

from typing import Sequence

from ..coding.base import Decoded, Encoded, EncodedSequence, FeatureCoder
from ..errors import ParameterError
from .features import decode_feature_sequence, encode_feature_sequence
from .sequence import GOPS, sequence_coder

SEQUENCE_RDO = ("sse", "wa")  # wa-qp needs per-region QP, which the in-process sequence coders lack


class VideoFeatureCoder(FeatureCoder):
    def __init__(self, codec: str = "hevc", *, structure: str = "ldp", bit_depth: int | None = None,
                 quant: str = "tensor", ranges: str = "sequence", rdo: str = "sse"):
        if structure not in GOPS:
            raise ParameterError(f"structure must be one of {', '.join(GOPS)}, not {structure!r}")
        if rdo not in SEQUENCE_RDO:
            raise ParameterError(f"sequence coding takes --rdo {' or '.join(SEQUENCE_RDO)} (per-tile gains), "
                                 f"not {rdo!r}")
        self.rdo = rdo
        self.uses_channel_weights = rdo == "wa"
        self.coder = sequence_coder(codec)
        self.name = f"{codec}-{structure}"
        self.structure = structure
        self.bit_depth = bit_depth or 10
        if self.bit_depth not in self.coder.bit_depths:
            raise ParameterError(f"{codec} sequences are {', '.join(map(str, self.coder.bit_depths))}-bit")
        self.quant, self.ranges = quant, ranges

    def check_quality(self, quality):
        return self.coder.check_quality(quality)

    def encode_sequence(self, sources: Sequence, quality=None, *, gop: int | None = None,
                        channel_weights=None) -> EncodedSequence:
        weights = None
        if self.rdo == "wa":
            if channel_weights is None or len(channel_weights) != len(sources) or any(w is None for w in channel_weights):
                raise ParameterError(f"{self.name}: --rdo wa needs importance weights for every frame")
            weights = list(channel_weights)
        q = self.check_quality(quality)
        period = None if self.structure == "intra" else gop
        enc = encode_feature_sequence(list(sources), self.coder, q, gop=self.structure, intra_period=period,
                                      bit_depth=self.bit_depth, quant=self.quant, ranges=self.ranges,
                                      channel_weights=weights)
        items = []
        for i in range(len(enc.frame_bits)):
            frames = {name: fr[i] for name, fr in enc.frames.items()}
            items.append(Encoded(bitstream=b"", quality=q, header_bytes=enc.header_bytes if i == 0 else 0,
                                 frames=frames, bit_depth=self.bit_depth,
                                 extra={"bits": enc.frame_bits[i], "intra": enc.intra[i]}))
        return EncodedSequence(bitstream=enc.data, items=items)

    def decode_sequence(self, bitstream: bytes) -> list[Decoded]:
        return [Decoded(features=f) for f in decode_feature_sequence(bitstream, self.coder)]

    def encode(self, source, quality=None, *, channel_weights=None) -> Encoded:
        seq = self.encode_sequence([source], quality, channel_weights=None if channel_weights is None else [channel_weights])
        item = seq.items[0]
        return Encoded(bitstream=seq.bitstream, quality=item.quality, header_bytes=item.header_bytes,
                       frames=item.frames, bit_depth=item.bit_depth)

    def decode(self, bitstream: bytes) -> Decoded:
        return self.decode_sequence(bitstream)[0]
