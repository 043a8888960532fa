"""Video CLI: ``fcm video CLIP ...`` and the ``--video`` entry of ``fcm sweep``.

    fcm video vtest.avi --split expanded_conv_9 --codec hevc --gop ldp --quality 27 --frames 60 --json
    fcm video vtest.avi --split none --codec hevc --gop ldp --quality 32 --out annotated.mp4
    fcm sweep --video vtest.avi --codec hevc --gop ldp --qualities 22,27,32,37,42 --frames 60 --out ldp.json
    fcm sweep --video vtest.avi --wrapper learned --rdo wa --wa-source gop --intra-period 20 ... --out wa.json
    fcm bdrate intra.json ldp.json --anchor intra --metric f1
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import ParameterError


def add_clip_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start", type=int, default=0, help="first frame (0-based, default 0)")
    p.add_argument("--frames", type=int, default=None, help="number of frames (default: to the end, within limits)")
    p.add_argument("--stride", type=int, default=1, help="take every Nth frame (default 1); kbps uses fps / stride")


def add_video_coding_arguments(p: argparse.ArgumentParser) -> None:
    """Coding options shared by ``fcm video`` and ``fcm sweep --video`` (model, split, codec,
    quality come from each command's own options)."""
    p.add_argument("--gop", default=None, choices=["intra", "ldp", "ra"],
                   help="structure: intra (all I), ldp (low delay P), ra (random access, B frames); "
                   "default ldp for hevc/vvc, intra for per-frame codecs")
    p.add_argument("--intra-period", type=int, default=None, help="frames between intra pictures (ldp/ra; default 64)")
    p.add_argument("--range", dest="ranges", default="sequence", choices=["sequence", "frame"],
                   help="min/max quantisation range once per sequence or per frame (side info counted)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "video", help="split inference on a video clip, features coded as one video stream",
        description="Run the head on every frame, code the packed feature frames as ONE HEVC/VVC stream "
        "(intra, low-delay P or random access), decode, run the tail per frame, and compare with the "
        "uncompressed run. --split none codes the clip itself (full-input anchor). Still-image and learned "
        "codecs code frame by frame (--gop intra).")
    p.add_argument("clip", help="video file (mp4, avi, mkv, webm, ...)")
    p.add_argument("--model", default="ssd_mobilenet_v2", help="detector (see `fcm models`)")
    p.add_argument("--split", default="expanded_conv_9", help="split point, or 'none' for full-input")
    p.add_argument("--codec", default="hevc", help="hevc or vvc (one stream), or any codec of `fcm codecs` (per frame)")
    p.add_argument("--quality", type=float, default=None, help="codec quality (hevc/vvc: base QP)")
    p.add_argument("--bits", dest="bit_depth", type=int, default=None, help="packing bit depth (default 10)")
    p.add_argument("--quant", default="tensor", choices=["tensor", "channel"], help="range per tensor or per channel")
    p.add_argument("--wrapper", default="none", help="wrapper NAME[:PATH] run on every frame (see `fcm wrappers`)")
    p.add_argument("--rdo", default="sse", choices=["sse", "wa"],
                   help="SSE, or wrapper-aware RDO by per-tile gains at packing (wa; needs --wrapper)")
    p.add_argument("--wa-source", default="wrapper", choices=["wrapper", "fixed", "image", "gop"],
                   help="--rdo wa weights: saved with the wrapper (fixed), re-estimated on every frame (image) or on "
                        "the first frame of each GOP and reused for it (gop); wrapper = as its file says")
    add_video_coding_arguments(p)
    add_clip_arguments(p)
    p.add_argument("--annotations", default=None, help="COCO-style annotation file of the clip (mAP against it)")
    p.add_argument("--out", default=None, help="write the decoded-side detections drawn on the frames (.mp4)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_video)


def config_from_args(args: argparse.Namespace, quality=None):
    # why: on use (fcm --help stays light)
    from ..video.run import VideoConfig
    from ..video.sequence import SEQUENCE_CODERS

    split = None if str(args.split).lower() == "none" else args.split
    codec = args.codec
    if codec in (None, "", "none"):
        raise ParameterError("video needs a codec (--codec hevc|vvc|...)")
    gop = args.gop or ("ldp" if codec in SEQUENCE_CODERS else "intra")
    # options fcm sweep shares with image sweeps that sequence coding has no counterpart for
    for flag, value, default in (("--wa-weights", getattr(args, "wa_weights", "channel"), "channel"),
                                 ("--tile-pad", getattr(args, "tile_pad", 0), 0),
                                 ("--tasks", str(getattr(args, "tasks", None) or "detection"), "detection")):
        if value != default:
            raise ParameterError(f"{flag} {value} is not supported for video (per-tile gains take channel weights)"
                                 if flag == "--wa-weights" else f"{flag} {value} is not supported for video")
    return VideoConfig(model=args.model, split=split, codec=codec, gop=gop, intra_period=args.intra_period,
                       quality=quality if quality is not None else getattr(args, "quality", None),
                       bit_depth=args.bit_depth, quant=args.quant, ranges=args.ranges,
                       wrapper=getattr(args, "wrapper", None) or "none", rdo=getattr(args, "rdo", "sse"),
                       wa_source=getattr(args, "wa_source", "wrapper"))


def result_json(result, metrics: dict[str, Any], clip) -> dict[str, Any]:
    """The ``fcm video --json`` document."""
    # why: on use (fcm --help stays light)
    from ..evaluate.metrics import REFERENCE_SCORE_THRESHOLD

    counts = metrics["counts"]
    per_frame = []
    for i in range(result.num_frames):
        per_frame.append({
            "index": result.indices[i],
            "bits": result.frame_bits[i],
            "intra": result.intra[i],
            "f1": metrics["per_frame_f1"][i],
            "matched": int(counts[i][0]), "missed": int(counts[i][1]), "false": int(counts[i][2]),
            "detections": [d.to_json() for d in result.detections[i] if d.score >= REFERENCE_SCORE_THRESHOLD],
        })
    out = {
        "frames": result.num_frames,
        "fps": round(result.fps, 4),
        "bits": result.bits,
        "kbps": round(result.kbps, 3),
        "bpp": result.bpp,
        "agreement": metrics["agreement"],
        "mAP_vs_ref": metrics.get("mAP_vs_ref"),
        "mAP50_vs_ref": metrics.get("mAP50_vs_ref"),
        "config": result.config.to_json(),
        "clip": dict(clip.info.to_json(), start=clip.start, stride=clip.stride),
        "header_bytes": result.header_bytes,
        "timings_ms": {k: round(v, 1) for k, v in result.timings_ms.items()},
        "per_frame": per_frame,
    }
    if "mAP" in metrics:
        out["mAP"], out["mAP50"] = metrics["mAP"], metrics["mAP50"]
    return out


def cmd_video(args: argparse.Namespace) -> int:
    # why: on use (fcm --help stays light)
    from ..video.clip import read_clip
    from ..video.metrics import annotation_map, clip_metrics, load_video_annotations
    from ..video.run import compute_heads, reference_detections, run_video, stream_heads, validate

    config = validate(config_from_args(args))  # bad options fail before decoding anything
    gt = load_video_annotations(args.annotations) if args.annotations else None
    if args.out and not str(args.out).lower().endswith((".mp4", ".mkv", ".mov")):
        raise ParameterError(f"--out must be a .mp4 (or .mkv/.mov) file, got {args.out}")
    if config.split is not None and config.sequence_coded and not args.out:  # frames not kept: low memory
        clip, heads = stream_heads(args.clip, config.model, config.split, start=args.start, frames=args.frames,
                                   stride=args.stride)
    else:
        clip = read_clip(args.clip, start=args.start, frames=args.frames, stride=args.stride)
        heads = compute_heads(clip, config.model, config.split)
    reference = reference_detections(clip, heads)
    result = run_video(clip, config, heads=heads, keep_decoded=bool(args.out))
    metrics = clip_metrics(result.detections, reference, fps=result.fps)
    if gt is not None:
        metrics.update(annotation_map(result.detections, gt, result.indices))
    doc = result_json(result, metrics, clip)
    if args.out:
        # why: on use (fcm --help stays light)
        from ..video.annotate import write_annotated

        frames = result.decoded_frames if result.decoded_frames is not None else clip.frames
        write_annotated(args.out, frames, result.detections, result.fps, result.frame_bits)
        doc["out"] = str(args.out)
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    a = doc["agreement"]
    ci = a.get("f1_ci")
    print(f"{args.clip}: {doc['frames']} frames {clip.width}x{clip.height} @ {doc['fps']:g} fps; {config.label()} "
          f"q={config.quality:g}")
    print(f"bits {doc['bits']:,} ({doc['kbps']:.1f} kbps, {doc['bpp']:.5f} bpp); intra frames "
          f"{sum(result.intra)}")
    f1 = "n/a" if a["f1"] is None else f"{a['f1']:.3f}"
    print(f"agreement with the uncompressed run: F1 {f1}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
          + f" (matched {a['matched']}, missed {a['missed']}, false {a['false']}); "
          f"mAP vs uncompressed {doc['mAP_vs_ref'] if doc['mAP_vs_ref'] is None else round(doc['mAP_vs_ref'], 3)}")
    if "mAP" in doc:
        print(f"mAP vs annotations {doc['mAP']}")
    if args.out:
        print(f"wrote {args.out}")
    sys.stdout.flush()
    return 0


# -- fcm sweep --video ------------------------------------------------------------------------

def cmd_video_sweep(args: argparse.Namespace) -> int:
    """``fcm sweep --video CLIP|FOLDER``: one curve (config at each quality) over the clip(s)."""
    # why: on use (fcm --help stays light)
    from ..evaluate.sweep import save_results
    from ..video.sweep import video_sweep

    if not args.qualities:
        raise ParameterError("fcm sweep --video takes --qualities (target rates are for image datasets)")
    args.codec = args.codec or "hevc"
    args.gop = getattr(args, "gop", None)
    config = config_from_args(args)
    doc = video_sweep(args.video, [(config, _qualities(args.qualities), args.name)],
                      start=args.start, frames=args.frames, stride=args.stride,
                      annotations=getattr(args, "annotations", None), cache=not args.no_cache,
                      progress=not args.quiet, workers=args.workers, scheduler=args.scheduler)
    save_results(doc, args.out)
    c = doc["curves"][0]
    if args.json:
        print(json.dumps({"out": str(args.out), "name": c["name"], "results": c["results"]}, indent=2))
    else:
        print(f"{c['name']} over {len(doc['clips'])} clip(s), {doc['num_frames']} frames")
        print(f"  {'quality':>7s} {'kbps':>9s} {'bpp':>9s} {'F1':>6s} {'F1 95% CI':>15s} {'mAP_ref':>7s}")
        for p in c["points"]:
            ci = p["agreement"].get("f1_ci")
            cis = f"[{ci[0]:.3f},{ci[1]:.3f}]" if ci else "n/a"
            f1 = "n/a" if p["f1"] is None else f"{p['f1']:.3f}"
            mr = "n/a" if p["mAP_vs_ref"] is None else f"{p['mAP_vs_ref']:.3f}"
            print(f"  {p['quality']:>7g} {p['kbps']:>9.1f} {p['bpp']:>9.5f} {f1:>6s} {cis:>15s} {mr:>7s}")
        print(f"wrote {args.out}")
    return 0


def add_sweep_video_arguments(p: argparse.ArgumentParser) -> None:
    """The options ``fcm sweep`` gains for clips (its --dataset becomes optional)."""
    g = p.add_argument_group("video (fcm sweep --video CLIP|FOLDER)")
    g.add_argument("--video", default=None, metavar="CLIP|FOLDER",
                   help="sweep a video clip, or every clip in a folder, instead of an image dataset")
    add_video_coding_arguments(g)
    add_clip_arguments(g)


def _qualities(text: str) -> list[float]:
    try:
        values = [float(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise ParameterError(f"--qualities must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise ParameterError("--qualities: give at least one value")
    return values
