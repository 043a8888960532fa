"""Sweep throughput: pipeline runs per second, serial vs local processes vs Dask.

    python benchmarks/sweep_throughput.py [--dataset ../shared/datasets/coco96] [--limit 8]
        [--split expanded_conv_9] [--codec hevc] [--qualities 27,37,47] [--dask]

Runs the same sweep (cache off) with --workers 1, then --workers N (default: all cores),
then optionally on a local Dask cluster, checks that the results are identical, and prints
wall time, runs/s and speed-up. Worker start-up (importing torch, loading the model) is
included, as a user would see it; use more images to amortise it.
"""

from __future__ import annotations

import argparse
import time

from fcmcore.evaluate import CurveSpec, evaluate, load_dataset
from fcmcore.evaluate.sweep import default_workers
from fcmcore.paths import shared_dir
from fcmcore.pipeline import PipelineConfig


def _strip(doc):
    return [(c["results"], [[{k: v for k, v in r.items() if k != "cached"} for r in p["images"]] for p in c["points"]])
            for c in doc["curves"]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default=str(shared_dir() / "datasets" / "coco96"))
    p.add_argument("--limit", type=int, default=8)
    p.add_argument("--split", default="expanded_conv_9")
    p.add_argument("--codec", default="hevc")
    p.add_argument("--qualities", default="27,37,47")
    p.add_argument("--workers", type=int, default=default_workers())
    p.add_argument("--dask", action="store_true", help="also time a LocalCluster (processes)")
    args = p.parse_args()

    ds = load_dataset(args.dataset, limit=args.limit)
    split = None if args.split == "none" else args.split
    curves = [CurveSpec(PipelineConfig(split=split, codec=args.codec), [float(q) for q in args.qualities.split(",")])]
    runs = len(ds) * (len(curves[0].qualities) + 1)
    print(f"{len(ds)} images x {len(curves[0].qualities)} qualities + reference = {runs} runs; "
          f"{args.split} + {args.codec}")

    modes = [("serial", dict(workers=1)), (f"{args.workers} processes", dict(workers=args.workers))]
    cluster = None
    if args.dask:
        from distributed import LocalCluster

        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None)
        modes.append((f"dask {args.workers} workers", dict(scheduler=cluster.scheduler_address)))
    base_time = None
    reference = None
    try:
        for label, kwargs in modes:
            start = time.perf_counter()
            doc = evaluate(ds, curves, cache=False, progress=False, **kwargs)
            elapsed = time.perf_counter() - start
            base_time = base_time or elapsed
            same = "" if reference is None else ("  identical" if _strip(doc) == reference else "  DIFFERENT")
            reference = reference or _strip(doc)
            print(f"{label:22s} {elapsed:7.1f} s  {runs / elapsed:6.2f} runs/s  x{base_time / elapsed:4.2f}{same}")
    finally:
        if cluster is not None:
            cluster.close()


if __name__ == "__main__":
    main()
