"""The learned codecs' feature bank (``fcm train-codec``, ``fcm train-direct``).

Each train image is augmented ``variants`` times (variant 0 is the image itself; the others
are ``training.augment``'s "crop35-zoom" views: random crops of 35-100 % of the area with
aspect jitter, horizontal flips, and zoom-outs onto a grey canvas, all *before* the head),
and the head is run once per variant. Features are stored in float16, image by image; the
val images as they are. Cached in ``$FCM_CACHE_DIR/learned_banks`` (``training.cached_bank``),
keyed by everything that changes it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..errors import ParameterError
from ..models import load_model
from ..paths import cache_dir
from ..training import augment as augment_view
from ..training import cached_bank, collect_views, feature_extractor, single_tensor, train_val_records


BANK_VERSION = 2


def dataset_images(dataset) -> tuple[list[Path], list[Path], Any]:
    """(train image paths, val image paths, dataset) with the project's one split
    (``training.train_val_records``)."""
    train, val = train_val_records(dataset)
    return [im.path for im in train], [im.path for im in val], dataset


def augment(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One random variant by the codecs' recipe (``training.augment``, "crop35-zoom")."""
    return augment_view(image, rng, "crop35-zoom")


def trunk_name(model, split: str) -> str:
    return single_tensor(model, split, "learned codecs")


def build_bank(model_name: str, dataset, split: str, variants: int, seed: int,
               keep_images: bool = False, progress: bool = True) -> dict[str, Any]:
    """Features (float16) of ``variants`` augmentations of every train image (variant 0 is
    the image itself; layout image by image), and of the val images as they are. With
    ``keep_images`` also the model inputs (uint8, 300x300) for direct coding. Cached on
    disk, keyed by everything that changes it."""
    if variants < 1:
        raise ParameterError("variants must be >= 1")
    model = load_model(model_name)
    name = trunk_name(model, split)
    train, val = train_val_records(dataset)
    paths = [im.path for im in train + val]
    key = hashlib.sha256(json.dumps({
        "v": BANK_VERSION, "model": model_name, "split": split, "variants": variants, "seed": seed,
        "images": [str(p.resolve()) for p in paths], "keep_images": keep_images,
        "sizes": [p.stat().st_size for p in paths],
    }).encode()).hexdigest()[:16]
    head = feature_extractor(model, split, name, keep_input=True)

    def run(pil) -> tuple[torch.Tensor, torch.Tensor]:
        f, x = head(pil)
        return f.half(), ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)

    def build() -> dict[str, Any]:
        bar = tqdm(total=len(train), desc=f"feature bank ({len(train)} images x {variants})", disable=not progress)
        per_image = collect_views(train, run, variants - 1, np.random.default_rng(seed), "crop35-zoom",
                                  lambda done, total: bar.update(1))
        bar.close()
        items = [v for views in per_image for v in views]
        vals = [views[0] for views in collect_views(val, run)]
        bank = {"train": torch.stack([f for f, _ in items]), "val": torch.stack([f for f, _ in vals]), "tensor": name,
                "num_train_images": len(train), "num_val_images": len(val), "variants": variants}
        if keep_images:
            bank["train_images"] = torch.stack([x for _, x in items])
            bank["val_images"] = torch.stack([x for _, x in vals])
        return bank

    return cached_bank(cache_dir() / "learned_banks" / f"{model_name}_{split}_{key}.pt", build)[0]
