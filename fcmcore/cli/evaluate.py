"""Evaluation CLI: ``fcm sweep``, ``fcm bdrate``, ``fcm layers``, ``fcm plot``.

    fcm sweep --dataset ../shared/datasets/coco96 --split expanded_conv_9 --codec hevc \\
              --qualities 22,27,32,37,42,47 --out results/hevc_ec9.json
    fcm sweep --dataset D --split none --codec hevc --qualities 22,27,32 --out full.json
    fcm sweep --dataset D --codec hevc --target-bpp 0.05,0.1,0.2 --out eq.json  # equal-rate
    fcm bdrate full.json results/hevc_ec9.json --anchor "ssd_mobilenet_v2 @ full input + hevc"
    fcm layers --dataset D --codec hevc --qualities 22,32,42 --splits Conv,expanded_conv_9 --out layers.json
    fcm plot results/hevc_ec9.json full.json -o rd.html
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import ParameterError
from ..models import load_model
from .detect import add_pipeline_arguments, config_from_args
from .video import add_sweep_video_arguments  # fcm sweep --video CLIP|FOLDER (fcmcore/video)
from .video import cmd_video_sweep
from .kfold import add_kfold_arguments  # fcm sweep --folds K (fcmcore/evaluate/kfold.py)


def _floats(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in str(text).replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ParameterError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise ParameterError(f"{what}: give at least one value")
    return values


def _add_run_arguments(p: argparse.ArgumentParser, dataset_required: bool = True) -> None:
    p.add_argument("--dataset", required=dataset_required, help="COCO folder (images/ + instances.json) or an image folder")
    p.add_argument("--annotations", default=None, help="COCO instances JSON for an image folder")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (sorted by id)")
    p.add_argument("--subset", default="all", choices=["all", "train", "val"],
                   help="images of the trained parts' split (every 4th by id is val: held out from every bundled "
                        "wrapper, learned codec and connector); applied before --limit")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the result cache")
    p.add_argument("--workers", type=int, default=None,
                   help="local worker processes (default: number of cores; 1 with --video, whose points share heads)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="run on a Dask cluster (tcp://host:8786)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="rate vs mAP over a dataset at several qualities",
        description="Run one configuration over a dataset at each quality (or each target rate), plus "
        "the uncompressed reference, and write a results JSON (CompressAI plot schema per curve). "
        "bpp = mean over images of bits / (width * height) of the input image.")
    _add_run_arguments(p, dataset_required=False)  # or --video
    add_pipeline_arguments(p, single_quality=False)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--qualities", help="comma-separated codec qualities, e.g. 22,27,32,37,42,47; 'default' "
                   "(a fixed grid of >= 6 points for the codec) or 'auto' (6 qualities spanning the rates the "
                   "codec reaches, probed on 3 images)")
    g.add_argument("--target-bpp", help="comma-separated target rates: per image, the quality closest to each")
    p.add_argument("--align", default="rate", choices=["rate", "accuracy"],
                   help="with --qualities auto: span one common bpp range (default) or one common range of "
                   "agreement F1 with the uncompressed detector (probed on 8 images)")
    p.add_argument("--name", default=None, help="curve name (default: a readable form of the config)")
    p.add_argument("--out", required=True, help="results JSON to write")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_sweep_video_arguments(p)
    add_kfold_arguments(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "layers", help="compare split points (and full input) with one codec",
        description="One sweep per split point plus full-input, same codec and qualities; prints "
        "BD-rate vs full-input and mAP at each quality, and writes a chart.")
    _add_run_arguments(p)
    p.add_argument("--model", default="ssd_mobilenet_v2", help="detector (see `fcm models`)")
    p.add_argument("--codec", required=True, help="codec name (see `fcm codecs`)")
    p.add_argument("--qualities", default="auto",
                   help="comma-separated codec qualities, 'default' (the codec's grid) or 'auto' (default: per "
                   "split, qualities spanning one common range, see --align, so the BD figures overlap)")
    p.add_argument("--align", default="accuracy", choices=["rate", "accuracy"],
                   help="with --qualities auto: one common range of agreement F1 with the uncompressed detector "
                   "(default: BD-rate integrates over accuracy, and split points lie decades apart in rate) "
                   "or one common bpp range (what BD-mAP integrates over)")
    p.add_argument("--splits", default=None, help="comma-separated split points (default: all of the model's)")
    p.add_argument("--bits", dest="bit_depth", type=int, default=None, help="packing bit depth (default: codec's)")
    p.add_argument("--quant", default="tensor", choices=["tensor", "channel"], help="min-max range per tensor or per channel")
    p.add_argument("--no-full-input", action="store_true", help="leave out the full-input curve")
    p.add_argument("--out", default=None, help="results JSON to write")
    p.add_argument("--chart", default=None, help="chart file (.html; .png with vl-convert-python); "
                   "default: next to --out with .html")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(func=cmd_layers)


# -- sweep --------------------------------------------------------------------------------

def cmd_sweep(args: argparse.Namespace) -> int:
    # why: on use (fcm --help stays light)
    from ..evaluate.datasets import load_dataset
    from ..evaluate.results_io import check_output_path
    from ..evaluate.sweep import CurveSpec, evaluate, save_results

    if getattr(args, "video", None):
        if args.folds is not None:
            raise ParameterError("--folds works on image datasets, not --video")
        return cmd_video_sweep(args)
    if not args.dataset:
        raise ParameterError("fcm sweep needs --dataset (or --video for clips)")
    config = config_from_args(args)
    if config.codec is None:
        raise ParameterError("fcm sweep needs --codec (the uncompressed reference is recorded with every sweep)")
    check_output_path(args.out)  # before the work, not after it
    targets = _floats(args.target_bpp, "--target-bpp") if args.target_bpp else []
    dataset = load_dataset(args.dataset, args.annotations, args.limit, subset=getattr(args, "subset", "all"))
    qualities = _resolve_qualities(args.qualities, [config], dataset, args.align)[0] if args.qualities else []
    if args.folds is not None:  # k-fold training of the trained part (fcmcore/evaluate/kfold.py)
        from ..evaluate.kfold import kfold_from_args  # why: the k-fold stage loads only when --folds is given

        doc = kfold_from_args(args, dataset, CurveSpec(config, qualities, targets, args.name))
    else:
        doc = evaluate(dataset, [CurveSpec(config, qualities, targets, args.name)], cache=not args.no_cache,
                       workers=args.workers, scheduler=args.scheduler, progress=not args.quiet)
    save_results(doc, args.out)
    _warn_failures(doc)
    if args.json:
        c = doc["curves"][0]
        print(json.dumps({"out": str(args.out), "name": c["name"], "results": c["results"],
                          "reference": {k: c["reference"][k] for k in ("bpp", "mAP", "mAP50")},
                          "skipped": doc["skipped"]}, indent=2))
    else:
        print(format_sweep(doc))
        print(f"wrote {args.out}")
    return 0


def _resolve_qualities(text: str, configs: list, dataset, align: str = "rate") -> list[list[float]]:
    """--qualities for each config: numbers as given, the codec's default grid, or auto."""
    # why: on use (fcm --help stays light)
    from ..evaluate.auto_qualities import auto_qualities, default_qualities, parse_qualities

    q = parse_qualities(text)
    if q == "default":
        return [default_qualities(c.codec) for c in configs]
    if q == "auto":
        grids, info = auto_qualities(dataset, configs, align=align)
        lo, hi = info["bpp_range"] if align == "rate" else info["f1_range"]
        span = f"{lo:.3g}-{hi:.3g} bpp" if align == "rate" else f"F1 vs uncompressed {lo:.2f}-{hi:.2f}"
        print(f"auto qualities: {span} (probed on {info['probe_images']} images): "
              + "; ".join(f"{c.with_quality(None).label()}: {','.join(format(v, 'g') for v in g)}"
                          for c, g in zip(configs, grids)), file=sys.stderr)
        return grids
    return [list(q) for _ in configs]


def _warn_failures(doc: dict[str, Any]) -> None:
    failed = [e for e in doc["skipped"] if "curve" in e]
    if failed:
        print(f"warning: {len(failed)} image(s) left out because a run failed on them (listed under "
              f"'skipped' in the results; a re-run retries only those): "
              + "; ".join(f"image {e['image_id']} at quality {e['quality']}" for e in failed[:5])
              + (" ..." if len(failed) > 5 else ""), file=sys.stderr)


def _fmt(v: Any, spec: str = ".4f") -> str:
    return "n/a" if v is None else format(v, spec)


def _fmt_ci(ci: Any, spec: str = ".3f") -> str:
    return "" if not ci else f"[{ci[0]:{spec}}, {ci[1]:{spec}}]"


def format_sweep(doc: dict[str, Any]) -> str:
    lines = []
    ds = doc["dataset"]
    gt = "annotations" if doc["ground_truth"] == "annotations" else "uncompressed detections (no annotations)"
    s = doc["settings"]
    lines.append(f"dataset {ds['name']}: {ds['num_images']} images, ground truth: {gt}; "
                 f"{s['runs']} runs ({s['cached_runs']} from cache) in {s['elapsed_s']:.1f} s")
    for item in doc["skipped"]:
        where = f" ({item['curve']} at quality {item['quality']})" if "curve" in item else ""
        lines.append(f"  skipped image {item['image_id']} ({item['file_name']}){where}: {item['error']}")
    for c in doc["curves"]:
        ref = c["reference"]
        lines.append(f"\n{c['name']}")
        lines.append(f"  uncompressed reference: {ref['bpp']:.4g} bpp, mAP {_fmt(ref['mAP'])}, mAP50 {_fmt(ref['mAP50'])}")
        head = (f"  {'quality':>8s} {'bpp':>9s} {'mAP':>7s} {'mAP 95% CI':>16s} {'mAP50':>7s} {'vs ref':>7s} "
                f"{'match/miss/false':>17s} {'enc ms':>7s} {'total ms':>8s}")
        if c["mode"] == "target_bpp":
            head = f"  {'target':>8s}" + head[10:]
        lines.append(head)
        for p in c["points"]:
            a = p.get("agreement", {})
            mmf = f"{a.get('matched', 0)}/{a.get('missed', 0)}/{a.get('false', 0)}"
            first = p["target_bpp"] if c["mode"] == "target_bpp" else p["quality"]
            lines.append(f"  {first:>8g} {p['bpp']:>9.4f} {_fmt(p['mAP']):>7s} {_fmt_ci(p.get('mAP_ci')):>16s} "
                         f"{_fmt(p['mAP50']):>7s} "
                         f"{_fmt(p['mAP_vs_ref']):>7s} {mmf:>17s} {p['timings_ms'].get('encode', 0):>7.1f} "
                         f"{p['timings_ms'].get('total', 0):>8.1f}")
    return "\n".join(lines)


# -- layers -------------------------------------------------------------------------------

def cmd_layers(args: argparse.Namespace) -> int:
    # why: on use (fcm --help stays light)
    from ..evaluate.bdrate import bd_table
    from ..evaluate.bootstrap import bd_table_with_ci
    from ..evaluate.datasets import load_dataset
    from ..evaluate.results_io import check_output_path
    from ..evaluate.sweep import CurveSpec, evaluate, save_results
    from ..pipeline import PipelineConfig

    if args.out:
        check_output_path(args.out)
    if args.chart:
        check_output_path(args.chart, "--chart")
    model = load_model(args.model)
    known = [sp.name for sp in model.split_points()]
    splits = [s.strip() for s in args.splits.split(",") if s.strip()] if args.splits else known
    for s in splits:
        model.split_point(s)  # unknown split: clear error
    splits.sort(key=known.index)  # input -> output
    dataset = load_dataset(args.dataset, args.annotations, args.limit, subset=getattr(args, "subset", "all"))
    base = dict(model=args.model, codec=args.codec, bit_depth=args.bit_depth, quant=args.quant)
    configs = [] if args.no_full_input else [PipelineConfig(split=None, **{**base, "bit_depth": None})]
    configs += [PipelineConfig(split=s, **base) for s in splits]
    grids = _resolve_qualities(args.qualities, configs, dataset, args.align)
    curves = [CurveSpec(c, q) for c, q in zip(configs, grids)]
    doc = evaluate(dataset, curves, cache=not args.no_cache, workers=args.workers,
                   scheduler=args.scheduler, progress=not args.quiet)
    _warn_failures(doc)
    anchor = doc["curves"][0]["name"]
    rows, notes = bd_table(doc["curves"], anchor)
    cis = {r.name: r for r in bd_table_with_ci(doc["curves"], anchor)}
    notes = list(dict.fromkeys(notes + [n for r in cis.values() for n in r.notes]))
    doc["layers"] = {"anchor": anchor, "bd": [{**r.to_json(), **cis[r.name].to_json()} for r in rows], "notes": notes}
    if args.out:
        save_results(doc, args.out)
    chart_path = args.chart or (str(Path(args.out).with_suffix(".html")) if args.out else None)
    if chart_path:
        from ..evaluate.charts import layers_chart, save_chart  # why: Altair, heavy, only for charts

        save_chart(layers_chart(doc, rows), chart_path)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    table = layers_table(doc, rows, cis)
    if args.json:
        print(json.dumps(table, indent=2))
    else:
        print(format_layers(table, doc))
        if args.out:
            print(f"wrote {args.out}")
        if chart_path:
            print(f"wrote {chart_path}")
    return 0


def layers_table(doc: dict[str, Any], rows, intervals: dict | None = None) -> dict[str, Any]:
    bd = {r.name: r for r in rows}
    intervals = intervals or {}
    out = []
    for c in doc["curves"]:
        split = c["config"]["split"]
        out.append({"split": "full input" if split is None else split, "name": c["name"],
                    "bd_rate": bd[c["name"]].bd_rate, "bd_map": bd[c["name"]].bd_map,
                    "bd_rate_ci": getattr(intervals.get(c["name"]), "bd_rate_ci", None),
                    "bd_map_ci": getattr(intervals.get(c["name"]), "bd_map_ci", None),
                    "quality": c["results"]["quality"], "bpp": c["results"]["bpp"],
                    "mAP": c["results"]["mAP"], "reference_mAP": c["reference"]["mAP"]})
    return {"anchor": doc["curves"][0]["name"], "rows": out}


def format_layers(table: dict[str, Any], doc: dict[str, Any]) -> str:
    rows = table["rows"]
    qs = rows[0]["quality"]
    ds = doc["dataset"]
    s = doc["settings"]
    lines = [f"dataset {ds['name']}: {ds['num_images']} images; {s['runs']} runs ({s['cached_runs']} cached) "
             f"in {s['elapsed_s']:.1f} s; uncompressed mAP {_fmt(doc['reference']['mAP'])}",
             f"BD vs {table['anchor']!r}; mAP (and bpp) at each quality"]
    del qs  # qualities differ per split with --qualities auto: each cell names its own
    lines.append(f"{'split':18s} {'BD-rate %':>9s} {'95% CI':>15s} {'BD-mAP':>7s}  quality: mAP (bpp)")
    for r in rows:
        rate = "n/a" if r["bd_rate"] is None else f"{r['bd_rate']:+.1f}"
        ci = r.get("bd_rate_ci")
        cis = "" if not ci else f"[{ci[0]:+.1f}, {ci[1]:+.1f}]"
        dm = "n/a" if r["bd_map"] is None else f"{r['bd_map']:+.2f}"
        cells = "  ".join(f"{q:g}: {_fmt(m, '.3f')} ({b:.3f})" for q, m, b in zip(r["quality"], r["mAP"], r["bpp"]))
        lines.append(f"{r['split']:18s} {rate:>9s} {cis:>15s} {dm:>7s}  {cells}")
    return "\n".join(lines)
