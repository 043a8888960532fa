"""K-fold splits of a dataset: the folds, and the views of the dataset that a fold's trainer
and its sweep see (``datasplit.kfold_split`` deals the images)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..datasplit import kfold_split
from .datasets import Dataset


@dataclass
class Fold:
    index: int
    k: int
    seed: int
    train_ids: list[int]
    held_out_ids: list[int]

    def to_json(self) -> dict[str, Any]:
        return {"fold": self.index, "k": self.k, "seed": self.seed, "train_image_ids": self.train_ids,
                "held_out_image_ids": self.held_out_ids}


def plan_folds(dataset: Dataset, k: int, seed: int = 0) -> list[Fold]:
    """K folds of the dataset's images (sorted by id): each image held out exactly once."""
    images = sorted(dataset.images, key=lambda im: im.id)
    groups = kfold_split(images, k, seed)
    out = []
    for i, group in enumerate(groups):
        held = [im.id for im in group]
        train = [im.id for g in groups if g is not group for im in g]
        out.append(Fold(i, k, seed, sorted(train), held))
    return out


def training_view(dataset: Dataset, fold: Fold) -> Dataset:
    """The dataset as the trainers see it for ``fold`` (``datasplit.train_val_images``)."""
    view = replace(dataset)
    view.fold = (list(fold.train_ids), list(fold.held_out_ids))
    return view


def held_out_view(dataset: Dataset, fold: Fold) -> Dataset:
    """Only the held-out images of ``fold`` (and their annotations): what its model is swept on."""
    keep = set(fold.held_out_ids)
    anns = None if dataset.annotations is None else [a for a in dataset.annotations if a["image_id"] in keep]
    return replace(dataset, images=[im for im in dataset.images if im.id in keep], annotations=anns)
