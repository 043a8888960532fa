"""Training connectors by distillation (``fcm train-connector``).

Data: the dataset's train images (``datasplit.split_train_val``: every 4th image by id is
validation and never trained on), each plus ``augment`` random views (flip, crop of
50-100 % of the area; ``training.augment``, recipe "crop50"). For every view the bank holds the
detector's split tensor (the connector's input) and the frozen task network's tensor at
the target layer (the feature teacher) on the *same* view.

Loss = feature term (MSE at the target layer / the teacher's variance) + output term
through the frozen rest of the task network:

* pose: MSE of keypoint heatmaps and of the person-centre map (each over its teacher's
  variance) + L1 of keypoint offsets weighted by the teacher heatmap;
* classification: KL(teacher softmax || student softmax) on the logits.

The connector's input gets the proxy-codec noise the wrappers train with
(``training.proxy``): uniform noise of step ``range / 2**b`` per sample, ``b`` drawn in
[3.5, 7] bits, i.e. min-max packing from near lossless down to where detection breaks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ParameterError
from ..models import load_model
from ..models.task_network import TaskNetwork, load_task_network
from ..training import augment as augment_view
from ..training import collect_views, feature_extractor, log_every, proxy_noise, single_tensor, train_val_records
from ..training.unlabelled import unlabelled_images
from .connectors import DEFAULT_TARGETS, Connector, LinearProjection

KINDS = ("conv", "linear")


@dataclass
class TaskBank:
    inputs: torch.Tensor  # (N, Cin, h, w) detector split tensors
    targets: torch.Tensor  # (N, Cout, H, W) task network tensors at the target layer
    val_inputs: torch.Tensor
    val_targets: torch.Tensor
    train_images: int
    val_images: int


def build_bank(dataset, task: str, target: str, model_name: str, split: str,
               augment: int = 3, seed: int = 0, log: Callable[[str], None] | None = print,
               extra: Sequence[str] = (), extra_views: int = 1, frame_step: int = 10) -> TaskBank:
    """``dataset``: a loaded ``fcmcore.evaluate.Dataset`` (the command loads it, so training
    never imports the evaluation stage). Layout: image by image, the plain view then its
    ``augment`` random views ("crop50", ``training.augment``); then the unlabelled images of
    ``extra`` (``training.unlabelled``: files, folders, video frames every ``frame_step``),
    each with ``extra_views`` random views, drawn from the same rng after the dataset's."""
    detector = load_model(model_name)
    tensor = single_tensor(detector, split, "connectors")
    net = load_task_network(task)
    net.split(target)  # UnknownNameError early
    train, val = train_val_records(dataset)
    head = feature_extractor(detector, split, tensor)

    def pair(image) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            b = net.features(image, target)[0].clone()
        return head(image), b

    per_image = collect_views(train, pair, augment, np.random.default_rng(seed), "crop50",
                              log_every(24, log, "bank", time.perf_counter()))
    rng_extra = np.random.default_rng([seed, 1])
    t0 = time.perf_counter()
    for k, (_, image) in enumerate(unlabelled_images(extra, frame_step)):
        per_image.append([pair(image)] + [pair(augment_view(image, rng_extra, "crop50")) for _ in range(extra_views)])
        if log and (k + 1) % 50 == 0:
            log(f"  bank: {k + 1} unlabelled images ({time.perf_counter() - t0:.0f} s)")
    ins, outs = zip(*(p for views in per_image for p in views))
    vin, vout = zip(*(views[0] for views in collect_views(val, pair)))
    return TaskBank(torch.stack(ins), torch.stack(outs), torch.stack(vin), torch.stack(vout), len(train), len(val))


def _fc_output(net: TaskNetwork) -> int:
    ops = [op for op in net.file.operators if op.kind == "FULLY_CONNECTED"]
    if len(ops) != 1:
        raise ParameterError(f"{net.name}: expected one FULLY_CONNECTED layer (the logits)")
    return ops[0].outputs[0]


def output_loss(net: TaskNetwork, target: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """-> f(student tensor, teacher tensor) at ``target`` -> output-distillation term."""
    if net.task == "pose":
        def pose_loss(y_hat, y):
            with torch.no_grad():
                t = net.heads(net.raw_from_split(y, target))
            s = net.heads(net.raw_from_split(y_hat, target))
            heat = F.mse_loss(s["heatmap"], t["heatmap"]) / t["heatmap"].var().clamp_min(1e-8)
            centre = F.mse_loss(s["centre"], t["centre"]) / t["centre"].var().clamp_min(1e-8)
            w = t["heatmap"].repeat_interleave(2, dim=-1)  # (N, 48, 48, 34): y, x per keypoint
            off = (w * (s["offset"] - t["offset"]).abs()).sum() / w.sum().clamp_min(1e-6)
            return heat + 0.5 * centre + 0.5 * off
        return pose_loss
    logits = _fc_output(net)

    def cls_loss(y_hat, y):
        with torch.no_grad():
            t = net.raw_from_split(y, target, [logits])[logits]
        s = net.raw_from_split(y_hat, target, [logits])[logits]
        return F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), reduction="batchmean", log_target=True)
    return cls_loss


def train_connector(bank: TaskBank, task: str, target: str, *, kind: str = "conv", epochs: int = 6,
                    batch: int = 8, lr: float = 2e-3, hidden: int = 96, mid: int | None = None,
                    blocks: int = 0, skip: bool | None = None,
                    output_weight: float = 1.0, seed: int = 0, log: Callable[[str], None] | None = print):
    """-> (connector, history). ``kind="linear"`` fits the naive projection instead."""
    if kind not in KINDS:
        raise ParameterError(f"--kind must be one of {', '.join(KINDS)}, not {kind!r}")
    torch.manual_seed(seed)
    _, cin, _, _ = bank.inputs.shape
    _, cout, h, w = bank.targets.shape
    t0 = time.perf_counter()
    if kind == "linear":
        proj = LinearProjection(cin, cout, (h, w))
        proj.fit(bank.inputs, bank.targets)
        return proj, {"val_feature_nmse": _val_nmse(proj, bank), "seconds": time.perf_counter() - t0}
    net = load_task_network(task)
    connector = Connector(cin, cout, (h, w), hidden, mid, in_scale=1.0 / float(bank.inputs.std()),
                          skip=True if skip is None else skip, blocks=blocks)
    connector.init_output(bank.inputs, bank.targets)
    out_loss = output_loss(net, target)
    var = float(bank.targets.var())
    opt = torch.optim.Adam(connector.parameters(), lr=lr)
    n = bank.inputs.shape[0]
    steps = epochs * math.ceil(n / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    for epoch in range(epochs):
        connector.train()
        order = torch.randperm(n, generator=gen)
        total = feat_total = 0.0
        for k in range(0, n, batch):
            idx = order[k:k + batch]
            x = proxy_noise(bank.inputs[idx], gen)
            y = bank.targets[idx]
            y_hat = connector(x)
            feat = F.mse_loss(y_hat, y) / var
            loss = feat + output_weight * out_loss(y_hat, y) if output_weight else feat
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            feat_total += float(feat.detach()) * len(idx)
        connector.eval()
        row = {"epoch": epoch + 1, "loss": total / n, "feature_nmse": feat_total / n,
               "val_feature_nmse": _val_nmse(connector, bank), "seconds": time.perf_counter() - t0}
        history.append(row)
        if log:
            log(f"  epoch {epoch + 1}/{epochs}: loss {row['loss']:.4f}, feature NMSE {row['feature_nmse']:.3f}, "
                f"val {row['val_feature_nmse']:.3f} ({row['seconds']:.0f} s)")
    return connector, {"history": history, "seconds": time.perf_counter() - t0}


@torch.no_grad()
def _val_nmse(module, bank: TaskBank) -> float:
    pred = module(bank.val_inputs)
    return float(F.mse_loss(pred, bank.val_targets) / bank.val_targets.var())


def default_target(task: str) -> str:
    if task not in DEFAULT_TARGETS:
        raise ParameterError(f"--task must be one of {', '.join(DEFAULT_TARGETS)}, not {task!r}")
    return DEFAULT_TARGETS[task]


def meta_for(task: str, target: str, model: str, split: str, kind: str, bank: TaskBank, seed: int,
             command: str, dataset: str, extra: dict[str, Any]) -> dict[str, Any]:
    net = load_task_network(task)
    return {"task": task, "network": net.name, "target": target, "model": model, "split": split,
            "kind": kind, "seed": int(seed), "command": command, "dataset": Path(dataset).name,
            "train_images": bank.train_images, "train_views": int(bank.inputs.shape[0]),
            "val_images": bank.val_images, "fake_quant": bool(net.graph.fake_quant), **extra}
