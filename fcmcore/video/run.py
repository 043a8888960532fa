"""The data flow for a clip.

Model-splitting, sequence coding (``codec`` hevc/vvc)::

    frames -> preprocess -> head (per frame) -> pack (ranges per sequence/frame)
           -> ONE video stream per tensor (intra / ldp / ra)  |  decode -> unpack -> tail (per frame)

Model-splitting, per-frame baselines (any other codec: still-image codecs, learned codecs):
each frame through :func:`fcmcore.pipeline.run_from_head` on its own (all-intra by nature).

Full-input anchor (``split=None``): the clip itself coded as one video stream (hevc/vvc,
same structures) or frame by frame (still codecs), then the whole detector per decoded frame.

The uncompressed reference (``reference_detections``) is the tail on the uncoded head
features, which equals the whole detector by the split-model contract. Heads are computed
once per clip and split (:func:`compute_heads`) and reused across qualities and structures.

Wrappers and wrapper-aware RDO: ``wrapper`` runs its pre-network on every frame's features
before packing and its post-network before the tail; ``rdo="wa"`` packs each frame with
per-tile gains sqrt(w_c) from the wrapper's importance weights (the codec-agnostic
mechanism of ``--rdo wa`` for images). ``wa_source`` says where the weights come from:
``fixed`` (saved with the wrapper: one set for the clip), ``image`` (re-estimated on every
frame's reduced tensor) or ``gop`` (re-estimated on the first frame of each GOP, i.e. every
intra period, and reused for the GOP's frames: the wrapper-aware RDO paper's practical
variant, one estimate per GOP instead of per frame). ``"wrapper"`` resolves to what the
wrapper file's ``rdo_weights`` says (fixed, or image for ``image-*``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from ..codecs import get_codec
from ..errors import CodecUnavailableError, ParameterError
from ..models import DEFAULT_MODEL, load_model
from ..models.base import Detection, Features, ImageMeta
from ..pipeline import HeadOutput, PipelineConfig, run_from_head
from ..wrappers import load_wrapper
from .clip import Clip, iter_clip
from .coder import SEQUENCE_RDO, VideoFeatureCoder  # the FeatureCoder sequence hook
from .sequence import GOPS, SEQUENCE_CODERS, check_gop, sequence_coder

DEFAULT_SPLIT = "expanded_conv_9"
WA_SOURCES = ("fixed", "image", "gop")  # + "wrapper": as the wrapper file says (resolved by validate)
ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class VideoConfig:
    """One operating point on a clip. ``split=None``: full-input (the clip itself coded)."""

    model: str = DEFAULT_MODEL
    split: str | None = DEFAULT_SPLIT
    codec: str = "hevc"
    gop: str = "ldp"
    intra_period: int | None = None
    quality: float | None = None
    bit_depth: int | None = None  # None: 10 for hevc/vvc, the codec's default otherwise
    quant: str = "tensor"
    ranges: str = "sequence"  # min/max per "sequence" or per "frame" (sequence coding only)
    wrapper: str = "none"  # "name" or "name:path" (fcmcore.wrappers)
    rdo: str = "sse"  # "sse" or "wa" (wrapper-aware: per-tile gains at packing)
    wa_source: str | None = "wrapper"  # fixed / image / gop (see the module docstring); None with sse

    @property
    def sequence_coded(self) -> bool:
        return self.codec in SEQUENCE_CODERS

    def with_quality(self, q) -> "VideoConfig":
        return replace(self, quality=q)

    def label(self) -> str:
        where = "full input" if self.split is None else self.split
        gop = self.gop if self.sequence_coded else "per-frame"
        extra = f" ip{self.intra_period}" if self.intra_period and self.gop != "intra" else ""
        rng = " frame-ranges" if self.ranges == "frame" and self.split and self.sequence_coded else ""
        wrap = f" [{self.wrapper.split(':')[0]}]" if self.wrapper not in (None, "", "none") else ""
        rdo = f" wa-rdo/{self.wa_source}" if self.rdo == "wa" else ""
        return f"{self.model} @ {where} + {self.codec} {gop}{extra}{rng}{wrap}{rdo}"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["paradigm"] = "full-input" if self.split is None else "model-splitting"
        return d


def validate(config: VideoConfig) -> VideoConfig:
    """Check a config before any work; fills in the quality and bit depth defaults."""
    model = load_model(config.model)
    if config.split is not None:
        model.split_point(config.split)
    if config.quant not in ("tensor", "channel"):
        raise ParameterError(f"--quant must be tensor or channel, not {config.quant!r}")
    if config.ranges not in ("sequence", "frame"):
        raise ParameterError(f"--range must be sequence or frame, not {config.ranges!r}")
    config = _validate_wrapper(config)
    if config.sequence_coded:
        coder = sequence_coder(config.codec)
        check_gop(config.gop, config.intra_period)
        ok, reason = coder.available()
        if not ok:
            raise CodecUnavailableError(f"codec {config.codec} is not available here: {reason}")
        q = coder.check_quality(config.quality)
        bd = config.bit_depth or 10
        if bd not in coder.bit_depths:
            raise ParameterError(f"{config.codec} sequences are {', '.join(map(str, coder.bit_depths))}-bit, not {bd}")
        return replace(config, quality=q, bit_depth=bd if config.split else None)
    if config.gop not in GOPS:
        raise ParameterError(f"--gop must be one of {', '.join(GOPS)}, not {config.gop!r}")
    if config.gop != "intra":
        raise ParameterError(f"{config.codec} codes each frame on its own: use --gop intra "
                             f"(inter structures need {' or '.join(SEQUENCE_CODERS)})")
    codec = get_codec(config.codec)
    codec.require_available()
    q = codec.check_quality(config.quality)
    if config.split is None and not codec.supports_images:
        raise ParameterError(f"{config.codec} codes features only; it cannot code the clip (full-input)")
    if config.wa_source == "gop":
        raise ParameterError(f"--wa-source gop needs sequence coding ({' or '.join(SEQUENCE_CODERS)}); "
                             f"{config.codec} codes every frame on its own: use --wa-source image")
    return replace(config, quality=q, intra_period=None, ranges="sequence")


def _validate_wrapper(config: VideoConfig) -> VideoConfig:
    """Wrapper / RDO options: checked, and ``wa_source`` resolved (None with ``sse``)."""
    wrapped = config.wrapper not in (None, "", "none")
    if config.rdo not in SEQUENCE_RDO:
        raise ParameterError(f"video coding takes --rdo {' or '.join(SEQUENCE_RDO)} (per-tile gains at packing), "
                             f"not {config.rdo!r}")
    if config.wa_source not in (None, "wrapper", *WA_SOURCES):
        raise ParameterError(f"--wa-source must be one of {', '.join(WA_SOURCES)}, not {config.wa_source!r}")
    if config.split is None and (wrapped or config.rdo != "sse"):
        raise ParameterError("wrappers and --rdo wa work on split features; full-input (split none) takes neither")
    if not wrapped:
        if config.rdo == "wa":
            raise ParameterError("--rdo wa needs a wrapper with importance weights (--wrapper pca|learned)")
        return replace(config, wrapper="none", wa_source=None)
    wrapper = load_wrapper(config.wrapper, config.model, config.split)  # missing / mismatched file: one line
    if config.rdo == "sse":
        if config.wa_source not in (None, "wrapper"):
            raise ParameterError(f"--wa-source {config.wa_source} applies to --rdo wa")
        return replace(config, wa_source=None)
    source = config.wa_source or "wrapper"
    if source == "wrapper":
        source = "image" if str(getattr(wrapper, "rdo_weights", "")).startswith("image-") else "fixed"
    if not hasattr(wrapper, "importance_weights"):
        raise ParameterError(f"--rdo wa needs a wrapper with importance weights; {wrapper.name!r} has none")
    return replace(config, wa_source=source)


@dataclass
class Heads:
    """Head outputs of every frame of a clip at one split (None: full-input)."""

    model: str
    split: str | None
    features: list[Features] | None
    metas: list[ImageMeta]
    ms: float  # preprocess + head, all frames


def compute_heads(clip: Clip, model_name: str, split: str | None, progress: ProgressFn | None = None) -> Heads:
    model = load_model(model_name)
    metas = [ImageMeta(width=f.shape[1], height=f.shape[0]) for f in clip.frames]
    if split is None:
        return Heads(model_name, None, None, metas, 0.0)
    model.split_point(split)
    start = time.perf_counter()
    feats, metas = [], []
    with torch.inference_mode():
        for i, rgb in enumerate(clip.frames):
            x, meta = model.preprocess(Image.fromarray(rgb))
            feats.append(model.head(x, split))
            metas.append(meta)
            if progress:
                progress("head", i + 1, len(clip.frames))
    return Heads(model_name, split, feats, metas, (time.perf_counter() - start) * 1000)


def stream_heads(path, model_name: str, split: str, *, start: int = 0, frames: int | None = None,
                 stride: int = 1, progress: ProgressFn | None = None) -> tuple[Clip, Heads]:
    """Decode and run the head frame by frame, keeping only the features: memory stays at
    the model plus ~C*H*W floats per frame, whatever the clip's resolution. The returned
    ``Clip`` has no frames (what split sequence coding needs: rate, size, indices)."""
    model = load_model(model_name)
    model.split_point(split)
    feats, metas, indices = [], [], []
    info = None
    ms = 0.0
    with torch.inference_mode():
        for info, index, rgb in iter_clip(path, start=start, frames=frames, stride=stride):
            t = time.perf_counter()
            x, meta = model.preprocess(Image.fromarray(rgb))
            feats.append(model.head(x, split))
            ms += (time.perf_counter() - t) * 1000
            metas.append(meta)
            indices.append(index)
            if progress:
                progress("head", len(indices), frames or 0)
    return Clip(info, [], indices, start, stride), Heads(model_name, split, feats, metas, ms)


def reference_detections(clip: Clip, heads: Heads, progress: ProgressFn | None = None) -> list[list[Detection]]:
    """The uncompressed run: tail on the uncoded features (== the whole detector)."""
    model = load_model(heads.model)
    out = []
    n = len(heads.metas)
    with torch.inference_mode():
        for i in range(n):
            if heads.features is None:
                out.append(model.detect(Image.fromarray(clip.frames[i])))
            else:
                out.append(model.tail(heads.features[i], heads.split, heads.metas[i]))
            if progress:
                progress("reference", i + 1, n)
    return out


@dataclass
class VideoResult:
    config: VideoConfig  # resolved (quality and bit depth filled in)
    fps: float
    width: int
    height: int
    indices: list[int]  # source frame index of each coded frame
    frame_bits: list[int]  # display order; sums to ``bits``
    intra: list[bool]
    detections: list[list[Detection]]  # decoded side, every detection the model keeps
    bits: int
    header_bytes: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)
    decoded_frames: list[np.ndarray] | None = None  # full-input: what the detector saw

    @property
    def num_frames(self) -> int:
        return len(self.frame_bits)

    @property
    def kbps(self) -> float:
        return self.bits / (self.num_frames / self.fps) / 1000.0

    @property
    def bpp(self) -> float:
        return self.bits / (self.num_frames * self.width * self.height)


def run_video(clip: Clip, config: VideoConfig, *, heads: Heads | None = None,
              progress: ProgressFn | None = None, keep_decoded: bool = False) -> VideoResult:
    """Code ``clip`` with ``config`` and run the tail (or the detector) on the decoded side."""
    config = validate(config)
    if heads is None or (heads.model, heads.split) != (config.model, config.split):
        heads = compute_heads(clip, config.model, config.split, progress)
    model = load_model(config.model)
    n = len(heads.metas)
    if not clip.frames and not (config.sequence_coded and config.split is not None):
        raise ParameterError("this configuration needs the decoded frames (read_clip, not stream_heads)")
    timings: dict[str, float] = {"head": heads.ms}
    t0 = time.perf_counter()
    decoded_frames = None
    header_bytes = 0
    dets: list[list[Detection]] = []
    if config.sequence_coded:
        coder = sequence_coder(config.codec)
        if config.split is not None:
            wrapper = load_wrapper(config.wrapper, config.model, config.split)
            with torch.inference_mode():
                reduced = [wrapper.pre(f) for f in heads.features]
            tw = time.perf_counter()
            weights = sequence_weights(wrapper, reduced, config) if config.rdo == "wa" else None
            t0, ts = time.perf_counter(), t0  # "encode" times the codec; wrapper and weights apart
            if wrapper.name != "none":
                timings["pre_wrapper"] = (tw - ts) * 1000
            if weights is not None:
                timings["weights"] = (t0 - tw) * 1000
            fc = VideoFeatureCoder(config.codec, structure=config.gop, bit_depth=config.bit_depth,
                                   quant=config.quant, ranges=config.ranges, rdo=config.rdo)
            enc = fc.encode_sequence(reduced, config.quality, gop=config.intra_period, channel_weights=weights)
            t1 = time.perf_counter()
            decoded = [d.features for d in fc.decode_sequence(enc.bitstream)]
            t2 = time.perf_counter()
            frame_bits = [it.extra["bits"] for it in enc.items]
            intra = [it.extra["intra"] for it in enc.items]
            bits, header_bytes = enc.bits, enc.items[0].header_bytes
            with torch.inference_mode():
                for i in range(n):
                    dets.append(model.tail(wrapper.post(decoded[i]), config.split, heads.metas[i]))
                    if progress:
                        progress("tail", i + 1, n)
        else:
            seq = coder.encode_rgb(clip.frames, config.quality, config.gop, config.intra_period)
            t1 = time.perf_counter()
            decoded_frames = coder.decode_rgb(seq.data, (clip.height, clip.width), n)
            t2 = time.perf_counter()
            frame_bits, intra, bits = [8 * b for b in seq.frame_bytes], seq.intra, seq.bits
            with torch.inference_mode():
                for i, rgb in enumerate(decoded_frames):
                    dets.append(model.detect(Image.fromarray(rgb)))
                    if progress:
                        progress("detector", i + 1, n)
        timings.update(encode=(t1 - t0) * 1000, decode=(t2 - t1) * 1000, tail=(time.perf_counter() - t2) * 1000)
    else:
        frame_bits, intra, bits, decoded_frames = _run_per_frame(clip, heads, config, dets, progress, keep_decoded)
        timings["per_frame"] = (time.perf_counter() - t0) * 1000
    return VideoResult(config, clip.fps, clip.width, clip.height, list(clip.indices), frame_bits, intra, dets,
                       bits, header_bytes, timings, decoded_frames if keep_decoded else None)


def sequence_weights(wrapper, reduced: list, config: VideoConfig) -> list[dict]:
    """Per frame, the wrapper's channel importance (mean 1) from ``config.wa_source``:
    ``fixed`` one set for the clip, ``image`` one estimate per frame, ``gop`` one estimate on
    the first frame of each GOP (every intra period, display order) reused for its frames."""
    n = len(reduced)
    # why: per-image estimates are memoised on the wrapper (a sweep codes one image at several
    # QPs); each run must pay for the estimates its encoder makes, or gop-vs-image timings lie
    wrapper.__dict__.pop("_image_maps", None)
    if config.wa_source == "fixed":
        return [wrapper.importance_weights(reduced[0], "channel", "fixed")] * n
    if config.wa_source == "image":
        return [wrapper.importance_weights(r, "channel", "image") for r in reduced]
    period = check_gop(config.gop, config.intra_period)
    out: list[dict] = []
    for i, r in enumerate(reduced):
        if i % period == 0:
            current = wrapper.importance_weights(r, "channel", "image")
        out.append(current)
    return out


def _run_per_frame(clip, heads, config: VideoConfig, dets, progress, keep_decoded):
    """Per-frame intra baselines: every frame through the image pipeline on its own."""
    pconf = PipelineConfig(model=config.model, split=config.split, codec=config.codec, quality=config.quality,
                           bit_depth=config.bit_depth, quant=config.quant, wrapper=config.wrapper, rdo=config.rdo,
                           wa_source=config.wa_source or "wrapper")
    model = load_model(config.model)
    frame_bits, decoded = [], []
    n = len(clip.frames)
    direct = bool(getattr(get_codec(config.codec), "direct", False))  # direct coding starts from the model input
    for i, rgb in enumerate(clip.frames):
        feats = heads.features[i] if heads.features is not None else None
        model_input = None
        if direct:
            model_input, _ = model.preprocess(Image.fromarray(rgb))
        head = HeadOutput(config.model, config.split, heads.metas[i], feats, rgb, {}, model_input=model_input)
        res = run_from_head(head, pconf)
        frame_bits.append(int(res.bits))
        dets.append(res.detections)
        if keep_decoded and res.decoded_image is not None:
            decoded.append(res.decoded_image)
        if progress:
            progress("frames", i + 1, n)
    return frame_bits, [True] * n, sum(frame_bits), (decoded or None)
