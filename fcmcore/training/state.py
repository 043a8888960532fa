"""Resumable training state: one checkpoint per run, written at every epoch end.

Everything stateful (networks, optimisers, schedulers by their ``state_dict``, the batch
order generator, torch's global RNG) goes into one dict saved atomically by
``checkpoints.save_checkpoint`` and read back by ``checkpoints.load_checkpoint``
(``weights_only``: a checkpoint never unpickles code).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..checkpoints import load_checkpoint, save_checkpoint


def save_train_state(path: str | Path, *, epoch: int, cpu_s: float, gen: torch.Generator,
                     global_rng: bool = True, **stateful: Any) -> None:
    """Save ``stateful`` (name -> object with ``state_dict``), the generator, the epoch count
    and the CPU seconds used so far; with ``global_rng`` also ``torch.get_rng_state()``."""
    state: dict[str, Any] = {name: obj.state_dict() for name, obj in stateful.items()}
    state.update(gen=gen.get_state(), epoch=int(epoch), cpu_s=float(cpu_s))
    if global_rng:
        state["rng"] = torch.get_rng_state()
    save_checkpoint(state, path)


def restore_train_state(path: str | Path, *, gen: torch.Generator, strict: bool = True,
                        **stateful: Any) -> tuple[int, float]:
    """Load a ``save_train_state`` checkpoint into ``stateful`` and ``gen`` (and torch's RNG
    when it was saved) -> (epochs done, CPU seconds used). ``strict`` applies to modules."""
    st = load_checkpoint(path)
    for name, obj in stateful.items():
        if isinstance(obj, torch.nn.Module):
            obj.load_state_dict(st[name], strict=strict)
        else:
            obj.load_state_dict(st[name])
    gen.set_state(st["gen"])
    if "rng" in st:
        torch.set_rng_state(st["rng"])
    return int(st["epoch"]), float(st["cpu_s"])
