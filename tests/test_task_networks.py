"""The secondary-task networks (MoveNet pose, EfficientNet-Lite3 classification) ported
from their TFLite files, checked against the reference runtime (ai-edge-litert) on the
bundled samples and on person images made from them at test time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from fcmcore.errors import ParameterError, UnknownNameError, WeightsError
from fcmcore.models.base import ImageMeta
from fcmcore.models.efficientnet_lite import EfficientNetLite3
from fcmcore.models.task_network import bundled_model_file, load_task_network
from fcmcore.models.tflite_graph import TFLiteFile

SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples"


@pytest.fixture(scope="module")
def litert():
    return pytest.importorskip("ai_edge_litert.interpreter")


def reference_run(litert, net, pixels: np.ndarray) -> np.ndarray:
    """The reference runtime's real-valued output for the uint8 input ``pixels``."""
    interp = litert.Interpreter(model_path=str(bundled_model_file(net.filename)), num_threads=1)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], pixels)
    interp.invoke()
    out = interp.get_output_details()[0]
    value = interp.get_tensor(out["index"]).astype(np.float32)
    scale, zero = out["quantization"]
    return (value - zero) * scale if scale else value


def person_images() -> dict[str, Image.Image]:
    """astronaut.jpg and person images made from it: crops, a mirror, a non-square crop."""
    im = Image.open(SAMPLES / "astronaut.jpg").convert("RGB")
    w, h = im.size
    return {
        "astronaut": im,
        "mirror": ImageOps.mirror(im),
        "crop_left": im.crop((0, 0, int(w * 0.7), int(h * 0.9))),
        "crop_tall": im.crop((int(w * 0.05), int(h * 0.05), int(w * 0.6), h)),
        "mirror_crop": ImageOps.mirror(im.crop((int(w * 0.1), 0, w, int(h * 0.8)))),
    }


def sample_images() -> dict[str, Image.Image]:
    return {p.stem: Image.open(p).convert("RGB") for p in sorted(SAMPLES.glob("*.jpg"))}


@pytest.fixture(scope="module")
def movenet():
    return load_task_network("pose")


@pytest.fixture(scope="module")
def effnet():
    return load_task_network("classification")


# ----- pose ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(person_images()))
def test_movenet_keypoints_match_the_reference(litert, movenet, name):
    image = person_images()[name]
    ref = reference_run(litert, movenet, movenet.input_pixels(image))[0, 0]  # (17, 3): y, x, score
    pose = movenet.predict(image)
    ours = np.array(pose.keypoints)  # x, y, score in image pixels
    ref_px = np.stack([ref[:, 1] * image.width, ref[:, 0] * image.height], 1)
    assert np.abs(ours[:, :2] - ref_px).max() < 3.0
    assert np.abs(ours[:, 2] - ref[:, 2]).max() < 0.01
    assert ours[:, 2].max() > 0.3, "a person photo should give confident keypoints"


def test_movenet_decode_is_the_files_own_postprocessing(movenet):
    """The written-out decoding gives what the file's post-processing ops give."""
    for image in person_images().values():
        x, _ = movenet.preprocess(image)
        with torch.inference_mode():
            values = movenet.graph.run({movenet.input_index: x}, movenet.file.outputs + movenet.output_tensors())
        graph_out = values[movenet.file.outputs[0]][0, 0]
        decoded = movenet.decode(movenet.heads(values))
        assert torch.allclose(decoded, graph_out, atol=1e-5)


def test_movenet_keypoints_move_with_the_mirror(movenet):
    """Mirroring the photo mirrors the nose's x (a check that does not use the reference)."""
    im = person_images()["astronaut"]
    a = movenet.predict(im).keypoints[0]
    b = movenet.predict(ImageOps.mirror(im)).keypoints[0]
    assert abs((im.width - a[0]) - b[0]) < 6 and abs(a[1] - b[1]) < 6


# ----- classification --------------------------------------------------------------------


def same_top5(ours: np.ndarray, ref: np.ndarray) -> bool:
    """Same top-5 set, where the reference's ties at its 5th value (its probabilities are
    multiples of 1/256) may be taken in any order."""
    fifth = np.sort(ref)[-5]
    top = set(np.argsort(-ours, kind="stable")[:5].tolist())
    strictly_above = set(np.flatnonzero(ref > fifth).tolist())
    allowed = set(np.flatnonzero(ref >= fifth).tolist())
    return strictly_above <= top <= allowed


@pytest.mark.parametrize("name", list(sample_images()))
def test_efficientnet_matches_the_reference(litert, effnet, name):
    image = sample_images()[name]
    ref = reference_run(litert, effnet, effnet.input_pixels(image))[0]
    result = effnet.predict(image)
    ours = result.probs.numpy()
    assert result.top1 == int(np.argmax(ref))
    assert same_top5(ours, ref)
    assert np.abs(ours - ref).max() <= 0.05
    assert result.top5[0][1] == effnet.labels[result.top1]


def test_float_activations_variant_also_agrees(litert, effnet):
    """The de-quantised-weights + float-activations variant: same top-1, probabilities
    within 0.05 (the top-5 tail can differ where the reference's 1/256 steps tie)."""
    float_net = EfficientNetLite3(fake_quant=False)
    for image in sample_images().values():
        ref = reference_run(litert, effnet, effnet.input_pixels(image))[0]
        ours = float_net.predict(image).probs.numpy()
        assert int(np.argmax(ours)) == int(np.argmax(ref))
        assert np.abs(ours - ref).max() <= 0.05


def test_labels_are_the_imagenet_classes(effnet):
    assert len(effnet.labels) == 1000
    chelsea = effnet.predict(sample_images()["chelsea"])
    assert "cat" in chelsea.top5[0][1]


# ----- split points ----------------------------------------------------------------------


@pytest.mark.parametrize("task,split", [("pose", "fpn"), ("pose", "block_2_add"), ("pose", "Conv1"),
                                        ("classification", "blocks_11"), ("classification", "blocks_16"),
                                        ("classification", "stem"), ("classification", "head")])
def test_running_from_a_split_reproduces_the_whole_network(task, split):
    net = load_task_network(task)
    image = person_images()["crop_tall"]
    feats = net.features(image, split)
    assert tuple(feats.shape[1:]) == net.split(split).shape
    meta = ImageMeta(width=image.width, height=image.height)
    whole, cut = net.predict(image), net.from_split(feats, split, meta)
    if task == "pose":
        assert cut.keypoints == whole.keypoints
    else:
        assert torch.equal(cut.probs, whole.probs)


def test_from_split_is_differentiable_for_connector_training(movenet, effnet):
    t = movenet.features(person_images()["astronaut"], "fpn").clone().requires_grad_(True)
    heads = movenet.heads(movenet.raw_from_split(t, "fpn"))
    heads["heatmap"].sum().backward()
    assert t.grad is not None and t.grad.abs().sum() > 0
    t = effnet.features(sample_images()["chelsea"], "blocks_11").clone().requires_grad_(True)
    probs = effnet.raw_from_split(t, "blocks_11")[effnet.file.outputs[0]]
    probs[0, 285].backward()  # straight-through gradient across the fake quantisation
    assert t.grad.abs().sum() > 0


def test_bad_inputs_give_clear_errors(movenet, effnet, tmp_path):
    meta = ImageMeta(width=10, height=10)
    with pytest.raises(UnknownNameError, match="known: Conv1"):
        movenet.split("nope")
    with pytest.raises(ParameterError, match="expects"):
        movenet.from_split(torch.zeros(1, 24, 40, 40), "fpn", meta)
    with pytest.raises(ParameterError):
        effnet.features(np.zeros((8, 8, 3)), "blocks_11")
    with pytest.raises(UnknownNameError, match="pose"):
        load_task_network("segmentation")
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError):
        TFLiteFile(bad)


def test_a_network_first_built_inside_inference_mode_can_still_be_trained_through(monkeypatch):
    """Regression (seen when another test first loaded the network inside torch.inference_mode):
    the shared network's weights must stay normal tensors, or connector training fails."""
    from fcmcore.models import task_network

    monkeypatch.setattr(task_network, "_cache", {})
    with torch.inference_mode():
        net = task_network.load_task_network("pose")
    t = net.features(person_images()["astronaut"], "fpn").clone().requires_grad_(True)
    net.heads(net.raw_from_split(t, "fpn"))["heatmap"].sum().backward()
    assert t.grad is not None and t.grad.abs().sum() > 0
