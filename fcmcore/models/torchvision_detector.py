"""The split-model adapter of the torchvision detectors (``torchvision_zoo`` registers them).

``TorchvisionDetector`` runs torchvision's own modules: ``preprocess`` is the model's
transform, ``head`` runs the backbone up to the split, ``tail`` the rest, the detection
heads and the transform's postprocess; ``head`` then ``tail`` gives bit-identical detections
to ``detect``. The two families differ only in how the backbone is cut and the pyramid
merged: ``ResNetFPNDetector`` (Faster R-CNN, RetinaNet, FCOS) and ``SSDLiteDetector``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import ParameterError
from .base import Detection, Features, ImageMeta, SplitModel, SplitPoint
from .torchvision_weights import weights_enum


@dataclass(frozen=True)
class DetectorSpec:
    name: str  # also the torchvision builder's name
    kind: str  # "rcnn" | "retinanet" | "fcos" | "ssdlite": how the pyramid becomes boxes
    score_kwarg: str  # builder keyword of the score floor
    title: str
    resizable: bool = True  # False: fixed input size, min_size does not apply


RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")


def _halve(n: int, times: int) -> int:
    """Spatial size after ``times`` stride-2 layers (conv k3/p1, k5/p2, k7/p3, maxpool k3/p1
    or k1/p0 all give ceil(n / 2))."""
    for _ in range(times):
        n = (n + 1) // 2
    return n


def _out_channels(module: nn.Module) -> int:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


def _image_tensor(image: Image.Image) -> torch.Tensor:
    if not isinstance(image, Image.Image):
        raise ParameterError(f"expected a PIL image, got {type(image).__name__}")
    rgb = np.asarray(image.convert("RGB"))
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(255.0)  # (3, H, W) in [0, 1]


class TorchvisionDetector(SplitModel):
    """Common part: a torchvision detector seen as a list of sequential backbone steps,
    a merge of the steps' outputs into the detection pyramid (FPN, or nothing for SSD),
    and the detector's own heads + postprocess.

    Subclasses fill ``_steps`` (name, module, stride-2 layers inside), ``_maps`` (step name
    -> torchvision backbone output key, for the steps the pyramid reads), ``_split_steps``
    and ``_pyramid`` (readable name, torchvision key), and implement ``_merge``.
    """

    pyramid_split: str = "fpn"

    def __init__(self, spec: DetectorSpec, model: nn.Module, categories: list[str]):
        self.spec = spec
        self.name = spec.name
        self.model = model
        self.categories = categories
        self._steps: list[tuple[str, nn.Module, int]] = []
        self._maps: dict[str, str] = {}
        self._split_steps: list[str] = []
        self._pyramid: list[tuple[str, str]] = []
        self._pyramid_channels = 0
        self._setup()
        box_map = weights_enum(spec.name).DEFAULT.meta.get("_metrics", {}).get("COCO-val2017", {}).get("box_map")
        self.description = (
            f"{spec.title} (torchvision{f', COCO box mAP {box_map}' if box_map else ''}); input "
            f"{self._nominal_desc()}; splits after backbone stages and after the "
            f"{'FPN' if self.pyramid_split == 'fpn' else 'extra layers'}"
        )
        self._split_points = self._make_split_points()

    # -- structure -------------------------------------------------------------------

    def _setup(self) -> None:
        raise NotImplementedError

    def _merge(self, maps: "OrderedDict[str, torch.Tensor]") -> "OrderedDict[str, torch.Tensor]":
        """Backbone outputs (torchvision keys) -> detection pyramid (torchvision keys)."""
        raise NotImplementedError

    def _crossing(self, split: str) -> list[str]:
        if split == self.pyramid_split:
            return [readable for readable, _ in self._pyramid]
        names = [s[0] for s in self._steps]
        k = names.index(split)
        return [n for n in names[:k] if n in self._maps] + [split]

    def _nominal_input(self) -> tuple[int, int]:
        """Padded network input (H, W) for a square image: the transform resizes its sides
        to min_size (or the fixed size) and pads up to a multiple of size_divisible."""
        t = self.model.transform
        if t.fixed_size is not None:
            h, w = int(t.fixed_size[1]), int(t.fixed_size[0])
        else:
            h = w = min(int(t.min_size[-1]), int(t.max_size))
        d = int(t.size_divisible)
        return math.ceil(h / d) * d, math.ceil(w / d) * d

    def _nominal_desc(self) -> str:
        h, w = self._nominal_input()
        t = self.model.transform
        if t.fixed_size is not None:
            return f"resized to {w}x{h}"
        return f"short side resized to {t.min_size[-1]} (max {t.max_size}), padded to /{t.size_divisible}"

    def _shapes(self, input_hw: tuple[int, int]) -> dict[str, dict[str, tuple[int, int, int]]]:
        """Split name -> tensor name -> (C, H, W) for a padded network input of ``input_hw``."""
        h, w = input_hw
        step_shapes: dict[str, tuple[int, int, int]] = {}
        halvings = 0
        for name, module, stride2 in self._steps:
            halvings += stride2
            step_shapes[name] = (_out_channels(module), _halve(h, halvings), _halve(w, halvings))
        pyramid_shapes: dict[str, tuple[int, int, int]] = {}
        if self.pyramid_split == "fpn":
            level = None
            for readable, _ in self._pyramid:
                level = int(readable[1:])
                pyramid_shapes[readable] = (self._pyramid_channels, _halve(h, level), _halve(w, level))
        else:
            pyramid_shapes = {readable: step_shapes[readable] for readable, _ in self._pyramid}
        out = {}
        for split in self._split_steps:
            out[split] = {n: step_shapes[n] for n in self._crossing(split)}
        out[self.pyramid_split] = pyramid_shapes
        return out

    def _make_split_points(self) -> list[SplitPoint]:
        nominal = self._nominal_input()
        shapes = self._shapes(nominal)
        at = f"for a {nominal[1]}x{nominal[0]} network input (a square image)"
        points = []
        for depth, split in enumerate([*self._split_steps, self.pyramid_split], start=1):
            names = ", ".join(shapes[split])
            if split == self.pyramid_split:
                text = f"after the {'FPN' if split == 'fpn' else 'extra layers'}: every detection map ({names}), {at}"
            else:
                text = f"after backbone stage {split}: {names}, {at}"
            points.append(SplitPoint(split, shapes[split], depth, text))
        return points

    def split_points(self) -> list[SplitPoint]:
        return list(self._split_points)

    # -- stages ----------------------------------------------------------------------

    def preprocess(self, image: Image.Image) -> tuple[torch.Tensor, ImageMeta]:
        t = _image_tensor(image)
        with torch.inference_mode():
            images, _ = self.model.transform([t])
        rh, rw = (int(v) for v in images.image_sizes[0])
        ih, iw = (int(v) for v in images.tensors.shape[-2:])
        meta = ImageMeta(width=int(t.shape[2]), height=int(t.shape[1]),
                         extra={"resized_size": [rh, rw], "input_size": [ih, iw]})
        return images.tensors, meta

    def head(self, x: torch.Tensor, split: str) -> Features:
        self.split_point(split)  # unknown split -> UnknownNameError
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != 3:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ParameterError(f"{self.name}: head expects a (1, 3, H, W) tensor from preprocess, got {got}")
        wanted = self._crossing(split)
        out: dict[str, torch.Tensor] = {}
        with torch.inference_mode():
            x = x.float()
            maps: OrderedDict[str, torch.Tensor] = OrderedDict()
            for name, module, _ in self._steps:
                x = module(x)
                if name in self._maps:
                    maps[self._maps[name]] = x
                if name in wanted:
                    out[name] = x
                if name == split:
                    return {n: out[n] for n in wanted}
            pyramid = self._merge(maps)
            return {readable: pyramid[key] for readable, key in self._pyramid}

    def tail(self, features: Features, split: str, meta: ImageMeta) -> list[Detection]:
        self.split_point(split)
        resized, input_size = self._sizes(meta)
        feats = self._check_features(features, split, self._shapes(input_size)[split])
        with torch.inference_mode():
            if split == self.pyramid_split:
                pyramid = OrderedDict((key, feats[readable]) for readable, key in self._pyramid)
            else:
                maps: OrderedDict[str, torch.Tensor] = OrderedDict()
                x = feats[split]
                started = False
                for name, module, _ in self._steps:
                    if started:
                        x = module(x)
                    if name in self._maps:
                        maps[self._maps[name]] = x if started else feats[name]
                    started = started or name == split
                pyramid = self._merge(maps)
            from torchvision.models.detection.image_list import ImageList  # why: torchvision is heavy; only zoo models load it

            # Anchor generators read only the padded input's shape, never its pixels.
            images = ImageList(torch.zeros(()).expand(1, 3, *input_size), [resized])
            detections = self._detections_from_pyramid(pyramid, images)
            detections = self.model.transform.postprocess(detections, [resized], [(meta.height, meta.width)])
        return self._to_detections(detections[0])

    def detect(self, image: Image.Image) -> list[Detection]:
        t = _image_tensor(image)
        with torch.inference_mode():
            out = self.model([t])
        return self._to_detections(out[0])

    # -- internals -------------------------------------------------------------------

    def _detections_from_pyramid(self, pyramid: "OrderedDict[str, torch.Tensor]", images: Any) -> list[dict]:
        """The end of the detector's own ``forward`` (eval branch), from the pyramid on."""
        m = self.model
        kind = self.spec.kind
        if kind == "rcnn":
            proposals, _ = m.rpn(images, pyramid)
            detections, _ = m.roi_heads(pyramid, proposals, images.image_sizes)
            return detections
        feats = list(pyramid.values())
        head_outputs = m.head(feats)
        anchors = m.anchor_generator(images, feats)
        if kind == "ssdlite":
            return m.postprocess_detections(head_outputs, anchors, images.image_sizes)
        per_level = [f.size(2) * f.size(3) for f in feats]
        if kind == "retinanet":  # A anchors per location
            a = head_outputs["cls_logits"].size(1) // sum(per_level)
            per_level = [hw * a for hw in per_level]
        split_outputs = {k: list(v.split(per_level, dim=1)) for k, v in head_outputs.items()}
        split_anchors = [list(a.split(per_level)) for a in anchors]
        return m.postprocess_detections(split_outputs, split_anchors, images.image_sizes)

    def _sizes(self, meta: ImageMeta) -> tuple[tuple[int, int], tuple[int, int]]:
        """(resized (H, W), padded input (H, W)) from preprocess's meta, or recomputed by the
        model's transform when the meta carries only the image size."""
        if not isinstance(meta, ImageMeta) or int(meta.width) < 1 or int(meta.height) < 1:
            raise ParameterError(f"{self.name}: tail needs the ImageMeta returned by preprocess")
        extra = meta.extra or {}
        try:
            if "resized_size" in extra and "input_size" in extra:
                rh, rw = (int(v) for v in extra["resized_size"])
                ih, iw = (int(v) for v in extra["input_size"])
                if not (0 < rh <= ih and 0 < rw <= iw):
                    raise ValueError
                return (rh, rw), (ih, iw)
        except (TypeError, ValueError):
            raise ParameterError(
                f"{self.name}: meta.extra resized_size/input_size must be (H, W) pairs with resized "
                f"<= input, got {extra.get('resized_size')!r} / {extra.get('input_size')!r}"
            ) from None
        with torch.inference_mode():
            images, _ = self.model.transform([torch.zeros(3, int(meta.height), int(meta.width))])
        rh, rw = (int(v) for v in images.image_sizes[0])
        ih, iw = (int(v) for v in images.tensors.shape[-2:])
        return (rh, rw), (ih, iw)

    def _check_features(self, features: Features, split: str,
                        expected: dict[str, tuple[int, int, int]]) -> dict[str, torch.Tensor]:
        where = f"{self.name} split {split!r}"
        if not isinstance(features, dict):
            raise ParameterError(f"{where}: features must be a name -> tensor mapping, got {type(features).__name__}")
        missing = [n for n in expected if n not in features]
        unexpected = [n for n in features if n not in expected]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if unexpected:
                parts.append(f"unexpected {', '.join(map(str, unexpected))}")
            raise ParameterError(f"{where} needs tensors {', '.join(expected)}: {'; '.join(parts)}")
        out = {}
        for name, (c, h, w) in expected.items():
            t = features[name]
            if not isinstance(t, torch.Tensor):
                raise ParameterError(f"{where}: {name!r} is a {type(t).__name__}, not a tensor")
            if tuple(t.shape) != (1, c, h, w):
                raise ParameterError(f"{where}: {name!r} has shape {tuple(t.shape)}, expected {(1, c, h, w)}")
            if not t.is_floating_point():
                raise ParameterError(f"{where}: {name!r} has dtype {t.dtype}, expected a float tensor")
            t = t.to(torch.float32)
            if not bool(torch.isfinite(t).all()):
                raise ParameterError(f"{where}: {name!r} contains NaN or infinite values")
            out[name] = t
        return out

    def _to_detections(self, result: dict[str, torch.Tensor]) -> list[Detection]:
        cats = self.categories
        dets = []
        for box, score, label in zip(result["boxes"].tolist(), result["scores"].tolist(), result["labels"].tolist()):
            label = int(label)
            if 0 < label < len(cats) and cats[label] != "N/A":
                dets.append(Detection(label=cats[label], category_id=label, score=float(score),
                                      box=(float(box[0]), float(box[1]), float(box[2]), float(box[3]))))
        dets.sort(key=lambda d: -d.score)  # stable: keeps the model's order among ties
        return dets


class ResNetFPNDetector(TorchvisionDetector):
    """Faster R-CNN / RetinaNet / FCOS: ResNet body (IntermediateLayerGetter) + FPN."""

    pyramid_split = "fpn"

    def _setup(self) -> None:
        from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7  # why: torchvision is heavy; only zoo models load it

        body = self.model.backbone.body
        stem = nn.Sequential(body.conv1, body.bn1, body.relu, body.maxpool)  # same modules, same order
        self._steps = [("stem", stem, 2)] + [(s, getattr(body, s), 0 if s == "layer1" else 1) for s in RESNET_STAGES]
        self._maps = {s: body.return_layers[s] for s in RESNET_STAGES if s in body.return_layers}
        self._split_steps = list(RESNET_STAGES)
        extra = self.model.backbone.fpn.extra_blocks
        if isinstance(extra, LastLevelMaxPool):
            extra_keys = ["pool"]
        elif isinstance(extra, LastLevelP6P7):
            extra_keys = ["p6", "p7"]
        elif extra is None:
            extra_keys = []
        else:
            raise TypeError(f"unsupported FPN extra block {type(extra).__name__}")
        keys = list(self._maps.values()) + extra_keys
        first_level = RESNET_STAGES.index(next(iter(self._maps))) + 2  # layer1 -> P2 (stride 4)
        self._pyramid = [(f"p{first_level + i}", key) for i, key in enumerate(keys)]
        self._pyramid_channels = int(self.model.backbone.out_channels)

    def _merge(self, maps):
        return self.model.backbone.fpn(maps)


class SSDLiteDetector(TorchvisionDetector):
    """SSDlite: MobileNetV3 features in two parts (to the C4 expansion layer, the rest),
    then four extra blocks; the six outputs feed the heads directly."""

    pyramid_split = "extra"

    def _setup(self) -> None:
        bb = self.model.backbone
        part0, part1 = bb.features[0], bb.features[1]
        strided = [i for i, b in enumerate(part0) if getattr(b, "_is_cn", False)]
        c3_end = strided[-1]  # first block of the stride-16 stage
        self._steps = [
            ("c3", part0[:c3_end], 3),
            ("c4", part0[c3_end:], 1),
            ("c5", part1, 1),
        ] + [(f"extra{i + 1}", block, 1) for i, block in enumerate(bb.extra)]
        self._maps = {name: str(i) for i, (name, _, _) in enumerate(self._steps[1:])}
        self._split_steps = ["c3", "c4", "c5"]
        self._pyramid = list(self._maps.items())

    def _merge(self, maps):
        return maps
