"""Video throughput: a 30 s, 10 fps, 768x576 clip end to end vs its own duration.

    python benchmarks/video_throughput.py [--clip vtest.avi] [--frames 300] [--threads 2]
        [--codec hevc] [--gop ldp] [--quality 32]

End to end = decode the clip, preprocess + head per frame (frames are not kept: only the
features), pack and code the sequence as one stream, decode it, tail per frame, and the
metrics (the uncompressed reference's tail per frame, matching, F1 with its bootstrap
interval, pseudo-GT mAP). Prints each stage's wall time, the total against the clip's
duration (real time = ratio <= 1), the process CPU time (user + system: what the work
costs when the machine is shared), and the peak resident memory (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import torch

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", default=str(VTEST))
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--threads", type=int, default=2, help="torch threads (the target: 2 cores)")
    p.add_argument("--split", default="expanded_conv_9")
    p.add_argument("--codec", default="hevc")
    p.add_argument("--gop", default="ldp")
    p.add_argument("--quality", type=float, default=32)
    args = p.parse_args()
    if not Path(args.clip).is_file():
        print(f"clip {args.clip} not found (apt-get install opencv-doc, or --clip)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    from fcmcore.models import load_model
    from fcmcore.video.metrics import clip_metrics
    from fcmcore.video.run import VideoConfig, reference_detections, run_video, stream_heads

    load_model("ssd_mobilenet_v2")  # model loading is start-up, not per-clip work
    load_before = os.getloadavg()
    cpu0 = os.times()
    t0 = time.perf_counter()
    clip, heads = stream_heads(args.clip, "ssd_mobilenet_v2", args.split, frames=args.frames)
    t1 = time.perf_counter()
    result = run_video(clip, VideoConfig(split=args.split, codec=args.codec, gop=args.gop, quality=args.quality),
                       heads=heads)
    t2 = time.perf_counter()
    reference = reference_detections(clip, heads)
    metrics = clip_metrics(result.detections, reference, fps=result.fps)
    t3 = time.perf_counter()
    cpu1 = os.times()
    n = len(clip)
    duration = n / clip.fps
    total = t3 - t0
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system) + (cpu1.children_user - cpu0.children_user) \
        + (cpu1.children_system - cpu0.children_system)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = os.getloadavg()
    print(f"clip {Path(args.clip).name}: {n} frames {clip.width}x{clip.height} at {clip.fps:g} fps = {duration:.1f} s; "
          f"{args.split} + {args.codec} {args.gop} QP {args.quality:g}; torch threads {args.threads}")
    print(f"  decode + preprocess + head : {t1 - t0:7.1f} s  (head {heads.ms / 1000:.1f} s)")
    tm = result.timings_ms
    print(f"  code + decode + tail       : {t2 - t1:7.1f} s  (encode {tm.get('encode', 0) / 1000:.1f} s, "
          f"decode {tm.get('decode', 0) / 1000:.1f} s, tail {tm.get('tail', 0) / 1000:.1f} s)")
    print(f"  metrics (reference tail, F1 + bootstrap, mAP): {t3 - t2:.1f} s")
    print(f"  total {total:.1f} s wall = {total / duration:.2f} x the clip's duration "
          f"({'real time' if total <= duration else 'slower than real time'}); CPU {cpu:.1f} s "
          f"= {cpu / duration:.2f} core-seconds per second of video")
    print(f"  result: {result.kbps:.1f} kbps, F1 {metrics['agreement']['f1']:.3f}, "
          f"mAP vs uncompressed {metrics['mAP_vs_ref']:.3f}")
    print(f"  peak memory (max RSS) {rss_mb:.0f} MB; load average (1 min) {load_before[0]:.1f} at the start, "
          f"{load[0]:.1f} at the end, on {os.cpu_count()} cores (a shared machine's figures are not the idle ones)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
