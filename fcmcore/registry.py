"""The registries: name -> factory, one per kind (models, codecs, wrappers).

This module imports no implementation (after CompressAI's ``registry/torch.py``): every
model, codec and wrapper registers itself where it is defined, with a decorator::

    @CODECS.register("jpeg")
    class JPEGCodec(FrameCodec): ...

One place fills the registries: ``fcmcore.builtins`` imports every implementation module.
A registry imports it (by name, once) the first time it is asked what it holds, so that
``get_codec``/``load_model``/``load_wrapper`` work without anyone importing it first.
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, Iterator, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories. ``get`` raises a clear error listing the known names."""

    def __init__(self, kind: str, fill: str | None = None):
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._fill_module = fill  # imported once before the first look-up (see the module docstring)
        self._module_order: tuple[str, ...] = ()

    def _fill(self) -> None:
        if self._fill_module is not None:
            module, self._fill_module = self._fill_module, None
            self._module_order = tuple(getattr(importlib.import_module(module), "MODULES", ()))

    def _ordered(self) -> list[str]:
        """Names in the fill module's order (``MODULES``; then registration order), whichever
        module happened to be imported first: ``fcm models`` lists the offline default first."""
        order = {m: i for i, m in enumerate(self._module_order)}
        ranked = sorted(enumerate(self._factories.items()),
                        key=lambda t: (order.get(getattr(t[1][1], "__module__", ""), len(order)), t[0]))
        return [name for _, (name, _) in ranked]

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._factories[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        self._fill()
        return self._ordered()

    def factory(self, name: str) -> Callable[..., T]:
        self._fill()
        try:
            return self._factories[name]
        except KeyError:
            known = ", ".join(self._ordered()) or "none"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def create(self, name: str, *args, **kwargs) -> T:
        return self.factory(name)(*args, **kwargs)

    def __contains__(self, name: object) -> bool:
        self._fill()
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        self._fill()
        return iter(self._ordered())


FILL = "fcmcore.builtins"
MODELS: Registry = Registry("model", fill=FILL)  # SplitModel factories
CODECS: Registry = Registry("codec", fill=FILL)  # Codec classes (FrameCodec or learned FeatureCoder)
WRAPPERS: Registry = Registry("wrapper", fill=FILL)  # (model_name, split, path) -> FeatureWrapper
TASK_NETWORKS: Registry = Registry("task", fill=FILL)  # secondary-task networks (pose, classification)
