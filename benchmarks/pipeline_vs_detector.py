"""Split pipeline time vs plain detector time, measured in one run on the same image.

    python benchmarks/pipeline_vs_detector.py [--image PATH] [--split expanded_conv_9] [--repeats 7]

Prints, per codec: median wall time of the whole split pipeline (head, packing, encode, decode,
unpacking, tail), the ratio to the plain (uncut) detector's median time, the per-stage medians
and the bits. Ratios are what to compare across machines; absolute times depend on the CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from _timing import median_ms  # benchmarks/_timing.py (this script's folder is on sys.path)

from fcmcore.codecs import list_codecs
from fcmcore.imageio import load_image
from fcmcore.models import load_model
from fcmcore.pipeline import PipelineConfig, run

SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "samples" / "astronaut.jpg"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=str(SAMPLE))
    parser.add_argument("--model", default="ssd_mobilenet_v2")
    parser.add_argument("--split", default="expanded_conv_9")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--codecs", default="", help="comma-separated subset (default: all available)")
    args = parser.parse_args(argv)

    image = load_image(args.image)
    model = load_model(args.model)
    print(f"image {args.image} {image.width}x{image.height}, model {args.model}, split {args.split}, "
          f"torch threads {torch.get_num_threads()}, repeats {args.repeats}")
    with torch.inference_mode():
        plain = median_ms(lambda: model.detect(image), args.repeats)
    print(f"plain detector: {plain:.1f} ms (1.00x)")
    uncoded = median_ms(lambda: run(image, PipelineConfig(model=args.model, split=args.split, codec=None)), args.repeats)
    print(f"split, no codec: {uncoded:.1f} ms ({uncoded / plain:.2f}x)")

    wanted = {c for c in args.codecs.split(",") if c}
    print(f"{'codec':10s} {'quality':>7s} {'ms':>8s} {'ratio':>6s} {'bits':>9s}  per-stage medians (ms)")
    for codec in list_codecs():
        if wanted and codec.name not in wanted:
            continue
        ok, reason = codec.available()
        if not ok:
            print(f"{codec.name:10s} unavailable: {reason}")
            continue
        config = PipelineConfig(model=args.model, split=args.split, codec=codec.name)
        stages: dict[str, list[float]] = {}
        results = []

        def once():
            result = run(image, config)
            results.append(result)
            for k, v in result.timings_ms.items():
                stages.setdefault(k, []).append(v)

        total = median_ms(once, args.repeats)
        last = results[-1]
        per_stage = ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in stages.items() if k != "total")
        print(f"{codec.name:10s} {last.quality:>7g} {total:8.1f} {total / plain:5.2f}x {last.bits:9d}  {per_stage}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
