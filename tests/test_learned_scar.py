"""The scar entropy model and the fast rANS coders (fcmcore/learned/scar.py, fastcoding.py).

Generic codec behaviour (exact decode, bit accounting, bad streams, committed weights) is
covered for scar by tests/test_learned_codecs.py, which runs over every architecture.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("compressai")

from fcmcore.learned import fastcoding  # noqa: E402
from fcmcore.learned.models import CodecConfig, FeatureCodecNet  # noqa: E402
from fcmcore.learned.rans import PlainDecoder, PlainEncoder  # noqa: E402
from fcmcore.learned.scar import anchor_offsets  # noqa: E402
from fcmcore.learned.weights import init_from  # noqa: E402


def _net(arch: str, seed: int = 0, channels: int = 8) -> FeatureCodecNet:
    torch.manual_seed(seed)
    net = FeatureCodecNet(CodecConfig(arch, channels, N=16, M=16, Nh=8, groups=[4, 4, 8]))
    net.eval()
    net.update(force=True, update_quantiles=True)
    return net


def _x(seed: int = 0, shape=(1, 8, 9, 11), scale: float = 2.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def test_gaussian_indexes_equal_compressai_build_indexes():
    gc = _net("hyperprior").latent_codec["y"].gaussian_conditional
    table = gc.scale_table.float()
    scales = torch.cat([torch.rand(5000) * 300, table, table * (1 + 1e-7), table * (1 - 1e-7), torch.tensor([0.0, -1.0])])
    assert torch.equal(fastcoding.gaussian_indexes(gc, scales), gc.build_indexes(scales))


@pytest.mark.parametrize("arch", ["factorized", "hyperprior", "context"])
def test_fast_coder_writes_the_same_stream_as_the_plain_one(arch):
    """The speed-ups (one-op indexes, CDF subsets, deferred encode) change no byte."""
    net = _net(arch, seed=1)
    x = _x(1)
    h, w = x.shape[-2:]
    with torch.no_grad():
        y = net.analysis(net.normalize(x))
        plain = PlainEncoder(net._require_tables())
        y_plain = net.code(plain, y, h, w)
        fast = fastcoding.FastEncoder(net._require_tables())
        y_fast = net.code(fast, y, h, w)
        stream = fast.finish()
        assert stream == plain.finish()
        assert torch.equal(y_fast, y_plain)
        y_dec = net.code(PlainDecoder(net._require_tables(), stream + bytes(1 << 16)), None, h, w)
        assert torch.equal(y_dec, y_plain)
        # the estimate from the coding pass is the eval-mode likelihood estimate
        assert fast.bits_estimated == pytest.approx(sum(net.estimate_bits(x).values()), rel=1e-4)


def test_scar_coding_equals_its_training_graph_in_eval_mode():
    """The coded latent is what the eval-mode forward (the training graph) quantises to, so
    the rates training optimises are the rates of the real coder."""
    net = _net("scar", seed=2)
    x = _x(2)
    with torch.no_grad():
        coded = net.compress(x)
        y_hat, likelihoods = net.entropy_forward(net.analysis(net.normalize(x)))
        decoded = net.decompress(coded["strings"], *x.shape[-2:])
    assert torch.allclose(coded["y_hat"], y_hat, atol=1e-5)
    assert torch.equal(decoded["y_hat"], coded["y_hat"])
    assert coded["bits_estimated"] == pytest.approx(sum(float(-torch.log2(v).sum()) for v in likelihoods.values()),
                                                    rel=1e-3)


def test_anchor_offsets_reach_only_anchors():
    offs = anchor_offsets(5)
    assert len(offs) == 12 and all((di + dj) % 2 for di, dj in offs)


def test_init_from_context_shares_hyperprior_transforms_and_lrp():
    src = _net("context", seed=4)
    dst = _net("scar", seed=5)
    copied = init_from(dst, src)
    assert any(k.startswith("scar.hyper.") for k in copied) and any(k.startswith("scar.lrp.") for k in copied)
    assert "log_gain" in copied and any(k.startswith("g_a.") for k in copied)
    assert torch.equal(dst.scar.hyper.h_s[0].weight, src.hyper.h_s[0].weight)
    assert not any("channel_blocks" in k for k in copied)


def test_init_heads_start_at_the_latents_gaussian_and_cut_the_starting_rate():
    """--init-heads: the heads predict each channel's std/mean everywhere, so a scar network
    initialised from trained transforms starts near their rate instead of at scale 1 (the
    48-step run of the bundled weights started at ~1.5 bits/value where context needs < 0.1)."""
    from fcmcore.learned.train import _optimizers

    src = _net("context", seed=6)
    with torch.no_grad():
        src.log_gain.fill_(-1.5)  # small latents, as a low lambda trains them
    x = _x(6, shape=(4, 8, 10, 12))
    rates = {}
    for heads in (False, True):
        net = _net("scar", seed=7)
        init_from(net, src)
        with torch.no_grad():
            y = net.analysis(net.normalize(x))
            if heads:
                net.scar.init_heads(y)
                mask, ia, _ = net.scar.layout(*y.shape[-2:], y.device)
                params = net.scar.head_anchor[0](torch.randn(1, 48, *y.shape[-2:]))
                scales, means = params.chunk(2, 1)
                std = y[:, :4].transpose(0, 1).reshape(4, -1).std(1).clamp_min(0.11)
                assert torch.allclose(scales[0, :, 0, 0], std) and torch.allclose(scales.std((2, 3)), torch.zeros(1, 4))
                assert torch.allclose(means[0, :, 0, 0], y[:, :4].mean((0, 2, 3)), atol=1e-6)
            net.eval()
            rates[heads] = sum(net.estimate_bits(x[:1]).values()) / x[0].numel()
        net.update(force=True)
    assert rates[True] < 0.5 * rates[False], rates
    # the new parameters (and only they) get their own optimiser group
    new = {n for n, _ in net.named_parameters() if n.startswith("scar.") and not n.startswith(("scar.hyper.", "scar.lrp."))}
    opt, _ = _optimizers(net, 1e-3, new, 2.0)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-2, 2e-3]
    assert sum(p.numel() for p in opt.param_groups[2]["params"]) == sum(
        p.numel() for n, p in net.named_parameters() if n in new)


def test_freeze_schedule_holds_the_copied_groups_then_follows_the_cosine():
    from fcmcore.learned.train import _schedule

    ps = [torch.nn.Parameter(torch.zeros(1)) for _ in range(3)]
    opt = torch.optim.Adam([{"params": [ps[0]], "lr": 1.0}, {"params": [ps[1]], "lr": 10.0},
                            {"params": [ps[2]], "lr": 2.0}])
    sched = _schedule(opt, total=20, freeze=5)
    lrs = []
    for _ in range(20):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert all(lr[0] == 0 and lr[1] == 0 for lr in lrs[:5])
    assert lrs[0][2] == 2.0 and lrs[5][0] == pytest.approx(lrs[5][2] / 2) and lrs[5][1] == pytest.approx(10 * lrs[5][0])
    assert lrs[19][2] < 0.2 * 2.0
    plain = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    assert _schedule(plain, total=20, freeze=5).get_last_lr() == [1.0]  # no new group: nothing held


def test_neighbour_window_gather_equals_the_shifted_map_stack():
    """The one-gather windows give the very numbers of the former K-shifted-maps stack (bit for
    bit: the stored scar weights' streams must not change)."""
    import torch.nn.functional as F

    from fcmcore.learned.scar import NeighbourAttention, attend

    torch.manual_seed(0)
    att = NeighbourAttention(48, 2).eval()

    def stacked(query, kv, positions):
        b, _, h, w = kv.shape
        r, n, c, hd = att.window // 2, positions.numel(), att.kv_dim, att.kv_dim // att.heads
        padded = F.pad(kv, (r, r, r, r))
        cols = torch.stack([padded[:, :, r + di:r + di + h, r + dj:r + dj + w].reshape(b, 2 * c, h * w)
                            for di, dj in att.offsets], dim=2).index_select(3, positions)
        cols = cols.permute(0, 3, 2, 1).reshape(b * n, len(att.offsets), 2 * c)
        k = (cols[..., :c] + att.rel).view(b * n, -1, att.heads, hd).transpose(1, 2)
        v = cols[..., c:].reshape(b * n, -1, att.heads, hd).transpose(1, 2)
        q_in = att.ln_q(query.flatten(2).index_select(2, positions).transpose(1, 2)).reshape(b * n, -1)
        out = att.proj(attend(att.q(q_in).view(b * n, att.heads, hd), k, v).reshape(b * n, c))
        return out.view(b, n, -1).transpose(1, 2)

    g = torch.Generator().manual_seed(1)
    for b, h, w in ((1, 19, 19), (2, 9, 11)):
        i, j = torch.arange(h).view(-1, 1), torch.arange(w).view(1, -1)
        inon = ((i + j) % 2 == 1).flatten().nonzero().flatten()
        with torch.no_grad():
            q, kv = torch.randn(b, 48, h, w, generator=g), torch.randn(b, 64, h, w, generator=g)
            assert torch.equal(att(q, kv, inon), stacked(q, kv, inon))
            assert torch.equal(att(q, kv, inon), stacked(q, kv, inon))  # cached window index


def test_fast_subset_renumbers_like_unique():
    from fcmcore.learned.fastcoding import _subset

    class T:
        cdf = [[i] for i in range(64)]
        lengths = list(range(100, 164))
        offsets = list(range(-64, 0))

    idx = torch.tensor([[7, 3, 3, 63, 0, 7, 12]])
    used, inverse = torch.unique(idx.reshape(-1), return_inverse=True)
    renum, cdf, lengths, offsets = _subset(T, idx)
    assert renum == inverse.tolist() and cdf == [[i] for i in used.tolist()]
    assert lengths == [100 + i for i in used.tolist()] and offsets == [i - 64 for i in used.tolist()]
