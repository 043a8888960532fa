"""Split-half test of BD-rate noise: is a comparison on N images reproducible on N others?

    python benchmarks/bdrate_noise.py ANCHOR.json TEST.json [ANCHOR2.json TEST2.json ...]

For each pair of results files (one curve each, from `fcm sweep` on the same images), the
images are split in two halves (even / odd position in id order); on each half the BD-rate
and its 95 % paired-bootstrap interval are computed from the per-image data in the files
(mAP recomputed on the half by the pycocotools-exact accumulation, no re-run), and the script
prints both halves' figures and whether each lies inside the other's interval. Without
intervals the two halves of 16 images once gave -16 % and +14 % for one comparison; with
them, a disagreement shows as intervals that are wide, not as two confident numbers.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fcmcore.evaluate.bootstrap import bd_with_ci, curve_image_ids  # noqa: E402
from fcmcore.evaluate.coco_eval import PerImageEval  # noqa: E402
from fcmcore.evaluate.results_io import load_results  # noqa: E402


def restrict(curve: dict[str, Any], keep: list[int]) -> dict[str, Any]:
    """The curve measured on the images ``keep`` only: per-image rows and COCO matching cut,
    bpp and mAP recomputed (mAP exactly as pycocotools would on those images)."""
    keep_set = set(keep)
    points = []
    for p in curve["points"]:
        ev = PerImageEval.from_json(p["coco_eval"])
        sub = PerImageEval([i for i in ev.image_ids if i in keep_set], {i: ev.rows[i] for i in ev.image_ids if i in keep_set})
        m, m50 = sub.map()
        rows = [r for r in p["images"] if r["image_id"] in keep_set]
        points.append({**p, "images": rows, "coco_eval": sub.to_json(), "mAP": m, "mAP50": m50,
                       "bpp": sum(r["bpp"] for r in rows) / len(rows)})
    return {"name": curve["name"], "points": points,
            "results": {"bpp": [p["bpp"] for p in points], "mAP": [p["mAP"] for p in points],
                        "mAP50": [p["mAP50"] for p in points]}}


def inside(x: float | None, ci: list[float] | None) -> str:
    if x is None or ci is None:
        return "n/a"
    return "yes" if ci[0] <= x <= ci[1] else "NO"


def main(paths: list[str]) -> None:
    if len(paths) < 2 or len(paths) % 2:
        raise SystemExit(__doc__)
    start = time.perf_counter()
    out = []
    for a_path, t_path in zip(paths[::2], paths[1::2]):
        a, t = load_results(a_path)["curves"][0], load_results(t_path)["curves"][0]
        ids = curve_image_ids(a)
        halves = [ids[0::2], ids[1::2]]
        full = bd_with_ci(a, t)
        res = [bd_with_ci(restrict(a, h), restrict(t, h)) for h in halves]
        row = {"anchor": a["name"], "test": t["name"], "n_images": len(ids),
               "all": {"bd_rate": full.bd_rate, "ci": full.bd_rate_ci},
               "halves": [{"n_images": len(h), "bd_rate": r.bd_rate, "ci": r.bd_rate_ci} for h, r in zip(halves, res)],
               "first_in_second": inside(res[0].bd_rate, res[1].bd_rate_ci),
               "second_in_first": inside(res[1].bd_rate, res[0].bd_rate_ci)}
        out.append(row)

        def f(x, ci):
            return "n/a" if x is None else f"{x:+.1f} % [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else f"{x:+.1f} %"

        print(f"{t['name']}  vs  {a['name']}")
        print(f"  all {len(ids)} images: {f(full.bd_rate, full.bd_rate_ci)}")
        for k, (h, r) in enumerate(zip(halves, res)):
            print(f"  half {k + 1} ({len(h)} images): {f(r.bd_rate, r.bd_rate_ci)}")
        print(f"  half 1 inside half 2's interval: {row['first_in_second']}; "
              f"half 2 inside half 1's: {row['second_in_first']}")
    print(f"\n{len(out)} pairs in {time.perf_counter() - start:.1f} s")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
