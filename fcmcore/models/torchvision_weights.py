"""Weights of the torchvision COCO detectors (``torchvision_zoo``), read safely and offline.

``pretrained=True`` loads torchvision's COCO weights from the torch hub cache
(``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch``). A missing file raises
``WeightsError`` at once, naming the file and the command that fetches it; nothing is
downloaded from here. The file is read with ``torch.load(weights_only=True)``: plain tensors
only, so a planted ``.pth`` cannot run code; one that needs pickle is refused.
"""

from __future__ import annotations

import os
import pickle
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import torch

from ..errors import WeightsError
from ..imageio import open_regular_file

_hub_lock = threading.Lock()


def weights_enum(name: str) -> Any:
    import torchvision  # why: torchvision is heavy; only zoo models load it

    return torchvision.models.get_model_weights(name)


def weights_file(name: str) -> Path:
    """Where torchvision keeps (or would download) the COCO weights of model ``name``."""
    url = weights_enum(name).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def fetch_command(name: str) -> str:
    """The one-liner that downloads ``name``'s weights into the torch hub cache."""
    return f"python -c \"import torchvision; torchvision.models.detection.{name}(weights='DEFAULT')\""


def weights_hint(name: str) -> str:
    url = weights_enum(name).DEFAULT.url
    torch_home = os.environ.get("TORCH_HOME") or "unset, so ~/.cache/torch"
    return (
        f"(torch hub cache; TORCH_HOME={torch_home}). torchvision downloads it from {url} on first "
        f"use, which needs internet: on a machine that has it run `{fetch_command(name)}` with the "
        f"same TORCH_HOME, or copy the file to that path"
    )


MAX_WEIGHTS_BYTES = 2 << 30  # the largest COCO detector here is ~170 MB


def load_weights_file(path: Path, name: str) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth``, read as data only (``torch.load(weights_only=True)``):
    tensors, numbers, strings and containers. A file that needs pickle to rebuild anything
    else (which could run code) is refused, as is anything that is not a regular file."""
    with open_regular_file(path, MAX_WEIGHTS_BYTES, label=f"{name}: weights file {path}", error=WeightsError) as f:
        return _state_dict_from(f, path, name)


def _state_dict_from(f, path: Path, name: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Unsupported global" in text or "Unsupported class" in text:
            found = text[text.index("Unsupported"):].split(" was not")[0].split(".")[0][:80]
            raise WeightsError(
                f"{name}: weights file {path} holds objects that need pickle to load ({found}), which "
                f"could run code: refused (only plain tensors are read). Delete it and fetch it again "
                + weights_hint(name)
            ) from None
        raise WeightsError(f"{name}: cannot load weights {path} (corrupt or not a checkpoint); delete it and "
                           "fetch it again " + weights_hint(name)) from None
    except Exception as exc:  # truncated / corrupt / not a torch file
        reason = (str(exc).strip().splitlines() or [""])[0][:160]
        raise WeightsError(
            f"{name}: cannot load weights {path} ({type(exc).__name__}: {reason}); "
            "delete it and fetch it again " + weights_hint(name)
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{name}: weights file {path} is not a state dict of tensors; delete it and fetch "
                           "it again " + weights_hint(name))
    return state


@contextmanager
def safe_hub_loading(spec_name: str, path: Path) -> Iterator[None]:
    """While the torchvision builder runs, its weights come from ``load_weights_file``.

    The builders configure the network from the weights enum (class count, frozen batch
    norms) and then call ``weights.get_state_dict()``, which unpickles the cached file with
    ``weights_only=False``. Routing that one call keeps torchvision's exact architecture
    while the file is only ever read as tensors. Any other URL is refused (no download)."""
    import torchvision.models._api as api  # why: torchvision is heavy; only zoo models load it

    def safe_state_dict(url: str, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        if os.path.basename(urlparse(url).path) != path.name:
            raise WeightsError(f"{spec_name}: unexpected extra weights {url} requested; nothing is downloaded")
        return load_weights_file(path, spec_name)

    with _hub_lock:
        original = api.load_state_dict_from_url
        api.load_state_dict_from_url = safe_state_dict
        try:
            yield
        finally:
            api.load_state_dict_from_url = original
