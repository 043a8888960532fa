"""How long the dashboard takes to re-render after a quality change, measured with AppTest.

    python benchmarks/app_rerender.py [--changes 6] [--json]

Runs the real page (app/Home.py) headlessly, lets the first load finish (detector load, head
outputs, the RD sweep), then moves column A's quality slider to values not seen before (so
codec + tail really run for that column and its RD operating point) and times each whole
script run; then moves back to already-seen values (everything cached). Also times the
plain pipeline on the same head output (codec + tail only) as the floor a re-render cannot
beat, and prints the ratio. A fresh result cache is used so nothing comes from earlier runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "app" / "Home.py"
QUALITY_KEY = "c0.q.hevc"


def _timed_run(at) -> float:
    start = time.perf_counter()
    at.run()
    elapsed = (time.perf_counter() - start) * 1000
    if at.exception:
        raise SystemExit(f"the app raised: {[e.value for e in at.exception]}")
    return elapsed


def codec_tail_floor_ms(image_name: str, qualities: list[int]) -> float:
    """Median time of codec + tail alone (fcmcore.run_from_head) at these qualities."""
    from fcmcore.imageio import load_image
    from fcmcore.pipeline import PipelineConfig, run_from_head, run_head

    image = load_image(REPO / "assets" / "samples" / f"{image_name}.jpg")
    head = run_head(image)
    run_from_head(head, PipelineConfig(quality=qualities[0]))  # warm-up
    times = []
    for q in qualities:
        start = time.perf_counter()
        run_from_head(head, PipelineConfig(quality=q))
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=6, help="quality changes to time (default 6)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    os.environ["FCM_CACHE_DIR"] = tempfile.mkdtemp(prefix="fcm_bench_cache_")

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=900)
    first_ms = _timed_run(at)
    images = len(at.multiselect(key="samples").value)
    start_q = int(at.slider(key=QUALITY_KEY).value)
    new_qualities = [start_q + 1 + i for i in range(args.changes)]  # unseen: not in the sweep grid's cache path
    fresh = []
    for q in new_qualities:
        at.slider(key=QUALITY_KEY).set_value(q)
        fresh.append(_timed_run(at))
    cached = []
    for q in [start_q] + new_qualities[: args.changes - 1]:
        at.slider(key=QUALITY_KEY).set_value(q)
        cached.append(_timed_run(at))
    floor = codec_tail_floor_ms("coffee", new_qualities)
    out = {
        "first_load_ms": round(first_ms),
        "images_in_rd_curves": images,
        "quality_change_ms": {"median": round(statistics.median(fresh)), "min": round(min(fresh)),
                              "max": round(max(fresh)), "runs": [round(t) for t in fresh]},
        "quality_change_cached_ms": {"median": round(statistics.median(cached)), "min": round(min(cached)),
                                     "max": round(max(cached))},
        "codec_plus_tail_ms": round(floor, 1),
        "rerender_over_codec_tail": round(statistics.median(fresh) / floor, 2),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"first load (detector, heads, RD sweep): {out['first_load_ms']} ms")
    q = out["quality_change_ms"]
    print(f"quality change, new value:   median {q['median']} ms (min {q['min']}, max {q['max']}) over {args.changes}")
    c = out["quality_change_cached_ms"]
    print(f"quality change, seen value:  median {c['median']} ms (min {c['min']}, max {c['max']})")
    print(f"codec + tail alone (fcmcore, one image): {out['codec_plus_tail_ms']} ms; "
          f"re-render / that = {out['rerender_over_codec_tail']}x "
          f"(the re-render also runs the RD operating point on all {images} image(s))")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
