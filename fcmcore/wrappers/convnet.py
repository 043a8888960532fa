"""The ``learned`` wrapper: small convolutional pre/post networks, k channels out, optional
2x spatial down/up-sampling.

Each side is an affine 1x1 path (initialised from PCA, so training starts at the PCA
wrapper) plus a residual non-linear path whose last layer starts at zero::

    pre(x)  = W_p [pool(x)] + b_p + N_pre(x)          N_pre:  conv3x3(C->h, stride d), ReLU, conv3x3(h->k)
    post(z) = W_q [up(z)]   + b_q + N_post(z)         N_post: conv3x3(k->h), ReLU, [up], conv3x3(h->h),
                                                              ReLU, conv3x3(h->C)

with d = ``down`` (1 or 2; pool = 2x2 average, ceil mode; up = bilinear back to the
split's H x W). Trained with ``training.train_learned`` (proxy codec: uniform noise at the
packing step + an EntropyBottleneck rate term).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParameterError, WeightsError
from ..registry import WRAPPERS
from .base import FeatureWrapper
from .fitted import FittedWrapper, load_fitted
from .linear import PCAWrapper


class _Pre(nn.Module):
    def __init__(self, c: int, k: int, hidden: int, down: int):
        super().__init__()
        self.down = down
        self.lin = nn.Conv2d(c, k, 1)
        self.n1 = nn.Conv2d(c, hidden, 3, stride=down, padding=1)
        self.n2 = nn.Conv2d(hidden, k, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xl = F.avg_pool2d(x, 2, ceil_mode=True) if self.down == 2 else x
        return self.lin(xl) + self.n2(F.relu(self.n1(x)))


class _Post(nn.Module):
    def __init__(self, c: int, k: int, hidden: int, down: int, size: tuple[int, int]):
        super().__init__()
        self.down, self.size = down, size
        self.lin = nn.Conv2d(k, c, 1)
        self.n1 = nn.Conv2d(k, hidden, 3, padding=1)
        self.n2 = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.n3 = nn.Conv2d(hidden, c, 3, padding=1)

    def _up(self, t: torch.Tensor) -> torch.Tensor:
        if self.down == 1:
            return t
        return F.interpolate(t, size=self.size, mode="bilinear", align_corners=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self._up(F.relu(self.n1(z)))
        return self.lin(self._up(z)) + self.n3(F.relu(self.n2(h)))


class LearnedNets(nn.Module):
    def __init__(self, c: int, k: int, hidden: int = 64, down: int = 1, size: tuple[int, int] = (19, 19)):
        super().__init__()
        if down not in (1, 2):
            raise ParameterError(f"down-sampling factor must be 1 or 2, got {down}")
        self.pre = _Pre(c, k, hidden, down)
        self.post = _Post(c, k, hidden, down, size)

    def init_from_pca(self, mean: torch.Tensor, u: torch.Tensor) -> None:
        """Start at the PCA wrapper: affine paths = PCA, non-linear paths output 0."""
        with torch.no_grad():
            self.pre.lin.weight.copy_(u.T[:, :, None, None])
            self.pre.lin.bias.copy_(-(u.T @ mean))
            self.post.lin.weight.copy_(u[:, :, None, None])
            self.post.lin.bias.copy_(mean)
            for last in (self.pre.n2, self.post.n3):
                last.weight.zero_()
                last.bias.zero_()


class LearnedWrapper(FittedWrapper):
    method = "learned"
    description = "small conv pre/post networks (k channels, optional 2x down-sampling), trained"

    def __init__(self, meta: dict[str, Any], nets: LearnedNets, importance: dict[str, torch.Tensor] | None = None):
        super().__init__(meta, importance)
        self.nets = nets.eval()
        for p in self.nets.parameters():
            p.requires_grad_(False)

    @staticmethod
    def build(meta: dict[str, Any]) -> LearnedNets:
        return LearnedNets(int(meta["channels_in"]), int(meta["k"]), int(meta.get("hidden", 64)),
                           int(meta.get("down", 1)), (int(meta["height"]), int(meta["width"])))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.nets.pre(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.nets.post(z)

    def state(self) -> dict[str, torch.Tensor]:
        return dict(self.nets.state_dict())

    @classmethod
    def from_state(cls, meta, params, importance, path: Path) -> "LearnedWrapper":
        for key in ("height", "width"):
            if key not in meta:
                raise WeightsError(f"wrapper file {path}: metadata lacks {key!r}")
        try:
            nets = cls.build(meta)
        except (ParameterError, ValueError, RuntimeError) as exc:
            raise WeightsError(f"wrapper file {path}: bad architecture in metadata ({exc})") from None
        expected = nets.state_dict()
        if set(params) != set(expected):
            missing = sorted(set(expected) - set(params))[:3]
            extra = sorted(set(params) - set(expected))[:3]
            raise WeightsError(f"wrapper file {path}: parameters do not fit the network (missing {missing}, extra {extra})")
        for name, t in params.items():
            if tuple(t.shape) != tuple(expected[name].shape):
                raise WeightsError(
                    f"wrapper file {path}: parameter {name} is {tuple(t.shape)}, expected {tuple(expected[name].shape)}")
        nets.load_state_dict({k: v.float() for k, v in params.items()})
        return cls(meta, nets, importance)

    def num_parameters(self) -> int:
        return int(sum(p.numel() for p in self.nets.parameters()))


def pca_init(nets: LearnedNets, features: torch.Tensor) -> None:
    """Initialise ``nets`` from the PCA of (N, C, H, W) ``features``."""
    k = nets.pre.lin.out_channels
    pca = PCAWrapper.fit(features, k, {"tensor": "x", "channels_in": features.shape[1], "k": k,
                                       "model": "", "split": ""})
    nets.init_from_pca(pca.mean, pca.components)


@WRAPPERS.register("learned")
def load_learned(model_name: str, split: str, path: str | None = None) -> FeatureWrapper:
    """small conv pre/post networks (k channels, optional 2x down-sampling), trained with a proxy codec"""
    return load_fitted(LearnedWrapper, model_name, split, path)
