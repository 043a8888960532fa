"""Training of direct coding (``fcm train-direct``): distil the student, then fine-tune the
hyperprior codec on its outputs (see ``direct`` for the data flow).

Options (measured in assets/learned/README.md, "direct coding"):

* ``student``: ``thin`` (the detector's blocks, expansions thinned to ``keep``), ``full``
  (the detector's blocks with their own weights, every channel: the head itself, so direct
  coding with it *is* model splitting plus a learned codec; what differs is only the
  training below), ``light`` (a from-scratch depthwise stack). ``--student thin --keep 1.0``
  is ``full``. ``full`` starts at the teacher, so it is not distilled unless asked
  (``distill_epochs`` defaults to 0 for it, 10 otherwise).
* ``distill_layer``: the distillation loss and the codec's distortion are taken after the
  frozen detector remainder at that deeper layer (``train.deep_fn``), normalised per
  channel by the train bank's std there, instead of at the split.
* ``joint``: per lambda, the student (a copy of the distilled one) is fine-tuned together
  with the codec on ``R + lambda * D``; each quality then has its own student
  (``student_q<i>.safetensors``, named in the manifest's quality entry).
* ``loss``: the codec's distortion D (fine-tuning and joint), as ``fcm train-codec --loss``:
  ``feature`` (normalised MSE at the split), ``deep`` (at ``deep_layer`` through the frozen
  remainder) or ``task`` (the detector's outputs distilled, ``fcmcore.training.distortion``),
  against the teacher's split features, weighted by ``lambda * lambda_scale`` (default
  ``losses.LAMBDA_SCALE``). Unset, D is the distillation's own (at ``distill_layer`` or the
  split), as before the option.

Long because: one trainer for three student kinds, joint training and the codec's loss choice
(config and its checks, distillation, per-lambda fine-tuning with checkpoints, publishing and
the manifest); the students live in ``direct_student``, the losses in ``losses``.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..errors import ParameterError, WeightsError
from ..models import load_model
from ..paths import portable
from ..training import restore_train_state, save_train_state
from .bank import build_bank
from .codec import learned_root
from .direct_student import (PREFIX_STAGES, STUDENT_FILE, StudentTrunk, ThinStudent, load_student, prefix, prefix_macs,
                             save_student, start_from, student_macs)
from .losses import DEFAULT_DEEP_LAYER, LAMBDA_SCALE, LOSSES, raw_distortion
from .train import _rate_bits, deep_fn, optimizer_step
from .weights import load_weights, save_weights

STUDENTS = ("thin", "full", "light")

# ----- training -------------------------------------------------------------------------------

@dataclass
class DirectTrainConfig:
    dataset: str
    split: str
    lambdas: list[float]
    out: str
    init: str | None = None  # hyperprior weights folder (default: learned_root()/hyperprior)
    distill_epochs: int | None = None  # default: 10; 0 for the full student (it starts at the teacher)
    epochs: int = 3  # per lambda (codec fine-tuning); --finetune-epochs overrides
    finetune_epochs: int | None = None
    seed: int = 0
    model: str = "ssd_mobilenet_v2"
    variants: int = 12
    batch_size: int = 8
    lr: float = 2e-3  # distillation; the codec (and joint student) fine-tuning uses half
    resume: bool = False
    threads: int = 1
    student: str = "thin"  # see the module docstring
    keep: float = 0.5  # thin: fraction of each expansion's channels kept
    widths: list[int] | None = None  # light (default 48, 96, 96, 128, 128)
    distill_layer: str | None = None  # None: at the split
    joint: bool = False
    max_steps: int | None = None  # cap on the optimiser steps of each lambda (short runs)
    init_student: str | None = None  # a direct weights folder: its (same-architecture) student starts the distillation
    loss: str | None = None  # the codec's distortion (see the module docstring); None: the distillation's
    deep_layer: str | None = None  # for loss deep (default: distill_layer, else DEFAULT_DEEP_LAYER)
    lambda_scale: float | None = None  # with loss: distortion weight = lambda * this (default LAMBDA_SCALE[loss])

    def validate(self) -> None:
        if self.student not in STUDENTS:
            raise ParameterError(f"student must be one of {', '.join(STUDENTS)}, not {self.student!r}")
        if not (isinstance(self.keep, (int, float)) and 0 < self.keep <= 1):
            raise ParameterError(f"--keep must be in (0, 1], not {self.keep!r}")
        if self.student == "thin" and self.keep == 1:
            self.student = "full"  # every channel, the detector's weights: what full is
        if self.student == "full" and self.keep not in (0.5, 1):  # 0.5: the untouched default
            raise ParameterError("--keep is for --student thin; the full student keeps every channel")
        if self.student == "full":
            self.keep = 1.0
        if not self.lambdas or any(not (lam > 0) or not math.isfinite(lam) for lam in self.lambdas):
            raise ParameterError("lambdas must be positive numbers")
        if len(set(self.lambdas)) != len(self.lambdas):
            raise ParameterError("lambdas must be distinct")
        for name in ("epochs", "variants", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ParameterError(f"{name} must be >= 1")
        for name, low in (("finetune_epochs", 1), ("distill_epochs", 0), ("max_steps", 1)):
            if getattr(self, name) is not None and getattr(self, name) < low:
                raise ParameterError(f"{name} must be >= {low}")
        if self.distill_epochs is None:
            self.distill_epochs = 0 if self.student == "full" else 10
        if self.student == "light" and self.distill_epochs == 0:
            raise ParameterError("the light student starts from random weights: it needs distill_epochs >= 1")
        if self.loss is not None and self.loss not in LOSSES:
            raise ParameterError(f"loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")
        if self.deep_layer is not None and self.loss != "deep":
            raise ParameterError("--deep-layer is for --loss deep")
        if self.lambda_scale is not None and (self.loss is None or not self.lambda_scale > 0
                                              or not math.isfinite(self.lambda_scale)):
            raise ParameterError("--lambda-scale needs --loss and must be a positive number")
        if self.loss == "deep" and self.deep_layer is None:
            self.deep_layer = self.distill_layer or DEFAULT_DEEP_LAYER

    def codec_loss(self) -> tuple[str, str | None, float]:
        """(loss, deep layer, lambda scale) the codec is fine-tuned with, the default resolved."""
        if self.loss is None:
            return ("deep", self.distill_layer, 1.0) if self.distill_layer else ("feature", None, 1.0)
        scale = LAMBDA_SCALE[self.loss] if self.lambda_scale is None else float(self.lambda_scale)
        return self.loss, self.deep_layer, scale


class _Joint(nn.Module):
    """Codec + student as one module for ``train.optimizer_step`` (one clipped gradient)."""

    def __init__(self, codec: nn.Module, student: nn.Module):
        super().__init__()
        self.codec, self.student = codec, student

    def aux_loss(self) -> torch.Tensor:
        return self.codec.aux_loss()


def _cosine(opt, total: int):
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)) * 0.95 + 0.05)


def _load_init(cfg: DirectTrainConfig) -> tuple[Path, dict[float, dict[str, Any]]]:
    init_dir = Path(cfg.init) if cfg.init else learned_root() / "hyperprior"
    init_manifest_path = init_dir / "manifest.json"
    if not init_manifest_path.is_file():
        raise WeightsError(f"direct training starts from trained hyperprior weights; none at {init_dir} "
                           "(run `fcm train-codec --arch hyperprior` first or pass --init)")
    init_manifest = json.loads(init_manifest_path.read_text())
    if init_manifest["split"] != cfg.split or init_manifest["model"] != cfg.model:
        raise WeightsError(f"--init weights are for {init_manifest['model']} @ {init_manifest['split']}, "
                           f"not {cfg.model} @ {cfg.split}")
    by_lambda = {float(q["lambda"]): q for q in init_manifest["qualities"]}
    missing = [lam for lam in cfg.lambdas if float(lam) not in by_lambda]
    if missing:
        raise ParameterError(f"no hyperprior model for lambda {missing} in {init_dir} (has {sorted(by_lambda)})")
    return init_dir, by_lambda


def train_direct(cfg: DirectTrainConfig, dataset, progress: bool = True, command: str | None = None) -> dict[str, Any]:
    """``dataset``: loaded from ``cfg.dataset`` by the caller (see ``bank.dataset_images``)."""
    cfg.validate()
    torch.set_num_threads(cfg.threads)
    ft_epochs = cfg.finetune_epochs or cfg.epochs
    init_dir, by_lambda = _load_init(cfg)
    model = load_model(cfg.model)
    deep = None
    if cfg.distill_layer:  # bad layer names fail here, before any work
        deep, _ = deep_fn(model, cfg.split, cfg.distill_layer)
    if cfg.loss == "deep" and cfg.deep_layer != cfg.distill_layer:
        deep_fn(model, cfg.split, cfg.deep_layer)

    out = Path(cfg.out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    t_wall, t_cpu0 = time.perf_counter(), time.process_time()
    bank = build_bank(cfg.model, dataset, cfg.split, cfg.variants, cfg.seed, keep_images=True, progress=progress)
    name = bank["tensor"]
    feats, imgs = bank["train"], bank["train_images"]
    val_feats, val_imgs = bank["val"], bank["val_images"]
    channels, h, w = feats.shape[1:]
    with torch.no_grad():
        pre_shape = prefix(model, torch.zeros(1, 3, *imgs.shape[-2:])).shape[1]

    def to_input(u8: torch.Tensor) -> torch.Tensor:
        return u8.float() * (2.0 / 255.0) - 1.0

    # normalisation: the hyperprior codec's (all its lambdas share the train bank's stats)
    net0, _ = load_weights(init_dir / by_lambda[float(cfg.lambdas[0])]["file"])
    mean, std = net0.feat_mean.clone().view(1, -1, 1, 1), net0.feat_std.clone().view(1, -1, 1, 1)

    def norm(f: torch.Tensor) -> torch.Tensor:
        return (f.float() - mean) / std

    # the distortion (distillation and codec): at the split, or at distill_layer through the frozen remainder
    targets_cpu = 0.0
    if deep is not None:
        t0 = time.process_time()
        with torch.no_grad():
            deep_t = torch.cat([deep(feats[i:i + 64].float()) for i in range(0, len(feats), 64)])
            deep_val = deep(val_feats.float())
        deep_std = deep_t.std(dim=(0, 2, 3)).clamp_min(1e-3).view(1, -1, 1, 1)
        deep_t = deep_t.half()
        targets_cpu = time.process_time() - t0

    def distortion(pred_norm: torch.Tensor, idx: torch.Tensor | None = None, val: bool = False) -> torch.Tensor:
        """MSE of a normalised split estimate against the teacher on samples ``idx`` (or the val ones)."""
        if deep is None:
            return F.mse_loss(pred_norm, norm(val_feats if val else feats[idx]))
        target = deep_val if val else deep_t[idx].float()
        return F.mse_loss(deep(pred_norm * std + mean) / deep_std, target / deep_std)

    # the codec's distortion: the distillation's unless --loss names another
    codec_loss, codec_layer, scale = cfg.codec_loss()
    raw = None if cfg.loss in (None, "feature") else raw_distortion(cfg.loss, model, cfg.model, cfg.split,
                                                                     codec_layer, feats)

    def codec_distortion(x_hat_norm: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if cfg.loss is None:
            return distortion(x_hat_norm, idx)
        if raw is None:
            return F.mse_loss(x_hat_norm, norm(feats[idx]))
        return raw(x_hat_norm * std + mean, feats[idx].float())

    # 1. the student and its distillation
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    if cfg.student == "thin":
        with torch.no_grad():  # calibration: 32 train samples spread over the bank
            calib = prefix(model, to_input(imgs[torch.arange(0, len(imgs), max(1, len(imgs) // 32))]))
            student = ThinStudent.from_teacher(model, cfg.split, cfg.keep, calib=calib, seed=cfg.seed)
        del calib
        sinfo: dict[str, Any] = {"kind": "thin", "output": "raw", "keep": cfg.keep, "specs": student.specs}
    elif cfg.student == "full":
        student = ThinStudent.from_teacher(model, cfg.split, 1.0)  # the detector's own blocks and weights
        sinfo = {"kind": "thin", "variant": "full", "init": "teacher", "output": "raw", "keep": 1.0,
                 "specs": student.specs}
    else:
        widths = tuple(cfg.widths or (48, 96, 96, 128, 128))
        student = StudentTrunk(pre_shape, channels, widths)
        sinfo = {"kind": "light", "output": "normalized", "cin": int(pre_shape), "cout": int(channels),
                 "widths": list(widths)}
    if cfg.init_student:
        start_from(student, sinfo, Path(cfg.init_student))
        sinfo["init_student"] = portable(cfg.init_student)
    raw_out = sinfo["output"] == "raw"

    def student_norm(net: nn.Module, p: torch.Tensor) -> torch.Tensor:
        o = net(p)
        return norm(o) if raw_out else o

    def batches(u8: torch.Tensor, net: nn.Module) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([student_norm(net, prefix(model, to_input(u8[i:i + 32]))) for i in range(0, len(u8), 32)])

    student_path = out / STUDENT_FILE
    ckpt = out / "checkpoints" / "student.pt"
    done = out / "checkpoints" / "student.done"
    distill_cpu = 0.0
    steps = max(1, len(feats) // cfg.batch_size)
    if cfg.resume and student_path.exists() and done.exists():
        student = load_student(student_path, sinfo)
        distill_cpu = float(done.read_text() or 0)
    else:
        t0 = time.process_time()
        if cfg.distill_epochs:
            opt = torch.optim.Adam(student.parameters(), lr=cfg.lr)
            total = cfg.distill_epochs * steps
            sched = _cosine(opt, total)
            start = 0
            if cfg.resume and ckpt.exists():
                start, distill_cpu = restore_train_state(ckpt, gen=gen, net=student, opt=opt, sched=sched)
            bar = tqdm(total=total, initial=start * steps, desc="direct: distil student", disable=not progress)
            for epoch in range(start, cfg.distill_epochs):
                perm = torch.randperm(len(feats), generator=gen)
                run = 0.0
                for s in range(steps):
                    idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
                    with torch.no_grad():
                        p = prefix(model, to_input(imgs[idx]))
                    loss = distortion(student_norm(student, p), idx)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                    run += loss.item()
                    bar.update(1)
                    bar.set_postfix(mse=f"{run / (s + 1):.4f}")
                save_train_state(ckpt, epoch=epoch + 1, cpu_s=distill_cpu + time.process_time() - t0, gen=gen,
                                 global_rng=False, net=student, opt=opt, sched=sched)
            bar.close()
        distill_cpu += time.process_time() - t0
        save_student(student, student_path)
        done.write_text(f"{distill_cpu:.1f}")
        student = load_student(student_path, sinfo)  # the stored (float16) one
    student.eval()
    s_train = None if cfg.joint else batches(imgs, student)
    s_val = batches(val_imgs, student)
    with torch.no_grad():
        distill_val = {"distill_val_mse_norm": float(F.mse_loss(s_val, norm(val_feats)))}
        if deep is not None:
            distill_val["distill_val_deep_mse_norm"] = float(distortion(s_val, val=True))

    # 2. per lambda: fine-tune the hyperprior codec on the student's outputs (with --joint: and the student)
    results = {}
    for n_done, lam in enumerate(sorted(cfg.lambdas, reverse=True)):
        final = out / "checkpoints" / f"lambda_{lam:g}.final.safetensors"
        st_final = out / "checkpoints" / f"lambda_{lam:g}.student.safetensors"
        if cfg.resume and final.exists() and (st_final.exists() or not cfg.joint):
            _, meta = load_weights(final)
            results[lam] = json.loads(meta["train"])
            continue
        torch.manual_seed(cfg.seed + 1 + n_done)
        net, _ = load_weights(init_dir / by_lambda[float(lam)]["file"])
        net.train()
        main = [p for k, p in net.named_parameters() if not k.endswith(".quantiles")]
        aux = [p for k, p in net.named_parameters() if k.endswith(".quantiles")]
        groups = [{"params": main, "lr": cfg.lr * 0.5}]
        st = stepped = None
        if cfg.joint:
            st = load_student(student_path, sinfo).train()  # every lambda from the distilled student
            groups.append({"params": list(st.parameters()), "lr": cfg.lr * 0.5})
            stepped = _Joint(net, st)
        opt, aux_opt = torch.optim.Adam(groups), torch.optim.Adam(aux, lr=1e-3)
        epochs, per_epoch = ft_epochs, steps
        if cfg.max_steps:
            per_epoch = min(per_epoch, cfg.max_steps)
            epochs = min(epochs, -(-cfg.max_steps // per_epoch))
        total = epochs * per_epoch
        sched = _cosine(opt, total)
        t0 = time.process_time()
        bar = tqdm(total=total, desc=f"direct{' joint' if cfg.joint else ''} lambda={lam:g}", disable=not progress)
        for _epoch in range(epochs):
            perm = torch.randperm(len(feats), generator=gen)
            sums = np.zeros(2)
            for s in range(per_epoch):
                idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
                if st is None:
                    src = s_train[idx]
                else:
                    with torch.no_grad():
                        p = prefix(model, to_input(imgs[idx]))
                    src = student_norm(st, p)
                y_hat, lik = net.entropy_forward(net.analysis(src))
                x_hat = net.synthesis(y_hat, h, w)
                rate = _rate_bits(lik) / src.numel()
                dist = codec_distortion(x_hat, idx)
                loss = rate + lam * scale * dist
                optimizer_step(stepped if stepped is not None else net, loss, opt, sched, aux_opt)
                sums += (rate.item(), dist.item())
                bar.update(1)
                bar.set_postfix(bpv=f"{sums[0] / (s + 1):.3f}", dist=f"{sums[1] / (s + 1):.4f}")
        bar.close()
        net.eval()
        net.update(force=True, update_quantiles=True)
        info = {"lambda": lam, "epochs": epochs, "steps": total, "joint": cfg.joint,
                "init": portable(by_lambda[float(lam)]["file"]), "train_cpu_s": round(time.process_time() - t0, 1)}
        save_weights(net, final, {"train": info})
        net, _ = load_weights(final)  # measure what is stored (float16 weights)
        lam_val = s_val
        if st is not None:
            save_student(st, st_final)
            lam_val = batches(val_imgs, load_student(st_final, sinfo).eval())
        info["val"] = _val_figures(net, lam_val, norm(val_feats), None if deep is None else
                                   (lambda x: distortion(x, val=True)), channels * h * w)
        save_weights(net, final, {"train": info})
        results[lam] = info

    # 3. publish: q1 = lowest lambda (fewest bits)
    qualities = []
    for q, lam in enumerate(sorted(cfg.lambdas), start=1):
        net, _ = load_weights(out / "checkpoints" / f"lambda_{lam:g}.final.safetensors")
        dest = out / f"q{q}.safetensors"
        save_weights(net, dest, {"train": results[lam], "quality": q, "model": cfg.model, "split": cfg.split,
                                 "tensor": name, "shape": [channels, h, w], "arch": "direct"})
        data = dest.read_bytes()
        entry = {"quality": q, "lambda": lam, "file": dest.name, "sha256": hashlib.sha256(data).hexdigest(),
                 "size_bytes": len(data), "parameters": net.num_parameters(),
                 "train_cpu_s": results[lam]["train_cpu_s"], "val": results[lam].get("val")}
        if cfg.joint:
            sdest = out / f"student_q{q}.safetensors"
            shutil.copyfile(out / "checkpoints" / f"lambda_{lam:g}.student.safetensors", sdest)
            sd = sdest.read_bytes()
            entry["student"] = {"file": sdest.name, "sha256": hashlib.sha256(sd).hexdigest(), "size_bytes": len(sd)}
        qualities.append(entry)
    sdata = student_path.read_bytes()
    s_macs = student_macs(student, model, (3, *imgs.shape[-2:]))
    config = {k: v for k, v in asdict(cfg).items() if k not in ("resume", "out")}
    config.update(dataset=portable(cfg.dataset), init=portable(cfg.init) if cfg.init else None,
                  init_student=portable(cfg.init_student) if cfg.init_student else None)
    manifest = {
        "format": 1, "arch": "direct", "model": cfg.model, "split": cfg.split, "tensor": name,
        "channels": int(channels), "shape": [int(channels), int(h), int(w)],
        "input_shape": [3, int(imgs.shape[-2]), int(imgs.shape[-1])],
        "lambdas": sorted(cfg.lambdas), "seed": cfg.seed, "command": command or "",
        "init": portable(init_dir), "config": config,
        "distill_layer": cfg.distill_layer, "joint": cfg.joint,
        "loss": codec_loss, "deep_layer": codec_layer if codec_loss == "deep" else None, "lambda_scale": scale,
        "student": {"file": STUDENT_FILE, "sha256": hashlib.sha256(sdata).hexdigest(), "size_bytes": len(sdata),
                    **sinfo, "parameters": sum(p.numel() for p in student.parameters()),
                    "prefix_stages": PREFIX_STAGES, "prefix_macs": prefix_macs(model), "trunk_macs": int(s_macs),
                    "distill_epochs": cfg.distill_epochs, "distill_cpu_s": round(distill_cpu, 1), **distill_val},
        "train_cpu_s": round(distill_cpu + targets_cpu + sum(r["train_cpu_s"] for r in results.values()), 1),
        "wall_s_this_run": round(time.perf_counter() - t_wall, 1),
        "cpu_s_this_run": round(time.process_time() - t_cpu0, 1),
        "threads": cfg.threads,
        "platform": f"{platform.machine()} {platform.python_version()} torch {torch.__version__}",
        "qualities": qualities,
    }
    if deep is not None:
        manifest["deep_targets_cpu_s"] = round(targets_cpu, 1)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _val_figures(net, s_val: torch.Tensor, target_norm: torch.Tensor, deep_dist: Callable | None,
                 values: int) -> dict[str, float]:
    """Real bitstreams of the val images' student outputs: bits per value, normalised MSE at
    the split (and at the distillation layer)."""
    net.update(force=True)
    bits, x_hats = [], []
    with torch.no_grad():
        for i in range(len(s_val)):
            c = net.compress_norm(s_val[i:i + 1])
            bits.append(len(c["strings"][0]) * 8)
            x_hats.append(net.normalize(c["x_hat"]))
        x_hat = torch.cat(x_hats)
        out = {"bits_per_value": float(np.mean(bits)) / values, "mse_norm": float(F.mse_loss(x_hat, target_norm))}
        if deep_dist is not None:  # every val image has the same size: the mean over all = the mean of the means
            out["deep_mse_norm"] = float(deep_dist(x_hat))
    return out
