"""Bjøntegaard deltas of RD curves with mAP as the quality axis (PyPI ``bjontegaard``).

* BD-rate (%): average bitrate difference of a test curve against an anchor at equal mAP
  (``bd_rate(..., method="akima")``); negative = the test needs fewer bits.
* BD-mAP (mAP points, i.e. percentage points of mAP x 100): average mAP difference at equal
  rate (``bd_psnr`` with mAP x 100 as the "PSNR"); positive = the test is more accurate.

Both interpolate one axis as a function of the other, so a curve must be strictly
increasing in rate *and* in mAP. Task accuracy is flat (noisy) at high rates, so curves
are first reduced to their Pareto front: points sorted by rate, and a point is dropped
when a cheaper (or equal-rate) point reaches at least its mAP. Every dropped point is
reported in ``notes``. Curves whose ranges overlap on less than half of their union
(``MIN_OVERLAP_REFUSE``: the figure would rest on one end of one curve) give ``None`` with a
note saying why; below ``MIN_OVERLAP`` (75 %) the figure is given with a note. Intervals:
``bootstrap.bd_with_ci``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputError

METHOD = "akima"


@dataclass
class MonotoneCurve:
    name: str
    rates: list[float]
    values: list[float]
    dropped: list[tuple[float, float]] = field(default_factory=list)  # (rate, value) left out

    def note(self, metric: str) -> str | None:
        if not self.dropped:
            return None
        pts = ", ".join(f"{r:.4g} bpp/{v:.3f}" for r, v in self.dropped)
        return (f"{self.name}: dropped {len(self.dropped)} point(s) not on the increasing "
                f"rate-{metric} front ({pts})")


def monotone_front(name: str, rates: Sequence[float], values: Sequence[float | None]) -> MonotoneCurve:
    """Keep the points where mAP strictly increases with rate (the Pareto front).
    Points with a missing value or a non-positive rate are dropped too."""
    pts = []
    dropped = []
    for r, v in zip(rates, values):
        if v is None or r is None or not (r > 0) or not math.isfinite(r) or not math.isfinite(v):
            dropped.append((float(r) if r is not None else float("nan"), float("nan") if v is None else float(v)))
        else:
            pts.append((float(r), float(v)))
    pts.sort(key=lambda p: (p[0], -p[1]))
    keep_r, keep_v = [], []
    best = -math.inf
    for r, v in pts:
        if v > best and (not keep_r or r > keep_r[-1]):
            keep_r.append(r)
            keep_v.append(v)
            best = v
        else:
            dropped.append((r, v))
    return MonotoneCurve(name, keep_r, keep_v, dropped)


@dataclass
class BDResult:
    name: str
    bd_rate: float | None  # percent; negative = fewer bits than the anchor for the same mAP
    bd_map: float | None  # mAP points (x100); positive = higher mAP than the anchor at equal rate
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "bd_rate": self.bd_rate, "bd_map": self.bd_map}


MIN_OVERLAP = 0.75  # bjontegaard's recommendation: below it, say so
MIN_OVERLAP_REFUSE = 0.5  # below it, no figure at all


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    lo, hi = max(min(a), min(b)), min(max(a), max(b))
    return max(hi - lo, 0.0) / (max(max(a), max(b)) - min(min(a), min(b)))


def overlap_fractions(anchor: MonotoneCurve, test: MonotoneCurve) -> tuple[float, float]:
    """(shared part of the two metric ranges, shared part of the two log-rate ranges), each
    as a fraction of the union: what BD-rate and BD-mAP integrate over."""
    lr_a, lr_t = [math.log10(r) for r in anchor.rates], [math.log10(r) for r in test.rates]
    return _overlap(anchor.values, test.values), _overlap(lr_a, lr_t)


def _akima_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Node slopes of scipy's ``Akima1DInterpolator(x, y)`` (method "akima"), which
    ``bjontegaard`` uses; two points: the straight line (its ``make_interp_spline(k=1)``)."""
    m = np.diff(y) / np.diff(x)
    if len(x) == 2:
        return np.array([m[0], m[0]])
    mm = 2.0 * m[0] - m[1]
    mmm = 2.0 * mm - m[0]
    mp = 2.0 * m[-1] - m[-2]
    mpp = 2.0 * mp - m[-1]
    m1 = np.concatenate([[mmm, mm], m, [mp, mpp]])
    dm = np.abs(np.diff(m1))
    f1, f2 = dm[2:], dm[:-2]
    f12 = f1 + f2
    t = 0.5 * (m1[3:] + m1[:-3])
    ind = np.nonzero(f12 > 1e-9 * np.max(f12, initial=-np.inf))[0]
    t[ind] = (f1[ind] * m1[ind + 1] + f2[ind] * m1[ind + 2]) / f12[ind]
    return t


def _hermite_integral(x: np.ndarray, y: np.ndarray, t: np.ndarray, lo: float, hi: float) -> float:
    """Integral over [lo, hi] (inside [x0, xn]) of the cubic Hermite spline through (x, y)
    with node slopes t."""
    h = np.diff(x)
    m = np.diff(y) / h
    c2 = (3 * m - 2 * t[:-1] - t[1:]) / h
    c3 = (t[:-1] + t[1:] - 2 * m) / h ** 2
    a = np.clip(lo - x[:-1], 0, h)
    b = np.clip(hi - x[:-1], 0, h)

    def prim(s):
        return y[:-1] * s + t[:-1] * s ** 2 / 2 + c2 * s ** 3 / 3 + c3 * s ** 4 / 4

    return float(np.sum(prim(b) - prim(a)))


def fast_bd(base_a, metric_a, base_t, metric_t) -> float:
    """``bjontegaard``'s akima delta (``bjontegaard_delta``) without scipy's per-call cost:
    average of metric_t - metric_a over the overlap of the two base ranges (base increasing).
    Used on bootstrap resamples (1000 per figure); tests check it against ``bjontegaard``."""
    xa, ya, xt, yt = (np.asarray(v, dtype=np.float64) for v in (base_a, metric_a, base_t, metric_t))
    lo, hi = max(xa[0], xt[0]), min(xa[-1], xt[-1])
    if not hi > lo:
        return float("nan")
    ia = _hermite_integral(xa, ya, _akima_slopes(xa, ya), lo, hi)
    it = _hermite_integral(xt, yt, _akima_slopes(xt, yt), lo, hi)
    return (it - ia) / (hi - lo)


def _fast_rate(ra, da, rt, dt) -> float:
    """BD-rate (%) like ``bjontegaard.bd_rate(..., method="akima")``: log10 rate over metric."""
    return (10 ** fast_bd(da, np.log10(ra), dt, np.log10(rt)) - 1) * 100


def _fast_psnr(ra, da, rt, dt) -> float:
    return fast_bd(np.log10(ra), da, np.log10(rt), dt)


def _delta(func, ra, da, rt, dt) -> float | None:
    if func in (_fast_rate, _fast_psnr):
        value = func(ra, da, rt, dt)
        return None if math.isnan(value) else value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overlap is checked and reported by the caller
        value = float(func(ra, da, rt, dt, method=METHOD, require_matching_points=False, min_overlap=0))
    return None if math.isnan(value) else value


def bd_compare(anchor: MonotoneCurve, test: MonotoneCurve, metric: str = "mAP", *, fast: bool = False) -> BDResult:
    """BD-rate and BD-mAP of ``test`` against ``anchor`` (both already monotone), by
    ``bjontegaard`` (or by ``fast_bd``, its akima integral in numpy, with ``fast=True``)."""
    if fast:
        rate_fn, psnr_fn = _fast_rate, _fast_psnr
    else:
        import bjontegaard as bd  # why: pulls SciPy (~1 s); only BD figures need it

        rate_fn, psnr_fn = bd.bd_rate, bd.bd_psnr

    result = BDResult(test.name, None, None)
    for curve in (anchor, test):
        if len(curve.rates) < 2:
            result.notes.append(f"{curve.name}: fewer than 2 usable points on the increasing front; no BD figures")
            return result
    da = [v * 100 for v in anchor.values]
    dt = [v * 100 for v in test.values]
    if max(da) <= min(dt) or max(dt) <= min(da):
        result.notes.append(
            f"{test.name}: {metric} range {min(dt):.1f}-{max(dt):.1f} does not overlap the anchor's "
            f"{min(da):.1f}-{max(da):.1f}; no BD-rate")
    elif (ov := _overlap(da, dt)) < MIN_OVERLAP_REFUSE:
        result.notes.append(
            f"{test.name}: no BD-rate: the curves share only {ov:.0%} of their {metric} range "
            f"({max(min(da), min(dt)):.1f}-{min(max(da), max(dt)):.1f}; below {MIN_OVERLAP_REFUSE:.0%} the figure "
            "would rest on the ends of the curves); add qualities (--qualities auto)")
    else:
        result.bd_rate = _delta(rate_fn, anchor.rates, da, test.rates, dt)
        if ov < MIN_OVERLAP:
            result.notes.append(f"{test.name}: BD-rate covers only the shared {metric} range "
                                f"{max(min(da), min(dt)):.1f}-{min(max(da), max(dt)):.1f} ({ov:.0%} of the union)")
    if max(anchor.rates) <= min(test.rates) or max(test.rates) <= min(anchor.rates):
        result.notes.append(
            f"{test.name}: rate range {min(test.rates):.4g}-{max(test.rates):.4g} bpp does not overlap the anchor's "
            f"{min(anchor.rates):.4g}-{max(anchor.rates):.4g} bpp; no BD-{metric}")
    elif (ov := overlap_fractions(anchor, test)[1]) < MIN_OVERLAP_REFUSE:
        result.notes.append(
            f"{test.name}: no BD-{metric}: the curves share only {ov:.0%} of their (log) rate range "
            f"(below {MIN_OVERLAP_REFUSE:.0%}); add qualities (--qualities auto)")
    else:
        result.bd_map = _delta(psnr_fn, anchor.rates, da, test.rates, dt)
        if ov < MIN_OVERLAP:
            result.notes.append(f"{test.name}: BD-{metric} covers only the shared rate range "
                                f"{max(min(anchor.rates), min(test.rates)):.3g}-{min(max(anchor.rates), max(test.rates)):.3g} "
                                f"bpp ({ov:.0%} of the union, log scale)")
    return result


def curve_points(curve: Mapping[str, Any], metric: str = "mAP") -> tuple[list[float], list[float | None]]:
    results = curve.get("results", {})
    if metric not in results:
        raise InputError(f"curve {curve.get('name')!r} has no {metric!r} values")
    return list(results["bpp"]), list(results[metric])


def bd_table(curves: Sequence[Mapping[str, Any]], anchor: str, metric: str = "mAP") -> tuple[list[BDResult], list[str]]:
    """BD figures of every curve against the one named ``anchor``; returns (rows, notes).
    The anchor's own row is (0, 0)."""
    names = [c["name"] for c in curves]
    if anchor not in names:
        raise InputError(f"no curve named {anchor!r}; curves: {', '.join(map(repr, names)) or 'none'}")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"curve names must be unique; repeated: {', '.join(map(repr, dup))} (use --name when sweeping)")
    fronts = {c["name"]: monotone_front(c["name"], *curve_points(c, metric)) for c in curves}
    notes = [n for f in fronts.values() if (n := f.note(metric))]
    rows = []
    for name in names:
        if name == anchor:
            ok = len(fronts[name].rates) >= 2
            rows.append(BDResult(name, 0.0 if ok else None, 0.0 if ok else None))
            continue
        row = bd_compare(fronts[anchor], fronts[name], metric)
        rows.append(row)
        notes += row.notes
    return rows, notes


def format_table(rows: Sequence[BDResult], anchor: str, metric: str = "mAP") -> str:
    width = max([len(r.name) for r in rows] + [5])
    lines = [f"BD vs anchor {anchor!r} ({METHOD} interpolation; BD-{metric} in {metric} points x100)",
             f"{'curve':{width}s}  {'BD-rate %':>10s}  {'BD-' + metric:>10s}"]
    for r in rows:
        rate = "n/a" if r.bd_rate is None else f"{r.bd_rate:+.2f}"
        dm = "n/a" if r.bd_map is None else f"{r.bd_map:+.2f}"
        lines.append(f"{r.name:{width}s}  {rate:>10s}  {dm:>10s}")
    return "\n".join(lines)
