"""How uneven WA-RDO importance is, per kind (channel / spatial / both) and source (fixed /
per image), for the bundled wrappers; optionally saves the fixed per-sample maps.

    python benchmarks/wa_importance.py [--split expanded_conv_9] [--wrappers pca,learned]
        [--targets post,task] [--probes 2] [--attach] [--out FILE]

Fixed maps: Hutchinson estimates of diag(J^T J) per coded sample (``wrappers.importance``),
averaged over the plain training images of coco96 (``datasplit``: the 72 non-validation
images, the wrapper's own training set). Per-image maps: the same on each of the 24
validation images alone. For every kind it prints the spread of the weights as the encoder
would use them: max/min, coefficient of variation and AM/GM in dB (the high-rate gain
ceiling of an optimal weighted allocation over a plain one, on the weighted MSE). Spatial
spreads are of block means (8x8 blocks of tiles padded to 24x24, the QP map's granularity).
``--attach`` writes the fixed maps into the wrapper files (``importance_map.<target>``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fcmcore.evaluate import load_dataset  # noqa: E402
from fcmcore.paths import shared_dir  # noqa: E402
from fcmcore.wrappers import default_path, load_wrapper, parse_wrapper_spec  # noqa: E402
from fcmcore.wrappers.importance import estimate_maps, spread, weights_of_kind  # noqa: E402

MODEL = "ssd_mobilenet_v2"


def block_means(w: np.ndarray, block: int = 8) -> np.ndarray:
    """Weights as the QP map sees them: channel kind as is; spatial/both pooled per block."""
    from fcmcore.packing import pad_tiles

    if w.ndim == 1:
        return w
    w3 = w[None] if w.ndim == 2 else w
    p = pad_tiles(w3, block)
    k, h, wd = p.shape
    return p.reshape(k, h // block, block, wd // block, block).mean(axis=(2, 4))


def kinds_report(m: np.ndarray) -> dict[str, dict[str, float]]:
    return {kind: {key: round(v, 4) for key, v in spread(block_means(weights_of_kind(m, kind))).items()}
            for kind in ("channel", "spatial", "both")}


def main(argv: list[str] | None = None) -> int:
    from fcmcore.wrappers.fitted import write_importance_maps
    from fcmcore.wrappers.training import build_bank

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=str(shared_dir() / "datasets" / "coco96"))
    ap.add_argument("--split", default="expanded_conv_9")
    ap.add_argument("--wrappers", default="pca,learned", help="NAME or NAME:PATH, comma-separated")
    ap.add_argument("--targets", default="post,task")
    ap.add_argument("--probes", type=int, default=2)
    ap.add_argument("--attach", action="store_true", help="save the fixed maps into the wrapper files")
    ap.add_argument("--out", default=None, help="JSON report (default: print only)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ds = load_dataset(Path(args.dataset))
    bank = build_bank(ds, MODEL, args.split, augment=0, seed=0, log=None)
    report = {"split": args.split, "train_images": len(bank.train_ids), "val_images": len(bank.val_ids),
              "probes": args.probes, "wrappers": {}}
    for spec in args.wrappers.split(","):
        name, path = parse_wrapper_spec(spec)
        path = path or str(default_path(name, MODEL, args.split))
        wrapper = load_wrapper(f"{name}:{path}", MODEL, args.split)
        with torch.no_grad():
            zs = [wrapper.encode(bank.train_plain[i:i + 8]) for i in range(0, bank.train_plain.shape[0], 8)]
            zv = [wrapper.encode(bank.val[i:i + 1]) for i in range(bank.val.shape[0])]
        maps, out = {}, {}
        for target in args.targets.split(","):
            t0 = time.process_time()
            m = estimate_maps(wrapper, zs, target=target, probes=args.probes, seed=0)
            fixed_cpu = time.process_time() - t0
            maps[target] = m
            per_image = [kinds_report(estimate_maps(wrapper, [z], target=target, probes=4, seed=0)) for z in zv]
            mean_image = {kind: {key: round(float(np.mean([r[kind][key] for r in per_image])), 4)
                                 for key in per_image[0][kind]} for kind in per_image[0]}
            out[target] = {"fixed": kinds_report(m), "image_mean_over_val": mean_image,
                           "fixed_cpu_s": round(fixed_cpu, 1)}
            print(f"{name} {target}: fixed {json.dumps(out[target]['fixed'])}\n"
                  f"{'':{len(name)}} {target}: per image (mean of 24 val) {json.dumps(mean_image)}", flush=True)
        report["wrappers"][spec] = out
        if args.attach:
            write_importance_maps(path, maps)
            print(f"  wrote importance_map.{{{','.join(maps)}}} into {path}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
