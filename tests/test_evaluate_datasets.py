"""Dataset loading: layouts, --limit, and clear errors for broken datasets."""

from __future__ import annotations

import json
import shutil

import pytest

from fcmcore.errors import InputError
from fcmcore.evaluate.datasets import load_dataset


def test_coco96_loads(coco96_dir):
    ds = load_dataset(coco96_dir)
    assert len(ds) == 96 and ds.has_annotations
    assert len(ds.annotations) == 710 and len(ds.categories) == 80
    assert ds.image_ids == sorted(ds.image_ids)
    assert all(im.path.is_file() for im in ds.images)


def test_tiny_dataset_loads_and_its_boxes_fit_its_images(tiny_dataset):
    from PIL import Image

    ds = load_dataset(tiny_dataset)
    assert len(ds) == 8 and ds.has_annotations
    assert len(ds.annotations) == 12 and len(ds.categories) == 80
    assert ds.image_ids == list(range(1, 9))
    assert {a["image_id"] for a in ds.annotations} == set(range(1, 8))  # image 8 (rocket) has no COCO object
    for im in ds.images:
        with Image.open(im.path) as pil:
            assert pil.size == (im.width, im.height) and max(pil.size) <= 512
        for a in ds.annotations_for(im.id):
            x, y, w, h = a["bbox"]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= im.width and y + h <= im.height, a
    assert sum(im.path.stat().st_size for im in ds.images) < 1_000_000


def test_limit_takes_first_ids_and_their_annotations(tiny_dataset):
    ds = load_dataset(tiny_dataset, limit=5)
    full = load_dataset(tiny_dataset)
    assert ds.image_ids == full.image_ids[:5]
    assert {a["image_id"] for a in ds.annotations} <= set(ds.image_ids)
    assert len(ds.annotations) == sum(len(full.annotations_for(i)) for i in ds.image_ids)
    gt = ds.ground_truth()
    assert [im["id"] for im in gt["images"]] == ds.image_ids


def test_subset_val_is_every_fourth_image_by_id_and_its_annotations(tiny_dataset):
    full = load_dataset(tiny_dataset)
    val, train = load_dataset(tiny_dataset, subset="val"), load_dataset(tiny_dataset, subset="train")
    assert val.image_ids == full.image_ids[3::4] == [4, 8] and val.name == full.name + "-val"
    assert sorted(train.image_ids + val.image_ids) == full.image_ids and not set(train.image_ids) & set(val.image_ids)
    assert {a["image_id"] for a in val.annotations} <= set(val.image_ids)
    assert len(val.annotations) == sum(len(full.annotations_for(i)) for i in val.image_ids)
    assert load_dataset(tiny_dataset, subset="train", limit=2).image_ids == train.image_ids[:2]


def test_bad_subset(tiny_dataset):
    from fcmcore.errors import ParameterError

    with pytest.raises(ParameterError, match="subset must be all, train or val"):
        load_dataset(tiny_dataset, subset="test")


def _mini(tmp_path, tiny_dataset, n=2, **changes):
    """A COCO folder with n tinycoco images; ``changes`` edit the JSON."""
    full = json.loads((tiny_dataset / "instances.json").read_text())
    images = sorted(full["images"], key=lambda im: im["id"])[:n]
    ids = {im["id"] for im in images}
    data = {"images": images, "annotations": [a for a in full["annotations"] if a["image_id"] in ids],
            "categories": full["categories"]}
    data.update(changes)
    (tmp_path / "images").mkdir()
    for im in images:
        shutil.copy(tiny_dataset / "images" / im["file_name"], tmp_path / "images" / im["file_name"])
    (tmp_path / "instances.json").write_text(json.dumps(data))
    return tmp_path, data


def test_image_folder_with_annotations_flag(tmp_path, tiny_dataset):
    root, _ = _mini(tmp_path, tiny_dataset)
    ann = tmp_path / "elsewhere.json"
    (root / "instances.json").rename(ann)
    ds = load_dataset(root / "images", annotations=ann)
    assert len(ds) == 2 and ds.has_annotations


def test_plain_folder_has_no_ground_truth(tmp_path, tiny_dataset):
    root, _ = _mini(tmp_path, tiny_dataset, n=3)
    (root / "instances.json").unlink()
    (root / "images" / "notes.txt").write_text("not an image")
    ds = load_dataset(root)
    assert len(ds) == 3 and not ds.has_annotations
    assert ds.image_ids == [1, 2, 3]
    with pytest.raises(InputError, match="no annotations"):
        ds.ground_truth()


@pytest.mark.parametrize("content, message", [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "not a COCO instances file"),
    ('{"images": [{"file_name": "a.jpg"}]}', "lacks an integer 'id'"),
])
def test_bad_annotation_files(tmp_path, content, message):
    (tmp_path / "images").mkdir()
    (tmp_path / "instances.json").write_text(content)
    with pytest.raises(InputError, match=message):
        load_dataset(tmp_path)


def test_listed_images_missing(tmp_path, tiny_dataset):
    root, data = _mini(tmp_path, tiny_dataset)
    (root / "images" / data["images"][1]["file_name"]).unlink()
    with pytest.raises(InputError, match=r"1 of 2 images listed .* missing"):
        load_dataset(root)


def test_annotation_for_unknown_image(tmp_path, tiny_dataset):
    full = json.loads((tiny_dataset / "instances.json").read_text())
    ann = dict(full["annotations"][0], image_id=123456789)
    with pytest.raises(InputError, match="unknown image"):
        load_dataset(_mini(tmp_path, tiny_dataset, annotations=[ann])[0])


@pytest.mark.parametrize("make", ["missing", "file", "empty", "empty_coco"])
def test_unusable_datasets(tmp_path, make):
    path = tmp_path / "ds"
    if make == "file":
        path.write_text("x")
    elif make == "empty":
        path.mkdir()
    elif make == "empty_coco":
        (path / "images").mkdir(parents=True)
        (path / "instances.json").write_text('{"images": [], "annotations": [], "categories": []}')
    with pytest.raises(InputError):
        load_dataset(path)


def test_missing_annotations_file(tmp_path, tiny_dataset):
    with pytest.raises(InputError, match="no such file"):
        load_dataset(tiny_dataset / "images", annotations=tmp_path / "nope.json")


def test_bad_limit(tiny_dataset):
    with pytest.raises(InputError, match="--limit"):
        load_dataset(tiny_dataset, limit=0)
