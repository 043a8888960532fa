"""Video RD targets, measured in one run on one clip:

1. inter (ldp, ra) vs intra, same split and codec: BD-rate on F1 and on pseudo-GT mAP;
2. model-split inter vs full-input video coding of the clip (same codec, same structure).

    python benchmarks/video_rd.py [--clip vtest.avi] [--frames 60] [--codec hevc]
        [--qualities 22,27,32,37,42,47] [--out results/video_rd.json]

Default clip: ``vtest.avi`` of Debian's ``opencv-doc`` (not shipped with the project).
BD-rates are Bjontegaard (akima) on pooled F1 / mAP vs the uncompressed run; the F1 BD-rates
get a 95 % interval from a paired circular moving-block bootstrap over frames (1 s blocks,
the same resampled frames for every point of both curves). Points off the increasing front
are dropped (bdrate's rule) and reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from fcmcore.evaluate.bdrate import bd_table
from fcmcore.evaluate.sweep import save_results
from fcmcore.video.metrics import default_block
from fcmcore.video.run import VideoConfig
from fcmcore.video.sweep import bd_rate_interval, video_sweep

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def clip_and_qualities(args) -> list[float] | None:
    """The video benchmarks' common start: the clip must exist (None: said why), one torch thread,
    ``--qualities`` as numbers."""
    if not Path(args.clip).is_file():
        print(f"clip {args.clip} not found (apt-get install opencv-doc, or --clip)", file=sys.stderr)
        return None
    torch.set_num_threads(1)
    return [float(q) for q in args.qualities.split(",")]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", default=str(VTEST))
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--codec", default="hevc")
    p.add_argument("--split", default="expanded_conv_9")
    p.add_argument("--qualities", default="22,27,32,37,42,47")
    p.add_argument("--full-qualities", default=None, help="QPs of the full-input curve (default: --qualities)")
    p.add_argument("--gops", default="intra,ldp,ra")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    qs = clip_and_qualities(args)
    if qs is None:
        return 2
    fqs = [float(q) for q in (args.full_qualities or args.qualities).split(",")]
    gops = args.gops.split(",")
    curves = [(VideoConfig(split=args.split, codec=args.codec, gop=g), qs, f"split {g}") for g in gops]
    inter = [g for g in gops if g != "intra"]
    curves += [(VideoConfig(split=None, codec=args.codec, gop=g), fqs, f"full-input {g}") for g in inter]
    t = time.perf_counter()
    doc = video_sweep(args.clip, curves, start=args.start, frames=args.frames, cache=True)
    elapsed = time.perf_counter() - t
    if args.out:
        save_results(doc, args.out)
    by = {c["name"]: c for c in doc["curves"]}
    n = doc["num_frames"]
    block = default_block(doc["clips"][0]["fps"], n)
    print(f"{args.clip}: {n} frames, {args.codec}, split {args.split}; sweep {elapsed:.0f} s "
          f"({doc['settings']['cached_runs']} of {doc['settings']['runs']} runs cached)")
    for c in doc["curves"]:
        r = c["results"]
        pts = ", ".join(f"q{q:g}: {k:.0f} kbps F1 {f:.3f} mAPref {m:.3f}"
                        for q, k, f, m in zip(r["quality"], r["kbps"], r["f1"], r["mAP_vs_ref"]))
        print(f"  {c['name']:18s} {pts}")
    comparisons = [(f"split {g}", "split intra") for g in inter] + [(f"split {g}", f"full-input {g}") for g in inter]
    rows = []
    for test, anchor in comparisons:
        if test not in by or anchor not in by:
            continue
        out = {"test": test, "anchor": anchor}
        for metric in ("f1", "mAP_vs_ref"):
            table, notes = bd_table([by[anchor], by[test]], anchor, metric)
            out[metric] = table[1].bd_rate
            out[metric + "_notes"] = notes
        est, ci, used = bd_rate_interval(by[anchor], by[test], block=block)
        out["f1_ci"] = ci
        out["bootstrap_resamples"] = used
        rows.append(out)
        ci_s = f"[{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else "n/a"
        f1s = "n/a" if out["f1"] is None else f"{out['f1']:+.1f} %"
        ms = "n/a" if out["mAP_vs_ref"] is None else f"{out['mAP_vs_ref']:+.1f} %"
        print(f"BD-rate {test} vs {anchor}: F1 {f1s} 95% CI {ci_s} ({used} resamples); pseudo-GT mAP {ms}")
        for note in out["f1_notes"] + out["mAP_vs_ref_notes"]:
            print(f"    note: {note}")
    print(json.dumps({"bd_rates": rows}, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
