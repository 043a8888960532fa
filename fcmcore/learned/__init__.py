"""Learned feature codecs (CompressAI) and direct coding.

Codecs registered by :func:`register_codecs` (names as in the CODECS registry):

* ``factorized``, ``hyperprior``, ``context``, ``scar``: feature coders (``fcmcore.coding.FeatureCoder``,
  ``consumes = FEATURES``) for one split tensor; ``encode(features, quality)`` / ``decode(bitstream)``.
* ``direct``: a light student network from the model input straight to the coded latent
  (``consumes = MODEL_INPUT``); ``encode(model_input, quality)`` / ``decode(bitstream)``.

Modules: ``models`` (architectures), ``train`` (``fcm train-codec``), ``codec`` (registry
adapters and the bitstream), ``direct`` (the direct-coding codec), ``direct_student`` (its
student network), ``direct_training`` (``fcm train-direct``), ``scar`` (the SC-AR entropy model),
``layers`` (shared layers), ``fastcoding`` (rANS coders); the commands are ``fcmcore.cli.train_codec``.
Nothing here imports CompressAI at import time: a machine without it still lists the
codecs, as unavailable with a reason.
"""

from __future__ import annotations

CODEC_NAMES = ("factorized", "hyperprior", "context", "scar", "hyperprior-deep", "context-deep", "scar-deep", "direct")  # registered by .codec and .direct

__all__ = ["CODEC_NAMES"]
