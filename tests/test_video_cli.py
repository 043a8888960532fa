"""`fcm video` end to end on a clip made at test time, `fcm sweep --video` and `fcm bdrate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from video_clips import camera_frames, write_video

from fcmcore.cli import main
from fcmcore.video.clip import read_clip

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_clip")
    return write_video(d / "astronaut_pan.mp4", camera_frames(8, (320, 240)), fps=8)


def run_json(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def test_video_json_document(clip_path, capsys):
    doc = run_json(capsys, "video", str(clip_path), "--codec", "hevc", "--gop", "ldp", "--quality", "22",
                   "--frames", "6", "--json")
    for key in ("frames", "fps", "bits", "kbps", "bpp", "agreement", "per_frame"):
        assert key in doc
    assert doc["frames"] == 6 and doc["fps"] == pytest.approx(8)
    assert sum(f["bits"] for f in doc["per_frame"]) == doc["bits"]
    assert doc["kbps"] == pytest.approx(doc["bits"] / (6 / 8) / 1000, rel=1e-3)
    assert doc["bpp"] == pytest.approx(doc["bits"] / (6 * 320 * 240))
    assert [f["index"] for f in doc["per_frame"]] == list(range(6))
    assert doc["per_frame"][0]["intra"] and not any(f["intra"] for f in doc["per_frame"][1:])
    assert doc["per_frame"][0]["bits"] > 2 * max(f["bits"] for f in doc["per_frame"][1:])  # P frames are cheap
    assert 0.0 <= doc["agreement"]["f1"] <= 1.0
    people = [d for d in doc["per_frame"][0]["detections"] if d["label"] == "person"]
    assert people, "the astronaut is found in the coded frames"


def test_quality_moves_rate_and_agreement(clip_path, capsys):
    fine = run_json(capsys, "video", str(clip_path), "--quality", "12", "--frames", "4", "--json")
    coarse = run_json(capsys, "video", str(clip_path), "--quality", "51", "--frames", "4", "--json")
    assert coarse["bits"] < fine["bits"] / 3
    assert fine["agreement"]["f1"] >= coarse["agreement"]["f1"]
    assert fine["agreement"]["f1"] >= 0.8


def test_full_input_and_per_frame_baseline(clip_path, capsys):
    full = run_json(capsys, "video", str(clip_path), "--split", "none", "--codec", "hevc", "--gop", "ra",
                    "--quality", "30", "--frames", "4", "--json")
    assert full["config"]["paradigm"] == "full-input" and full["bits"] == sum(f["bits"] for f in full["per_frame"])
    jpeg = run_json(capsys, "video", str(clip_path), "--codec", "jpeg", "--quality", "60", "--frames", "3", "--json")
    assert all(f["intra"] for f in jpeg["per_frame"]) and jpeg["config"]["gop"] == "intra"
    assert main(["video", str(clip_path), "--codec", "jpeg", "--gop", "ldp"]) == 2
    assert "use --gop intra" in capsys.readouterr().err


def test_annotated_output(clip_path, tmp_path, capsys):
    out = tmp_path / "annotated.mp4"
    doc = run_json(capsys, "video", str(clip_path), "--frames", "5", "--out", str(out), "--json")
    clip = read_clip(out)
    assert len(clip.frames) == 5 and doc["out"] == str(out)
    assert main(["video", str(clip_path), "--out", str(tmp_path / "x.txt")]) == 2


def test_sweep_video_and_bdrate(clip_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FCM_CACHE_DIR", str(tmp_path / "cache"))
    files = {}
    for gop in ("intra", "ldp"):
        files[gop] = tmp_path / f"{gop}.json"
        code = main(["sweep", "--video", str(clip_path), "--codec", "hevc", "--gop", gop, "--qualities",
                     "22,32,42,51", "--frames", "6", "--name", gop, "--out", str(files[gop]), "--quiet"])
        assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    doc = json.loads(files["ldp"].read_text())
    res = doc["curves"][0]["results"]
    assert set(res) >= {"bpp", "kbps", "f1", "mAP", "mAP_vs_ref", "quality"}
    assert res["bpp"] == sorted(res["bpp"], reverse=True)  # higher QP, fewer bits
    # cached: a second run gives the same numbers without recomputing
    assert main(["sweep", "--video", str(clip_path), "--codec", "hevc", "--gop", "ldp", "--qualities",
                 "22,32,42,51", "--frames", "6", "--name", "ldp", "--out", str(tmp_path / "again.json"),
                 "--quiet"]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["settings"]["cached_runs"] == 4 and again["curves"][0]["results"] == res
    capsys.readouterr()
    code = main(["bdrate", str(files["intra"]), str(files["ldp"]), "--anchor", "intra", "--metric", "f1", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    rows = json.loads(out.out)["rows"]
    assert [r["name"] for r in rows] == ["intra", "ldp"]


def test_sweep_folder(clip_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FCM_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(clip_path.read_bytes())
    write_video(folder / "b.mkv", camera_frames(4, (320, 240), image="chelsea.jpg"), fps=8, codec="mpeg4")
    (folder / "readme.txt").write_text("not a clip")
    assert main(["sweep", "--video", str(folder), "--qualities", "27,37", "--frames", "3", "--out",
                 str(tmp_path / "f.json"), "--quiet"]) == 0
    doc = json.loads((tmp_path / "f.json").read_text())
    assert [c["file"] for c in doc["clips"]] == ["a.mp4", "b.mkv"] and doc["num_frames"] == 6


@pytest.mark.slow
def test_vtest_if_present(capsys):
    if not VTEST.is_file():
        pytest.skip("vtest.avi not installed (apt-get install opencv-doc)")
    doc = run_json(capsys, "video", str(VTEST), "--frames", "12", "--quality", "27", "--json")
    assert doc["frames"] == 12 and doc["fps"] == pytest.approx(10)
    assert doc["agreement"]["f1"] > 0.8
