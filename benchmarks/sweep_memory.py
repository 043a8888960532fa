"""Peak memory of a coco96 sweep, measured on the real command.

    python benchmarks/sweep_memory.py [--limit 96] [--qualities 27,37,47] [--workers 1]

Runs `fcm sweep` (cache off) in a child process and prints the child's peak resident set
size (getrusage ru_maxrss of the largest child: with --workers > 1 that is one worker, so
the total is about workers x that), wall time and runs per second.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fcmcore.paths import shared_dir


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default=str(shared_dir() / "datasets" / "coco96"))
    p.add_argument("--limit", type=int, default=96)
    p.add_argument("--split", default="expanded_conv_9")
    p.add_argument("--codec", default="hevc")
    p.add_argument("--qualities", default="27,37,47")
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        cmd = [sys.executable, "-m", "fcmcore.cli", "sweep", "--dataset", args.dataset, "--limit", str(args.limit),
               "--split", args.split, "--codec", args.codec, "--qualities", args.qualities, "--no-cache",
               "--workers", str(args.workers), "--quiet", "--out", str(out)]
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB
    runs = args.limit * (len(args.qualities.split(",")) + 1)  # + the uncompressed reference
    print(f"sweep of {args.limit} images x {len(args.qualities.split(','))} qualities (+ reference) at "
          f"{args.split} with {args.codec}, workers {args.workers}: wall {wall:.1f} s, "
          f"{runs / wall:.2f} runs/s, peak RSS {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
