"""WA-RDO step by step (issue 13): which importance kind / source / mechanism / wrapper
moves the mAP rate curve, on held-out coco96 images, with ``fcm bdrate`` intervals.

    python benchmarks/wa_spatial.py [--split expanded_conv_9] [--wrapper pca] [--images val]
        [--qualities 26,29,32,35,38,41,44,47] [--set steps] [--workers 1] [--out FILE]

Curves (HEVC, x265 medium, 10-bit tensor packing; ``--wrapper`` NAME or NAME:PATH whose
``rdo_weights`` target, normally ``task``, is used):

    sse            constant QP, unpadded tiles (the plain anchor)
    sse pad8       the same with tiles padded to 24x24 (the padding's cost)
    sse-qp pad8    CRF + aq-mode + ROI path with an all-zero map: the anchor of every QP-map curve
    wa gains       per-tile gains sqrt(w_c) (channel, fixed): the codec-agnostic baseline
    wa-qp <kind>/<source> pad8   per-block QP offsets, kind channel|spatial|both, source fixed|image
    wa-qp spatial/fixed pad8 s<S>   ``--set strength``: the anchor and spatial/fixed pad8 at
                   each of ``--strengths`` (dQP = -3 S log2 w)
    ``--set r5``: sse, sse-qp pad8 and wa-qp channel|spatial|both/fixed pad8 (round 5: a wrapper
    trained with WA in the loop); ``--set anchors``: sse and sse-qp pad8 only
    (``--set steps|all|short`` add gains, sse-qp and wa-qp channel/fixed without padding: what
    padding changes; ``short`` leaves out both/fixed and channel/image)

``--images val``: the 24 validation images (every 4th by id; no bundled wrapper trained on
them); ``all``: all 96 (the bundled wrappers were fitted on the other 72, so 72 are
in-sample for the wrapper and for the fixed weights). Then, e.g.::

    python -m fcmcore.cli bdrate OUT.json --anchor "sse-qp pad8" --resamples 1000
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fcmcore.datasplit import split_train_val  # noqa: E402
from fcmcore.evaluate import CurveSpec, evaluate, load_dataset  # noqa: E402
from fcmcore.evaluate.results_io import save_results  # noqa: E402
from fcmcore.paths import shared_dir  # noqa: E402
from fcmcore.pipeline import PipelineConfig  # noqa: E402


def dataset(path: Path, which: str):
    ds = load_dataset(path)
    if which == "all":
        return ds
    _, val = split_train_val(ds.images)
    ids = {im.id for im in val}
    ds.images = val
    if ds.annotations is not None:
        ds.annotations = [a for a in ds.annotations if a["image_id"] in ids]
    return ds


def curves_for(split: str, wrapper: str, qualities: list[float], which: str,
               strengths: tuple[float, ...] = (1.0, 0.5, 0.25)) -> list[CurveSpec]:
    base = PipelineConfig(split=split, codec="hevc", wrapper=wrapper)
    if which == "strength":  # the anchor and spatial/fixed pad8 at each --wa-strength
        out = [CurveSpec(replace(base, rdo="sse-qp", tile_pad=8), qualities, name="sse-qp pad8")]
        for s in strengths:
            cfg = replace(base, rdo="wa-qp", wa_weights="spatial", wa_source="fixed", tile_pad=8, wa_strength=s)
            out.append(CurveSpec(cfg, qualities, name=f"wa-qp spatial/fixed pad8 s{s:g}"))
        return out
    if which in ("r5", "anchors"):
        out = [CurveSpec(base, qualities, name="sse"),
               CurveSpec(replace(base, rdo="sse-qp", tile_pad=8), qualities, name="sse-qp pad8")]
        if which == "r5":
            out += [CurveSpec(replace(base, rdo="wa-qp", wa_weights=kind, wa_source="fixed", tile_pad=8), qualities,
                              name=f"wa-qp {kind}/fixed pad8") for kind in ("spatial", "channel", "both")]
        return out
    out = [CurveSpec(base, qualities, name="sse"),
           CurveSpec(replace(base, tile_pad=8), qualities, name="sse pad8"),
           CurveSpec(replace(base, rdo="sse-qp", tile_pad=8), qualities, name="sse-qp pad8")]
    if which in ("steps", "all", "short"):
        out.append(CurveSpec(replace(base, rdo="wa", wa_source="fixed"), qualities, name="wa gains channel/fixed"))
        out.append(CurveSpec(replace(base, rdo="sse-qp"), qualities, name="sse-qp"))
        out.append(CurveSpec(replace(base, rdo="wa-qp", wa_source="fixed"), qualities, name="wa-qp channel/fixed"))
    for source in ("fixed", "image"):
        for kind in ("channel", "spatial", "both"):
            if which == "fixed" and source == "image":
                continue
            if which == "short" and (kind, source) in (("both", "fixed"), ("channel", "image")):
                continue
            cfg = replace(base, rdo="wa-qp", wa_weights=kind, wa_source=source, tile_pad=8)
            out.append(CurveSpec(cfg, qualities, name=f"wa-qp {kind}/{source} pad8"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=str(shared_dir() / "datasets" / "coco96"))
    ap.add_argument("--split", default="expanded_conv_9")
    ap.add_argument("--wrapper", default="pca")
    ap.add_argument("--images", default="val", choices=["val", "all"])
    ap.add_argument("--qualities", default="26,29,32,35,38,41,44,47")
    ap.add_argument("--set", default="steps", choices=["steps", "all", "fixed", "kinds", "short", "strength", "r5", "anchors"])
    ap.add_argument("--label", default="", help="prefix of every curve name (to compare wrappers in one fcm bdrate)")
    ap.add_argument("--strengths", default="1,0.5,0.25", help="--set strength: the WA strengths S to sweep")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ds = dataset(Path(args.dataset), args.images)
    qualities = [float(q) for q in args.qualities.split(",")]
    strengths = tuple(float(s) for s in args.strengths.split(","))
    curves = curves_for(args.split, args.wrapper, qualities, args.set, strengths)
    if args.label:
        curves = [replace(c, name=f"{args.label} {c.name}") for c in curves]
    print(f"{len(curves)} curves x {len(qualities)} QPs on {len(ds.images)} images", file=sys.stderr)
    doc = evaluate(ds, curves, workers=args.workers, progress=True)
    save_results(doc, args.out)
    for c in doc["curves"]:
        pts = ", ".join(f"{b:.4f}/{(m or 0) * 100:.1f}" for b, m in zip(c["results"]["bpp"], c["results"]["mAP"]))
        print(f"  {c['name']:28s} {pts}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
