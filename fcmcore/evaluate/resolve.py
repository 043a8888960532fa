"""Configurations of a sweep, checked and completed before any work (main process)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..codecs import get_codec
from ..coding import packing_bit_depth
from ..errors import CodecUnavailableError, ParameterError
from ..models import load_model
from ..pipeline import PipelineConfig
from ..wrappers import load_wrapper


def resolve_config(config: PipelineConfig) -> tuple[PipelineConfig, Any]:
    """Check a config can run here and fill in the codec's defaults (quality, bit depth).
    Returns (resolved config, codec or None). Raises FCMError subclasses."""
    model = load_model(config.model)
    if config.split is not None:
        model.split_point(config.split)
        load_wrapper(config.wrapper, config.model, config.split)
    elif config.wrapper not in (None, "", "none"):
        raise ParameterError("wrappers work on split features; full-input (split none) takes no wrapper")
    codec = None
    if config.codec is not None:
        codec = get_codec(config.codec)
        ok, reason = codec.available()
        if not ok:
            raise CodecUnavailableError(f"codec {config.codec} is not available here: {reason}")
        if config.split is None and not codec.supports_images:
            raise ParameterError(f"{config.codec} codes feature frames only; it cannot code images (full-input)")
        quality = codec.check_quality(config.quality) if config.quality is not None else None
        # learned codecs have no bit depth (None); frame codecs get theirs checked or defaulted
        bit_depth = packing_bit_depth(config.codec, config.bit_depth) if config.split is not None else None
        config = replace(config, quality=quality, bit_depth=bit_depth)
    else:
        config = replace(config, quality=None, bit_depth=None)
    if config.split is None:
        config = replace(config, quant="tensor", rdo="sse", tile_pad=0)
    if config.rdo not in ("wa", "wa-qp"):  # no weights are used: one identity for every weight option
        config = replace(config, wa_weights="channel", wa_source="wrapper", wa_strength=1.0)
    return config, codec


def reference_config(config: PipelineConfig) -> PipelineConfig:
    """The uncompressed reference of a config: same model, split and wrapper, no codec."""
    return replace(config, codec=None, quality=None, bit_depth=None, rdo="sse", wa_weights="channel",
                   wa_source="wrapper", tile_pad=0, wa_strength=1.0)


def config_dict(config: PipelineConfig) -> dict[str, Any]:
    d = config.to_json()
    d.pop("paradigm", None)
    return d
