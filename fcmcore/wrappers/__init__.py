"""Wrapper registry. ``load_wrapper("name[:path]", model, split)`` returns a fitted wrapper.

``none`` is the identity; ``truncate``, ``pca`` and ``learned`` are fitted on training
features (``fcm train-wrapper``) and stored as one safetensors file (see ``fitted``). Without
a path, the bundled file ``assets/wrappers/<model>/<split>/<name>.safetensors`` is used.
"""

from __future__ import annotations

from ..errors import ParameterError
from ..registry import Registry
from .base import FeatureWrapper, IdentityWrapper
from .fitted import FittedWrapper, default_path, load_fitted

# A factory takes (model_name, split, path_or_None) and returns a fitted FeatureWrapper.
WRAPPERS: Registry[FeatureWrapper] = Registry("wrapper")


@WRAPPERS.register("none")
def _identity(model_name: str, split: str, path: str | None = None) -> FeatureWrapper:
    """no wrapper: the split tensor is coded as it is"""
    if path:
        raise ParameterError("wrapper 'none' takes no weights file")
    return IdentityWrapper()


@WRAPPERS.register("truncate")
def _truncate(model_name: str, split: str, path: str | None = None) -> FeatureWrapper:
    """keep the k highest-energy channels (fitted on training features); others get their mean"""
    from .linear import TruncateWrapper

    return load_fitted(TruncateWrapper, model_name, split, path)


@WRAPPERS.register("pca")
def _pca(model_name: str, split: str, path: str | None = None) -> FeatureWrapper:
    """per-pixel channel PCA: k components + mean, fitted on training features"""
    from .linear import PCAWrapper

    return load_fitted(PCAWrapper, model_name, split, path)


@WRAPPERS.register("learned")
def _learned(model_name: str, split: str, path: str | None = None) -> FeatureWrapper:
    """small conv pre/post networks (k channels, optional 2x down-sampling), trained with a proxy codec"""
    from .learned import LearnedWrapper

    return load_fitted(LearnedWrapper, model_name, split, path)


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
