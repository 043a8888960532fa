"""BD-rates on F1 between curves of video results files, on chosen qualities of each curve.

    python benchmarks/video_bd.py RESULTS.json --pairs "split ldp:full-input ldp,split ra:full-input ra"
        [--keep "split ldp=17,22,27,32;full-input ldp=32,37,42,47,51"] [--resamples 1000]

The same figure and paired block-bootstrap interval as ``fcm bdrate --metric f1``
(``fcmcore.evaluate.bootstrap.bd_with_ci``), after keeping only the listed qualities of a
curve (to make two curves' F1 ranges overlap: BD-rate integrates over the shared range).
Files written before points recorded their bootstrap block get one second of frames.
"""

from __future__ import annotations

import argparse
import json

from fcmcore.evaluate.bootstrap import bd_with_ci
from fcmcore.evaluate.frame_bootstrap import default_block
from fcmcore.evaluate.sweep import load_results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+")
    p.add_argument("--pairs", required=True, help="test:anchor,test:anchor")
    p.add_argument("--keep", default="", help="curve=q,q,...;curve=q,...")
    p.add_argument("--resamples", type=int, default=1000)
    args = p.parse_args()
    curves, fps = {}, {}
    for path in args.results:
        doc = load_results(path)
        for c in doc["curves"]:
            curves[c["name"]] = c
            fps[c["name"]] = doc["clips"][0]["fps"] / doc["clips"][0].get("stride", 1)
    for item in filter(None, args.keep.split(";")):
        name, _, qs = item.partition("=")
        keep = {float(q) for q in qs.split(",")}
        c = curves[name]
        c["points"] = [pt for pt in c["points"] if float(pt["quality"]) in keep]
        c["results"] = {m: [pt[m] for pt in c["points"]] for m in c["results"] if all(m in pt for pt in c["points"])}
    for name, c in curves.items():
        for pt in c["points"]:
            pt.setdefault("block_frames", default_block(fps[name], len(pt["frame_bits"])))
    rows = []
    for pair in args.pairs.split(","):
        test, _, anchor = pair.partition(":")
        r = bd_with_ci(curves[anchor], curves[test], metric="f1", n_resamples=args.resamples)
        rows.append({"test": test, "anchor": anchor, **r.to_json()})
        ci = f"[{r.bd_rate_ci[0]:+.1f}, {r.bd_rate_ci[1]:+.1f}]" if r.bd_rate_ci else "n/a"
        rate = "n/a" if r.bd_rate is None else f"{r.bd_rate:+.1f} %"
        sig = "significant" if r.significant else "not significant"
        ov = "n/a" if r.overlap is None else f"{r.overlap:.0%}"
        qa = [pt["quality"] for pt in curves[anchor]["points"]]
        qt = [pt["quality"] for pt in curves[test]["points"]]
        print(f"{test} (q {qt}) vs {anchor} (q {qa}): BD-rate on F1 {rate} 95% CI {ci}, {sig}; F1 overlap {ov}")
        for note in r.notes:
            print(f"    note: {note}")
    print(json.dumps(rows, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
