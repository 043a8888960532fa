"""The learned codecs as registry codecs: ``factorized``, ``hyperprior``, ``context``.

They are *feature* coders (``fcmcore.coding.FeatureCoder``): they code the split tensor
itself, no packing into a frame, so no bit depth: ``encode(features, quality) -> Encoded`` /
``decode(bitstream) -> Decoded``; ``supports_images`` is False. Quality = model index 1..N (N networks, one per training lambda; higher = more
bits). Weights: ``assets/learned/<arch>/q<i>.safetensors`` + ``manifest.json`` (or
``$FCM_LEARNED_DIR/<arch>/``).

Bitstream (version 1; everything is counted in ``bits = len(data) * 8``)::

    u8      0xFC (magic)
    u8      version (high nibble, 1) | codec id (low nibble: 1 factorized, 2 hyperprior,
            3 context, 4 direct, 5 scar)
    u8      quality (model index)
    u16 LE  weights fingerprint (first 2 bytes of the SHA-256 of that quality's weights file)
    varint  C, H, W of the coded tensor
    varint  number of rANS strings n (1), then n varint lengths
    the n strings (one rANS stream holding z then y, see ``models``)
    u16 LE  CRC-32 (zlib) of every preceding byte, low 16 bits

``header_bytes`` = everything but the strings (about 12 bytes). Decoding refuses with
``BitstreamError`` anything that does not parse exactly: bad magic/version/id, a quality
without weights, weights other than the ones the stream was made with, a shape that is not
the trained one, lengths that do not add up, a checksum mismatch (truncation, bit flips),
a non-finite reconstruction. The rANS decoder has no bounds checks of its own, so the
string it gets is followed by enough zero bytes to bound every read and every loop of it
(see ``stream._safe_padding``): even a stream that passed the checksum by chance decodes to
finite garbage in bounded time, never a crash or a hang.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import torch

from ..codecs.base import Codec, QualitySpec
from ..coding.base import FEATURES, Decoded, Encoded, FeatureCoder
from ..errors import BitstreamError, ParameterError, WeightsError
from ..paths import ASSETS_DIR
from ..registry import CODECS
from .stream import CODEC_IDS, LazyFeatures, StreamHeader, _safe_padding, learned_encoded, pack_stream, parse_stream

MAX_SIDE = 512  # largest H or W accepted (the networks are fully convolutional)
DEFAULT_NUM_QUALITIES = 5


def learned_root() -> Path:
    """Folder holding one sub-folder of weights per learned codec."""
    env = os.environ.get("FCM_LEARNED_DIR")
    if env:
        return Path(env)
    return ASSETS_DIR / "learned"


# ----- the codec ----------------------------------------------------------------------------

class LearnedCodecBase(Codec, FeatureCoder):
    """Shared machinery: weights folder, manifest, per-quality network cache, container."""

    arch: str = ""
    weights_folder: str = ""  # folder under assets/learned (default: the arch's name)
    consumes = FEATURES
    supports_images = False
    lossless = False
    detects_truncation = True
    train_hint = "fcm train-codec"

    def __init__(self, weights_dir: str | Path | None = None):
        self.weights_dir = (Path(weights_dir) if weights_dir is not None
                            else learned_root() / (self.weights_folder or self.arch))
        self._nets: dict[int, Any] = {}
        self._fingerprints: dict[int, int] = {}
        self._macs: dict[int, int] = {}
        self._lock = threading.RLock()
        self._manifest: dict[str, Any] | None = None
        self._manifest_error: str | None = None
        self._load_manifest()
        n = len(self._manifest["qualities"]) if self._manifest else DEFAULT_NUM_QUALITIES
        self.quality = QualitySpec(1, n, True, (n + 1) // 2, integer=True,
                                   meaning="learned model index (one network per training lambda)")

    # -- weights --------------------------------------------------------------------------
    def _load_manifest(self) -> None:
        path = self.weights_dir / "manifest.json"
        if not path.is_file():
            self._manifest_error = f"no trained weights at {path.parent} (train them with `{self.train_hint}`)"
            return
        try:
            manifest = json.loads(path.read_text())
            qualities = manifest["qualities"]
            if not qualities or [q["quality"] for q in qualities] != list(range(1, len(qualities) + 1)):
                raise ValueError("qualities must be 1..N")
            for key in ("model", "split", "tensor", "shape"):
                manifest[key]  # noqa: B018 (presence check)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._manifest_error = f"unreadable manifest {path}: {exc}"
            return
        self._manifest = manifest

    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            raise WeightsError(f"codec {self.name}: {self._manifest_error}")
        return self._manifest

    def available(self) -> tuple[bool, str]:
        try:
            import compressai  # noqa: F401  why: optional; this is the availability check
            import compressai.ans  # noqa: F401  why: as above
        except ImportError:
            return False, "compressai is not installed (pip install compressai==1.2.8 --no-deps)"
        if self._manifest is None:
            return False, self._manifest_error or "no weights"
        missing = [q["file"] for q in self._manifest["qualities"] if not (self.weights_dir / q["file"]).is_file()]
        if missing:
            return False, f"weights file(s) missing in {self.weights_dir}: {', '.join(missing)}"
        return True, ""

    def trained_for(self) -> str:
        m = self.manifest
        c, h, w = m["shape"]
        return f"{m['model']} @ {m['split']} ({m['tensor']} {c}x{h}x{w})"

    def _net(self, quality: int):
        """The network for ``quality``, loaded once (WeightsError when missing/corrupt)."""
        with self._lock:
            if quality in self._nets:
                return self._nets[quality]
            self.require_available()
            entry = self.manifest["qualities"][quality - 1]
            path = self.weights_dir / entry["file"]
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise WeightsError(f"codec {self.name}: cannot read {path} ({exc})") from None
            if entry.get("sha256") and hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise WeightsError(f"codec {self.name}: {path} does not match its manifest (sha256)")
            net = self._build(path, entry)
            net.update(force=True)
            self._nets[quality] = net
            self._fingerprints[quality] = int.from_bytes(hashlib.sha256(data).digest()[:2], "little")
            return net

    def preload(self, quality=None) -> None:
        """Load (and ``update()``) the network of ``quality``, or of every quality: the first
        coding call otherwise pays it (about a second here)."""
        qualities = [self.check_quality(quality)] if quality is not None else range(1, int(self.quality.hi) + 1)
        for q in qualities:
            self._net(q)

    def _build(self, path: Path, entry: dict[str, Any]):
        from .weights import load_weights  # why: needs CompressAI (optional); codecs list without it

        try:
            net, meta = load_weights(path)
        except Exception as exc:  # safetensors / shape errors
            raise WeightsError(f"codec {self.name}: unusable weights file {path} ({type(exc).__name__}: {exc})") from None
        m = self.manifest
        if meta.get("split") not in (None, m["split"]) or net.cfg.channels != m["shape"][0]:
            raise WeightsError(f"codec {self.name}: {path} is not for {self.trained_for()}")
        return net

    def check_quality(self, quality):
        return int(super().check_quality(quality))

    # -- features -------------------------------------------------------------------------
    def _check_features(self, features) -> tuple[str, torch.Tensor]:
        m = self.manifest
        if not isinstance(features, dict) or not features:
            raise ParameterError(f"{self.name}: expected a dict of feature tensors, got {type(features).__name__}")
        names = list(features)
        if names != [m["tensor"]]:
            got = ", ".join(f"{k} {tuple(v.shape[1:]) if isinstance(v, torch.Tensor) else '?'}" for k, v in features.items())
            raise WeightsError(f"{self.name} weights were trained for {self.trained_for()}; got tensors {got}. "
                               f"Train weights for that split with `fcm train-codec --split ...`")
        x = features[names[0]]
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 4 or x.shape[0] != 1:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ParameterError(f"{self.name}: expected a float (1, C, H, W) tensor, got {got}")
        c, h, w = x.shape[1:]
        if c != m["shape"][0]:
            raise WeightsError(f"{self.name} weights were trained for {self.trained_for()}; "
                               f"got {c} channels ({names[0]} {c}x{h}x{w})")
        if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
            raise ParameterError(f"{self.name}: feature size {h}x{w} outside 1..{MAX_SIDE}")
        if not torch.isfinite(x).all():
            raise ParameterError(f"{self.name}: features contain NaN or infinity")
        return names[0], x.detach().float()

    def _payload_symbols(self, net, h: int, w: int) -> int:
        c, lh, lw = net.latent_shape(h, w)
        n = c * lh * lw
        if net.cfg.arch != "factorized":
            ch, hh, hw = net.hyper_shape(h, w)
            n += ch * hh * hw
        return n

    def _decode_strings(self, net, strings: list[bytes], h: int, w: int):
        if len(strings) != 1:
            raise BitstreamError(f"{self.name}: expected 1 rANS string, got {len(strings)}")
        if not strings[0]:
            raise BitstreamError(f"{self.name}: empty payload")
        padded = _safe_padding(strings[0], self._payload_symbols(net, h, w))
        with torch.inference_mode():
            out = net.decompress([padded], h, w)
        if not torch.isfinite(out["x_hat"]).all():
            raise BitstreamError(f"{self.name}: undecodable payload (non-finite reconstruction)")
        return out

    def _parse(self, data) -> tuple[StreamHeader, Any]:
        data = self._check_data(data)
        self.require_available()
        hdr = parse_stream(data, self.name, CODEC_IDS[self.arch])
        n = self.quality.hi
        if not 1 <= hdr.quality <= n:
            raise BitstreamError(f"{self.name}: quality {hdr.quality} in the stream; these weights have 1..{n}")
        net = self._net(hdr.quality)
        if hdr.fingerprint != self._fingerprints[hdr.quality]:
            raise BitstreamError(f"{self.name}: the stream was made with other weights (fingerprint mismatch)")
        return hdr, net

    def _encoded(self, q: int, shape, tensor: str, out: dict[str, Any]) -> Encoded:
        """A coder's output (``compress``) as this codec's stream; its bit estimate is the
        eval-mode likelihoods the coder summed over the very symbols it wrote (no second pass).
        The reconstruction is made only when read: the pipeline never reads it on the encoder side."""
        data, header_bytes = pack_stream(CODEC_IDS[self.arch], q, self._fingerprints[q], tuple(shape), out["strings"])
        net, y_hat, (h, w) = self._net(q), out["y_hat"], tuple(shape)[-2:]

        def synthesize() -> torch.Tensor:
            with self._lock, torch.inference_mode():
                return net.reconstruct(y_hat, h, w)

        return learned_encoded(data, header_bytes, q, float(out["bits_estimated"]),
                               LazyFeatures(tensor, synthesize), y_hat)

    def _check_stream_shape(self, c: int, h: int, w: int) -> None:
        """BitstreamError unless a stream of shape (c, h, w) fits the trained networks."""
        raise NotImplementedError

    def decode(self, bitstream: bytes) -> Decoded:
        def run():
            hdr, net = self._parse(bitstream)
            c, h, w = hdr.shape
            self._check_stream_shape(c, h, w)
            with self._lock:
                out = self._decode_strings(net, hdr.strings, h, w)
            return Decoded(features={self.manifest["tensor"]: out["x_hat"]},
                           extra={"quality": hdr.quality, "y_hat": out["y_hat"]})

        return self._guarded_decode(run)

    def to_json(self) -> dict[str, Any]:
        d = super().to_json()
        d.update({"codes_features": self.consumes == FEATURES, "direct": self.consumes != FEATURES,
                  "arch": self.arch})
        if self._manifest is not None:
            m = self._manifest
            d.update({"model": m["model"], "split": m["split"], "tensor": m["tensor"], "shape": m["shape"],
                      "lambdas": [q["lambda"] for q in m["qualities"]], "loss": m.get("loss")})
        return d


class LearnedFeatureCodec(LearnedCodecBase):
    """A learned codec of the split tensor (see the module docstring)."""

    def encode(self, source: dict[str, torch.Tensor], quality=None, *, channel_weights=None) -> Encoded:
        q = self.check_quality(quality)
        features = source
        self.require_available()
        name, x = self._check_features(features)
        net = self._net(q)
        with self._lock, torch.inference_mode():
            out = net.compress(x, synthesize=False)
        return self._encoded(q, x.shape[1:], name, out)

    def _check_stream_shape(self, c: int, h: int, w: int) -> None:
        if c != self.manifest["shape"][0] or not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
            raise BitstreamError(f"{self.name}: stream shape {c}x{h}x{w} does not fit {self.trained_for()}")

    def edge_macs(self, head_macs: int | None, quality=None) -> int | None:
        """The head's MACs plus this codec's analysis transform (it runs on the edge too)."""
        return None if head_macs is None else head_macs + self.encoder_macs(quality)

    def encoder_macs(self, quality=None) -> int:
        """MACs of this codec's encoder on the trained tensor size (add the head's for the edge)."""
        _, h, w = self.manifest["shape"]
        q = self.check_quality(quality)
        # counted once per quality: the pipeline asks on every run, and counting is a full
        # hooked encode (it was a third of the learned pipelines' time)
        if q not in self._macs:
            self._macs[q] = self._net(q).encoder_macs(h, w)
        return self._macs[q]


@CODECS.register("factorized")
class FactorizedCodec(LearnedFeatureCodec):
    name = "factorized"
    arch = "factorized"
    description = "learned feature codec: analysis/synthesis transforms + factorized prior (CompressAI EntropyBottleneck)"


@CODECS.register("hyperprior")
class HyperpriorCodec(LearnedFeatureCodec):
    name = "hyperprior"
    arch = "hyperprior"
    description = "learned feature codec: mean-scale hyperprior (CompressAI HyperpriorLatentCodec)"


@CODECS.register("context")
class ContextCodec(LearnedFeatureCodec):
    name = "context"
    arch = "context"
    description = ("learned feature codec: hyperprior + channel groups with checkerboard spatial context and "
                   "latent residual prediction (ELIC-style, CompressAI latent codecs)")


@CODECS.register("scar")
class ScarCodec(LearnedFeatureCodec):
    name = "scar"
    arch = "scar"
    description = ("learned feature codec: hyperprior + spatial-channel autoregressive context with attention "
                   "(transformer over channel groups, checkerboard neighbour attention; see fcmcore/learned/scar.py)")


@CODECS.register("hyperprior-deep")
class HyperpriorDeepCodec(HyperpriorCodec):
    # why: the same network and bitstream as hyperprior (the weights' fingerprint tells them apart);
    # trained with MSE after the frozen detector at expanded_conv_12 (assets/learned/losses)
    name = "hyperprior-deep"
    weights_folder = "hyperprior-deep"
    description = ("learned feature codec: mean-scale hyperprior trained with --loss deep (MSE at "
                   "expanded_conv_12 through the frozen detector)")


@CODECS.register("context-deep")
class ContextDeepCodec(ContextCodec):
    # why: the same network and bitstream as context, trained like hyperprior-deep (MSE after the
    # frozen detector at expanded_conv_12): the best model-split curve measured (assets/learned/README.md)
    name = "context-deep"
    weights_folder = "context-deep"
    description = ("learned feature codec: context (channel groups + checkerboard) trained with --loss deep "
                   "(MSE at expanded_conv_12 through the frozen detector)")


@CODECS.register("scar-deep")
class ScarDeepCodec(ScarCodec):
    # why: the same network and bitstream as scar, warm-started from context-deep and trained with
    # the same deep loss (MSE after the frozen detector at expanded_conv_12)
    name = "scar-deep"
    weights_folder = "scar-deep"
    description = ("learned feature codec: scar (transformer SC-AR context) trained with --loss deep "
                   "(MSE at expanded_conv_12 through the frozen detector), warm-started from context-deep")


FEATURE_CODECS = (FactorizedCodec, HyperpriorCodec, ContextCodec, ScarCodec)
