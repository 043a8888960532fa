"""Seeded random views of a training image (applied before the head; the model then
resizes to its input size as usual).

Two recipes, each the exact sequence of ``rng`` draws the committed weights were trained
with (changing the order of draws changes every view, so they stay separate):

* ``"crop50"`` (wrappers, connectors): horizontal flip with p=0.5, then a random crop of
  50-100 % of the area with aspect 3/4..4/3.
* ``"crop35-zoom"`` (learned codecs): a random crop of 35-100 % of the area with aspect
  3/4..4/3, then a flip with p=0.5, then with p=0.25 a zoom-out onto a grey canvas
  (x1.1-1.6: objects smaller than in the photos).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from ..errors import ParameterError

RECIPES = ("crop50", "crop35-zoom")
GREY = (124, 116, 104)


def _crop(image: Image.Image, rng: np.random.Generator, min_area: float) -> Image.Image:
    w, h = image.size
    area = rng.uniform(min_area, 1.0) * w * h
    aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    cw = int(round(min(w, math.sqrt(area * aspect))))
    ch = int(round(min(h, math.sqrt(area / aspect))))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    return image.crop((x0, y0, x0 + cw, y0 + ch))


def _flip(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image


def _zoom_out(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    s = rng.uniform(1.1, 1.6)
    canvas = Image.new("RGB", (int(image.width * s), int(image.height * s)), GREY)
    canvas.paste(image, (int(rng.integers(0, canvas.width - image.width + 1)),
                         int(rng.integers(0, canvas.height - image.height + 1))))
    return canvas


def augment(image: Image.Image, rng: np.random.Generator, recipe: str = "crop50") -> Image.Image:
    """One random view of ``image`` by ``recipe`` (see the module docstring)."""
    if recipe == "crop50":
        return _crop(_flip(image, rng), rng, 0.5)
    if recipe == "crop35-zoom":
        out = _flip(_crop(image, rng, 0.35), rng)
        return _zoom_out(out, rng) if rng.random() < 0.25 else out
    raise ParameterError(f"augmentation recipe must be one of {', '.join(RECIPES)}, not {recipe!r}")
