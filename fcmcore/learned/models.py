"""Learned feature codecs: three CompressAI architectures for one split tensor (C, H, W).

All three share the same skeleton (``FeatureCodecNet``)::

    x (1, C, H, W) -> normalise (per-channel mean/std fitted on train features)
      -> pad to a multiple of 2*down (replicate) -> y = gain * (A x + g_a(x))  (M, H'/down, W'/down)
      -> entropy model (arch-specific) -> y_hat -> x_hat = B y' + g_s(y'), y' = y_hat / gain
      -> crop -> denormalise

g_a/g_s: 3x3 convs with GDN/IGDN (N channels); A, B: linear skip paths (1x1 convs, identity
at initialisation when M = C and down = 1, the default: a 64x19x19 map is already small, and
a 2x2 downsampling with M = 64 cannot keep more than ~70 % of its variance, PCA of 2x2
patches); gain: a learned per-channel quantiser scale. At initialisation the codec is
therefore a uniform quantiser of the normalised features, which the few thousand training
steps a CPU affords then improve.

* ``factorized``: ``EntropyBottleneckLatentCodec`` (a fully factorized prior on y).
* ``hyperprior``: ``HyperpriorLatentCodec`` = ``HyperLatentCodec`` (z, EntropyBottleneck)
  + ``GaussianConditionalLatentCodec`` (mean-scale Gaussian on y).
* ``context``: ELIC-style space-channel context: ``HyperLatentCodec`` for z, then
  ``ChannelGroupsLatentCodec`` (uneven channel groups decoded in order, each conditioned
  on the hyper-prior and every earlier group) whose groups are
  ``CheckerboardLatentCodec`` (anchors first, then non-anchors from a checkerboard
  masked conv) over ``GaussianConditionalLatentCodec``; plus latent residual prediction
  (LRP, Minnen & Singh 2020) after each group: y_hat_k += 0.5 tanh(f_k(params, y_hat_<=k)).

Training (``forward``) uses the latent codecs' own ``forward`` (likelihoods). Real coding
(``code``) walks the very same sub-modules in the same order as the latent codecs'
``compress``/``decompress`` but writes every symbol into ONE rANS stream
(``compressai.ans.BufferedRansEncoder`` / ``RansDecoder``) instead of one string per
group and pass: each rANS string costs ~8 bytes of flush, which would be 9 strings
(~600 bits) per image for the context model, a large share at the rates that matter
here. The same ``code`` routine runs on both sides (an encoder or a decoder of ``rans`` or
``fastcoding`` as the ``coder``), so the decoder's y_hat is the encoder's y_hat, bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.latent_codecs import (ChannelGroupsLatentCodec, CheckerboardLatentCodec, EntropyBottleneckLatentCodec,
                                      GaussianConditionalLatentCodec, HyperLatentCodec, HyperpriorLatentCodec)
from compressai.layers import GDN, CheckerboardMaskedConv2d
from compressai.models.base import CompressionModel, get_scale_table
from compressai.ops import quantize_ste
from torch import Tensor, nn

from .fastcoding import FastDecoder, FastEncoder
from .layers import LatentResidualPrediction, _hyper, conv, deconv  # noqa: F401 (shared with scar)
from .rans import _Tables
from .scar import ScarEntropyModel  # transformer SC-AR context (see scar.py)

ARCHS = ("factorized", "hyperprior", "context", "scar")


def initial_gain(lam: float) -> float:
    """Latent gain whose quantiser step suits ``lam`` for a unit-variance input at high rate:
    minimising R + lam * D with D = step^2 / 12 and dR/dD = -1 / (2 ln2 D) gives
    D = 1 / (2 ln2 lam), i.e. step = sqrt(6 / (ln2 lam))."""
    return math.sqrt(math.log(2) * lam / 6.0)


@dataclass
class CodecConfig:
    """Everything needed to rebuild a network (stored in the weights' metadata)."""

    arch: str
    channels: int  # C of the split tensor
    N: int = 64  # transform width
    M: int = 64  # latent channels
    Nh: int = 64  # hyper-latent channels
    groups: list[int] = field(default_factory=lambda: [8, 8, 16, 32])  # context only; sums to M
    down: int = 1  # spatial downsampling of g_a (1 or 2)
    skip: bool = True  # linear skip paths around g_a and g_s (identity-initialised when down=1, M=C)

    def __post_init__(self):
        if self.down not in (1, 2):
            raise ValueError(f"down must be 1 or 2, not {self.down}")
        if self.arch not in ARCHS:
            raise ValueError(f"unknown learned codec architecture {self.arch!r}; known: {', '.join(ARCHS)}")
        if self.arch in ("context", "scar") and sum(self.groups) != self.M:
            raise ValueError(f"channel groups {self.groups} must sum to M={self.M}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "CodecConfig":
        d = dict(d)
        if "groups" in d:
            d["groups"] = [int(g) for g in d["groups"]]
        return cls(**d)


# ----- the three entropy models --------------------------------------------------------------

def _context_codec(M: int, Nh: int, groups: list[int]) -> tuple[HyperLatentCodec, ChannelGroupsLatentCodec]:
    side = M  # hyper params channels (ELIC uses 2M; M keeps the encoder's MACs down)
    channel_context = {
        f"y{k}": nn.Sequential(conv(sum(groups[:k]), 48, 3), nn.LeakyReLU(inplace=True), conv(48, 2 * groups[k], 3))
        for k in range(1, len(groups))
    }
    groups_codec = {}
    for k, g in enumerate(groups):
        cin = 2 * g + (2 * g if k > 0 else 0) + side
        aggregation = nn.Sequential(
            nn.Conv2d(cin, 96, 1), nn.LeakyReLU(inplace=True),
            nn.Conv2d(96, 64, 1), nn.LeakyReLU(inplace=True),
            nn.Conv2d(64, 2 * g, 1),
        )
        groups_codec[f"y{k}"] = CheckerboardLatentCodec(
            latent_codec={"y": GaussianConditionalLatentCodec(quantizer="ste")},
            context_prediction=CheckerboardMaskedConv2d(g, 2 * g, kernel_size=5, stride=1, padding=2),
            entropy_parameters=aggregation,
        )
    cg = ChannelGroupsLatentCodec(groups=groups, channel_context=channel_context, latent_codec=groups_codec)
    return _hyper(M, Nh, side), cg


# ----- the network ---------------------------------------------------------------------------

class FeatureCodecNet(CompressionModel):
    """A learned codec for one (C, H, W) tensor; see the module docstring."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        C, N, M, Nh = cfg.channels, cfg.N, cfg.M, cfg.Nh
        self.register_buffer("feat_mean", torch.zeros(C))
        self.register_buffer("feat_std", torch.ones(C))
        d = cfg.down
        self.pad_multiple = 2 * d  # h_a halves the latent; the checkerboard wants it even
        self.g_a = nn.Sequential(conv(C, N, 3), GDN(N), conv(N, N, 3, stride=d), GDN(N), conv(N, M, 3))
        self.g_s = nn.Sequential(conv(M, N, 3), GDN(N, inverse=True), deconv(N, N, 3, 2) if d == 2 else conv(N, N, 3),
                                 GDN(N, inverse=True), conv(N, C, 3))
        if cfg.skip:
            # Linear paths y = A x + g_a(x), x_hat = B y_hat + g_s(y_hat): at initialisation the codec is
            # a uniform quantiser of the normalised features (step 1 / gain, see log_gain), a sensible
            # start for the few thousand steps a CPU affords; training refines the linear and
            # non-linear parts.
            self.skip_a = nn.Conv2d(C, M, d, stride=d)
            self.skip_s = nn.ConvTranspose2d(M, C, d, stride=d)
            with torch.no_grad():
                for layer in (self.g_a[-1], self.g_s[-1]):
                    layer.weight.mul_(0.1)
                if d == 1 and M == C:
                    self.skip_a.weight.copy_(torch.eye(C).view(C, C, 1, 1))
                    self.skip_s.weight.copy_(torch.eye(C).view(C, C, 1, 1))
                    self.skip_a.bias.zero_()
                    self.skip_s.bias.zero_()
        # Per-channel latent gain (log): y = gain * g_a(x), g_s sees y_hat / gain. It sets the quantiser
        # step; training gives it a higher learning rate and warm starts rescale it for the new lambda.
        self.log_gain = nn.Parameter(torch.zeros(M))
        if cfg.arch == "factorized":
            self.latent_codec = EntropyBottleneckLatentCodec(EntropyBottleneck(M))
        elif cfg.arch == "hyperprior":
            self.latent_codec = HyperpriorLatentCodec(latent_codec={
                "y": GaussianConditionalLatentCodec(quantizer="ste"),
                "hyper": _hyper(M, Nh, 2 * M),
            })
        elif cfg.arch == "scar":
            self.scar = ScarEntropyModel(M, Nh, list(cfg.groups))
        else:
            hyper, groups = _context_codec(M, Nh, list(cfg.groups))
            self.hyper = hyper
            self.groups_codec = groups
            self.lrp = LatentResidualPrediction(M, list(cfg.groups))
        self._tables: dict[int, _Tables] | None = None

    # -- shapes and normalisation -------------------------------------------------------------
    def padded(self, h: int, w: int) -> tuple[int, int]:
        m = self.pad_multiple
        return -(-h // m) * m, -(-w // m) * m

    def latent_shape(self, h: int, w: int) -> tuple[int, int, int]:
        ph, pw = self.padded(h, w)
        return self.cfg.M, ph // self.cfg.down, pw // self.cfg.down

    def hyper_shape(self, h: int, w: int) -> tuple[int, int, int]:
        _, lh, lw = self.latent_shape(h, w)
        return self.cfg.Nh, -(-lh // 2), -(-lw // 2)

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.feat_mean.view(1, -1, 1, 1)) / self.feat_std.view(1, -1, 1, 1)

    def denormalize(self, x: Tensor) -> Tensor:
        return x * self.feat_std.view(1, -1, 1, 1) + self.feat_mean.view(1, -1, 1, 1)

    def analysis(self, x_norm: Tensor) -> Tensor:
        h, w = x_norm.shape[-2:]
        ph, pw = self.padded(h, w)
        x = F.pad(x_norm, (0, pw - w, 0, ph - h), mode="replicate")
        y = self.g_a(x) + self.skip_a(x) if self.cfg.skip else self.g_a(x)
        return y * torch.exp(self.log_gain).view(1, -1, 1, 1)

    def synthesis(self, y_hat: Tensor, h: int, w: int) -> Tensor:
        y = y_hat * torch.exp(-self.log_gain).view(1, -1, 1, 1)
        x = self.g_s(y) + self.skip_s(y) if self.cfg.skip else self.g_s(y)
        return x[..., :h, :w]

    # -- training / estimation ----------------------------------------------------------------
    def entropy_forward(self, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """y -> (y_hat for the synthesis, likelihoods). Train mode: noise for the rates,
        straight-through rounding for y_hat; eval mode: exact rounding (what ``code`` does)."""
        arch = self.cfg.arch
        if arch == "factorized":
            out = self.latent_codec(y)
            eb = self.latent_codec.entropy_bottleneck
            medians = eb._get_medians().reshape(1, -1, 1, 1)
            y_hat = quantize_ste(y - medians) + medians
            return y_hat, out["likelihoods"]
        if arch == "hyperprior":
            out = self.latent_codec(y)
            return out["y_hat"], out["likelihoods"]
        if arch == "scar":
            return self.scar(y)
        hyper_out = self.hyper(y)
        params = hyper_out["params"]
        y_out = self.groups_codec(y, params)
        y_hat = self.lrp(y_out["y_hat"], params)
        return y_hat, {"y": y_out["likelihoods"]["y"], "z": hyper_out["likelihoods"]["z"]}

    def forward(self, x: Tensor) -> dict[str, Any]:
        """Raw features (B, C, H, W) -> {"x_hat", "x_hat_norm", "x_norm", "likelihoods"}."""
        h, w = x.shape[-2:]
        x_norm = self.normalize(x)
        y_hat, likelihoods = self.entropy_forward(self.analysis(x_norm))
        x_hat_norm = self.synthesis(y_hat, h, w)
        return {"x_hat": self.denormalize(x_hat_norm), "x_hat_norm": x_hat_norm, "x_norm": x_norm,
                "likelihoods": likelihoods}

    # -- real coding ---------------------------------------------------------------------------
    def update(self, scale_table=None, force: bool = False, update_quantiles: bool = False) -> bool:
        updated = super().update(scale_table=scale_table if scale_table is not None else get_scale_table(),
                                 force=force, update_quantiles=update_quantiles)
        self._tables = {id(m): _Tables(m) for m in self.modules()
                        if isinstance(m, (EntropyBottleneck, GaussianConditional))}
        return updated

    def _require_tables(self) -> dict[int, _Tables]:
        if self._tables is None:
            raise RuntimeError("call update(force=True) before coding")
        return self._tables

    def _code_hyper(self, coder, hyper: HyperLatentCodec, y: Tensor | None, hshape) -> Tensor:
        z = hyper.h_a(y) if y is not None else None
        z_hat = coder.bottleneck(hyper.entropy_bottleneck, z, hshape)
        return hyper.h_s(z_hat)

    @staticmethod
    def _code_gaussian(coder, lc: GaussianConditionalLatentCodec, y: Tensor | None, ctx_params: Tensor) -> Tensor:
        scales, means = lc._chunk(lc.entropy_parameters(ctx_params))
        return coder.gaussian(lc.gaussian_conditional, y, scales, means)

    def _code_checkerboard(self, coder, cb: CheckerboardLatentCodec, y: Tensor | None, side_params: Tensor) -> Tensor:
        # Mirrors CheckerboardLatentCodec.compress/decompress (anchors, then non-anchors).
        n, _, h, w = side_params.shape
        c = cb.context_prediction.in_channels
        y_hat_ = side_params.new_zeros((2, n, c, h, w // 2))
        side_ = cb.unembed(side_params)
        y_ = cb.unembed(y) if y is not None else None
        for i in range(2):
            if i == 0:  # why: the anchors' context is all zeros (CompressAI masks it); skip the conv
                cp = cb.context_prediction
                y_ctx_i = side_params.new_zeros((n, cp.out_channels, h, w // 2))
            else:
                y_ctx_i = cb.unembed(cb.context_prediction(cb.embed(y_hat_)))[i]
            params_i = cb.entropy_parameters(cb.merge(y_ctx_i, side_[i]))
            y_hat_[i] = self._code_gaussian(coder, cb.latent_codec["y"], None if y_ is None else y_[i], params_i)
        return cb.embed(y_hat_)

    def code(self, coder, y: Tensor | None, h: int, w: int) -> Tensor:
        """Entropy-code y (encoder: y given) or decode it (decoder: y None) with ``coder``;
        returns the latent the synthesis sees. Identical operations on both sides."""
        lshape = (1, *self.latent_shape(h, w))
        hshape = (1, *self.hyper_shape(h, w))
        arch = self.cfg.arch
        if arch == "factorized":
            return coder.bottleneck(self.latent_codec.entropy_bottleneck, y, lshape)
        if arch == "hyperprior":
            params = self._code_hyper(coder, self.latent_codec["hyper"], y, hshape)
            return self._code_gaussian(coder, self.latent_codec["y"], y, params)
        if arch == "scar":
            return self.scar.code(coder, y, lshape, hshape)
        params = self._code_hyper(coder, self.hyper, y, hshape)
        cg = self.groups_codec
        y_hat = params.new_zeros(lshape)
        y_hat_ = y_hat.split(cg.groups, dim=1)
        y_groups = y.split(cg.groups, dim=1) if y is not None else [None] * len(cg.groups)
        for k in range(len(cg.groups)):
            ctx = cg._get_ctx_params(k, params, y_hat_)
            y_hat_[k][:] = self._code_checkerboard(coder, cg.latent_codec[f"y{k}"], y_groups[k], ctx)
        return self.lrp(y_hat, params)

    @torch.no_grad()
    def compress(self, x: Tensor, synthesize: bool = True) -> dict[str, Any]:
        """Raw (1, C, H, W) -> {"strings": [stream], "y_hat", "x_hat", "num_symbols"}."""
        return self.compress_norm(self.normalize(x), synthesize)

    @torch.no_grad()
    def compress_norm(self, x_norm: Tensor, synthesize: bool = True) -> dict[str, Any]:
        """Like ``compress`` for an already normalised input (direct coding's student output).
        ``synthesize=False`` leaves out "x_hat" (the encoder-side reconstruction, which only
        the decoder needs: ``reconstruct`` makes it from "y_hat" when asked)."""
        h, w = x_norm.shape[-2:]
        y = self.analysis(x_norm)
        enc = FastEncoder(self._require_tables())
        y_hat = self.code(enc, y, h, w)
        stream = enc.finish()
        out = {"strings": [stream], "y_hat": y_hat, "num_symbols": enc.num_symbols,
               "bits_estimated": enc.bits_estimated}
        if synthesize:
            out["x_hat"] = self.reconstruct(y_hat, h, w)
        return out

    @torch.no_grad()
    def reconstruct(self, y_hat: Tensor, h: int, w: int) -> Tensor:
        """The raw h x w reconstruction of a coded latent (what ``decompress`` returns as x_hat)."""
        return self.denormalize(self.synthesis(y_hat, h, w))

    @torch.no_grad()
    def decompress(self, strings: list[bytes], h: int, w: int) -> dict[str, Any]:
        (stream,) = strings
        dec = FastDecoder(self._require_tables(), stream)
        y_hat = self.code(dec, None, h, w)
        return {"y_hat": y_hat, "x_hat": self.reconstruct(y_hat, h, w)}

    @torch.no_grad()
    def estimate_bits(self, x: Tensor) -> dict[str, float]:
        """Ideal code length (-log2 of the likelihoods, eval mode) of each latent, in bits."""
        return self.estimate_bits_norm(self.normalize(x))

    @torch.no_grad()
    def estimate_bits_norm(self, x_norm: Tensor) -> dict[str, float]:
        was_training = self.training
        self.eval()
        try:
            _, likelihoods = self.entropy_forward(self.analysis(x_norm))
        finally:
            self.train(was_training)
        return {k: float(-torch.log2(v).sum()) for k, v in likelihoods.items()}

    def encoder_macs(self, h: int, w: int) -> int:
        """Multiply-accumulates the encoder spends on an h x w input: g_a plus everything the
        entropy coder needs (h_a, h_s, and for ``context`` the channel/spatial context and
        parameter nets), not g_s or LRP (reconstruction only). Counted with conv hooks."""
        if self._tables is None:
            self.update(force=True)
        parts = (self.g_s, getattr(self, "skip_s", None), getattr(self, "lrp", None),
                 getattr(getattr(self, "scar", None), "lrp", None))
        skip = {id(m) for part in parts if part is not None for m in part.modules()}
        x = torch.zeros(1, self.cfg.channels, h, w)
        return count_macs(lambda t: self.compress_norm(t), x, self, skip)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def count_macs(fn, x: Tensor, module: nn.Module, skip: set[int] = frozenset()) -> int:
    """Conv multiply-accumulates of ``fn(x)``, summed with forward hooks over ``module``
    (modules whose id is in ``skip`` are not counted)."""
    total = [0]

    def hook(m, inputs, output):
        if isinstance(m, nn.ConvTranspose2d):
            total[0] += inputs[0].numel() // inputs[0].shape[0] * m.out_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Conv2d):
            total[0] += output.numel() // output.shape[0] * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):  # token layers (scar); batch = positions, all of one image
            total[0] += output.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and id(m) not in skip]
    try:
        with torch.no_grad():
            fn(x)
    finally:
        for hd in handles:
            hd.remove()
    return total[0]
