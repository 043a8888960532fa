"""The distortions a learned codec can be trained with (``--loss feature|deep|task``) and
the frozen-remainder runner ``deep_fn`` (also used by ``fcm train-direct --distill-layer``);
see ``fcmcore.learned.train`` for how the trainer weighs them."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import ParameterError
from ..training import distortion as shared_distortion
from .bank import trunk_name

LOSSES = ("feature", "deep", "task")
# nominal lambda -> distortion weight, per loss (see the module docstring); deep is normalised
# per channel like feature, task is a KL summed over 90 classes per anchor. Both from the slope
# dD_feature/dD_loss along the feature-loss hyperprior (val): deep ~0.94 (ec12) / 1.08 (ec15),
# task 0.34..0.66 (geometric mean 0.47): equal marginal rate cost -> about equal rates
LAMBDA_SCALE = {"feature": 1.0, "deep": 1.0, "task": 0.5}
DEFAULT_DEEP_LAYER = "expanded_conv_12"


def deep_fn(model, split: str, layer: str) -> tuple[Callable[[torch.Tensor], torch.Tensor], int]:
    """x at ``split`` -> the tensor at ``layer`` (a later cut: a stage name or ``map0``)
    through the frozen network (``SplitModel.run_between``), differentiable w.r.t. x (its
    weights are buffers, so nothing of the detector is trained)."""
    trunk = trunk_name(model, split)
    cuts = model.cut_points()
    if layer not in cuts or layer == "input":
        raise ParameterError(f"unknown deep layer {layer!r}; use map0 or a stage name after {split}")
    if cuts.index(layer) <= cuts.index(split):
        raise ParameterError(f"deep layer {layer} is not after split {split}")

    def run(x: torch.Tensor) -> torch.Tensor:
        return model.run_between({trunk: x}, split, layer)[layer]

    with torch.no_grad():
        c = run(torch.zeros(1, *model.split_point(split).tensors[trunk])).shape[1]
    return run, c


def raw_distortion(loss: str, model, model_name: str, split: str, deep_layer: str, train: torch.Tensor
                   ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """The deep or task distortion f(x_hat, x) on raw split features, targets computed per
    batch (``train``: the train bank, for the normalising statistics); None for feature (its
    callers keep their normalised MSE). For trainers that cannot precompute deep targets
    (``train-direct``: its inputs are the student's outputs)."""
    if loss == "feature":
        return None
    if loss == "task":
        # why: the distortion the wrappers train with too (one definition, fcmcore.training)
        return shared_distortion.task_distortion(model_name, split, float(train.float().var()))
    if loss != "deep":
        raise ParameterError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")
    deep, _ = deep_fn(model, split, deep_layer)
    with torch.no_grad():
        sample = train[torch.arange(0, len(train), max(1, len(train) // 256))].float()
        std = torch.cat([deep(sample[i:i + 64]) for i in range(0, len(sample), 64)]).std(dim=(0, 2, 3))
    std = std.clamp_min(1e-3).view(1, -1, 1, 1)

    def deep_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = deep(x)
        return F.mse_loss(deep(x_hat) / std, target / std)

    return deep_loss
