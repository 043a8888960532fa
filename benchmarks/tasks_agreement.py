"""Secondary-task agreement on held-out images: connector vs naive projection.

    python benchmarks/tasks_agreement.py [--dataset D] [--split expanded_conv_9] [--codec hevc] [--quality Q] [--json OUT]

On the coco96 validation images (``fcmcore.datasplit``: never trained on), the detector's
split tensor is coded at the codec's default quality (and also sent uncoded); pose and
classification are served from the decoded tensor through (a) the trained connector and
(b) the naive projection (resize + least-squares 1x1 map), and compared with each network
on the original image. Pose OKS is averaged over the images with a person (a COCO person
annotation and >= 4 confident reference keypoints). Intervals: 95 % percentile bootstrap
over images; connector - naive is a paired bootstrap.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    import torch

    from fcmcore.datasplit import split_train_val
    from fcmcore.evaluate.datasets import load_dataset
    from fcmcore.imageio import load_image
    from fcmcore.paths import shared_dir
    from fcmcore.pipeline import PipelineConfig, run
    from fcmcore.tasks import metrics, secondary

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default=str(shared_dir() / "datasets" / "coco96"))
    p.add_argument("--split", default="expanded_conv_9", help="detector split (its bundled connectors)")
    p.add_argument("--codec", default="hevc")
    p.add_argument("--quality", type=float, default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--tasks", default="pose,classification", help="secondary tasks to measure")
    p.add_argument("--kinds", default="conv,linear", help="connector kinds to measure")
    p.add_argument("--json", default=None, help="write the figures here")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    tasks = secondary.parse_tasks(args.tasks)
    kinds = [k for k in args.kinds.split(",") if k]
    ds = load_dataset(args.dataset)
    _, val = split_train_val(ds.images)
    val = val[: args.limit] if args.limit else val
    person = {rec.id for rec in val if any(a.get("category_id") == 1 for a in ds.annotations_for(rec.id))}
    rows = []
    t0 = time.perf_counter()
    for rec in val:
        image = load_image(rec.path)
        for codec in (None, args.codec):
            config = PipelineConfig(split=args.split, codec=codec, quality=args.quality if codec else None)
            result = run(image, config)
            decoded = next(iter(result.decoded_features.values()))
            for kind in kinds:
                out = secondary.from_split(decoded, image, tasks, config.model, config.split, kind)
                a_pose = out["pose"].agreement if "pose" in out else {}
                a_cls = out["classification"].agreement if "classification" in out else {}
                rows.append({"image": rec.id, "codec": codec or "none", "kind": kind, "bits": result.bits,
                             "quality": result.quality, "person": rec.id in person,
                             "oks": a_pose.get("oks_vs_uncompressed") if rec.id in person else None,
                             "top1": float(a_cls["top1_agrees"]) if a_cls else None,
                             "top5": float(a_cls["top5_agrees"]) if a_cls else None})
        print(f"  {len(rows) // (2 * len(kinds))}/{len(val)} images ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)

    summary: dict = {"dataset": Path(args.dataset).name, "split": args.split, "val_images": len(val),
                     "person_images": len(person), "codec": args.codec, "figures": {}}
    for codec in ("none", args.codec):
        sel = {k: [r for r in rows if r["codec"] == codec and r["kind"] == k] for k in kinds}
        first = sel[kinds[0]]
        fig: dict = {"mean_bits": sum(r["bits"] for r in first) / max(len(first), 1),
                     "quality": first[0]["quality"] if first else None}
        for metric in ("oks", "top1", "top5"):
            for kind in kinds:
                m, lo, hi = metrics.bootstrap_mean([r[metric] for r in sel[kind]])
                fig[f"{metric}_{kind}"] = {"mean": round(m, 4), "ci95": [round(lo, 4), round(hi, 4)],
                                           "n": sum(r[metric] is not None for r in sel[kind])}
            if len(kinds) < 2:
                continue
            d, lo, hi = metrics.bootstrap_diff([r[metric] for r in sel["conv"]], [r[metric] for r in sel["linear"]])
            fig[f"{metric}_conv_minus_linear"] = {"mean": round(d, 4), "ci95": [round(lo, 4), round(hi, 4)],
                                                  "significant": bool(lo > 0 or hi < 0)}
        summary["figures"][codec] = fig
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
