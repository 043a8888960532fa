"""The SQLite result cache: keys, concurrent writers, and sweeps that hit it."""

from __future__ import annotations

import pytest

from fcmcore.evaluate.cache import ResultCache
from fcmcore.evaluate.result_key import result_key
from fcmcore.pipeline import PipelineConfig

CFG = PipelineConfig(split="expanded_conv_9", codec="hevc", quality=32, bit_depth=10)


def test_roundtrip_and_miss(tmp_path):
    cache = ResultCache(tmp_path / "c.sqlite")
    rec = {"bits": 1234, "bpp": 0.01, "detections": [[1, 0.5, 0.0, 1.5, 2.0, 3.25, "person"]], "timings_ms": {"encode": 1.0}}
    cache.put("k1", rec)
    assert cache.get("k1") == rec
    assert cache.get("nope") is None
    assert cache.get_many(["k1", "nope"]) == {"k1": rec}
    assert len(cache) == 1


def test_key_covers_every_field(tmp_path):
    base = result_key("img", CFG)
    assert result_key("img", CFG) == base
    variants = [
        result_key("img2", CFG),
        result_key("img", CFG.with_quality(37)),
        result_key("img", PipelineConfig(split="expanded_conv_5", codec="hevc", quality=32, bit_depth=10)),
        result_key("img", PipelineConfig(split="expanded_conv_9", codec="vvc", quality=32, bit_depth=10)),
        result_key("img", PipelineConfig(split="expanded_conv_9", codec="hevc", quality=32, bit_depth=8)),
        result_key("img", PipelineConfig(split="expanded_conv_9", codec="hevc", quality=32, bit_depth=10, quant="channel")),
        result_key("img", PipelineConfig(split="expanded_conv_9", codec="hevc", quality=32, bit_depth=10, rdo="wa")),
        result_key("img", PipelineConfig(split=None, codec="hevc", quality=32)),
    ]
    assert len({base, *variants}) == len(variants) + 1
    # 32 and 32.0 are the same quality
    assert result_key("img", CFG.with_quality(32.0)) == base


def test_key_follows_wrapper_file_content(tmp_path):
    w = tmp_path / "w.safetensors"
    w.write_bytes(b"weights-1")
    cfg = PipelineConfig(split="expanded_conv_9", codec="hevc", quality=32, wrapper=f"learned:{w}")
    k1 = result_key("img", cfg)
    moved = tmp_path / "moved.safetensors"
    moved.write_bytes(b"weights-1")
    assert result_key("img", PipelineConfig(split="expanded_conv_9", codec="hevc", quality=32,
                                            wrapper=f"learned:{moved}")) == k1  # same content, same key
    import os
    import time

    w.write_bytes(b"weights-2")
    os.utime(w, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert result_key("img", cfg) != k1


WRITER = """
import sys
from fcmcore.evaluate.cache import ResultCache
path, start, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cache = ResultCache(path)
for i in range(start, start + n):
    cache.put(f"k{i}", {"i": i, "payload": "x" * 200})
"""


def test_concurrent_writers(tmp_path):
    import subprocess
    import sys

    from fcmcore.paths import REPO_DIR

    path = tmp_path / "c.sqlite"
    ResultCache(path)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(k * 100), "100"], cwd=REPO_DIR)
             for k in range(4)]
    for p in procs:
        assert p.wait(60) == 0
    cache = ResultCache(path)
    assert len(cache) == 400
    assert cache.get("k250") == {"i": 250, "payload": "x" * 200}
    assert cache._con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_second_sweep_does_not_run_the_pipeline(tiny_dataset, tmp_path, monkeypatch):
    import fcmcore.pipeline as pipeline
    from fcmcore.evaluate import load_dataset, run_sweep

    calls = {"n": 0}
    real = pipeline.run_from_head

    def counting(head, config):
        calls["n"] += 1
        return real(head, config)

    monkeypatch.setattr(pipeline, "run_from_head", counting)
    ds = load_dataset(tiny_dataset, limit=2)
    cache = ResultCache(tmp_path / "c.sqlite")
    config = PipelineConfig(split=None, codec="jpeg")
    first = run_sweep(ds, config, [20, 80], cache=cache, workers=1, progress=False)
    assert calls["n"] == 2 * 3  # 2 images x (2 qualities + reference)
    second = run_sweep(ds, config, [20, 80], cache=cache, workers=1, progress=False)
    assert calls["n"] == 6  # all from the cache
    assert second["settings"]["cached_runs"] == 6
    assert all(row["cached"] for p in second["curves"][0]["points"] for row in p["images"])
    assert second["curves"][0]["results"] == first["curves"][0]["results"]
    # a new quality runs only what is new; --no-cache runs everything
    run_sweep(ds, config, [20, 50], cache=cache, workers=1, progress=False)
    assert calls["n"] == 8
    run_sweep(ds, config, [20, 50], cache=False, workers=1, progress=False)
    assert calls["n"] == 14


def test_code_version_depends_on_what_the_config_uses():
    from fcmcore.evaluate.result_key import code_version, sources_for

    assert sources_for({"codec": "hevc", "wrapper": "none"}) == ()
    assert sources_for({"codec": "hevc", "wrapper": "linear:/x.safetensors"}) == ("wrappers",)
    assert code_version(("wrappers",)) != code_version()
    plain = PipelineConfig(split="expanded_conv_9", codec="hevc", quality=32, bit_depth=10)
    wrapped = PipelineConfig(split="expanded_conv_9", codec="hevc", quality=32, bit_depth=10, wrapper="linear")
    assert result_key("img", plain) != result_key("img", wrapped)
