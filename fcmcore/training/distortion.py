"""The task distortion every trainer shares: the detector's own outputs distilled.

``task_distortion(model_name, split, feat_var)`` -> f(x_hat, x): Bernoulli KL of the class
scores plus score-weighted smooth-L1 of the box regressions, both vs the uncompressed run's
outputs from ``x``, plus 0.1 x the feature MSE normalised by ``feat_var``. Used by the
wrappers (``wrappers.training.make_distortion("task")``) and the learned codecs
(``fcm train-codec --loss task``): one definition, here below both of them.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import ParameterError
from ..models import load_model
from ..models.base import Features, SplitModel


def detector_outputs(model: SplitModel, features: Features, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(class logits (N, anchors*K), box regressions (N, anchors*4)) from the features at
    ``split``: the detector's raw outputs (``SplitModel.predict``), flattened per sample."""
    raw = model.predict(features, split)
    n = raw["cls_logits"].shape[0]
    return raw["cls_logits"].reshape(n, -1), raw["bbox_regression"].reshape(n, -1)


def bernoulli_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(Bernoulli(sigmoid(p)) || Bernoulli(sigmoid(q))), elementwise."""
    p = torch.sigmoid(p_logits)
    return p * (F.logsigmoid(p_logits) - F.logsigmoid(q_logits)) + (1 - p) * (
        F.logsigmoid(-p_logits) - F.logsigmoid(-q_logits))


def task_distortion(model_name: str, split: str, feat_var: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    model = load_model(model_name)
    tensors = model.split_point(split).tensors
    if len(tensors) != 1:
        raise ParameterError(f"split {split} carries several tensors; the task distortion needs a single-tensor split")
    trunk = next(iter(tensors))

    def task_loss(x_hat, x):
        n = x.shape[0]
        with torch.no_grad():
            t_logits, t_boxes = detector_outputs(model, {trunk: x}, split)
        logits, boxes = detector_outputs(model, {trunk: x_hat}, split)
        k = logits.shape[1] // boxes.view(n, -1, 4).shape[1]  # classes per anchor (91 for COCO SSD)
        t_logits, logits = t_logits.view(n, -1, k), logits.view(n, -1, k)
        kl = bernoulli_kl(t_logits[..., 1:], logits[..., 1:]).sum(-1).mean()
        fg = torch.sigmoid(t_logits[..., 1:]).amax(-1)  # (n, anchors)
        box = F.smooth_l1_loss(boxes.view(n, -1, 4), t_boxes.view(n, -1, 4), reduction="none").sum(-1)
        box = (fg * box).sum() / fg.sum().clamp_min(1e-6)
        return kl + box + 0.1 * F.mse_loss(x_hat, x) / feat_var

    return task_loss
