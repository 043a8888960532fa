"""Training checkpoints (and cached feature banks), shared by every trainer.

A ``.pt`` file is a pickle, and unpickling can run arbitrary code: a checkpoint found on
disk (``--resume``, a shared folder, a downloaded run) must not be trusted that far. Every
checkpoint is therefore loaded with ``torch.load(weights_only=True)``, which accepts only
tensors, numbers, strings and containers of them (all that the trainers save: state dicts,
RNG states, counters); a file that needs anything else is refused with ``WeightsError``.
Published weights are safetensors files, never pickles.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from .errors import WeightsError


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` atomically (a crash never leaves a half-written checkpoint)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path``, loaded without unpickling code (see the module docstring).
    WeightsError when it is unreadable or holds anything but tensors and plain data."""
    path = Path(path)
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise WeightsError(f"refusing checkpoint {path}: it needs full unpickling, which can run code "
                           f"(only tensors and plain data are accepted; {first}). Delete it to start over") from None
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise WeightsError(f"unreadable checkpoint {path} ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise WeightsError(f"checkpoint {path} holds a {type(state).__name__}, not a dict of states")
    return state
