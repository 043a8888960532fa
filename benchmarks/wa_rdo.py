"""WA-RDO vs SSE-RDO on the coco96 validation images: RD curves (bpp vs COCO mAP) and BD-rates.

    python benchmarks/wa_rdo.py [--split expanded_conv_9] [--wrappers learned,pca]
        [--weights task,post] [--qualities 22,27,32,37,42,47] [--workers 1] [--out FILE]

For each wrapper (the bundled one for the split, or NAME:PATH) and each importance-weight
target, it sweeps the validation images (``datasplit``: every 4th coco96 image by id, never
trained on) with

    HEVC + SSE-RDO (constant QP),  HEVC + WA gains,  HEVC + WA QP offsets (x265 ROI),
    VVC + SSE-RDO,                 VVC + WA gains,

and prints BD-rate / BD-mAP of every WA curve against the same codec's SSE curve, and of
HEVC + WA against VVC + SSE.

``--overhead`` only times the encoder side of WA-RDO in one run (no sweep): per image and
QP, the encode with plain SSE (constant QP), with ``sse-qp`` (the ROI path, zero map) and the
WA extras: weights (fixed: a lookup; per image: Hutchinson through the tail), the QP map and
the ``wa-qp`` encode (each the minimum of 3 runs; per-image weights recomputed for every
encode), and prints the overhead as a ratio of encode time (wall and CPU, all threads; the x265 ROI
filter graph of a fixed map is built once and reused, as in a sweep).

``--proxy`` adds the diagnosis: for the same curves it measures, per image and point, the
distortion WA-RDO actually optimises, i.e. the MSE of the detector's raw outputs ("task":
class logits + box regressions) and of prediction map 0 ("deep") against the uncompressed
run, and reports BD-rate on those PSNR-like axes (10 log10(var / MSE)). WA gaining there but
not on mAP means the weights do their job and the proxy does not predict mAP. Dominated points are dropped before BD (``monotone_front``) and
listed. Weight targets are selected by writing a copy of the wrapper file whose metadata
says ``rdo_weights`` = the target (same parameters), so every variant has its own identity
in the result cache. Results go to ``--out`` (JSON, the sweep results schema + "bd").
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

from fcmcore.datasplit import split_train_val  # noqa: E402
from fcmcore.evaluate import CurveSpec, evaluate, load_dataset  # noqa: E402
from fcmcore.evaluate.bdrate import bd_table  # noqa: E402
from fcmcore.paths import cache_dir, shared_dir  # noqa: E402
from fcmcore.pipeline import PipelineConfig  # noqa: E402
from fcmcore.wrappers import default_path, parse_wrapper_spec  # noqa: E402


def val_dataset(path: Path):
    ds = load_dataset(path)
    _, val = split_train_val(ds.images)
    ids = {im.id for im in val}
    ds.images = val
    if ds.annotations is not None:
        ds.annotations = [a for a in ds.annotations if a["image_id"] in ids]
    return ds


def weight_variant(method: str, path: Path, target: str, out_dir: Path) -> Path:
    """A copy of wrapper file ``path`` whose ``rdo_weights`` is ``target``."""
    from fcmcore.wrappers.fitted import copy_with_rdo_weights, read_file

    split = read_file(path)[0]["split"]
    return copy_with_rdo_weights(path, out_dir / f"{method}-{split}-{target}.safetensors", target)


def proxy_curves(ds, split: str, curves: list[CurveSpec], qualities: list[float]) -> dict[str, dict]:
    """Rate and task/deep/feature distortion of each curve, averaged over ``ds`` (see --proxy)."""
    import numpy as np

    from fcmcore.imageio import load_image
    from fcmcore.pipeline import run_from_head, run_head
    from fcmcore.wrappers.importance import tail_function

    model = "ssd_mobilenet_v2"
    fns = {t: tail_function(model, split, t) for t in ("task", "deep")}
    out = {c.name: {"bpp": [], "task": [], "deep": [], "feature": []} for c in curves}
    for n, rec in enumerate(ds.images):
        head = run_head(load_image(rec.path), model, split)
        x = head.features[split].clone()
        with torch.no_grad():
            refs = {t: f(x) for t, f in fns.items()}
            for c in curves:
                row = out[c.name]
                for i, q in enumerate(qualities):
                    res = run_from_head(head, c.config.with_quality(q))
                    xh = res.decoded_features[split].clone()
                    vals = {"bpp": res.bpp, "feature": float((xh - x).pow(2).mean() / x.var())}
                    for t, f in fns.items():
                        vals[t] = float((f(xh) - refs[t]).pow(2).mean() / refs[t].var())
                    for k, v in vals.items():
                        if len(row[k]) <= i:
                            row[k].append([])
                        row[k][i].append(v)
        print(f"  proxy: {n + 1}/{len(ds)} images", file=sys.stderr, flush=True)
    summary = {}
    for name, row in out.items():
        summary[name] = {"bpp": [float(np.mean(v)) for v in row["bpp"]]}
        for k in ("task", "deep", "feature"):
            summary[name][k + "_psnr"] = [float(-10 * np.log10(np.mean(v))) for v in row[k]]
    return summary


def proxy_bd(summary: dict, comparisons: list[tuple[str, str]]) -> list[dict]:
    import bjontegaard as bd

    rows = []
    for anchor, test in comparisons:
        row = {"anchor": anchor, "test": test}
        for k in ("task_psnr", "deep_psnr", "feature_psnr"):
            a, t = summary[anchor], summary[test]
            try:
                row[k] = float(bd.bd_rate(a["bpp"], a[k], t["bpp"], t[k], method="akima",
                                          require_matching_points=False))
            except Exception as exc:  # non-monotone or non-overlapping curves
                row[k] = None
                row[k + "_error"] = str(exc)[:120]
        rows.append(row)
    return rows


def overhead(ds, split: str, wrapper_spec: str, qualities: list[float], images: int = 8, repeats: int = 3,
             per_image: bool = True) -> dict:
    """Encoder-side time of WA-RDO vs SSE in one run (see ``--overhead``)."""
    import time

    import numpy as np

    from fcmcore.codecs import _video
    from fcmcore.imageio import load_image
    from fcmcore.pipeline import make_coder, run_head, weights_for
    from fcmcore.wrappers import load_wrapper

    # time spent inside x265 itself (libx265 through PyAV), to split "QP map + encode" into
    # the WA work in Python (offsets, QP map, ROI side data) and the encoder's own time
    x265 = {"s": 0.0, "cpu_s": 0.0}
    av_encode = _video.av_encode

    def timed_av_encode(*a, **k):
        t, c = time.perf_counter(), time.process_time()
        try:
            return av_encode(*a, **k)
        finally:
            x265["s"] += time.perf_counter() - t
            x265["cpu_s"] += time.process_time() - c

    _video.av_encode = timed_av_encode
    try:
        return _overhead_rows(ds, split, wrapper_spec, qualities, images, repeats, per_image, x265,
                              make_coder, run_head, weights_for, load_image, load_wrapper)
    finally:
        _video.av_encode = av_encode


def _overhead_rows(ds, split, wrapper_spec, qualities, images, repeats, per_image, x265,
                   make_coder, run_head, weights_for, load_image, load_wrapper) -> dict:
    import time

    rows = {}
    variants = [("sse", "channel", "wrapper", 0), ("sse-qp", "channel", "wrapper", 8),
                ("wa-qp", "channel", "fixed", 8), ("wa-qp", "spatial", "fixed", 8),
                ("wa-qp", "spatial", "image", 8), ("wa-qp", "both", "image", 8)][:6 if per_image else 4]
    wrapper = load_wrapper(wrapper_spec, "ssd_mobilenet_v2", split)
    for rec in ds.images[:images]:
        head = run_head(load_image(rec.path), "ssd_mobilenet_v2", split)
        with torch.no_grad():
            reduced = wrapper.pre(head.features)
        for q in qualities:
            for rdo, kind, source, pad in variants:
                cfg = PipelineConfig(split=split, codec="hevc", quality=q, wrapper=wrapper_spec, rdo=rdo,
                                     wa_weights=kind, wa_source=source, tile_pad=pad)
                coder = make_coder(cfg, reduced)
                best = dict.fromkeys(("weights_s", "encode_s", "weights_cpu_s", "encode_cpu_s", "x265_s",
                                      "x265_cpu_s"), float("inf"))
                for _ in range(repeats):  # the minimum of a few runs: the machine is shared
                    wrapper.__dict__.pop("_image_maps", None)  # one image = one encode: no reuse across QPs
                    x0, xc0 = x265["s"], x265["cpu_s"]
                    t0, c0 = time.perf_counter(), time.process_time()
                    w = weights_for(wrapper, reduced, cfg) if coder.uses_channel_weights else None
                    t1, c1 = time.perf_counter(), time.process_time()
                    coder.encode(reduced, q, channel_weights=w)  # QP map + encode
                    t2, c2 = time.perf_counter(), time.process_time()
                    for k, v in (("weights_s", t1 - t0), ("encode_s", t2 - t1), ("weights_cpu_s", c1 - c0),
                                 ("encode_cpu_s", c2 - c1),
                                 ("x265_s", x265["s"] - x0), ("x265_cpu_s", x265["cpu_s"] - xc0)):
                        best[k] = min(best[k], v)
                r = rows.setdefault(f"{rdo} {kind}/{source} pad{pad}" if rdo == "wa-qp" else f"{rdo} pad{pad}",
                                    dict.fromkeys(best, 0.0))
                for k, v in best.items():
                    r[k] += v
    base = rows["sse pad0"]["encode_s"]
    anchor = rows["sse-qp pad8"]["encode_s"]
    anchor_cpu = rows["sse-qp pad8"]["encode_cpu_s"]
    for r in rows.values():
        total = r["weights_s"] + r["encode_s"]
        r["ratio_vs_sse"] = round(total / base, 3)
        r["ratio_vs_sse_qp"] = round(total / anchor, 3)
        r["cpu_ratio_vs_sse_qp"] = round((r["weights_cpu_s"] + r["encode_cpu_s"]) / anchor_cpu, 3)
        # the measure: WA's own work (weights + QP map + ROI side data, i.e. everything
        # but x265) beyond the anchor's packing, as a fraction of the encode
        extra = r["weights_s"] + r["encode_s"] - r["x265_s"] - (anchor - rows["sse-qp pad8"]["x265_s"])
        r["wa_work_s"] = round(extra, 4)
        r["wa_work_vs_encode"] = round(extra / r["x265_s"], 4)
        a = rows["sse-qp pad8"]
        extra_cpu = (r["weights_cpu_s"] + r["encode_cpu_s"] - r["x265_cpu_s"]
                     - (a["weights_cpu_s"] + a["encode_cpu_s"] - a["x265_cpu_s"]))
        r["wa_work_cpu_s"] = round(extra_cpu, 4)
        r["wa_work_cpu_vs_encode"] = round(extra_cpu / r["x265_cpu_s"], 4)
    return {"images": min(images, len(ds.images)), "qualities": qualities, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=str(shared_dir() / "datasets" / "coco96"))
    ap.add_argument("--split", default="expanded_conv_9")
    ap.add_argument("--wrappers", default="learned,pca", help="NAME or NAME:PATH, comma-separated")
    ap.add_argument("--weights", default="task", help="importance targets to try (post, deep, task, image-...)")
    ap.add_argument("--codecs", default="hevc,vvc")
    ap.add_argument("--qualities", default="22,27,32,37,42,47", help="QPs for both codecs")
    ap.add_argument("--no-wa-qp", action="store_true", help="skip the HEVC QP-offset curves")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--proxy", action="store_true", help="also BD-rate on task/deep/feature distortion (diagnosis)")
    ap.add_argument("--proxy-only", action="store_true", help="only the --proxy part (no mAP sweep)")
    ap.add_argument("--overhead", action="store_true", help="only time WA-RDO's encoder overhead (one run)")
    ap.add_argument("--overhead-images", type=int, default=8)
    ap.add_argument("--overhead-repeats", type=int, default=3, help="--overhead: runs per encode (minimum kept)")
    ap.add_argument("--fixed-only", action="store_true", help="--overhead: skip the per-image weight variants")
    ap.add_argument("--no-graph-cache", action="store_true",
                    help="--overhead: rebuild the x265 ROI filter graph for every picture (the old mechanism)")
    ap.add_argument("--overhead-out", default=None, help="--overhead: also write the timings as JSON")
    ap.add_argument("--out", default=None, help="results JSON (default assets/wrappers/results/wa_rdo_<split>.json)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    out = Path(args.out) if args.out else REPO / "assets" / "wrappers" / "results" / f"wa_rdo_{args.split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    variants_dir = cache_dir() / "wrapper-variants"  # copies of wrapper files: not repo content
    variants_dir.mkdir(parents=True, exist_ok=True)
    ds = val_dataset(Path(args.dataset))
    qualities = [float(q) for q in args.qualities.split(",")]
    if args.overhead:
        spec = args.wrappers.split(",")[0]
        if args.no_graph_cache:  # the mechanism before: a fresh addroi chain for every picture
            from fcmcore.codecs import hevc

            hevc._ROI_GRAPHS_MAX = 0
        rep = overhead(ds, args.split, spec, qualities, args.overhead_images, repeats=args.overhead_repeats,
                       per_image=not args.fixed_only)
        rep["roi_graph_cache"] = not args.no_graph_cache
        print(f"WA-RDO encoder overhead, {spec} @ {args.split}, {rep['images']} val images x {len(qualities)} QPs "
              "(time = weights + QP map + encode, summed)")
        print(f"  {'variant':28s} {'weights s':>9s} {'encode s':>9s} {'/ sse':>7s} {'/ sse-qp':>9s} "
              f"{'CPU s':>7s} {'CPU / sse-qp':>12s}")
        for name, r in rep["rows"].items():
            print(f"  {name:28s} {r['weights_s']:9.2f} {r['encode_s']:9.2f} {r['ratio_vs_sse']:7.3f} "
                  f"{r['ratio_vs_sse_qp']:9.3f} {r['weights_cpu_s'] + r['encode_cpu_s']:7.2f} "
                  f"{r['cpu_ratio_vs_sse_qp']:12.3f}")
        for name in ("wa-qp channel/fixed pad8", "wa-qp spatial/fixed pad8"):
            r = rep["rows"][name]
            ok = "met" if max(r["wa_work_vs_encode"], r["wa_work_cpu_vs_encode"]) <= 0.10 else "missed"
            print(f"  {name} (fixed weights): total {r['ratio_vs_sse_qp']:.3f}x the sse-qp pad8 encode (wall), "
                  f"{r['cpu_ratio_vs_sse_qp']:.3f}x (CPU); WA work (weights + QP map + ROI side data) "
                  f"{100 * r['wa_work_vs_encode']:.1f} % (wall) / {100 * r['wa_work_cpu_vs_encode']:.1f} % (CPU) "
                  f"of its x265 time (target <= 10 %: {ok})")
        if args.overhead_out:
            Path(args.overhead_out).write_text(json.dumps(rep, indent=1) + "\n")
        return 0
    codecs = [c for c in args.codecs.split(",") if c]
    targets = [t for t in args.weights.split(",") if t]

    curves: list[CurveSpec] = []
    comparisons: list[tuple[str, str]] = []  # (anchor, test)
    for spec in [s for s in args.wrappers.split(",") if s]:
        method, path = parse_wrapper_spec(spec)
        path = Path(path) if path else default_path(method, "ssd_mobilenet_v2", args.split)
        base = PipelineConfig(split=args.split, wrapper=f"{method}:{path}")
        sse_names = {}
        for codec in codecs:
            name = f"{method} {codec} sse"
            sse_names[codec] = name
            curves.append(CurveSpec(replace(base, codec=codec), qualities, name=name))
        for target in targets:
            vpath = weight_variant(method, path, target, variants_dir)
            vbase = replace(base, wrapper=f"{method}:{vpath}")
            for codec in codecs:
                name = f"{method} {codec} wa[{target}]"
                curves.append(CurveSpec(replace(vbase, codec=codec, rdo="wa"), qualities, name=name))
                comparisons.append((sse_names[codec], name))
                if codec == "vvc" and "hevc" in codecs:
                    comparisons.append((sse_names["vvc"], f"{method} hevc wa[{target}]"))
                if codec == "hevc" and not args.no_wa_qp:
                    name = f"{method} hevc wa-qp[{target}]"
                    curves.append(CurveSpec(replace(vbase, codec=codec, rdo="wa-qp"), qualities, name=name))
                    comparisons.append((sse_names["hevc"], name))
                    if "vvc" in codecs:
                        comparisons.append((sse_names["vvc"], name))
        if "hevc" in codecs and "vvc" in codecs:
            comparisons.append((sse_names["vvc"], sse_names["hevc"]))

    print(f"{len(curves)} curves x {len(qualities)} qualities on {len(ds)} val images of {ds.name}", file=sys.stderr)
    if args.proxy or args.proxy_only:
        summary = proxy_curves(ds, args.split, curves, qualities)
        prows = proxy_bd(summary, comparisons)
        pout = out.with_name(out.stem + "_proxy.json")
        pout.write_text(json.dumps({"curves": summary, "bd": prows}, indent=1))
        print("\nBD-rate % on distortion proxies (task = detector outputs, deep = map0, feature = split)")
        print(f"  {'test':28s} {'anchor':22s} {'task':>7s} {'deep':>7s} {'feature':>8s}")
        for r in prows:
            cells = ["n/a" if r[k] is None else f"{r[k]:+.1f}" for k in ("task_psnr", "deep_psnr", "feature_psnr")]
            print(f"  {r['test']:28s} {r['anchor']:22s} {cells[0]:>7s} {cells[1]:>7s} {cells[2]:>8s}")
        print(f"wrote {pout}")
        if args.proxy_only:
            return 0
    doc = evaluate(ds, curves, workers=args.workers, progress=True)
    by_name = {c["name"]: c for c in doc["curves"]}
    bd = []
    notes: list[str] = []
    for anchor, test in comparisons:
        rows, n = bd_table([by_name[anchor], by_name[test]], anchor)
        row = rows[1]
        bd.append({"anchor": anchor, "test": test, "bd_rate": row.bd_rate, "bd_map": row.bd_map})
        notes += [x for x in n if x not in notes]
    doc["bd"] = bd
    doc["bd_notes"] = notes
    out.write_text(json.dumps(doc, separators=(",", ":")))

    print(f"\nRD points (val, {len(ds)} images): bpp / mAP x100")
    for c in doc["curves"]:
        pts = ", ".join(f"{b:.4f}/{(m or 0) * 100:.1f}" for b, m in zip(c["results"]["bpp"], c["results"]["mAP"]))
        print(f"  {c['name']:28s} {pts}")
    ref = doc["curves"][0]["reference"]
    print(f"  uncompressed reference of the first curve: mAP {ref['mAP'] * 100:.1f}")
    print("\nBD (akima; negative BD-rate = fewer bits for the same mAP)")
    print(f"  {'test':28s} {'anchor':22s} {'BD-rate %':>10s} {'BD-mAP':>8s}")
    for r in bd:
        rate = "n/a" if r["bd_rate"] is None else f"{r['bd_rate']:+.1f}"
        dmap = "n/a" if r["bd_map"] is None else f"{r['bd_map']:+.2f}"
        print(f"  {r['test']:28s} {r['anchor']:22s} {rate:>10s} {dmap:>8s}")
    for n in notes:
        print(f"  note: {n}")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
