"""Pipeline time serving detection + pose + classification vs the plain detector.

    python benchmarks/tasks_time.py [--image PATH] [--codec hevc] [--repeats 7]

One run, same image, medians of ``--repeats`` after a warm-up:
plain detector (uncut, no coding); the split pipeline with detection only; the split
pipeline serving all three tasks from the one decoded tensor (connectors + task network
tails; the uncompressed references, cached per image after the warm-up, are measurement
and not counted); and, for comparison, running the two task networks whole on the image.
Ratios are what to compare across machines.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from _timing import median_ms  # benchmarks/_timing.py (this script's folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SAMPLE = REPO / "assets" / "samples" / "astronaut.jpg"


def main(argv: list[str] | None = None) -> int:
    import torch

    from fcmcore.imageio import load_image
    from fcmcore.models import load_model
    from fcmcore.models.task_network import load_task_network
    from fcmcore.pipeline import PipelineConfig, run
    from fcmcore.tasks.secondary import TASKS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", default=str(SAMPLE))
    p.add_argument("--codec", default="hevc")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    image = load_image(args.image)
    model = load_model("ssd_mobilenet_v2")
    nets = [load_task_network(t) for t in ("pose", "classification")]
    print(f"image {args.image} {image.width}x{image.height}, codec {args.codec}, torch threads "
          f"{torch.get_num_threads()}, repeats {args.repeats}")
    with torch.inference_mode():
        plain = median_ms(lambda: model.detect(image), args.repeats)
    det_only = median_ms(lambda: run(image, PipelineConfig(codec=args.codec)), args.repeats)
    stages: dict[str, list[float]] = {}

    def three():
        r = run(image, PipelineConfig(codec=args.codec, tasks=TASKS))
        for k, v in r.timings_ms.items():
            stages.setdefault(k, []).append(v)
        return r

    serving = median_ms(lambda: three().timings_ms["total"], args.repeats)  # wall incl. references (cached)
    served = statistics.median(stages["total"][1:])
    whole = median_ms(lambda: [n.predict(image) for n in nets], args.repeats)
    print(f"plain detector:                         {plain:8.1f} ms  1.00x")
    print(f"split + {args.codec}, detection only:          {det_only:8.1f} ms  {det_only / plain:.2f}x")
    print(f"split + {args.codec}, 3 tasks (serving total): {served:8.1f} ms  {served / plain:.2f}x")
    print(f"  wall incl. cached references:         {serving:8.1f} ms")
    print(f"pose + classification networks whole:   {whole:8.1f} ms  {whole / plain:.2f}x")
    print("per-stage medians (3 tasks): " + ", ".join(
        f"{k} {statistics.median(v[1:]):.1f}" for k, v in stages.items() if k != "total"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
