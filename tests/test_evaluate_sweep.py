"""Sweeps on a few images of the bundled tinycoco dataset: the results file, unannotated and broken datasets,
equal-rate mode, Dask vs serial, and the `fcm sweep` command."""

from __future__ import annotations

import json
import shutil

import pytest

from fcmcore.codecs.base import QualitySpec
from fcmcore.errors import ParameterError
from fcmcore.evaluate import CurveSpec, evaluate, load_dataset, run_sweep
from fcmcore.evaluate.equal_rate import bisect_quality, quality_for_rate
from fcmcore.pipeline import PipelineConfig
from sweep_helpers import comparable, run_cli

FULL_JPEG = PipelineConfig(split=None, codec="jpeg")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FCM_CACHE_DIR", str(tmp_path / "cache"))


def test_results_document(tiny_dataset):
    ds = load_dataset(tiny_dataset, limit=2)
    doc = run_sweep(ds, FULL_JPEG, [15, 85], workers=1, progress=False, cache=False)
    assert doc["version"] == 1 and doc["ground_truth"] == "annotations" and doc["skipped"] == []
    assert doc["dataset"]["image_ids"] == ds.image_ids
    (c,) = doc["curves"]
    assert c["name"] == "ssd_mobilenet_v2 @ full input + jpeg"
    assert set(c["results"]) >= {"bpp", "mAP", "mAP50", "quality"}
    assert c["results"]["quality"] == [15, 85]
    assert c["results"]["bpp"][0] < c["results"]["bpp"][1]
    for p in c["points"]:
        assert p["config"]["codec"] == "jpeg" and p["num_images"] == 2
        assert 0 <= p["mAP"] <= p["mAP50"] <= 1
        assert {"encode", "decode", "detector", "total"} <= set(p["timings_ms"])
        # bpp = mean over images of bits / (W * H) of the original image
        sizes = {im.id: im.width * im.height for im in ds.images}
        assert p["bpp"] == pytest.approx(sum(r["bits"] / sizes[r["image_id"]] for r in p["images"]) / 2)
        assert all(r["num_detections"] > 0 for r in p["images"])
    ref = doc["reference"]
    assert ref["config"]["codec"] is None and ref["bpp"] == 24.0  # raw RGB
    assert 0 < ref["mAP"] <= 1
    json.dumps(doc)


def test_split_sweep_records_raw_feature_reference(tiny_dataset):
    ds = load_dataset(tiny_dataset, limit=2)
    doc = run_sweep(ds, PipelineConfig(split="expanded_conv_9", codec="hevc"), [27, 45], workers=1,
                    progress=False, cache=False)
    c = doc["curves"][0]
    assert c["results"]["bpp"][0] > c["results"]["bpp"][1] > 0
    ref = c["reference"]
    assert ref["config"]["split"] == "expanded_conv_9" and ref["config"]["codec"] is None
    im = ds.images[0]
    assert ref["images"][0]["bits"] == 64 * 19 * 19 * 32  # raw float32 features
    assert ref["images"][0]["bpp"] == pytest.approx(64 * 19 * 19 * 32 / (im.width * im.height), rel=1e-6)
    # uncut = uncompressed split: the split reference agrees exactly with itself
    assert c["points"][0]["agreement"]["matched"] > 0


def test_unannotated_folder_uses_uncompressed_detections(tiny_dataset, tmp_path):
    ds0 = load_dataset(tiny_dataset, limit=2)
    for im in ds0.images:
        shutil.copy(im.path, tmp_path / im.file_name)
    ds = load_dataset(tmp_path)
    assert not ds.has_annotations
    doc = run_sweep(ds, FULL_JPEG, [5, 90], workers=1, progress=False, cache=False)
    assert doc["ground_truth"] == "uncompressed"
    c = doc["curves"][0]
    assert c["results"]["mAP"] == c["results"]["mAP_vs_ref"]
    low, high = c["points"]
    assert high["mAP"] > low["mAP"]
    assert high["agreement"]["recall"] >= low["agreement"]["recall"]


def test_unreadable_image_is_reported_and_skipped(tiny_dataset, tmp_path):
    ds0 = load_dataset(tiny_dataset, limit=3)
    (tmp_path / "images").mkdir()
    for im in ds0.images:
        shutil.copy(im.path, tmp_path / "images" / im.file_name)
    broken = ds0.images[1]
    (tmp_path / "images" / broken.file_name).write_bytes(b"\xff\xd8 this is not a jpeg")
    (tmp_path / "instances.json").write_text(json.dumps(ds0.ground_truth()))
    doc = run_sweep(load_dataset(tmp_path), FULL_JPEG, [50], workers=1, progress=False, cache=False)
    assert [s["image_id"] for s in doc["skipped"]] == [broken.id]
    assert "not an image" in doc["skipped"][0]["error"] or "corrupt" in doc["skipped"][0]["error"]
    assert doc["curves"][0]["points"][0]["num_images"] == 2


def test_sweep_needs_a_codec_and_valid_names(tiny_dataset):
    ds = load_dataset(tiny_dataset, limit=1)
    with pytest.raises(ParameterError, match="needs a codec"):
        run_sweep(ds, PipelineConfig(split="expanded_conv_9", codec=None), [1], progress=False)
    with pytest.raises(ParameterError, match="out of range"):
        run_sweep(ds, PipelineConfig(codec="hevc"), [99], progress=False)
    from fcmcore.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="unknown split"):
        run_sweep(ds, PipelineConfig(split="nope", codec="hevc"), [30], progress=False)


def test_dask_matches_serial(tiny_dataset):
    distributed = pytest.importorskip("distributed")
    ds = load_dataset(tiny_dataset, limit=2)
    curves = [CurveSpec(FULL_JPEG, [30, 70])]
    serial = evaluate(ds, curves, workers=1, progress=False, cache=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            dask = evaluate(ds, curves, scheduler=client, progress=False, cache=False)
    assert comparable(dask) == comparable(serial)


# -- equal-rate ---------------------------------------------------------------------------

@pytest.mark.parametrize("higher", [True, False])
def test_bisect_integer_quality(higher):
    spec = QualitySpec(0, 51, higher_is_better=higher, default=30, integer=True)
    calls = []

    def bpp(q):
        calls.append(q)
        step = q if higher else 51 - q
        return 0.01 * 1.1 ** step  # monotone in the "more bits" direction

    q = bisect_quality(spec, bpp, 0.05)
    best = min(range(52), key=lambda k: abs(bpp(k) - 0.05))
    assert q == best
    calls.clear()
    bisect_quality(spec, bpp, 0.05)
    assert len(calls) <= 8  # log2(52) + ends
    assert bisect_quality(spec, bpp, 1e-6) == (0 if higher else 51)  # below the range: fewest bits
    assert bisect_quality(spec, bpp, 1e6) == (51 if higher else 0)


def test_bisect_float_quality():
    spec = QualitySpec(0.01, 24, higher_is_better=True, default=1, integer=False)
    q = bisect_quality(spec, lambda q: q * 0.5, 3.0)
    assert q == pytest.approx(6.0, abs=0.01)
    with pytest.raises(ParameterError):
        bisect_quality(spec, lambda q: q, -1)


def test_quality_for_rate_on_an_image(tiny_dataset):
    from fcmcore.imageio import load_image
    from fcmcore.pipeline import run

    ds = load_dataset(tiny_dataset, limit=1)
    image = load_image(ds.images[0].path)
    q, result = quality_for_rate(image, FULL_JPEG, 1.0)
    assert result.quality == q and abs(result.bpp - 1.0) < 0.3
    for neighbour in (q - 1, q + 1):
        assert abs(run(image, FULL_JPEG.with_quality(neighbour)).bpp - 1.0) >= abs(result.bpp - 1.0)


def test_cli_sweep_quality_and_target_modes(tiny_dataset, tmp_path, monkeypatch, capsys):
    out = tmp_path / "r.json"
    args = ["sweep", "--dataset", str(tiny_dataset), "--limit", "2", "--split", "none", "--codec", "jpeg",
            "--workers", "1", "--quiet"]
    assert run_cli(args + ["--qualities", "20,60", "--out", str(out), "--name", "J"], monkeypatch) == 0
    text = capsys.readouterr().out
    assert "uncompressed reference: 24 bpp" in text and "wrote" in text
    doc = json.loads(out.read_text())
    assert doc["curves"][0]["name"] == "J"

    out2 = tmp_path / "t.json"
    assert run_cli(args + ["--target-bpp", "0.5,1.5", "--out", str(out2)], monkeypatch) == 0
    c = json.loads(out2.read_text())["curves"][0]
    assert c["mode"] == "target_bpp" and c["results"]["target_bpp"] == [0.5, 1.5]
    assert c["results"]["bpp"][0] < c["results"]["bpp"][1]
    assert all(abs(r["bpp"] - 0.5) < 0.25 for r in c["points"][0]["images"])
    assert len({r["quality"] for r in c["points"][1]["images"]}) >= 1

    assert run_cli(args[:-3] + ["--qualities", "20", "--out", str(out)] + ["--codec", "none"], monkeypatch) == 2
    assert "needs --codec" in capsys.readouterr().err
    assert run_cli(args + ["--qualities", "a,b", "--out", str(out)], monkeypatch) == 2
    assert "comma-separated numbers" in capsys.readouterr().err
