"""K-fold training: what a configuration trains, the recipe to retrain it, and one fold's
training with its weights in the cache (``fcmcore.evaluate.kfold`` drives the folds).

Fold weights live in ``$FCM_CACHE_DIR/kfold/<key>/``, never in assets; the key (``fold_key``)
hashes the recipe, K, the fold seed and index, the ids and bytes of the training and held-out
images and the trainer's sources, so two folds never share weights and a re-run reuses them.
Each weights file (wrapper metadata) / manifest (learned codec) records its ``kfold`` stamp.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import ParameterError
from ..paths import PACKAGE_DIR, REPO_DIR, cache_dir, portable
from .datasets import Dataset
from .kfold_folds import Fold, training_view

FOLD_FORMAT = 1
FITTED_WRAPPERS = ("learned", "pca", "truncate")
BUDGET_FLAGS = ("epochs", "finetune_epochs", "max_steps")

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- what is trained, and how ------------------------------------------------------------------

@dataclass
class Trainable:
    kind: str  # "wrapper" | "codec"
    name: str  # wrapper method or codec arch
    recipe: dict[str, Any]  # training arguments (budget overrides applied)
    source: str  # where the recipe was read (portable path)
    init: "Trainable | None" = None  # trained first on the same fold; this part warm-starts from it (scar from context)
    # the codec's weights folder under learned/ when it is not its arch (hyperprior-deep is a
    # hyperprior); not in the fold key: the weights are the recipe's, whatever the folder
    folder: str = ""

    @property
    def weights_name(self) -> str:
        return self.folder or self.name


def _wrapper_recipe(config, overrides: dict[str, Any]) -> Trainable:
    # why: wrappers and learned codecs (torch) load only when --folds is used
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
        if meta.get("wa_in_loop"):  # only then: recipes (and fold keys) of other wrappers stay as they were
            from ..wrappers.wa_loop import WAInLoop  # why: with the trainer, only when --folds is used

            recipe["wa_in_loop"] = WAInLoop.from_meta(meta["wa_in_loop"]).to_meta()
    bad = [f for f in BUDGET_FLAGS if overrides.get(f) is not None and f not in recipe]
    if bad:
        raise ParameterError(f"--fold-{bad[0].replace('_', '-')} does not apply to the {name} wrapper")
    src = path or str(default_path(name, config.model, config.split))
    return Trainable("wrapper", name, recipe, portable(src))


def _codec_recipe(config, codec, overrides: dict[str, Any]) -> Trainable:
    from ..learned.train import TrainConfig  # why: the learned trainer (torch, CompressAI) only for codec folds

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
    init = manifest.get("init") or (manifest.get("config") or {}).get("init")
    base = _init_trainable(config, codec, str(init)) if init else None
    return Trainable("codec", codec.arch, recipe, portable(codec.weights_dir), base,
                     folder=codec.weights_dir.name if codec.weights_dir.name != codec.arch else "")


def _init_trainable(config, codec, init: str) -> Trainable:
    """The part ``codec``'s recipe warm-starts from (``--init``): the bundled learned codec in that
    folder, retrained per fold with its own recipe. Warm-starting a fold from the bundled weights
    would leak (they were trained on images the fold holds out); dropping the init would not be
    the recipe."""
    from ..codecs import get_codec  # why: the registry, as in trainable_of
    from ..learned import CODEC_NAMES  # why: the learned codecs, the only ones a recipe warm-starts from
    from ..learned.codec import LearnedFeatureCodec  # why: torch, only when --folds is used

    folder = Path(os.path.expandvars(init))
    folder = folder if folder.is_absolute() else REPO_DIR / folder
    try:
        json.loads((folder / "manifest.json").read_text())["arch"]  # a learned codec's manifest
    except (OSError, ValueError, KeyError) as e:
        raise ParameterError(f"--folds: the {codec.name} recipe warm-starts from {init}, which has no readable "
                             f"learned-codec manifest ({type(e).__name__}); k-fold cannot retrain it per fold") from None
    # by weights folder, not by arch: scar-deep warm-starts from context-deep, whose arch is context
    bases = [c for c in map(get_codec, CODEC_NAMES)
             if isinstance(c, LearnedFeatureCodec) and c.weights_dir.resolve() == folder.resolve()]
    if not bases:
        raise ParameterError(f"--folds: the {codec.name} recipe warm-starts from {init}, which is not a bundled "
                             "learned codec; k-fold can only retrain a bundled one per fold")
    return _codec_recipe(config, bases[0], {})


def trainable_of(config, overrides: dict[str, Any] | None = None) -> Trainable:
    """The one trained part of ``config`` and the recipe to retrain it per fold."""
    # why: the registries and the learned codecs (torch) only when --folds is used
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
    rels = ["datasplit.py", "training"] + (["wrappers"] if kind == "wrapper" else ["learned"])
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
    if part.init is not None:  # only then: keys of parts without an init stay as they were
        doc["init"] = fold_key(dataset, part.init, config, fold)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]


def fold_dir(key: str) -> Path:
    return cache_dir() / "kfold" / key


def _wrapper_file(d: Path, part: Trainable) -> Path:
    return d / f"{part.name}.safetensors"


def train_fold(dataset: Dataset, part: Trainable, config, fold: Fold, log: Log = _stderr) -> dict[str, Any]:
    """Train ``part`` on fold's training images (or reuse the cached weights): returns the
    fold's ``info`` (``fold.json``: key, weights location, CPU seconds, cached)."""
    import torch  # why: heavy; only when a fold trains

    key = fold_key(dataset, part, config, fold)
    final = fold_dir(key)
    marker = final / "fold.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        return dict(info, cached=True, dir=str(final))
    base = None if part.init is None else train_fold(dataset, part.init, config, fold, log)
    tmp = final.with_name(f"{key}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    view = training_view(dataset, fold)
    stamp = {**fold.to_json(), "recipe": part.recipe, "recipe_from": part.source, "key": key}
    if base is not None:  # the fold's own init model, its CPU s counted in this fold's cost
        stamp["init"] = {"name": part.init.name, "key": base["key"], "cpu_s": base["cpu_s"]}
    torch.set_num_threads(1)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    log(f"fold {fold.index + 1}/{fold.k}: training {part.kind} {part.name} on {len(fold.train_ids)} images "
        f"(held out: {len(fold.held_out_ids)})")
    try:
        if part.kind == "wrapper":
            from ..wrappers.training import train_wrapper  # why: the trainer loads only to train

            r = dict(part.recipe)
            wrapper = train_wrapper(view, config.model, config.split, r.pop("k"), command="fcm sweep --folds", log=None, **r)
            wrapper.meta["kfold"] = dict(stamp, cpu_s=round(time.process_time() - cpu0, 1))
            wrapper.save(_wrapper_file(tmp, part))
        else:
            from ..learned.train import TrainConfig, train_codec  # why: the trainer loads only to train

            out = tmp / "learned" / part.name
            init_dir = None if base is None else str(Path(base["dir"]) / "learned" / part.init.name)
            cfg = TrainConfig(dataset=portable(dataset.root), out=str(out), threads=1, resume=False, init=init_dir,
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


def learned_view(fold_root: Path, part: Trainable) -> Path:
    """The fold's ``learned/`` folder, with the codec's own weights folder in it: the trainer
    writes ``learned/<arch>``; a codec whose folder has another name (hyperprior-deep) gets a
    relative link to it there, so that it finds its fold's weights and not the bundled ones."""
    root = fold_root / "learned"
    alias = root / part.weights_name
    if not alias.exists():
        tmp = root / f".{part.weights_name}.link-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(part.name, target_is_directory=True)
        tmp.replace(alias)  # atomic: two sweeps of one fold do not race
    return root


@contextlib.contextmanager
def _learned_dir(root: Path, codec_name: str) -> Iterator[None]:
    """Learned codecs load their weights from ``root`` inside the block (``$FCM_LEARNED_DIR``,
    inherited by spawned sweep workers; the shared codec instance is rebuilt on entry and exit)."""
    from .. import codecs  # why: the codec registry's shared instances, reset here only

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
