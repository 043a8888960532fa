"""Why a point's mAP interval sits above the mAP, and whether another interval covers better.

    python benchmarks/map_interval_coverage.py RESULTS.json [--subsets 100] [--sizes 24,48] [--json]

For each point of the first curve of an `fcm sweep` results file (per-image data needed):

* bias: the mean mAP of the bootstrap resamples minus the measured mAP. mAP is not an average
  over images; on fewer distinct images each category's AP tends to come out higher, and a
  resample holds ~63 % distinct images, so the resamples lie above the estimate;
* coverage: the file's images are taken as the population; random subsets of n images
  (without replacement) are scored, and each subset's 95 % interval is checked for containing the
  population's mAP. Three intervals from the same resamples: percentile (what `fcm` reports),
  BCa (Efron's bias-corrected and accelerated, jackknife acceleration) and basic (the percentile
  interval reflected about the estimate, which undoes a bias instead of doubling it).

The coverage is measured, not assumed: whichever interval is reported should be the one that
comes closest to 95 % here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from statistics import NormalDist

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fcmcore.evaluate.bootstrap import percentile_interval, resample_weights  # noqa: E402
from fcmcore.evaluate.coco_eval import PerImageEval  # noqa: E402


def bca(samples: np.ndarray, estimate: float, jackknife: np.ndarray, confidence: float = 0.95) -> list[float]:
    nd = NormalDist()
    share = (np.count_nonzero(samples < estimate) + 0.5 * np.count_nonzero(samples == estimate)) / samples.size
    z0 = nd.inv_cdf(min(max(share, 0.5 / samples.size), 1 - 0.5 / samples.size))
    d = jackknife.mean() - jackknife
    denom = 6.0 * float(np.sum(d ** 2)) ** 1.5
    a = float(np.sum(d ** 3)) / denom if denom > 0 else 0.0
    alpha = (1 - confidence) / 2
    levels = [nd.cdf(z0 + (z0 + z) / (1 - a * (z0 + z))) * 100 for z in (nd.inv_cdf(alpha), nd.inv_cdf(1 - alpha))]
    return [float(v) for v in np.percentile(samples, levels)]


def coverage(ev: PerImageEval, n: int, subsets: int, resamples: int, rng: np.random.Generator) -> dict[str, float]:
    total = len(ev.image_ids)
    truth = ev.map()[0]
    hits = {"percentile": 0, "bca": 0, "basic": 0}
    for _ in range(subsets):
        sub = rng.choice(total, n, replace=False)

        def spread(rows: np.ndarray) -> np.ndarray:  # weights over the subset -> over all images
            w = np.zeros((rows.shape[0], total))
            w[:, sub] = rows
            return w

        est = ev.map_for_weights(spread(np.ones((1, n))))[0][0]
        boot = ev.map_for_weights(spread(rng.multinomial(n, np.full(n, 1 / n), size=resamples).astype(float)))[0]
        jack = ev.map_for_weights(spread(np.ones((n, n)) - np.eye(n)))[0]
        boot = boot[np.isfinite(boot)]
        pct = percentile_interval(boot)
        found = {"percentile": pct, "bca": bca(boot, est, jack[np.isfinite(jack)]), "basic": [2 * est - pct[1], 2 * est - pct[0]]}
        for k, (lo, hi) in found.items():
            hits[k] += lo <= truth <= hi
    return {k: v / subsets for k, v in hits.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--subsets", type=int, default=100)
    ap.add_argument("--sizes", default="24,48")
    ap.add_argument("--resamples", type=int, default=400, help="per subset (the bias column uses 1000)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    doc = json.loads(args.results.read_text())
    curve = doc["curves"][0]
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(0)
    rows = []
    for p in curve["points"]:
        ev = PerImageEval.from_json(p["coco_eval"])
        boot = ev.map_for_weights(resample_weights(len(ev.image_ids)))[0]
        row = {"quality": p.get("quality"), "bpp": p["bpp"], "mAP": p["mAP"], "n_images": len(ev.image_ids),
               "resample_mean_minus_mAP": float(np.nanmean(boot) - p["mAP"]), "interval": percentile_interval(boot)}
        for n in sizes:
            row[f"coverage_n{n}"] = coverage(ev, n, args.subsets, args.resamples, rng)
        rows.append(row)
        if not args.json:
            cov = "  ".join(f"n={n}: pct {row[f'coverage_n{n}']['percentile']:.2f} BCa {row[f'coverage_n{n}']['bca']:.2f} "
                            f"basic {row[f'coverage_n{n}']['basic']:.2f}" for n in sizes)
            lo, hi = row["interval"]
            print(f"q {row['quality']!s:>5}  mAP {row['mAP']:.3f} [{lo:.3f}, {hi:.3f}]  resample mean - mAP "
                  f"{row['resample_mean_minus_mAP']:+.4f}  coverage of the {row['n_images']}-image mAP by subsets: {cov}",
                  flush=True)
    if args.json:
        print(json.dumps({"results": str(args.results.name), "subsets": args.subsets, "points": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
