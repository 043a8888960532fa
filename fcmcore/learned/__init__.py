"""Learned feature codecs (CompressAI) and direct coding.

Codecs registered by :func:`register_codecs` (names as in the CODECS registry):

* ``factorized``, ``hyperprior``, ``context``: feature codecs (``codes_features = True``)
  for one split tensor; ``encode_features(features, quality)`` / ``decode_features(data)``.
* ``direct``: a light student network from the model input straight to the coded latent
  (``direct = True``); ``encode_image_to_features(x, quality)`` / ``decode_features(data)``.

Modules: ``models`` (architectures), ``train`` (``fcm train-codec``), ``codec`` (registry
adapters and the bitstream), ``direct`` (student + ``fcm train-direct``), ``commands``.
Nothing here imports CompressAI at import time: a machine without it still lists the
codecs, as unavailable with a reason.
"""

from __future__ import annotations

CODEC_NAMES = ("factorized", "hyperprior", "context", "direct")


def codec_classes() -> list[type]:
    from .codec import FEATURE_CODECS
    from .direct import DirectCodec

    return [*FEATURE_CODECS, DirectCodec]


def register_codecs(registry) -> None:
    """Register the learned codecs in a codec ``Registry`` (names already there are left alone)."""
    for cls in codec_classes():
        if cls.name not in registry:
            registry.register(cls.name)(cls)


__all__ = ["CODEC_NAMES", "codec_classes", "register_codecs"]
