"""Packed-frame coding: each tensor tiled into a 2-D frame, coded by a ``FrameCodec``,
wrapped in the ``fcmcore.bitstream`` container (header: shapes, ranges, bit depth, gains).

Wrapper-aware RDO (``rdo``, see ``coding.rdo``) turns the wrapper's importance (mean 1;
per channel ``w_c``, or per position / per sample) into an allocation: ``wa`` -> packing
gains w_c^(S/2) (every codec, channel weights only); ``wa-qp`` -> QP offsets -3 S log2(w),
centred, per tile or per QP block (codecs with per-region QP: HEVC); ``sse-qp`` -> the same
encoder path with zero offsets (the anchor of ``wa-qp``). ``tile_pad``: tiles padded to
the QP block grid (``packing``). ``wa_strength`` S scales the model (S = 1: the full
first-order allocation; S < 1 a milder one).
With ``quant="channel"`` each channel's own range already scales its step, so the weights
are multiplied by range_c^2 to make the feature-domain steps follow w_c alone.
"""

from __future__ import annotations

import numpy as np
import torch

from ..bitstream import decode_features, encode_features
from ..codecs.base import FrameCodec
from ..errors import ParameterError
from ..packing import MODES, check_pad
from .base import Decoded, Encoded, FeatureCoder, Features
from .rdo import bits_per_block, bits_per_channel, block_qp_offsets, qp_offsets_from_weights

RDO_MODES = ("sse", "wa", "wa-qp", "sse-qp")
QP_MODES = ("wa-qp", "sse-qp")  # coded through the codec's per-region QP path


class PackedFrameCoder(FeatureCoder):
    """Features -> packed frames -> ``codec`` -> one container bitstream, and back."""

    def __init__(self, codec: FrameCodec, *, bit_depth: int | None = None, quant: str = "tensor",
                 rdo: str = "sse", expect: dict[str, tuple[int, ...]] | None = None, tile_pad: int = 0,
                 wa_strength: float = 1.0):
        if quant not in MODES:
            raise ParameterError(f"quant must be one of {', '.join(MODES)}, not {quant!r}")
        if rdo not in RDO_MODES:
            raise ParameterError(f"rdo must be one of {', '.join(RDO_MODES)}, not {rdo!r}")
        self.codec = codec
        self.name = codec.name
        self.bit_depth = check_bit_depth(codec, bit_depth)
        self.quant, self.rdo = quant, rdo
        self.tile_pad = check_pad(tile_pad)
        self.wa_strength = float(wa_strength)
        # The receiver knows the split's tensors: a stream declaring others is refused
        # before anything is allocated (fcmcore.bitstream, ``expect=``).
        self.expect = expect
        if rdo in QP_MODES and not getattr(codec, "supports_qp_offsets", False):
            raise ParameterError(f"--rdo {rdo} needs per-region QP control (hevc); {codec.name} has none: use --rdo wa")
        self.uses_channel_weights = rdo in ("wa", "wa-qp")

    def check_quality(self, quality):
        return self.codec.check_quality(quality)

    def encode(self, source: Features, quality=None, *, channel_weights=None) -> Encoded:
        q = self.check_quality(quality)
        gains, qp_offsets = self._allocation(source, channel_weights)
        enc = encode_features(source, self.codec, q, bit_depth=self.bit_depth, mode=self.quant,
                              gains=gains, qp_offsets=qp_offsets, pad=self.tile_pad)
        return Encoded(bitstream=enc.data, quality=q, header_bytes=enc.header_bytes, frames=enc.frames,
                       bit_depth=enc.bit_depth,
                       extra={"payload_bytes": enc.payload_bytes, "container": enc, "qp_offsets": qp_offsets})

    def measure_bits_per_channel(self, encoded: Encoded) -> dict[str, list[int]]:
        """Leave-one-out bits of every channel tile (``coding.rdo.bits_per_channel``)."""
        return bits_per_channel(encoded.extra["container"], self.codec, encoded.quality,
                                encoded.extra["qp_offsets"])

    def measure_bits_per_block(self, encoded: Encoded, block: int | None = None) -> dict[str, np.ndarray]:
        """Leave-one-out bits of every QP block of every packed frame (``coding.rdo.bits_per_block``)."""
        block = int(block or getattr(self.codec, "roi_block", 8))
        return bits_per_block(encoded.extra["container"], self.codec, encoded.quality, encoded.extra["qp_offsets"],
                              block)

    def decode(self, bitstream: bytes) -> Decoded:
        dec = decode_features(bitstream, self.codec, expect=self.expect)
        return Decoded(features=dec.features, frames=dec.frames, extra={"packed": dec.packed})

    def _allocation(self, reduced: Features, weights):
        """(per-channel packing gains, QP offsets per channel or per position), (None, None)
        for SSE RDO. ``weights``: name -> (k,) channel, (h, w) spatial or (k, h, w) weights."""
        if self.rdo == "sse":
            return None, None
        if self.rdo == "sse-qp":  # the anchor of wa-qp: same encoder path, all-zero offsets
            return None, {name: np.zeros(t.shape[-3]) for name, t in reduced.items()}
        if weights is None:
            raise ParameterError(f"--rdo {self.rdo} needs importance weights for every coded channel")
        eff = {}
        for name, w in weights.items():
            w = np.asarray(w, dtype=np.float64)
            if w.ndim == 2:  # spatial: one (h, w) map shared by every tile
                w = np.broadcast_to(w, (reduced[name].shape[-3], *w.shape))
            if self.quant == "channel":
                t = reduced[name].detach().to(torch.float64)
                span = (t.amax(dim=(0, 2, 3)) - t.amin(dim=(0, 2, 3))).numpy()
                w = w * (np.maximum(span, 1e-12) ** 2).reshape((-1,) + (1,) * (w.ndim - 1))
            eff[name] = w
        if self.rdo == "wa":
            if any(w.ndim != 1 for w in eff.values()):
                raise ParameterError("--rdo wa (per-tile gains) takes channel weights only; spatial weights need "
                                     "--rdo wa-qp (per-block QP offsets)")
            return {name: w ** (self.wa_strength / 2) for name, w in eff.items()}, None
        block = int(getattr(self.codec, "roi_block", 8))
        s = self.wa_strength
        return None, {name: (qp_offsets_from_weights(w, strength=s) if w.ndim == 1
                             else block_qp_offsets(w, self.tile_pad, block, strength=s))
                      for name, w in eff.items()}


def check_bit_depth(codec: FrameCodec, bit_depth: int | None) -> int:
    """The packing bit depth for ``codec`` (None -> its highest); ParameterError otherwise."""
    if bit_depth is None:
        return codec.default_bit_depth()
    if bit_depth not in codec.bit_depths:
        raise ParameterError(f"{codec.name} codes {', '.join(map(str, codec.bit_depths))}-bit frames, "
                             f"not {bit_depth}-bit")
    return int(bit_depth)
