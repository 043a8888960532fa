"""Learned feature codecs vs HEVC/VVC on packed features, at one split, on the val images.

    python benchmarks/learned_codecs.py [--dataset DIR] [--split expanded_conv_9]
        [--hevc 22,27,32,37,42,47] [--vvc 22,27,32,37,42,47] [--out assets/learned/results.json]

Every point is a real pipeline run (``fcmcore.pipeline``: head, coding, decoding, tail) on
the *val* images of ``fcmcore.datasplit`` (never seen in training): rate = mean over images
of ``len(bitstream) * 8 / (W * H)`` of the original image, accuracy = COCO mAP@[.5:.95]
(pycocotools, via ``fcmcore.evaluate``). BD-rate: ``fcmcore.evaluate.bdrate`` (Pareto
front, Akima). Also: encode/decode ms per image, rate estimate vs real bits, edge MACs of
each paradigm. Serial (one torch thread), no result cache (weights are not in the cache key).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LEARNED = ("factorized", "hyperprior", "context", "direct")


def val_dataset(path: str):
    from fcmcore.datasplit import split_train_val
    from fcmcore.evaluate import load_dataset
    from fcmcore.evaluate.datasets import Dataset

    ds = load_dataset(path)
    _, val = split_train_val(sorted(ds.images, key=lambda im: im.id))
    ids = {im.id for im in val}
    anns = [a for a in ds.annotations if a["image_id"] in ids] if ds.annotations is not None else None
    return Dataset(ds.name + "-val", ds.root, val, ds.categories, anns, ds.annotation_file)


def edge_macs(split: str) -> dict[str, int]:
    from fcmcore.codecs import get_codec
    from fcmcore.models import load_model

    model = load_model("ssd_mobilenet_v2")
    head = model.edge_macs(split)
    out = {"full-input (image codec)": 0, f"head to {split} + hevc/vvc": head}
    c, h, w = model.split_point(split).tensors[split]
    for name in ("factorized", "hyperprior", "context"):
        codec = get_codec(name)
        if codec.available()[0]:
            q = codec.quality.hi
            out[f"head + {name} encoder (q{q})"] = head + codec._net(q).encoder_macs(h, w)
    direct = get_codec("direct")
    if direct.available()[0]:
        out["direct (stem + student + encoder)"] = direct.edge_macs()
    return out


def estimate_vs_real(ds, split: str, names: list[str]) -> dict[str, dict[int, float]]:
    """(bits_estimated - bits) / bits per codec and quality, mean over the images."""
    from fcmcore.codecs import get_codec
    from fcmcore.coding import MODEL_INPUT
    from fcmcore.imageio import load_image
    from fcmcore.models import load_model

    model = load_model("ssd_mobilenet_v2")
    inputs = [model.preprocess(load_image(im.path))[0] for im in ds.images]
    feats = [model.head(x, split) for x in inputs]
    out = {}
    for name in names:
        codec = get_codec(name)
        rows = {}
        for q in range(1, int(codec.quality.hi) + 1):
            rel = []
            for x, f in zip(inputs, feats):
                enc = codec.encode(x if codec.consumes == MODEL_INPUT else f, q)
                rel.append((enc.bits_estimated - enc.bits) / enc.bits)
            rows[q] = sum(rel) / len(rel)
        out[name] = rows
    return out


def main(argv=None) -> int:
    import torch

    from fcmcore.codecs import CODECS, get_codec
    from fcmcore.evaluate import CurveSpec, bd_table, evaluate
    from fcmcore.learned import register_codecs
    from fcmcore.paths import shared_dir
    from fcmcore.pipeline import PipelineConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=str(shared_dir() / "datasets" / "coco96"))
    ap.add_argument("--split", default="expanded_conv_9")
    ap.add_argument("--hevc", default="22,27,32,37,42,47")
    ap.add_argument("--vvc", default="22,27,32,37,42,47")
    ap.add_argument("--codecs", default=",".join(LEARNED))
    ap.add_argument("--out", default=str(REPO / "assets" / "learned" / "results.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    register_codecs(CODECS)  # no-op once fcmcore.codecs registers them itself

    ds = val_dataset(args.dataset)
    curves = []
    for name, qs in (("hevc", args.hevc), ("vvc", args.vvc)):
        if qs and get_codec(name).available()[0]:
            curves.append(CurveSpec(PipelineConfig(split=args.split, codec=name), [float(q) for q in qs.split(",")], name=name))
    for name in args.codecs.split(","):
        codec = get_codec(name)
        ok, reason = codec.available()
        if not ok:
            print(f"skipping {name}: {reason}", file=sys.stderr)
            continue
        curves.append(CurveSpec(PipelineConfig(split=args.split, codec=name),
                                list(range(1, int(codec.quality.hi) + 1)), name=name))
    t0 = time.perf_counter()
    doc = evaluate(ds, curves, cache=False, workers=1, progress=True)
    doc["wall_s"] = round(time.perf_counter() - t0, 1)

    anchors = [c["name"] for c in doc["curves"] if c["name"] in ("hevc", "vvc")]
    doc["bd"] = {}
    for anchor in anchors:
        rows, notes = bd_table(doc["curves"], anchor)
        doc["bd"][anchor] = {"rows": [r.to_json() for r in rows], "notes": notes}
    doc["edge_macs"] = edge_macs(args.split)
    doc["estimate_vs_real"] = estimate_vs_real(ds, args.split, [c["name"] for c in doc["curves"] if c["name"] in LEARNED])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")

    ref = doc["reference"]
    print(f"\n{len(ds)} val images; uncompressed reference mAP {ref['mAP']:.4f}")
    print(f"{'codec':11s} {'q':>4s} {'bpp':>8s} {'mAP':>7s} {'enc ms':>7s} {'dec ms':>7s}")
    for c in doc["curves"]:
        for p in c["points"]:
            t = p["timings_ms"]
            print(f"{c['name']:11s} {p['quality']:>4g} {p['bpp']:8.4f} {p['mAP']:7.4f} "
                  f"{t.get('encode', 0):7.1f} {t.get('decode', 0):7.1f}")
    print("\nrate estimate (likelihoods) vs real bits, mean over val images:")
    for name, rows in doc["estimate_vs_real"].items():
        print(f"  {name:11s} " + "  ".join(f"q{q}: {r:+.2%}" for q, r in rows.items()))
    for anchor, tab in doc["bd"].items():
        print(f"\nBD vs {anchor}:")
        for r in tab["rows"]:
            rate = "n/a" if r["bd_rate"] is None else f"{r['bd_rate']:+.1f} %"
            dm = "n/a" if r["bd_map"] is None else f"{r['bd_map']:+.2f}"
            print(f"  {r['name']:11s} BD-rate {rate:>9s}   BD-mAP {dm:>7s}")
        for n in tab["notes"]:
            print(f"  note: {n}")
    print("\nedge MACs:")
    for k, v in doc["edge_macs"].items():
        print(f"  {k:40s} {v / 1e6:8.1f} M")
    print(f"\nwrote {args.out} ({doc['wall_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
