"""Model registry: detectors that can be split. ``load_model(name)`` builds once and caches."""

from __future__ import annotations

import threading

from ..registry import Registry
from .base import Detection, Features, ImageMeta, SplitModel, SplitPoint

MODELS: Registry[SplitModel] = Registry("model")

# Importing a module registers its models.
from . import ssd_mobilenet_v2  # noqa: E402,F401  (offline default)
from . import torchvision_zoo  # noqa: E402,F401  (weights from TORCH_HOME when cached)

DEFAULT_MODEL = "ssd_mobilenet_v2"

_cache: dict[str, SplitModel] = {}
_lock = threading.Lock()


def load_model(name: str = DEFAULT_MODEL) -> SplitModel:
    """The model called ``name``, built once per process (thread-safe: app sessions share it)."""
    factory = MODELS.factory(name)  # raises UnknownNameError before taking the lock
    with _lock:
        if name not in _cache:
            _cache[name] = factory()
        return _cache[name]


def list_models() -> list[str]:
    return MODELS.names()


__all__ = [
    "MODELS", "DEFAULT_MODEL", "load_model", "list_models",
    "Detection", "Features", "ImageMeta", "SplitModel", "SplitPoint",
]
