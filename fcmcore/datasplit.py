"""The one train/validation split every trained part uses (wrappers, learned codecs).

Images are ordered by COCO image id (or file name); every 4th one (index % 4 == 3) is held
out for validation. Deterministic, so a result measured on "val" never saw training data.
"""

from __future__ import annotations

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
