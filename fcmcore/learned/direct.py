"""Direct coding: a light student from the model input straight to the coded split latent.

Edge side (what replaces the detector's head)::

    model input (1, 3, 300, 300)
      -> the detector's stem (Conv, expanded_conv: frozen, 37 M MACs)
      -> student: the detector's blocks up to the split with every expansion thinned to half
         its channels (119 M MACs instead of 238 M), initialised from the detector (channels
         with the largest weight norms; each projection refitted by least squares on 32 train
         samples, block by block) and then distilled: student(x) ~ head(x)
      -> the hyperprior codec's analysis (gain, g_a, h_a, h_s) -> one rANS stream

Server side: the hyperprior codec's decoder and synthesis give the split tensor, which the
detector's tail finishes. ``edge_macs()`` counts the stem, the student and the encoder.
(``--student light``, a from-scratch depthwise stack of ~41 M MACs, is also available; with
72 training images it only reached a normalised MSE of ~0.7: too little data to learn the
head from scratch.)

Training (``fcm train-direct``), on the augmented train bank (model inputs kept):

1. distillation: MSE between normalise(student(x)) and normalise(head(x)), ``distill_epochs``;
2. per lambda: start from the trained ``hyperprior`` codec of the same lambda and fine-tune
   it end to end on the frozen student's outputs with ``R + lambda * MSE(decoded,
   normalise(head(x)))``: its decoder learns to undo part of the student's error.

Weights: ``assets/learned/direct/student.safetensors`` + ``q<i>.safetensors`` (hyperprior
networks) + ``manifest.json``. Bitstream: the container of ``codec`` with codec id 4.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BitstreamError, ParameterError, WeightsError
from ..coding.base import MODEL_INPUT, Decoded, Encoded
from ..models.base import INPUT
from .codec import CODEC_IDS, LearnedCodecBase, learned_encoded, pack_stream

PREFIX_STAGES = 2  # Conv + expanded_conv of the detector, frozen (recorded in manifests)
PREFIX_CUT = "expanded_conv"  # the cut after those two stages
STUDENT_FILE = "student.safetensors"


def _dwsep(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin), nn.ReLU6(inplace=True),
        nn.Conv2d(cin, cout, 1), nn.ReLU6(inplace=True),
    )


class StudentTrunk(nn.Module):
    """(1, 16, 150, 150) prefix features -> (1, C, 19, 19) normalised split estimate."""

    def __init__(self, cin: int = 16, cout: int = 64, widths: tuple[int, ...] = (48, 96, 96, 128, 128)):
        super().__init__()
        w = list(widths)
        self.body = nn.Sequential(
            _dwsep(cin, w[0], 2),  # 75
            _dwsep(w[0], w[1], 2),  # 38
            _dwsep(w[1], w[2], 1),
            _dwsep(w[2], w[3], 2),  # 19
            _dwsep(w[3], w[4], 1),
        )
        self.out = nn.Conv2d(w[4], cout, 1)
        self.cin, self.cout, self.widths = cin, cout, w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


class _PConv(nn.Module):
    """A trainable copy of the detector's convolution (TF SAME padding, optional ReLU6)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, stride: int, groups: int, relu6: bool):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone().float())
        self.bias = nn.Parameter(bias.detach().clone().float())
        self.stride, self.groups, self.relu6 = int(stride), int(groups), bool(relu6)
        self.macs = 0  # of the last forward, per sample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from ..models.ssd_mobilenet_v2 import same_pads

        h, w = x.shape[-2:]
        k = self.weight.shape[-1]
        top, bottom = same_pads(h, k, self.stride)
        left, right = same_pads(w, k, self.stride)
        x = F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride, 0, 1, self.groups)
        oc, icg, kh, kw = self.weight.shape
        self.macs = x.shape[-1] * x.shape[-2] * oc * icg * kh * kw
        return F.relu6(x) if self.relu6 else x


class _PBlock(nn.Module):
    """An inverted residual block with a (possibly thinned) expansion."""

    def __init__(self, spec: dict[str, Any]):
        super().__init__()
        cin, mid, cout, stride = spec["cin"], spec["mid"], spec["cout"], spec["stride"]
        z = torch.zeros
        self.expand = _PConv(z(mid, cin, 1, 1), z(mid), 1, 1, True) if spec["expand"] else None
        self.depthwise = _PConv(z(mid, 1, 3, 3), z(mid), stride, mid, True)
        self.project = _PConv(z(cout, mid, 1, 1), z(cout), 1, 1, False)
        self.residual = bool(spec["residual"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(e))
        return x + y if self.residual else y


class ThinStudent(nn.Module):
    """The detector's blocks after the stem, up to the split, with each expansion thinned to
    ``keep`` of its channels (those with the largest expand x depthwise x project weight
    norms), initialised from the detector and then distilled. Output: the split tensor at the
    detector's own scale."""

    def __init__(self, specs: list[dict[str, Any]]):
        super().__init__()
        self.specs = [dict(s) for s in specs]
        self.blocks = nn.ModuleList(_PBlock(s) for s in specs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        return x

    def macs(self) -> int:
        """MACs of the last forward pass (per sample)."""
        return sum(m.macs for m in self.modules() if isinstance(m, _PConv))

    @classmethod
    def from_teacher(cls, model, split: str, keep: float, calib: torch.Tensor | None = None,
                     rows: int = 20000, seed: int = 0) -> "ThinStudent":
        """Thin the detector's blocks. With ``calib`` (prefix outputs of a few train images),
        each block's projection is then refitted by least squares so that the thinned block,
        fed the thinned student's own input, reproduces the detector's block output (channel
        pruning with reconstruction, block by block: errors do not compound)."""
        stages = student_stages(model, split)
        specs, weights = [], []
        for name in stages:
            st = model.stage_module(name)
            if not hasattr(st, "project"):
                raise ParameterError(f"direct: stage {name} is not an inverted residual block")
            dw, pr, ex = st.depthwise, st.project, st.expand
            mid = dw.weight.shape[0]
            score = dw.weight.flatten(1).norm(dim=1) * pr.weight.flatten(1).norm(dim=0)
            if ex is not None:
                score = score * ex.weight.flatten(1).norm(dim=1)
            k = mid if ex is None else max(8, int(round(mid * keep)))
            idx = torch.sort(torch.topk(score, k).indices).values
            cin = ex.weight.shape[1] if ex is not None else mid
            specs.append({"cin": int(cin), "mid": int(k), "cout": int(pr.weight.shape[0]), "stride": int(dw.stride),
                          "expand": ex is not None, "residual": bool(st.residual)})
            weights.append((ex, dw, pr, idx))
        net = cls(specs)
        with torch.no_grad():
            for blk, (ex, dw, pr, idx) in zip(net.blocks, weights):
                if ex is not None:
                    blk.expand.weight.copy_(ex.weight[idx])
                    blk.expand.bias.copy_(ex.bias[idx])
                blk.depthwise.weight.copy_(dw.weight[idx])
                blk.depthwise.bias.copy_(dw.bias[idx])
                blk.project.weight.copy_(pr.weight[:, idx])
                blk.project.bias.copy_(pr.bias)
            if calib is not None:
                gen = torch.Generator().manual_seed(seed)
                x_t = x_s = calib
                cuts = [PREFIX_CUT] + stages
                for j, blk in enumerate(net.blocks):
                    y_t = model.run_between({cuts[j]: x_t}, cuts[j], cuts[j + 1])[cuts[j + 1]]
                    e_s = blk.depthwise(blk.expand(x_s) if blk.expand is not None else x_s)
                    target = y_t - x_s if blk.residual else y_t
                    a_mat = e_s.permute(0, 2, 3, 1).reshape(-1, e_s.shape[1])
                    b_mat = target.permute(0, 2, 3, 1).reshape(-1, target.shape[1])
                    pick = torch.randperm(a_mat.shape[0], generator=gen)[:rows]
                    a_mat = torch.cat([a_mat[pick], torch.ones(len(pick), 1)], 1).double()
                    sol = torch.linalg.lstsq(a_mat, b_mat[pick].double(), driver="gelsd").solution  # (k+1, cout)
                    blk.project.weight.copy_(sol[:-1].T.float().reshape(blk.project.weight.shape))
                    blk.project.bias.copy_(sol[-1].float())
                    x_s, x_t = blk(x_s), y_t
        return net


def build_student(info: dict[str, Any]) -> nn.Module:
    if info.get("kind", "light") == "thin":
        return ThinStudent(info["specs"])
    return StudentTrunk(info["cin"], info["cout"], tuple(info["widths"]))


def prefix(model, x: torch.Tensor) -> torch.Tensor:
    """The detector's stages up to ``PREFIX_CUT`` (frozen; no gradient needed)."""
    return model.run_between({INPUT: x}, INPUT, PREFIX_CUT)[PREFIX_CUT]


def prefix_macs(model) -> int:
    return int(model.macs_between(INPUT, PREFIX_CUT))


def student_stages(model, split: str) -> list[str]:
    """The detector's stages the student replaces: after ``PREFIX_CUT`` up to ``split``."""
    cuts = model.cut_points()
    if PREFIX_CUT not in cuts:
        raise ParameterError(f"direct: model {model.name} has no stage {PREFIX_CUT!r}")
    return cuts[cuts.index(PREFIX_CUT) + 1: cuts.index(model.split_point(split).name) + 1]


# ----- the codec ------------------------------------------------------------------------------

class DirectCodec(LearnedCodecBase):
    """``direct``: model input -> coded split latent (see the module docstring)."""

    name = "direct"
    arch = "direct"
    description = ("direct coding: light student (detector stem + depthwise convs) from the image to the "
                   "split latent, coded with a hyperprior entropy model")
    consumes = MODEL_INPUT  # replaces the head: reads the model input, not the split tensors
    supports_images = False
    train_hint = "fcm train-direct"

    def __init__(self, weights_dir: str | Path | None = None):
        super().__init__(weights_dir)
        self._student: StudentTrunk | None = None

    def available(self) -> tuple[bool, str]:
        ok, reason = super().available()
        if ok and not (self.weights_dir / self.manifest.get("student", {}).get("file", STUDENT_FILE)).is_file():
            return False, f"student weights missing in {self.weights_dir}"
        return ok, reason

    def _student_net(self) -> StudentTrunk:
        with self._lock:
            if self._student is None:
                self.require_available()
                from safetensors.torch import load_file

                info = self.manifest["student"]
                path = self.weights_dir / info["file"]
                data = path.read_bytes()
                if info.get("sha256") and hashlib.sha256(data).hexdigest() != info["sha256"]:
                    raise WeightsError(f"codec direct: {path} does not match its manifest (sha256)")
                try:
                    net = build_student(info)
                    state = {k: v.float() for k, v in load_file(str(path)).items()}
                    net.load_state_dict(state)
                except Exception as exc:
                    raise WeightsError(f"codec direct: unusable student weights {path} ({exc})") from None
                self._student = net.eval()
            return self._student

    def _model(self):
        from ..models import load_model

        return load_model(self.manifest["model"])

    def _check_input(self, x) -> torch.Tensor:
        shape = tuple(self.manifest.get("input_shape", (3, 300, 300)))
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape) != (1, *shape) or not x.is_floating_point():
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ParameterError(f"direct: expects the {self.manifest['model']} input, a float (1, {', '.join(map(str, shape))}) "
                                 f"tensor; got {got}")
        if not torch.isfinite(x).all():
            raise ParameterError("direct: input contains NaN or infinity")
        return x.detach().float()

    def _student_normalized(self, x: torch.Tensor, net) -> torch.Tensor:
        s = self._student_net()(prefix(self._model(), x))
        return net.normalize(s) if self.manifest["student"].get("output") == "raw" else s

    def student_features(self, x: torch.Tensor, quality=None) -> torch.Tensor:
        """The student's estimate of the split tensor (detector scale, before coding)."""
        net = self._net(self.check_quality(quality))
        with torch.inference_mode():
            return net.denormalize(self._student_normalized(self._check_input(x), net))

    def encode(self, source: torch.Tensor, quality=None, *, channel_weights=None) -> Encoded:
        """``source``: the model input (1, 3, 300, 300), what the head would have seen."""
        q = self.check_quality(quality)
        self.require_available()
        x = self._check_input(source)
        net = self._net(q)
        with self._lock, torch.inference_mode():
            s = self._student_normalized(x, net)
            out = net.compress_norm(s)
            est = net.estimate_bits_norm(s)
        h, w = s.shape[-2:]
        data, header_bytes = pack_stream(CODEC_IDS["direct"], q, self._fingerprints[q], (s.shape[1], h, w), out["strings"])
        payload = float(sum(est.values()))
        return learned_encoded(data, header_bytes, q, payload, {self.manifest["tensor"]: out["x_hat"]}, out["y_hat"])

    def decode(self, bitstream: bytes) -> Decoded:
        data = bitstream

        def run():
            hdr, net = self._parse(data)
            c, h, w = hdr.shape
            m = self.manifest
            if [c, h, w] != list(m["shape"]):
                raise BitstreamError(f"direct: stream shape {c}x{h}x{w}, expected {'x'.join(map(str, m['shape']))}")
            with self._lock:
                out = self._decode_strings(net, hdr.strings, h, w)
            return Decoded(features={m["tensor"]: out["x_hat"]}, extra={"quality": hdr.quality, "y_hat": out["y_hat"]})

        return self._guarded_decode(run)

    def edge_macs(self, head_macs: int | None = None, quality: int | None = None) -> int:
        """MACs on the edge: detector stem + student + the codec's encoder (g_a, hyper-prior);
        the detector's head does not run (``head_macs`` is not counted)."""
        self.require_available()
        q = self.check_quality(quality)
        shape = tuple(self.manifest.get("input_shape", (3, 300, 300)))
        model = self._model()
        c, h, w = self.manifest["shape"]
        return prefix_macs(model) + student_macs(self._student_net(), model, shape) + self._net(q).encoder_macs(h, w)

    def to_json(self) -> dict[str, Any]:
        d = super().to_json()
        if self._manifest is not None:
            d["input_shape"] = self._manifest.get("input_shape")
        return d


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


def student_macs(student: nn.Module, model, input_shape) -> int:
    from .models import count_macs

    with torch.no_grad():
        pre = prefix(model, torch.zeros(1, *input_shape))
        if isinstance(student, ThinStudent):
            student(pre)
            return student.macs()
        return count_macs(student, pre, student)


def _save_student(net: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    state = {k: (v.half() if v.dim() == 4 else v).detach().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(tmp))
    os.replace(tmp, path)


def _load_student(path: Path, info: dict[str, Any]) -> nn.Module:
    from safetensors.torch import load_file

    net = build_student(info)
    net.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return net


def train_direct(cfg: DirectTrainConfig, progress: bool = True, command: str | None = None) -> dict[str, Any]:
    from tqdm import tqdm

    from ..models import load_model
    from .codec import learned_root
    from ..paths import portable
    from .train import _rate_bits, build_bank, load_weights, optimizer_step, save_weights

    torch.set_num_threads(cfg.threads)
    if not cfg.lambdas:
        raise ParameterError("lambdas must not be empty")
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
    t_wall, t_cpu0 = time.perf_counter(), time.process_time()
    bank = build_bank(cfg.model, cfg.dataset, cfg.split, cfg.variants, cfg.seed, keep_images=True, progress=progress)
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
        student = _load_student(student_path, sinfo)
        distill_cpu = float((out / "checkpoints" / "student.done").read_text() or 0)
    else:
        opt = torch.optim.Adam(student.parameters(), lr=cfg.lr)
        total = cfg.distill_epochs * steps
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)) * 0.95 + 0.05)
        start = 0
        if cfg.resume and ckpt.exists():
            st = torch.load(ckpt, weights_only=False)
            student.load_state_dict(st["net"])
            opt.load_state_dict(st["opt"])
            sched.load_state_dict(st["sched"])
            gen.set_state(st["gen"])
            start, distill_cpu = st["epoch"], st["cpu_s"]
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
            torch.save({"net": student.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "gen": gen.get_state(), "epoch": epoch + 1,
                        "cpu_s": distill_cpu + time.process_time() - t0}, ckpt)
        bar.close()
        distill_cpu += time.process_time() - t0
        _save_student(student, student_path)
        (out / "checkpoints" / "student.done").write_text(f"{distill_cpu:.1f}")
        student = _load_student(student_path, sinfo)  # the stored (float16) one
    student.eval()
    with torch.no_grad():
        s_train = torch.cat([student_norm(prefix(model, to_input(imgs[i:i + 32]))) for i in range(0, len(imgs), 32)])
        s_val = torch.cat([student_norm(prefix(model, to_input(val_imgs[i:i + 32]))) for i in range(0, len(val_imgs), 32)])
    distill_val_mse = float(F.mse_loss(s_val, norm(val_feats)))

    # 2. per lambda: fine-tune the hyperprior codec on the student's outputs
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
                dist = F.mse_loss(x_hat, target)
                loss = rate + lam * dist
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
