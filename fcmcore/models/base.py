"""The model stage: a detector that can be cut in two at a named split point.

``head(image, split)`` runs the edge part and returns the tensors that cross the split;
``tail(features, split, meta)`` runs the server part and returns detections in the
original image's pixels. ``head`` then ``tail`` with nothing in between must give exactly
the same detections as ``detect``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from PIL import Image

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
        from ..errors import UnknownNameError

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
