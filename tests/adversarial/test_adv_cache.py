"""A damaged result cache heals: detected, moved aside, a fresh one started, said once.
Records carry a checksum and a schema version; one that fails them is a miss."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys

import pytest
from conftest import run_cli
from corpus import overwrite_pages, poison_records, set_raw_records, wrong_columns_cache

from fcmcore.evaluate.cache import ResultCache
from fcmcore.paths import REPO_DIR

RECORD = {"image_id": 1, "quality": 50.0, "bits": 1000, "bpp": 0.1, "width": 100, "height": 80,
          "header_bytes": 0, "bits_estimated": None, "timings_ms": {"encode": 1.0},
          "detections": [[1, 0.9, 1.0, 2.0, 30.0, 40.0, "person"]]}


def _filled(path, n=300):
    cache = ResultCache(path)
    cache.put_many([(f"k{i}", dict(RECORD, image_id=i, payload="x" * 200)) for i in range(n)])
    cache.close()
    return path


def _exercise(path):
    """Everything a sweep does with a cache; none of it may raise."""
    cache = ResultCache(path)
    cache.get_many([f"k{i}" for i in range(50)])
    cache.get("k1")
    cache.put("fresh", RECORD)
    assert cache.get("fresh") == RECORD
    assert len(cache) >= 1
    cache.close()
    return cache


def _asides(path):
    return sorted(p.name for p in path.parent.iterdir()
                  if p.name.startswith(path.name + ".damaged") and not p.name.endswith(("-wal", "-shm")))


DAMAGE = {
    "pages_overwritten": lambda p: overwrite_pages(_filled(p), first_page=2, pages=4),
    "header_overwritten": lambda p: overwrite_pages(_filled(p), first_page=0, pages=1),
    "wrong_columns": wrong_columns_cache,
    "junk_file": lambda p: p.write_bytes(b"this is not a database\n" * 100),
    "empty_results_table_other_schema": lambda p: sqlite3.connect(p).execute("CREATE TABLE results (x)").connection.commit(),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_cache_is_moved_aside_and_replaced(tmp_path, kind, capsys):
    path = tmp_path / "results.sqlite"
    DAMAGE[kind](path)
    capsys.readouterr()
    _exercise(path)
    _exercise(path)  # the second open finds a healthy cache: nothing more to say
    err = capsys.readouterr().err
    assert err.count("warning:") == 1, err
    assert "moved" in err and "fresh" in err
    assert len(_asides(path)) == 1, _asides(path)


def test_healthy_cache_is_left_alone(tmp_path, capsys):
    path = _filled(tmp_path / "results.sqlite")
    cache = _exercise(path)
    assert ResultCache(path).get("k7")["image_id"] == 7
    assert "warning" not in capsys.readouterr().err and _asides(path) == []
    del cache


@pytest.mark.parametrize("poison", ["emptied_detections", "bits_changed", "junk_bytes", "not_json", "wrong_type"])
def test_tampered_records_are_misses(tmp_path, poison):
    path = _filled(tmp_path / "results.sqlite", n=5)
    if poison == "emptied_detections":
        assert poison_records(path, lambda r: dict(r, detections=[])) == 5
    elif poison == "bits_changed":
        poison_records(path, lambda r: dict(r, bits=1))
    elif poison == "junk_bytes":
        set_raw_records(path, b"\x00junk")
    elif poison == "not_json":
        import zlib

        set_raw_records(path, zlib.compress(b"{not json"))
    else:
        poison_records(path, lambda r: [1, 2, 3])
    cache = ResultCache(path)
    assert cache.get_many([f"k{i}" for i in range(5)]) == {}
    assert cache.get("k0") is None
    cache.put("k0", RECORD)  # recomputed results replace the bad ones
    assert cache.get("k0") == RECORD


def test_record_moved_to_another_key_is_a_miss(tmp_path):
    path = _filled(tmp_path / "results.sqlite", n=2)
    con = sqlite3.connect(path)
    value = con.execute("SELECT * FROM results WHERE key='k0'").fetchone()
    con.execute("DELETE FROM results WHERE key='k1'")
    con.execute(f"INSERT INTO results VALUES ('k1', {', '.join('?' * (len(value) - 1))})", value[1:])
    con.commit()
    con.close()
    cache = ResultCache(path)
    assert cache.get("k0") is not None and cache.get("k1") is None


HEALER = """
import sys
from fcmcore.evaluate.cache import ResultCache
cache = ResultCache(sys.argv[1])
for i in range(40):
    cache.put(f"p{sys.argv[2]}-{i}", {"i": i})
    cache.get_many([f"k{j}" for j in range(20)])
assert all(cache.get(f"p{sys.argv[2]}-{i}") == {"i": i} for i in range(40))
"""


def test_processes_healing_one_cache_at_once(tmp_path):
    path = tmp_path / "results.sqlite"
    overwrite_pages(_filled(path), first_page=2, pages=4)
    procs = [subprocess.Popen([sys.executable, "-c", HEALER, str(path), str(k)], cwd=REPO_DIR,
                              stderr=subprocess.PIPE, text=True) for k in range(3)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errs
    assert all("Traceback" not in e for e in errs)
    assert ResultCache(path).get_many([]) == {} and len(ResultCache(path)) >= 40  # one healthy cache
    assert 1 <= len(_asides(path)) <= 3


@pytest.fixture(scope="module")
def sample_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("samples")
    for name in ("astronaut.jpg", "chelsea.jpg"):
        shutil.copy(REPO_DIR / "assets" / "samples" / name, folder / name)
    return folder


SWEEP = ("sweep", "--split", "none", "--codec", "jpeg", "--qualities", "30", "--workers", "1", "--quiet")


def test_cli_sweep_heals_a_damaged_cache(tmp_path, sample_folder):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    env = {"FCM_CACHE_DIR": str(cache_dir)}
    first = run_cli(*SWEEP, "--dataset", str(sample_folder), "--out", str(tmp_path / "a.json"), env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    overwrite_pages(cache_dir / "results.sqlite", first_page=1, pages=3)
    second = run_cli(*SWEEP, "--dataset", str(sample_folder), "--out", str(tmp_path / "b.json"), env=env, timeout=600)
    assert "Traceback" not in second.stderr and second.returncode == 0, second.stderr[-2000:]
    assert second.stderr.count("warning:") == 1 and "moved" in second.stderr, second.stderr
    import json

    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert a["curves"][0]["results"] == b["curves"][0]["results"]


def test_sweep_does_not_trust_poisoned_records(tmp_path, sample_folder):
    from fcmcore.evaluate import load_dataset, run_sweep
    from fcmcore.pipeline import PipelineConfig

    ds = load_dataset(sample_folder)
    path = tmp_path / "results.sqlite"
    config = PipelineConfig(split=None, codec="jpeg")
    first = run_sweep(ds, config, [30], cache=ResultCache(path), workers=1, progress=False)
    assert poison_records(path, lambda r: dict(r, detections=[])) == 4
    second = run_sweep(ds, config, [30], cache=ResultCache(path), workers=1, progress=False)
    assert second["settings"]["cached_runs"] == 0
    assert second["curves"][0]["results"] == first["curves"][0]["results"]
    assert second["curves"][0]["points"][0]["mAP"] == first["curves"][0]["points"][0]["mAP"]
