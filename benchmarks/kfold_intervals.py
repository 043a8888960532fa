"""How much k-fold narrows a BD-rate interval: all images vs one fold's images, same models.

    python benchmarks/kfold_intervals.py ANCHOR.json KFOLD.json [KFOLD2.json ...] [--json]

ANCHOR.json: a plain `fcm sweep` over the dataset (e.g. HEVC, no wrapper); each KFOLD.json:
`fcm sweep --folds K` of a trained configuration over the same images. For each k-fold curve it
prints the BD-rate vs the anchor with its 95 % paired-bootstrap interval on every image, and on
each fold's held-out images alone (the curves restricted to them: mAP recomputed exactly as
pycocotools would on those images, no re-run; same models, same qualities), with the interval
widths. The per-fold figure is what a single train/val split of that size would give.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bdrate_noise import restrict  # noqa: E402

from fcmcore.evaluate.bootstrap import bd_with_ci, curve_image_ids  # noqa: E402
from fcmcore.evaluate.results_io import load_results  # noqa: E402


def _width(ci):
    return None if ci is None else ci[1] - ci[0]


def _fmt(r) -> str:
    if r.bd_rate is None:
        rate = "BD-rate n/a (overlap below 50 %)"
    elif r.bd_rate_ci is None:
        rate = f"BD-rate {r.bd_rate:+.1f} %"
    else:
        rate = f"BD-rate {r.bd_rate:+.1f} % [{r.bd_rate_ci[0]:+.1f}, {r.bd_rate_ci[1]:+.1f}] (width {_width(r.bd_rate_ci):.1f})"
    if r.bd_map is None:
        return rate + "; BD-mAP n/a"
    ci = "" if r.bd_map_ci is None else f" [{r.bd_map_ci[0]:+.2f}, {r.bd_map_ci[1]:+.2f}] (width {_width(r.bd_map_ci):.2f})"
    return f"{rate}; BD-mAP {r.bd_map:+.2f}{ci}"


def _row(r) -> dict:
    return {"bd_rate": r.bd_rate, "ci": r.bd_rate_ci, "width": _width(r.bd_rate_ci), "bd_map": r.bd_map,
            "bd_map_ci": r.bd_map_ci, "bd_map_width": _width(r.bd_map_ci), "overlap": r.overlap,
            "rate_overlap": r.rate_overlap, "notes": r.notes}


def main(argv: list[str]) -> None:
    as_json = "--json" in argv
    paths = [a for a in argv if a != "--json"]
    if len(paths) < 2:
        raise SystemExit(__doc__)
    start = time.perf_counter()
    anchor = load_results(paths[0])["curves"][0]
    ids = curve_image_ids(anchor)
    out = []
    for path in paths[1:]:
        test = load_results(path)["curves"][0]
        kf = test.get("kfold")
        if not kf:
            raise SystemExit(f"{path}: not a k-fold results file (no curves[0].kfold)")
        full = bd_with_ci(anchor, test)
        row = {"test": test["name"], "anchor": anchor["name"], "n_images": len(ids), **_row(full),
               "train_cpu_s": kf.get("train_cpu_s"), "folds": []}
        print(f"{test['name']}  vs  {anchor['name']}")
        print(f"  all {len(ids)} images: {_fmt(full)}")
        for f in kf["folds"]:
            keep = [i for i in ids if i in set(f["held_out_image_ids"])]
            r = bd_with_ci(restrict(anchor, keep), restrict(test, keep))
            row["folds"].append({"fold": f["fold"], "n_images": len(keep), **_row(r)})
            print(f"  fold {f['fold']} ({len(keep)} images): {_fmt(r)}")
        for key, unit in (("width", "BD-rate points"), ("bd_map_width", "BD-mAP points")):
            widths = [x[key] for x in row["folds"] if x[key] is not None]
            if widths and row[key]:
                row["mean_fold_" + key] = mean = sum(widths) / len(widths)
                print(f"  {unit} interval width: {row[key]:.2f} on {len(ids)} images vs {mean:.2f} (mean over "
                      f"{len(widths)} folds) on ~{len(ids) // len(kf['folds'])}: x{row[key] / mean:.2f}")
        out.append(row)
    print(f"\n{len(out)} comparisons in {time.perf_counter() - start:.1f} s")
    if as_json:
        print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
