"""Secondary tasks: metrics, connector files, serving pose and classification from the
detector's split tensor, and the drawing data for viewers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcmcore.errors import ParameterError, WeightsError
from fcmcore.models import load_model
from fcmcore.tasks import connectors, metrics, secondary

SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples"


def astronaut() -> Image.Image:
    return Image.open(SAMPLES / "astronaut.jpg").convert("RGB")


# ----- metrics ---------------------------------------------------------------------------


def test_oks_is_one_for_identical_keypoints_and_falls_with_distance():
    rng = np.random.default_rng(0)
    ref = np.column_stack([rng.uniform(100, 300, 17), rng.uniform(50, 400, 17), np.full(17, 0.8)])
    assert metrics.oks(ref, ref) == pytest.approx(1.0)
    near = ref.copy()
    near[:, :2] += 3
    far = ref.copy()
    far[:, :2] += 30
    assert 1.0 > metrics.oks(near, ref) > metrics.oks(far, ref) > 0.0


def test_oks_uses_only_visible_reference_keypoints_and_needs_a_person():
    ref = np.zeros((17, 3))
    ref[:, :2] = np.arange(34).reshape(17, 2) * 10
    ref[:3, 2] = 0.9  # only three visible: not a person to measure
    assert metrics.oks(ref, ref) is None
    ref[:8, 2] = 0.9
    moved = ref.copy()
    moved[10:, :2] += 500  # invisible keypoints do not count
    assert metrics.oks(moved, ref) == pytest.approx(1.0)


def test_top_k_agreement_and_bootstrap():
    assert metrics.top1_agrees([3, 1, 2], [3, 9, 9]) and not metrics.top1_agrees([1, 3], [3, 1])
    assert metrics.top5_agrees([1, 2, 3, 4, 5], [5, 0, 0, 0, 0])
    assert not metrics.top5_agrees([1, 2, 3, 4, 5], [6, 1, 2, 3, 4])
    mean, lo, hi = metrics.bootstrap_mean([1.0] * 8 + [0.0] * 2)
    assert mean == pytest.approx(0.8) and lo < 0.8 < hi
    d, dlo, dhi = metrics.bootstrap_diff([1, 1, 1, None], [0, 0, 1, 1])
    assert d == pytest.approx(2 / 3) and dlo <= d <= dhi


def test_parse_tasks():
    assert secondary.parse_tasks("pose") == ("detection", "pose")
    assert secondary.parse_tasks("classification,detection,pose") == secondary.TASKS
    assert secondary.parse_tasks(None) == ("detection",)
    with pytest.raises(ParameterError, match="known: detection"):
        secondary.parse_tasks("pose,segmentation")


# ----- connector files -------------------------------------------------------------------


def test_connector_round_trip_and_size_limit(tmp_path):
    conn = connectors.Connector(64, 24, (48, 48), hidden=96, mid=48)
    path = connectors.save(conn, {"task": "pose", "target": "fpn"}, tmp_path / "c.safetensors")
    loaded, meta = connectors.load(path)
    x = torch.randn(2, 64, 19, 19)
    assert torch.equal(loaded(x), conn(x)) and meta["target"] == "fpn"
    assert loaded(x).shape == (2, 24, 48, 48)
    assert (tmp_path / "c.json").is_file()
    big = connectors.Connector(64, 96, (18, 18), hidden=512)
    with pytest.raises(ParameterError, match="limit"):
        connectors.save(big, {}, tmp_path / "big.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(WeightsError):
        connectors.load(tmp_path / "bad.safetensors")
    with pytest.raises(WeightsError, match="not found"):
        connectors.load(tmp_path / "missing.safetensors")


def test_linear_projection_recovers_a_linear_map():
    torch.manual_seed(0)
    x = torch.randn(6, 8, 9, 9)
    w = torch.randn(5, 8, 1, 1)
    y = torch.nn.functional.conv2d(x, w, torch.arange(5.0))
    proj = connectors.LinearProjection(8, 5, (9, 9))
    proj.fit(x, y, ridge=1e-9)
    assert torch.allclose(proj(x), y, atol=1e-3)


@pytest.mark.parametrize("task", ["pose", "classification"])
def test_bundled_connectors_are_small_and_documented(task):
    for kind in ("conv", "linear"):
        module, meta = connectors.load_default(task, kind=kind)
        assert connectors.size_bytes(module) <= connectors.MAX_BYTES
        assert meta["task"] == task and meta["split"] == "expanded_conv_9"
        assert meta["command"].startswith("fcm train-connector") and "cpu_seconds" in meta
        assert "/work/" not in meta["command"] and "/tmp/" not in meta["command"]
    readme = (connectors.CONNECTOR_DIR / "README.md").read_text()
    assert "train-connector" in readme


# ----- serving from the split tensor ------------------------------------------------------


@pytest.fixture(scope="module")
def split_tensor():
    det = load_model("ssd_mobilenet_v2")
    x, _ = det.preprocess(astronaut())
    return det.head(x, "expanded_conv_9")["expanded_conv_9"]


def test_connectors_serve_pose_and_classification_from_the_uncoded_split(split_tensor):
    out = secondary.from_split(split_tensor, astronaut(), ("detection", "pose", "classification"),
                               "ssd_mobilenet_v2", "expanded_conv_9")
    assert set(out) == {"pose", "classification"}
    oks = out["pose"].agreement["oks_vs_uncompressed"]
    assert oks is not None and oks > 0.3, "the trained pose connector should find the astronaut"
    j = out["classification"].to_json()
    assert len(j["top5"]) == 5 and set(j["top5"][0]) == {"label", "score"}
    assert isinstance(j["top1_agrees"], bool)
    assert len(out["pose"].to_json()["keypoints"]) == 17


def test_connector_beats_noise(split_tensor):
    """The same path fed a random tensor of the same shape must agree less (the metric can fail)."""
    torch.manual_seed(0)
    noise = torch.randn_like(split_tensor) * split_tensor.std() + split_tensor.mean()
    real = secondary.from_split(split_tensor, astronaut(), ["pose"], "ssd_mobilenet_v2", "expanded_conv_9")
    fake = secondary.from_split(noise, astronaut(), ["pose"], "ssd_mobilenet_v2", "expanded_conv_9")
    a = real["pose"].agreement["oks_vs_uncompressed"]
    b = fake["pose"].agreement["oks_vs_uncompressed"]
    assert a > (b or 0.0) + 0.2


def test_overlay_describes_what_to_draw(split_tensor):
    out = secondary.from_split(split_tensor, astronaut(), ["pose", "classification"], "ssd_mobilenet_v2",
                               "expanded_conv_9")
    ov = secondary.overlay(out)
    kps = ov["pose"]["keypoints"]
    assert len(kps) == 17 and {"name", "x", "y", "score", "shown"} <= set(kps[0])
    shown = {k["name"] for k in kps if k["shown"]}
    assert all(limb["from"] in shown and limb["to"] in shown for limb in ov["pose"]["limbs"])
    assert len(ov["classification"]["top5"]) == 5
    assert ov["classification"]["top5"][0]["is_reference_top1"] == ov["classification"]["top1_agrees"]


def test_no_connector_for_another_split_is_a_clear_error(split_tensor):
    with pytest.raises(WeightsError, match="train-connector"):
        secondary.from_split(split_tensor, astronaut(), ["pose"], "ssd_mobilenet_v2", "Conv")
    with pytest.raises(ParameterError):
        secondary.from_split(split_tensor, astronaut(), ["pose"], "ssd_mobilenet_v2", "expanded_conv_9", kind="x")


# ----- pipeline, CLI ----------------------------------------------------------------------


def test_pipeline_serves_three_tasks_from_one_bitstream():
    from fcmcore.pipeline import PipelineConfig, run

    image = astronaut()
    plain = run(image, PipelineConfig(codec="jpeg", quality=90))
    multi = run(image, PipelineConfig(codec="jpeg", quality=90, tasks=secondary.TASKS))
    assert multi.bits == plain.bits, "secondary tasks must not add bits"
    assert [d.to_json() for d in multi.detections] == [d.to_json() for d in plain.detections]
    j = multi.to_json()
    assert set(j["tasks"]) == {"pose", "classification"}
    assert len(j["tasks"]["pose"]["keypoints"]) == 17 and "oks_vs_uncompressed" in j["tasks"]["pose"]
    assert {"top5", "top1_agrees"} <= set(j["tasks"]["classification"])
    assert "pose_tail" in multi.timings_ms and "classification_connector" in multi.timings_ms
    serving = sum(v for k, v in multi.timings_ms.items() if k != "total" and not k.endswith("_reference"))
    assert multi.timings_ms["total"] == pytest.approx(serving)
    assert "tasks" not in plain.to_json()


def test_full_input_paradigm_runs_the_task_networks_on_the_decoded_image():
    from fcmcore.pipeline import PipelineConfig, run

    out = run(astronaut(), PipelineConfig(split=None, codec="jpeg", quality=95, tasks=secondary.TASKS))
    pose = out.extra["tasks"]["pose"]
    assert pose.source == "decoded image"
    assert pose.agreement["oks_vs_uncompressed"] > 0.9  # JPEG q95 barely moves MoveNet


def test_bad_task_config_is_a_clear_error():
    from fcmcore.pipeline import PipelineConfig, run

    with pytest.raises(ParameterError):
        run(astronaut(), PipelineConfig(tasks=("pose",)))
    with pytest.raises(ParameterError):
        run(astronaut(), PipelineConfig(tasks=secondary.TASKS, connector="mlp"))


def test_cli_detect_with_tasks_json(capsys):
    import json

    from fcmcore.cli import main

    code = main(["detect", str(SAMPLES / "astronaut.jpg"), "--codec", "jpeg", "--quality", "80",
                 "--tasks", "detection,pose,classification", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    kp = out["tasks"]["pose"]["keypoints"]
    assert len(kp) == 17 and all(len(k) == 3 for k in kp)
    assert isinstance(out["tasks"]["pose"]["oks_vs_uncompressed"], float)
    top5 = out["tasks"]["classification"]["top5"]
    assert len(top5) == 5 and all(set(t) == {"label", "score"} for t in top5)
    assert isinstance(out["tasks"]["classification"]["top1_agrees"], bool)
    assert out["detections"], "existing fields unchanged"
    assert main(["detect", str(SAMPLES / "astronaut.jpg"), "--tasks", "pose,depth"]) == 2
    assert "unknown task" in capsys.readouterr().err


def test_task_cache_key_differs_only_when_tasks_are_served():
    from fcmcore.evaluate.result_key import result_key
    from fcmcore.pipeline import PipelineConfig

    base = PipelineConfig(codec="jpeg", quality=80)
    plain = result_key("x" * 64, base.to_json())
    legacy = base.to_json()
    legacy.pop("tasks")
    legacy.pop("connector")
    assert result_key("x" * 64, legacy) == plain, "detection-only keys stay what they were"
    multi = PipelineConfig(codec="jpeg", quality=80, tasks=secondary.TASKS)
    lin = PipelineConfig(codec="jpeg", quality=80, tasks=secondary.TASKS, connector="linear")
    keys = {plain, result_key("x" * 64, multi.to_json()), result_key("x" * 64, lin.to_json())}
    assert len(keys) == 3


@pytest.mark.slow
def test_sweep_records_task_metrics_and_bdrate_reads_them(coco96_dir, tmp_path):
    import json

    from fcmcore.cli import main

    out_a = tmp_path / "a.json"
    out_b = tmp_path / "b.json"
    common = ["--dataset", str(coco96_dir), "--limit", "4", "--workers", "1", "--quiet", "--no-cache",
              "--tasks", "detection,pose,classification"]
    assert main(["sweep", *common, "--codec", "jpeg", "--qualities", "30,70,95", "--out", str(out_a)]) == 0
    assert main(["sweep", *common, "--split", "none", "--codec", "jpeg", "--qualities", "10,30,60",
                 "--name", "image", "--out", str(out_b)]) == 0
    doc = json.loads(out_a.read_text())
    res = doc["curves"][0]["results"]
    assert len(res["cls_top1"]) == 3 and all(0 <= v <= 1 for v in res["cls_top1"])
    assert "pose_oks" in res and "cls_top5" in res
    rows = doc["curves"][0]["points"][0]["images"]
    assert len(rows) == 4 and all(set(r["tasks"]) == {"pose_oks", "cls_top1", "cls_top5"} for r in rows)
    for metric in ("pose_oks", "cls_top1"):
        assert main(["bdrate", str(out_a), str(out_b), "--anchor", "image", "--metric", metric, "--json"]) == 0
