"""Wrapper-aware RDO over a clip: where the per-tile weights come from, measured in one run.

    python benchmarks/video_wa.py [--clip vtest.avi] [--frames 60] [--wrapper learned] [--gop ldp]
        [--intra-period 20] [--qualities 17,22,27,32,37,42] [--out results/video_wa.json]

Curves (same clip, split, wrapper, codec, structure and intra period): ``sse`` (plain codec
RDO), ``wa fixed`` (weights saved with the wrapper), ``wa gop`` (re-estimated on the first
frame of every GOP and reused for it) and ``wa image`` (re-estimated on every frame). Prints
each curve's points, the BD-rate on F1 of every wa curve against sse with the paired
block-bootstrap interval over frames (what ``fcm bdrate --metric f1`` prints on the results
file), and the encode-side time of the weights (gop vs image, summed over the points, from
each run's ``timings_ms``: ``weights`` = the importance estimates, ``encode`` = the codec).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from fcmcore.evaluate.bootstrap import bd_with_ci
from fcmcore.evaluate.sweep import save_results
from fcmcore.video.run import VideoConfig
from fcmcore.video.sweep import video_sweep
from video_rd import clip_and_qualities  # this script's folder is on sys.path

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", default=str(VTEST))
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--split", default="expanded_conv_9")
    p.add_argument("--wrapper", default="learned")
    p.add_argument("--codec", default="hevc")
    p.add_argument("--gop", default="ldp")
    p.add_argument("--intra-period", type=int, default=20)
    p.add_argument("--qualities", default="17,22,27,32,37,42")
    p.add_argument("--sources", default="fixed,gop,image")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    qs = clip_and_qualities(args)
    if qs is None:
        return 2
    base = dict(split=args.split, codec=args.codec, gop=args.gop, intra_period=args.intra_period, wrapper=args.wrapper)
    curves = [(VideoConfig(**base), qs, "sse")]
    curves += [(VideoConfig(**base, rdo="wa", wa_source=s), qs, f"wa {s}") for s in args.sources.split(",")]
    t = time.perf_counter()
    doc = video_sweep(args.clip, curves, frames=args.frames, cache=True)
    elapsed = time.perf_counter() - t
    if args.out:
        save_results(doc, args.out)
    n = doc["num_frames"]
    print(f"{args.clip}: {n} frames; {args.split} [{args.wrapper}] + {args.codec} {args.gop} "
          f"intra period {args.intra_period}; sweep {elapsed:.0f} s ({doc['settings']['cached_runs']} of "
          f"{doc['settings']['runs']} runs cached); load average {os.getloadavg()[0]:.1f}")
    by = {c["name"]: c for c in doc["curves"]}
    for c in doc["curves"]:
        pts = ", ".join(f"q{p['quality']:g}: {p['kbps']:.1f} kbps F1 {p['f1']:.3f}" for p in c["points"])
        print(f"  {c['name']:9s} {pts}")
    rows = []
    for c in doc["curves"][1:]:
        r = bd_with_ci(by["sse"], c, metric="f1", n_resamples=args.resamples)
        rows.append(r.to_json())
        ci = f"[{r.bd_rate_ci[0]:+.1f}, {r.bd_rate_ci[1]:+.1f}]" if r.bd_rate_ci else "n/a"
        rate = "n/a" if r.bd_rate is None else f"{r.bd_rate:+.1f} %"
        verdict = "significant" if r.significant else "not significant"
        ov = "n/a" if r.overlap is None else f"{r.overlap:.0%}"
        print(f"BD-rate {c['name']} vs sse on F1: {rate} 95% CI {ci} ({verdict}; F1 overlap {ov})")
        for note in r.notes:
            print(f"    note: {note}")
    timing = {}
    for name, c in by.items():
        w = sum(p["timings_ms"].get("weights", 0.0) for p in c["points"]) / 1000
        e = sum(p["timings_ms"].get("encode", 0.0) for p in c["points"]) / 1000
        pre = sum(p["timings_ms"].get("pre_wrapper", 0.0) for p in c["points"]) / 1000
        timing[name] = {"weights_s": w, "encode_s": e, "pre_wrapper_s": pre, "edge_coding_s": w + e + pre}
        print(f"  {name:9s} weights {w:7.1f} s, codec encode {e:6.1f} s, pre-wrapper {pre:5.1f} s "
              f"(summed over {len(c['points'])} points)")
    if "wa gop" in timing and "wa image" in timing:
        g, i = timing["wa gop"], timing["wa image"]
        print(f"gop vs image weights: weights time x{g['weights_s'] / max(i['weights_s'], 1e-9):.3f}, "
              f"edge coding time (pre-wrapper + weights + encode) x{g['edge_coding_s'] / max(i['edge_coding_s'], 1e-9):.3f}")
    print(json.dumps({"bd_rates_vs_sse": rows, "timing": timing}, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
