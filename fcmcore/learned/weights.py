"""Stored weights of the learned codecs: which tensors a file holds, and the safetensors
files themselves (one sorted-JSON metadata key, so the same weights give the same bytes).

``stored_state`` keeps the learned tensors only (4-D kernels in float16 when ``half``) and
``load_stored_state`` loads them back strictly; ``save_weights`` / ``load_weights`` write and
read a network with its ``CodecConfig`` in the metadata; ``init_from`` copies what fits from
another architecture (``fcm train-codec --init``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .models import CodecConfig, FeatureCodecNet


# Buffers rebuilt by update() or constants set by the layers' constructors (likelihood and
# scale bounds, GDN pedestals, the bottleneck's quantile targets, masks): not stored, so a
# stored file cannot change them (float16 would turn the 1e-9 likelihood bound into 0).
_DERIVED = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table", "scale_bound", "target", "pedestal")
_DERIVED_SUFFIX = (".bound", ".mask", "mask")


def _derived(key: str) -> bool:
    last = key.rsplit(".", 1)[-1]
    return last in _DERIVED or key.endswith(_DERIVED_SUFFIX)


def stored_state(net: nn.Module, half: bool = True) -> dict[str, Tensor]:
    """Learned tensors only; convolution kernels (4-D) in float16 when ``half``, the rest
    (biases, GDN, entropy models, gains, normalisation) in float32."""
    out = {}
    for k, v in net.state_dict().items():
        if _derived(k):
            continue
        v = v.detach().contiguous()
        if half and v.is_floating_point() and v.dim() == 4:
            v = v.half()
        out[k] = v
    return out


def load_stored_state(net: nn.Module, state: dict[str, Tensor]) -> None:
    """Load a ``stored_state`` dict; raises ValueError on missing/unexpected keys or shapes.
    Derived or constant buffers found in the file are ignored (the network's own are kept)."""
    own = net.state_dict()
    state = {k: v for k, v in state.items() if not _derived(k)}
    expected = {k for k in own if not _derived(k)}
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise ValueError(f"missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(f"{k}: stored shape {tuple(v.shape)}, network has {tuple(own[k].shape)}")
    full = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    nn.Module.load_state_dict(net, full, strict=False)


def config_json(cfg: CodecConfig) -> str:
    return json.dumps(cfg.to_json(), sort_keys=True)


def save_weights(net: FeatureCodecNet, path: Path, meta: dict[str, Any], half: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in meta.items()}
    metadata["config"] = json.dumps(net.cfg.to_json(), sort_keys=True)
    tmp = path.with_suffix(".tmp")
    # One metadata key holding sorted JSON: safetensors writes several keys in a random order,
    # which would make the same weights give different file bytes (and sha256).
    save_file(stored_state(net, half=half), str(tmp), metadata={"fcm": json.dumps(metadata, sort_keys=True)})
    os.replace(tmp, path)


def read_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    return json.loads(meta["fcm"]) if "fcm" in meta else meta


def load_weights(path: Path) -> tuple[FeatureCodecNet, dict[str, str]]:
    """Network and metadata from a weights file (raises ValueError/OSError when broken)."""
    meta = read_metadata(path)
    if "config" not in meta:
        raise ValueError("no codec config in the weights' metadata")
    net = FeatureCodecNet(CodecConfig.from_json(json.loads(meta["config"])))
    load_stored_state(net, load_file(str(path)))
    net.eval()
    return net, meta


# Parameter names of one architecture inside another (context's hyperprior and LRP are scar's).
_RENAMES = {("context", "scar"): (("hyper.", "scar.hyper."), ("lrp.", "scar.lrp."))}


def init_from(net: FeatureCodecNet, src: FeatureCodecNet) -> list[str]:
    """Copy every parameter/buffer of ``src`` whose (renamed) name and shape ``net`` has;
    returns the names copied. The rest of ``net`` keeps its fresh initialisation."""
    renames = _RENAMES.get((src.cfg.arch, net.cfg.arch), ())
    own = net.state_dict()
    take = {}
    for k, v in stored_state(src, half=False).items():
        for old, new in renames:
            if k.startswith(old):
                k = new + k[len(old):]
                break
        if k in own and tuple(own[k].shape) == tuple(v.shape):
            take[k] = v.float() if v.is_floating_point() else v
    torch.nn.Module.load_state_dict(net, take, strict=False)
    return sorted(take)
