"""Importance weights for wrapper-aware RDO, from Jacobians estimated with autograd.

For a coded (reduced) tensor z (k x h x w) and g = T o post, where T is the identity
("post"), the frozen tail up to SSD's first prediction map ("deep": the 576-channel
expansion inside ``expanded_conv_13``) or up to the detector's raw outputs ("task": class
logits and box regressions of every anchor), the weight of coded channel c is

    w_c = (1 / hw) * sum_p || J_g[:, (c, p)] ||^2,     J_g = d g / d z,

the mean squared Jacobian column norm over the channel's positions: a small error e on
channel c moves g by about ||J e||, so E||dg||^2 ~ sum_c w_c * SSE_c for independent
errors. The diagonal of J^T J is estimated Hutchinson-style: for Rademacher probes v
(E[v v^T] = I), E[(J^T v)^2] = diag(J^T J), and J^T v is one backward pass. For an affine
per-pixel post-wrapper x = A z + b (and T = identity) this is exactly the squared column
norm ||A[:, c]||^2 (one probe per position suffices only in expectation; averaging over
positions, probes and images brings the estimate close).

Weights are averaged over training data and saved with the wrapper (``importance.<target>``,
fixed weights), or re-estimated per image from its reduced tensor (``image-<target>``).

**Kinds** (``WEIGHT_KINDS``, ``--wa-weights``). The same Hutchinson estimate gives the
diagonal of J^T J per coded *sample*: m(c, p) = E[(J^T v)_(c,p)^2] (``hutchinson_maps``).
``channel`` is its mean over positions (w_c above), ``spatial`` its mean over channels
(one h x w map shared by every tile: where in the picture errors matter) and ``both`` the
full k x h x w map. Fixed maps are averaged over training images and saved as
``importance_map.<target>``; per-image maps are re-estimated on the image's own tensor.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch

from ..errors import ParameterError
from ..models import load_model
from ..models.base import Features, SplitModel
from ..training.distortion import detector_outputs  # noqa: F401 (re-exported: wrappers' callers use it)

# Where the importance weights are measured: at the split after the post-wrapper ("post"),
# deeper through the frozen tail ("deep": SSD's prediction map 0), or on the detector
# outputs ("task": class logits + box regressions).
WEIGHT_TARGETS = ("post", "deep", "task")
WEIGHT_KINDS = ("channel", "spatial", "both")
WEIGHT_SOURCES = ("wrapper", "fixed", "image")  # "wrapper": as the file's rdo_weights says
DEEP_CUT = "map0"  # SSD's first prediction map (expansion inside expanded_conv_13)


def tail_function(model_name: str, split: str, target: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A differentiable map from the split's trunk tensor to ``target``'s output through the
    frozen detector (``SplitModel.run_between`` / ``predict``; the model's ``tail`` runs
    under inference mode)."""
    if target not in WEIGHT_TARGETS:
        raise ParameterError(f"importance target must be one of {', '.join(WEIGHT_TARGETS)}, not {target!r}")
    if target == "post":
        return lambda x: x
    model = load_model(model_name)
    tensors = model.split_point(split).tensors
    if len(tensors) != 1:
        raise ParameterError(f"split {split} carries several tensors; wrappers are trained on single-tensor splits")
    trunk = next(iter(tensors))
    if target == "deep":
        cuts = model.cut_points()
        if DEEP_CUT not in cuts:
            raise ParameterError(f"'deep' targets SSD's prediction map 0; {model_name} has no cut {DEEP_CUT!r}")
        if cuts.index(DEEP_CUT) < cuts.index(split):
            raise ParameterError(f"'deep' targets prediction map 0 (inside expanded_conv_13); split {split} is past it")
        return lambda x: model.run_between({trunk: x}, split, DEEP_CUT)[DEEP_CUT]

    def task(x: torch.Tensor) -> torch.Tensor:
        return torch.cat(detector_outputs(model, {trunk: x}, split), dim=-1)

    return task


def hutchinson_weights(g: Callable[[torch.Tensor], torch.Tensor], zs: Iterable[torch.Tensor], probes: int = 4,
                       seed: int = 0) -> np.ndarray:
    """Mean over ``zs`` (each (1, k, h, w) or (n, k, h, w)), probes and positions of
    diag(J_g^T J_g), per channel: (k,) float64."""
    return hutchinson_maps(g, zs, probes=probes, seed=seed).mean(axis=(1, 2))


def hutchinson_maps(g: Callable[[torch.Tensor], torch.Tensor], zs: Iterable[torch.Tensor], probes: int = 4,
                    seed: int = 0) -> np.ndarray:
    """Mean over ``zs`` and probes of diag(J_g^T J_g) per coded sample: (k, h, w) float64."""
    if probes < 1:
        raise ParameterError(f"probes must be at least 1, got {probes}")
    gen = torch.Generator().manual_seed(int(seed))
    total, count = None, 0
    for z in zs:
        z = z.detach().clone().float().requires_grad_(True)
        with torch.enable_grad():
            y = g(z)
            for p in range(probes):
                v = torch.randint(0, 2, y.shape, generator=gen).to(y.dtype) * 2 - 1
                (gz,) = torch.autograd.grad(y, z, v, retain_graph=p < probes - 1)
                s = gz.detach().double().pow(2).sum(0)  # (k, h, w)
                total = s if total is None else total + s
                count += z.shape[0]
    if total is None:
        raise ParameterError("no data to estimate importance weights on")
    return (total / count).numpy()


def estimate_weights(wrapper, zs: Iterable[torch.Tensor], target: str = "post", probes: int = 4,
                     seed: int = 0) -> np.ndarray:
    """Importance of each coded channel of ``wrapper`` (a FittedWrapper: anything with
    ``meta["model"]``, ``meta["split"]`` and a differentiable ``decode``) for ``target``,
    averaged over the reduced tensors ``zs``. Not normalised."""
    return estimate_maps(wrapper, zs, target, probes, seed).mean(axis=(1, 2))


def estimate_maps(wrapper, zs: Iterable[torch.Tensor], target: str = "post", probes: int = 4,
                  seed: int = 0) -> np.ndarray:
    """Like ``estimate_weights``, per coded sample: (k, h, w), not normalised."""
    tail = tail_function(wrapper.meta["model"], wrapper.meta["split"], target)
    return hutchinson_maps(lambda z: tail(wrapper.decode(z)), zs, probes=probes, seed=seed)


def weights_of_kind(m: np.ndarray, kind: str) -> np.ndarray:
    """(k, h, w) per-sample map -> the weights of ``kind`` (see the module docstring),
    normalised to mean 1: (k,), (h, w) or (k, h, w)."""
    if kind not in WEIGHT_KINDS:
        raise ParameterError(f"--wa-weights must be one of {', '.join(WEIGHT_KINDS)}, not {kind!r}")
    m = np.asarray(m, dtype=np.float64)
    w = m.mean(axis=(1, 2)) if kind == "channel" else m.mean(axis=0) if kind == "spatial" else m
    mean = float(w.mean())
    if not np.isfinite(mean) or mean <= 0:
        raise ParameterError("importance weights are all zero")
    return w / mean


def spread(w: np.ndarray) -> dict[str, float]:
    """How uneven weights are: max/min, coefficient of variation, and the high-rate gain
    ceiling of an optimal weighted allocation, AM/GM (as dB and as % rate at equal
    weighted MSE: 6.02 dB per bit per sample, so rate saving = 10 log10(AM/GM) / 6.02 bits
    per sample, reported as dB)."""
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    w = np.maximum(w, w.max() * 1e-9)
    am, gm = float(w.mean()), float(np.exp(np.log(w).mean()))
    return {"max_over_min": float(w.max() / w.min()), "cv": float(w.std() / am),
            "am_gm_db": float(10 * np.log10(am / gm))}
