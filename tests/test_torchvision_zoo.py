"""torchvision detector adapters: registry, weights cache errors, split points, head/tail.

Random weights (pretrained=False), small images and a small resize (min_size=128) keep
this fast; score floors are set to 0 so random models still output boxes to compare.
"""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
import torch
from PIL import Image

from fcmcore.errors import ParameterError, UnknownNameError, WeightsError
from fcmcore.models import MODELS, load_model
from fcmcore.models.base import ImageMeta
from fcmcore.models.torchvision_zoo import fetch_command, weights_file

SMALL = dict(min_size=128, score_thresh=0.0)
CONFIGS = {
    # Fewer RPN proposals: the v2 box head (4 convs per RoI) dominates CPU time otherwise.
    "fasterrcnn_resnet50_fpn_v2": dict(SMALL, rpn_pre_nms_top_n_test=200, rpn_post_nms_top_n_test=100),
    "retinanet_resnet50_fpn_v2": SMALL,
    "fcos_resnet50_fpn": SMALL,
    "ssdlite320_mobilenet_v3_large": dict(score_thresh=0.0),
}
SPLITS = {
    "fasterrcnn_resnet50_fpn_v2": {
        "layer1": ["layer1"],
        "layer2": ["layer1", "layer2"],
        "layer3": ["layer1", "layer2", "layer3"],
        "layer4": ["layer1", "layer2", "layer3", "layer4"],
        "fpn": ["p2", "p3", "p4", "p5", "p6"],
    },
    "retinanet_resnet50_fpn_v2": {
        "layer1": ["layer1"],
        "layer2": ["layer2"],
        "layer3": ["layer2", "layer3"],
        "layer4": ["layer2", "layer3", "layer4"],
        "fpn": ["p3", "p4", "p5", "p6", "p7"],
    },
    "ssdlite320_mobilenet_v3_large": {
        "c3": ["c3"],
        "c4": ["c4"],
        "c5": ["c4", "c5"],
        "extra": ["c4", "c5", "extra1", "extra2", "extra3", "extra4"],
    },
}
SPLITS["fcos_resnet50_fpn"] = SPLITS["retinanet_resnet50_fpn_v2"]
CASES = [(name, split) for name, splits in SPLITS.items() for split in splits]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores; also keeps results reproducible
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models():
    built = {}

    def get(name):
        if name not in built:
            torch.manual_seed(0)
            built[name] = MODELS.create(name, pretrained=False, **CONFIGS[name])
        return built[name]

    return get


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:120, 0:160]
    base = np.stack([xx * 1.5, yy * 2.0, (xx + yy) * 0.9], axis=-1)
    noisy = base + rng.normal(0, 25, base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def references(models, image):
    cache = {}

    def get(name):
        if name not in cache:
            model = models(name)
            cache[name] = (model.detect(image), *model.preprocess(image))
        return cache[name]

    return get


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a set_dir() elsewhere would win over TORCH_HOME
    return tmp_path


def test_registered():
    for name in SPLITS:
        assert name in MODELS


@pytest.mark.parametrize("name", list(SPLITS))
def test_missing_weights_fail_fast_with_instructions(name, empty_torch_home, monkeypatch):
    attempts = []

    def no_network(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    start = time.perf_counter()
    with pytest.raises(WeightsError) as info:
        MODELS.create(name)  # pretrained=True is the default
    assert time.perf_counter() - start < 5
    assert attempts == []  # torchvision was never asked to download
    message = str(info.value)
    path = weights_file(name)
    assert path.is_relative_to(empty_torch_home)
    assert path.name in message and "missing" in message
    assert str(empty_torch_home) in message and "TORCH_HOME" in message
    assert "internet" in message
    assert fetch_command(name) in message
    assert f"torchvision.models.detection.{name}(weights='DEFAULT')" in message


def test_load_model_default_is_pretrained(empty_torch_home):
    with pytest.raises(WeightsError, match="retinanet_resnet50_fpn_v2_coco-.*pth is missing"):
        load_model("retinanet_resnet50_fpn_v2")


def test_pretrained_loads_cached_file_and_rejects_corrupt_one(empty_torch_home):
    name = "ssdlite320_mobilenet_v3_large"
    path = weights_file(name)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot load weights"):
        MODELS.create(name)

    torch.manual_seed(3)
    source = MODELS.create(name, pretrained=False)
    torch.save(source.model.state_dict(), path)
    torch.manual_seed(4)  # a different random init, overwritten by the cached weights
    loaded = MODELS.create(name, pretrained=True)
    for key, value in source.model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key]), key


def test_bad_parameters():
    with pytest.raises(ParameterError, match="min_size"):
        MODELS.create("retinanet_resnet50_fpn_v2", pretrained=False, min_size=5)
    with pytest.raises(ParameterError, match="fixed"):
        MODELS.create("ssdlite320_mobilenet_v3_large", pretrained=False, min_size=300)
    with pytest.raises(ParameterError, match="score_thresh"):
        MODELS.create("ssdlite320_mobilenet_v3_large", pretrained=False, score_thresh=2)


def test_default_nominal_shapes():
    torch.manual_seed(0)
    model = MODELS.create("retinanet_resnet50_fpn_v2", pretrained=False)  # min_size 800
    points = {sp.name: sp for sp in model.split_points()}
    assert [sp.depth for sp in model.split_points()] == [1, 2, 3, 4, 5]
    assert points["layer1"].tensors == {"layer1": (256, 200, 200)}
    assert points["layer4"].tensors == {"layer2": (512, 100, 100), "layer3": (1024, 50, 50), "layer4": (2048, 25, 25)}
    assert points["fpn"].tensors == {
        "p3": (256, 100, 100), "p4": (256, 50, 50), "p5": (256, 25, 25), "p6": (256, 13, 13), "p7": (256, 7, 7),
    }
    assert "800x800" in points["fpn"].description


@pytest.mark.parametrize("name", list(SPLITS))
def test_split_points_match_head_on_nominal_input(name, models):
    model = models(name)
    assert [sp.name for sp in model.split_points()] == list(SPLITS[name])
    depths = [sp.depth for sp in model.split_points()]
    assert depths == sorted(depths) and len(set(depths)) == len(depths)
    square = Image.new("RGB", (160, 160), (90, 120, 200))  # min_size 128 -> a 128x128 input
    x, _ = model.preprocess(square)
    assert tuple(x.shape[-2:]) == ((320, 320) if name.startswith("ssdlite") else (128, 128))
    for sp in model.split_points():
        features = model.head(x, sp.name)
        assert list(features) == SPLITS[name][sp.name]
        assert {k: tuple(v.shape[1:]) for k, v in features.items()} == sp.tensors


@pytest.mark.parametrize("name,split", CASES)
def test_head_tail_equals_detect(name, split, models, references):
    model = models(name)
    expected, x, meta = references(name)
    assert len(expected) > 0
    features = model.head(x, split)
    assert list(features) == SPLITS[name][split]
    sp = model.split_point(split)
    for key, tensor in features.items():
        assert tensor.shape[0] == 1 and tensor.shape[1] == sp.tensors[key][0]
    assert model.tail(features, split, meta) == expected


@pytest.mark.parametrize("name", list(SPLITS))
def test_detections_are_coco_in_original_pixels(name, models, references, image):
    model = models(name)
    detections, _, meta = references(name)
    assert (meta.width, meta.height) == image.size
    scores = [d.score for d in detections]
    assert scores == sorted(scores, reverse=True)
    for d in detections:
        assert 1 <= d.category_id <= 90
        assert d.label == model.categories[d.category_id] and d.label not in ("N/A", "__background__")
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 <= x2 <= image.width + 1e-3 and 0 <= y1 <= y2 <= image.height + 1e-3
    # The network saw a larger (resized) image; boxes must have been scaled back to it.
    if name != "ssdlite320_mobilenet_v3_large":
        assert meta.extra["resized_size"] == [128, 170]
    assert max(d.box[2] for d in detections) > 0.5 * image.width


def test_tail_without_preprocess_sizes_recomputes_them(models, references):
    model = models("fcos_resnet50_fpn")
    expected, x, meta = references("fcos_resnet50_fpn")
    bare = ImageMeta(width=meta.width, height=meta.height)
    assert model.tail(model.head(x, "layer3"), "layer3", bare) == expected


@pytest.mark.parametrize("name", ["fasterrcnn_resnet50_fpn_v2", "ssdlite320_mobilenet_v3_large"])
def test_tail_rejects_bad_features(name, models, references):
    model = models(name)
    _, x, meta = references(name)
    split = model.split_points()[-2].name  # carries two tensors or more
    features = model.head(x, split)
    first, last = list(features)[0], list(features)[-1]

    missing = {k: v for k, v in features.items() if k != first}
    with pytest.raises(ParameterError, match=f"missing {first}"):
        model.tail(missing, split, meta)
    with pytest.raises(ParameterError, match="unexpected bogus"):
        model.tail({**features, "bogus": features[first]}, split, meta)
    with pytest.raises(ParameterError, match="shape"):
        model.tail({**features, last: features[last][:, :, :-1]}, split, meta)
    with pytest.raises(ParameterError, match="NaN"):
        model.tail({**features, last: torch.full_like(features[last], float("nan"))}, split, meta)
    with pytest.raises(ParameterError, match="dtype"):
        model.tail({**features, last: features[last].to(torch.int32)}, split, meta)
    with pytest.raises(UnknownNameError):
        model.tail(features, "nope", meta)
    with pytest.raises(UnknownNameError):
        model.head(x, "nope")
    with pytest.raises(ParameterError):
        model.head(x[0], split)
