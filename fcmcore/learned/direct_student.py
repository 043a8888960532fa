"""The direct-coding student: the network that replaces the detector's head on the edge
(architectures, the frozen stem it starts from, MACs, weights I/O). See ``direct`` for the
whole data flow."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import ParameterError, WeightsError
from ..models.base import INPUT
from ..models.ssd_mobilenet_v2 import same_pads

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


def student_macs(student: nn.Module, model, input_shape) -> int:
    from .models import count_macs  # why: learned.models needs CompressAI (optional); the direct codec lists without it

    with torch.no_grad():
        pre = prefix(model, torch.zeros(1, *input_shape))
        if isinstance(student, ThinStudent):
            student(pre)
            return student.macs()
        return count_macs(student, pre, student)


def save_student(net: nn.Module, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    state = {k: (v.half() if v.dim() == 4 else v).detach().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(tmp))
    os.replace(tmp, path)


def load_student(path: Path, info: dict[str, Any]) -> nn.Module:
    net = build_student(info)
    net.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return net


def start_from(student: nn.Module, sinfo: dict[str, Any], folder: Path) -> None:
    """Load the student of the direct weights in ``folder`` into ``student`` (same architecture)."""
    try:
        info = json.loads((folder / "manifest.json").read_text())["student"]
    except (OSError, ValueError, KeyError) as exc:
        raise WeightsError(f"--init-student {folder}: no direct manifest with a student ({exc})") from None
    keys = ("kind", "output", "specs", "cin", "cout", "widths")
    if any(info.get(k) != sinfo.get(k) for k in keys):
        raise ParameterError(f"--init-student {folder}: its student ({info.get('kind')}, keep {info.get('keep')}) "
                             f"is not this one ({sinfo['kind']}, keep {sinfo.get('keep')})")
    student.load_state_dict(load_student(folder / info["file"], info).state_dict())
