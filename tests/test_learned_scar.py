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
