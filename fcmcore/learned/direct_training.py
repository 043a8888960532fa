"""Training of direct coding (``fcm train-direct``): distil the student, then fine-tune the
hyperprior codec on its outputs (see ``direct`` for the data flow)."""

from __future__ import annotations

import hashlib
import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import ParameterError, WeightsError
from ..models import load_model
from ..paths import portable
from ..training import restore_train_state, save_train_state
from .bank import build_bank
from .codec import learned_root
from .direct_student import (PREFIX_STAGES, STUDENT_FILE, StudentTrunk, ThinStudent, load_student, prefix, prefix_macs,
                             save_student, student_macs)
from .train import DEFAULT_DEEP_LAYER, LAMBDA_SCALE, LOSSES, _rate_bits, deep_fn, optimizer_step, raw_distortion
from .weights import load_weights, save_weights

# ----- training -------------------------------------------------------------------------------

@dataclass
class DirectTrainConfig:
    dataset: str
    split: str
    lambdas: list[float]
    out: str
    init: str | None = None  # hyperprior weights folder (default: learned_root()/hyperprior)
    distill_epochs: int = 10
    epochs: int = 3  # per lambda (codec fine-tuning); --finetune-epochs overrides
    finetune_epochs: int | None = None
    seed: int = 0
    model: str = "ssd_mobilenet_v2"
    variants: int = 12
    batch_size: int = 8
    lr: float = 2e-3  # distillation; the codec fine-tuning uses half
    resume: bool = False
    threads: int = 1
    student: str = "thin"  # "thin": the detector's blocks, expansions thinned; "light": depthwise stack
    keep: float = 0.5  # thin: fraction of each expansion's channels kept
    widths: list[int] = field(default_factory=lambda: [48, 96, 96, 128, 128])  # light
    loss: str = "feature"  # codec fine-tuning distortion, as ``fcm train-codec --loss``
    deep_layer: str = DEFAULT_DEEP_LAYER
    lambda_scale: float | None = None  # default LAMBDA_SCALE[loss]


def train_direct(cfg: DirectTrainConfig, dataset, progress: bool = True, command: str | None = None) -> dict[str, Any]:
    """``dataset``: loaded from ``cfg.dataset`` by the caller (see ``bank.dataset_images``)."""
    torch.set_num_threads(cfg.threads)
    if not cfg.lambdas:
        raise ParameterError("lambdas must not be empty")
    if cfg.loss not in LOSSES:
        raise ParameterError(f"loss must be one of {', '.join(LOSSES)}, not {cfg.loss!r}")
    scale = LAMBDA_SCALE[cfg.loss] if cfg.lambda_scale is None else float(cfg.lambda_scale)
    if not (scale > 0 and math.isfinite(scale)):
        raise ParameterError(f"lambda scale must be a positive number, got {cfg.lambda_scale!r}")
    ft_epochs = cfg.finetune_epochs or cfg.epochs
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

    out = Path(cfg.out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    model = load_model(cfg.model)
    if cfg.loss == "deep":
        deep_fn(model, cfg.split, cfg.deep_layer)  # a bad --deep-layer fails before the bank is built
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
    mean, std = net0.feat_mean.clone(), net0.feat_std.clone()

    def norm(f: torch.Tensor) -> torch.Tensor:
        return (f.float() - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)

    # 1. distillation
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    if cfg.student == "thin":
        with torch.no_grad():  # calibration: 32 train samples spread over the bank
            calib = prefix(model, to_input(imgs[torch.arange(0, len(imgs), max(1, len(imgs) // 32))]))
            student = ThinStudent.from_teacher(model, cfg.split, cfg.keep, calib=calib, seed=cfg.seed)
        del calib
        sinfo: dict[str, Any] = {"kind": "thin", "output": "raw", "keep": cfg.keep, "specs": student.specs}
    elif cfg.student == "light":
        student = StudentTrunk(pre_shape, channels, tuple(cfg.widths))
        sinfo = {"kind": "light", "output": "normalized", "cin": int(pre_shape), "cout": int(channels),
                 "widths": list(cfg.widths)}
    else:
        raise ParameterError(f"student must be thin or light, not {cfg.student!r}")
    raw_out = sinfo["output"] == "raw"

    def student_norm(p: torch.Tensor) -> torch.Tensor:
        out = student(p)
        return norm(out) if raw_out else out

    student_path = out / STUDENT_FILE
    ckpt = out / "checkpoints" / "student.pt"
    distill_cpu = 0.0
    steps = max(1, len(feats) // cfg.batch_size)
    if cfg.resume and student_path.exists() and (out / "checkpoints" / "student.done").exists():
        student = load_student(student_path, sinfo)
        distill_cpu = float((out / "checkpoints" / "student.done").read_text() or 0)
    else:
        opt = torch.optim.Adam(student.parameters(), lr=cfg.lr)
        total = cfg.distill_epochs * steps
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)) * 0.95 + 0.05)
        start = 0
        if cfg.resume and ckpt.exists():
            start, distill_cpu = restore_train_state(ckpt, gen=gen, net=student, opt=opt, sched=sched)
        t0 = time.process_time()
        bar = tqdm(total=total, initial=start * steps, desc="direct: distil student", disable=not progress)
        for epoch in range(start, cfg.distill_epochs):
            perm = torch.randperm(len(feats), generator=gen)
            run = 0.0
            for s in range(steps):
                idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
                with torch.no_grad():
                    p = prefix(model, to_input(imgs[idx]))
                loss = F.mse_loss(student_norm(p), norm(feats[idx]))
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
        (out / "checkpoints" / "student.done").write_text(f"{distill_cpu:.1f}")
        student = load_student(student_path, sinfo)  # the stored (float16) one
    student.eval()
    with torch.no_grad():
        s_train = torch.cat([student_norm(prefix(model, to_input(imgs[i:i + 32]))) for i in range(0, len(imgs), 32)])
        s_val = torch.cat([student_norm(prefix(model, to_input(val_imgs[i:i + 32]))) for i in range(0, len(val_imgs), 32)])
    distill_val_mse = float(F.mse_loss(s_val, norm(val_feats)))

    # 2. per lambda: fine-tune the hyperprior codec on the student's outputs
    task_dist = raw_distortion(cfg.loss, model, cfg.model, cfg.split, cfg.deep_layer, feats)
    results = {}
    for n_done, lam in enumerate(sorted(cfg.lambdas, reverse=True)):
        final = out / "checkpoints" / f"lambda_{lam:g}.final.safetensors"
        if cfg.resume and final.exists():
            _, meta = load_weights(final)
            results[lam] = json.loads(meta["train"])
            continue
        torch.manual_seed(cfg.seed + 1 + n_done)
        net, _ = load_weights(init_dir / by_lambda[float(lam)]["file"])
        net.train()
        main = [p for k, p in net.named_parameters() if not k.endswith(".quantiles")]
        aux = [p for k, p in net.named_parameters() if k.endswith(".quantiles")]
        opt, aux_opt = torch.optim.Adam(main, lr=cfg.lr * 0.5), torch.optim.Adam(aux, lr=1e-3)
        total = ft_epochs * steps
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)) * 0.95 + 0.05)
        t0 = time.process_time()
        bar = tqdm(total=total, desc=f"direct lambda={lam:g}", disable=not progress)
        for _epoch in range(ft_epochs):
            perm = torch.randperm(len(feats), generator=gen)
            sums = np.zeros(2)
            for s in range(steps):
                idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
                src, target = s_train[idx], norm(feats[idx])
                y_hat, lik = net.entropy_forward(net.analysis(src))
                x_hat = net.synthesis(y_hat, h, w)
                rate = _rate_bits(lik) / target.numel()
                if task_dist is None:
                    dist = F.mse_loss(x_hat, target)
                else:  # against the teacher's features (what the detector saw uncompressed)
                    dist = task_dist(net.denormalize(x_hat), feats[idx].float())
                loss = rate + lam * scale * dist
                optimizer_step(net, loss, opt, sched, aux_opt)
                sums += (rate.item(), dist.item())
                bar.update(1)
                bar.set_postfix(bpv=f"{sums[0] / (s + 1):.3f}", mse=f"{sums[1] / (s + 1):.4f}")
        bar.close()
        net.eval()
        net.update(force=True, update_quantiles=True)
        info = {"lambda": lam, "epochs": ft_epochs, "init": portable(by_lambda[float(lam)]["file"]),
                "train_cpu_s": round(time.process_time() - t0, 1)}
        save_weights(net, final, {"train": info})
        net, _ = load_weights(final)
        net.update(force=True)
        bits, mses = [], []
        with torch.no_grad():
            for i in range(len(s_val)):
                c = net.compress_norm(s_val[i:i + 1])
                bits.append(len(c["strings"][0]) * 8)
                mses.append(float(F.mse_loss(net.normalize(c["x_hat"]), norm(val_feats[i:i + 1]))))
        info["val"] = {"bits_per_value": float(np.mean(bits)) / (channels * h * w), "mse_norm": float(np.mean(mses))}
        save_weights(net, final, {"train": info})
        results[lam] = info

    qualities = []
    for q, lam in enumerate(sorted(cfg.lambdas), start=1):
        net, _ = load_weights(out / "checkpoints" / f"lambda_{lam:g}.final.safetensors")
        dest = out / f"q{q}.safetensors"
        save_weights(net, dest, {"train": results[lam], "quality": q, "model": cfg.model, "split": cfg.split,
                                 "tensor": name, "shape": [channels, h, w], "arch": "direct"})
        data = dest.read_bytes()
        qualities.append({"quality": q, "lambda": lam, "file": dest.name, "sha256": hashlib.sha256(data).hexdigest(),
                          "size_bytes": len(data), "parameters": net.num_parameters(),
                          "train_cpu_s": results[lam]["train_cpu_s"], "val": results[lam].get("val")})
    sdata = student_path.read_bytes()
    s_macs = student_macs(student, model, (3, *imgs.shape[-2:]))
    manifest = {
        "format": 1, "arch": "direct", "model": cfg.model, "split": cfg.split, "tensor": name,
        "channels": int(channels), "shape": [int(channels), int(h), int(w)],
        "input_shape": [3, int(imgs.shape[-2]), int(imgs.shape[-1])],
        "lambdas": sorted(cfg.lambdas), "seed": cfg.seed, "command": command or "",
        "loss": cfg.loss, "deep_layer": cfg.deep_layer if cfg.loss == "deep" else None, "lambda_scale": scale,
        "init": portable(init_dir), "config": {k: v for k, v in asdict(cfg).items() if k not in ("resume", "out")},
        "student": {"file": STUDENT_FILE, "sha256": hashlib.sha256(sdata).hexdigest(), "size_bytes": len(sdata),
                    **sinfo, "parameters": sum(p.numel() for p in student.parameters()),
                    "prefix_stages": PREFIX_STAGES, "prefix_macs": prefix_macs(model), "trunk_macs": int(s_macs),
                    "distill_cpu_s": round(distill_cpu, 1), "distill_val_mse_norm": distill_val_mse},
        "train_cpu_s": round(distill_cpu + sum(r["train_cpu_s"] for r in results.values()), 1),
        "wall_s_this_run": round(time.perf_counter() - t_wall, 1),
        "cpu_s_this_run": round(time.process_time() - t_cpu0, 1),
        "threads": cfg.threads,
        "platform": f"{platform.machine()} {platform.python_version()} torch {torch.__version__}",
        "qualities": qualities,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
