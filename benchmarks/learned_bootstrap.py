"""Learned codecs vs anchors on the val images, BD-rate with paired bootstrap intervals.

    python benchmarks/learned_bootstrap.py [--codecs scar,context,hyperprior]
        [--variants context-ft1=context:assets/learned/context-ft1,direct-full=direct:DIR] [--hevc 22,27,32,37,42,47]
        [--anchors hyperprior,hevc] [--resamples 1000] [--seed 0] [--out results.json]

Every point is a real run on each of the 24 *val* images of ``fcmcore.datasplit``: head,
encode, decode (bits = len(bitstream) * 8), tail; HEVC through ``fcmcore.pipeline``. mAP is
pycocotools' mAP@[.5:.95] (``fcmcore.evaluate.metrics.coco_map``), checked against this
script's own accumulator on the full set before any resampling.

Paired bootstrap over images: one resample = 24 images drawn with replacement, the SAME
draw for every curve; for each resample every point's mAP (on that multiset of images)
and bpp (mean over it) are recomputed and BD-rate (``fcmcore.evaluate.bdrate``: Pareto
front, Akima) is taken. Reported: the full-sample BD-rate and the 2.5/97.5 percentiles of
the resampled ones ("not significant" when the interval contains 0). Resampled mAP uses
the per-image COCO matches of the full evaluation, accumulated with image multiplicities:
identical to running COCOeval on the multiset (duplicated detections tie in score, and
the interpolated precision is the same whether tied copies are taken at once or one by one).
Each point also gets a per-point mAP interval and its mAP drop from the uncompressed detector
(head -> tail on the same images) with a paired interval; ``edge_macs``: what each curve runs
on the device at its highest quality (head + encoder; direct: stem + student + encoder).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def val_dataset(path: str):
    from fcmcore.datasplit import split_train_val
    from fcmcore.evaluate import load_dataset
    from fcmcore.evaluate.datasets import Dataset

    ds = load_dataset(path)
    _, val = split_train_val(sorted(ds.images, key=lambda im: im.id))
    ids = {im.id for im in val}
    anns = [a for a in ds.annotations if a["image_id"] in ids]
    return Dataset(ds.name + "-val", ds.root, val, ds.categories, anns, ds.annotation_file)


# ----- mAP with image multiplicities ----------------------------------------------------------

class MapAccumulator:
    """Per-image COCO matches of one point; ``map(weights)`` = mAP@[.5:.95] of the multiset of
    images with those multiplicities (rows of ``weights``: one resample each)."""

    def __init__(self, gt: dict, results: list[dict], image_ids: list[int]):
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        from fcmcore.evaluate.metrics import _quiet

        with _quiet():
            coco = COCO()
            coco.dataset = {k: [dict(x) for x in v] for k, v in gt.items()}
            coco.createIndex()
            dt = coco.loadRes([dict(r, bbox=list(r["bbox"])) for r in results]) if results else None
            ev = COCOeval(coco, dt, iouType="bbox") if dt is not None else None
        self.image_index = {i: n for n, i in enumerate(image_ids)}
        self.cats = []  # (image index per det (D,), tps (T, D), fps (T, D), npos per image (I,)) in score order
        if ev is None:
            return
        ev.params.imgIds = list(image_ids)
        with _quiet():
            ev.evaluate()
        p = ev.params
        max_det = p.maxDets[-1]
        n_area, n_img = len(p.areaRng), len(p.imgIds)
        for k, _ in enumerate(p.catIds):
            entries = [ev.evalImgs[k * n_area * n_img + i] for i in range(n_img)]  # area 'all' = index 0
            scores, imgs, tps, fps = [], [], [], []
            npos = np.zeros(n_img)
            for i, e in enumerate(entries):
                if e is None:
                    continue
                npos[i] = np.count_nonzero(e["gtIgnore"] == 0)
                s = np.asarray(e["dtScores"][:max_det])
                m = e["dtMatches"][:, :max_det]
                ig = e["dtIgnore"][:, :max_det]
                scores.append(s)
                imgs.append(np.full(len(s), i))
                tps.append(np.logical_and(m, np.logical_not(ig)))
                fps.append(np.logical_and(np.logical_not(m), np.logical_not(ig)))
            if not npos.any():
                continue  # pycocotools leaves such a category out of the mean
            if scores:
                s = np.concatenate(scores)
                order = np.argsort(-s, kind="mergesort")
                self.cats.append((np.concatenate(imgs)[order], np.concatenate(tps, 1)[:, order].astype(np.float64),
                                  np.concatenate(fps, 1)[:, order].astype(np.float64), npos))
            else:
                self.cats.append((np.zeros(0, int), np.zeros((len(p.iouThrs), 0)), np.zeros((len(p.iouThrs), 0)), npos))
        self.rec_thrs = np.asarray(p.recThrs)

    def map(self, weights: np.ndarray) -> np.ndarray:
        """weights (R, I) -> mAP (R,) (NaN where no category has a ground-truth box)."""
        import torch

        w = torch.as_tensor(weights, dtype=torch.float64)
        thr = torch.as_tensor(self.rec_thrs, dtype=torch.float64)
        total = torch.zeros(w.shape[0], dtype=torch.float64)
        count = torch.zeros(w.shape[0], dtype=torch.float64)
        for imgs, tps, fps, npos in self.cats:
            n = w @ torch.as_tensor(npos)  # (R,)
            valid = n > 0
            if imgs.size == 0:
                count += valid
                continue
            wd = w[:, torch.as_tensor(imgs)]  # (R, D)
            tp = torch.cumsum(wd[:, None, :] * torch.as_tensor(tps)[None], dim=2)  # (R, T, D)
            fp = torch.cumsum(wd[:, None, :] * torch.as_tensor(fps)[None], dim=2)
            rc = tp / n.clamp_min(1e-12)[:, None, None]
            pr = tp / (tp + fp + np.spacing(1))  # as pycocotools
            pr = torch.flip(torch.cummax(torch.flip(pr, [2]), dim=2).values, [2])  # max to the right
            idx = torch.searchsorted(rc.contiguous(), thr.expand(*rc.shape[:2], -1).contiguous(), right=False)
            q = torch.gather(pr, 2, idx.clamp_max(pr.shape[2] - 1))
            q = torch.where(idx < pr.shape[2], q, torch.zeros_like(q))
            ap = q.mean(dim=(1, 2))
            total += torch.where(valid, ap, torch.zeros_like(ap))
            count += valid
        out = (total / count).numpy()
        out[count.numpy() == 0] = np.nan
        return out


# ----- runs ----------------------------------------------------------------------------------

def run_points(ds, heads, name, qualities, codec=None, split="expanded_conv_9"):
    """[(quality, [(bits, detections, encode_ms, decode_ms) per image])]."""
    import torch

    from fcmcore.coding import MODEL_INPUT
    from fcmcore.models import load_model
    from fcmcore.pipeline import PipelineConfig, run_from_head

    model = load_model("ssd_mobilenet_v2")
    points = []
    for q in qualities:
        rows = []
        for head in heads:
            if codec is None:
                r = run_from_head(head, PipelineConfig(split=split, codec=name, quality=q))
                rows.append((r.bits, r.detections, r.timings_ms.get("encode", 0), r.timings_ms.get("decode", 0)))
                continue
            # direct coding replaces the head: it codes the model input, not the split tensors
            source = head.model_input if codec.consumes == MODEL_INPUT else head.features
            t0 = time.perf_counter()
            enc = codec.encode(source, q)
            t1 = time.perf_counter()
            dec = codec.decode(enc.bitstream)
            t2 = time.perf_counter()
            with torch.inference_mode():
                dets = model.tail(dec.features, split, head.meta)
            rows.append((len(enc.bitstream) * 8, dets, (t1 - t0) * 1000, (t2 - t1) * 1000))  # bytes read x 8
        points.append((q, rows))
        print(f"  {name} q{q:g}: {np.mean([r[0] for r in rows]):.0f} bits", file=sys.stderr)
    return points


def main(argv=None) -> int:
    import torch

    from fcmcore.codecs import get_codec
    from fcmcore.evaluate.bdrate import bd_compare, monotone_front
    from fcmcore.evaluate.datasets import detections_to_coco
    from fcmcore.evaluate.metrics import coco_map
    from fcmcore.imageio import load_image
    from fcmcore.models import load_model
    from fcmcore.paths import portable, shared_dir
    from fcmcore.pipeline import run_head

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=str(shared_dir() / "datasets" / "coco96"))
    ap.add_argument("--split", default="expanded_conv_9")
    ap.add_argument("--codecs", default="hyperprior,context,scar")
    ap.add_argument("--variants", default="", help="name=arch:weights_dir,... (other weights of a learned codec)")
    ap.add_argument("--hevc", default="22,27,32,37,42,47")
    ap.add_argument("--anchors", default="hyperprior,hevc")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "assets" / "learned" / "bootstrap.json"))
    ap.add_argument("--records", default="", help="folder keeping each curve's per-image runs (reused when "
                                                 "the codec's weights and qualities are unchanged)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    ds = val_dataset(args.dataset)
    ids = [im.id for im in ds.images]
    heads = [run_head(load_image(im.path), "ssd_mobilenet_v2", args.split) for im in ds.images]
    pixels = np.array([im.width * im.height for im in ds.images], dtype=np.float64)
    curves = {}

    def runs(name, qualities, codec=None):
        key = json.dumps([name, qualities, ids, args.split, None if codec is None else
                          (codec.weights_dir / "manifest.json").read_text()])
        path = Path(args.records) / f"{name}.pkl" if args.records else None
        if path is not None and path.is_file():
            stored = pickle.loads(path.read_bytes())
            if stored["key"] == key:
                print(f"  {name}: runs from {path}", file=sys.stderr)
                return stored["points"]
        points = run_points(ds, heads, name, qualities, codec, args.split)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pickle.dumps({"key": key, "points": points}))
        return points

    head_macs = load_model("ssd_mobilenet_v2").edge_macs(args.split)
    edge = {}  # curve -> edge MACs at its highest quality (what runs before the bitstream leaves the device)
    if args.hevc:
        curves["hevc"] = runs("hevc", [float(q) for q in args.hevc.split(",")])
        edge["hevc"] = int(head_macs)  # the head; the HEVC encoder's operations are not MACs of a network
    for name in [c for c in args.codecs.split(",") if c]:
        codec = get_codec(name)
        curves[name] = runs(name, list(range(1, int(codec.quality.hi) + 1)), codec)
        edge[name] = int(codec.edge_macs(head_macs, int(codec.quality.hi)))
    for spec in [v for v in args.variants.split(",") if v]:
        name, rest = spec.split("=")
        arch, folder = rest.split(":", 1)
        codec = type(get_codec(arch))(weights_dir=folder)  # the registered codec's class, other weights
        curves[name] = runs(name, list(range(1, int(codec.quality.hi) + 1)), codec)
        edge[name] = int(codec.edge_macs(head_macs, int(codec.quality.hi)))

    gt = ds.ground_truth()
    rng = np.random.default_rng(args.seed)
    weights = np.stack([np.bincount(rng.integers(0, len(ids), len(ids)), minlength=len(ids))
                        for _ in range(args.resamples)]).astype(np.float64)
    full = np.ones((1, len(ids)))
    doc = {"dataset": ds.name, "images": ids, "resamples": args.resamples, "seed": args.seed,
           "method": "paired bootstrap over images (same draws for every curve); BD-rate on mAP@[.5:.95], "
                     "Pareto front, Akima; interval = 2.5/97.5 percentiles", "edge_macs": edge, "curves": {}, "bd": {}}
    # uncompressed reference (head -> tail, no coding): each point's mAP drop is paired with it
    with torch.inference_mode():
        ref_model = load_model("ssd_mobilenet_v2")
        ref_results = []
        for i, head in zip(ids, heads):
            ref_results += detections_to_coco(ds, i, ref_model.tail(head.features, args.split, head.meta))[0]
    ref_acc = MapAccumulator(gt, ref_results, ids)
    ref_boot = ref_acc.map(weights)
    doc["reference"] = {"mAP": coco_map(gt, ref_results, ids).mAP,
                        "mAP_ci": [float(v) for v in np.nanpercentile(ref_boot, [2.5, 97.5])]}

    def pct(values):
        finite = values[np.isfinite(values)]
        return [float(v) for v in np.percentile(finite, [2.5, 97.5])] if finite.size else None

    per_curve = {}
    for name, points in curves.items():
        rows_out, boot_bpp, boot_map = [], [], []
        for q, rows in points:
            results = []
            for i, (_, dets, _, _) in zip(ids, rows):
                results += detections_to_coco(ds, i, dets)[0]
            ref = coco_map(gt, results, ids).mAP
            acc = MapAccumulator(gt, results, ids)
            mine = float(acc.map(full)[0])
            if ref is not None and abs(mine - ref) > 1e-9:
                raise SystemExit(f"{name} q{q}: own accumulator {mine:.6f} != pycocotools {ref:.6f}")
            bpp_img = np.array([r[0] for r in rows]) / pixels
            boot_bpp.append(weights @ bpp_img / len(ids))
            boot_map.append(acc.map(weights))
            rows_out.append({"quality": q, "bpp": float(bpp_img.mean()), "mAP": ref, "mAP_ci": pct(boot_map[-1]),
                             "mAP_vs_ref": None if ref is None else ref - doc["reference"]["mAP"],
                             "mAP_vs_ref_ci": pct(boot_map[-1] - ref_boot),  # paired: same draws
                             "bits_mean": float(np.mean([r[0] for r in rows])),
                             "encode_ms": float(np.median([r[2] for r in rows])),
                             "decode_ms": float(np.median([r[3] for r in rows])),
                             "images": [{"image_id": i, "bits": r[0]} for i, r in zip(ids, rows)]})
        per_curve[name] = (np.array(boot_bpp), np.array(boot_map))  # (P, R)
        doc["curves"][name] = rows_out
        print(f"{name}: " + "  ".join(f"{p['bpp']:.4f}/{p['mAP']:.4f}" for p in rows_out), file=sys.stderr)

    def bd(anchor, test, bpp_a, map_a, bpp_t, map_t):
        r = bd_compare(monotone_front(anchor, list(bpp_a), list(map_a)), monotone_front(test, list(bpp_t), list(map_t)))
        return r.bd_rate, r.bd_map

    for anchor in [a for a in args.anchors.split(",") if a in curves]:
        table = {}
        ba, ma = per_curve[anchor]
        fa = doc["curves"][anchor]
        for name in curves:
            if name == anchor:
                continue
            bt, mt = per_curve[name]
            ft = doc["curves"][name]
            point = bd(anchor, name, [p["bpp"] for p in fa], [p["mAP"] for p in fa],
                       [p["bpp"] for p in ft], [p["mAP"] for p in ft])
            samples = [bd(anchor, name, ba[:, r], ma[:, r], bt[:, r], mt[:, r]) for r in range(args.resamples)]
            rates = np.array([s[0] for s in samples if s[0] is not None])
            maps = np.array([s[1] for s in samples if s[1] is not None])
            entry = {"bd_rate": point[0], "bd_map": point[1], "valid_resamples": int(rates.size)}
            if rates.size:
                lo, hi = np.percentile(rates, [2.5, 97.5])
                entry.update(bd_rate_ci=[float(lo), float(hi)], significant=bool(lo > 0 or hi < 0))
            if maps.size:
                entry["bd_map_ci"] = [float(v) for v in np.percentile(maps, [2.5, 97.5])]
            table[name] = entry
            ci = entry.get("bd_rate_ci")
            print(f"vs {anchor:10s} {name:14s} BD-rate {point[0] if point[0] is None else round(point[0], 1)} % "
                  f"[{'n/a' if ci is None else f'{ci[0]:+.1f}, {ci[1]:+.1f}'}]"
                  f"{'' if ci is None or entry['significant'] else ' (not significant)'}  "
                  f"BD-mAP {point[1] if point[1] is None else round(point[1], 2)}", file=sys.stderr)
        doc["bd"][anchor] = table
    argv_ = list(argv or sys.argv[1:])
    if "--records" in argv_:  # a local cache folder: not part of what was measured
        i = argv_.index("--records")
        del argv_[i:i + 2]
    doc["command"] = "python benchmarks/learned_bootstrap.py " + " ".join(portable(a) if "/" in a else a for a in argv_)
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
