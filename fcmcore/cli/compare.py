"""`fcm bdrate` and `fcm plot`: comparisons of curves already in results files.

Their own module, importing no model: `fcm bdrate ...` builds a parser from this module only
(``fcmcore.cli.LIGHT_COMMANDS``), so it starts without torch (~3 s of CPU, more than the
1000-resample bootstrap itself).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import InputError, ParameterError


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bdrate", help="BD-rate and BD-mAP of curves against an anchor",
        description="Bjontegaard deltas (akima) of every curve in RESULTS against the anchor curve. "
        "BD-rate in percent (negative = fewer bits for the same mAP); BD-mAP in mAP points (x100). "
        "Points off the increasing rate-mAP front are dropped, and reported.")
    p.add_argument("results", nargs="+", help="results JSON files (from fcm sweep / fcm layers)")
    p.add_argument("--anchor", required=True, help="name of the anchor curve (exact, or a unique part of it)")
    p.add_argument("--metric", default="mAP",
                   choices=["mAP", "mAP50", "mAP_vs_ref", "f1", "pose_oks", "cls_top1", "cls_top5"],
                   help="quality axis (f1: the agreement F1 of video sweeps; pose_oks, cls_top1, cls_top5: "
                        "secondary tasks of sweeps run with --tasks)")
    p.add_argument("--resamples", type=int, default=1000,
                   help="paired bootstrap resamples of the images for the 95%% intervals (0: no intervals)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resamples")
    p.add_argument("--json", action="store_true",
                   help='print {"anchor", "rows": [{"name", "bd_rate", "bd_rate_ci", "bd_map", "bd_map_ci", '
                   '"n_images", "overlap", "significant", ...}]}')
    p.set_defaults(func=cmd_bdrate)

    p = sub.add_parser("plot", help="chart RD curves from results files",
                       description="Rate (bpp, log axis) vs mAP for every curve in the results files, with "
                       "the uncompressed reference as a dashed line; with --anchor, a BD-rate chart too.")
    p.add_argument("results", nargs="+", help="results JSON files")
    p.add_argument("-o", "--out", required=True, help="chart file: .html (or .png/.svg with vl-convert-python)")
    p.add_argument("--metric", default="mAP", choices=["mAP", "mAP50", "mAP_vs_ref", "pose_oks", "cls_top1", "cls_top5"], help="y axis")
    p.add_argument("--anchor", default=None, help="also chart BD-rate against this curve")
    p.add_argument("--title", default=None, help="chart title")
    p.set_defaults(func=cmd_plot)


# -- bdrate -------------------------------------------------------------------------------

def _collect_curves(paths: list[str]) -> list[dict[str, Any]]:
    # why: on use (fcm --help stays light)
    from ..evaluate.sweep import load_results

    curves = []
    for path in paths:
        curves += load_results(path)["curves"]
    return curves


def resolve_anchor(curves: list[dict[str, Any]], anchor: str) -> str:
    names = [c["name"] for c in curves]
    if anchor in names:
        return anchor
    hits = [n for n in dict.fromkeys(names) if anchor.lower() in n.lower()]
    if len(hits) == 1:
        return hits[0]
    listing = "; ".join(dict.fromkeys(names))
    if hits:
        raise InputError(f"anchor {anchor!r} matches several curves: {'; '.join(hits)}")
    raise InputError(f"no curve named {anchor!r}; curves: {listing}")


def cmd_bdrate(args: argparse.Namespace) -> int:
    # why: on use (fcm --help stays light)
    from ..evaluate.bdrate import bd_table
    from ..evaluate.bootstrap import bd_table_with_ci, format_ci_table

    if args.resamples < 0 or (0 < args.resamples < 100):
        raise ParameterError(f"--resamples must be 0 (no intervals) or at least 100, got {args.resamples}")
    curves = _collect_curves(args.results)
    anchor = resolve_anchor(curves, args.anchor)
    bd_table(curves, anchor, args.metric)  # checks names (unique, anchor present)
    rows = bd_table_with_ci(curves, anchor, args.metric, n_resamples=args.resamples, seed=args.seed)
    for note in dict.fromkeys(n for r in rows for n in r.notes):
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps({"anchor": anchor, "metric": args.metric, "resamples": args.resamples, "seed": args.seed,
                          "rows": [r.to_json() for r in rows]}, indent=2))
    else:
        print(format_ci_table(rows, anchor, args.metric))
    return 0


# -- plot ---------------------------------------------------------------------------------

def cmd_plot(args: argparse.Namespace) -> int:
    import altair as alt  # why: heavy, only for charts

    from ..evaluate.bdrate import bd_table  # why: on use (fcm --help stays light)
    from ..evaluate.charts import bd_chart, rd_chart, save_chart  # why: Altair, heavy, only for charts

    curves = _collect_curves(args.results)
    names = [c["name"] for c in curves]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"curve names repeat across files: {', '.join(map(repr, dup))} (use --name when sweeping)")
    chart = rd_chart(curves, args.metric, title=args.title)
    if args.anchor:
        anchor = resolve_anchor(curves, args.anchor)
        rows, notes = bd_table(curves, anchor, args.metric)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        chart = alt.vconcat(chart, bd_chart(rows, anchor)).resolve_scale(color="independent")
    path = save_chart(chart, args.out)
    print(f"wrote {path}")
    return 0
