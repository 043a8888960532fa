"""``scar``: a spatial-channel autoregressive entropy model with attention (SC-AR).

The latent y (M channels) is split into channel groups coded in order (default 8, 8, 16,
32, as ``context``). Each group's Gaussian means and scales come from

* the hyperprior (``HyperLatentCodec``: z through an ``EntropyBottleneck``, h_s -> side
  features at the latent resolution) and the groups decoded before it, through a small
  causal **transformer over channel groups**: at every position the token sequence is
  [side, e_0, ..., e_{k-1}] (e_j = a 3x3 embedding of decoded group j, so a token also
  sees its neighbourhood) and the output at token k predicts group k;
* a **checkerboard spatial context** inside the group: the anchors (i + j even) are
  coded first from the channel context alone; each non-anchor then attends (one
  cross-attention block, learned relative-position embeddings) to the 12 decoded anchors
  of its group in the 5x5 window around it.

So decoding is two passes per group (8 for 4 groups), each batched over all positions of
the pass, plus latent residual prediction (``models.LatentResidualPrediction``) at the end,
as ``context`` does. Entropy coding: CompressAI's ``GaussianConditional`` tables and rANS
through the coder ``models`` passes in (one stream for z and every pass).

One routine (``run``) serves training (no coder: noisy likelihoods, straight-through
rounding around the predicted means), the eval-mode estimate, and real coding (a coder:
the encoder and the decoder execute the same operations on the same values, so the
decoder's y_hat equals the encoder's bit for bit on one machine).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from compressai.entropy_models import GaussianConditional
from compressai.ops import quantize_ste

from .layers import LatentResidualPrediction, _hyper

# Width of the attention blocks; part of the stored weights' shapes (changing them needs new weights).
DIM = 48
HEADS = 4
CHANNEL_LAYERS = 1
WINDOW = 5
KV_DIM = 32  # keys/values of the neighbour attention


def anchor_offsets(window: int = WINDOW) -> list[tuple[int, int]]:
    """Offsets (di, dj) inside the window from a non-anchor to the anchors around it
    (anchors are where i + j is even, so these are the offsets with di + dj odd)."""
    r = window // 2
    return [(di, dj) for di in range(-r, r + 1) for dj in range(-r, r + 1) if (di + dj) % 2]


class ChannelBlock(nn.Module):
    """Pre-norm transformer block with causal self-attention over the group tokens, run one
    token at a time (keys/values of earlier tokens cached: each token costs one pass)."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def step(self, x: Tensor, cache: list[Tensor]) -> Tensor:
        """x: (N, d) the newest token; cache: [keys, values] (N, heads, L, hd), extended in place."""
        n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(n, 3, self.heads, 1, d // self.heads).unbind(1)
        if cache:
            cache[0] = torch.cat([cache[0], k], dim=2)
            cache[1] = torch.cat([cache[1], v], dim=2)
        else:
            cache.extend([k, v])
        if cache[0].shape[2] == 1:
            # the first token sees only itself: softmax of one logit is exactly 1, so the
            # attention output is its own value (the same numbers, a few ops fewer)
            a = v[:, :, 0]
        else:
            a = attend(q[:, :, 0], cache[0], cache[1])  # the newest token sees all so far
        x = x + self.proj(a.reshape(n, d))
        return x + self.ff(self.ln2(x))


def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """One query per sequence: q (N, heads, hd), k/v (N, heads, L, hd) -> (N, heads, hd).
    Written out elementwise: with L <= 12 keys this is several times cheaper on a CPU than
    ``scaled_dot_product_attention`` or batched matmuls of 1 x L matrices, forward and backward."""
    w = torch.softmax((q.unsqueeze(2) * k).sum(-1) * q.shape[-1] ** -0.5, dim=-1)
    return (w.unsqueeze(-1) * v).sum(2)


class NeighbourAttention(nn.Module):
    """Each queried position attends to the decoded anchors in the window around it. Keys
    and values are 1x1 projections of the anchors (made once per anchor, then gathered per
    window offset by shifted views); keys get a learned relative-position embedding."""

    def __init__(self, d: int, heads: int, kv_dim: int = KV_DIM, window: int = WINDOW):
        super().__init__()
        self.heads, self.kv_dim, self.window = heads, kv_dim, window
        self.offsets = anchor_offsets(window)
        self.rel = nn.Parameter(torch.randn(len(self.offsets), kv_dim) * 0.02)
        self.ln_q = nn.LayerNorm(d)
        self.q = nn.Linear(d, kv_dim)
        self.proj = nn.Linear(kv_dim, d)
        self._windows: dict[tuple, tuple[Tensor, Tensor]] = {}

    def window_index(self, h: int, w: int, positions: Tensor) -> Tensor:
        """Flat indexes into the (h + 2r) x (w + 2r) padded map of every (position, offset) pair,
        position-major (len(positions) * K); cached per map size and position set."""
        key = (h, w, positions.numel(), positions.data_ptr())
        hit = self._windows.get(key)
        if hit is not None and hit[0] is positions:
            return hit[1]
        r, wp = self.window // 2, w + 2 * (self.window // 2)
        di = torch.tensor([o[0] for o in self.offsets], device=positions.device)
        dj = torch.tensor([o[1] for o in self.offsets], device=positions.device)
        i, j = (positions // w).view(-1, 1), (positions % w).view(-1, 1)
        index = ((i + r + di) * wp + (j + r + dj)).reshape(-1)
        self._windows[key] = (positions, index)
        return index

    def forward(self, query: Tensor, kv: Tensor, positions: Tensor) -> Tensor:
        """query (B, d, H, W); kv (B, 2 kv_dim, H, W) (only its anchor cells are read); positions:
        flat indexes of non-anchors queried -> (B, d, len(positions))."""
        b, _, h, w = kv.shape
        r, n, c, hd = self.window // 2, positions.numel(), self.kv_dim, self.kv_dim // self.heads
        padded = F.pad(kv, (r, r, r, r)).flatten(2)
        # one gather of the K window cells of every queried position (the same values as stacking
        # K shifted maps and then picking the positions, without building K full maps). Kept
        # channel-major on purpose: attend's sums then run over a strided axis, in index order, as
        # they always did; a cell-major copy would make them vectorised sums, rounded differently,
        # and change the bytes of existing weights
        cols = padded.index_select(2, self.window_index(h, w, positions)).view(b, 2 * c, n, len(self.offsets))
        cols = cols.permute(0, 2, 3, 1).reshape(b * n, len(self.offsets), 2 * c)
        k = (cols[..., :c] + self.rel).view(b * n, -1, self.heads, hd).transpose(1, 2)
        v = cols[..., c:].reshape(b * n, -1, self.heads, hd).transpose(1, 2)
        q_in = self.ln_q(query.flatten(2).transpose(1, 2).contiguous().index_select(1, positions)).reshape(b * n, -1)
        out = self.proj(attend(self.q(q_in).view(b * n, self.heads, hd), k, v).reshape(b * n, c))
        return out.view(b, n, -1).transpose(1, 2)


def _head(cin: int, d: int, g: int) -> nn.Sequential:
    head = nn.Sequential(nn.Conv2d(cin, d, 1), nn.LeakyReLU(inplace=True), nn.Conv2d(d, 2 * g, 1))
    with torch.no_grad():  # start at scale 1, mean 0: a sane rate from the first step
        head[-1].weight.mul_(0.1)
        head[-1].bias.zero_()
        head[-1].bias[:g].fill_(1.0)
    return head


class ScarEntropyModel(nn.Module):
    """Hyperprior + transformer channel context + checkerboard neighbour attention + LRP."""

    def __init__(self, M: int, Nh: int, groups: list[int]):
        super().__init__()
        self.groups = list(groups)
        d = DIM
        self.hyper = _hyper(M, Nh, M)
        self.side_proj = nn.Conv2d(M, d, 1)
        self.group_embed = nn.ModuleList(nn.Conv2d(g, d, 3, padding=1) for g in self.groups[:-1])
        self.token_pos = nn.Parameter(torch.zeros(len(self.groups), d))
        self.channel_blocks = nn.ModuleList(ChannelBlock(d, HEADS) for _ in range(CHANNEL_LAYERS))
        self.channel_norm = nn.LayerNorm(d)
        self.anchor_kv = nn.ModuleList(nn.Conv2d(g, 2 * KV_DIM, 1) for g in self.groups)
        self.spatial = NeighbourAttention(d, 2)
        self.head_anchor = nn.ModuleList(_head(d, d, g) for g in self.groups)
        self.head_rest = nn.ModuleList(_head(2 * d, d, g) for g in self.groups)
        self.gaussian_conditional = GaussianConditional(None)
        self.lrp = LatentResidualPrediction(M, self.groups)
        self._layout: dict[tuple[int, int], tuple[Tensor, Tensor, Tensor]] = {}

    @torch.no_grad()
    def init_heads(self, y: Tensor) -> None:
        """Start every group's anchor and non-anchor heads at the per-channel Gaussian of the
        latents ``y`` (B, M, H, W) (output weights zeroed, biases = std and mean), i.e. as a
        factorized prior. Used when the transforms come trained from another codec (``--init``):
        the default start (scale 1, mean 0) costs ~1.5 bits per value where the trained
        latents need < 0.1, and Adam moves a bias by about the learning rate per step, so
        hundreds of steps would go to walking the scales down while the rate gradient drags
        the trained transforms along."""
        flat = y.transpose(0, 1).reshape(y.shape[1], -1)
        mean, std = flat.mean(1), flat.std(1).clamp_min(0.11)
        c0 = 0
        for k, g in enumerate(self.groups):
            for head in (self.head_anchor[k], self.head_rest[k]):
                last = head[-1]
                last.weight.zero_()
                last.bias[:g].copy_(std[c0:c0 + g])
                last.bias[g:].copy_(mean[c0:c0 + g])
            c0 += g

    def layout(self, h: int, w: int, device) -> tuple[Tensor, Tensor, Tensor]:
        """(anchor mask (1, 1, h, w), flat anchor indexes, flat non-anchor indexes)."""
        key = (h, w)
        if key not in self._layout:
            i = torch.arange(h).view(-1, 1)
            j = torch.arange(w).view(1, -1)
            mask = ((i + j) % 2 == 0).view(1, 1, h, w)
            flat = mask.flatten()
            self._layout[key] = (mask, flat.nonzero().flatten(), (~flat).nonzero().flatten())
        return tuple(t.to(device) for t in self._layout[key])

    def channel_context(self, token: Tensor, k: int, caches: list[list[Tensor]]) -> Tensor:
        """Push token k ((B, d, H, W)) through the causal transformer; its output there."""
        b, d, h, w = token.shape
        x = (token + self.token_pos[k].view(1, d, 1, 1)).permute(0, 2, 3, 1).reshape(b * h * w, d)
        for block, cache in zip(self.channel_blocks, caches):
            x = block.step(x, cache)
        return self.channel_norm(x).view(b, h, w, d).permute(0, 3, 1, 2)

    @staticmethod
    def _take(x: Tensor, idx: Tensor) -> Tensor:
        return x.flatten(2).index_select(2, idx)

    @staticmethod
    def _place(values: Tensor, idx: Tensor, h: int, w: int) -> Tensor:
        b, c, _ = values.shape
        out = values.new_zeros((b, c, h * w))
        out.index_copy_(2, idx, values)
        return out.view(b, c, h, w)

    def run(self, y: Tensor | None, coder=None, hshape=None, lshape=None):
        """Training/estimate (``coder`` None): (y_hat, likelihoods). Coding: y_hat only
        (encoder: y given; decoder: y None, shapes from ``hshape``/``lshape``)."""
        gc = self.gaussian_conditional
        if coder is None:
            hyper_out = self.hyper(y)
            side = hyper_out["params"]
        else:
            z = self.hyper.h_a(y) if y is not None else None
            side = self.hyper.h_s(coder.bottleneck(self.hyper.entropy_bottleneck, z, hshape))
        if lshape is not None:
            side = side[..., :lshape[2], :lshape[3]]
        b, _, h, w = side.shape
        mask, ia, inon = self.layout(h, w, side.device)
        token = self.side_proj(side)
        caches: list[list[Tensor]] = [[] for _ in self.channel_blocks]
        y_hats, likelihoods, c0 = [], [], 0
        for k, g in enumerate(self.groups):
            y_k = y[:, c0:c0 + g] if y is not None else None
            c0 += g
            ctx = self.channel_context(token, k, caches)
            params_a = self.head_anchor[k](ctx)
            if coder is None:
                scales_a, means_a = params_a.chunk(2, 1)
                anchors = (quantize_ste(y_k - means_a) + means_a) * mask
            else:
                scales_a, means_a = self._take(params_a, ia).chunk(2, 1)  # one gather for both
                values = coder.gaussian(gc, None if y_k is None else self._take(y_k, ia), scales_a, means_a)
                anchors = self._place(values, ia, h, w)
            # no mask on the keys/values: the window of a non-anchor holds only anchors (offsets
            # with di + dj odd) and the zero padding, so the off-anchor cells are never read
            spatial = self.spatial(ctx, self.anchor_kv[k](anchors), inon)
            spatial = self._place(spatial, inon, h, w)
            params_n = self.head_rest[k](torch.cat([ctx, spatial], dim=1))
            if coder is None:
                scales_n, means_n = params_n.chunk(2, 1)
                scales = torch.where(mask, scales_a, scales_n)
                means = torch.where(mask, means_a, means_n)
                _, lik = gc(y_k, scales, means)
                likelihoods.append(lik)
                y_hat_k = quantize_ste(y_k - means) + means
            else:
                scales_n, means_n = self._take(params_n, inon).chunk(2, 1)
                values = coder.gaussian(gc, None if y_k is None else self._take(y_k, inon), scales_n, means_n)
                y_hat_k = anchors + self._place(values, inon, h, w)
            y_hats.append(y_hat_k)
            if k < len(self.groups) - 1:
                token = self.group_embed[k](y_hat_k)
        y_hat = self.lrp(torch.cat(y_hats, dim=1), side)
        if coder is not None:
            return y_hat
        return y_hat, {"y": torch.cat(likelihoods, dim=1), "z": hyper_out["likelihoods"]["z"]}

    def forward(self, y: Tensor):
        return self.run(y)

    def code(self, coder, y: Tensor | None, lshape, hshape) -> Tensor:
        return self.run(y, coder, hshape=hshape, lshape=lshape)
