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

Fold weights live in the cache (``$FCM_CACHE_DIR/kfold/<key>/``), never in assets; the key
hashes the recipe, K, the fold seed, the fold index, the ids and bytes of the training and
held-out images and the trainer's sources, so two folds never share weights, and a re-run
reuses what was trained. Results are cached by the usual keys, which include the weights
(a wrapper's file hash; a learned codec's manifest, through ``$FCM_LEARNED_DIR``, see
``cache.code_version``). Each weights file / manifest records its fold (``kfold``: fold,
K, seed, training and held-out image ids, CPU seconds).

The merged curve keeps the configuration as given (``wrapper: learned``...) and says how its
weights were obtained in ``curve["kfold"]``; each per-image row carries ``fold``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..errors import ParameterError
from ..paths import PACKAGE_DIR, cache_dir, portable
from .datasets import Dataset

FOLD_FORMAT = 1
FITTED_WRAPPERS = ("learned", "pca", "truncate")
BUDGET_FLAGS = ("epochs", "finetune_epochs", "max_steps")

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- folds -----------------------------------------------------------------------------------

@dataclass
class Fold:
    index: int
    k: int
    seed: int
    train_ids: list[int]
    held_out_ids: list[int]

    def to_json(self) -> dict[str, Any]:
        return {"fold": self.index, "k": self.k, "seed": self.seed, "train_image_ids": self.train_ids,
                "held_out_image_ids": self.held_out_ids}


def plan_folds(dataset: Dataset, k: int, seed: int = 0) -> list[Fold]:
    """K folds of the dataset's images (sorted by id): each image held out exactly once."""
    from ..datasplit import kfold_split

    images = sorted(dataset.images, key=lambda im: im.id)
    groups = kfold_split(images, k, seed)
    out = []
    for i, group in enumerate(groups):
        held = [im.id for im in group]
        train = [im.id for g in groups if g is not group for im in g]
        out.append(Fold(i, k, seed, sorted(train), held))
    return out


def training_view(dataset: Dataset, fold: Fold) -> Dataset:
    """The dataset as the trainers see it for ``fold`` (``datasplit.train_val_images``)."""
    view = replace(dataset)
    view.fold = (list(fold.train_ids), list(fold.held_out_ids))
    return view


def held_out_view(dataset: Dataset, fold: Fold) -> Dataset:
    """Only the held-out images of ``fold`` (and their annotations): what its model is swept on."""
    keep = set(fold.held_out_ids)
    anns = None if dataset.annotations is None else [a for a in dataset.annotations if a["image_id"] in keep]
    return replace(dataset, images=[im for im in dataset.images if im.id in keep], annotations=anns)


# -- what is trained, and how ------------------------------------------------------------------

@dataclass
class Trainable:
    kind: str  # "wrapper" | "codec"
    name: str  # wrapper method or codec arch
    recipe: dict[str, Any]  # training arguments (budget overrides applied)
    source: str  # where the recipe was read (portable path)


def _wrapper_recipe(config, overrides: dict[str, Any]) -> Trainable:
    from ..wrappers import load_wrapper, parse_wrapper_spec
    from ..wrappers.fitted import default_path

    name, path = parse_wrapper_spec(config.wrapper)
    meta = dict(load_wrapper(config.wrapper, config.model, config.split).meta)
    views, images = int(meta.get("train_views") or 0), int(meta.get("train_images") or 0)
    recipe = {"method": name, "k": int(meta["k"]), "seed": int(meta.get("seed", 0)),
              "rdo_weights": meta.get("rdo_weights", "task")}
    if name == "learned":
        recipe.update(loss=meta.get("loss", "deep"), epochs=int(meta.get("epochs", 12)),
                      augment=max(0, round(views / images) - 1) if images else 4, down=int(meta.get("down", 1)),
                      hidden=int(meta.get("hidden", 64)), lam=float(meta.get("lam", 0.01)))
        if overrides.get("epochs") is not None:
            recipe["epochs"] = int(overrides["epochs"])
    bad = [f for f in BUDGET_FLAGS if overrides.get(f) is not None and f not in recipe]
    if bad:
        raise ParameterError(f"--fold-{bad[0].replace('_', '-')} does not apply to the {name} wrapper")
    src = path or str(default_path(name, config.model, config.split))
    return Trainable("wrapper", name, recipe, portable(src))


def _codec_recipe(config, codec, overrides: dict[str, Any]) -> Trainable:
    from ..learned.train import TrainConfig

    manifest = codec.manifest  # WeightsError when there is no trained codec to take the recipe from
    if manifest.get("split") != config.split or manifest.get("model") != config.model:
        raise ParameterError(f"--folds: the {codec.name} weights at {portable(codec.weights_dir)} are for "
                             f"{manifest.get('model')} @ {manifest.get('split')}, not {config.model} @ {config.split}; "
                             "k-fold retrains with their recipe")
    allowed = {f.name for f in fields(TrainConfig)} - {"dataset", "out", "resume", "init", "threads"}
    recipe = {k: v for k, v in (manifest.get("config") or {}).items() if k in allowed}
    recipe.update(arch=codec.arch, split=config.split, model=config.model,
                  lambdas=[float(v) for v in manifest.get("lambdas") or recipe.get("lambdas") or []])
    for f in BUDGET_FLAGS:
        if overrides.get(f) is not None:
            recipe[f] = int(overrides[f])
    return Trainable("codec", codec.arch, recipe, portable(codec.weights_dir))


def trainable_of(config, overrides: dict[str, Any] | None = None) -> Trainable:
    """The one trained part of ``config`` and the recipe to retrain it per fold."""
    from ..codecs import get_codec
    from ..learned.codec import LearnedFeatureCodec
    from ..wrappers import parse_wrapper_spec

    overrides = overrides or {}
    wrapper, _ = parse_wrapper_spec(config.wrapper)
    codec = get_codec(config.codec) if config.codec else None
    learned_codec = isinstance(codec, LearnedFeatureCodec)
    if config.split is None:
        raise ParameterError("--folds: full-input configurations have nothing trained; every image is "
                             "already held out (run without --folds)")
    if wrapper in FITTED_WRAPPERS and learned_codec:
        raise ParameterError("--folds retrains one part: a fitted wrapper or a learned codec, not both")
    if wrapper in FITTED_WRAPPERS:
        return _wrapper_recipe(config, overrides)
    if learned_codec:
        return _codec_recipe(config, codec, overrides)
    if wrapper not in ("none", "") or (config.codec and config.codec == "direct"):
        raise ParameterError(f"--folds retrains fitted wrappers ({', '.join(FITTED_WRAPPERS)}) and learned feature "
                             "codecs (factorized, hyperprior, context, scar); not this configuration")
    raise ParameterError("--folds: nothing in this configuration is trained (no fitted wrapper, no learned "
                         "codec); every image is already held out: run without --folds")


# -- training one fold (weights in the cache) --------------------------------------------------

def _sources_hash(kind: str) -> str:
    h = hashlib.sha256()
    rels = ["datasplit.py"] + (["wrappers"] if kind == "wrapper" else ["learned"])
    for rel in rels:
        p = PACKAGE_DIR / rel
        for f in (sorted(p.rglob("*.py")) if p.is_dir() else [p]):
            if "__pycache__" not in f.parts and not f.name.endswith("commands.py"):
                h.update(str(f.relative_to(PACKAGE_DIR)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def fold_key(dataset: Dataset, part: Trainable, config, fold: Fold) -> str:
    """Cache key of one fold's weights: recipe, fold, K, seed, the training and held-out
    images (ids and content hashes) and the trainer's sources."""
    sha = {im.id: im.sha256() for im in dataset.images if im.id in set(fold.train_ids) | set(fold.held_out_ids)}
    doc = {"format": FOLD_FORMAT, "kind": part.kind, "name": part.name, "recipe": part.recipe,
           "model": config.model, "split": config.split, **fold.to_json(),
           "train_images": [[i, sha[i]] for i in fold.train_ids], "held_out_images": [[i, sha[i]] for i in fold.held_out_ids],
           "sources": _sources_hash(part.kind)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]


def fold_dir(key: str) -> Path:
    return cache_dir() / "kfold" / key


def _wrapper_file(d: Path, part: Trainable) -> Path:
    return d / f"{part.name}.safetensors"


def train_fold(dataset: Dataset, part: Trainable, config, fold: Fold, log: Log = _stderr) -> dict[str, Any]:
    """Train ``part`` on fold's training images (or reuse the cached weights): returns the
    fold's ``info`` (``fold.json``: key, weights location, CPU seconds, cached)."""
    import torch

    key = fold_key(dataset, part, config, fold)
    final = fold_dir(key)
    marker = final / "fold.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        return dict(info, cached=True, dir=str(final))
    tmp = final.with_name(f"{key}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    view = training_view(dataset, fold)
    stamp = {**fold.to_json(), "recipe": part.recipe, "recipe_from": part.source, "key": key}
    torch.set_num_threads(1)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    log(f"fold {fold.index + 1}/{fold.k}: training {part.kind} {part.name} on {len(fold.train_ids)} images "
        f"(held out: {len(fold.held_out_ids)})")
    try:
        if part.kind == "wrapper":
            from ..wrappers.training import train_wrapper

            r = dict(part.recipe)
            wrapper = train_wrapper(view, config.model, config.split, r.pop("k"), command="fcm sweep --folds", log=None, **r)
            wrapper.meta["kfold"] = dict(stamp, cpu_s=round(time.process_time() - cpu0, 1))
            wrapper.save(_wrapper_file(tmp, part))
        else:
            from ..learned.train import TrainConfig, train_codec

            out = tmp / "learned" / part.name
            cfg = TrainConfig(dataset=portable(dataset.root), out=str(out), threads=1, resume=False, init=None,
                              **part.recipe)
            manifest = train_codec(cfg, view, progress=False, command="fcm sweep --folds")
            manifest["kfold"] = dict(stamp, cpu_s=round(time.process_time() - cpu0, 1))
            (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
        info = {**stamp, "kind": part.kind, "name": part.name, "cpu_s": round(time.process_time() - cpu0, 1),
                "wall_s": round(time.perf_counter() - wall0, 1)}
        (tmp / "fold.json").write_text(json.dumps(info, indent=1) + "\n")
        if final.exists():  # another process finished it meanwhile: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"fold {fold.index + 1}/{fold.k}: trained in {info['cpu_s']:.0f} CPU s")
    return dict(json.loads(marker.read_text()), cached=False, dir=str(final))


@contextlib.contextmanager
def _learned_dir(root: Path, codec_name: str) -> Iterator[None]:
    """Learned codecs load their weights from ``root`` inside the block (``$FCM_LEARNED_DIR``,
    inherited by spawned sweep workers; the shared codec instance is rebuilt on entry and exit)."""
    from .. import codecs

    old = os.environ.get("FCM_LEARNED_DIR")
    os.environ["FCM_LEARNED_DIR"] = str(root)
    codecs._INSTANCES.pop(codec_name, None)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("FCM_LEARNED_DIR", None)
        else:
            os.environ["FCM_LEARNED_DIR"] = old
        codecs._INSTANCES.pop(codec_name, None)


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
        "folds": [{**f.to_json(), "weights_in_cache": f"kfold/{i['key']}", "key": i["key"], "train_cpu_s": i["cpu_s"],
                   "cached": i["cached"]} for f, i in zip(folds, infos)],
        "train_cpu_s": round(sum(i["cpu_s"] for i in infos), 1),
    }
    doc["settings"]["kfold"] = {"k": k, "seed": seed}
    return doc


def _fold_runner(dataset, curve, name, part, fold, info, cache, workers, scheduler, progress):
    from .sweep import CurveSpec, evaluate

    held = held_out_view(dataset, fold)
    d = Path(info["dir"])
    config = curve.config
    if part.kind == "wrapper":
        config = replace(config, wrapper=f"{part.name}:{_wrapper_file(d, part)}")

    def run() -> dict[str, Any]:
        keep: dict[str, Any] = {}
        spec = CurveSpec(config, curve.qualities, curve.target_bpp, name)
        ctx = _learned_dir(d / "learned", config.codec) if part.kind == "codec" else contextlib.nullcontext()
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
    from .bootstrap import N_RESAMPLES, SEED, resample_weights
    from .summaries import label_of, summarise
    from .sweep_worker import RunSpec, record_detections

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


# -- CLI glue (``fcm sweep``) ------------------------------------------------------------------

def add_kfold_arguments(p) -> None:
    g = p.add_argument_group("k-fold (trained wrappers and learned codecs)")
    g.add_argument("--folds", type=int, default=None, metavar="K",
                   help="retrain the configuration's trained part (fitted wrapper or learned codec) K times, each "
                        "time without one of K seeded folds of the images, and score every image with the model "
                        "that did not see it: one curve over all images (weights in the cache dir)")
    g.add_argument("--fold-seed", type=int, default=0, help="seed of the fold assignment (default 0)")
    g.add_argument("--fold-epochs", type=int, default=None,
                   help="training budget per fold: epochs (learned wrapper; learned codec: its first model)")
    g.add_argument("--fold-finetune-epochs", type=int, default=None,
                   help="learned codec: epochs of each warm-started model, per fold")
    g.add_argument("--fold-max-steps", type=int, default=None, help="learned codec: optimiser steps cap per model")


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
