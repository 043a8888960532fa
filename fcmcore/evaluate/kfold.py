"""K-fold evaluation of trained configurations: ``fcm sweep --folds K``.

A configuration with a trained part (a fitted wrapper: ``learned``, ``pca``, ``truncate``; or a
learned feature codec: ``factorized``, ``hyperprior``, ``context``, ``scar``) can only be scored
on images it was not trained on: with the project's one split (``fcmcore.datasplit``) that is
the 24 val images of coco96, too few for tight intervals. K-fold scores every image:

1. the images (sorted by id) are dealt into K seeded folds (``datasplit.kfold_split``);
2. for fold i, the trained part is retrained with the recipe of the bundled (or given) one
   (read from its metadata / manifest; ``--fold-epochs`` etc. change the budget, equally for
   every fold) on the images of the other folds; the held-out fold is its val part, used for
   the training report only (no selection, no early stopping);
3. fold i's model is swept over fold i's images only (the usual sweep: cache, workers,
   failures recorded in ``skipped``);
4. the per-image records of all folds are merged and summarised once, by the same code as a
   sweep (``summaries.summarise``: mAP by pycocotools over all images, per-image COCO
   matching, bootstrap intervals): ONE results curve over every image, paired with a plain
   sweep of the same images, so ``fcm bdrate`` gives an interval on all of them.

Fold weights live in the cache (``$FCM_CACHE_DIR/kfold/<key>/``), never in assets
(``kfold_train``: the key hashes the recipe, K, the fold seed and index, the ids and bytes of
the training and held-out images and the trainer's sources, so two folds never share weights,
and a re-run reuses what was trained). Results are cached by the usual keys, which include the weights
(a wrapper's file hash; a learned codec's manifest, through ``$FCM_LEARNED_DIR``, see
``result_key.code_version``). Each weights file / manifest records its fold (``kfold``: fold,
K, seed, training and held-out image ids, CPU seconds).

The merged curve keeps the configuration as given (``wrapper: learned``...) and says how its
weights were obtained in ``curve["kfold"]``; each per-image row carries ``fold``.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from ..errors import ParameterError
from .bootstrap import N_RESAMPLES, SEED, resample_weights
from .datasets import Dataset
from .kfold_folds import Fold, held_out_view, plan_folds, training_view
from .kfold_train import (FITTED_WRAPPERS, Log, Trainable, _learned_dir, _stderr, _wrapper_file, fold_dir, fold_key,
                          learned_view, train_fold, trainable_of)
from .summaries import label_of, summarise
from .sweep import CurveSpec, evaluate
from .sweep_worker import RunSpec, record_detections

__all__ = ["FITTED_WRAPPERS", "Fold", "Trainable", "evaluate_kfold", "fold_dir", "fold_key", "held_out_view",
           "kfold_from_args", "merge_folds", "plan_folds", "train_fold", "trainable_of", "training_view"]


# -- the driver -------------------------------------------------------------------------------

def evaluate_kfold(dataset: Dataset, curve, k: int, *, seed: int = 0, overrides: dict[str, Any] | None = None,
                   cache: bool = True, workers: int | None = 1, scheduler: Any = None, progress: bool = True,
                   log: Log = _stderr) -> dict[str, Any]:
    """``curve`` (a ``sweep.CurveSpec`` whose config has a trained part) with K-fold training:
    one results document whose single curve covers every image, each scored by the fold
    model that did not see it."""
    part = trainable_of(curve.config, overrides)
    if part.kind == "codec" and scheduler is not None:
        raise ParameterError("--folds with a learned codec runs on local workers (the fold weights are in "
                             "this machine's cache), not on --scheduler")
    folds = plan_folds(dataset, k, seed)
    name = curve.name or f"{curve.config.with_quality(None).label()} ({k}-fold)"
    runs, infos = [], []
    for fold in folds:
        info = train_fold(dataset, part, curve.config, fold, log=log)
        infos.append(info)
        run_fold = _fold_runner(dataset, curve, name, part, fold, info, cache, workers, scheduler, progress)
        runs.append(run_fold())
    doc = merge_folds(dataset, runs, name, folds)
    doc["curves"][0]["kfold"] = {
        "k": k, "seed": seed, "part": part.kind, "name": part.name, "recipe": part.recipe, "recipe_from": part.source,
        "budget_overrides": {f: v for f, v in (overrides or {}).items() if v is not None},
        "folds": [{**f.to_json(), "weights_in_cache": f"kfold/{i['key']}", "key": i["key"], "train_cpu_s": _fold_cpu_s(i),
                   "cached": i["cached"], **({"init": i["init"]} if "init" in i else {})} for f, i in zip(folds, infos)],
        "train_cpu_s": round(sum(_fold_cpu_s(i) for i in infos), 1),
    }
    doc["settings"]["kfold"] = {"k": k, "seed": seed}
    return doc


def _fold_cpu_s(info: dict) -> float:
    """Training CPU s of one fold's model, including the model it warm-started from."""
    return round(info["cpu_s"] + (info.get("init") or {}).get("cpu_s", 0.0), 1)


def _fold_runner(dataset, curve, name, part, fold, info, cache, workers, scheduler, progress):
    held = held_out_view(dataset, fold)
    d = Path(info["dir"])
    config = curve.config
    if part.kind == "wrapper":
        config = replace(config, wrapper=f"{part.name}:{_wrapper_file(d, part)}")

    def run() -> dict[str, Any]:
        keep: dict[str, Any] = {}
        spec = CurveSpec(config, curve.qualities, curve.target_bpp, name)
        ctx = _learned_dir(learned_view(d, part), config.codec) if part.kind == "codec" else contextlib.nullcontext()
        with ctx:
            doc = evaluate(held, [spec], cache=cache, workers=workers, scheduler=scheduler, progress=progress,
                           keep_runs=keep)
        return {"fold": fold, "doc": doc, "plan": keep["plan"], "runs": keep["runs"]}

    return run


def merge_folds(dataset: Dataset, fold_runs: Sequence[dict[str, Any]], name: str,
                folds: Sequence[Fold] | None = None) -> dict[str, Any]:
    """One results document from the folds' sweeps (each ``{"fold", "doc", "plan", "runs"}``
    of one curve over that fold's images): records merged per point and summarised over every
    image kept, exactly as one sweep would (``summaries.summarise``)."""
    first = fold_runs[0]
    n_points = len(first["plan"].curves[0].points)
    point_recs: list[dict[int, dict]] = [{} for _ in range(n_points)]
    ref_recs: dict[int, dict] = {}
    fold_of: dict[int, int] = {}
    left_out: dict[int, dict] = {}
    for fr in fold_runs:
        plan, runs = fr["plan"], fr["runs"]
        c = plan.curves[0]
        if len(c.points) != n_points:
            raise ParameterError("k-fold: the folds planned different qualities")
        for j, idx in enumerate(c.points):
            point_recs[j].update(runs.records[idx])
        ref_recs.update(runs.records[c.reference])
        for i in fr["doc"]["dataset"]["image_ids"]:
            if i in fold_of:
                raise ParameterError(f"k-fold: image {i} scored in two folds")
            fold_of[i] = fr["fold"].index
        left_out.update(runs.left_out)
    ids = [im.id for im in dataset.images if im.id not in left_out and im.id in fold_of]
    missing = [im.id for im in dataset.images if im.id not in fold_of]
    if missing:
        raise ParameterError(f"k-fold: images {missing[:5]} were in no fold")
    weights = resample_weights(len(ids), N_RESAMPLES, SEED)
    c0, specs0 = first["plan"].curves[0], first["plan"].specs
    generic = first["doc"]["curves"][0]["config"]  # the fold's config; the wrapper path is replaced below
    given = _given_wrapper(fold_runs)

    def spec_of(idx: int) -> RunSpec:
        s = specs0[idx]
        return RunSpec(dict(s.config, wrapper=given), s.target_bpp)

    ref_spec = spec_of(c0.reference)
    ref = summarise(dataset, ids, ref_spec, ref_recs, None, weights)
    ref_doc = {"name": label_of(ref_spec.config), **ref}
    ref_dets = {i: record_detections(ref_recs[i]) for i in ids}
    pts = [summarise(dataset, ids, spec_of(idx), point_recs[j], ref_dets, weights) for j, idx in enumerate(c0.points)]
    for p in [ref_doc, *pts]:
        for row in p["images"]:
            row["fold"] = fold_of[row["image_id"]]
    results: dict[str, list] = {key: [p[key] for p in pts] for key in ("bpp", "mAP", "mAP50", "quality", "mAP_vs_ref")}
    results["mAP_ci"] = [p.get("mAP_ci") for p in pts]
    if c0.mode == "target_bpp":
        results["target_bpp"] = [p["target_bpp"] for p in pts]
    curve = {"name": name, "config": dict(generic, wrapper=given), "mode": c0.mode, "results": results,
             "reference": ref_doc, "points": pts}
    docs = [fr["doc"] for fr in fold_runs]
    settings = dict(docs[0]["settings"])
    for key in ("runs", "cached_runs", "failed_runs"):
        settings[key] = sum(d["settings"].get(key, 0) for d in docs)
    settings["elapsed_s"] = round(sum(d["settings"]["elapsed_s"] for d in docs), 2)
    return {**{k: docs[0][k] for k in ("version", "created", "fcmcore_version", "code_version", "ground_truth")},
            "dataset": dataset.to_json(), "settings": settings,
            "skipped": [left_out[i] for i in sorted(left_out)], "reference": ref_doc, "curves": [curve]}


def _given_wrapper(fold_runs) -> str:
    """The wrapper as the user named it (fold paths dropped): 'learned', 'pca', or 'none'."""
    w = fold_runs[0]["doc"]["curves"][0]["config"].get("wrapper") or "none"
    return w.split(":", 1)[0]


# -- CLI glue (``fcm sweep --folds``; the flags: fcmcore/cli/kfold.py) ------------------------

def kfold_from_args(args, dataset: Dataset, curve) -> dict[str, Any]:
    """``fcm sweep --folds K``: the k-fold results document for ``curve``."""
    overrides = {"epochs": args.fold_epochs, "finetune_epochs": args.fold_finetune_epochs,
                 "max_steps": args.fold_max_steps}
    for f, v in overrides.items():
        if v is not None and v < 1:
            raise ParameterError(f"--fold-{f.replace('_', '-')} must be at least 1, got {v}")
    return evaluate_kfold(dataset, curve, args.folds, seed=args.fold_seed, overrides=overrides,
                          cache=not args.no_cache, workers=args.workers, scheduler=args.scheduler,
                          progress=not args.quiet)
