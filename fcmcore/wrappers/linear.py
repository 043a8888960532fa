"""Linear wrappers fitted in closed form on training features.

``truncate``: keep the k channels of highest mean energy E[x_c^2] on the training
features; ``post`` puts them back at their places and fills the others with their
training mean (or zeros, ``fill="zero"``).

``pca``: per-pixel channel PCA. With mean m (C) and the k leading eigenvectors U (C x k,
orthonormal columns) of the channel covariance over all training pixels,
``pre: z = U^T (x - m)`` and ``post: x' = U z + m``. With k = C it is lossless up to
float error.

Both post-wrappers are affine per pixel with orthonormal columns (unit vectors for
truncate), so their Jacobian columns all have norm 1: wrapper-aware weights measured at
the split are uniform and WA-RDO reduces to SSE-RDO. Only weights measured deeper
(``deep``/``task``, through the frozen tail) differ between channels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ParameterError, WeightsError
from ..registry import WRAPPERS
from .base import FeatureWrapper
from .fitted import FittedWrapper, load_fitted, need


class TruncateWrapper(FittedWrapper):
    method = "truncate"
    description = "keep the k highest-energy channels; the others are filled with their training mean"

    def __init__(self, meta: dict[str, Any], channels: torch.Tensor, fill: torch.Tensor,
                 importance: dict[str, torch.Tensor] | None = None):
        super().__init__(meta, importance)
        self.channels = channels.long()
        self.fill = fill.float()  # (C,) value of every dropped channel

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.channels]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        n, _, h, w = z.shape
        out = self.fill.view(1, -1, 1, 1).expand(n, -1, h, w).clone().to(z.dtype)
        out[:, self.channels] = z
        return out

    def post_is_linear(self) -> bool:
        return True

    def column_norms2(self) -> np.ndarray:
        return np.ones(self.k)

    def state(self) -> dict[str, torch.Tensor]:
        return {"channels": self.channels.float(), "fill": self.fill}

    @classmethod
    def from_state(cls, meta, params, importance, path: Path) -> "TruncateWrapper":
        c, k = int(meta["channels_in"]), int(meta["k"])
        if k > c:
            raise WeightsError(f"wrapper file {path}: k={k} exceeds {c} channels")
        ch = need(params, "channels", (k,), path)
        if (ch != ch.round()).any() or (ch < 0).any() or (ch >= c).any() or len(set(ch.long().tolist())) != k:
            raise WeightsError(f"wrapper file {path}: kept channel indices are not {k} distinct ints in [0, {c})")
        return cls(meta, ch.long(), need(params, "fill", (c,), path), importance)

    @classmethod
    def fit(cls, features: torch.Tensor, k: int, meta: dict[str, Any], fill: str = "mean") -> "TruncateWrapper":
        """``features``: (N, C, H, W) training features."""
        c = features.shape[1]
        _check_k(k, c)
        energy = features.double().pow(2).mean(dim=(0, 2, 3))
        channels = torch.sort(torch.argsort(energy, descending=True)[:k]).values
        if fill == "mean":
            values = features.double().mean(dim=(0, 2, 3)).float()
        elif fill == "zero":
            values = torch.zeros(c)
        else:
            raise ParameterError(f"truncate fill must be 'mean' or 'zero', not {fill!r}")
        return cls(dict(meta, k=k, channels_out=k, fill=fill), channels, values)


class PCAWrapper(FittedWrapper):
    method = "pca"
    description = "per-pixel channel PCA: k components and the mean, fitted on training features"

    def __init__(self, meta: dict[str, Any], mean: torch.Tensor, components: torch.Tensor,
                 importance: dict[str, torch.Tensor] | None = None, variances: torch.Tensor | None = None):
        super().__init__(meta, importance)
        self.mean = mean.float()  # (C,)
        self.components = components.float()  # (C, k), orthonormal columns
        self.variances = variances  # (k,) training variance of each component (informative)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nchw,ck->nkhw", x - self.mean.view(1, -1, 1, 1), self.components)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nkhw,ck->nchw", z, self.components) + self.mean.view(1, -1, 1, 1)

    def post_is_linear(self) -> bool:
        return True

    def column_norms2(self) -> np.ndarray:
        return self.components.double().pow(2).sum(0).numpy()

    def state(self) -> dict[str, torch.Tensor]:
        s = {"mean": self.mean, "components": self.components}
        if self.variances is not None:
            s["variances"] = self.variances.float()
        return s

    @classmethod
    def from_state(cls, meta, params, importance, path: Path) -> "PCAWrapper":
        c, k = int(meta["channels_in"]), int(meta["k"])
        if k > c:
            raise WeightsError(f"wrapper file {path}: k={k} exceeds {c} channels")
        mean = need(params, "mean", (c,), path)
        u = need(params, "components", (c, k), path)
        gram = u.double().T @ u.double()
        if not torch.allclose(gram, torch.eye(k, dtype=torch.float64), atol=1e-3):
            raise WeightsError(f"wrapper file {path}: PCA components are not orthonormal")
        var = params.get("variances")
        return cls(meta, mean, u, importance, var)

    @classmethod
    def fit(cls, features: torch.Tensor, k: int, meta: dict[str, Any]) -> "PCAWrapper":
        c = features.shape[1]
        _check_k(k, c)
        x = features.double().permute(1, 0, 2, 3).reshape(c, -1)  # (C, N*H*W)
        mean = x.mean(1)
        xc = x - mean[:, None]
        cov = xc @ xc.T / xc.shape[1]
        evals, evecs = torch.linalg.eigh(cov)  # ascending
        order = torch.argsort(evals, descending=True)[:k]
        u = evecs[:, order]
        # A deterministic sign: the largest-magnitude entry of each component is positive.
        sign = torch.sign(u.gather(0, u.abs().argmax(0, keepdim=True)))
        u = u * torch.where(sign == 0, torch.ones_like(sign), sign)
        explained = float(evals[order].sum() / evals.sum())
        return cls(dict(meta, k=k, channels_out=k, explained_variance=round(explained, 6)),
                   mean.float(), u.float(), variances=evals[order].float())


def _check_k(k: int, c: int) -> None:
    if not 1 <= k <= c:
        raise ParameterError(f"--channels must be in [1, {c}] for a {c}-channel tensor, got {k}")


@WRAPPERS.register("truncate")
def load_truncate(model_name: str, split: str, path: str | None = None) -> FeatureWrapper:
    """keep the k highest-energy channels (fitted on training features); others get their mean"""
    return load_fitted(TruncateWrapper, model_name, split, path)


@WRAPPERS.register("pca")
def load_pca(model_name: str, split: str, path: str | None = None) -> FeatureWrapper:
    """per-pixel channel PCA: k components + mean, fitted on training features"""
    return load_fitted(PCAWrapper, model_name, split, path)
