"""Connectors: small networks from the detector's decoded split tensor to an intermediate
tensor of a secondary-task network (the task network then finishes from that layer).

Two kinds, both ``nn.Module`` with the same file format (safetensors weights, JSON
metadata in the file's header):

* ``Connector`` (``kind="conv"``): conv 3x3 -> ReLU -> ``blocks`` inverted-residual blocks
  (1x1 expand, depthwise 3x3, 1x1 project, identity shortcut) on the input grid -> resize to
  the target grid -> conv 3x3 -> ReLU -> conv 1x1, trained by distillation
  (``fcmcore.tasks.training``);
* ``LinearProjection`` (``kind="linear"``): bilinear resize + one 1x1 linear channel map
  fitted by least squares on the same data: the "naive projection" a connector is
  compared with.

Bundled connectors live under ``assets/connectors/<detector>/<split>/<task>.safetensors``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import ParameterError, WeightsError
from ..paths import ASSETS_DIR

try:
    from safetensors import SafetensorError
except ImportError:  # older safetensors
    SafetensorError = RuntimeError

CONNECTOR_DIR = ASSETS_DIR / "connectors"
MAX_BYTES = 1_000_000  # the size limit a connector must respect (float32 weights)
# Default target layer of each task network (see docs/tasks.md for the choice).
DEFAULT_TARGETS = {"pose": "fpn", "classification": "blocks_11"}


class InvertedResidual(nn.Module):
    """x + project(relu(depthwise(relu(expand(x))))); the projection starts at zero, so a new
    block is the identity and training grows it from there."""

    def __init__(self, channels: int, expand: int = 2):
        super().__init__()
        wide = channels * expand
        self.expand = nn.Conv2d(channels, wide, 1)
        self.depthwise = nn.Conv2d(wide, wide, 3, padding=1, groups=wide)
        self.project = nn.Conv2d(wide, channels, 1)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(F.relu(self.depthwise(F.relu(self.expand(x)))))


class Connector(nn.Module):
    """Decoded split tensor (N, Cin, h, w) -> target tensor (N, Cout, H, W)."""

    kind = "conv"

    def __init__(self, cin: int, cout: int, out_hw: tuple[int, int], hidden: int = 96, mid: int | None = None,
                 in_scale: float = 1.0, skip: bool = True, blocks: int = 0, expand: int = 2):
        super().__init__()
        self.blocks, self.expand = int(blocks), int(expand)
        self.out_hw = tuple(int(v) for v in out_hw)
        self.cin, self.cout, self.hidden = int(cin), int(cout), int(hidden)
        self.in_scale = float(in_scale)  # 1 / std of the training inputs: unit-scale activations at init
        self.mid = int(mid) if mid else self.hidden  # channels after the resize (cost grows with the grid)
        self.conv_in = nn.Conv2d(cin, self.hidden, 3, padding=1)
        # the files of blocks=0 have no "body" weights: the attribute exists only with blocks
        if self.blocks:
            self.body = nn.Sequential(*(InvertedResidual(self.hidden, self.expand) for _ in range(self.blocks)))
        self.conv_mid = nn.Conv2d(self.hidden, self.mid, 3, padding=1)
        self.conv_out = nn.Conv2d(self.mid, cout, 1)
        # Linear path (resize + 1x1, fitted by least squares before training): the connector
        # starts as the naive projection and learns a residual on top of it.
        self.skip = LinearProjection(cin, cout, self.out_hw) if skip else None

    @torch.no_grad()
    def init_output(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Start at the least-squares projection (residual branch zero), or, without the
        linear path, at the targets' per-channel mean with a small residual."""
        if self.skip is not None:
            self.skip.fit(inputs, targets)
            self.conv_out.weight.zero_()
            self.conv_out.bias.zero_()
        else:
            self.conv_out.weight.mul_(0.1)
            self.conv_out.bias.copy_(targets.mean(dim=(0, 2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv_in(x * self.in_scale))
        if self.blocks:
            h = self.body(h)
        h = F.interpolate(h, size=self.out_hw, mode="bilinear", align_corners=False)
        y = self.conv_out(F.relu(self.conv_mid(h)))
        return y + self.skip(x) if self.skip is not None else y

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "cin": self.cin, "cout": self.cout, "out_hw": list(self.out_hw),
                "hidden": self.hidden, "mid": self.mid, "in_scale": self.in_scale, "skip": self.skip is not None,
                "blocks": self.blocks, "expand": self.expand}


class LinearProjection(nn.Module):
    """Bilinear resize to the target grid, then a per-pixel affine channel map (1x1)."""

    kind = "linear"

    def __init__(self, cin: int, cout: int, out_hw: tuple[int, int]):
        super().__init__()
        self.out_hw = tuple(int(v) for v in out_hw)
        self.cin, self.cout = int(cin), int(cout)
        self.proj = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.interpolate(x, size=self.out_hw, mode="bilinear", align_corners=False))

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "cin": self.cin, "cout": self.cout, "out_hw": list(self.out_hw)}

    @torch.no_grad()
    def fit(self, inputs: torch.Tensor, targets: torch.Tensor, ridge: float = 1e-3) -> None:
        """Least-squares fit of the 1x1 map on (resized inputs, targets) pixel pairs."""
        x = F.interpolate(inputs, size=self.out_hw, mode="bilinear", align_corners=False)
        x = x.permute(0, 2, 3, 1).reshape(-1, self.cin).double()
        y = targets.permute(0, 2, 3, 1).reshape(-1, self.cout).double()
        xa = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
        gram = xa.T @ xa
        gram += ridge * torch.eye(gram.shape[0], dtype=gram.dtype) * gram.diagonal().mean()
        sol = torch.linalg.solve(gram, xa.T @ y)  # (cin + 1, cout)
        self.proj.weight.copy_(sol[:-1].T.reshape(self.cout, self.cin, 1, 1).float())
        self.proj.bias.copy_(sol[-1].float())


def build(config: dict[str, Any]) -> nn.Module:
    kind = config.get("kind")
    hw = tuple(config["out_hw"])
    if kind == "conv":
        return Connector(config["cin"], config["cout"], hw, config.get("hidden", 96), config.get("mid"),
                         config.get("in_scale", 1.0), config.get("skip", False), config.get("blocks", 0),
                         config.get("expand", 2))
    if kind == "linear":
        return LinearProjection(config["cin"], config["cout"], hw)
    raise WeightsError(f"unknown connector kind {kind!r}")


def size_bytes(module: nn.Module) -> int:
    return sum(p.numel() * 4 for p in module.parameters())


def save(module: nn.Module, meta: dict[str, Any], path: str | Path) -> Path:
    """Weights + metadata (config, task, target split, detector split, command...) in one
    safetensors file, and a readable ``.json`` copy of the metadata beside it."""
    path = Path(path)
    if size_bytes(module) > MAX_BYTES:
        raise ParameterError(f"connector has {size_bytes(module):,} bytes of weights, over the {MAX_BYTES:,} limit")
    path.parent.mkdir(parents=True, exist_ok=True)
    full = {**meta, "config": module.config()}
    tensors = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    save_file(tensors, str(path), metadata={"fcm_connector": json.dumps(full)})
    path.with_suffix(".json").write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
    return path


def load(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """(connector in eval mode, its metadata)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"connector file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["fcm_connector"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        module = build(meta["config"])
        module.load_state_dict(tensors)
    except (KeyError, ValueError, RuntimeError, OSError, SafetensorError) as exc:
        raise WeightsError(f"not a valid connector file {path.name}: {exc}") from exc
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module, meta


def default_path(task: str, model: str = "ssd_mobilenet_v2", split: str = "expanded_conv_9",
                 kind: str = "conv") -> Path:
    name = task if kind == "conv" else f"{task}_linear"
    return CONNECTOR_DIR / model / split / f"{name}.safetensors"


def available(task: str, model: str = "ssd_mobilenet_v2", split: str = "expanded_conv_9", kind: str = "conv") -> bool:
    """Is a connector for (task, detector, split) bundled? (A viewer offers only what can run.)"""
    return default_path(task, model, split, kind).is_file()


_cache: dict[Path, tuple[nn.Module, dict[str, Any]]] = {}


def load_default(task: str, model: str = "ssd_mobilenet_v2", split: str = "expanded_conv_9",
                 kind: str = "conv") -> tuple[nn.Module, dict[str, Any]]:
    """The bundled connector for (detector, split, task), loaded once per process."""
    path = default_path(task, model, split, kind)
    if not path.is_file():
        raise WeightsError(f"no bundled {kind} connector for task {task} from {model} @ {split} "
                           f"(train one: fcm train-connector --task {task} --split {split} --out PATH)")
    if path not in _cache:
        _cache[path] = load(path)
    return _cache[path]
