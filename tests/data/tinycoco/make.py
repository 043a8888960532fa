"""How tests/data/tinycoco was made (run from the repository root; needs scikit-image).

    python tests/data/tinycoco/make.py            # writes images/*.jpg from skimage.data
    python tests/data/tinycoco/make.py --propose  # + detector proposals drawn on PNGs in /tmp to annotate by

The images are scikit-image's bundled CC0 / public-domain samples (see LICENSES.md), resized so the
long side is at most 512 px and re-encoded as JPEG quality 88 (grey ones as RGB). ``instances.json``
is NOT written here: its boxes were drawn by hand (detector proposals only as a starting point,
each checked and corrected on the image) and the committed file is the annotation truth.
``--check`` draws the committed ground truth onto PNGs for review.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
MAX_SIDE = 512

# (image id, file name, skimage.data function); ids in this order so ``limit=N`` keeps the
# most object-rich images first.
IMAGES = [
    (1, "chelsea.jpg", "chelsea"),
    (2, "astronaut.jpg", "astronaut"),
    (3, "coffee.jpg", "coffee"),
    (4, "camera.jpg", "camera"),
    (5, "clock.jpg", "clock"),
    (6, "horse.jpg", "horse"),
    (7, "cat_and_cup.jpg", None),  # chelsea beside coffee: two categories in one picture
    (8, "rocket.jpg", "rocket"),  # no COCO object: an image without annotations
]


def _sample(name: str) -> Image.Image:
    import skimage.data

    array = getattr(skimage.data, name)()
    if array.dtype == bool:
        array = np.where(array, 255, 0).astype(np.uint8)  # black horse on white
    image = Image.fromarray(array)
    return image.convert("RGB")


def _fit(image: Image.Image) -> Image.Image:
    scale = MAX_SIDE / max(image.size)
    if scale >= 1:
        return image
    size = (round(image.width * scale), round(image.height * scale))
    return image.resize(size, Image.LANCZOS)


def build_images() -> None:
    out = HERE / "images"
    out.mkdir(exist_ok=True)
    for _, file_name, source in IMAGES:
        if source is None:
            cat, cup = _sample("chelsea"), _sample("coffee")
            cup = cup.resize((round(cup.width * cat.height / cup.height), cat.height), Image.LANCZOS)
            image = Image.new("RGB", (cat.width + cup.width, cat.height))
            image.paste(cat, (0, 0))
            image.paste(cup, (cat.width, 0))
        else:
            image = _sample(source)
        _fit(image).save(out / file_name, quality=88)
        print(out / file_name, Image.open(out / file_name).size)


def _draw(path: Path, boxes: list[tuple[str, list[float]]], target: Path) -> None:
    image = Image.open(path).convert("RGB")
    draw = ImageDraw.Draw(image)
    for label, (x, y, w, h) in boxes:
        draw.rectangle([x, y, x + w, y + h], outline=(255, 0, 0), width=2)
        draw.text((x + 3, y + 3), label, fill=(255, 255, 0))
    image.save(target)


def propose(out: Path) -> None:
    sys.path.insert(0, str(HERE.parents[2]))
    from fcmcore.models import load_model

    model = load_model()
    for _, file_name, _ in IMAGES:
        path = HERE / "images" / file_name
        dets = [d for d in model.detect(Image.open(path).convert("RGB")) if d.score >= 0.3]
        boxes = []
        for d in dets:
            x1, y1, x2, y2 = d.box
            boxes.append((f"{d.label} {d.score:.2f}", [x1, y1, x2 - x1, y2 - y1]))
            print(file_name, d.category_id, d.label, round(d.score, 2), [round(v) for v in (x1, y1, x2 - x1, y2 - y1)])
        _draw(path, boxes, out / f"propose_{Path(file_name).stem}.png")


def check(out: Path) -> None:
    data = json.loads((HERE / "instances.json").read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    for im in data["images"]:
        boxes = [(names[a["category_id"]], a["bbox"]) for a in data["annotations"] if a["image_id"] == im["id"]]
        _draw(HERE / "images" / im["file_name"], boxes, out / f"gt_{Path(im['file_name']).stem}.png")
    print("ground truth drawn in", out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--propose", action="store_true", help="draw detector proposals (needs fcmcore)")
    parser.add_argument("--check", action="store_true", help="draw the committed instances.json")
    args = parser.parse_args()
    target = Path(tempfile.mkdtemp(prefix="tinycoco-"))
    if args.check:
        check(target)
    else:
        build_images()
        if args.propose:
            propose(target)
            print("proposals drawn in", target)
