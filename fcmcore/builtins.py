"""The one place that fills the registries (``fcmcore.registry``): importing this module
imports every built-in implementation, each of which registers itself. The order of the
imports is the order ``fcm models`` / ``fcm codecs`` / ``fcm wrappers`` list them in, so
it is kept by hand. Optional packages are not imported here: implementations import them
when first used."""

from __future__ import annotations

# isort: off
from .models import ssd_mobilenet_v2  # noqa: F401  (the offline default first)
from .models import torchvision_zoo  # noqa: F401
from .models import movenet  # noqa: F401  (pose)
from .models import efficientnet_lite  # noqa: F401  (classification)
from .codecs import pillow_codecs  # noqa: F401  (jpeg, webp, avif, png, jpeg2000)
from .codecs import jpegxl  # noqa: F401
from .codecs import hevc  # noqa: F401
from .codecs import vvc  # noqa: F401
from .learned import codec  # noqa: F401  (factorized, hyperprior, context, scar)
from .learned import direct  # noqa: F401
from .wrappers import base  # noqa: F401  (none)
from .wrappers import linear  # noqa: F401  (truncate, pca)
from .wrappers import learned  # noqa: F401
# isort: on
