"""A wrapper trained for the task from scratch: the ``learned`` architecture, random
initialisation (no PCA start), trained end to end through the proxy codec on the task loss.

Why: the bundled ``learned`` wrapper starts at PCA and its affine path stays dominant, so its
post-wrapper keeps every coded channel about equally (post-only importance 0.96-1.14) and
WA-RDO has little to reallocate. Trained from random weights on the detector's outputs,
nothing makes the coded channels and positions equally important: the post-network is free
to rely on some more than others (measured with ``benchmarks/wa_importance.py``).

Training (``train_task_wrapper``): features of the coco96 training images (+ ``augment``
views, ``training.build_bank``), ``LearnedNets`` with PyTorch's default initialisation,
proxy codec = uniform noise at the packing step of ``b`` ~ U[3.5, 7] effective bits plus an
``EntropyBottleneck`` rate term (``training``), loss = task distortion
(``training.make_distortion("task")``: class-score KL + box smooth-L1 vs the uncompressed run,
+ 0.1 feature MSE) + ``lam`` x rate. The result is an ordinary ``learned`` wrapper file
(``meta["init"] = "random"``, ``meta["trainer"] = "task_training"``) with fixed importance
weights and maps; load it as ``learned:PATH``.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

from ..errors import ParameterError
from .convnet import LearnedNets, LearnedWrapper
from .importance import estimate_maps
from .training import (BITS_RANGE, FeatureBank, attach_importance, base_meta, build_bank, evaluate_wrapper,
                       fit_learned_nets, make_distortion)
from .wa_loop import WAInLoop


def train_task_nets(bank: FeatureBank, meta: dict[str, Any], *, epochs: int = 10, batch: int = 8,
                    lr: float = 2e-3, lam: float = 0.01, hidden: int = 64, seed: int = 0,
                    log: Callable[[str], None] | None = print, wa: WAInLoop | None = None):
    """-> a ``LearnedWrapper`` trained from random weights on the task loss (with ``wa``:
    WA-RDO's allocation in the proxy codec, ``wa_loop``)."""
    if epochs < 1:
        raise ParameterError(f"--epochs must be at least 1, got {epochs}")
    torch.manual_seed(seed)
    _, c, h, w = bank.train.shape
    nets = LearnedNets(c, int(meta["k"]), hidden, 1, (h, w))  # default (random) init: no pca_init
    dist_fn = make_distortion("task", meta["model"], meta["split"], float(bank.train.var()))
    c0 = time.process_time()
    history, seconds = fit_learned_nets(nets, int(meta["k"]), bank, dist_fn, epochs=epochs, batch=batch, lr=lr,
                                        lam=lam, seed=seed, pct_start=0.15, log=log, wa=wa,
                                        model_split=(meta["model"], meta["split"]))
    meta = dict(meta, method="learned", loss="task", init="random", trainer="task_training", epochs=epochs,
                batch=batch, lr=lr, lam=lam, hidden=hidden, down=1, proxy_bits=list(BITS_RANGE), history=history,
                train_seconds=seconds, train_cpu_seconds=round(time.process_time() - c0, 1))
    if wa is not None:
        meta["wa_in_loop"] = wa.to_meta()
    return LearnedWrapper(meta, nets)


def train_task_wrapper(dataset, model_name: str, split: str, k: int, *, epochs: int = 10, augment: int = 2,
                       lam: float = 0.01, seed: int = 0, command: str = "", probes: int = 2,
                       log: Callable[[str], None] | None = print, wa_in_loop: WAInLoop | None = None):
    """Features, training, fixed importance weights (``importance.*``) and maps
    (``importance_maps``: post and task) of a task-trained wrapper."""
    t0 = time.perf_counter()
    bank = build_bank(dataset, model_name, split, augment=augment, seed=seed, log=log)
    c = bank.train.shape[1]
    if not 1 <= k <= c:
        raise ParameterError(f"--channels must be in [1, {c}] for {bank.tensor} ({c} channels), got {k}")
    meta = base_meta("learned", model_name, split, bank, k, seed, command, str(dataset.root))
    wrapper = train_task_nets(bank, meta, epochs=epochs, lam=lam, seed=seed, log=log, wa=wa_in_loop)
    wrapper.meta["val_feature_nmse"] = round(evaluate_wrapper(wrapper, bank, "feature"), 6)
    attach_importance(wrapper, bank, probes=probes, seed=seed, log=log)
    with torch.no_grad():
        zs = [wrapper.encode(bank.train_plain[i:i + 8]) for i in range(0, bank.train_plain.shape[0], 8)]
    for target in ("post", "task"):
        m = estimate_maps(wrapper, zs, target=target, probes=probes, seed=seed)
        wrapper.importance_maps[target] = torch.from_numpy(np.asarray(m)).float()
    wrapper.rdo_weights = "task"
    wrapper.meta["total_seconds"] = round(time.perf_counter() - t0, 1)
    return wrapper
