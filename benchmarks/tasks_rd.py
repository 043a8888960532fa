"""Rate vs secondary-task agreement, and the total bits of serving three tasks.

    python benchmarks/tasks_rd.py [--dataset D] [--subset val] [--split expanded_conv_9]
        [--split-qualities 27,32,37,42] [--hevc-qualities 32,37,42,47] [--jpeg-qualities 5,10,20,40]
        [--out results.json] [--json table.json]

On the held-out images (``--subset val``: ``fcmcore.datasplit``, never trained on) three
kinds of curves, all with ``--tasks detection,pose,classification``:

* (a) the detector's split tensor coded with HEVC, pose and classification through the
  connectors from the same decoded tensor (one bitstream for the three tasks);
* (b) the full input image coded with HEVC and with JPEG, each task network on the
  decoded image (``fcm sweep --split none``);
* (c) the full input image coded with HEVC at (a)'s rates (``--target-bpp``: per image,
  the QP closest to each of (a)'s mean rates).

Prints BD-rate of (a) against (b) on ``pose_oks`` and ``cls_top1`` (and mAP) with the 95 %
paired bootstrap intervals of ``fcm bdrate``, the (a) vs (c) table at equal rate, and the
total bits: one split bitstream at the codec's default quality serving the three tasks vs
one image bitstream per task, each at the rate the image curve needs to match the split
bitstream's accuracy on that task (log-rate interpolation on curve (b); below the curve's
lowest point the lowest point's rate is an upper bound, marked "<=").
The results JSON holds every curve; ``fcm bdrate OUT --anchor NAME --metric pose_oks``
re-reads it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TASKS = ("detection", "pose", "classification")
METRICS = ("pose_oks", "cls_top1", "mAP")


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def held_out(dataset, which: str):
    """The dataset restricted to the ``which`` images of the project's train/val split."""
    from fcmcore.datasplit import subset  # why: benchmark imports stay inside main's call tree

    images = subset(sorted(dataset.images, key=lambda im: im.id), which)
    ids = {im.id for im in images}
    ann = None if dataset.annotations is None else [a for a in dataset.annotations if a["image_id"] in ids]
    return dataclasses.replace(dataset, images=images, annotations=ann)


def rate_for(curve: dict, metric: str, value: float) -> tuple[float | None, str]:
    """Mean bits per image at which ``curve`` reaches ``value`` of ``metric`` (log-linear
    between the two points around it, on its points sorted by rate) -> (bits, note)."""
    pts = sorted((p["bits_mean"], p[metric]) for p in curve["points"] if p.get(metric) is not None)
    if not pts:
        return None, "no points"
    if value <= pts[0][1]:
        return pts[0][0], "<="  # the curve's cheapest point already matches: an upper bound
    for (b0, v0), (b1, v1) in zip(pts, pts[1:]):
        if v0 < value <= v1 or v1 < value <= v0:
            t = (value - v0) / (v1 - v0)
            return math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0))), ""
    best = max(pts, key=lambda p: p[1])
    if value > best[1]:
        return None, f"never reached (best {best[1]:.3f} at {best[0] / 1e3:.1f} kbit)"
    return pts[-1][0], ">="


def main() -> int:
    import torch

    from fcmcore.evaluate.bootstrap import bd_table_with_ci
    from fcmcore.evaluate.datasets import load_dataset
    from fcmcore.evaluate.sweep import CurveSpec, evaluate, save_results
    from fcmcore.paths import shared_dir
    from fcmcore.pipeline import PipelineConfig
    from fcmcore.tasks.metrics import bootstrap_diff

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default=str(shared_dir() / "datasets" / "coco96"))
    p.add_argument("--subset", default="val", choices=["val", "all"],
                   help="val: the held-out images (the connectors never saw them)")
    p.add_argument("--split", default="expanded_conv_9")
    p.add_argument("--split-qualities", default="27,32,37,42", help="HEVC QPs of curve (a)")
    p.add_argument("--hevc-qualities", default="32,37,42,47", help="HEVC QPs of curve (b)")
    p.add_argument("--jpeg-qualities", default="5,10,20,40", help="JPEG qualities of curve (b)")
    p.add_argument("--default-quality", type=float, default=32, help="the split bitstream's operating point")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--out", default=None, help="results JSON (all curves) for fcm bdrate")
    p.add_argument("--json", default=None, help="write the tables here")
    p.add_argument("--limit", type=int, default=None, help="only the first N held-out images (a smoke test)")
    p.add_argument("--no-cache", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    ds = load_dataset(args.dataset)
    ds = held_out(ds, args.subset) if args.subset != "all" else ds
    if args.limit:
        ds = dataclasses.replace(ds, images=ds.images[: args.limit])
    split_q = _floats(args.split_qualities)
    if args.default_quality not in split_q:
        split_q = sorted(split_q + [args.default_quality])
    name_a = f"(a) {args.split} + HEVC, connectors"
    name_bh, name_bj, name_c = "(b) image HEVC", "(b) image JPEG", "(c) image HEVC at (a)'s rates"
    run = dict(cache=not args.no_cache, workers=1, progress=True)
    split_cfg = PipelineConfig(split=args.split, codec="hevc", tasks=TASKS)
    image_cfg = PipelineConfig(split=None, codec="hevc", tasks=TASKS)
    specs = [CurveSpec(split_cfg, split_q, name=name_a),
             CurveSpec(image_cfg, _floats(args.hevc_qualities), name=name_bh), None,
             CurveSpec(dataclasses.replace(image_cfg, codec="jpeg"), _floats(args.jpeg_qualities), name=name_bj)]
    doc: dict = {"curves": []}
    for spec in specs:  # one curve at a time, the results file rewritten after each (a long run keeps its part)
        if spec is None:  # (c): (a)'s mean rates as targets
            a = doc["curves"][0]
            spec = CurveSpec(image_cfg, target_bpp=[round(b, 6) for b in a["results"]["bpp"]], name=name_c)
        part = evaluate(ds, [spec], **run)
        doc = {**part, "curves": doc["curves"] + part["curves"]}
        if args.out:
            save_results(doc, args.out)
    curves = {c["name"]: c for c in doc["curves"]}
    a = curves[name_a]

    out: dict = {"dataset": ds.name, "subset": args.subset, "images": len(ds.images), "split": args.split,
                 "bd_rate": {}, "equal_rate": [], "totals": {}}
    for metric in METRICS:
        for anchor in (name_bh, name_bj):
            rows = bd_table_with_ci([curves[anchor], a], anchor, metric, n_resamples=args.resamples)
            r = rows[1]
            out["bd_rate"][f"{metric} vs {anchor}"] = {
                "bd_rate": r.bd_rate, "ci95": r.bd_rate_ci, "significant": r.significant,
                "bd_metric": r.bd_map, "bd_metric_ci95": r.bd_map_ci, "overlap": r.overlap, "notes": r.notes}
    c = curves[name_c]
    for pa, pc in zip(a["points"], c["points"]):
        row = {"qp_a": pa["quality"], "kbit_a": pa["bits_mean"] / 1e3, "kbit_c": pc["bits_mean"] / 1e3,
               **{f"{m}_a": pa.get(m) for m in METRICS}, **{f"{m}_c": pc.get(m) for m in METRICS}}
        for m in ("pose_oks", "cls_top1"):  # paired over images: (a) - (c)
            d, lo, hi = bootstrap_diff([r["tasks"].get(m) for r in pa["images"]], [r["tasks"].get(m) for r in pc["images"]])
            row[f"{m}_a_minus_c"] = {"mean": d, "ci95": [lo, hi], "significant": bool(lo > 0 or hi < 0)}
        out["equal_rate"].append(row)
    # totals at the split bitstream's default quality
    pd = next(pt for pt in a["points"] if pt["quality"] == args.default_quality)
    for anchor in (name_bh, name_bj):
        per_task, total, bound = {}, 0.0, ""
        for metric in METRICS:
            bits, note = rate_for(curves[anchor], metric, pd[metric])
            per_task[metric] = {"split_value": pd[metric], "image_bits": bits, "note": note}
            if bits is None:
                total = float("nan")
            else:
                total += bits
                bound = bound or (note if note in ("<=", ">=") else "")
        # one image bitstream at the highest of those rates serves all three tasks at least as well
        one = max((t["image_bits"] for t in per_task.values() if t["image_bits"] is not None), default=None)
        out["totals"][anchor] = {"split_bits": pd["bits_mean"], "per_task": per_task, "image_total_bits": total,
                                 "bound": bound, "image_one_bitstream_bits": None if math.isnan(total) else one}
    print(format_tables(out, name_a))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=float) + "\n", encoding="utf-8")
    return 0


def _ci(ci) -> str:
    return "" if ci is None else f"[{ci[0]:+.1f}, {ci[1]:+.1f}]"


def format_tables(out: dict, name_a: str) -> str:
    lines = [f"{out['dataset']} ({out['subset']}, {out['images']} images); test curve {name_a!r}", "",
             "| metric | anchor | BD-rate % | 95 % CI | verdict |", "|---|---|---|---|---|"]
    for key, r in out["bd_rate"].items():
        metric, anchor = key.split(" vs ", 1)
        if r["bd_rate"] is None:
            lines.append(f"| {metric} | {anchor} | n/a | | {'; '.join(r['notes'])[:120]} |")
            continue
        verdict = "significant" if r["significant"] else "not significant"
        lines.append(f"| {metric} | {anchor} | {r['bd_rate']:+.1f} | {_ci(r['ci95'])} | {verdict} |")
    lines += ["", "| QP (a) | kbit (a) | kbit (c) | OKS (a) | OKS (c) | (a) - (c) [95 % CI] | top-1 (a) | top-1 (c) | "
              "(a) - (c) [95 % CI] | mAP (a) | mAP (c) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731

    def diff(d):
        return f"{d['mean']:+.2f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]{'' if d['significant'] else ' n.s.'}"

    for r in out["equal_rate"]:
        lines.append(f"| {r['qp_a']:g} | {r['kbit_a']:.1f} | {r['kbit_c']:.1f} | {f(r['pose_oks_a'])} | "
                     f"{f(r['pose_oks_c'])} | {diff(r['pose_oks_a_minus_c'])} | {f(r['cls_top1_a'])} | "
                     f"{f(r['cls_top1_c'])} | {diff(r['cls_top1_a_minus_c'])} | {f(r['mAP_a'])} | {f(r['mAP_c'])} |")
    lines += ["", "| image codec | split bitstream kbit (3 tasks) | image kbit: detection | pose | classification | "
              "image total kbit (one per task) | one image bitstream for all three |", "|---|---|---|---|---|---|---|"]
    for anchor, t in out["totals"].items():
        cell = lambda m: ("never" if t["per_task"][m]["image_bits"] is None else  # noqa: E731
                          f"{t['per_task'][m]['note']}{t['per_task'][m]['image_bits'] / 1e3:.1f}")
        tot = "n/a" if math.isnan(t["image_total_bits"]) else f"{t['bound']}{t['image_total_bits'] / 1e3:.1f}"
        one = "n/a" if t["image_one_bitstream_bits"] is None else f"{t['image_one_bitstream_bits'] / 1e3:.1f}"
        lines.append(f"| {anchor} | {t['split_bits'] / 1e3:.1f} | {cell('mAP')} | {cell('pose_oks')} | "
                     f"{cell('cls_top1')} | {tot} | {one} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
