"""The proxy codec the wrappers and connectors train through: min-max packing of a tensor
at ``b`` effective bits modelled as uniform noise of step ``range / 2**b`` per sample, with
``b`` drawn in ``BITS_RANGE`` (from near-lossless 10-bit packing down to the rates where
detection breaks)."""

from __future__ import annotations

import torch

BITS_RANGE = (3.5, 7.0)


def random_bits(n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` effective bit depths drawn uniformly in ``BITS_RANGE``."""
    return BITS_RANGE[0] + (BITS_RANGE[1] - BITS_RANGE[0]) * torch.rand(n, generator=gen)


def proxy_step(z: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Per-sample quantisation step of tensor min-max packing at ``bits`` effective bits."""
    lo = z.amin(dim=(1, 2, 3), keepdim=True)
    hi = z.amax(dim=(1, 2, 3), keepdim=True)
    return ((hi - lo) / (2.0 ** bits.view(-1, 1, 1, 1))).clamp_min(1e-6)


def proxy_noise(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``x`` plus the proxy codec's noise at a random bit depth per sample."""
    step = proxy_step(x, random_bits(x.shape[0], gen))
    return x + (torch.rand(x.shape, generator=gen) - 0.5) * step
