"""The one train/validation split every trained part uses (wrappers, learned codecs).

Images are ordered by COCO image id (or file name); every 4th one (index % 4 == 3) is held
out for validation. Deterministic, so a result measured on "val" never saw training data.
"""

from __future__ import annotations

import random
from typing import Sequence, TypeVar

from .errors import ParameterError

T = TypeVar("T")

VAL_EVERY = 4


def split_train_val(items: Sequence[T]) -> tuple[list[T], list[T]]:
    """(train, val) from items already sorted by image id (or name)."""
    train = [x for i, x in enumerate(items) if i % VAL_EVERY != VAL_EVERY - 1]
    val = [x for i, x in enumerate(items) if i % VAL_EVERY == VAL_EVERY - 1]
    return train, val


def subset(items: Sequence[T], which: str) -> list[T]:
    """which: 'all', 'train' or 'val'."""
    if which == "all":
        return list(items)
    train, val = split_train_val(items)
    if which == "train":
        return train
    if which == "val":
        return val

    raise ParameterError(f"subset must be all, train or val, not {which!r}")


# -- k-fold (fcmcore.evaluate.kfold: every image held out once) --------------------------------

def kfold_split(items: Sequence[T], k: int, seed: int = 0) -> list[list[T]]:
    """``k`` folds of ``items`` (sorted by image id or name): the positions are shuffled with
    ``random.Random(seed)`` and dealt round-robin, so fold sizes differ by at most one; each
    fold keeps the items' order. Every item is in exactly one fold."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ParameterError(f"--folds must be an integer of at least 2, got {k!r}")
    if k > len(items):
        raise ParameterError(f"--folds {k}: only {len(items)} images to split")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    fold_of = {pos: n % k for n, pos in enumerate(order)}
    return [[x for pos, x in enumerate(items) if fold_of[pos] == f] for f in range(k)]


def train_val_images(dataset, images: Sequence[T] | None = None) -> tuple[list[T], list[T]]:
    """(train, val) images for training on a loaded dataset: ``split_train_val`` of
    ``images`` (default: ``dataset.images``), unless the dataset carries a k-fold ``fold``
    (``(train_ids, held_out_ids)``, set by ``fcmcore.evaluate.kfold``): then the images of
    the other folds are trained on and the held-out fold is the val part (reported, never
    trained on)."""
    items = list(dataset.images if images is None else images)
    fold = getattr(dataset, "fold", None)
    if fold is None:
        return split_train_val(items)
    train_ids, held_out = set(fold[0]), set(fold[1])
    if train_ids & held_out:
        raise ParameterError("k-fold: an image is both trained on and held out")
    return [x for x in items if x.id in train_ids], [x for x in items if x.id in held_out]
