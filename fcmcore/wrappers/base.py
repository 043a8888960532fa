"""The wrapper stage: a pre-processing network on the edge that makes features easier to
code (e.g. fewer channels) and a post-processing network on the server that restores them.

``pre(features) -> reduced`` and ``post(reduced) -> features`` work on the Features mapping
(name -> (1, C, H, W) tensor). The identity wrapper ``none`` passes features through.
"""

from __future__ import annotations

from ..errors import ParameterError
from ..models.base import Features
from ..registry import WRAPPERS


class FeatureWrapper:
    name: str = ""
    description: str = ""

    def pre(self, features: Features) -> Features:
        raise NotImplementedError

    def post(self, reduced: Features) -> Features:
        raise NotImplementedError

    def channel_weights(self, reduced: Features) -> dict[str, "object"] | None:
        """Importance of each coded channel for what the post-wrapper keeps (WA-RDO), or
        None when the wrapper has no notion of it."""
        return None


class IdentityWrapper(FeatureWrapper):
    name = "none"
    description = "no wrapper: the split tensor is coded as it is"

    def pre(self, features: Features) -> Features:
        return features

    def post(self, reduced: Features) -> Features:
        return reduced


@WRAPPERS.register("none")
def load_identity(model_name: str, split: str, path: str | None = None) -> FeatureWrapper:
    """no wrapper: the split tensor is coded as it is"""
    if path:
        raise ParameterError("wrapper 'none' takes no weights file")
    return IdentityWrapper()
