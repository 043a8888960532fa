"""K-fold training and evaluation (``fcm sweep --folds K``, fcmcore/evaluate/kfold.py) on tinycoco.

Folds partition the images (each held out exactly once, seeded, reproducible); the trainers see
the other folds only; merging the folds' records gives exactly what one sweep over all images
gives; the merged curve is bootstrap-able; fold weights live in the cache, one entry per fold.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fcmcore.datasplit import kfold_split, train_val_images
from fcmcore.errors import ParameterError
from fcmcore.evaluate.bootstrap import bd_with_ci, curve_image_ids, point_intervals
from fcmcore.evaluate.datasets import load_dataset
from fcmcore.evaluate.kfold import (evaluate_kfold, fold_key, held_out_view, merge_folds, plan_folds,
                                    trainable_of, training_view)
from fcmcore.evaluate.sweep import CurveSpec, evaluate
from fcmcore.pipeline import PipelineConfig

HEVC9 = PipelineConfig(split="expanded_conv_9", codec="hevc")
PCA9 = PipelineConfig(split="expanded_conv_9", codec="hevc", wrapper="pca")


def run_cli(argv, monkeypatch):
    import fcmcore.cli as cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", ["fcmcore.cli.detect", "fcmcore.cli.evaluate", "fcmcore.cli.compare"])
    return cli.main(argv)


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FCM_CACHE_DIR", str(tmp_path_factory.mktemp("kfold_cache")))
        yield


# -- folds --------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,k", [(8, 4), (96, 4), (10, 3), (5, 5), (7, 2)])
def test_folds_partition_and_balance(n, k):
    items = list(range(100, 100 + n))
    folds = kfold_split(items, k, seed=3)
    assert len(folds) == k
    assert sorted(x for f in folds for x in f) == items  # every item exactly once
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    assert all(f == sorted(f) for f in folds)  # each fold keeps the id order


def test_folds_are_seeded():
    items = list(range(96))
    assert kfold_split(items, 4, seed=0) == kfold_split(items, 4, seed=0)
    assert kfold_split(items, 4, seed=0) != kfold_split(items, 4, seed=1)
    assert kfold_split(items, 4, seed=0) != [items[i::4] for i in range(4)]  # shuffled, not round-robin by id


@pytest.mark.parametrize("k", [1, 0, -2, 9, True])
def test_bad_fold_counts(k):
    with pytest.raises(ParameterError):
        kfold_split(list(range(8)), k)


def test_trainers_see_only_the_other_folds(tiny_dataset):
    from fcmcore.learned.bank import dataset_images

    ds = load_dataset(tiny_dataset)
    folds = plan_folds(ds, 4, seed=0)
    held = [i for f in folds for i in f.held_out_ids]
    assert sorted(held) == sorted(ds.image_ids) and len(held) == len(set(held))
    for f in folds:
        assert not set(f.train_ids) & set(f.held_out_ids)
        assert set(f.train_ids) | set(f.held_out_ids) == set(ds.image_ids)
        view = training_view(ds, f)
        train, val = train_val_images(view)
        assert [im.id for im in train] == f.train_ids and [im.id for im in val] == f.held_out_ids
        paths_train, paths_val, _ = dataset_images(view)  # what fcm train-codec trains on
        by_path = {im.path: im.id for im in ds.images}
        assert sorted(by_path[p] for p in paths_train) == f.train_ids
        assert not {by_path[p] for p in paths_train} & set(f.held_out_ids)
        assert held_out_view(ds, f).image_ids == f.held_out_ids
    # without a fold: the project's one split, unchanged
    assert train_val_images(ds)[1] == [im for i, im in enumerate(ds.images) if i % 4 == 3]


def test_fold_keys_differ_per_fold_and_seed(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    part = trainable_of(PCA9)
    keys = {fold_key(ds, part, PCA9, f) for f in plan_folds(ds, 4, seed=0)}
    keys |= {fold_key(ds, part, PCA9, f) for f in plan_folds(ds, 4, seed=1)}
    assert len(keys) == 8
    f0 = plan_folds(ds, 4, seed=0)[0]
    assert fold_key(ds, part, PCA9, f0) == fold_key(ds, part, PCA9, plan_folds(ds, 4, seed=0)[0])


def test_nothing_trained_is_refused():
    with pytest.raises(ParameterError, match="nothing in this configuration is trained"):
        trainable_of(HEVC9)
    with pytest.raises(ParameterError, match="full-input"):
        trainable_of(PipelineConfig(split=None, codec="jpeg"))


# -- merging ------------------------------------------------------------------------------------

def test_merged_folds_equal_one_sweep(tiny_dataset, cache_env):
    """The same (untrained) config swept fold by fold and merged == one sweep over all images:
    mAP by pycocotools, per-image matching, rates and intervals."""
    ds = load_dataset(tiny_dataset)
    spec = CurveSpec(HEVC9, [32, 42], name="x")
    whole = evaluate(ds, [spec], workers=1, progress=False)
    runs = []
    for f in plan_folds(ds, 3, seed=5):
        keep = {}
        doc = evaluate(held_out_view(ds, f), [spec], workers=1, progress=False, keep_runs=keep)
        runs.append({"fold": f, "doc": doc, "plan": keep["plan"], "runs": keep["runs"]})
    merged = merge_folds(ds, runs, "x")["curves"][0]
    ref = whole["curves"][0]
    assert curve_image_ids(merged) == curve_image_ids(ref) == ds.image_ids
    for key in ("bpp", "mAP", "mAP50", "mAP_vs_ref", "quality", "mAP_ci"):
        assert merged["results"][key] == ref["results"][key], key
    for pm, pr in zip(merged["points"], ref["points"]):
        assert pm["coco_eval"] == pr["coco_eval"]
        assert pm["coco_eval_vs_ref"] == pr["coco_eval_vs_ref"]
        assert pm["agreement"] == pr["agreement"]
        assert [{k: v for k, v in r.items() if k not in ("fold", "cached")} for r in pm["images"]] == \
               [{k: v for k, v in r.items() if k != "cached"} for r in pr["images"]]
    assert merged["reference"]["mAP"] == ref["reference"]["mAP"]


# -- k-fold end to end (pca: trains in about a second per fold) -----------------------------------

@pytest.fixture(scope="module")
def pca_kfold(tiny_dataset, cache_env):
    ds = load_dataset(tiny_dataset)
    return ds, evaluate_kfold(ds, CurveSpec(PCA9, [27, 37, 47]), 4, seed=0, workers=1, progress=False,
                              log=lambda m: None)


def test_every_image_held_out_once_and_never_scored_by_its_trainer(pca_kfold):
    from safetensors import safe_open

    ds, doc = pca_kfold
    curve = doc["curves"][0]
    kf = curve["kfold"]
    assert kf["k"] == 4 and kf["part"] == "wrapper" and kf["name"] == "pca"
    held = [i for f in kf["folds"] for i in f["held_out_image_ids"]]
    assert sorted(held) == sorted(ds.image_ids) and len(set(held)) == len(held)
    from fcmcore.paths import cache_dir

    trained_on = {}
    for f in kf["folds"]:
        path = cache_dir() / f["weights_in_cache"] / "pca.safetensors"
        with safe_open(str(path), "pt") as fh:
            meta = json.loads(fh.metadata()["fcm_wrapper"])
        assert meta["kfold"]["fold"] == f["fold"] and meta["train_images"] == len(f["train_image_ids"])
        trained_on[f["fold"]] = set(meta["kfold"]["train_image_ids"])
        assert not trained_on[f["fold"]] & set(meta["kfold"]["held_out_image_ids"])
    assert len({f["weights_in_cache"] for f in kf["folds"]}) == 4  # one cache entry per fold
    for p in [curve["reference"], *curve["points"]]:
        assert [r["image_id"] for r in p["images"]] == ds.image_ids
        for r in p["images"]:
            assert r["image_id"] not in trained_on[r["fold"]]  # scored only by a model that never saw it
            assert r["image_id"] in kf["folds"][r["fold"]]["held_out_image_ids"]


def test_merged_kfold_curve_is_bootstrappable(pca_kfold, tiny_dataset, cache_env):
    ds, doc = pca_kfold
    curve = doc["curves"][0]
    assert curve["name"].endswith("(4-fold)") and curve["config"]["wrapper"] == "pca"
    cis = point_intervals(curve)
    assert len(cis) == 3 and all(ci is not None and ci[0] <= ci[1] for ci in cis)
    twin = dict(curve, name="twin")
    r = bd_with_ci(curve, twin, n_resamples=200)
    assert r.n_images == len(ds.image_ids) and r.bd_rate == pytest.approx(0.0, abs=1e-9)
    assert r.bd_rate_ci is not None and r.bd_rate_ci[0] <= 0 <= r.bd_rate_ci[1]
    # paired with a plain sweep of the same images: per-image data line up
    plain = evaluate(ds, [CurveSpec(HEVC9, [27, 37, 47])], workers=1, progress=False)["curves"][0]
    assert curve_image_ids(plain) == curve_image_ids(curve)


def test_kfold_rerun_reuses_fold_weights_and_reproduces(pca_kfold, cache_env):
    ds, doc = pca_kfold
    again = evaluate_kfold(ds, CurveSpec(PCA9, [27, 37, 47]), 4, seed=0, workers=1, progress=False,
                           log=lambda m: None)
    assert all(f["cached"] for f in again["curves"][0]["kfold"]["folds"])
    assert again["curves"][0]["results"] == doc["curves"][0]["results"]
    other = plan_folds(ds, 4, seed=1)
    assert [f.held_out_ids for f in other] != [f["held_out_image_ids"] for f in doc["curves"][0]["kfold"]["folds"]]


def test_fold_wrappers_carry_fixed_maps_from_their_own_training_images(pca_kfold, cache_env):
    """--wa-source fixed with spatial weights under --folds: each fold's wrapper has its own
    maps (from its training images; the bundled wrapper's would have seen the held-out fold)."""
    from dataclasses import replace

    import numpy as np

    from fcmcore.paths import cache_dir
    from fcmcore.pipeline import weights_for
    from fcmcore.wrappers import load_wrapper
    from fcmcore.wrappers.importance import weights_of_kind

    ds, doc = pca_kfold
    bundled = load_wrapper("pca", "ssd_mobilenet_v2", "expanded_conv_9")
    maps = []
    for f in doc["curves"][0]["kfold"]["folds"]:
        w = load_wrapper(f"pca:{cache_dir() / f['weights_in_cache'] / 'pca.safetensors'}", "ssd_mobilenet_v2",
                         "expanded_conv_9")
        m = w.importance_maps["task"].double().numpy()
        assert m.shape == (w.k, 19, 19) and np.all(m >= 0)
        ch = m.mean(axis=(1, 2))  # the channel weights are the same sketch's means
        assert np.allclose(w.importance["task"].double().numpy(), ch / ch.mean(), rtol=1e-5)
        got = weights_for(w, {}, replace(PCA9, rdo="wa-qp", wa_weights="spatial", wa_source="fixed"))
        assert np.allclose(got[w.tensor], weights_of_kind(m, "spatial"))
        maps.append(m)
    assert not np.allclose(maps[0], maps[1])  # per fold, not one shared map
    assert not np.allclose(maps[0], bundled.importance_maps["task"].double().numpy())
    wa = CurveSpec(replace(PCA9, rdo="wa-qp", wa_weights="spatial", wa_source="fixed", tile_pad=8), [37])
    out = evaluate_kfold(ds, wa, 4, seed=0, workers=1, progress=False, log=lambda m: None)
    assert not out["skipped"] and all(f["cached"] for f in out["curves"][0]["kfold"]["folds"])  # same fold weights
    assert len(out["curves"][0]["points"][0]["images"]) == len(ds.image_ids)


def test_cli_folds(tiny_dataset, tmp_path, monkeypatch, capsys, cache_env):
    out = tmp_path / "k.json"
    base = ["sweep", "--dataset", str(tiny_dataset), "--split", "expanded_conv_9", "--codec", "hevc",
            "--qualities", "27,37,47", "--workers", "1", "--quiet"]
    assert run_cli(base + ["--wrapper", "pca", "--folds", "4", "--out", str(out)], monkeypatch) == 0
    assert "(4-fold)" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["curves"][0]["kfold"]["k"] == 4 and saved["dataset"]["num_images"] == 8
    assert run_cli(["bdrate", str(out), "--anchor", "4-fold", "--json"], monkeypatch) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows[0]["n_images"] == 8
    for bad, msg in [(["--folds", "4"], "nothing in this configuration is trained"),
                     (["--wrapper", "pca", "--folds", "1"], "at least 2"),
                     (["--wrapper", "pca", "--folds", "9"], "only 8 images"),
                     (["--wrapper", "pca", "--folds", "2", "--fold-max-steps", "3"], "does not apply"),
                     (["--wrapper", "pca", "--folds", "2", "--fold-epochs", "0"], "at least 1")]:
        assert run_cli(base + bad + ["--out", str(tmp_path / "bad.json")], monkeypatch) == 2
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err
    assert not (tmp_path / "bad.json").exists()


def test_learned_codec_cache_keys_follow_the_weights_in_use(tmp_path, monkeypatch):
    """Results of a learned codec are keyed by the manifests of the weights it loads: a fold's
    ($FCM_LEARNED_DIR) never share a key with the assets' or another fold's."""
    from fcmcore.evaluate.cache import result_key

    cfg = {"model": "ssd_mobilenet_v2", "split": "expanded_conv_9", "codec": "hyperprior", "quality": 3,
           "wrapper": "none", "quant": "tensor", "rdo": "sse", "bit_depth": None}
    keys = {result_key("0" * 64, cfg)}
    for n in range(2):
        root = tmp_path / f"fold{n}"
        (root / "hyperprior").mkdir(parents=True)
        (root / "hyperprior" / "manifest.json").write_text(json.dumps({"fold": n}))
        monkeypatch.setenv("FCM_LEARNED_DIR", str(root))
        keys.add(result_key("0" * 64, cfg))
    assert len(keys) == 3


def test_learned_codec_kfold_tiny_budget(tiny_dataset, cache_env):
    """hyperprior retrained per fold (one optimiser step per model): each fold's manifest names
    its training images, none of which that fold scores; results differ from fold to fold's
    weights (distinct cache keys), and the assets' weights are left alone."""
    from fcmcore.paths import ASSETS_DIR, cache_dir

    import os

    before = (ASSETS_DIR / "learned" / "hyperprior" / "manifest.json").read_bytes()
    env_before = os.environ.get("FCM_LEARNED_DIR")
    ds = load_dataset(tiny_dataset)
    cfg = PipelineConfig(split="expanded_conv_9", codec="hyperprior")
    doc = evaluate_kfold(ds, CurveSpec(cfg, [1, 6]), 2, seed=0, workers=1, progress=False, log=lambda m: None,
                         overrides={"epochs": 1, "finetune_epochs": 1, "max_steps": 1})
    curve = doc["curves"][0]
    kf = curve["kfold"]
    assert kf["part"] == "codec" and kf["recipe"]["max_steps"] == 1 and kf["budget_overrides"]["max_steps"] == 1
    for f in kf["folds"]:
        manifest = json.loads((cache_dir() / f["weights_in_cache"] / "learned" / "hyperprior" / "manifest.json").read_text())
        assert manifest["kfold"]["train_image_ids"] == f["train_image_ids"]
        assert manifest["bank"]["train_images"] == len(f["train_image_ids"])
        scored = {r["image_id"] for p in curve["points"] for r in p["images"] if r["fold"] == f["fold"]}
        assert scored == set(f["held_out_image_ids"]) and not scored & set(f["train_image_ids"])
    assert curve_image_ids(curve) == ds.image_ids and curve["config"]["codec"] == "hyperprior"
    assert (ASSETS_DIR / "learned" / "hyperprior" / "manifest.json").read_bytes() == before
    assert os.environ.get("FCM_LEARNED_DIR") == env_before  # the fold folders were used inside the sweep only


@pytest.mark.slow
def test_codec_named_apart_from_its_arch_is_scored_with_its_fold_weights(tiny_dataset, cache_env):
    """hyperprior-deep is a hyperprior with its own weights folder: per fold it is retrained
    with its own recipe (loss deep) and scored with that fold's weights (the run once failed:
    the trainer wrote learned/hyperprior, the codec looked in learned/hyperprior-deep); its
    fold key is not the feature-loss hyperprior's."""
    from fcmcore.paths import cache_dir

    cfg = PipelineConfig(split="expanded_conv_9", codec="hyperprior-deep")
    part = trainable_of(cfg)
    assert (part.name, part.weights_name, part.recipe["loss"]) == ("hyperprior", "hyperprior-deep", "deep")
    ds = load_dataset(tiny_dataset)
    fold = plan_folds(ds, 2, 0)[0]
    plain = PipelineConfig(split="expanded_conv_9", codec="hyperprior")
    assert fold_key(ds, part, cfg, fold) != fold_key(ds, trainable_of(plain), plain, fold)
    doc = evaluate_kfold(ds, CurveSpec(cfg, [1, 6]), 2, seed=0, workers=1, progress=False, log=lambda m: None,
                         overrides={"epochs": 1, "finetune_epochs": 1, "max_steps": 1})
    curve = doc["curves"][0]
    assert curve["config"]["codec"] == "hyperprior-deep" and curve_image_ids(curve) == ds.image_ids
    for f in curve["kfold"]["folds"]:
        folder = cache_dir() / f["weights_in_cache"] / "learned"
        manifest = json.loads((folder / "hyperprior-deep" / "manifest.json").read_text())
        assert manifest["kfold"]["train_image_ids"] == f["train_image_ids"] and manifest["loss"] == "deep"
        assert (folder / "hyperprior-deep").resolve() == (folder / "hyperprior").resolve()


SCAR9 = PipelineConfig(split="expanded_conv_9", codec="scar")


def test_scar_recipe_warm_starts_from_the_folds_own_context(tiny_dataset):
    """scar's bundled recipe starts from the bundled context weights (trained on images a fold
    holds out): per fold it starts from that fold's context, retrained with context's recipe;
    the init is part of the fold key, parts without an init keep their keys."""
    part = trainable_of(SCAR9)
    context = trainable_of(PipelineConfig(split="expanded_conv_9", codec="context"))
    assert part.init is not None and part.init.name == "context" and part.init.recipe == context.recipe
    assert "init" not in part.recipe and context.init is None
    ds = load_dataset(tiny_dataset)
    fold = plan_folds(ds, 2, 0)[0]
    without_init = fold_key(ds, type(part)(part.kind, part.name, part.recipe, part.source), SCAR9, fold)
    assert fold_key(ds, part, SCAR9, fold) != without_init


def test_scar_deep_recipe_warm_starts_from_the_folds_own_context_deep():
    """scar-deep warm-starts from context-deep, whose arch is context: per fold the init is
    context-deep's recipe (deep loss), found by its weights folder, not plain context's."""
    part = trainable_of(PipelineConfig(split="expanded_conv_9", codec="scar-deep"))
    deep = trainable_of(PipelineConfig(split="expanded_conv_9", codec="context-deep"))
    plain = trainable_of(PipelineConfig(split="expanded_conv_9", codec="context"))
    assert (part.name, part.weights_name, part.recipe["loss"]) == ("scar", "scar-deep", "deep")
    assert part.init is not None and part.init.name == "context" and part.init.weights_name == "context-deep"
    assert part.init.recipe == deep.recipe != plain.recipe and part.init.recipe["loss"] == "deep"


def test_init_that_is_not_a_bundled_codec_is_refused(tmp_path):
    from fcmcore.codecs import get_codec
    from fcmcore.evaluate.kfold_train import _init_trainable

    with pytest.raises(ParameterError, match="no readable"):
        _init_trainable(SCAR9, get_codec("scar"), str(tmp_path / "missing"))
    (tmp_path / "manifest.json").write_text(json.dumps({"arch": "context"}))
    with pytest.raises(ParameterError, match="not a bundled"):
        _init_trainable(SCAR9, get_codec("scar"), str(tmp_path))


@pytest.mark.slow
def test_scar_fold_trains_its_context_first(tiny_dataset, cache_env):
    """One scar fold (one step per model): the fold's context is trained (cached under its own
    key) and scar's manifest names it as its init, never the assets' context."""
    from fcmcore.evaluate.kfold_train import train_fold

    ds = load_dataset(tiny_dataset)
    fold = plan_folds(ds, 2, 0)[1]
    part = trainable_of(SCAR9)
    tiny = {"epochs": 1, "finetune_epochs": 1, "max_steps": 1}
    part.recipe.update(tiny)
    part.init.recipe.update(tiny)
    info = train_fold(ds, part, SCAR9, fold, log=lambda m: None)
    assert info["init"]["key"] == fold_key(ds, part.init, SCAR9, fold) and info["init"]["cpu_s"] > 0
    manifest = json.loads((Path(info["dir"]) / "learned" / "scar" / "manifest.json").read_text())
    assert manifest["init"].endswith(f"kfold/{info['init']['key']}/learned/context")
    again = train_fold(ds, part, SCAR9, fold, log=lambda m: None)
    assert again["cached"] and again["init"] == info["init"]
