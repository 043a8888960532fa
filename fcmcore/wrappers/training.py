"""Fitting and training wrappers on split features of a COCO-style dataset.

Data: the dataset's images sorted by id, split with ``datasplit.split_train_val`` (every
4th image is validation, never trained on). Training features are the head's output on
each training image plus ``augment`` random views of it (horizontal flip with p=0.5, a
random crop of 50-100 % of the area with aspect 3/4..4/3; the model then resizes to its
input size as usual). Validation features come from the plain validation images.

Learned wrappers are trained through a **proxy codec**: the reduced tensor z is packed as
the real pipeline does (tensor min-max range per image), so the codec's error is modelled
as uniform noise of step ``range(z) / 2**b`` with ``b`` drawn per sample in [3.5, 7]
(from near-lossless 10-bit packing down to the rates where detection breaks); the rate term
is the bits an ``EntropyBottleneck`` (CompressAI) estimates for ``z / step``, per coded
value. Loss = distortion + lambda * rate, with distortion

* ``feature``: MSE at the split, normalised by the features' variance;
* ``deep``: MSE at SSD's prediction map 0 (expansion inside ``expanded_conv_13``) through
  the frozen tail, normalised, plus 0.1 x the feature term;
* ``task``: Bernoulli KL between the class scores of the coded and uncompressed runs plus
  score-weighted smooth-L1 on box regressions, plus 0.1 x the feature term.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ParameterError
from ..models import load_model
from ..training import (BITS_RANGE, augment as augment_view, collect_views, feature_extractor, log_every, proxy_step,
                        random_bits, single_tensor, train_val_records)
from ..training import distortion as shared_distortion
from .convnet import LearnedNets, LearnedWrapper, pca_init
from .fitted import RDO_WEIGHT_MODES, FittedWrapper
from .importance import WEIGHT_TARGETS, estimate_maps, tail_function
from .linear import PCAWrapper, TruncateWrapper
from .wa_loop import WAAllocator, WAInLoop

METHODS = ("learned", "pca", "truncate")
LOSSES = ("feature", "deep", "task")


@dataclass
class FeatureBank:
    tensor: str
    train: torch.Tensor  # (N_aug, C, H, W): plain + augmented training views
    train_plain: torch.Tensor  # (N_train, C, H, W): one per training image, no augmentation
    val: torch.Tensor  # (N_val, C, H, W)
    train_ids: list[int]
    val_ids: list[int]


def _augment(image, rng: np.random.Generator):
    """One random view by the wrappers' recipe (``training.augment``, "crop50")."""
    return augment_view(image, rng, "crop50")


def build_bank(dataset, model_name: str, split: str, augment: int = 4, seed: int = 0,
               log: Callable[[str], None] | None = print) -> FeatureBank:
    """Head features of the train images of ``dataset`` (loaded, ``fcmcore.evaluate.load_dataset``:
    the command layer loads it) (+ ``augment`` views each) and of its val images. Layout:
    ``train`` is every plain view, then the random views image by image."""
    model = load_model(model_name)
    tensor = single_tensor(model, split, "wrappers")
    train, val = train_val_records(dataset)
    extract = feature_extractor(model, split, tensor)
    per_image = collect_views(train, extract, augment, np.random.default_rng(seed), "crop50",
                              log_every(24, log, "features", time.perf_counter()))
    plain_t = torch.stack([views[0] for views in per_image])
    rand = [v for views in per_image for v in views[1:]]
    all_train = torch.cat([plain_t, torch.stack(rand)]) if rand else plain_t
    vals = torch.stack([views[0] for views in collect_views(val, extract)])
    return FeatureBank(tensor, all_train, plain_t, vals, [r.id for r in train], [r.id for r in val])


def base_meta(method: str, model_name: str, split: str, bank: FeatureBank, k: int, seed: int,
              command: str, dataset: str) -> dict[str, Any]:
    _, c, h, w = bank.train.shape
    return {"method": method, "model": model_name, "split": split, "tensor": bank.tensor,
            "channels_in": int(c), "channels_out": int(k), "k": int(k), "height": int(h), "width": int(w),
            "seed": int(seed), "command": command, "dataset": Path(dataset).name,
            "train_images": len(bank.train_ids), "train_views": int(bank.train.shape[0]),
            "val_images": len(bank.val_ids)}


# -- losses --------------------------------------------------------------------------------
def make_distortion(loss: str, model_name: str, split: str, feat_var: float):
    """-> f(x_hat, x) -> scalar distortion (see the module docstring)."""
    if loss not in LOSSES:
        raise ParameterError(f"--loss must be one of {', '.join(LOSSES)}, not {loss!r}")

    def feature(x_hat, x):
        return F.mse_loss(x_hat, x) / feat_var

    if loss == "feature":
        return feature
    if loss == "deep":
        deep = tail_function(model_name, split, "deep")

        def deep_loss(x_hat, x):
            with torch.no_grad():
                target = deep(x)
            return F.mse_loss(deep(x_hat), target) / target.var().clamp_min(1e-8) + 0.1 * feature(x_hat, x)

        return deep_loss
    tail_function(model_name, split, "task")  # validates the model/split
    return shared_distortion.task_distortion(model_name, split, feat_var)


_proxy_step = proxy_step  # the proxy codec (``training.proxy``), under its old name


# -- training --------------------------------------------------------------------------------
def train_learned(bank: FeatureBank, meta: dict[str, Any], *, loss: str = "deep", epochs: int = 12,
                  batch: int = 8, lr: float = 1e-3, lam: float = 0.01, hidden: int = 64, down: int = 1,
                  seed: int = 0, log: Callable[[str], None] | None = print, wa: WAInLoop | None = None):
    torch.manual_seed(seed)
    _, c, h, w = bank.train.shape
    if wa is not None and down != 1:
        raise ParameterError("--wa-in-loop needs --down 1 (the coded tensor's positions must be the split's)")
    nets = LearnedNets(c, int(meta["k"]), hidden, down, (h, w))
    pca_init(nets, bank.train)
    dist_fn = make_distortion(loss, meta["model"], meta["split"], float(bank.train.var()))
    c0 = time.process_time()
    history, seconds = fit_learned_nets(nets, int(meta["k"]), bank, dist_fn, epochs=epochs, batch=batch, lr=lr, lam=lam,
                                        seed=seed, pct_start=0.1, log=log, wa=wa,
                                        model_split=(meta["model"], meta["split"]))
    meta = dict(meta, loss=loss, epochs=epochs, batch=batch, lr=lr, lam=lam, hidden=hidden, down=down,
                proxy_bits=list(BITS_RANGE), history=history, train_seconds=seconds,
                train_cpu_seconds=round(time.process_time() - c0, 1))
    if wa is not None:
        meta["wa_in_loop"] = wa.to_meta()
    return LearnedWrapper(meta, nets)


def fit_learned_nets(nets: LearnedNets, k: int, bank: FeatureBank, dist_fn, *, epochs: int, batch: int, lr: float,
                     lam: float, seed: int, pct_start: float, log: Callable[[str], None] | None = print,
                     wa: WAInLoop | None = None, model_split: tuple[str, str] | None = None
                     ) -> tuple[list[dict[str, float]], float]:
    """The training loop of the learned wrappers (PCA-initialised or task-trained from random):
    the proxy codec (uniform noise at a random effective bit depth, CompressAI's entropy
    bottleneck for the rate), distortion + ``lam`` · rate, Adam with a one-cycle schedule.
    With ``wa`` (``wa_loop.WAInLoop``; ``model_split`` = (model, split) for its tail) the
    proxy's step is scaled per coded sample as ``--rdo wa-qp`` would scale it, with the
    importance of the current nets re-estimated before every epoch (``wa_loop``).
    Trains ``nets`` in place; -> (per-epoch history, wall seconds)."""
    from compressai.entropy_models import EntropyBottleneck  # why: CompressAI is optional (learned only)

    eb = EntropyBottleneck(k)
    main_params = list(nets.parameters()) + [p for n, p in eb.named_parameters() if not n.endswith("quantiles")]
    aux_params = [p for n, p in eb.named_parameters() if n.endswith("quantiles")]
    opt = torch.optim.Adam(main_params, lr=lr)
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3)
    steps = epochs * math.ceil(bank.train.shape[0] / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=pct_start)
    gen = torch.Generator().manual_seed(seed)
    history = []
    alloc = None
    if wa is not None:
        if model_split is None:
            raise ParameterError("WA in the loop needs the model and split of the tail its importance goes through")
        alloc = WAAllocator(wa, model_split[0], model_split[1], k, tuple(bank.train.shape[2:]), seed=seed)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        wa_info = {}
        if alloc is not None:
            c0 = time.process_time()
            wa_info = alloc.update(nets, bank.train_plain, epoch)
            wa_info["wa_estimate_cpu_s"] = round(time.process_time() - c0, 2)
            if log:
                log(f"  epoch {epoch + 1}: WA weights ({wa.weights}/{wa.target}) max/min {wa_info['wa_max_over_min']:.3g} "
                    f"CV {wa_info['wa_cv']:.3f} AM/GM {wa_info['wa_am_gm_db']:.3f} dB, dQP "
                    f"[{wa_info['wa_dqp_min']:+.1f}, {wa_info['wa_dqp_max']:+.1f}] ({wa_info['wa_estimate_cpu_s']:.1f} CPU s)")
        nets.train()
        eb.train()
        order = torch.randperm(bank.train.shape[0], generator=gen)
        tot_d = tot_r = 0.0
        nb = 0
        for i in range(0, len(order), batch):
            x = bank.train[order[i:i + batch]]
            bits = random_bits(x.shape[0], gen)
            z = nets.pre(x)
            step = proxy_step(z, bits)
            if alloc is not None:  # per-sample steps as x265 scales them for WA's QP offsets
                step = alloc.step(step)
            y_hat, lik = eb(z / step, training=True)
            rate = -torch.log2(lik.clamp_min(1e-9)).sum() / lik.numel()  # bits per coded value
            d = dist_fn(nets.post(y_hat * step), x)
            opt.zero_grad()
            (d + lam * rate).backward()
            torch.nn.utils.clip_grad_norm_(main_params, 5.0)
            opt.step()
            sched.step()
            aux_opt.zero_grad()
            eb.loss().backward()
            aux_opt.step()
            tot_d += float(d.detach())
            tot_r += float(rate.detach())
            nb += 1
        val = validate_learned(nets, eb, bank, dist_fn, alloc)
        history.append({"epoch": epoch + 1, "train_distortion": tot_d / nb, "train_rate": tot_r / nb, **val, **wa_info})
        if log:
            log(f"  epoch {epoch + 1}/{epochs}: train D {tot_d / nb:.4f} R {tot_r / nb:.3f} b/value; "
                f"val D@5b {val['val_distortion_5b']:.4f} R {val['val_rate_5b']:.3f}; "
                f"{time.perf_counter() - t0:.0f} s")
    nets.eval()
    return history, round(time.perf_counter() - t0, 1)


@torch.no_grad()
def validate_learned(nets, eb, bank: FeatureBank, dist_fn, alloc=None) -> dict[str, float]:
    """Validation distortion and rate at 5 effective bits (eval-mode quantisation; with WA in
    the loop, the steps of ``alloc``'s current allocation)."""
    nets.eval()
    eb.eval()
    ds, rs = [], []
    for i in range(0, bank.val.shape[0], 8):
        x = bank.val[i:i + 8]
        z = nets.pre(x)
        step = proxy_step(z, torch.full((x.shape[0],), 5.0))
        if alloc is not None:
            step = alloc.step(step)
        y_hat, lik = eb(z / step, training=False)
        rs.append(float(-torch.log2(lik.clamp_min(1e-9)).sum() / lik.numel()))
        ds.append(float(dist_fn(nets.post(y_hat * step), x)))
    return {"val_distortion_5b": float(np.mean(ds)), "val_rate_5b": float(np.mean(rs))}


@torch.no_grad()
def evaluate_wrapper(wrapper: FittedWrapper, bank: FeatureBank, loss: str = "feature") -> float:
    """Validation distortion of a wrapper without coding (how much the reduction loses)."""
    dist_fn = make_distortion(loss, wrapper.meta["model"], wrapper.meta["split"], float(bank.train.var()))
    vals = [float(dist_fn(wrapper.decode(wrapper.encode(bank.val[i:i + 8])), bank.val[i:i + 8]))
            for i in range(0, bank.val.shape[0], 8)]
    return float(np.mean(vals))


def attach_importance(wrapper: FittedWrapper, bank: FeatureBank, probes: int = 2, seed: int = 0,
                      targets=WEIGHT_TARGETS, log: Callable[[str], None] | None = print) -> None:
    """Fixed WA-RDO weights (averaged over the plain training features) for every target:
    per channel and, from the same Hutchinson sketch, per coded sample (the fixed maps that
    ``--wa-weights spatial|both --wa-source fixed`` read). Both come from this wrapper's own
    training images, so a k-fold wrapper's fixed weights never saw its held-out fold."""
    with torch.no_grad():
        zs = [wrapper.encode(bank.train_plain[i:i + 8]) for i in range(0, bank.train_plain.shape[0], 8)]
    for target in targets:
        t0 = time.perf_counter()
        try:
            m = estimate_maps(wrapper, zs, target=target, probes=probes, seed=seed)
        except ParameterError as exc:
            if log:
                log(f"  importance {target}: skipped ({exc})")
            continue
        w = m.mean(axis=(1, 2))  # = estimate_weights: the channel weights are the maps' means
        w = w / w.mean()
        wrapper.importance[target] = torch.from_numpy(w).float()
        wrapper.importance_maps[target] = torch.from_numpy(m).float()
        if log:
            log(f"  importance {target}: min {w.min():.3g} max {w.max():.3g} ({time.perf_counter() - t0:.1f} s)")


def train_wrapper(dataset, model_name: str, split: str, k: int, method: str = "learned",
                  loss: str = "deep", seed: int = 0, epochs: int = 12, augment: int = 4, down: int = 1,
                  hidden: int = 64, lam: float = 0.01, rdo_weights: str = "task", command: str = "",
                  log: Callable[[str], None] | None = print,
                  wa_in_loop: "WAInLoop | dict | None" = None) -> FittedWrapper:
    """Fit or train a wrapper end to end (features, fitting, importance weights).
    ``wa_in_loop`` (learned only; a ``WAInLoop`` or its ``to_meta()`` dict, as a k-fold
    recipe carries it): train with WA-RDO's allocation in the proxy codec (``wa_loop``)."""
    if method not in METHODS:
        raise ParameterError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    wa = wa_in_loop if isinstance(wa_in_loop, WAInLoop) or wa_in_loop is None else WAInLoop.from_meta(wa_in_loop)
    if wa is not None and method != "learned":
        raise ParameterError(f"--wa-in-loop trains a learned wrapper through the proxy codec; {method} is fitted "
                             "in closed form (use --method learned)")
    if rdo_weights not in RDO_WEIGHT_MODES:
        raise ParameterError(f"--rdo-weights must be one of {', '.join(RDO_WEIGHT_MODES)}, not {rdo_weights!r}")
    if epochs < 1 and method == "learned":
        raise ParameterError(f"--epochs must be at least 1, got {epochs}")
    torch.manual_seed(seed)
    t0, c0 = time.perf_counter(), time.process_time()
    bank = build_bank(dataset, model_name, split, augment=augment if method == "learned" else 0, seed=seed, log=log)
    c = bank.train.shape[1]
    if not 1 <= k <= c:
        raise ParameterError(f"--channels must be in [1, {c}] for {bank.tensor} ({c} channels), got {k}")
    if log:
        log(f"features: {bank.train.shape[0]} train views of {len(bank.train_ids)} images, "
            f"{bank.val.shape[0]} val images, {tuple(bank.train.shape[1:])} ({time.perf_counter() - t0:.0f} s)")
    meta = base_meta(method, model_name, split, bank, k, seed, command, str(dataset.root))
    if method == "pca":
        wrapper: FittedWrapper = PCAWrapper.fit(bank.train, k, meta)
    elif method == "truncate":
        wrapper = TruncateWrapper.fit(bank.train, k, meta)
    else:
        wrapper = train_learned(bank, meta, loss=loss, epochs=epochs, seed=seed, down=down, hidden=hidden,
                                lam=lam, log=log, wa=wa)
    wrapper.meta["val_feature_nmse"] = round(evaluate_wrapper(wrapper, bank, "feature"), 6)
    attach_importance(wrapper, bank, seed=seed, log=log)
    wrapper.rdo_weights = rdo_weights
    wrapper.meta["total_seconds"] = round(time.perf_counter() - t0, 1)
    wrapper.meta["total_cpu_seconds"] = round(time.process_time() - c0, 1)
    if log:
        log(f"val feature NMSE without coding: {wrapper.meta['val_feature_nmse']:.4f}; "
            f"total {wrapper.meta['total_seconds']:.0f} s")
    return wrapper
