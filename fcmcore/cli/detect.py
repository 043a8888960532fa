"""Core CLI commands: ``fcm models``, ``fcm splits``, ``fcm codecs``, ``fcm wrappers``, ``fcm detect``."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import ParameterError
from ..imageio import load_image
from ..models import DEFAULT_MODEL, MODELS, load_model
from ..wrappers import WRAPPERS


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the detectors")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("splits", help="list a model's split points and the tensors that cross them")
    p.add_argument("--model", default=None, help="model name (default: the offline default)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_splits)

    p = sub.add_parser("codecs", help="list codecs, their quality scale and availability here")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_codecs)

    p = sub.add_parser("wrappers", help="list wrapper methods")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_wrappers)

    p = sub.add_parser(
        "detect",
        help="run split inference on one image",
        description="Run the detector split at SPLIT, code the features with CODEC at QUALITY, "
        "finish inference and print detections, bits and timings. With --split none and a codec, "
        "the image itself is coded (full-input paradigm).",
    )
    p.add_argument("image", help="image file (JPEG, PNG, WebP, ...)")
    add_pipeline_arguments(p)
    p.add_argument("--score-threshold", type=float, default=0.4, help="hide detections below this score (default 0.4)")
    p.add_argument("--bits-per-channel", action="store_true",
                   help="also measure bits per channel tile (leave-one-out: one extra encode per channel)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_detect)


def add_pipeline_arguments(p: argparse.ArgumentParser, *, single_quality: bool = True) -> None:
    """Arguments shared by ``detect`` and ``sweep``."""
    p.add_argument("--model", default="ssd_mobilenet_v2", help="detector (see `fcm models`)")
    p.add_argument("--split", default="expanded_conv_9", help="split point name, or 'none' for full-input")
    p.add_argument("--codec", default=None, help="codec name (see `fcm codecs`); omit or 'none' for no coding")
    if single_quality:
        p.add_argument("--quality", type=float, default=None, help="codec quality (default: the codec's default)")
    p.add_argument("--bits", dest="bit_depth", type=int, default=None, help="packing bit depth (default: codec's)")
    p.add_argument("--quant", default="tensor", choices=["tensor", "channel"], help="min-max range per tensor or per channel")
    p.add_argument("--wrapper", default="none", help="wrapper NAME[:PATH] (see `fcm wrappers`)")
    p.add_argument("--rdo", default="sse", choices=["sse", "wa", "wa-qp", "sse-qp"],
                   help="SSE, or wrapper-aware RDO by tile gains (wa) / HEVC QP offsets (wa-qp); "
                        "sse-qp = SSE through wa-qp's encoder path with zero offsets (its like-for-like anchor)")
    p.add_argument("--wa-weights", default="channel", choices=["channel", "spatial", "both"],
                   help="WA-RDO importance per channel tile, per spatial position, or per coded sample (both); "
                        "spatial kinds need --rdo wa-qp")
    p.add_argument("--wa-source", default="wrapper", choices=["wrapper", "fixed", "image", "gop"],
                   help="WA-RDO weights saved with the wrapper (fixed), re-estimated per image, or as the "
                        "wrapper file's rdo_weights says (wrapper); gop (video only): re-estimated once per GOP")
    p.add_argument("--wa-strength", type=float, default=1.0,
                   help="WA-RDO strength S: QP offsets -3*S*log2(w), tile gains w^(S/2) (default 1; < 1 milder)")
    p.add_argument("--tile-pad", type=int, default=0, choices=[0, 8, 16],
                   help="pad packed tiles to multiples of 8/16 samples so QP blocks never straddle tiles")
    p.add_argument("--tasks", default="detection",
                   help="comma-separated tasks served from the one bitstream: detection,pose,classification")
    p.add_argument("--connector", default="conv", choices=["conv", "linear"],
                   help="secondary tasks: the trained connector (conv) or the naive projection (linear)")


def config_from_args(args: argparse.Namespace, quality=None):
    # why: on use (fcm --help stays light)
    from ..pipeline import PipelineConfig
    from ..tasks.secondary import parse_tasks

    split = None if str(args.split).lower() == "none" else args.split
    codec = None if args.codec in (None, "", "none") else args.codec
    if getattr(args, "wa_source", None) == "gop":
        raise ParameterError("--wa-source gop (weights once per GOP) is for clips: fcm video, fcm sweep --video")
    if split is None and codec is None:
        codec = None  # the plain detector on the raw image
    return PipelineConfig(
        model=args.model,
        split=split,
        codec=codec,
        quality=quality if quality is not None else getattr(args, "quality", None),
        bit_depth=args.bit_depth,
        quant=args.quant,
        wrapper=args.wrapper or "none",
        rdo=args.rdo,
        wa_weights=getattr(args, "wa_weights", "channel"),
        wa_source=getattr(args, "wa_source", "wrapper"),
        tile_pad=getattr(args, "tile_pad", 0),
        wa_strength=getattr(args, "wa_strength", 1.0),
        bits_per_channel=getattr(args, "bits_per_channel", False),
        tasks=parse_tasks(getattr(args, "tasks", None)),
        connector=getattr(args, "connector", "conv"),
    )


def _print_registry(registry, args: argparse.Namespace, width: int) -> int:
    """Name + its factory's ``description`` (or its docstring's first line), for every entry
    (``fcm models|wrappers``)."""
    rows = []
    for name in registry:
        factory = registry.factory(name)
        doc = (factory.__doc__ or "").strip().splitlines()
        described = getattr(factory, "description", None)
        rows.append({"name": name, "description": described if isinstance(described, str) else doc[0] if doc else ""})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['name']:{width}s} {r['description']}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    return _print_registry(MODELS, args, 32)


def cmd_splits(args: argparse.Namespace) -> int:
    model = load_model(args.model or DEFAULT_MODEL)
    rows = [sp.to_json() for sp in model.split_points()]
    for r in rows:
        r["edge_macs"] = model.edge_macs(r["name"])
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            shapes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in r["tensors"].items())
            print(f"{r['name']:20s} {shapes}  ({r['num_values']:,} values)")
    return 0


def cmd_codecs(args: argparse.Namespace) -> int:
    # why: on use (fcm --help stays light)
    from ..codecs import list_codecs

    rows = [c.to_json() for c in list_codecs()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            lo, hi = r["quality_range"]
            direction = "higher = more bits" if r["higher_is_better"] else "lower = more bits"
            state = "available" if r["available"] else f"UNAVAILABLE: {r['reason']}"
            print(f"{r['name']:12s} {r['quality_meaning'] or 'quality'} {lo:g}..{hi:g} ({direction}), "
                  f"default {r['default_quality']:g}; {state}")
    return 0


def cmd_wrappers(args: argparse.Namespace) -> int:
    return _print_registry(WRAPPERS, args, 12)


def cmd_detect(args: argparse.Namespace) -> int:
    # why: on use (fcm --help stays light)
    from ..pipeline import run

    if not (0.0 <= args.score_threshold <= 1.0):
        raise ParameterError(f"--score-threshold must be in [0, 1], got {args.score_threshold}")
    config = config_from_args(args)
    image = load_image(args.image)
    result = run(image, config)
    out = result.to_json(score_threshold=args.score_threshold)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    where = "full input" if config.split is None else f"split {config.split}"
    coding = f"{config.codec} q={result.quality:g}" if config.codec else "no coding"
    print(f"{args.image}: {result.image_size[0]}x{result.image_size[1]}, {config.model}, {where}, {coding}")
    print(f"bits {result.bits:,} ({result.bits / 8:,.0f} bytes), {result.bpp:.4f} bpp"
          + (f", compression {out['compression_ratio']:g}x vs float32" if "compression_ratio" in out else ""))
    if out["feature_shapes"]:
        print("features " + ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in out["feature_shapes"].items()))
    print("timings  " + ", ".join(f"{k} {v:.1f} ms" for k, v in out["timings_ms"].items()))
    dets = out["detections"]
    print(f"{len(dets)} detections (score >= {args.score_threshold:g}):")
    for d in dets:
        x1, y1, x2, y2 = d["box"]
        print(f"  {d['label']:16s} {d['score']:.2f}  [{x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}]")
    sys.stdout.flush()
    return 0
