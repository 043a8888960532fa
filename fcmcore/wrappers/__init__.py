"""Wrapper registry. ``load_wrapper("name[:path]", model, split)`` returns a fitted wrapper."""

from __future__ import annotations

from ..errors import ParameterError
from ..registry import Registry
from .base import FeatureWrapper, IdentityWrapper

# A factory takes (model_name, split, path_or_None) and returns a fitted FeatureWrapper.
WRAPPERS: Registry[FeatureWrapper] = Registry("wrapper")


@WRAPPERS.register("none")
def _identity(model_name: str, split: str, path: str | None = None) -> FeatureWrapper:
    if path:
        raise ParameterError("wrapper 'none' takes no weights file")
    return IdentityWrapper()


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


__all__ = ["WRAPPERS", "FeatureWrapper", "IdentityWrapper", "load_wrapper", "list_wrappers", "parse_wrapper_spec"]
