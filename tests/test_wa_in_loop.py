"""WA-RDO in the training loop (``fcm train-wrapper --wa-in-loop``, fcmcore/wrappers/wa_loop.py):
the proxy codec's step per coded sample follows the importance weights as x265's step follows
WA's QP offsets, the weights are re-estimated from the current nets every epoch, the option is
recorded in the wrapper's meta and carried into k-fold retraining, bad values are clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fcmcore.coding.rdo import block_qp_offsets
from fcmcore.errors import ParameterError
from fcmcore.wrappers.convnet import LearnedNets
from fcmcore.wrappers.training import FeatureBank, base_meta, fit_learned_nets, make_distortion, train_learned
from fcmcore.wrappers.wa_loop import WAAllocator, WAInLoop, step_multipliers

MODEL, SPLIT, C, H, K = "ssd_mobilenet_v2", "expanded_conv_9", 64, 19, 4


def _bank(n: int = 8) -> FeatureBank:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, C, H, H, generator=g) * torch.linspace(0.3, 2.0, C).view(1, C, 1, 1)
    return FeatureBank(SPLIT, x, x[: n // 2], x[n // 2:], list(range(n // 2)), [99])


def _scaled_nets(scales) -> LearnedNets:
    """post(z) = sum_c a_c z_c (1x1, non-linear path zero): channel c's importance for the
    ``post`` target is exactly C * a_c^2 at every position."""
    nets = LearnedNets(C, K, 8, 1, (H, H))
    with torch.no_grad():
        nets.post.lin.weight.zero_()
        for c, a in enumerate(scales):
            nets.post.lin.weight[:, c] = a
        nets.post.lin.bias.zero_()
        nets.post.n3.weight.zero_()
        nets.post.n3.bias.zero_()
    return nets


def test_channel_steps_follow_the_weights_as_x265_steps_follow_dqp():
    """Channel importance a_c^2 -> dQP_c = -3 log2(a_c^2 / GM) -> step x 2^(dQP/6) = GM(a) / a_c:
    each channel's step shrinks exactly as its weight grows (equal weighted noise, the optimum)."""
    a = np.array([0.5, 1.0, 2.0, 4.0])
    alloc = WAAllocator(WAInLoop(weights="channel", target="post", probes=4, images=4), MODEL, SPLIT, K, (H, H))
    info = alloc.update(_scaled_nets(a), _bank().train_plain, epoch=0)
    mult = alloc.mult[0].numpy()
    expected = np.exp(np.log(a).mean()) / a
    assert np.allclose(mult[:, 0, 0], expected, rtol=1e-4)
    assert np.allclose(mult.std(axis=(1, 2)), 0, atol=1e-5)  # constant over each tile
    assert info["wa_dqp_min"] == pytest.approx(-3 * np.log2(16 / 2), abs=0.01)  # a=4: w=16, GM(a^2)=2 -> -9 QP
    assert info["wa_max_over_min"] == pytest.approx(64, rel=1e-3)
    # the steps the proxy uses: per image step x the factor of each sample
    base = torch.full((2, 1, 1, 1), 0.1)
    st = alloc.step(base)
    assert st.shape == (2, K, H, H) and torch.allclose(st[1, 3], torch.full((H, H), 0.1 * expected[3]).float())


def test_spatial_steps_are_per_qp_block_of_the_padded_tile():
    """A spatial map with one important 8x8 block: the proxy scales that block's step by
    2^(dQP_b / 6) with dQP_b the encoder's own block offset; the other blocks get theirs."""
    m = np.ones((K, H, H))
    m[:, :8, :8] = 8.0  # block (0, 0) of every tile
    cfg = WAInLoop(weights="spatial", strength=1.0, tile_pad=8)
    mult = step_multipliers(m, cfg)
    dqp = block_qp_offsets(np.broadcast_to(m.mean(0), (K, H, H)).copy(), 8, 8)
    assert np.allclose(mult, 2.0 ** (dqp / 6))
    assert mult[0, 0, 0] < 0.5 * mult[0, 10, 10]  # the important block: a much finer step
    assert np.allclose(mult[:, :8, :8], mult[0, 0, 0]) and np.allclose(mult[:, 8:, 8:], mult[0, 10, 10])
    # strength halves the offsets (in the log domain)
    half = step_multipliers(m, WAInLoop(weights="spatial", strength=0.5))
    assert np.allclose(np.log2(half), 0.5 * np.log2(mult))


def test_the_training_loop_codes_with_the_allocation_and_re_estimates_it(monkeypatch):
    """fit_learned_nets: the steps of every batch are the proxy's per-image step x the epoch's
    factors, and the factors are re-estimated from the current nets every epoch."""
    bank = _bank()
    nets = LearnedNets(C, K, 8, 1, (H, H))
    seen, updates = [], []
    orig_step, orig_update = WAAllocator.step, WAAllocator.update

    def spy_step(self, base):
        out = orig_step(self, base)
        seen.append((base.detach().clone(), out.detach().clone(), self.mult.clone()))
        return out

    def spy_update(self, nets_, plain, epoch):
        updates.append((epoch, {k: v.detach().clone() for k, v in nets_.post.state_dict().items()}))
        return orig_update(self, nets_, plain, epoch)

    monkeypatch.setattr(WAAllocator, "step", spy_step)
    monkeypatch.setattr(WAAllocator, "update", spy_update)
    dist = make_distortion("feature", MODEL, SPLIT, float(bank.train.var()))
    hist, _ = fit_learned_nets(nets, K, bank, dist, epochs=3, batch=4, lr=1e-2, lam=0.01, seed=0, pct_start=0.3,
                               log=None, wa=WAInLoop(weights="both", target="post", images=4),
                               model_split=(MODEL, SPLIT))
    assert [e for e, _ in updates] == [0, 1, 2]
    # each update sees the nets as trained so far (not the initial ones)
    assert not torch.equal(updates[0][1]["n1.weight"], updates[2][1]["n1.weight"])
    for base, out, mult in seen:
        assert torch.allclose(out, base * mult)
    mults = [m for _, _, m in seen]
    assert not torch.allclose(mults[0], mults[-1])  # re-estimated: epoch 3's factors differ from epoch 1's
    assert all(not torch.allclose(m, torch.ones_like(m)) for m in mults)  # never the flat (SSE) proxy
    assert all({"wa_cv", "wa_am_gm_db", "wa_dqp_min", "wa_dqp_max"} <= set(h) for h in hist)


def test_option_recorded_in_meta_and_carried_into_kfold_recipe(tmp_path):
    from fcmcore.evaluate.kfold import trainable_of
    from fcmcore.pipeline import PipelineConfig
    from fcmcore.wrappers import load_wrapper

    bank = _bank()
    meta = base_meta("learned", MODEL, SPLIT, bank, K, 0, "test", "random")
    cfg = WAInLoop(weights="spatial", target="post", strength=0.5, images=4)
    w = train_learned(bank, meta, loss="feature", epochs=1, batch=4, hidden=8, log=None, wa=cfg)
    assert w.meta["wa_in_loop"] == dict(weights="spatial", target="post", strength=0.5, tile_pad=8, probes=1,
                                        images=4, every_epochs=1, block=8)
    path = w.save(tmp_path / "wl.safetensors")
    back = load_wrapper(f"learned:{path}", MODEL, SPLIT)
    assert back.meta["wa_in_loop"] == w.meta["wa_in_loop"]
    part = trainable_of(PipelineConfig(split=SPLIT, codec="hevc", wrapper=f"learned:{path}"))
    assert part.recipe["wa_in_loop"] == w.meta["wa_in_loop"]
    assert WAInLoop.from_meta(part.recipe["wa_in_loop"]) == cfg  # what train_wrapper rebuilds per fold
    # without the option: no key (recipes and fold keys of other wrappers unchanged)
    plain = train_learned(bank, meta, loss="feature", epochs=1, batch=4, hidden=8, log=None)
    assert "wa_in_loop" not in plain.meta


@pytest.mark.parametrize("kw, msg", [
    ({"weights": "blocks"}, "--wa-weights must be one of channel, spatial, both"),
    ({"target": "logits"}, "--wa-target must be one of post, deep, task"),
    ({"strength": 0}, r"--wa-strength must be in \(0, 4\]"),
    ({"strength": float("nan")}, "--wa-strength"),
    ({"tile_pad": 0}, "--wa-tile-pad must be one of 8, 16"),
    ({"probes": 0}, "--wa-probes must be at least 1"),
    ({"images": 0}, "--wa-images must be at least 1"),
])
def test_bad_values_are_clear_errors(kw, msg):
    with pytest.raises(ParameterError, match=msg):
        WAInLoop(**kw)


def test_cli_refuses_wa_options_without_the_flag_and_fitted_methods(tmp_path, capsys):
    from fcmcore.cli import main

    base = ["train-wrapper", "--dataset", str(tmp_path / "nowhere"), "--split", SPLIT, "--channels", "8",
            "--out", str(tmp_path / "w.safetensors")]
    assert main(base + ["--wa-weights", "both"]) != 0
    assert "--wa-weights applies only with --wa-in-loop" in capsys.readouterr().err
    assert main(base + ["--method", "pca", "--wa-in-loop"]) != 0
    assert "--wa-in-loop trains a learned wrapper" in capsys.readouterr().err
    assert main(base + ["--wa-in-loop", "--wa-strength", "9"]) != 0
    assert "--wa-strength must be in (0, 4]" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: an unknown kind is refused with its choices
        main(base + ["--wa-in-loop", "--wa-weights", "blocks"])
    assert "invalid choice: 'blocks'" in capsys.readouterr().err
    from fcmcore.wrappers.training import train_wrapper

    with pytest.raises(ParameterError, match="--wa-in-loop trains a learned wrapper"):
        train_wrapper(None, MODEL, SPLIT, 8, method="pca", wa_in_loop={"weights": "spatial"})
