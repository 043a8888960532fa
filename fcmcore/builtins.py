"""The one place that fills the registries (``fcmcore.registry``): importing this module
imports every built-in implementation, each of which registers itself. The order of the
imports is the order ``fcm models`` / ``fcm codecs`` / ``fcm wrappers`` list them in, so
it is kept by hand. Optional packages are not imported here: implementations import them
when first used."""

from __future__ import annotations

import importlib

# The order registries list their names in (``Registry.names``), whatever was imported first.
MODULES = (
    "fcmcore.models.ssd_mobilenet_v2",  # the offline default first
    "fcmcore.models.torchvision_zoo",
    "fcmcore.models.movenet",  # pose
    "fcmcore.models.efficientnet_lite",  # classification
    "fcmcore.codecs.pillow_codecs",  # jpeg, webp, avif, png, jpeg2000
    "fcmcore.codecs.jpegxl",
    "fcmcore.codecs.hevc",
    "fcmcore.codecs.vvc",
    "fcmcore.learned.codec",  # factorized, hyperprior, context, scar
    "fcmcore.learned.direct",
    "fcmcore.wrappers.base",  # none
    "fcmcore.wrappers.linear",  # truncate, pca
    "fcmcore.wrappers.convnet",
)

for _module in MODULES:
    importlib.import_module(_module)
del _module
