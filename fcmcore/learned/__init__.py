"""Learned feature codecs (CompressAI) and direct coding.

Codecs registered by :func:`register_codecs` (names as in the CODECS registry):

* ``factorized``, ``hyperprior``, ``context``: feature coders (``fcmcore.coding.FeatureCoder``,
  ``consumes = FEATURES``) for one split tensor; ``encode(features, quality)`` / ``decode(bitstream)``.
* ``direct``: a light student network from the model input straight to the coded latent
  (``consumes = MODEL_INPUT``); ``encode(model_input, quality)`` / ``decode(bitstream)``.

Modules: ``models`` (architectures), ``train`` (``fcm train-codec``), ``codec`` (registry
adapters and the bitstream), ``direct`` (student + ``fcm train-direct``), ``commands``.
Nothing here imports CompressAI at import time: a machine without it still lists the
codecs, as unavailable with a reason.
"""

from __future__ import annotations

import importlib

# name -> (module, class); imported when a codec is first created, so that registering them
# from fcmcore.codecs never imports this package's modules (which import fcmcore.codecs.base).
_CODECS = {
    "factorized": (".codec", "FactorizedCodec"),
    "hyperprior": (".codec", "HyperpriorCodec"),
    "context": (".codec", "ContextCodec"),
    "direct": (".direct", "DirectCodec"),
}
CODEC_NAMES = tuple(_CODECS)


def codec_class(name: str) -> type:
    module, cls = _CODECS[name]
    return getattr(importlib.import_module(module, __name__), cls)


def codec_classes() -> list[type]:
    return [codec_class(n) for n in CODEC_NAMES]


def _factory(name: str):
    def create(*args, **kwargs):
        return codec_class(name)(*args, **kwargs)

    create.__name__ = create.__qualname__ = _CODECS[name][1]
    return create


def register_codecs(registry) -> None:
    """Register the learned codecs in a codec ``Registry`` (names already there are left
    alone). Registers lazy factories: nothing is imported until a codec is created."""
    for name in CODEC_NAMES:
        if name not in registry:
            registry.register(name)(_factory(name))


__all__ = ["CODEC_NAMES", "codec_class", "codec_classes", "register_codecs"]
