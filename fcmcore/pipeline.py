"""The data flow, stage by stage.

Model-splitting paradigm (edge | server):

    image -> preprocess -> head -> pre-wrapper -> pack + encode  |  decode + unpack
          -> post-wrapper -> tail -> detections

Full-input paradigm: image -> image codec -> decoded image -> whole detector -> detections.

(Long because: the configuration, the result and the one run path of both paradigms read top
to bottom as the data flow; the stages themselves live in their packages.)

``run(image, config)`` does either. For interactive use (the app), ``run_head`` and
``run_from_head`` split the work so that moving a quality slider re-runs only the coding
and the tail. Every stage is timed; bits are ``len(bitstream) * 8`` of what the server
decodes (side information included).
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from PIL import Image

from .codecs import get_codec
from .coding import MODEL_INPUT, FeatureCoder, RawFeatureCoder, coder_for
from .errors import ParameterError
from .models import DEFAULT_MODEL, load_model
from .models.base import Detection, Features, ImageMeta
from .packing import BIT_DEPTHS
from .tasks import secondary
from .tasks.secondary import CONNECTOR_KINDS, parse_tasks
from .wrappers import load_wrapper

# An extra consumer of the decoded split features (e.g. a secondary task's connector):
# (features after the post-wrapper, split name, image meta) -> any result.
FeatureConsumer = Callable[[Features, str, ImageMeta], Any]
Consumers = Mapping[str, FeatureConsumer]

DEFAULT_SPLIT = "expanded_conv_9"
DEFAULT_CODEC = "hevc"
DISPLAY_SCORE_THRESHOLD = 0.4
QUANT_MODES = ("tensor", "channel")
RDO_MODES = ("sse", "wa", "wa-qp", "sse-qp")
WA_WEIGHTS = ("channel", "spatial", "both")  # = wrappers.importance.WEIGHT_KINDS
WA_SOURCES = ("wrapper", "fixed", "image")  # = wrappers.importance.WEIGHT_SOURCES
TILE_PADS = (0, 8, 16)
WA_STRENGTH_MAX = 4.0  # beyond that the +-12 QP clip does all the work


@dataclass(frozen=True)
class PipelineConfig:
    """One operating point. ``split=None`` is the full-input paradigm; ``codec=None`` is
    the uncompressed reference (features or image sent raw)."""

    model: str = DEFAULT_MODEL
    split: str | None = DEFAULT_SPLIT
    codec: str | None = DEFAULT_CODEC
    quality: float | None = None  # None: the codec's default
    bit_depth: int | None = None  # None: the codec's highest supported depth (packing)
    quant: str = "tensor"  # min-max range per "tensor" or per "channel"
    wrapper: str = "none"  # "name" or "name:path"
    rdo: str = "sse"  # "sse" (plain codec RDO), "wa" (wrapper-aware: per-tile gains at packing)
    # or "wa-qp" (wrapper-aware: per-tile/per-block QP offsets inside the codec, HEVC only), or
    # "sse-qp" (SSE through the same per-region-QP encoder path, zero offsets: wa-qp's anchor)
    wa_weights: str = "channel"  # importance kind: per "channel", per "spatial" position, or "both"
    wa_source: str = "wrapper"  # "fixed" (saved with the wrapper), "image" (per image), "wrapper" (as its file says)
    tile_pad: int = 0  # pad packed tiles to multiples of 8/16 samples (QP blocks never straddle tiles)
    wa_strength: float = 1.0  # WA-RDO strength S: dQP = -3 S log2(w), gains w^(S/2) (1 = the full first-order model)
    bits_per_channel: bool = False  # measure bits per channel tile (leave-one-out: k extra encodes)
    # Tasks served from the one bitstream: "detection" always; "pose" / "classification" read
    # the decoded split tensor through their connectors (fcmcore.tasks), or the decoded image
    # in the full-input paradigm. connector: "conv" (trained) or "linear" (naive projection).
    tasks: tuple[str, ...] = ("detection",)
    connector: str = "conv"

    def __post_init__(self) -> None:
        object.__setattr__(self, "wa_strength", float(self.wa_strength))  # 1 and 1.0: one identity
        if isinstance(self.tasks, (list, str)):  # from JSON / a CLI string: keep the config hashable
            object.__setattr__(self, "tasks", tuple(self.tasks.split(",") if isinstance(self.tasks, str) else self.tasks))

    @property
    def paradigm(self) -> str:
        return "full-input" if self.split is None else "model-splitting"

    def with_quality(self, quality: float | None) -> "PipelineConfig":
        return replace(self, quality=quality)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["paradigm"] = self.paradigm  # tasks stays a tuple: sweep plans hash config dicts
        return d

    def label(self) -> str:
        """A readable name for curves and columns, e.g. 'ssd_mobilenet_v2 @ expanded_conv_9 + hevc'."""
        where = "full input" if self.split is None else self.split
        what = self.codec or "uncompressed"
        extra = ""
        if self.wrapper and self.wrapper != "none":
            extra += f" [{self.wrapper.split(':')[0]}]"
        if self.rdo != "sse":
            extra += f" {self.rdo}-rdo"
        if self.rdo in ("wa", "wa-qp") and (self.wa_weights, self.wa_source) != ("channel", "wrapper"):
            extra += f" [{self.wa_weights}/{self.wa_source}]"
        if self.rdo in ("wa", "wa-qp") and self.wa_strength != 1.0:
            extra += f" s{self.wa_strength:g}"
        if self.tile_pad:
            extra += f" pad{self.tile_pad}"
        return f"{self.model} @ {where} + {what}{extra}"


@dataclass
class HeadOutput:
    """What the edge computed before any coding: cacheable per (image, model, split)."""

    model: str
    split: str | None
    meta: ImageMeta
    features: Features | None  # None for the full-input paradigm
    image_rgb: np.ndarray  # (H, W, 3) uint8, the image as given
    timings_ms: dict[str, float]
    model_input: torch.Tensor | None = None  # what the head saw (direct coding starts here)


@dataclass
class PipelineResult:
    config: PipelineConfig
    detections: list[Detection]  # every detection the model keeps (score floor of the model)
    bits: int
    bpp: float  # bits / (input image width * height)
    image_size: tuple[int, int]  # (width, height) of the input image
    timings_ms: dict[str, float]
    quality: float | None  # the quality actually used (codec default filled in)
    features: Features | None = None  # tensors crossing the split, before coding
    decoded_features: Features | None = None  # what the tail received
    frames: dict[str, np.ndarray] | None = None  # packed frames the codec saw
    decoded_frames: dict[str, np.ndarray] | None = None
    decoded_image: np.ndarray | None = None  # full-input paradigm: what the detector saw
    header_bytes: int = 0  # side information (shapes, ranges, bit depth) inside `bits`
    bits_estimated: float | None = None  # learned codecs: rate from likelihoods
    extra: dict[str, Any] = field(default_factory=dict)

    def shown(self, score_threshold: float = DISPLAY_SCORE_THRESHOLD) -> list[Detection]:
        return [d for d in self.detections if d.score >= score_threshold]

    @property
    def feature_shapes(self) -> dict[str, list[int]] | None:
        if self.features is None:
            return None
        return {k: list(v.shape) for k, v in self.features.items()}

    @property
    def raw_feature_bits(self) -> int | None:
        """Bits of the split tensors sent as raw float32: the reference for compression ratio."""
        if self.features is None:
            return None
        return int(sum(v.numel() for v in self.features.values()) * 32)

    def to_json(self, score_threshold: float = DISPLAY_SCORE_THRESHOLD) -> dict[str, Any]:
        shapes = self.feature_shapes
        out: dict[str, Any] = {
            "detections": [d.to_json() for d in self.shown(score_threshold)],
            "bits": self.bits,
            "bpp": self.bpp,
            "model": self.config.model,
            "split": self.config.split,
            "codec": self.config.codec,
            "quality": self.quality,
            "paradigm": self.config.paradigm,
            "wrapper": self.config.wrapper,
            "rdo": self.config.rdo,
            "wa_weights": self.config.wa_weights,
            "wa_source": self.config.wa_source,
            "tile_pad": self.config.tile_pad,
            "wa_strength": self.config.wa_strength,
            "bit_depth": self.extra.get("bit_depth"),
            "quant": self.config.quant if self.config.split else None,
            "feature_shape": next(iter(shapes.values())) if shapes else None,
            "feature_shapes": shapes,
            "header_bytes": self.header_bytes,
            "image_size": list(self.image_size),
            "score_threshold": score_threshold,
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }
        if self.raw_feature_bits:
            out["compression_ratio"] = round(self.raw_feature_bits / max(self.bits, 1), 2)
        if self.bits_estimated is not None:
            out["bits_estimated"] = self.bits_estimated
        for key in ("bits_per_channel", "edge_macs"):
            if key in self.extra:
                out[key] = self.extra[key]
        if self.extra.get("tasks"):
            out["tasks"] = {name: outcome.to_json() for name, outcome in self.extra["tasks"].items()}
        return out


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[stage] = timings.get(stage, 0.0) + (time.perf_counter() - start) * 1000.0


def _validate(config: PipelineConfig) -> None:
    if config.quant not in QUANT_MODES:
        raise ParameterError(f"quant must be one of {', '.join(QUANT_MODES)}, not {config.quant!r}")
    if config.rdo not in RDO_MODES:
        raise ParameterError(f"rdo must be one of {', '.join(RDO_MODES)}, not {config.rdo!r}")
    if config.wa_weights not in WA_WEIGHTS:
        raise ParameterError(f"--wa-weights must be one of {', '.join(WA_WEIGHTS)}, not {config.wa_weights!r}")
    if config.wa_source not in WA_SOURCES:
        raise ParameterError(f"--wa-source must be one of {', '.join(WA_SOURCES)}, not {config.wa_source!r}")
    if config.tile_pad not in TILE_PADS:
        raise ParameterError(f"--tile-pad must be one of {', '.join(map(str, TILE_PADS))}, not {config.tile_pad!r}")
    if not (math.isfinite(config.wa_strength) and 0 < config.wa_strength <= WA_STRENGTH_MAX):
        raise ParameterError(f"--wa-strength must be in (0, {WA_STRENGTH_MAX:g}], not {config.wa_strength!r}")
    if config.wa_weights != "channel" and config.rdo == "wa":
        raise ParameterError(f"--wa-weights {config.wa_weights} needs per-block QP offsets (--rdo wa-qp); "
                             "per-tile gains (--rdo wa) take channel weights only")
    if config.codec is None and config.quality is not None:
        raise ParameterError(f"--quality {config.quality} needs a codec (--codec); nothing is coded")
    if config.bit_depth is not None and config.bit_depth not in BIT_DEPTHS:
        raise ParameterError(f"--bits must be one of {', '.join(map(str, BIT_DEPTHS))} (packing bit depth), "
                             f"not {config.bit_depth}")
    if config.split is None:
        # full input: the codec codes the RGB image; nothing is packed, quantised or weighted
        if config.wrapper not in (None, "", "none"):
            raise ParameterError("wrappers work on split features; full-input (split none) takes no wrapper")
        for flag, given in (("--bits", config.bit_depth is not None), ("--rdo", config.rdo != "sse"),
                            ("--quant", config.quant != "tensor")):
            if given:
                raise ParameterError(f"{flag} applies to packed split features; full-input (split none) codes "
                                     "the 8-bit RGB image as it is")

    if tuple(config.tasks) != parse_tasks(config.tasks):
        raise ParameterError(f"tasks must be a subset of detection, pose, classification in that order, "
                             f"with detection; got {config.tasks!r} (use fcmcore.tasks.secondary.parse_tasks)")
    if config.connector not in CONNECTOR_KINDS:
        raise ParameterError(f"connector must be one of {', '.join(CONNECTOR_KINDS)}, not {config.connector!r}")


def run_head(image: Image.Image, model_name: str = DEFAULT_MODEL, split: str | None = DEFAULT_SPLIT) -> HeadOutput:
    """Edge part up to the split (before any wrapper or codec)."""
    model = load_model(model_name)
    timings: dict[str, float] = {}
    rgb = np.asarray(image.convert("RGB"))
    if split is None:
        meta = ImageMeta(width=image.width, height=image.height)
        return HeadOutput(model_name, None, meta, None, rgb, timings)
    model.split_point(split)  # unknown split: clear error before any work
    with torch.inference_mode():
        with _timed(timings, "preprocess"):
            x, meta = model.preprocess(image)
        with _timed(timings, "head"):
            features = model.head(x, split)
    return HeadOutput(model_name, split, meta, features, rgb, timings, model_input=x)


def run_from_head(head: HeadOutput, config: PipelineConfig, consumers: Consumers | None = None) -> PipelineResult:
    """Everything after the head: wrapper, coding, tail (or, full-input, codec + detector).

    ``consumers``: extra users of the decoded split features besides the detector's tail,
    name -> ``FeatureConsumer``; their results land in ``result.extra["task_outputs"][name]``
    (timed as ``consumer:<name>``). The full-input paradigm has no split features for them."""
    _validate(config)
    if (head.model, head.split) != (config.model, config.split):
        raise ParameterError("head output was computed for another model or split")
    if config.split is None:
        if consumers:
            raise ParameterError("feature consumers need split features; full-input (split none) has none")
        result = _run_full_input(head, config)
    else:
        result = _run_split(head, config, consumers)
    if len(config.tasks) > 1:
        _run_secondary(head, result)
    return result


def _run_secondary(head: HeadOutput, result: PipelineResult) -> None:
    """Pose / classification from what the server decoded (no extra bits): the decoded split
    tensor through each task's connector, or the decoded image (full-input). Their
    uncompressed references are computed (and cached per image) for agreement, timed
    apart from serving."""
    config = result.config
    with torch.inference_mode():
        if config.split is None:
            outcomes = secondary.from_image(result.decoded_image, head.image_rgb, config.tasks)
        else:
            decoded = result.decoded_features or {}
            if len(decoded) != 1:
                raise ParameterError(f"secondary tasks read a single-tensor split; {config.split} carries {len(decoded)}")
            outcomes = secondary.from_split(next(iter(decoded.values())), head.image_rgb, config.tasks,
                                            config.model, config.split, config.connector)
    for outcome in outcomes.values():
        for stage, ms in outcome.timings_ms.items():
            result.timings_ms[stage] = ms
    serving = [k for k in result.timings_ms if not k.endswith("_reference") and k != "total"]
    result.timings_ms["total"] = sum(result.timings_ms[k] for k in serving)
    result.extra["tasks"] = outcomes


def run(image: Image.Image, config: PipelineConfig = PipelineConfig(), consumers: Consumers | None = None
        ) -> PipelineResult:
    _validate(config)
    return run_from_head(run_head(image, config.model, config.split), config, consumers)


def _run_split(head: HeadOutput, config: PipelineConfig, consumers: Consumers | None = None) -> PipelineResult:
    model = load_model(config.model)
    timings = dict(head.timings_ms)
    width, height = head.meta.width, head.meta.height
    assert head.features is not None and config.split is not None
    wrapper = load_wrapper(config.wrapper, config.model, config.split)
    with torch.inference_mode():
        with _timed(timings, "pre_wrapper"):
            reduced = wrapper.pre(head.features)
        coder = make_coder(config, reduced)
        if coder.consumes == MODEL_INPUT:
            if wrapper.name != "none":
                raise ParameterError(f"{coder.name} replaces the head (it codes the model input); it takes no wrapper")
            source: Any = head.model_input
        else:
            source = reduced
        weights = None
        if coder.uses_channel_weights:
            weights = weights_for(wrapper, reduced, config)
            if weights is None:
                raise ParameterError(
                    f"--rdo {config.rdo} needs a wrapper with importance weights; {wrapper.name!r} has none")
        quality = coder.check_quality(config.quality)
        with _timed(timings, "encode"):
            encoded = coder.encode(source, quality, channel_weights=weights)
        if config.bits_per_channel:  # not timed: a measurement, not part of the pipeline
            encoded.bits_per_channel = coder.measure_bits_per_channel(encoded)
        with _timed(timings, "decode"):
            decoded = coder.decode(encoded.bitstream)
        with _timed(timings, "post_wrapper"):
            restored = wrapper.post(decoded.features)
        with _timed(timings, "tail"):
            detections = model.tail(restored, config.split, head.meta)
        task_outputs = _run_consumers(consumers, restored, config.split, head.meta, timings)
    extra: dict[str, Any] = {"edge_macs": coder.edge_macs(model.edge_macs(config.split), quality)}
    if encoded.bit_depth is not None:
        extra["bit_depth"] = encoded.bit_depth
    if encoded.bits_per_channel is not None:
        extra["bits_per_channel"] = encoded.bits_per_channel
    if task_outputs:
        extra["task_outputs"] = task_outputs
    bits = encoded.bits
    timings["total"] = sum(v for k, v in timings.items() if k != "total")
    return PipelineResult(
        config=config,
        detections=detections,
        bits=bits,
        bpp=bits / (width * height),
        image_size=(width, height),
        timings_ms=timings,
        quality=encoded.quality,
        features=head.features,
        decoded_features=restored,
        frames=encoded.frames,
        decoded_frames=decoded.frames,
        header_bytes=encoded.header_bytes,
        bits_estimated=encoded.bits_estimated,
        extra=extra,
    )


def make_coder(config: PipelineConfig, reduced: Features) -> FeatureCoder:
    """The feature coder of ``config`` (``reduced``: the tensors it will code, which fix the
    layout of the uncompressed reference)."""
    if config.codec is None:
        if config.bit_depth is not None:
            raise ParameterError(f"--bits {config.bit_depth} needs a codec: uncompressed features are raw float32")
        if config.rdo != "sse":
            raise ParameterError(f"--rdo {config.rdo} needs a codec: uncompressed features are not quantised")
        return RawFeatureCoder.for_features(reduced)
    return coder_for(config.codec, bit_depth=config.bit_depth, quant=config.quant, rdo=config.rdo,
                     expect={n: tuple(t.shape) for n, t in reduced.items()}, tile_pad=config.tile_pad,
                     wa_strength=config.wa_strength if config.rdo in ("wa", "wa-qp") else 1.0)


def weights_for(wrapper, reduced: Features, config: PipelineConfig):
    """The wrapper's WA-RDO importance weights of ``config.wa_weights`` from
    ``config.wa_source`` (None: the wrapper has none)."""
    if hasattr(wrapper, "importance_weights"):
        return wrapper.importance_weights(reduced, config.wa_weights, config.wa_source)
    if (config.wa_weights, config.wa_source) != ("channel", "wrapper"):
        return None
    return wrapper.channel_weights(reduced)


def _run_consumers(consumers: Consumers | None, features: Features, split: str, meta: ImageMeta,
                   timings: dict[str, float]) -> dict[str, Any]:
    """Hand the decoded (post-wrapper) features to every extra consumer, each timed."""
    out: dict[str, Any] = {}
    for name, consume in (consumers or {}).items():
        with _timed(timings, f"consumer:{name}"):
            out[name] = consume(features, split, meta)
    return out


def _run_full_input(head: HeadOutput, config: PipelineConfig) -> PipelineResult:
    model = load_model(config.model)
    timings = dict(head.timings_ms)
    height, width = head.image_rgb.shape[:2]
    quality = None
    decoded_rgb = head.image_rgb
    if config.codec is None:
        bits = width * height * 24  # raw 8-bit RGB
    else:
        codec = get_codec(config.codec)
        if not codec.supports_images:
            raise ParameterError(f"{codec.name} codes split features only, not images (full-input, --split none)")
        quality = codec.check_quality(config.quality)
        with _timed(timings, "encode"):
            data = codec.encode_image(head.image_rgb, quality)
        with _timed(timings, "decode"):
            decoded_rgb = codec.decode_image(data, (height, width))
        bits = len(data) * 8
    with torch.inference_mode():
        with _timed(timings, "detector"):
            detections = model.detect(Image.fromarray(decoded_rgb))
    timings["total"] = sum(v for k, v in timings.items() if k != "total")
    return PipelineResult(
        config=config,
        detections=detections,
        bits=bits,
        bpp=bits / (width * height),
        image_size=(width, height),
        timings_ms=timings,
        quality=quality,
        decoded_image=decoded_rgb,
        extra={"edge_macs": 0},
    )
