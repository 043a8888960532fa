"""Wrappers and wrapper-aware RDO in sequence coding (per-tile gains per clip / GOP / frame),
and video sweeps on Dask / local processes giving the serial results."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from video_clips import camera_frames, write_video

from fcmcore.cli import main
from fcmcore.errors import BitstreamError, ParameterError
from fcmcore.video.features import decode_feature_sequence, encode_feature_sequence
from fcmcore.video.run import VideoConfig, sequence_weights, validate
from fcmcore.video.sequence import sequence_coder
from fcmcore.video.sweep import _key, video_sweep
from fcmcore.wrappers import load_wrapper


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("wa_clip")
    return write_video(d / "pan.mp4", camera_frames(6, (320, 240)), fps=6)


def _features(n=6, c=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(1, c, 12, 12, generator=g)
    return [{"x": base + 0.05 * i * torch.randn(1, c, 12, 12, generator=g)} for i in range(n)]


def _gain_sets(data: bytes, c: int, n_frames: int) -> int:
    """Number of gain sets in a one-tensor ('x'), sequence-range, tensor-quant stream."""
    head = 4 + 1 + 1 + 1 + 1 + 1 + 1 + 3  # magic, version, flags, N, T, name len, "x", C H W (1 byte each)
    head += 4  # sequence range: f16 min + max
    return data[head]


def test_gains_follow_weights_and_are_sent_once_per_run():
    coder = sequence_coder("hevc")
    feats = _features()
    w_a, w_b = {"x": np.linspace(0.1, 4.0, 8)}, {"x": np.linspace(4.0, 0.1, 8)}
    plain = encode_feature_sequence(feats, coder, 17, gop="ldp")
    fixed = encode_feature_sequence(feats, coder, 17, gop="ldp", channel_weights=[w_a] * 6)
    per_gop = encode_feature_sequence(feats, coder, 17, gop="ldp", intra_period=3,
                                      channel_weights=[w_a] * 3 + [w_b] * 3)
    per_frame = encode_feature_sequence(feats, coder, 17, gop="ldp",
                                        channel_weights=[w_a if i % 2 else w_b for i in range(6)])
    assert _gain_sets(fixed.data, 8, 6) == 1 and _gain_sets(per_gop.data, 8, 6) == 2
    assert _gain_sets(per_frame.data, 8, 6) == 6
    # each gain set is varint run + 8 float16 gains = 17 bytes, counted in the frame it starts at
    assert fixed.header_bytes - plain.header_bytes == 1 + 17
    assert per_frame.header_bytes - plain.header_bytes == 1 + 6 * 17
    for enc in (fixed, per_gop, per_frame):
        assert sum(enc.frame_bits) == len(enc.data) * 8
    # the most important channel (gain 1) keeps the finest step: its error is the smallest
    dec = decode_feature_sequence(fixed.data, coder)
    err = np.stack([(f["x"] - d["x"]).abs().mean(dim=(0, 2, 3)).numpy() for f, d in zip(feats, dec)]).mean(0)
    assert err[7] < err[0]
    dec_plain = decode_feature_sequence(plain.data, coder)
    assert all(d["x"].shape == (1, 8, 12, 12) for d in dec + dec_plain)


def test_gain_runs_that_do_not_cover_the_frames_are_refused():
    coder = sequence_coder("hevc")
    enc = encode_feature_sequence(_features(4), coder, 22, gop="ldp", channel_weights=[{"x": np.ones(8)}] * 4)
    data = bytearray(enc.data)
    pos = 4 + 1 + 1 + 1 + 1 + 1 + 1 + 3 + 4  # the gain-set count
    assert data[pos] == 1 and data[pos + 1] == 4  # one set covering the 4 frames
    data[pos + 1] = 3
    with pytest.raises(BitstreamError, match="gain runs"):
        decode_feature_sequence(bytes(data), coder)
    with pytest.raises(ParameterError, match="channel weights"):
        encode_feature_sequence(_features(2), coder, 22, channel_weights=[{"x": np.ones(3)}] * 2)


def test_gop_weights_are_estimated_once_per_gop(monkeypatch):
    wrapper = load_wrapper("learned", "ssd_mobilenet_v2", "expanded_conv_9")
    calls = []

    def fake(reduced, kind, source):
        calls.append(source)
        return {"x": np.full(24, float(len(calls)))}

    monkeypatch.setattr(wrapper, "importance_weights", fake)
    reduced = [{"x": torch.zeros(1, 24, 19, 19)} for _ in range(7)]
    gop = sequence_weights(wrapper, reduced, VideoConfig(wrapper="learned", rdo="wa", wa_source="gop",
                                                         gop="ldp", intra_period=3))
    assert calls == ["image"] * 3  # frames 0, 3, 6
    assert [float(w["x"][0]) for w in gop] == [1, 1, 1, 2, 2, 2, 3]
    calls.clear()
    image = sequence_weights(wrapper, reduced, VideoConfig(wrapper="learned", rdo="wa", wa_source="image"))
    assert calls == ["image"] * 7 and len({float(w["x"][0]) for w in image}) == 7
    calls.clear()
    sequence_weights(wrapper, reduced, VideoConfig(wrapper="learned", rdo="wa", wa_source="fixed"))
    assert calls == ["fixed"]


def test_validate_wrapper_options():
    ok = validate(VideoConfig(wrapper="learned", rdo="wa", quality=27))
    assert ok.wa_source == "fixed"  # the bundled file's rdo_weights is "task" (fixed weights)
    assert validate(VideoConfig(wrapper="learned", quality=27)).wa_source is None  # sse: no source
    assert validate(VideoConfig(quality=27)).wa_source is None
    bad = [
        (VideoConfig(rdo="wa"), "needs a wrapper"),
        (VideoConfig(split=None, wrapper="learned"), "full-input"),
        (VideoConfig(wrapper="learned", rdo="wa-qp"), "per-tile gains"),
        (VideoConfig(wrapper="learned", wa_source="image"), "applies to --rdo wa"),
        (VideoConfig(wrapper="learned", rdo="wa", wa_source="sometimes"), "--wa-source"),
        (VideoConfig(codec="jpeg", gop="intra", wrapper="learned", rdo="wa", wa_source="gop"), "needs sequence coding"),
    ]
    for cfg, msg in bad:
        with pytest.raises(ParameterError, match=msg):
            validate(cfg)


def test_cache_key_tells_weight_sources_apart():
    sel = {"start": 0, "frames": 4, "stride": 1}
    keys = {_key("sha", sel, validate(VideoConfig(wrapper="learned", rdo="wa", wa_source=s, quality=27)))
            for s in ("fixed", "image", "gop")}
    keys.add(_key("sha", sel, validate(VideoConfig(wrapper="learned", quality=27))))
    keys.add(_key("sha", sel, validate(VideoConfig(quality=27))))
    assert len(keys) == 5


def test_fcm_video_gop_weights(clip_path, capsys):
    code = main(["video", str(clip_path), "--wrapper", "learned", "--rdo", "wa", "--wa-source", "gop",
                 "--intra-period", "3", "--quality", "22", "--frames", "6", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)
    cfg = doc["config"]
    assert (cfg["wrapper"], cfg["rdo"], cfg["wa_source"], cfg["intra_period"]) == ("learned", "wa", "gop", 3)
    assert sum(f["bits"] for f in doc["per_frame"]) == doc["bits"]
    assert [f["intra"] for f in doc["per_frame"]] == [True, False, False, True, False, False]
    assert "weights" in doc["timings_ms"] and "pre_wrapper" in doc["timings_ms"]
    assert doc["agreement"]["f1"] >= 0.5
    assert main(["video", str(clip_path), "--rdo", "wa"]) == 2
    assert "needs a wrapper" in capsys.readouterr().err
    assert main(["detect", str(clip_path), "--wa-source", "gop"]) == 2
    assert "for clips" in capsys.readouterr().err


def _comparable(doc):
    """A results document without what legitimately differs between runs (times, dates, how it ran)."""
    doc = json.loads(json.dumps(doc))
    doc.pop("created")
    doc.pop("settings")
    for c in doc["curves"]:
        for p in c["points"]:
            p.pop("timings_ms")
    return doc


def test_dask_video_sweep_matches_serial(clip_path):
    distributed = pytest.importorskip("distributed")
    curves = [(VideoConfig(gop="ldp"), [27, 37], "ldp"),
              (VideoConfig(wrapper="learned", rdo="wa", wa_source="gop", gop="ldp", intra_period=2), [27], "wa")]
    serial = video_sweep(clip_path, curves, frames=4, cache=False, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            dask = video_sweep(clip_path, curves, frames=4, cache=False, progress=False, scheduler=client)
    assert dask["settings"]["scheduler"] is not None and serial["settings"]["workers"] == 1
    a, b = _comparable(serial), _comparable(dask)
    assert a.keys() == b.keys()
    for field in a:
        assert a[field] == b[field], field
    for ca, cb in zip(a["curves"], b["curves"]):
        for pa, pb in zip(ca["points"], cb["points"]):
            for field in pa:
                assert pa[field] == pb[field], (ca["name"], pa["quality"], field)


@pytest.mark.slow
def test_local_processes_video_sweep_matches_serial(clip_path):
    curves = [(VideoConfig(gop="ra"), [27, 32, 37], "ra")]
    serial = video_sweep(clip_path, curves, frames=4, cache=False, progress=False)
    local = video_sweep(clip_path, curves, frames=4, cache=False, progress=False, workers=2)
    assert local["settings"]["workers"] == 2
    assert _comparable(local) == _comparable(serial)


def test_sweep_cli_takes_workers_and_wrapper(clip_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FCM_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "wa.json"
    code = main(["sweep", "--video", str(clip_path), "--wrapper", "learned", "--rdo", "wa", "--wa-source", "fixed",
                 "--qualities", "27", "--frames", "3", "--workers", "1", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert doc["curves"][0]["config"]["wa_source"] == "fixed" and doc["settings"]["workers"] == 1
    assert "[learned] wa-rdo/fixed" in doc["curves"][0]["name"]
    assert main(["sweep", "--video", str(clip_path), "--wrapper", "learned", "--rdo", "wa", "--wa-weights",
                 "spatial", "--qualities", "27", "--frames", "3", "--out", str(out), "--quiet"]) == 2
    assert "not supported for video" in capsys.readouterr().err


def _synthetic_curve(name, bits_scale, n=40, seed=0):
    """A video curve as fcm sweep --video writes it: per-frame bits, pixels and match counts."""
    rng = np.random.default_rng(seed)
    points = []
    for q, (bits, miss) in enumerate([(4000, 0.05), (2000, 0.15), (1000, 0.35), (500, 0.6)]):
        fb = (bits * bits_scale * rng.uniform(0.5, 1.5, n)).astype(int).tolist()
        counts = []
        for _ in range(n):
            m = int(rng.binomial(10, 1 - miss))
            counts.append([m, 10 - m, int(rng.binomial(2, miss))])
        c = np.asarray(counts)
        f1 = 2 * c[:, 0].sum() / (2 * c[:, 0].sum() + c[:, 1].sum() + c[:, 2].sum())
        points.append({"quality": 22 + 5 * q, "bpp": sum(fb) / (n * 1000), "f1": float(f1), "frame_bits": fb,
                       "pixels_per_frame": [1000] * n, "frame_counts": counts, "block_frames": 4})
    f1s = [p["f1"] for p in points]
    return {"name": name, "results": {"bpp": [p["bpp"] for p in points], "f1": f1s, "mAP_vs_ref": f1s},
            "points": points}


def test_fcm_bdrate_gives_block_bootstrap_intervals_for_video(tmp_path, capsys):
    from fcmcore.evaluate.sweep import save_results

    anchor, half = _synthetic_curve("intra", 1.0), _synthetic_curve("ldp", 0.5)
    for c in (anchor, half):
        save_results({"version": 1, "kind": "video", "curves": [c]}, tmp_path / f"{c['name']}.json")
    files = [str(tmp_path / "intra.json"), str(tmp_path / "ldp.json")]
    assert main(["bdrate", *files, "--anchor", "intra", "--metric", "f1", "--resamples", "200", "--json"]) == 0
    out = capsys.readouterr()
    row = json.loads(out.out)["rows"][1]
    assert row["name"] == "ldp" and row["n_images"] == 40 and row["n_resamples"] == 200
    assert row["bd_rate"] == pytest.approx(-50, abs=2)  # same counts at half the bits
    lo, hi = row["bd_rate_ci"]
    assert lo < row["bd_rate"] < hi and hi < 0 and row["significant"]
    assert "circular blocks of 4 frames" in out.err
    assert main(["bdrate", *files, "--anchor", "intra", "--metric", "mAP_vs_ref", "--json"]) == 0
    assert "per-frame intervals are on --metric f1" in capsys.readouterr().err
    from fcmcore.evaluate.bootstrap import bd_with_ci

    del anchor["points"][0]["block_frames"]  # a file written before the block was recorded
    res = bd_with_ci(anchor, half, metric="f1", n_resamples=100)
    assert res.bd_rate_ci is None and any("no block length" in n for n in res.notes)
    # a clip of one block has no interval (every resample would be the clip itself)
    short, short_half = _synthetic_curve("intra", 1.0, n=6), _synthetic_curve("ldp", 0.5, n=6)
    for p in short["points"] + short_half["points"]:
        p["block_frames"] = 6
    res = bd_with_ci(short, short_half, metric="f1", n_resamples=50)
    assert res.bd_rate is not None and res.bd_rate_ci is None and not res.significant
    assert any("fewer than two blocks" in n for n in res.notes)
