"""The public partial-run API of split models (``cut_points``, ``run_between``, ``predict``,
``postprocess``, ``macs_between``): exactly equivalent to head / tail / detect."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from fcmcore.errors import ParameterError, UnknownNameError
from fcmcore.models import load_model
from fcmcore.models.base import INPUT, RAW_OUTPUT_KEYS
from fcmcore.paths import ASSETS_DIR

SPLITS = ["Conv", "expanded_conv_9", "expanded_conv_12", "expanded_conv_15", "Conv_1"]


@pytest.fixture(scope="module")
def model():
    return load_model("ssd_mobilenet_v2")


@pytest.fixture(scope="module")
def sample(model):
    image = Image.open(ASSETS_DIR / "samples" / "astronaut.jpg").convert("RGB")
    x, meta = model.preprocess(image)
    return image, x, meta


def test_cut_points_in_order(model):
    cuts = model.cut_points()
    assert cuts[0] == INPUT and cuts[1] == "Conv" and cuts[-1].startswith("layer_19_2_Conv2d_5")
    assert cuts.index("expanded_conv_12") < cuts.index("map0") < cuts.index("expanded_conv_13")
    splits = [sp.name for sp in model.split_points()]
    assert [c for c in cuts if c in splits] == splits  # every split is a cut, in the same order


@pytest.mark.parametrize("split", SPLITS)
def test_head_run_between_predict_postprocess_equal_detect(model, sample, split):
    image, x, meta = sample
    with torch.no_grad():
        feats = model.run_between({INPUT: x}, INPUT, split)
        head = model.head(x, split)
        assert list(feats) == list(head)
        for k in head:
            assert torch.equal(feats[k], head[k])
        raw = model.predict(feats, split)
        assert set(raw) == set(RAW_OUTPUT_KEYS)
        assert raw["cls_logits"].shape[-1] == 91 and raw["bbox_regression"].shape[-1] == 4
        assert raw["cls_logits"].shape[1] == raw["bbox_regression"].shape[1] == 1917  # SSD300 anchors
        assert model.postprocess(raw, meta) == model.detect(image) == model.tail(head, split, meta)


def test_run_between_chains_exactly(model, sample):
    _, x, _ = sample
    with torch.no_grad():
        direct = model.run_between({INPUT: x}, INPUT, "Conv_1")
        a = model.run_between({INPUT: x}, INPUT, "expanded_conv_9")
        b = model.run_between(a, "expanded_conv_9", "expanded_conv_15")
        assert set(b) == {"expanded_conv_15", "map0"}
        c = model.run_between(b, "expanded_conv_15", "Conv_1")
        assert list(c) == list(direct)
        for k in direct:
            assert torch.equal(c[k], direct[k])
        m0 = model.run_between(a, "expanded_conv_9", "map0")
        assert list(m0) == ["map0"] and torch.equal(m0["map0"], direct["map0"])


def test_partial_runs_are_differentiable_and_batched(model, sample):
    _, x, _ = sample
    with torch.no_grad():
        f = model.head(x, "expanded_conv_9")["expanded_conv_9"].clone()
    z = torch.cat([f, f * 0.5]).requires_grad_(True)
    raw = model.predict({"expanded_conv_9": z}, "expanded_conv_9")
    assert raw["cls_logits"].shape[0] == 2
    raw["cls_logits"].sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_macs_between_adds_up(model):
    total = model.macs_between(INPUT, "expanded_conv_9")
    assert total == model.edge_macs("expanded_conv_9")
    assert model.macs_between(INPUT, "expanded_conv") + model.macs_between("expanded_conv", "expanded_conv_9") == total


def test_bad_cuts_are_clear(model, sample):
    _, x, _ = sample
    with pytest.raises(UnknownNameError, match="known"):
        model.run_between({INPUT: x}, INPUT, "nope")
    with pytest.raises(ParameterError, match="not after"):
        model.run_between({"expanded_conv_9": torch.zeros(1, 64, 19, 19)}, "expanded_conv_9", "Conv")
    with pytest.raises(ParameterError, match="carries tensors"):
        model.run_between({"wrong": torch.zeros(1, 64, 19, 19)}, "expanded_conv_9", "Conv_1")
    with pytest.raises(ParameterError, match="end there"):
        model.run_between({"map0": torch.zeros(1, 576, 19, 19)}, "map0", "Conv_1")
    with pytest.raises(ParameterError, match="one image"):
        model.postprocess({"bbox_regression": torch.zeros(2, 1917, 4), "cls_logits": torch.zeros(2, 1917, 91)},
                          None)
