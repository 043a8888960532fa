"""Model registry: detectors that can be split. ``load_model(name)`` builds once and caches."""

from __future__ import annotations

import threading

import torch

from ..registry import MODELS
from .base import Detection, Features, ImageMeta, SplitModel, SplitPoint

# Each model registers itself in its module (``@MODELS.register(name)``): ssd_mobilenet_v2
# (offline default), torchvision_zoo (weights from TORCH_HOME when cached); fcmcore.builtins
# imports them, the registry does so on its first look-up.

DEFAULT_MODEL = "ssd_mobilenet_v2"

_cache: dict[str, SplitModel] = {}
_lock = threading.Lock()


def load_model(name: str = DEFAULT_MODEL) -> SplitModel:
    """The model called ``name``, built once per process (thread-safe: app sessions share it)."""
    factory = MODELS.factory(name)  # raises UnknownNameError before taking the lock
    with _lock:
        if name not in _cache:
            # built once and shared: weights made inside a caller's inference_mode would be
            # inference tensors, which autograd refuses (wrapper and connector training use the tail)
            with torch.inference_mode(False):
                _cache[name] = factory()
        return _cache[name]


def list_models() -> list[str]:
    return MODELS.names()


__all__ = [
    "MODELS", "DEFAULT_MODEL", "load_model", "list_models",
    "Detection", "Features", "ImageMeta", "SplitModel", "SplitPoint",
]
