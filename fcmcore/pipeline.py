"""The data flow, stage by stage.

Model-splitting paradigm (edge | server):

    image -> preprocess -> head -> pre-wrapper -> pack + encode  |  decode + unpack
          -> post-wrapper -> tail -> detections

Full-input paradigm: image -> image codec -> decoded image -> whole detector -> detections.

``run(image, config)`` does either. For interactive use (the app), ``run_head`` and
``run_from_head`` split the work so that moving a quality slider re-runs only the coding
and the tail. Every stage is timed; bits are ``len(bitstream) * 8`` of what the server
decodes (side information included).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from .errors import ParameterError
from .models import DEFAULT_MODEL, load_model
from .models.base import Detection, Features, ImageMeta

DEFAULT_SPLIT = "expanded_conv_9"
DEFAULT_CODEC = "hevc"
DISPLAY_SCORE_THRESHOLD = 0.4
QUANT_MODES = ("tensor", "channel")
RDO_MODES = ("sse", "wa", "wa-qp")


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
    # or "wa-qp" (wrapper-aware: per-tile QP offsets inside the codec, HEVC only); see wrappers.rdo
    bits_per_channel: bool = False  # measure bits per channel tile (leave-one-out: k extra encodes)
    # Tasks served from the one bitstream: "detection" always; "pose" / "classification" read
    # the decoded split tensor through their connectors (fcmcore.tasks), or the decoded image
    # in the full-input paradigm. connector: "conv" (trained) or "linear" (naive projection).
    tasks: tuple[str, ...] = ("detection",)
    connector: str = "conv"

    def __post_init__(self) -> None:
        if isinstance(self.tasks, (list, str)):  # from JSON / a CLI string: keep the config hashable
            object.__setattr__(self, "tasks", tuple(self.tasks.split(",") if isinstance(self.tasks, str) else self.tasks))

    @property
    def paradigm(self) -> str:
        return "full-input" if self.split is None else "model-splitting"

    def with_quality(self, quality: float | None) -> "PipelineConfig":
        return replace(self, quality=quality)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["paradigm"] = self.paradigm
        d["tasks"] = list(self.tasks)
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
    if config.split is None and config.wrapper not in (None, "", "none"):
        raise ParameterError("wrappers work on split features; full-input (split none) takes no wrapper")
    from .tasks.secondary import CONNECTOR_KINDS, parse_tasks

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


def run_from_head(head: HeadOutput, config: PipelineConfig) -> PipelineResult:
    """Everything after the head: wrapper, coding, tail (or, full-input, codec + detector)."""
    _validate(config)
    if (head.model, head.split) != (config.model, config.split):
        raise ParameterError("head output was computed for another model or split")
    result = _run_full_input(head, config) if config.split is None else _run_split(head, config)
    if len(config.tasks) > 1:
        _run_secondary(head, result)
    return result


def _run_secondary(head: HeadOutput, result: PipelineResult) -> None:
    """Pose / classification from what the server decoded (no extra bits): the decoded split
    tensor through each task's connector, or the decoded image (full-input). Their
    uncompressed references are computed (and cached per image) for agreement, timed
    apart from serving."""
    from .tasks import secondary

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


def run(image: Image.Image, config: PipelineConfig = PipelineConfig()) -> PipelineResult:
    _validate(config)
    return run_from_head(run_head(image, config.model, config.split), config)


def _run_split(head: HeadOutput, config: PipelineConfig) -> PipelineResult:
    from .bitstream import decode_features, encode_features
    from .codecs import get_codec
    from .wrappers import load_wrapper

    model = load_model(config.model)
    timings = dict(head.timings_ms)
    width, height = head.meta.width, head.meta.height
    assert head.features is not None and config.split is not None
    wrapper = load_wrapper(config.wrapper, config.model, config.split)
    extra: dict[str, Any] = {"edge_macs": model.edge_macs(config.split)}
    with torch.inference_mode():
        with _timed(timings, "pre_wrapper"):
            reduced = wrapper.pre(head.features)
        frames = decoded_frames = None
        header_bytes = 0
        bits_estimated = None
        quality = None
        if config.codec is None:  # uncompressed reference: raw float32 over the wire
            received = reduced
            bits = int(sum(v.numel() for v in reduced.values()) * 32)
        else:
            codec = get_codec(config.codec)
            quality = codec.check_quality(config.quality)
            if getattr(codec, "direct", False):
                # Direct coding: a learned encoder replaces the head (image -> coded latent).
                if wrapper.name != "none":
                    raise ParameterError("direct coding replaces the head; it takes no wrapper")
                with _timed(timings, "encode"):
                    encoded = codec.encode_image_to_features(head.model_input, quality)
                with _timed(timings, "decode"):
                    decoded = codec.decode_features(encoded.data)
                extra["edge_macs"] = codec.edge_macs()
            elif getattr(codec, "codes_features", False):
                # Learned feature codecs code the tensors themselves (no packing into frames);
                # their analysis transform runs on the edge too.
                if hasattr(codec, "encoder_macs") and extra["edge_macs"] is not None:
                    extra["edge_macs"] += codec.encoder_macs(quality)
                with _timed(timings, "encode"):
                    encoded = codec.encode_features(reduced, quality)
                with _timed(timings, "decode"):
                    decoded = codec.decode_features(encoded.data)
            else:
                bit_depth = config.bit_depth or codec.default_bit_depth()
                gains, qp_offsets = _rdo_allocation(wrapper, reduced, config, codec)
                with _timed(timings, "encode"):
                    encoded = encode_features(reduced, codec, quality, bit_depth=bit_depth, mode=config.quant,
                                              gains=gains, qp_offsets=qp_offsets)
                if config.bits_per_channel:  # not timed: a measurement, not part of the pipeline
                    from .wrappers.rdo import bits_per_channel

                    encoded.bits_per_channel = bits_per_channel(encoded, codec, quality, qp_offsets)
                with _timed(timings, "decode"):
                    decoded = decode_features(encoded.data, codec)
                extra["bit_depth"] = bit_depth
            received = decoded.features
            bits = len(encoded.data) * 8
            frames, decoded_frames = encoded.frames, decoded.frames
            header_bytes = encoded.header_bytes
            bits_estimated = getattr(encoded, "bits_estimated", None)
            if getattr(encoded, "bits_per_channel", None) is not None:
                extra["bits_per_channel"] = encoded.bits_per_channel
        with _timed(timings, "post_wrapper"):
            restored = wrapper.post(received)
        with _timed(timings, "tail"):
            detections = model.tail(restored, config.split, head.meta)
    timings["total"] = sum(v for k, v in timings.items() if k != "total")
    return PipelineResult(
        config=config,
        detections=detections,
        bits=bits,
        bpp=bits / (width * height),
        image_size=(width, height),
        timings_ms=timings,
        quality=quality,
        features=head.features,
        decoded_features=restored,
        frames=frames,
        decoded_frames=decoded_frames,
        header_bytes=header_bytes,
        bits_estimated=bits_estimated,
        extra=extra,
    )


def _rdo_allocation(wrapper, reduced: Features, config: PipelineConfig, codec):
    """(per-channel packing gains, per-channel QP offsets) for wrapper-aware RDO; (None, None)
    for plain SSE RDO. With importance weights w_c (mean 1): ``wa`` -> gains sqrt(w_c);
    ``wa-qp`` -> QP offsets -3 log2(w_c) (centred; codecs with per-region QP only). With
    ``quant="channel"`` each channel's own range already scales its step, so the weights
    are multiplied by range_c^2 to make the feature-domain steps follow w_c alone."""
    if config.rdo == "sse":
        return None, None
    if config.rdo == "wa-qp" and not getattr(codec, "supports_qp_offsets", False):
        raise ParameterError(f"--rdo wa-qp needs per-region QP control (hevc); {codec.name} has none: use --rdo wa")
    weights = wrapper.channel_weights(reduced)
    if weights is None:
        raise ParameterError(f"--rdo {config.rdo} needs a wrapper with importance weights; {wrapper.name!r} has none")
    eff = {}
    for name, w in weights.items():
        w = np.asarray(w, dtype=np.float64)
        if config.quant == "channel":
            t = reduced[name].detach().to(torch.float64)
            span = (t.amax(dim=(0, 2, 3)) - t.amin(dim=(0, 2, 3))).numpy()
            w = w * np.maximum(span, 1e-12) ** 2
        eff[name] = w
    if config.rdo == "wa":
        return {name: np.sqrt(w) for name, w in eff.items()}, None
    from .wrappers.rdo import qp_offsets_from_weights

    return None, {name: qp_offsets_from_weights(w) for name, w in eff.items()}


def _run_full_input(head: HeadOutput, config: PipelineConfig) -> PipelineResult:
    from .codecs import get_codec

    model = load_model(config.model)
    timings = dict(head.timings_ms)
    height, width = head.image_rgb.shape[:2]
    quality = None
    decoded_rgb = head.image_rgb
    if config.codec is None:
        bits = width * height * 24  # raw 8-bit RGB
    else:
        codec = get_codec(config.codec)
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
