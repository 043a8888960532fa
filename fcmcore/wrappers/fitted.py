"""Fitted wrappers: the shared part of ``truncate``, ``pca`` and ``learned``.

A fitted wrapper acts on one tensor of the split (the trunk, e.g. ``expanded_conv_9``,
1 x C x H x W) and replaces it by a reduced tensor of the **same name** (1 x k x H' x W');
any other tensor crossing the split passes through untouched.

**File format**: one ``.safetensors`` file holds everything. Its tensors are the fitted
parameters (``pca.mean``, ``learned.pre.*`` ...) and, optionally, the fixed WA-RDO
importance weights ``importance.<target>`` (k values each, see ``importance``); its
string metadata holds one key, ``fcm_wrapper``, a JSON object::

    {"format": 1, "method": "pca", "model": "ssd_mobilenet_v2", "split": "expanded_conv_9",
     "tensor": "expanded_conv_9", "channels_in": 64, "channels_out": 16, "k": 16,
     "height": 19, "width": 19, "seed": 0, "command": "fcm train-wrapper ...",
     "rdo_weights": "task", ...}

Keeping the metadata inside the weights file means one file = one identity (the result
cache hashes the file). ``save`` also writes the same JSON beside it (``PATH.json``) for
people to read; loading ignores that copy.

Loading checks everything a user can get wrong and raises ``WeightsError`` with one line:
missing or unreadable file, not a safetensors file, no FCM metadata, a file of another
method, model, split or channel count, parameter shapes that do not fit.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import ParameterError, WeightsError
from ..imageio import check_regular_file
from ..models import load_model
from ..models.base import Features
from ..paths import ASSETS_DIR
from .base import FeatureWrapper
from .importance import WEIGHT_KINDS, WEIGHT_SOURCES, WEIGHT_TARGETS, estimate_maps, weights_of_kind

FORMAT = 1
META_KEY = "fcm_wrapper"
IMPORTANCE_PREFIX = "importance."
MAP_PREFIX = "importance_map."  # fixed per-sample maps (k, h, w), for spatial weights
# rdo_weights: "<target>" uses the fixed weights saved in the file (averaged over training
# data); "image-<target>" re-estimates them on each image's reduced tensor.
RDO_WEIGHT_MODES = WEIGHT_TARGETS + tuple(f"image-{t}" for t in WEIGHT_TARGETS)
WRAPPERS_DIR = ASSETS_DIR / "wrappers"


def default_path(method: str, model: str, split: str) -> Path:
    """Where the bundled wrapper ``method`` for ``model`` at ``split`` lives."""
    return WRAPPERS_DIR / model / split / f"{method}.safetensors"


class FittedWrapper(FeatureWrapper):
    """Base of the wrappers with fitted state. Subclasses implement ``encode``/``decode``
    (reduced <-> trunk tensor, batched, differentiable) and ``state``/``from_state``."""

    method: str = ""

    def __init__(self, meta: dict[str, Any], importance: dict[str, torch.Tensor] | None = None):
        self.meta = dict(meta)
        self.name = self.method
        self.tensor: str = self.meta["tensor"]
        self.channels_in: int = int(self.meta["channels_in"])
        self.k: int = int(self.meta["k"])
        self.importance: dict[str, torch.Tensor] = dict(importance or {})
        # fixed per-sample importance maps (k, h, w) by target (``importance.hutchinson_maps``);
        # loaded from ``importance_map.<target>`` tensors, see ``split_tensors``
        self.importance_maps: dict[str, torch.Tensor] = {}
        self.rdo_weights: str = self.meta.get("rdo_weights", "post")
        self.path: Path | None = None

    # -- the math (batched, differentiable) --------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def post_is_linear(self) -> bool:
        """True when ``decode`` is affine per pixel (importance = squared column norms)."""
        return False

    def state(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # -- the FeatureWrapper interface --------------------------------------------------------
    def _get(self, features: Features, channels: int, what: str) -> torch.Tensor:
        if not isinstance(features, dict) or self.tensor not in features:
            got = sorted(features) if isinstance(features, dict) else type(features).__name__
            raise ParameterError(f"wrapper {self.method}: expects tensor {self.tensor!r}, got {got}")
        t = features[self.tensor]
        if t.dim() != 4 or t.shape[1] != channels:
            raise ParameterError(
                f"wrapper {self.method}: {what} tensor {self.tensor!r} has shape {tuple(t.shape)}, "
                f"expected {channels} channels (fitted for {self.meta['model']} @ {self.meta['split']})")
        return t

    def pre(self, features: Features) -> Features:
        x = self._get(features, self.channels_in, "input")
        out = dict(features)
        with torch.no_grad():
            out[self.tensor] = self.encode(x.float())
        return out

    def post(self, reduced: Features) -> Features:
        z = self._get(reduced, self.k, "reduced")
        out = dict(reduced)
        with torch.no_grad():
            out[self.tensor] = self.decode(z.float())
        return out

    def channel_weights(self, reduced: Features) -> dict[str, np.ndarray] | None:
        """WA-RDO importance of each coded channel (mean 1), per ``rdo_weights``."""
        return self.importance_weights(reduced, "channel", "wrapper")

    def importance_weights(self, reduced: Features, kind: str = "channel", source: str = "wrapper"
                           ) -> dict[str, np.ndarray]:
        """WA-RDO importance (mean 1) of ``kind`` (channel: (k,), spatial: (h, w), both:
        (k, h, w)) from ``source``: ``fixed`` = saved with the wrapper (averaged over its
        training images), ``image`` = re-estimated on this image's reduced tensor,
        ``wrapper`` = as the file's ``rdo_weights`` says. The target (post/deep/task) is the
        file's ``rdo_weights`` without its ``image-`` prefix."""
        if kind not in WEIGHT_KINDS:
            raise ParameterError(f"--wa-weights must be one of {', '.join(WEIGHT_KINDS)}, not {kind!r}")
        if source not in WEIGHT_SOURCES:
            raise ParameterError(f"--wa-source must be one of {', '.join(WEIGHT_SOURCES)}, not {source!r}")
        mode = self.rdo_weights
        target = mode[len("image-"):] if mode.startswith("image-") else mode
        per_image = source == "image" or (source == "wrapper" and mode.startswith("image-"))
        if kind == "channel" and not per_image:
            w = self._fixed_channel(target)
            return {self.tensor: w / w.mean()}
        if per_image:
            z = self._get(reduced, self.k, "reduced")
            m = self._image_map(z, target)
        elif target in self.importance_maps:
            m = self.importance_maps[target].double().numpy()
        else:
            raise WeightsError(f"wrapper file has no fixed {target!r} importance map (spatial weights): add one with "
                               "`python benchmarks/wa_importance.py --attach`, or use --wa-source image")
        return {self.tensor: weights_of_kind(m, kind)}

    def _image_map(self, z: torch.Tensor, target: str) -> np.ndarray:
        """Per-image map of ``z`` (4 probes, seed 0: deterministic), remembered for the last few
        tensors: a sweep codes one image at several QPs from the same reduced tensor."""
        key = (target, hashlib.sha1(z.detach().float().contiguous().numpy().tobytes()).hexdigest())
        hit = self._image_maps.get(key) if hasattr(self, "_image_maps") else None
        if hit is not None:
            return hit
        with torch.inference_mode(False):  # the pipeline runs under inference mode: autograd is needed here
            m = estimate_maps(self, [z.detach().clone().float()], target=target, probes=4, seed=0)
        cache = self.__dict__.setdefault("_image_maps", {})
        if len(cache) >= 8:
            cache.pop(next(iter(cache)))
        cache[key] = m
        return m

    def _fixed_channel(self, target: str) -> np.ndarray:
        if target in self.importance:
            return self.importance[target].double().numpy()
        if target == "post" and self.post_is_linear():
            return self.column_norms2()
        raise WeightsError(f"wrapper file has no {target!r} importance weights (retrain or pick another rdo_weights)")

    def column_norms2(self) -> np.ndarray:
        """Squared column norms of an affine post-wrapper's matrix (C x k)."""
        raise NotImplementedError

    # -- saving ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"{self.method}.{k}": v.detach().float().contiguous() for k, v in self.state().items()}
        for target, w in self.importance.items():
            tensors[IMPORTANCE_PREFIX + target] = torch.as_tensor(w, dtype=torch.float32).contiguous()
        for target, m in self.importance_maps.items():
            tensors[MAP_PREFIX + target] = torch.as_tensor(m, dtype=torch.float32).contiguous()
        meta = dict(self.meta, format=FORMAT, method=self.method, rdo_weights=self.rdo_weights)

        save_file(tensors, str(path), metadata={META_KEY: json.dumps(meta, sort_keys=True)})
        path.chmod(0o644)  # safetensors creates files readable by the owner only
        sidecar = path.with_name(path.name + ".json")
        sidecar.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        self.meta = meta
        self.path = path
        return path


MAX_WRAPPER_BYTES = 1 << 30  # wrappers are a few MB; safetensors maps the file, never unpickles


def read_file(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(metadata, tensors) of a wrapper file; WeightsError for anything unreadable."""
    p = Path(path).expanduser()
    check_regular_file(p, MAX_WRAPPER_BYTES, label=f"wrapper file {p}", error=WeightsError)
    try:
        with safe_open(str(p), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except WeightsError:
        raise
    except Exception as exc:  # safetensors raises its own types on garbage
        msg = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"wrapper file {p}: not a readable safetensors file ({msg})") from None
    if raw is None:
        raise WeightsError(f"wrapper file {p}: no FCM wrapper metadata (not made by `fcm train-wrapper`)")
    try:
        meta = json.loads(raw)
        if not isinstance(meta, dict):
            raise ValueError
    except ValueError:
        raise WeightsError(f"wrapper file {p}: corrupt metadata") from None
    if meta.get("format") != FORMAT:
        raise WeightsError(f"wrapper file {p}: format {meta.get('format')!r}, this version reads {FORMAT}")
    for key in ("method", "model", "split", "tensor", "channels_in", "k"):
        if key not in meta:
            raise WeightsError(f"wrapper file {p}: metadata lacks {key!r}")
    for t in tensors.values():
        if not torch.isfinite(t).all():
            raise WeightsError(f"wrapper file {p}: parameters hold NaN or infinite values")
    return meta, tensors


def copy_with_rdo_weights(src: str | Path, out: str | Path, rdo_weights: str) -> Path:
    """Copy wrapper file ``src`` to ``out`` with another ``rdo_weights`` (same parameters)."""
    if rdo_weights not in RDO_WEIGHT_MODES:
        raise ParameterError(f"rdo_weights must be one of {', '.join(RDO_WEIGHT_MODES)}, not {rdo_weights!r}")
    meta, tensors = read_file(src)
    meta["rdo_weights"] = rdo_weights

    out = Path(out)
    save_file(tensors, str(out), metadata={META_KEY: json.dumps(meta, sort_keys=True)})
    out.chmod(0o644)
    return out


def write_importance_maps(path: str | Path, maps: dict[str, np.ndarray]) -> Path:
    """Rewrite wrapper file ``path`` with fixed per-sample importance maps
    (``importance_map.<target>``, (k, h, w) each) added or replaced; parameters and
    metadata unchanged (the readable ``.json`` copy is untouched: it holds no tensors)."""
    meta, tensors = read_file(path)
    k = int(meta["k"])
    for target, m in maps.items():
        m = torch.as_tensor(np.asarray(m), dtype=torch.float32).contiguous()
        if target not in WEIGHT_TARGETS or m.dim() != 3 or m.shape[0] != k or bool((m < 0).any()):
            raise ParameterError(f"importance map {target!r} must be ({k}, h, w) and >= 0, got {tuple(m.shape)}")
        tensors[MAP_PREFIX + target] = m
    path = Path(path)
    save_file(tensors, str(path), metadata={META_KEY: json.dumps(meta, sort_keys=True)})
    path.chmod(0o644)
    return path


def check_against_model(meta: dict[str, Any], path: Path, method: str, model_name: str, split: str) -> None:
    """The file must be a ``method`` wrapper fitted for this model, split and channel count."""
    if meta["method"] != method:
        raise WeightsError(f"wrapper file {path} holds a {meta['method']!r} wrapper, not {method!r}")
    if meta["model"] != model_name or meta["split"] != split:
        raise WeightsError(
            f"wrapper file {path} was fitted for {meta['model']} @ {meta['split']}, not {model_name} @ {split}")
    sp = load_model(model_name).split_point(split)
    shape = sp.tensors.get(meta["tensor"])
    if shape is None:
        raise WeightsError(f"wrapper file {path}: split {split} has no tensor {meta['tensor']!r}")
    if int(meta["channels_in"]) != shape[0]:
        raise WeightsError(
            f"wrapper file {path} expects {meta['channels_in']} channels; {meta['tensor']} has {shape[0]}")
    k = int(meta["k"])
    if not 1 <= k <= 4096:
        raise WeightsError(f"wrapper file {path}: impossible channel count k={k}")
    if meta.get("rdo_weights", "post") not in RDO_WEIGHT_MODES:
        raise WeightsError(f"wrapper file {path}: unknown rdo_weights {meta.get('rdo_weights')!r}")


def split_tensors(tensors: dict[str, torch.Tensor], method: str, k: int, path: Path):
    """-> (parameters without the ``method.`` prefix, importance weights by target)."""
    params, importance = {}, {}
    for name, t in tensors.items():
        if name.startswith(method + "."):
            params[name[len(method) + 1:]] = t
        elif name.startswith(MAP_PREFIX):
            target = name[len(MAP_PREFIX):]
            if target not in WEIGHT_TARGETS or t.dim() != 3 or t.shape[0] != k or bool((t < 0).any()):
                raise WeightsError(f"wrapper file {path}: bad importance map {name} {tuple(t.shape)}")
            importance[name] = t
        elif name.startswith(IMPORTANCE_PREFIX):
            target = name[len(IMPORTANCE_PREFIX):]
            if target not in WEIGHT_TARGETS or tuple(t.shape) != (k,) or bool((t < 0).any()):
                raise WeightsError(f"wrapper file {path}: bad importance weights {name} {tuple(t.shape)}")
            importance[target] = t
        else:
            raise WeightsError(f"wrapper file {path}: unexpected tensor {name!r}")
    return params, importance


def need(params: dict[str, torch.Tensor], name: str, shape: tuple[int, ...], path: Path) -> torch.Tensor:
    t = params.get(name)
    if t is None:
        raise WeightsError(f"wrapper file {path}: missing parameter {name!r}")
    if tuple(t.shape) != tuple(shape):
        raise WeightsError(f"wrapper file {path}: parameter {name} is {tuple(t.shape)}, expected {tuple(shape)}")
    return t.float()


# -- loading with a small cache (the pipeline loads the wrapper on every run) ---------------------
_cache: dict[tuple, FittedWrapper] = {}
_lock = threading.Lock()


def load_fitted(cls, model_name: str, split: str, path: str | None) -> FittedWrapper:
    """Load a ``cls`` wrapper from ``path`` (None: the bundled default) for model/split."""
    if path is None:
        p = default_path(cls.method, model_name, split)
        if not p.is_file():
            raise WeightsError(
                f"no bundled {cls.method!r} wrapper for {model_name} @ {split}; train one with "
                f"`fcm train-wrapper --split {split} --method {cls.method} --out FILE` and use {cls.method}:FILE")
    else:
        p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError:
        raise WeightsError(f"wrapper file {p}: no such file") from None
    key = (cls.method, str(p.resolve()), st.st_mtime_ns, st.st_size, model_name, split)
    with _lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    meta, tensors = read_file(p)
    check_against_model(meta, p, cls.method, model_name, split)
    params, importance = split_tensors(tensors, cls.method, int(meta["k"]), p)
    maps = {n[len(MAP_PREFIX):]: importance.pop(n) for n in list(importance) if n.startswith(MAP_PREFIX)}
    wrapper = cls.from_state(meta, params, importance, p)
    wrapper.importance_maps = maps
    wrapper.path = p
    with _lock:
        if len(_cache) > 32:
            _cache.clear()
        _cache[key] = wrapper
    return wrapper
