"""Wrapper-aware RDO *in the training loop* (``fcm train-wrapper --wa-in-loop``).

The proxy codec of ``training.fit_learned_nets`` normally adds uniform noise of one step
``range(z) / 2**b`` to every coded value: the allocation of ``--rdo sse``. With WA in the loop
it allocates its quantisation the way ``--rdo wa-qp`` will at coding time: each coded sample's
step is scaled as x265 scales it for the per-block offset WA-RDO gives that block,

    dQP_b = -3 S log2(w_b / geomean_b w),   clipped to +-12        (``coding.rdo``)
    step_b = step * 2**(dQP_b / 6)                                  (x265: step doubles every 6 QP)

with the blocks those of the real encoder (8 x 8 QP groups of tiles padded to ``tile_pad``:
``coding.rdo.block_qp_offsets`` computes the offsets, so proxy and codec cannot drift apart).
The weights w are the importance of the *current* post-wrapper, chained through the frozen
tail to ``target`` (default ``task``, what ``--rdo wa-qp`` reads by default): Hutchinson
diag(J^T J) maps (``importance.hutchinson_maps``) re-estimated before every epoch on
``images`` plain training views with ``probes`` probes, reduced to the ``weights`` kind
(channel / spatial / both) as the encoder reduces them. The entropy bottleneck sees
``z / step_b``, so the rate term pays for the finer steps of important blocks.

Why: a wrapper trained under a flat proxy has no reason to make its coded samples differ in
importance (measured: post-only weights 0.96-1.46 max/min for every bundled wrapper), and a
wrapper used with WA-RDO is coded by a non-flat allocation it never saw in training. In the
loop, the post-wrapper learns under the noise it will get, and its importance is free to
become uneven when that pays on the task loss.

The weights are constants within an epoch (no gradient flows through them): the encoder
treats them as fixed too (``--wa-source fixed``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ParameterError
from .importance import WEIGHT_KINDS, WEIGHT_TARGETS, hutchinson_maps, spread, tail_function, weights_of_kind

WA_TILE_PADS = (8, 16)  # the QP-block grid the tiles are padded to (unpadded tiles: blocks straddle channels)
WA_STRENGTH_MAX = 4.0  # as the pipeline's --wa-strength
QP_BLOCK = 8  # x265's quantisation groups as the HEVC codec configures them (qg-size 8)


@dataclass(frozen=True)
class WAInLoop:
    """How the proxy codec allocates its quantisation during training (recorded in the
    wrapper's ``meta["wa_in_loop"]`` and in a k-fold recipe)."""

    weights: str = "spatial"  # channel | spatial | both, as --wa-weights at coding time
    target: str = "task"  # importance measured at post / deep / task
    strength: float = 1.0  # S of dQP = -3 S log2(w / GM), as --wa-strength
    tile_pad: int = 8  # as --tile-pad at coding time
    probes: int = 1  # Hutchinson probes per image per re-estimate
    images: int = 24  # plain training views per re-estimate (a different subset every epoch)

    def __post_init__(self):
        if self.weights not in WEIGHT_KINDS:
            raise ParameterError(f"--wa-weights must be one of {', '.join(WEIGHT_KINDS)}, not {self.weights!r}")
        if self.target not in WEIGHT_TARGETS:
            raise ParameterError(f"--wa-target must be one of {', '.join(WEIGHT_TARGETS)}, not {self.target!r}")
        s = float(self.strength)
        if not (math.isfinite(s) and 0 < s <= WA_STRENGTH_MAX):
            raise ParameterError(f"--wa-strength must be in (0, {WA_STRENGTH_MAX:g}], got {self.strength}")
        if self.tile_pad not in WA_TILE_PADS:
            raise ParameterError(f"--wa-tile-pad must be one of {', '.join(map(str, WA_TILE_PADS))} (the QP block "
                                 f"grid the tiles are padded to at coding time), not {self.tile_pad}")
        if int(self.probes) < 1:
            raise ParameterError(f"--wa-probes must be at least 1, got {self.probes}")
        if int(self.images) < 1:
            raise ParameterError(f"--wa-images must be at least 1, got {self.images}")
        object.__setattr__(self, "strength", s)
        object.__setattr__(self, "probes", int(self.probes))
        object.__setattr__(self, "images", int(self.images))

    def to_meta(self) -> dict[str, Any]:
        return dict(asdict(self), every_epochs=1, block=QP_BLOCK)

    @classmethod
    def from_meta(cls, d: dict[str, Any] | None) -> "WAInLoop | None":
        if not d:
            return None
        if not isinstance(d, dict):
            raise ParameterError(f"wa_in_loop must be a mapping of its options, not {type(d).__name__}")
        keys = {"weights", "target", "strength", "tile_pad", "probes", "images"}
        return cls(**{k: v for k, v in d.items() if k in keys})


def step_multipliers(maps: np.ndarray, cfg: WAInLoop) -> np.ndarray:
    """(k, h, w) Hutchinson maps -> (k, h, w) factors on the proxy's quantisation step:
    2**(dQP / 6) with dQP the per-position offsets ``--rdo wa-qp`` gives these weights."""
    from ..coding.rdo import block_qp_offsets, qp_offsets_from_weights  # why: numpy only, the codec's own rule

    m = np.asarray(maps, dtype=np.float64)
    k, h, w = m.shape
    wts = weights_of_kind(m, cfg.weights)
    if wts.ndim == 1:
        dqp = np.broadcast_to(qp_offsets_from_weights(wts, strength=cfg.strength)[:, None, None], (k, h, w))
    else:
        full = np.broadcast_to(wts, (k, h, w)) if wts.ndim == 2 else wts
        dqp = block_qp_offsets(np.ascontiguousarray(full), cfg.tile_pad, QP_BLOCK, strength=cfg.strength)
    return np.power(2.0, np.asarray(dqp) / 6.0)


class WAAllocator:
    """Re-estimates the importance of the current nets and holds the step factors of the
    epoch (``mult``: (1, k, h, w) tensor, all ones until the first ``update``)."""

    def __init__(self, cfg: WAInLoop, model_name: str, split: str, k: int, hw: tuple[int, int], seed: int = 0):
        self.cfg = cfg
        self.tail = tail_function(model_name, split, cfg.target)
        self.seed = int(seed)
        self.mult = torch.ones(1, k, *hw)
        self.maps: np.ndarray | None = None

    def update(self, nets, plain: torch.Tensor, epoch: int) -> dict[str, float]:
        """Hutchinson maps of ``tail o nets.post`` on ``images`` of the plain training views
        (a subset rotating with ``epoch``), -> the epoch's step factors; returns their spread."""
        n = plain.shape[0]
        take = min(self.cfg.images, n)
        gen = torch.Generator().manual_seed(self.seed * 1000 + epoch)
        idx = torch.randperm(n, generator=gen)[:take]
        was_training = nets.training
        nets.eval()
        with torch.no_grad():
            zs = [nets.pre(plain[idx[i:i + 8]]) for i in range(0, take, 8)]
        maps = hutchinson_maps(lambda z: self.tail(nets.post(z)), zs, probes=self.cfg.probes,
                               seed=self.seed * 1000 + epoch)
        nets.train(was_training)
        # why: nets' parameters collected gradients only through z's graph (autograd.grad w.r.t. z): none to clear
        self.maps = maps
        mult = step_multipliers(maps, self.cfg)
        self.mult = torch.from_numpy(mult).float().unsqueeze(0)
        w = weights_of_kind(maps, self.cfg.weights)
        s = spread(w)  # of the per-position weights; the encoder pools them per block (the dQP range shows that)
        dqp = 6.0 * np.log2(mult)
        return {"wa_max_over_min": round(s["max_over_min"], 4), "wa_cv": round(s["cv"], 4),
                "wa_am_gm_db": round(s["am_gm_db"], 4), "wa_dqp_min": round(float(dqp.min()), 2),
                "wa_dqp_max": round(float(dqp.max()), 2)}

    def step(self, base_step: torch.Tensor) -> torch.Tensor:
        """Per-sample steps (n, k, h, w) from the proxy's per-image steps (n, 1, 1, 1)."""
        return base_step * self.mult
