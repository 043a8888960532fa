"""Datasets for evaluation: COCO-format folders, image folders with an annotation file,
or plain image folders without annotations.

Accepted layouts (``load_dataset(path, annotations=None, limit=None)``):

* ``path/`` holding ``images/`` and ``instances.json`` (COCO format);
* an image folder plus ``annotations=PATH`` to a COCO ``instances`` JSON whose
  ``file_name`` entries are relative to that folder;
* a plain image folder (no ``instances.json``): no ground truth; images get ids 1..N in
  sorted file-name order, and evaluation falls back to agreement with the uncompressed run.

``limit=N`` keeps the first N images sorted by image id. Broken inputs raise ``InputError``
with one line (missing folder, invalid JSON, no images, listed images absent on disk,
non-numeric sizes, NaN/infinite/negative boxes). Every image must resolve to a regular file
inside the image folder: ``file_name`` entries with ``..``, absolute paths and symlinks that
lead out of it are refused, so an annotation file cannot make a sweep read other files.
An image that exists but cannot be decoded is not fatal here: it is reported and skipped
when the sweep reaches it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..datasplit import subset as datasplit_subset
from ..paths import portable
from ..errors import InputError
from ..imageio import MAX_BYTES, read_regular_file

if TYPE_CHECKING:  # importing fcmcore.models loads the detectors
    from ..models.base import Detection

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jxl", ".avif"}
ANNOTATION_NAMES = ("instances.json", "annotations.json")
MAX_ANNOTATION_BYTES = 1 << 30  # COCO train2017 instances is 450 MB


@dataclass(frozen=True)
class ImageRecord:
    id: int
    file_name: str
    path: Path
    width: int | None = None  # from the annotation file (None for plain folders)
    height: int | None = None

    def read_bytes(self) -> bytes:
        return read_regular_file(self.path, MAX_BYTES, label=self.file_name)

    def sha256(self) -> str:
        return hashlib.sha256(self.read_bytes()).hexdigest()


@dataclass
class Dataset:
    """A list of images and, when annotated, the COCO ground truth restricted to them."""

    name: str
    root: Path
    images: list[ImageRecord]
    categories: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] | None = None  # None: no ground truth
    annotation_file: Path | None = None

    @property
    def has_annotations(self) -> bool:
        return self.annotations is not None

    @property
    def image_ids(self) -> list[int]:
        return [im.id for im in self.images]

    def __len__(self) -> int:
        return len(self.images)

    def image(self, image_id: int) -> ImageRecord:
        for im in self.images:
            if im.id == image_id:
                return im
        raise InputError(f"dataset {self.name}: no image with id {image_id}")

    def annotations_for(self, image_id: int) -> list[dict[str, Any]]:
        return [a for a in (self.annotations or []) if a["image_id"] == image_id]

    @cached_property
    def category_names(self) -> dict[int, str]:
        return {int(c["id"]): str(c.get("name", c["id"])) for c in self.categories}

    @cached_property
    def _ids_by_name(self) -> dict[str, int]:
        return {_norm(name): cid for cid, name in self.category_names.items()}

    def map_category(self, category_id: int, label: str = "") -> int | None:
        """The dataset category id for a detection, or None when the dataset has no such class.

        Our detectors give COCO category ids, so a COCO-format dataset matches by id; a
        detection whose id is not among the dataset's categories is matched by name (e.g. a
        dataset with its own numbering), else dropped.
        """
        if category_id in self.category_names:
            return int(category_id)
        if label:
            return self._ids_by_name.get(_norm(label))
        return None

    def ground_truth(self) -> dict[str, Any]:
        """The COCO ground-truth dict restricted to this dataset's images (annotated only)."""
        if self.annotations is None:
            raise InputError(f"dataset {self.name} has no annotations")
        return {
            "images": [
                {"id": im.id, "file_name": im.file_name, "width": im.width, "height": im.height}
                for im in self.images
            ],
            "annotations": self.annotations,
            "categories": self.categories,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "root": portable(self.root),
            "annotations": portable(self.annotation_file),
            "num_images": len(self.images),
            "num_annotations": len(self.annotations) if self.annotations is not None else None,
            "num_categories": len(self.categories),
            "image_ids": self.image_ids,
        }


def _norm(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def load_dataset(path: str | Path, annotations: str | Path | None = None, limit: int | None = None,
                 subset: str = "all") -> Dataset:
    """Open a dataset folder (see the module docstring) or raise ``InputError``. ``subset``
    ``train`` / ``val`` keeps that part of ``fcmcore.datasplit`` (before ``limit``)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise InputError(f"dataset {root}: no such folder")
    if not root.is_dir():
        raise InputError(f"dataset {root}: not a folder (give a folder with images/ and instances.json, or an image folder)")
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")

    ann_path: Path | None = Path(annotations).expanduser() if annotations else None
    image_dir = root
    if ann_path is None:
        for candidate in ANNOTATION_NAMES:
            if (root / candidate).exists():  # a FIFO or device here is refused, not skipped
                ann_path = root / candidate
                break
    if (root / "images").is_dir():
        image_dir = root / "images"

    name = root.name or str(root)
    if ann_path is None:
        dataset = _plain_folder(name, root, image_dir)
    else:
        dataset = _coco_folder(name, root, image_dir, ann_path)
    if not dataset.images:
        raise InputError(f"dataset {root}: no images found")
    if subset != "all":
        dataset.images = datasplit_subset(dataset.images, subset)
        dataset.name = f"{dataset.name}-{subset}"
        if not dataset.images:
            raise InputError(f"dataset {root}: no images in its {subset} part")
    if limit is not None or subset != "all":
        keep = dataset.images[:limit] if limit is not None else dataset.images
        dataset.images = keep
        if dataset.annotations is not None:
            ids = {im.id for im in keep}
            dataset.annotations = [a for a in dataset.annotations if a["image_id"] in ids]
    return dataset


def _inside(image_dir: Path, file_name: str, ann_path: Path | None = None) -> Path:
    """``image_dir / file_name``, refused unless it resolves (symlinks followed) to a path
    inside ``image_dir``: no ``..`` escapes, absolute paths or symlinks out."""
    where = f"annotations {ann_path}: image {file_name!r}" if ann_path else f"image {file_name!r}"
    if not file_name or "\0" in file_name:
        raise InputError(f"{where}: empty or invalid file name")
    path = image_dir / file_name
    base = image_dir.resolve()
    try:
        target = path.resolve()
    except (OSError, RuntimeError):  # symlink loop
        raise InputError(f"{where}: cannot be resolved (symlink loop?)") from None
    if not target.is_relative_to(base):
        raise InputError(f"{where} leads outside the image folder {image_dir}: refused")
    return path


def _plain_folder(name: str, root: Path, image_dir: Path) -> Dataset:
    files = sorted(_inside(image_dir, p.name) for p in image_dir.iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES and (p.is_file() or p.is_symlink()))
    images = [ImageRecord(id=i + 1, file_name=p.name, path=p) for i, p in enumerate(files)]
    return Dataset(name=name, root=root, images=images)


def _coco_folder(name: str, root: Path, image_dir: Path, ann_path: Path) -> Dataset:
    raw = read_regular_file(ann_path, MAX_ANNOTATION_BYTES, label=f"annotations {ann_path}")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"annotations {ann_path}: not a UTF-8 text file") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"annotations {ann_path}: invalid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(f"annotations {ann_path}: not a COCO instances file (no 'images' list)")
    anns = data.get("annotations", [])
    cats = data.get("categories", [])
    if not isinstance(anns, list) or not isinstance(cats, list):
        raise InputError(f"annotations {ann_path}: 'annotations' and 'categories' must be lists")

    images: list[ImageRecord] = []
    seen: set[int] = set()
    for i, entry in enumerate(data["images"]):
        try:
            image_id = int(entry["id"])
            file_name = str(entry["file_name"])
        except (KeyError, TypeError, ValueError):
            raise InputError(f"annotations {ann_path}: image entry {i} lacks an integer 'id' or a 'file_name'") from None
        if image_id in seen:
            raise InputError(f"annotations {ann_path}: image id {image_id} listed twice")
        seen.add(image_id)
        width = _size(entry.get("width"), "width", image_id, ann_path)
        height = _size(entry.get("height"), "height", image_id, ann_path)
        images.append(ImageRecord(image_id, file_name, _inside(image_dir, file_name, ann_path), width, height))
    images.sort(key=lambda im: im.id)

    categories = []
    for i, c in enumerate(cats):
        if not isinstance(c, dict) or "id" not in c:
            raise InputError(f"annotations {ann_path}: category entry {i} lacks an 'id'")
        categories.append({"id": int(c["id"]), "name": str(c.get("name", c["id"])),
                           "supercategory": str(c.get("supercategory", ""))})
    cat_ids = {c["id"] for c in categories}

    clean: list[dict[str, Any]] = []
    for i, a in enumerate(anns):
        try:
            x, y, w, h = (float(v) for v in a["bbox"])
            entry = {
                "id": int(a.get("id", i + 1)),
                "image_id": int(a["image_id"]),
                "category_id": int(a["category_id"]),
                "bbox": [x, y, w, h],
                "area": float(a.get("area", w * h)),
                "iscrowd": int(a.get("iscrowd", 0)),
            }
        except (KeyError, TypeError, ValueError):
            raise InputError(f"annotations {ann_path}: annotation {i} lacks image_id, category_id or a 4-number bbox") from None
        if not all(math.isfinite(v) for v in (x, y, w, h)) or w < 0 or h < 0:
            raise InputError(f"annotations {ann_path}: annotation {entry['id']} has bbox {[x, y, w, h]}: "
                             "coordinates must be finite and width/height not negative")
        if not math.isfinite(entry["area"]) or entry["area"] < 0:
            raise InputError(f"annotations {ann_path}: annotation {entry['id']} has area {entry['area']}: "
                             "must be finite and not negative")
        if entry["image_id"] not in seen:
            raise InputError(f"annotations {ann_path}: annotation {entry['id']} refers to unknown image {entry['image_id']}")
        if entry["category_id"] not in cat_ids:
            raise InputError(f"annotations {ann_path}: annotation {entry['id']} has unknown category {entry['category_id']}")
        clean.append(entry)
    if clean and not categories:
        raise InputError(f"annotations {ann_path}: annotations given but no 'categories'")

    specials = [im.file_name for im in images if im.path.exists() and not im.path.is_file()]
    if specials:
        raise InputError(f"dataset {root}: {specials[0]} is not a regular file (a folder, FIFO or device)")
    missing = [im.file_name for im in images if not im.path.is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise InputError(
            f"dataset {root}: {len(missing)} of {len(images)} images listed in {ann_path.name} are missing "
            f"from {image_dir} ({shown})"
        )
    return Dataset(name=name, root=root, images=images, categories=categories, annotations=clean,
                   annotation_file=ann_path)


def _size(value: Any, what: str, image_id: int, ann_path: Path) -> int | None:
    """An image's width or height from the annotation file: a positive integer or absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value) or value < 1:
        raise InputError(f"annotations {ann_path}: image {image_id} has {what} {value!r}; "
                         "expected a positive whole number of pixels")
    return int(value)


def detections_to_coco(dataset: Dataset, image_id: int, detections: "list[Detection]") -> tuple[list[dict[str, Any]], int]:
    """Detections -> COCO result entries (bbox x, y, w, h) in the dataset's category ids.

    Returns (entries, number dropped because the dataset has no such category)."""
    out: list[dict[str, Any]] = []
    dropped = 0
    for d in detections:
        cid = dataset.map_category(d.category_id, d.label) if dataset.categories else d.category_id
        if cid is None:
            dropped += 1
            continue
        x1, y1, x2, y2 = (float(v) for v in d.box)
        out.append({"image_id": int(image_id), "category_id": int(cid),
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(d.score)})
    return out, dropped
