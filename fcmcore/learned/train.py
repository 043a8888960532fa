"""Training the learned feature codecs (``fcm train-codec``).

Data: the *train* part of a dataset (``fcmcore.datasplit``: images sorted by id, every 4th
held out). Because that is small (72 images for coco96), each train image is augmented
``variants`` times and the head run once per variant: the "feature bank" (``bank``). The
val images are only used for the final report.

Loss per batch: ``R + lambda * D`` with R in bits per feature value (``-log2`` of the
likelihoods of y and z, divided by C*H*W of the split tensor) and D:

* ``feature``: MSE between normalised features (per-channel mean/std of the train bank);
* ``deep``: MSE at a deeper layer (default ``expanded_conv_12``) after running the frozen
  network remainder on the decoded features, normalised per channel by that layer's std;
* ``task``: the detector's outputs distilled, the task distortion the wrappers use too
  (``training.distortion.task_distortion``: Bernoulli KL of the class scores plus
  score-weighted smooth-L1 of the box regressions vs the uncompressed run, plus 0.1 x the
  feature MSE normalised by the bank's variance), the whole frozen tail run per batch.

The distortion is multiplied by ``lambda * lambda_scale``. The scale (default per loss,
``LAMBDA_SCALE``) makes the same nominal lambdas land at about the same rates whatever the
distortion's units: measured so the val bits of each loss at lambda 0.25 and 8 bracket the
feature-loss codec's (see ``assets/learned/losses/README.md``). The latent's initial gain
follows the nominal lambda (it is a rate knob).

One network per lambda. The highest lambda is trained from scratch for ``epochs`` (its
latent gain starts at ``initial_gain(lambda)``); each lower lambda starts from the previous
one, gains scaled by sqrt(lambda / previous lambda), and is fine-tuned for
``finetune_epochs`` (the usual warm start: it saves most of the CPU time). Adam, batch 8,
lr 2e-3 (warm starts 1e-3; gains x10), cosine decay, gradient norm clipped at 1, the
bottleneck quantiles by their auxiliary loss. Checkpoints every epoch
(``DIR/checkpoints``); ``resume=True`` continues from them and skips finished lambdas.
Outputs: ``DIR/q<i>.safetensors`` (i = 1 for the lowest lambda = fewest bits) and
``DIR/manifest.json``.

Long because: one trainer for four architectures, three losses and the ``--init`` warm start
(config and its checks, schedule, the loop, checkpoints, manifest); the losses themselves live
in ``losses``.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import ParameterError
from ..models import load_model
from ..paths import portable
from ..training import distortion as shared_distortion
from ..training import restore_train_state, save_train_state
from .bank import build_bank, trunk_name
from .losses import DEFAULT_DEEP_LAYER, LAMBDA_SCALE, LOSSES, deep_fn, raw_distortion  # noqa: F401 (re-exported)
from .models import ARCHS, CodecConfig, FeatureCodecNet, initial_gain
from .weights import init_from, load_stored_state, load_weights, save_weights, stored_state

MANIFEST = "manifest.json"


# ----- training -------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    dataset: str
    split: str
    arch: str
    lambdas: list[float]
    out: str
    loss: str = "feature"
    deep_layer: str = DEFAULT_DEEP_LAYER
    epochs: int = 10  # from scratch (highest lambda)
    finetune_epochs: int = 3  # each further lambda, warm-started
    seed: int = 0
    model: str = "ssd_mobilenet_v2"
    variants: int = 12
    batch_size: int = 8
    lr: float = 2e-3  # fine-tuning uses half
    N: int = 64
    M: int | None = None  # latent channels; default: the split tensor's channel count
    Nh: int = 64
    groups: list[int] | None = None  # context groups; default M/8, M/8, M/4, M/2
    down: int = 1
    resume: bool = False
    threads: int = 1
    half: bool = True  # store float16 weights
    init: str | None = None  # trained codec folder: each lambda starts from its model of that lambda
    max_steps: int | None = None  # cap on the optimiser steps of each lambda (short fine-tunes)
    lambda_scale: float | None = None  # distortion weight = lambda * this; default LAMBDA_SCALE[loss]

    def scale(self) -> float:
        return LAMBDA_SCALE[self.loss] if self.lambda_scale is None else float(self.lambda_scale)
    # --init only: learning-rate factor of the parameters the init codec did not provide (scar's new
    # transformer context), and optimiser steps during which the provided ones are held fixed
    init_new_lr: float = 1.0
    init_freeze_steps: int = 0
    init_heads: bool = False  # --init into scar: its new heads start at the latents' per-channel Gaussian

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise ParameterError(f"unknown architecture {self.arch!r}; known: {', '.join(ARCHS)}")
        if self.loss not in LOSSES:
            raise ParameterError(f"loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")
        if self.lambda_scale is not None and (not self.lambda_scale > 0 or not math.isfinite(self.lambda_scale)):
            raise ParameterError(f"lambda scale must be a positive number, got {self.lambda_scale!r}")
        if not self.lambdas or any(not (lam > 0) or not math.isfinite(lam) for lam in self.lambdas):
            raise ParameterError("lambdas must be positive numbers")
        if len(set(self.lambdas)) != len(self.lambdas):
            raise ParameterError("lambdas must be distinct")
        for name in ("epochs", "finetune_epochs", "variants", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ParameterError(f"{name} must be >= 1")
        if not (self.init_new_lr > 0) or not math.isfinite(self.init_new_lr):
            raise ParameterError("init_new_lr must be a positive number")
        if self.init_freeze_steps < 0:
            raise ParameterError("init_freeze_steps must be >= 0")
        if (self.init_new_lr != 1.0 or self.init_freeze_steps or self.init_heads) and not self.init:
            raise ParameterError("init_new_lr / init_freeze_steps / init_heads need --init (they act on the "
                                 "copied parameters)")
        if self.init_heads and self.arch != "scar":
            raise ParameterError("init_heads is for --arch scar (its heads are the new part)")


def _rate_bits(likelihoods: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(-torch.log2(v).sum() for v in likelihoods.values())


def optimizer_step(net: FeatureCodecNet, loss: torch.Tensor, opt, sched, aux_opt) -> None:
    """One rate-distortion step plus the entropy bottleneck's auxiliary (quantile) step."""
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    sched.step()
    aux = net.aux_loss()
    aux_opt.zero_grad()
    aux.backward()
    aux_opt.step()


def _checkpoint_path(out: Path, lam: float) -> Path:
    return out / "checkpoints" / f"lambda_{lam:g}.pt"


def _final_path(out: Path, lam: float) -> Path:
    return out / "checkpoints" / f"lambda_{lam:g}.final.safetensors"


def _init_model(folder: str, lam: float) -> FeatureCodecNet:
    manifest = json.loads((Path(folder) / MANIFEST).read_text())
    for q in manifest["qualities"]:
        if abs(q["lambda"] - lam) <= 1e-9 * lam:
            return load_weights(Path(folder) / q["file"])[0]
    have = ", ".join(f"{q['lambda']:g}" for q in manifest["qualities"])
    raise ParameterError(f"--init {folder} has no model for lambda {lam:g} (it has {have})")


def _make_net(cfg: TrainConfig, channels: int, mean: torch.Tensor, std: torch.Tensor) -> FeatureCodecNet:
    net = FeatureCodecNet(_codec_config(cfg, channels))
    net.feat_mean.copy_(mean)
    net.feat_std.copy_(std)
    return net


def default_groups(M: int) -> list[int]:
    """ELIC-like uneven groups: small ones first (cheap context for the rest)."""
    g = [max(1, M // 8), max(1, M // 8), max(1, M // 4)]
    return g + [M - sum(g)] if M - sum(g) > 0 else [M]


def _codec_config(cfg: TrainConfig, channels: int) -> CodecConfig:
    M = cfg.M or int(channels)
    groups = list(cfg.groups) if cfg.groups else default_groups(M)
    try:
        return CodecConfig(cfg.arch, int(channels), cfg.N, M, cfg.Nh, groups, cfg.down)
    except ValueError as exc:
        raise ParameterError(str(exc)) from None


GAIN_LR_FACTOR = 10.0  # the latent gain moves faster than the weights


def _optimizers(net: FeatureCodecNet, lr: float, new: set[str] | None = None, new_lr: float = 1.0):
    """Adam over the weights (lr), the latent gain (lr x GAIN_LR_FACTOR) and, when ``new`` names the
    parameters an --init codec did not provide, those in a third group at lr x ``new_lr``; plus the
    bottleneck quantiles' own Adam. Group order: weights, gain[, new]."""
    new = new or set()
    main = [p for n, p in net.named_parameters() if not n.endswith(".quantiles") and n != "log_gain" and n not in new]
    fresh = [p for n, p in net.named_parameters() if n in new]
    aux = [p for n, p in net.named_parameters() if n.endswith(".quantiles")]
    groups = [{"params": main, "lr": lr}, {"params": [net.log_gain], "lr": lr * GAIN_LR_FACTOR}]
    if fresh:
        groups.append({"params": fresh, "lr": lr * new_lr})
    return torch.optim.Adam(groups), torch.optim.Adam(aux, lr=1e-3)


def _schedule(opt, total: int, freeze: int = 0):
    """Cosine decay to 5 % over ``total`` steps for every group; with ``freeze`` > 0 (an
    ``_optimizers`` with a third, new-parameter group) the first two groups (the parameters
    copied from --init, and the gain) stay at lr 0 for the first ``freeze`` steps."""
    def cosine(s: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * min(s, total) / total)) * 0.95 + 0.05

    def held(s: int) -> float:
        # why: a fresh entropy model's first gradients would pull the trained transforms and gains
        # towards its poor prediction; they wait until it has caught up
        return 0.0 if s < freeze else cosine(s)

    if len(opt.param_groups) == 3:
        return torch.optim.lr_scheduler.LambdaLR(opt, [held, held, cosine])
    return torch.optim.lr_scheduler.LambdaLR(opt, cosine)


def _set_gain(net: FeatureCodecNet, lam: float, prev: FeatureCodecNet | None, prev_lam: float | None) -> None:
    """First model: the gain of ``initial_gain(lam)``; warm start: the previous gains scaled by
    sqrt(lam / prev_lam) (the quantiser step of the high-rate optimum goes as lam^-1/2)."""
    with torch.no_grad():
        if prev is None:
            net.log_gain.fill_(math.log(initial_gain(lam)))
        else:
            net.log_gain.add_(0.5 * math.log(lam / prev_lam))


@torch.no_grad()
def evaluate_val(net: FeatureCodecNet, val: torch.Tensor, deep=None, deep_std=None, task=None) -> dict[str, float]:
    """Real bitstreams on the val features: mean bytes, estimated bits, normalised MSE (and
    the training distortion of deep / task losses)."""
    net.eval()
    net.update(force=True)
    values = val[0].numel()
    bits, est, mse, dmse, tdist = [], [], [], [], []
    for i in range(val.shape[0]):
        x = val[i:i + 1].float()
        c = net.compress(x)
        bits.append(len(c["strings"][0]) * 8)
        est.append(sum(net.estimate_bits(x).values()))
        mse.append(float(F.mse_loss(net.normalize(c["x_hat"]), net.normalize(x))))
        if deep is not None:
            dmse.append(float(F.mse_loss(deep(c["x_hat"]) / deep_std, deep(x) / deep_std)))
        if task is not None:
            tdist.append(float(task(c["x_hat"], x)))
    out = {"bits_per_value": float(np.mean(bits)) / values, "bits_per_value_est": float(np.mean(est)) / values,
           "stream_bytes": float(np.mean(bits)) / 8, "mse_norm": float(np.mean(mse))}
    if dmse:
        out["deep_mse_norm"] = float(np.mean(dmse))
    if tdist:
        out["task_distortion"] = float(np.mean(tdist))
    return out


def train_codec(cfg: TrainConfig, dataset, progress: bool = True, command: str | None = None) -> dict[str, Any]:
    """Train one network per lambda on ``dataset`` (loaded from ``cfg.dataset``, see
    ``bank.dataset_images``); write the weights and the manifest; return the manifest."""
    cfg.validate()
    _codec_config(cfg, 64)  # bad widths or groups: fail before any work (the real C comes later)
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(cfg.model)
    name = trunk_name(model, cfg.split)
    if cfg.loss == "deep":
        deep_fn(model, cfg.split, cfg.deep_layer)  # a bad --deep-layer fails before the bank is built
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    bank = build_bank(cfg.model, dataset, cfg.split, cfg.variants, cfg.seed, progress=progress)
    bank_cpu = time.process_time() - t_cpu
    train = bank["train"]
    val = bank["val"]
    channels, h, w = train.shape[1:]
    tf = train.float()
    mean = tf.mean(dim=(0, 2, 3))
    std = tf.std(dim=(0, 2, 3)).clamp_min(1e-3)
    deep = deep_std = None
    if cfg.loss == "deep":
        deep, _ = deep_fn(model, cfg.split, cfg.deep_layer)
        with torch.no_grad():
            targets = torch.cat([deep(tf[i:i + 64]) for i in range(0, len(tf), 64)])
        deep_std = targets.std(dim=(0, 2, 3)).clamp_min(1e-3).view(1, -1, 1, 1)
        targets = targets.half()
    task = None
    if cfg.loss == "task":
        # why: the task distortion the wrappers train with too (one definition, fcmcore.training)
        task = shared_distortion.task_distortion(cfg.model, cfg.split, float(tf.var()))
    del tf
    scale = cfg.scale()

    order = sorted(cfg.lambdas, reverse=True)  # highest rate first, then warm starts
    results: dict[float, dict[str, Any]] = {}
    prev: FeatureCodecNet | None = None
    for n_done, lam in enumerate(order):
        final = _final_path(out, lam)
        epochs = cfg.epochs if n_done == 0 else cfg.finetune_epochs
        if cfg.resume and final.exists():
            net, meta = load_weights(final)
            results[lam] = json.loads(meta["train"])
            prev = net
            continue
        torch.manual_seed(cfg.seed + n_done)
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + n_done)
        net = _make_net(cfg, channels, mean, std)
        new: set[str] = set()
        if cfg.init:  # every lambda from the init codec's model of that lambda, `epochs` each
            epochs = cfg.epochs
            copied = set(init_from(net, _init_model(cfg.init, lam)))
            if cfg.init_heads and cfg.arch == "scar":
                with torch.no_grad():  # the init codec's latents of the first 256 bank samples
                    net.scar.init_heads(net.analysis(net.normalize(train[:256].float())))
            if cfg.init_new_lr != 1.0 or cfg.init_freeze_steps:
                new = {n for n, _ in net.named_parameters() if n not in copied and not n.endswith(".quantiles")}
        elif prev is not None:
            load_stored_state(net, stored_state(prev, half=False))
        if not cfg.init:
            _set_gain(net, lam, prev, order[n_done - 1] if n_done else None)
        opt, aux_opt = _optimizers(net, cfg.lr if prev is None and not cfg.init else cfg.lr * 0.5, new, cfg.init_new_lr)
        steps_per_epoch = max(1, len(train) // cfg.batch_size)
        if cfg.max_steps:
            steps_per_epoch = min(steps_per_epoch, cfg.max_steps)
            epochs = min(epochs, -(-cfg.max_steps // steps_per_epoch))
        total = epochs * steps_per_epoch
        sched = _schedule(opt, total, cfg.init_freeze_steps if new else 0)
        start_epoch, cpu_used = 0, 0.0
        ckpt = _checkpoint_path(out, lam)
        if cfg.resume and ckpt.exists():
            start_epoch, cpu_used = restore_train_state(ckpt, gen=gen, strict=False, net=net, opt=opt,
                                                        aux_opt=aux_opt, sched=sched)
        t0 = time.process_time()
        net.train()
        bar = tqdm(total=total, initial=start_epoch * steps_per_epoch, disable=not progress,
                   desc=f"{cfg.arch} lambda={lam:g}")
        log: dict[str, float] = {}
        for epoch in range(start_epoch, epochs):
            perm = torch.randperm(len(train), generator=gen)
            sums = np.zeros(3)
            for s in range(steps_per_epoch):
                idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
                x = train[idx].float()
                if cfg.loss != "deep":  # deep's targets are precomputed on the unflipped bank
                    flip = torch.rand(len(idx), generator=gen) < 0.5
                    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
                res = net(x)
                rate = _rate_bits(res["likelihoods"]) / x.numel()
                if cfg.loss == "feature":
                    dist = F.mse_loss(res["x_hat_norm"], res["x_norm"])
                elif cfg.loss == "task":
                    dist = task(res["x_hat"], x)
                else:
                    dist = F.mse_loss(deep(res["x_hat"]) / deep_std, targets[idx].float() / deep_std)
                loss = rate + lam * scale * dist
                optimizer_step(net, loss, opt, sched, aux_opt)
                sums += (loss.item(), rate.item(), dist.item())
                bar.update(1)
                bar.set_postfix(loss=f"{sums[0] / (s + 1):.3f}", bpv=f"{sums[1] / (s + 1):.3f}",
                                mse=f"{sums[2] / (s + 1):.4f}")
            log = {"loss": sums[0] / steps_per_epoch, "bits_per_value": sums[1] / steps_per_epoch,
                   "distortion": sums[2] / steps_per_epoch}
            save_train_state(ckpt, epoch=epoch + 1, cpu_s=cpu_used + time.process_time() - t0, gen=gen,
                             net=net, opt=opt, aux_opt=aux_opt, sched=sched)
        bar.close()
        cpu_used += time.process_time() - t0
        net.eval()
        net.update(force=True, update_quantiles=True)
        info = {"lambda": lam, "epochs": epochs, "warm_start": n_done > 0, "train_cpu_s": round(cpu_used, 1),
                "last_epoch": log}
        save_weights(net, final, {"train": info}, half=cfg.half)
        net, _ = load_weights(final)  # measure what is stored (float16 weights)
        info["val"] = evaluate_val(net, val, deep, deep_std, task)
        save_weights(net, final, {"train": info}, half=cfg.half)
        results[lam] = info
        prev = net
        if progress:
            print(f"  lambda {lam:g}: val {info['val']}", file=sys.stderr)

    # Publish: q1 = lowest lambda (fewest bits).
    qualities = []
    for q, lam in enumerate(sorted(cfg.lambdas), start=1):
        net, meta = load_weights(_final_path(out, lam))
        dest = out / f"q{q}.safetensors"
        meta_out = {"train": results[lam], "quality": q, "model": cfg.model, "split": cfg.split,
                    "tensor": name, "shape": [channels, h, w], "arch": cfg.arch, "loss": cfg.loss}
        save_weights(net, dest, meta_out, half=cfg.half)
        data = dest.read_bytes()
        qualities.append({"quality": q, "lambda": lam, "file": dest.name, "sha256": hashlib.sha256(data).hexdigest(),
                          "size_bytes": len(data), "parameters": net.num_parameters(), **{
                              k: results[lam][k] for k in ("epochs", "warm_start", "train_cpu_s")},
                          "val": results[lam].get("val")})
    manifest = {
        "format": 1,
        "arch": cfg.arch,
        "model": cfg.model,
        "split": cfg.split,
        "tensor": name,
        "channels": int(channels),
        "shape": [int(channels), int(h), int(w)],
        "lambdas": sorted(cfg.lambdas),
        "loss": cfg.loss,
        "deep_layer": cfg.deep_layer if cfg.loss == "deep" else None,
        "lambda_scale": scale,
        "init": portable_path(cfg.init),
        "seed": cfg.seed,
        "command": command or "",
        "config": {k: portable_path(v) if k in ("dataset", "init") else v
                   for k, v in asdict(cfg).items() if k not in ("resume", "out")},
        "codec_config": _codec_config(cfg, int(channels)).to_json(),
        "bank": {"train_samples": int(train.shape[0]), "train_images": bank["num_train_images"],
                 "val_images": bank["num_val_images"], "variants": bank["variants"], "cpu_s_this_run": round(bank_cpu, 1)},
        "train_cpu_s": round(sum(r["train_cpu_s"] for r in results.values()), 1),
        "wall_s_this_run": round(time.perf_counter() - t_wall, 1),
        "threads": cfg.threads,
        "platform": f"{platform.machine()} {platform.python_version()} torch {torch.__version__}",
        "qualities": qualities,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def portable_path(path: str | None) -> str | None:
    return portable(path) if path else None


def command_line() -> str:
    return "fcm " + " ".join(shlex.quote(portable(a)) for a in sys.argv[1:])
