"""Sweeps that never sink: a failing run is skipped (image, quality, message) and the rest
finishes; a re-run resumes from the cache; a bad --out fails before any work; results carry
the per-image data and intervals `fcm bdrate` needs."""

from __future__ import annotations

import json

import pytest

from fcmcore.codecs import get_codec
from fcmcore.errors import CodecUnavailableError
from fcmcore.evaluate import load_dataset, run_sweep
from fcmcore.evaluate.bootstrap import bd_with_ci
from fcmcore.pipeline import PipelineConfig
from sweep_helpers import run_cli

FULL_JPEG = PipelineConfig(split=None, codec="jpeg")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FCM_CACHE_DIR", str(tmp_path / "cache"))


def fail_once_at(monkeypatch, quality: int, nth: int = 2):
    """Make JPEG fail on its ``nth`` image coded at ``quality`` (serial sweeps: image order)."""
    codec = get_codec("jpeg")
    original = type(codec)._encode_image
    calls = {"n": 0, "off": False}

    def flaky(self, rgb, q):
        if q == quality and not calls["off"]:
            calls["n"] += 1
            if calls["n"] == nth:
                raise CodecUnavailableError(f"jpeg: simulated encoder crash at quality {q}")
        return original(self, rgb, q)

    monkeypatch.setattr(type(codec), "_encode_image", flaky)
    return calls


def test_failing_run_is_skipped_and_the_sweep_finishes(tiny_dataset, monkeypatch):
    ds = load_dataset(tiny_dataset, limit=3)
    flaky = fail_once_at(monkeypatch, 30)
    doc = run_sweep(ds, FULL_JPEG, [30, 70], workers=1, progress=False)
    (bad,) = doc["skipped"]
    assert bad["image_id"] == ds.images[1].id and bad["quality"] == 30
    assert "simulated encoder crash" in bad["error"] and bad["curve"] == doc["curves"][0]["name"]
    assert doc["settings"]["failed_runs"] == 1
    for p in doc["curves"][0]["points"]:  # the image is left out of every point: curves stay paired
        assert p["num_images"] == 2 and [r["image_id"] for r in p["images"]] == [ds.images[0].id, ds.images[2].id]
    # a re-run computes only what failed; the rest comes from the cache
    flaky["off"] = True
    again = run_sweep(ds, FULL_JPEG, [30, 70], workers=1, progress=False)
    assert again["skipped"] == [] and again["settings"]["cached_runs"] == again["settings"]["runs"] - 1


def test_cli_sweep_with_a_failing_run_exits_0_with_a_warning(tiny_dataset, tmp_path, monkeypatch, capsys):
    fail_once_at(monkeypatch, 40, nth=1)
    out = tmp_path / "r.json"
    code = run_cli(["sweep", "--dataset", str(tiny_dataset), "--limit", "2", "--split", "none", "--codec", "jpeg",
                    "--qualities", "40,80", "--workers", "1", "--quiet", "--out", str(out)], monkeypatch)
    captured = capsys.readouterr()
    assert code == 0 and out.is_file()
    assert "warning:" in captured.err and "quality 40" in captured.err
    assert json.loads(out.read_text())["skipped"][0]["quality"] == 40


@pytest.mark.parametrize("kind", ["directory", "under_a_file"])
def test_bad_out_fails_before_the_sweep(tiny_dataset, tmp_path, monkeypatch, capsys, kind):
    if kind == "directory":
        out = tmp_path / "adir"
        out.mkdir()
    else:
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "r.json"
    called = []
    import fcmcore.evaluate.sweep as sweep

    monkeypatch.setattr(sweep, "plan_curves", lambda *a, **k: called.append(1))
    code = run_cli(["sweep", "--dataset", str(tiny_dataset), "--limit", "1", "--split", "none", "--codec", "jpeg",
                    "--qualities", "50", "--quiet", "--out", str(out)], monkeypatch)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "--out" in err and "Traceback" not in err
    assert called == []  # nothing ran
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*.probe"))


def test_results_carry_per_image_data_and_intervals(tiny_dataset, tmp_path, monkeypatch, capsys):
    ds = load_dataset(tiny_dataset, limit=4)
    a = run_sweep(ds, FULL_JPEG, [10, 25, 50, 90], workers=1, progress=False)
    b = run_sweep(ds, FULL_JPEG, [12, 30, 60, 95], name="jpeg again", workers=1, progress=False)
    p = a["curves"][0]["points"][1]
    lo, hi = p["mAP_ci"]
    assert lo <= p["mAP"] <= hi and p["bpp_ci"][0] <= p["bpp"] <= p["bpp_ci"][1]
    assert all(len(r["agreement"]) == 3 for r in p["images"]) and "f1_ci" in p["agreement"]
    assert a["curves"][0]["results"]["mAP_ci"][1] == p["mAP_ci"]
    from fcmcore.evaluate.coco_eval import PerImageEval

    assert PerImageEval.from_json(p["coco_eval"]).map() == (p["mAP"], p["mAP50"])  # what pycocotools said
    r = bd_with_ci(a["curves"][0], b["curves"][0], n_resamples=200)
    assert r.n_images == 4 and r.bd_rate is not None and r.bd_rate_ci[0] <= r.bd_rate_ci[1]
    from fcmcore.evaluate import save_results

    save_results(a, tmp_path / "a.json")
    save_results(b, tmp_path / "b.json")
    code = run_cli(["bdrate", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--anchor", "full input + jpeg",
                    "--resamples", "200", "--json"], monkeypatch)
    assert code == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert {"bd_rate", "bd_map", "bd_rate_ci", "bd_map_ci", "n_images", "overlap", "significant"} <= set(rows[1])
    assert rows[1]["n_images"] == 4


def test_auto_qualities_span_one_common_rate_range(tiny_dataset):
    from fcmcore.evaluate.auto_qualities import auto_qualities, default_qualities

    ds = load_dataset(tiny_dataset, limit=1)
    configs = [FULL_JPEG, PipelineConfig(split=None, codec="webp")]
    grids, info = auto_qualities(ds, configs, probe_images=1)
    lo, hi = info["bpp_range"]
    assert 0 < lo < hi and len(info["targets"]) == 6
    for grid in grids:
        assert len(grid) >= 4 and len(set(grid)) == len(grid)
    assert len(default_qualities("hevc")) >= 6 and len(default_qualities("vvc")) >= 6
    assert len(default_qualities("png")) >= 6


@pytest.mark.slow
def test_auto_qualities_aligned_on_accuracy_hit_their_f1_targets(tiny_dataset):
    """--align accuracy: per config, qualities whose probe F1 vs the uncompressed detector lands
    near common targets; split points far apart in rate get different QPs for the same F1."""
    from fcmcore import pipeline
    from fcmcore.evaluate.auto_qualities import auto_qualities
    from fcmcore.evaluate.metrics import agreement
    from fcmcore.imageio import decode_image_bytes

    ds = load_dataset(tiny_dataset, limit=2)
    configs = [PipelineConfig(split="Conv", codec="hevc"), PipelineConfig(split="expanded_conv_9", codec="hevc")]
    grids, info = auto_qualities(ds, configs, probe_images=2, n_points=4, align="accuracy")
    assert info["align"] == "accuracy" and info["probe_images"] == 2
    lo, hi = info["f1_range"]
    assert 0 <= lo < hi <= 1 and len(info["targets"]) == 4
    images = [decode_image_bytes(im.path.read_bytes(), im.file_name) for im in ds.images[:2]]
    refs = dict(enumerate(pipeline.run(img, PipelineConfig(split=None, codec=None)).detections for img in images))
    for config, grid in zip(configs, grids):
        assert len(grid) >= 2 and grid == sorted(grid, reverse=True)  # QP falls as the F1 target rises
        f1 = [agreement(dict(enumerate(pipeline.run(img, config.with_quality(q)).detections for img in images)), refs)["f1"]
              for q in (grid[0], grid[-1])]
        assert f1[0] <= f1[1] and abs(f1[1] - info["targets"][-1]) < 0.35, (config.split, grid, f1, info)
    assert grids[0] != grids[1]
    with pytest.raises(Exception, match="align"):
        auto_qualities(ds, configs, align="sideways")
