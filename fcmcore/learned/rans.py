"""Single-stream rANS coding of the learned codecs: every symbol of one tensor (all entropy
models, all passes) in ONE buffered rANS stream (see ``models``: one string per pass would
cost ~8 bytes of flush each).

``_Tables`` caches an entropy model's CDF tables as the lists the coder takes.
``PlainEncoder`` / ``PlainDecoder`` are the reference coders, one rANS call per pass, with
the interface ``FeatureCodecNet.code`` drives (``bottleneck(eb, z, shape)``,
``gaussian(gc, y, scales, means)``, each returning what the decoder sees); the coders used
in production are ``fastcoding``'s, which write the same bytes faster (tests compare them).
"""

from __future__ import annotations

import torch
from compressai.ans import BufferedRansEncoder, RansDecoder
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import Tensor


class _Tables:
    """An entropy model's CDF tables as the Python lists the rANS coder takes (cached)."""

    def __init__(self, model):
        self.cdf = model.quantized_cdf.tolist()
        self.lengths = model.cdf_length.reshape(-1).int().tolist()
        self.offsets = model.offset.reshape(-1).int().tolist()


def eb_indexes_medians(eb: EntropyBottleneck, shape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    indexes = eb._build_indexes(shape)
    medians = eb._get_medians().detach().reshape(1, -1, 1, 1).expand(shape[0], -1, *shape[2:])
    return indexes, medians


class PlainEncoder:
    """Codes symbols into one buffered rANS stream; returns what the decoder will see."""

    def __init__(self, tables: dict[int, _Tables]):
        self.tables = tables
        self.rans = BufferedRansEncoder()
        self.num_symbols = 0

    def _put(self, model, symbols: Tensor, indexes: Tensor) -> None:
        t = self.tables[id(model)]
        self.rans.encode_with_indexes(symbols.reshape(-1).int().tolist(), indexes.reshape(-1).int().tolist(),
                                      t.cdf, t.lengths, t.offsets)
        self.num_symbols += symbols.numel()

    def bottleneck(self, eb: EntropyBottleneck, z: Tensor, shape: tuple[int, ...]) -> Tensor:
        indexes, medians = eb_indexes_medians(eb, tuple(z.shape))
        symbols = eb.quantize(z, "symbols", medians)
        self._put(eb, symbols, indexes)
        return eb.dequantize(symbols, medians)

    def gaussian(self, gc: GaussianConditional, y: Tensor, scales: Tensor, means: Tensor) -> Tensor:
        indexes = gc.build_indexes(scales)
        symbols = gc.quantize(y, "symbols", means)
        self._put(gc, symbols, indexes)
        return gc.dequantize(symbols, means)

    def finish(self) -> bytes:
        return self.rans.flush()


class PlainDecoder:
    """Reads a ``PlainEncoder`` stream back, pass by pass."""

    def __init__(self, tables: dict[int, _Tables], stream: bytes):
        self.tables = tables
        self.rans = RansDecoder()
        self.rans.set_stream(stream)

    def _get(self, model, indexes: Tensor) -> Tensor:
        t = self.tables[id(model)]
        values = self.rans.decode_stream(indexes.reshape(-1).int().tolist(), t.cdf, t.lengths, t.offsets)
        return torch.tensor(values, dtype=torch.int32).reshape(indexes.shape)

    def bottleneck(self, eb: EntropyBottleneck, z: Tensor | None, shape: tuple[int, ...]) -> Tensor:
        indexes, medians = eb_indexes_medians(eb, shape)
        return eb.dequantize(self._get(eb, indexes), medians)

    def gaussian(self, gc: GaussianConditional, y: Tensor | None, scales: Tensor, means: Tensor) -> Tensor:
        return gc.dequantize(self._get(gc, gc.build_indexes(scales)), means)
