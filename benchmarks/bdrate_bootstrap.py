"""Cost of `fcm bdrate` with 95 % paired-bootstrap intervals (1000 resamples).

    python benchmarks/bdrate_bootstrap.py                 # two synthetic 96-image, 6-point curves
    python benchmarks/bdrate_bootstrap.py A.json B.json   # two results files of `fcm sweep`

Prints the wall-clock and CPU time of the whole command (process start, reading the files,
1000 resamples x (mAP of every point of both curves + the BD integral)), and the same
without intervals, as a ratio. The synthetic curves have the size of real ones: 96 images,
~100 detections kept per image over 20 categories, 6 points each.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fcmcore.evaluate.coco_eval import PerImageEval  # noqa: E402
from fcmcore.evaluate.results_io import save_results  # noqa: E402

LEVELS = [0.15, 0.3, 0.45, 0.6, 0.75, 0.9]


def synthetic_curve(name: str, rate_factor: float, seed: int, n_img: int = 96, n_cat: int = 20) -> dict:
    img_rng = np.random.default_rng(0)
    n_gt = img_rng.integers(1, 15, size=n_img)
    cats = [img_rng.integers(1, n_cat + 1, size=n) for n in n_gt]
    complexity = img_rng.uniform(0.5, 2.0, size=n_img)
    rng = np.random.default_rng(seed)
    points = []
    for level in LEVELS:
        rows = {}
        for i in range(n_img):
            entries: dict[int, list] = {}
            for c in cats[i]:
                e = entries.setdefault(int(c), [int(c), 0, [], [], []])
                e[1] += 1
                if rng.random() < 0.35 + 0.6 * level:
                    depth = rng.binomial(10, level)
                    e[2].append(float(np.float32(rng.uniform(0.3, 1.0))))
                    e[3].append((1 << depth) - 1)
                    e[4].append(0)
            for _ in range(100 - len(cats[i])):  # the detector keeps ~100 boxes per image
                c = int(rng.integers(1, n_cat + 1))
                e = entries.setdefault(c, [c, 0, [], [], []])
                e[2].append(float(np.float32(rng.uniform(0.0, 0.6))))
                e[3].append(0)
                e[4].append(0)
            for e in entries.values():
                order = np.argsort(-np.array(e[2]), kind="mergesort")
                e[2], e[3], e[4] = ([e[j][k] for k in order] for j in (2, 3, 4))
            rows[i + 1] = [tuple(e) for e in entries.values()]
        ev = PerImageEval(list(range(1, n_img + 1)), rows)
        bpp = complexity * level ** 2 * rate_factor
        m, m50 = ev.map()
        points.append({"quality": level, "bpp": float(bpp.mean()), "mAP": m, "mAP50": m50,
                       "images": [{"image_id": i + 1, "bpp": float(b)} for i, b in enumerate(bpp)],
                       "coco_eval": ev.to_json()})
    return {"name": name, "results": {"bpp": [p["bpp"] for p in points], "mAP": [p["mAP"] for p in points],
                                      "mAP50": [p["mAP50"] for p in points], "quality": LEVELS},
            "points": points}


def run(cmd: list[str]) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1"))
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out.stdout


def main() -> None:
    if len(sys.argv) == 3:
        a, b = sys.argv[1:]
        anchor = json.loads(Path(a).read_text())["curves"][0]["name"]
    else:
        tmp = Path(tempfile.mkdtemp())
        a, b = str(tmp / "a.json"), str(tmp / "b.json")
        for path, curve in ((a, synthetic_curve("anchor", 1.0, 1)), (b, synthetic_curve("test", 0.8, 2))):
            save_results({"version": 1, "curves": [curve], "reference": None}, path)
        anchor = "anchor"
    base = [sys.executable, "-m", "fcmcore.cli", "bdrate", a, b, "--anchor", anchor]
    w0, c0, _ = run(base + ["--resamples", "0"])
    w1, c1, out = run(base)
    print(out.rstrip())
    print(f"\nfcm bdrate, 2 curves: without intervals {w0:.2f} s wall ({c0:.2f} s CPU); "
          f"with 1000-resample intervals {w1:.2f} s wall ({c1:.2f} s CPU); ratio {w1 / w0:.1f}x wall; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
