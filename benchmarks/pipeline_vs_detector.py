"""Split pipeline time vs plain detector time, measured in one run on the same image.

    python benchmarks/pipeline_vs_detector.py [--image PATH] [--split expanded_conv_9] [--repeats 7]

Prints, per codec: median wall time of the whole split pipeline (head, packing, encode, decode,
unpacking, tail), its ratio to the plain (uncut) detector timed in the same round (rounds
interleave the detector and every codec, so slow drift of the machine cancels in the ratios),
the ratios' interquartile range, the per-stage medians and the bits. Ratios are what to compare across machines; absolute times depend on the CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from _timing import elapsed_ms  # benchmarks/_timing.py (this script's folder is on sys.path)

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
    wanted = {c for c in args.codecs.split(",") if c}
    configs = {"split, no codec": PipelineConfig(model=args.model, split=args.split, codec=None)}
    for codec in list_codecs():
        if wanted and codec.name not in wanted:
            continue
        ok, reason = codec.available()
        if not ok:
            print(f"{codec.name:10s} unavailable: {reason}")
            continue
        configs[codec.name] = PipelineConfig(model=args.model, split=args.split, codec=codec.name)

    def detect():
        with torch.inference_mode():
            model.detect(image)

    # Interleaved rounds: every round times the plain detector and then each configuration once,
    # so each ratio is of two runs seconds apart; the machine's drift (other jobs, clock changes)
    # then moves both sides of a ratio instead of whichever codec happened to run during it.
    detect()
    last = {name: run(image, config) for name, config in configs.items()}  # warm-up
    plain_ms: list[float] = []
    times: dict[str, list[float]] = {name: [] for name in configs}
    stages: dict[str, dict[str, list[float]]] = {name: {} for name in configs}
    for _ in range(args.repeats):
        plain_ms.append(elapsed_ms(detect))
        for name, config in configs.items():
            t0 = time.perf_counter()
            result = run(image, config)
            times[name].append((time.perf_counter() - t0) * 1000)
            last[name] = result
            for k, v in result.timings_ms.items():
                stages[name].setdefault(k, []).append(v)

    plain = statistics.median(plain_ms)
    print(f"plain detector: {plain:.1f} ms (1.00x); ratio = median over rounds of pipeline / detector "
          f"of the same round [interquartile range]")
    print(f"{'codec':16s} {'quality':>7s} {'ms':>8s} {'ratio':>6s} {'IQR':>13s} {'bits':>9s}  per-stage medians (ms)")
    for name in configs:
        ratios = sorted(t / p for t, p in zip(times[name], plain_ms))
        q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
        result = last[name]
        per_stage = ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in stages[name].items() if k != "total")
        quality = "-" if result.quality is None else f"{result.quality:g}"
        print(f"{name:16s} {quality:>7s} {statistics.median(times[name]):8.1f} {statistics.median(ratios):5.2f}x "
              f"[{q1:4.2f}, {q3:4.2f}] {result.bits:9d}  {per_stage}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
