"""The model stage: a detector that can be cut in two at a named split point.

``head(image, split)`` runs the edge part and returns the tensors that cross the split;
``tail(features, split, meta)`` runs the server part and returns detections in the
original image's pixels. ``head`` then ``tail`` with nothing in between must give exactly
the same detections as ``detect``.

Partial runs (training, importance weights, direct coding, secondary-task connectors)
use the public, differentiable pieces ``tail`` is made of (after torchvision's
``feature_extraction`` and ``SSDHead``)::

    cut_points()                       every place the network can be cut, input to output
    run_between(features, start, end)  Features at cut ``start`` -> Features at cut ``end``
    predict(features, start)           Features at ``start`` -> raw head outputs, a dict
                                       {"bbox_regression": (N, A, 4), "cls_logits": (N, A, K)}
    postprocess(raw, meta)             raw outputs of one image -> detections (decode + NMS)
    macs_between(start, end)           multiply-accumulates of that part

so that ``tail(f, split, meta) == postprocess(predict(f, split), meta)`` and
``head(x, split) == run_between({INPUT: x}, INPUT, split)``, exactly. Split points are
the cut points offered for coding; ``start=INPUT`` means the model input. Models that
cannot be cut freely raise ``PartialRunUnsupported`` (a ``ParameterError``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from PIL import Image

from ..errors import ParameterError, UnknownNameError

INPUT = "input"  # the cut before the first stage: Features {INPUT: model input}
RAW_OUTPUT_KEYS = ("bbox_regression", "cls_logits")


class PartialRunUnsupported(ParameterError):
    """The model offers no partial runs (``run_between``/``predict``) beyond head and tail."""

# The tensors that cross a split: an ordered name -> (1, C, H, W) float tensor mapping.
# Most splits carry one tensor; later ones also carry prediction maps computed earlier.
Features = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Detection:
    label: str
    category_id: int  # COCO category id (1..90), as in COCO annotation files
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in original image pixels

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["box"] = [round(float(v), 2) for v in self.box]
        d["score"] = round(float(self.score), 4)
        return d


@dataclass(frozen=True)
class SplitPoint:
    """A named place to cut a model, and the tensors that cross it.

    ``tensors`` maps tensor name -> shape (C, H, W) for the model's nominal input size
    (the real shape can differ for models that keep the image's aspect ratio).
    ``depth`` orders split points from the input (0) to the output.
    """

    name: str
    tensors: dict[str, tuple[int, int, int]]
    depth: int
    description: str = ""

    @property
    def num_values(self) -> int:
        return sum(c * h * w for c, h, w in self.tensors.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "depth": self.depth,
            "tensors": {k: list(v) for k, v in self.tensors.items()},
            "num_values": self.num_values,
            "description": self.description,
        }


@dataclass
class ImageMeta:
    """What the tail needs to know about the input image (never crosses as features)."""

    width: int
    height: int
    extra: dict[str, Any] = field(default_factory=dict)


class SplitModel:
    """Interface every detector implements. Subclasses set ``name`` and ``description``."""

    name: str = ""
    description: str = ""

    def split_points(self) -> list[SplitPoint]:
        raise NotImplementedError

    def split_point(self, name: str) -> SplitPoint:
        for sp in self.split_points():
            if sp.name == name:
                return sp
        known = ", ".join(sp.name for sp in self.split_points())
        raise UnknownNameError(f"unknown split {name!r} for model {self.name}; known: {known}")

    def preprocess(self, image: Image.Image) -> tuple[torch.Tensor, ImageMeta]:
        """PIL RGB image -> model input batch (1, 3, H, W) and the image's metadata."""
        raise NotImplementedError

    def head(self, x: torch.Tensor, split: str) -> Features:
        """Edge part: model input -> tensors crossing the split."""
        raise NotImplementedError

    def tail(self, features: Features, split: str, meta: ImageMeta) -> list[Detection]:
        """Server part: tensors crossing the split -> detections in image pixels."""
        raise NotImplementedError

    def detect(self, image: Image.Image) -> list[Detection]:
        """The whole model, uncut. Like ``tail``, returns every detection the model's own
        post-processing keeps (low score floor, e.g. 0.01); callers filter for display."""
        raise NotImplementedError

    def edge_macs(self, split: str) -> int | None:
        """Multiply-accumulates of the edge part (None when unknown)."""
        return None

    # ----- partial runs (see the module docstring); differentiable, no inference mode ------
    def cut_points(self) -> list[str]:
        """Every cut, from the input to the output (``INPUT`` first). Default: the splits."""
        return [INPUT] + [sp.name for sp in self.split_points()]

    def run_between(self, features: Features, start: str, end: str) -> Features:
        """Run the stages after cut ``start`` up to cut ``end``: the Features crossing
        ``start`` (batch N >= 1) -> the Features crossing ``end``."""
        raise PartialRunUnsupported(f"model {self.name} offers no partial runs (run_between)")

    def predict(self, features: Features, start: str) -> dict[str, torch.Tensor]:
        """The rest of the network after cut ``start`` and its prediction heads: raw
        outputs named as in ``RAW_OUTPUT_KEYS`` (before box decoding and NMS)."""
        raise PartialRunUnsupported(f"model {self.name} offers no raw head outputs (predict)")

    def postprocess(self, raw: dict[str, torch.Tensor], meta: ImageMeta) -> list[Detection]:
        """Raw outputs of one image (N = 1) -> detections in image pixels."""
        raise PartialRunUnsupported(f"model {self.name} offers no separate post-processing")

    def macs_between(self, start: str, end: str) -> int | None:
        """Multiply-accumulates of the stages between two cuts (None when unknown)."""
        return None
