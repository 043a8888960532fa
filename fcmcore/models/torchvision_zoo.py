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

Weights (``torchvision_weights``): ``pretrained=True`` loads torchvision's COCO weights from
the torch hub cache, offline and weights-only; ``pretrained=False`` builds random weights
(tests). The adapter itself is ``torchvision_detector``; this module holds the specs and
registers one factory per spec.

Labels are COCO category ids: torchvision's detection models predict indices into
``weights.meta["categories"]``, whose index is the COCO category id (1..90). The ten ids
COCO never used ("N/A") and the background index are dropped.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from torch import nn

from ..errors import ParameterError, WeightsError
from ..registry import MODELS
from .torchvision_detector import DetectorSpec, ResNetFPNDetector, SSDLiteDetector, TorchvisionDetector
from .torchvision_weights import fetch_command, safe_hub_loading, weights_enum, weights_file, weights_hint

__all__ = ["SPECS", "DetectorSpec", "TorchvisionDetector", "fetch_command", "weights_file"]

SPECS: dict[str, DetectorSpec] = {
    s.name: s
    for s in (
        DetectorSpec("fasterrcnn_resnet50_fpn_v2", "rcnn", "box_score_thresh", "Faster R-CNN ResNet-50 FPN v2"),
        DetectorSpec("retinanet_resnet50_fpn_v2", "retinanet", "score_thresh", "RetinaNet ResNet-50 FPN v2"),
        DetectorSpec("fcos_resnet50_fpn", "fcos", "score_thresh", "FCOS ResNet-50 FPN"),
        DetectorSpec("ssdlite320_mobilenet_v3_large", "ssdlite", "score_thresh", "SSDlite320 MobileNetV3-Large",
              resizable=False),
    )
}


def _build(spec: DetectorSpec, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
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
            f"{spec.name}: pretrained weights file {path} is missing " + weights_hint(spec.name)
        )
    try:
        with safe_hub_loading(spec.name, path):
            return builder(weights=weights_enum(spec.name).DEFAULT, **kwargs)
    except WeightsError:
        raise
    except TypeError as exc:
        raise ParameterError(f"{spec.name}: {exc}") from None
    except Exception as exc:  # a state dict for another architecture
        reason = (str(exc).strip().splitlines() or [""])[0][:160]
        raise WeightsError(
            f"{spec.name}: cannot load weights {path} ({type(exc).__name__}: {reason}); "
            "delete it and fetch it again " + weights_hint(spec.name)
        ) from None


def _create(spec: DetectorSpec, pretrained: bool, min_size: int | None, score_thresh: float | None,
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
    categories = list(weights_enum(spec.name).DEFAULT.meta["categories"])
    cls = SSDLiteDetector if spec.kind == "ssdlite" else ResNetFPNDetector
    return cls(spec, model, categories)


def _register(spec: DetectorSpec) -> None:
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


for _spec in SPECS.values():
    _register(_spec)
