"""Wrapper registry. ``load_wrapper("name[:path]", model, split)`` returns a fitted wrapper.

``none`` is the identity; ``truncate``, ``pca`` and ``learned`` are fitted on training
features (``fcm train-wrapper``) and stored as one safetensors file (see ``fitted``). Without
a path, the bundled file ``assets/wrappers/<model>/<split>/<name>.safetensors`` is used.
"""

from __future__ import annotations

from ..registry import WRAPPERS
from .base import FeatureWrapper, IdentityWrapper
from .fitted import FittedWrapper, default_path

# A factory takes (model_name, split, path_or_None) and returns a fitted FeatureWrapper;
# each is registered next to its wrapper (base: none; linear: truncate, pca; convnet: learned).


def parse_wrapper_spec(spec: str | None) -> tuple[str, str | None]:
    """'learned:/path/w.safetensors' -> ('learned', '/path/w.safetensors'); None -> ('none', None)."""
    if not spec:
        return "none", None
    name, _, path = spec.partition(":")
    return name, (path or None)


def load_wrapper(spec: str | None, model_name: str, split: str) -> FeatureWrapper:
    name, path = parse_wrapper_spec(spec)
    return WRAPPERS.factory(name)(model_name, split, path)


def list_wrappers() -> list[str]:
    return WRAPPERS.names()


__all__ = ["WRAPPERS", "FeatureWrapper", "FittedWrapper", "IdentityWrapper", "default_path", "load_wrapper",
           "list_wrappers", "parse_wrapper_spec"]
