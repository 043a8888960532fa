"""Does per-block WA-RDO lower the distortion it targets? BD-rate on the task-output and
deep-feature PSNR (``wa_rdo.proxy_curves``: MSE of the detector's raw outputs / prediction
map 0 vs the uncompressed run) for the QP-map curves of ``wa_spatial.py``.

    python benchmarks/wa_spatial_proxy.py [--wrapper pca] [--images 12] [--qualities 29,33,37,41,45]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from wa_rdo import proxy_bd, proxy_curves, val_dataset  # noqa: E402

from fcmcore.evaluate import CurveSpec  # noqa: E402
from fcmcore.paths import shared_dir  # noqa: E402
from fcmcore.pipeline import PipelineConfig  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=str(shared_dir() / "datasets" / "coco96"))
    ap.add_argument("--split", default="expanded_conv_9")
    ap.add_argument("--wrapper", default="pca")
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--qualities", default="29,33,37,41,45")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ds = val_dataset(Path(args.dataset))
    ds.images = ds.images[:args.images]
    qualities = [float(q) for q in args.qualities.split(",")]
    base = PipelineConfig(split=args.split, codec="hevc", wrapper=args.wrapper, tile_pad=8)
    anchor = "sse-qp pad8"
    curves = [CurveSpec(replace(base, rdo="sse-qp"), qualities, name=anchor)]
    for kind, source in (("channel", "fixed"), ("spatial", "fixed"), ("spatial", "image"), ("both", "image")):
        curves.append(CurveSpec(replace(base, rdo="wa-qp", wa_weights=kind, wa_source=source), qualities,
                                name=f"wa-qp {kind}/{source} pad8"))
    summary = proxy_curves(ds, args.split, curves, qualities)
    rows = proxy_bd(summary, [(anchor, c.name) for c in curves[1:]])
    print(f"BD-rate % on distortion proxies, {args.wrapper}, {len(ds.images)} val images, QPs {args.qualities}")
    print(f"  {'test':28s} {'task':>7s} {'deep':>7s} {'feature':>8s}")
    for r in rows:
        cells = ["n/a" if r[k] is None else f"{r[k]:+.1f}" for k in ("task_psnr", "deep_psnr", "feature_psnr")]
        print(f"  {r['test']:28s} {cells[0]:>7s} {cells[1]:>7s} {cells[2]:>8s}")
    if args.out:
        Path(args.out).write_text(json.dumps({"curves": summary, "bd": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
