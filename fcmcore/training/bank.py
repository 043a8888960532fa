"""Feature banks: the model's split tensors over a dataset's train/val images, computed once.

``train_val_records`` gives the project's one split (``datasplit``), ``feature_extractor``
runs the head through the model's public API (``preprocess`` + ``head``), ``collect_views``
runs an extractor over every train image and its seeded random views (``augment``), and
``cached_bank`` keeps a bank on disk as a weights-only checkpoint. The layout (image-major,
plain views first, float16...) is the trainer's choice: each keeps the one its committed
weights were trained on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from ..checkpoints import load_checkpoint, save_checkpoint
from ..datasplit import train_val_images
from ..errors import InputError, ParameterError, WeightsError
from ..imageio import load_image
from .augment import augment

T = TypeVar("T")


def train_val_records(dataset) -> tuple[list[Any], list[Any]]:
    """(train, val) image records of a loaded dataset (``fcmcore.evaluate.load_dataset``:
    anything whose ``images`` have ``id`` and ``path``; the command layer loads it, so no
    trainer imports evaluate), sorted by id and split by ``datasplit`` (the project's one split,
    or a k-fold fold's: ``datasplit.train_val_images``)."""
    if not hasattr(dataset, "images"):
        raise ParameterError(f"expected a loaded dataset (fcmcore.evaluate.load_dataset), got {type(dataset).__name__}")
    train, val = train_val_images(dataset, sorted(dataset.images, key=lambda im: im.id))
    if not train or not val:
        name = getattr(dataset, "name", None) or getattr(dataset, "root", dataset)
        raise InputError(f"dataset {name}: needs at least 4 images for a train/val split "
                         f"(got {len(train)} train and {len(val)} val)")
    return train, val


def single_tensor(model, split: str, who: str = "trainers") -> str:
    """The one tensor name of ``split``; ParameterError for multi-tensor splits."""
    tensors = model.split_point(split).tensors
    if len(tensors) != 1:
        raise ParameterError(f"{who} need a single-tensor split; {split} of {model.name} carries "
                             f"{len(tensors)} tensors ({', '.join(tensors)})")
    return next(iter(tensors))


def feature_extractor(model, split: str, tensor: str, keep_input: bool = False) -> Callable:
    """image -> the (C, H, W) tensor at ``split`` (an ordinary tensor, usable with autograd);
    with ``keep_input`` -> (that tensor, the (3, h, w) model input)."""
    def extract(image):
        x, _ = model.preprocess(image)
        f = model.head(x, split)[tensor][0].clone()
        return (f, x[0].clone()) if keep_input else f

    return extract


def collect_views(records: Sequence[Any], extract: Callable[[Any], T], views: int = 0,
                  rng: np.random.Generator | None = None, recipe: str = "crop50",
                  progress: Callable[[int, int], None] | None = None) -> list[list[T]]:
    """Per record: ``[extract(image), extract(view 1), ..., extract(view views)]``, the views
    drawn from ``rng`` by ``recipe`` in record order (so a seed gives the same bank).
    ``progress(done, total)`` is called after each record."""
    if views and rng is None:
        raise ValueError("random views need an rng")
    out = []
    for i, rec in enumerate(records):
        image = load_image(rec.path)
        out.append([extract(image)] + [extract(augment(image, rng, recipe)) for _ in range(views)])
        if progress:
            progress(i + 1, len(records))
    return out


def log_every(n: int, log: Callable[[str], None] | None, label: str, t0: float) -> Callable[[int, int], None] | None:
    """A ``collect_views`` progress callback logging every ``n`` records (or None)."""
    if not log:
        return None

    def report(done: int, total: int) -> None:
        if done % n == 0:
            log(f"  {label}: {done}/{total} train images ({time.perf_counter() - t0:.0f} s)")

    return report


def cached_bank(path: str | Path, build: Callable[[], dict[str, Any]],
                accept: Callable[[dict[str, Any]], bool] = lambda state: True,
                on_stale: Callable[[str], None] | None = None) -> tuple[dict[str, Any], bool]:
    """-> (bank, came from the cache). The bank at ``path`` when it loads (weights-only) and
    ``accept`` takes it; otherwise ``build()``, saved there atomically."""
    path = Path(path)
    if path.is_file():
        try:
            state = load_checkpoint(path)
            if accept(state):
                return state, True
            reason = "of another layout"
        except WeightsError as exc:  # a broken (or foreign) cache file: rebuild
            reason = str(exc)
        if on_stale:
            on_stale(reason)
    state = build()
    save_checkpoint(state, path)
    return state, False
