"""The feature-coder stage: what crosses the split -> bits -> what the server receives.

Every way of coding split features implements one interface, so the pipeline has one
path (``pipeline._run_split``)::

                         edge                      |                 server
                                                   |
    model input --(head)--> features --(pre-wrapper)--> reduced
        |                                          |
        |  coder.consumes == MODEL_INPUT           |
        +------------------+                       |
                           v                       |
                 coder.encode(source, quality, channel_weights=...)
                           |                       |
                           v                       |
                 Encoded.bitstream  ---- bytes ---->  coder.decode(bitstream)
                 (+ side info for                  |        |
                  display: frames,                 |        v
                  header_bytes, ...)               |  Decoded.features --(post-wrapper)--> restored
                                                   |                                      |
                                                   |            +-------------------------+--------------+
                                                   |            v                         v              v
                                                   |       model.tail              consumer "pose"   consumer ...
                                                   |       (detections)            (secondary tasks, see pipeline)

``source`` is the reduced features for every coder except those that declare
``consumes = MODEL_INPUT`` (direct coding: a learned encoder replaces the head and reads
the model input). The choice is declared by the coder, never discovered.

Implementations (``fcmcore.coding.coder_for`` builds the right one from a codec name):

* ``PackedFrameCoder`` (``coding.frames``): tiles each tensor into a frame, codes it with
  a ``FrameCodec`` inside the ``fcmcore.bitstream`` container; wrapper-aware RDO (per-tile
  gains or QP offsets from ``channel_weights``);
* the learned codecs ``factorized`` / ``hyperprior`` / ``context`` (``fcmcore.learned``):
  CompressAI entropy models on the tensor itself, no packing, no bit depth;
* ``direct`` (``fcmcore.learned``): ``consumes = MODEL_INPUT``;
* ``RawFeatureCoder`` (``coding.raw``): the uncompressed reference (float32 over the wire).

Rate: ``Encoded.bits == len(Encoded.bitstream) * 8``, the bytes ``decode`` reads, side
information included. ``bits_estimated`` is an estimate (likelihoods) and never replaces it.

**Sequences** (video): ``encode_sequence(sources, quality, gop=...)`` /
``decode_sequence(bitstream)`` code several feature tensors into ONE bitstream. The default
here codes every item independently (all intra) and frames them with their lengths; a
coder with inter prediction overrides both (``gop``: intra period, None = one intra first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from ..byteio import ByteReader, encode_varint
from ..errors import BitstreamError, ParameterError

Features = dict[str, torch.Tensor]

FEATURES = "features"  # the coder reads the (reduced) split tensors
MODEL_INPUT = "model_input"  # the coder reads the model input and replaces the head (direct coding)
MAX_SEQUENCE = 1 << 16  # items per sequence bitstream, a guard against absurd headers


@dataclass
class Encoded:
    """One coded item. ``bitstream`` is everything the decoder reads."""

    bitstream: bytes
    quality: float | None  # the quality actually used (default filled in)
    header_bytes: int = 0  # side information (shapes, ranges, bit depth) inside the bitstream
    frames: dict[str, np.ndarray] | None = None  # packed frames the codec saw (packed coders)
    bit_depth: int | None = None  # sample bit depth of the packed frames; None: no packing
    bits_estimated: float | None = None  # learned coders: rate from likelihoods (+ header bits)
    bits_per_channel: dict[str, list[int]] | None = None  # measured on request (packed coders)
    extra: dict[str, Any] = field(default_factory=dict)  # coder-specific records (e.g. latents)

    @property
    def bits(self) -> int:
        return len(self.bitstream) * 8


@dataclass
class Decoded:
    features: Features  # what the server-side stages receive
    frames: dict[str, np.ndarray] | None = None  # decoded frames before unpacking (packed coders)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class EncodedSequence:
    """Several items coded into one bitstream (``bits = len(bitstream) * 8``). ``items``
    keep each item's side information; their own ``bitstream`` is what that item
    contributed (empty when a coder cannot attribute bytes to items)."""

    bitstream: bytes
    items: list[Encoded]

    @property
    def bits(self) -> int:
        return len(self.bitstream) * 8


class FeatureCoder:
    """The interface. Subclasses set ``name`` and ``consumes`` and implement ``encode``,
    ``decode`` and ``check_quality``; the rest has working defaults."""

    name: str = ""
    consumes: ClassVar[str] = FEATURES  # FEATURES or MODEL_INPUT (see the module docstring)
    uses_channel_weights: bool = False  # True: encode() needs per-channel importance (WA-RDO)

    def check_quality(self, quality: float | None) -> float | None:
        """The quality to use (None -> the default); ParameterError when out of range."""
        raise NotImplementedError

    def encode(self, source, quality: float | None = None, *,
               channel_weights: dict[str, np.ndarray] | None = None) -> Encoded:
        """``source``: Features, or the (1, 3, H, W) model input when ``consumes ==
        MODEL_INPUT``. ``channel_weights``: per-channel importance of each tensor, read only
        when ``uses_channel_weights``."""
        raise NotImplementedError

    def decode(self, bitstream: bytes) -> Decoded:
        """bytes -> Decoded; BitstreamError for anything that does not decode."""
        raise NotImplementedError

    def measure_bits_per_channel(self, encoded: Encoded) -> dict[str, list[int]] | None:
        """Bits attributable to each channel of each tensor of ``encoded``, measured on real
        bitstreams (a measurement outside the data flow; may re-encode), or None when this
        coder has no per-channel layout to measure (the default)."""
        return None

    def edge_macs(self, head_macs: int | None, quality: float | None = None) -> int | None:
        """Multiply-accumulates on the edge with this coder, given the head's. Coders with an
        analysis network add theirs; one that replaces the head returns its own total."""
        return head_macs

    # -- sequences: default = every item intra, independently ------------------------------
    def encode_sequence(self, sources: Sequence, quality: float | None = None, *, gop: int | None = None,
                        channel_weights: Sequence[dict[str, np.ndarray] | None] | None = None) -> EncodedSequence:
        """Code ``sources`` (each what ``encode`` takes) into one bitstream::

            varint n, then n x (varint length, that item's bitstream)

        ``gop`` is ignored here (every item is intra); coders with inter prediction
        override this method and ``decode_sequence``."""
        if not sources or len(sources) > MAX_SEQUENCE:
            raise ParameterError(f"a sequence needs 1..{MAX_SEQUENCE} items, got {len(sources)}")
        weights = list(channel_weights) if channel_weights is not None else [None] * len(sources)
        if len(weights) != len(sources):
            raise ParameterError("channel_weights must have one entry per item")
        items = [self.encode(s, quality, channel_weights=w) for s, w in zip(sources, weights)]
        out = bytearray(encode_varint(len(items)))
        for item in items:
            out += encode_varint(len(item.bitstream)) + item.bitstream
        return EncodedSequence(bytes(out), items)

    def decode_sequence(self, bitstream: bytes) -> list[Decoded]:
        r = ByteReader(bytes(bitstream), f"{self.name} sequence")
        n = r.varint("item count", MAX_SEQUENCE)
        if n < 1:
            raise BitstreamError(f"{self.name} sequence: no items")
        chunks = [r.take(r.varint("item length", len(bitstream)), "item") for _ in range(n)]
        if r.pos != len(r.data):
            raise BitstreamError(f"{self.name} sequence: {len(r.data) - r.pos} unexpected bytes after the items")
        return [self.decode(c) for c in chunks]
