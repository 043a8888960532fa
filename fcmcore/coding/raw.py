"""The uncompressed reference: every tensor sent as raw float32 (little endian).

Tensor names, order and shapes are agreed out of band (like the model and the split), so
the bitstream is the samples alone and ``bits = 32 * number of values`` exactly.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import BitstreamError, ParameterError
from .base import Decoded, Encoded, FeatureCoder, Features


class RawFeatureCoder(FeatureCoder):
    name = "uncompressed"

    def __init__(self, shapes: dict[str, tuple[int, ...]]):
        self.shapes = {k: tuple(int(s) for s in v) for k, v in shapes.items()}

    @classmethod
    def for_features(cls, features: Features) -> "RawFeatureCoder":
        return cls({k: tuple(v.shape) for k, v in features.items()})

    def check_quality(self, quality):
        if quality is not None:
            raise ParameterError("uncompressed features take no quality (choose a codec with --codec)")
        return None

    def encode(self, source: Features, quality=None, *, channel_weights=None) -> Encoded:
        self.check_quality(quality)
        if list(source) != list(self.shapes) or any(tuple(v.shape) != self.shapes[k] for k, v in source.items()):
            raise ParameterError(f"uncompressed: expected tensors {self.shapes}")
        data = b"".join(v.detach().float().contiguous().numpy().astype("<f4").tobytes() for v in source.values())
        return Encoded(bitstream=data, quality=None)

    def decode(self, bitstream: bytes) -> Decoded:
        expected = sum(4 * int(np.prod(s)) for s in self.shapes.values())
        if len(bitstream) != expected:
            raise BitstreamError(f"uncompressed: {len(bitstream)} bytes, expected {expected}")
        out, pos = {}, 0
        for name, shape in self.shapes.items():
            n = 4 * int(np.prod(shape))
            out[name] = torch.from_numpy(np.frombuffer(bitstream[pos:pos + n], dtype="<f4").astype(np.float32)
                                         .reshape(shape))
            pos += n
        return Decoded(features=out)
