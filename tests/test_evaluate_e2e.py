"""End-to-end evaluation with the real detector and HEVC (slow): sweeps, BD-rate, process pools,
Dask and `fcm layers` on the bundled tinycoco images; accuracy levels on coco96 (skipped without it)."""

from __future__ import annotations

import json

import pytest

from fcmcore.evaluate import CurveSpec, bd_table, evaluate, load_dataset
from fcmcore.pipeline import PipelineConfig
from sweep_helpers import comparable

pytestmark = pytest.mark.slow

EC9_HEVC = PipelineConfig(split="expanded_conv_9", codec="hevc")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FCM_CACHE_DIR", str(tmp_path / "cache"))


def _two_hevc_curves(dataset_dir, limit):
    ds = load_dataset(dataset_dir, limit=limit)
    qps = [27, 37, 47]
    doc = evaluate(ds, [CurveSpec(EC9_HEVC, qps), CurveSpec(PipelineConfig(split=None, codec="hevc"), qps)],
                   progress=False)
    return doc, doc["curves"]


def test_hevc_sweep_and_bd_table_on_tinycoco(tiny_dataset):
    doc, (ec9, full) = _two_hevc_curves(tiny_dataset, 8)
    ref = ec9["reference"]
    assert 0 < ref["mAP"] <= 1 and ref["num_images"] == 8
    assert doc["reference"] == ref
    bpp = ec9["results"]["bpp"]
    assert bpp[0] > bpp[1] > bpp[2] > 0  # monotone in QP
    assert full["results"]["bpp"][0] > full["results"]["bpp"][1] > full["results"]["bpp"][2] > 0
    assert all(0 <= m <= 1 for m in ec9["results"]["mAP"] + full["results"]["mAP"])
    # full-input's reference is the plain detector on raw pixels: same detections as the uncut split
    assert full["reference"]["mAP"] == pytest.approx(ref["mAP"], abs=1e-9)
    rows, notes = bd_table(doc["curves"], full["name"])
    by_name = {r.name: r for r in rows}
    assert set(by_name) == {full["name"], ec9["name"]}
    assert by_name[full["name"]].bd_rate == 0.0
    assert by_name[ec9["name"]].bd_rate is not None or any("overlap" in n or "fewer than 2" in n for n in notes)


def test_hevc_sweep_on_8_coco96_images(coco96_dir):
    doc, (ec9, full) = _two_hevc_curves(coco96_dir, 8)
    ref = ec9["reference"]
    assert 0.1 < ref["mAP"] <= 1 and ref["num_images"] == 8
    assert full["results"]["bpp"][0] > full["results"]["bpp"][2]
    maps = ec9["results"]["mAP"]
    assert maps[2] < maps[0] <= ref["mAP"] + 0.05  # the knee on coco96: QP 47 loses accuracy
    assert full["reference"]["mAP"] == pytest.approx(ref["mAP"], abs=1e-9)


def test_parallel_and_dask_match_serial(tiny_dataset):
    distributed = pytest.importorskip("distributed")
    ds = load_dataset(tiny_dataset, limit=4)
    curves = [CurveSpec(EC9_HEVC, [32, 44])]
    serial = evaluate(ds, curves, workers=1, progress=False, cache=False)
    pool = evaluate(ds, curves, workers=2, progress=False, cache=False)
    assert comparable(pool) == comparable(serial)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        dask = evaluate(ds, curves, scheduler=cluster.scheduler_address, progress=False, cache=False)
    assert comparable(dask) == comparable(serial)
    assert dask["settings"]["scheduler"] == cluster.scheduler_address


def test_layers_command(tiny_dataset, tmp_path, monkeypatch, capsys):
    import fcmcore.cli as cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", ["fcmcore.cli.detect", "fcmcore.cli.evaluate", "fcmcore.cli.compare"])
    out = tmp_path / "layers.json"
    code = cli.main(["layers", "--dataset", str(tiny_dataset), "--limit", "3", "--codec", "hevc",
                     "--qualities", "27,37,47", "--splits", "expanded_conv_9,expanded_conv_2",
                     "--out", str(out), "--quiet"])
    assert code == 0
    text = capsys.readouterr().out
    assert "BD-rate" in text and "expanded_conv_2" in text and "full input" in text
    doc = json.loads(out.read_text())
    assert [c["config"]["split"] for c in doc["curves"]] == [None, "expanded_conv_2", "expanded_conv_9"]
    assert doc["layers"]["anchor"] == doc["curves"][0]["name"]
    assert (tmp_path / "layers.html").read_text().count("vega") > 0
