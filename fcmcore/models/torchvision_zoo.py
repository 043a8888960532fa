"""torchvision COCO detectors, cut after a backbone stage or after the feature pyramid.

Registered models (built lazily, on first ``load_model``):

* ``fasterrcnn_resnet50_fpn_v2``: two-stage, ResNet-50 + FPN (P2..P6), RPN + RoI heads.
* ``retinanet_resnet50_fpn_v2``: one-stage, ResNet-50 (C3..C5) + FPN (P3..P7).
* ``fcos_resnet50_fpn``: anchor-free one-stage, ResNet-50 (C3..C5) + FPN (P3..P7).
* ``ssdlite320_mobilenet_v3_large``: SSDlite, MobileNetV3-Large, fixed 320x320 input.

Split points. ResNet models: ``layer1``..``layer4`` (after each ResNet stage) and ``fpn``
(after the pyramid). The FPN consumes several stages, so a cut after ``layerK`` carries
``layerK`` plus every earlier stage the FPN reads (Faster R-CNN reads layer1..4, RetinaNet
and FCOS read layer2..4): e.g. Faster R-CNN ``layer3`` = {layer1, layer2, layer3}. ``fpn``
carries every pyramid level (``p2``.. for Faster R-CNN, ``p3``..``p7`` otherwise).
SSDlite: ``c3`` (stride 8), ``c4`` (C4 expansion layer, stride 16, the first detection
map), ``c5`` (= {c4, c5}) and ``extra`` (all six detection maps).

Everything runs torchvision's own modules: ``preprocess`` is the model's transform
(normalise, resize so the short side is ``min_size``, pad to a multiple of 32), so the
tensor it returns is the *normalised* network input, not [0, 1] pixels; the resized and
padded sizes go in ``meta.extra`` (``resized_size``, ``input_size``, both (H, W)) for the
tail. ``head`` runs the backbone up to the split; ``tail`` runs the rest, the detection
heads and the transform's postprocess back to the original pixels. ``head`` then ``tail``
gives bit-identical detections to ``detect`` (the uncut ``model(image)``).

Weights: ``pretrained=True`` loads torchvision's COCO weights from the torch hub cache
(``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch``). A missing file raises
``WeightsError`` at once, naming the file and the command that fetches it; nothing is
downloaded from here. The file is read with ``torch.load(weights_only=True)``: plain tensors
only, so a planted ``.pth`` cannot run code; one that needs pickle is refused. ``pretrained=False`` builds random weights (tests).

Labels are COCO category ids: torchvision's detection models predict indices into
``weights.meta["categories"]``, whose index is the COCO category id (1..90). The ten ids
COCO never used ("N/A") and the background index are dropped.
"""

from __future__ import annotations

import math
import os
import pickle
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlparse

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import ParameterError, WeightsError
from ..imageio import open_regular_file
from ..registry import MODELS
from .base import Detection, Features, ImageMeta, SplitModel, SplitPoint


@dataclass(frozen=True)
class _Spec:
    name: str  # also the torchvision builder's name
    kind: str  # "rcnn" | "retinanet" | "fcos" | "ssdlite": how the pyramid becomes boxes
    score_kwarg: str  # builder keyword of the score floor
    title: str
    resizable: bool = True  # False: fixed input size, min_size does not apply


SPECS: dict[str, _Spec] = {
    s.name: s
    for s in (
        _Spec("fasterrcnn_resnet50_fpn_v2", "rcnn", "box_score_thresh", "Faster R-CNN ResNet-50 FPN v2"),
        _Spec("retinanet_resnet50_fpn_v2", "retinanet", "score_thresh", "RetinaNet ResNet-50 FPN v2"),
        _Spec("fcos_resnet50_fpn", "fcos", "score_thresh", "FCOS ResNet-50 FPN"),
        _Spec("ssdlite320_mobilenet_v3_large", "ssdlite", "score_thresh", "SSDlite320 MobileNetV3-Large",
              resizable=False),
    )
}

_RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")


# ---------------------------------------------------------------------------- weights


def _weights_enum(name: str) -> Any:
    import torchvision  # why: torchvision is heavy; only zoo models load it

    return torchvision.models.get_model_weights(name)


def weights_file(name: str) -> Path:
    """Where torchvision keeps (or would download) the COCO weights of model ``name``."""
    url = _weights_enum(name).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def fetch_command(name: str) -> str:
    """The one-liner that downloads ``name``'s weights into the torch hub cache."""
    return f"python -c \"import torchvision; torchvision.models.detection.{name}(weights='DEFAULT')\""


def _weights_hint(name: str) -> str:
    url = _weights_enum(name).DEFAULT.url
    torch_home = os.environ.get("TORCH_HOME") or "unset, so ~/.cache/torch"
    return (
        f"(torch hub cache; TORCH_HOME={torch_home}). torchvision downloads it from {url} on first "
        f"use, which needs internet: on a machine that has it run `{fetch_command(name)}` with the "
        f"same TORCH_HOME, or copy the file to that path"
    )


MAX_WEIGHTS_BYTES = 2 << 30  # the largest COCO detector here is ~170 MB
_hub_lock = threading.Lock()


def load_weights_file(path: Path, name: str) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth``, read as data only (``torch.load(weights_only=True)``):
    tensors, numbers, strings and containers. A file that needs pickle to rebuild anything
    else (which could run code) is refused, as is anything that is not a regular file."""
    with open_regular_file(path, MAX_WEIGHTS_BYTES, label=f"{name}: weights file {path}", error=WeightsError) as f:
        return _state_dict_from(f, path, name)


def _state_dict_from(f, path: Path, name: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Unsupported global" in text or "Unsupported class" in text:
            found = text[text.index("Unsupported"):].split(" was not")[0].split(".")[0][:80]
            raise WeightsError(
                f"{name}: weights file {path} holds objects that need pickle to load ({found}), which "
                f"could run code: refused (only plain tensors are read). Delete it and fetch it again "
                + _weights_hint(name)
            ) from None
        raise WeightsError(f"{name}: cannot load weights {path} (corrupt or not a checkpoint); delete it and "
                           "fetch it again " + _weights_hint(name)) from None
    except Exception as exc:  # truncated / corrupt / not a torch file
        reason = (str(exc).strip().splitlines() or [""])[0][:160]
        raise WeightsError(
            f"{name}: cannot load weights {path} ({type(exc).__name__}: {reason}); "
            "delete it and fetch it again " + _weights_hint(name)
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{name}: weights file {path} is not a state dict of tensors; delete it and fetch "
                           "it again " + _weights_hint(name))
    return state


@contextmanager
def _safe_hub_loading(spec_name: str, path: Path) -> Iterator[None]:
    """While the torchvision builder runs, its weights come from ``load_weights_file``.

    The builders configure the network from the weights enum (class count, frozen batch
    norms) and then call ``weights.get_state_dict()``, which unpickles the cached file with
    ``weights_only=False``. Routing that one call keeps torchvision's exact architecture
    while the file is only ever read as tensors. Any other URL is refused (no download)."""
    import torchvision.models._api as api  # why: torchvision is heavy; only zoo models load it

    def safe_state_dict(url: str, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        if os.path.basename(urlparse(url).path) != path.name:
            raise WeightsError(f"{spec_name}: unexpected extra weights {url} requested; nothing is downloaded")
        return load_weights_file(path, spec_name)

    with _hub_lock:
        original = api.load_state_dict_from_url
        api.load_state_dict_from_url = safe_state_dict
        try:
            yield
        finally:
            api.load_state_dict_from_url = original


def _build(spec: _Spec, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    import torchvision.models.detection as tvd  # why: torchvision is heavy; only zoo models load it

    builder: Callable[..., nn.Module] = getattr(tvd, spec.name)
    if not pretrained:
        try:
            return builder(weights=None, weights_backbone=None, **kwargs)
        except TypeError as exc:  # an unknown builder keyword
            raise ParameterError(f"{spec.name}: {exc}") from None
    path = weights_file(spec.name)
    if not os.path.lexists(path):  # fail fast: never let torchvision try (and hang on) a download
        raise WeightsError(
            f"{spec.name}: pretrained weights file {path} is missing " + _weights_hint(spec.name)
        )
    try:
        with _safe_hub_loading(spec.name, path):
            return builder(weights=_weights_enum(spec.name).DEFAULT, **kwargs)
    except WeightsError:
        raise
    except TypeError as exc:
        raise ParameterError(f"{spec.name}: {exc}") from None
    except Exception as exc:  # a state dict for another architecture
        reason = (str(exc).strip().splitlines() or [""])[0][:160]
        raise WeightsError(
            f"{spec.name}: cannot load weights {path} ({type(exc).__name__}: {reason}); "
            "delete it and fetch it again " + _weights_hint(spec.name)
        ) from None


def _create(spec: _Spec, pretrained: bool, min_size: int | None, score_thresh: float | None,
            builder_kwargs: dict[str, Any]) -> "TorchvisionDetector":
    kwargs = dict(builder_kwargs)
    if min_size is not None:
        if not spec.resizable:
            raise ParameterError(f"{spec.name} has a fixed 320x320 input; min_size does not apply")
        if isinstance(min_size, bool) or not isinstance(min_size, int) or not 32 <= min_size <= 4096:
            raise ParameterError(f"min_size must be an integer in 32..4096, not {min_size!r}")
        kwargs["min_size"] = min_size
        kwargs.setdefault("max_size", max(min_size, round(min_size * 1333 / 800)))  # torchvision's ratio
    if score_thresh is not None:
        if not 0.0 <= float(score_thresh) <= 1.0:
            raise ParameterError(f"score_thresh must be in 0..1, not {score_thresh!r}")
        kwargs[spec.score_kwarg] = float(score_thresh)
    model = _build(spec, bool(pretrained), kwargs).eval()
    model.requires_grad_(False)
    categories = list(_weights_enum(spec.name).DEFAULT.meta["categories"])
    cls = SSDLiteDetector if spec.kind == "ssdlite" else ResNetFPNDetector
    return cls(spec, model, categories)


def _register(spec: _Spec) -> None:
    def factory(pretrained: bool = True, *, min_size: int | None = None, score_thresh: float | None = None,
                **builder_kwargs: Any) -> TorchvisionDetector:
        return _create(spec, pretrained, min_size, score_thresh, builder_kwargs)

    factory.__name__ = spec.name
    factory.__doc__ = (
        f"{spec.title} (torchvision). pretrained: COCO weights from the torch hub cache "
        f"(WeightsError if missing) or random. min_size: short side after resize (default 800). "
        f"score_thresh: the model's score floor. Other keywords go to torchvision's builder."
    )
    MODELS.register(spec.name)(factory)


# ---------------------------------------------------------------------------- helpers


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


# ---------------------------------------------------------------------------- adapters


class TorchvisionDetector(SplitModel):
    """Common part: a torchvision detector seen as a list of sequential backbone steps,
    a merge of the steps' outputs into the detection pyramid (FPN, or nothing for SSD),
    and the detector's own heads + postprocess.

    Subclasses fill ``_steps`` (name, module, stride-2 layers inside), ``_maps`` (step name
    -> torchvision backbone output key, for the steps the pyramid reads), ``_split_steps``
    and ``_pyramid`` (readable name, torchvision key), and implement ``_merge``.
    """

    pyramid_split: str = "fpn"

    def __init__(self, spec: _Spec, model: nn.Module, categories: list[str]):
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
        box_map = _weights_enum(spec.name).DEFAULT.meta.get("_metrics", {}).get("COCO-val2017", {}).get("box_map")
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
        self._steps = [("stem", stem, 2)] + [(s, getattr(body, s), 0 if s == "layer1" else 1) for s in _RESNET_STAGES]
        self._maps = {s: body.return_layers[s] for s in _RESNET_STAGES if s in body.return_layers}
        self._split_steps = list(_RESNET_STAGES)
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
        first_level = _RESNET_STAGES.index(next(iter(self._maps))) + 2  # layer1 -> P2 (stride 4)
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


for _spec in SPECS.values():
    _register(_spec)
