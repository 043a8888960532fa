"""Wrappers: fitted state round trips, storage, clear errors on bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fcmcore.errors import ParameterError, UnknownNameError, WeightsError
from fcmcore.wrappers import WRAPPERS, default_path, load_wrapper
from fcmcore.wrappers.convnet import LearnedNets, LearnedWrapper
from fcmcore.wrappers.linear import PCAWrapper, TruncateWrapper

MODEL, SPLIT, C, H = "ssd_mobilenet_v2", "expanded_conv_9", 64, 19


def _meta(method: str, k: int, **extra) -> dict:
    return {"method": method, "model": MODEL, "split": SPLIT, "tensor": SPLIT, "channels_in": C, "k": k,
            "channels_out": k, "height": H, "width": H, "seed": 0, "command": "test", **extra}


def _features(n: int = 6, seed: int = 0) -> torch.Tensor:
    """Correlated channels with distinct energies, like real split features."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(C, 12, generator=g)
    z = torch.randn(n, 12, H, H, generator=g)
    x = torch.einsum("ck,nkhw->nchw", basis, z) + 0.1 * torch.randn(n, C, H, H, generator=g)
    return x * torch.linspace(0.2, 3.0, C).view(1, C, 1, 1) + torch.linspace(-1, 1, C).view(1, C, 1, 1)


def test_registered_names():
    assert {"none", "truncate", "pca", "learned"} <= set(WRAPPERS.names())
    with pytest.raises(UnknownNameError, match="unknown wrapper 'bogus'"):
        load_wrapper("bogus", MODEL, SPLIT)


def test_pca_with_all_components_is_lossless():
    x = _features()
    pca = PCAWrapper.fit(x, C, _meta("pca", C))
    z = pca.encode(x)
    assert z.shape == (x.shape[0], C, H, H)
    torch.testing.assert_close(pca.decode(z), x, atol=2e-4, rtol=0)
    # the components are ordered by decreasing variance and orthonormal
    var = z.pow(2).mean(dim=(0, 2, 3))
    assert torch.all(var[:-1] >= var[1:] * 0.999)
    torch.testing.assert_close(pca.components.T @ pca.components, torch.eye(C), atol=1e-4, rtol=0)


def test_pca_k_reduces_and_keeps_the_dominant_subspace():
    x = _features()
    full_err = PCAWrapper.fit(x, 12, _meta("pca", 12))
    small = PCAWrapper.fit(x, 4, _meta("pca", 4))
    e12 = (full_err.decode(full_err.encode(x)) - x).pow(2).mean()
    e4 = (small.decode(small.encode(x)) - x).pow(2).mean()
    assert e12 < 0.01 * x.var()  # the data is rank 12 + small noise
    assert e4 > e12


def test_truncate_keeps_highest_energy_channels_exactly():
    x = _features()
    tr = TruncateWrapper.fit(x, 8, _meta("truncate", 8))
    energy = x.pow(2).mean(dim=(0, 2, 3))
    assert set(tr.channels.tolist()) == set(torch.argsort(energy, descending=True)[:8].tolist())
    y = tr.decode(tr.encode(x))
    kept = tr.channels
    assert torch.equal(y[:, kept], x[:, kept])
    dropped = [c for c in range(C) if c not in set(kept.tolist())]
    means = x.mean(dim=(0, 2, 3))
    torch.testing.assert_close(y[:, dropped], means[dropped].view(1, -1, 1, 1).expand(x.shape[0], -1, H, H))


def test_save_load_roundtrip_through_registry(tmp_path):
    x = _features()
    pca = PCAWrapper.fit(x, 8, _meta("pca", 8))
    pca.importance["task"] = torch.linspace(0.5, 1.5, 8)
    path = pca.save(tmp_path / "p.safetensors")
    assert json.loads((tmp_path / "p.safetensors.json").read_text())["k"] == 8
    loaded = load_wrapper(f"pca:{path}", MODEL, SPLIT)
    assert loaded.name == "pca" and loaded.k == 8
    feats = {SPLIT: x[:1]}
    red = loaded.pre(feats)
    assert red[SPLIT].shape == (1, 8, H, H)
    torch.testing.assert_close(loaded.post(red)[SPLIT], pca.decode(pca.encode(x[:1])))
    w = loaded.channel_weights(red)[SPLIT]  # rdo_weights "post" by default: affine, orthonormal -> 1
    np.testing.assert_allclose(w, np.ones(8), atol=1e-5)
    loaded.rdo_weights = "task"
    w = loaded.channel_weights(red)[SPLIT]
    np.testing.assert_allclose(w, np.linspace(0.5, 1.5, 8) / 1.0, rtol=1e-5)


def test_learned_roundtrip_and_downsampling(tmp_path):
    for down in (1, 2):
        nets = LearnedNets(C, 6, hidden=8, down=down, size=(H, H))
        torch.manual_seed(down)
        for p in nets.parameters():
            torch.nn.init.normal_(p, std=0.05)
        w = LearnedWrapper(_meta("learned", 6, hidden=8, down=down), nets)
        x = _features(2)
        z = w.encode(x)
        assert z.shape == ((2, 6, 10, 10) if down == 2 else (2, 6, H, H))
        path = w.save(tmp_path / f"l{down}.safetensors")
        loaded = load_wrapper(f"learned:{path}", MODEL, SPLIT)
        torch.testing.assert_close(loaded.post(loaded.pre({SPLIT: x[:1]}))[SPLIT], w.decode(w.encode(x[:1])))
        assert loaded.post(loaded.pre({SPLIT: x[:1]}))[SPLIT].shape == (1, C, H, H)


def test_pca_init_starts_learned_at_pca():
    from fcmcore.wrappers.convnet import pca_init

    x = _features()
    nets = LearnedNets(C, 5, hidden=8)
    pca_init(nets, x)
    pca = PCAWrapper.fit(x, 5, _meta("pca", 5))
    with torch.no_grad():
        torch.testing.assert_close(nets.post(nets.pre(x)), pca.decode(pca.encode(x)), atol=1e-4, rtol=1e-4)


# -- bad files ----------------------------------------------------------------------------------
@pytest.fixture
def good_pca(tmp_path):
    return PCAWrapper.fit(_features(), 8, _meta("pca", 8)).save(tmp_path / "good.safetensors")


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="no such file"):
        load_wrapper(f"pca:{tmp_path / 'nope.safetensors'}", MODEL, SPLIT)


def test_garbage_and_truncated_files(tmp_path, good_pca):
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(b"\x00\x01 not safetensors" * 10)
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        load_wrapper(f"pca:{bad}", MODEL, SPLIT)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good_pca.read_bytes()[:-100])
    with pytest.raises(WeightsError):
        load_wrapper(f"pca:{cut}", MODEL, SPLIT)


def test_file_without_fcm_metadata(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"pca.mean": torch.zeros(C)}, str(path))
    with pytest.raises(WeightsError, match="no FCM wrapper metadata"):
        load_wrapper(f"pca:{path}", MODEL, SPLIT)


def test_file_for_another_split_method_or_channel_count(tmp_path, good_pca):
    with pytest.raises(WeightsError, match="fitted for ssd_mobilenet_v2 @ expanded_conv_9, not .* @ expanded_conv_12"):
        load_wrapper(f"pca:{good_pca}", MODEL, "expanded_conv_12")
    with pytest.raises(WeightsError, match="holds a 'pca' wrapper, not 'learned'"):
        load_wrapper(f"learned:{good_pca}", MODEL, SPLIT)
    # metadata claiming another channel count than the split has
    x = torch.randn(4, 32, H, H)
    p32 = PCAWrapper.fit(x, 8, dict(_meta("pca", 8), channels_in=32)).save(tmp_path / "c32.safetensors")
    with pytest.raises(WeightsError, match="expects 32 channels; expanded_conv_9 has 64"):
        load_wrapper(f"pca:{p32}", MODEL, SPLIT)


def test_parameters_that_do_not_fit_the_metadata(tmp_path, good_pca):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(good_pca), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors["pca.components"] = tensors["pca.components"][:, :4].contiguous()
    bad = tmp_path / "shape.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(WeightsError, match="parameter components is"):
        load_wrapper(f"pca:{bad}", MODEL, SPLIT)
    corrupt = tmp_path / "meta.safetensors"
    save_file(tensors, str(corrupt), metadata={"fcm_wrapper": "{not json"})
    with pytest.raises(WeightsError, match="corrupt metadata"):
        load_wrapper(f"pca:{corrupt}", MODEL, SPLIT)


def test_wrong_input_tensor_is_a_parameter_error(good_pca):
    w = load_wrapper(f"pca:{good_pca}", MODEL, SPLIT)
    with pytest.raises(ParameterError, match="expected 64 channels"):
        w.pre({SPLIT: torch.zeros(1, 32, H, H)})
    with pytest.raises(ParameterError, match="expects tensor"):
        w.pre({"other": torch.zeros(1, 64, H, H)})


def test_none_takes_no_file_and_unbundled_default_is_clear():
    with pytest.raises(ParameterError):
        load_wrapper("none:/x", MODEL, SPLIT)
    with pytest.raises(WeightsError, match="no bundled 'pca' wrapper .* Conv"):
        load_wrapper("pca", MODEL, "Conv")


@pytest.mark.parametrize("method", ["pca", "truncate", "learned"])
@pytest.mark.parametrize("split", ["expanded_conv_9", "expanded_conv_12"])
def test_bundled_defaults_load(method, split):
    assert default_path(method, MODEL, split).is_file()
    w = load_wrapper(method, MODEL, split)
    assert w.meta["split"] == split and w.k == 24
    assert set(w.importance) == {"post", "deep", "task"}
    assert w.meta["seed"] == 0 and "train-wrapper" in w.meta["command"]


def test_train_learned_smoke():
    """A tiny end-to-end training run on random features (feature loss): the loss drops."""
    from fcmcore.wrappers.training import FeatureBank, base_meta, train_learned

    x = _features(8)
    bank = FeatureBank(SPLIT, x, x[:4], x[4:], [1, 2, 3, 4], [5])
    meta = base_meta("learned", MODEL, SPLIT, bank, 6, 0, "test", "random")
    w = train_learned(bank, meta, loss="feature", epochs=3, batch=4, hidden=8, log=None)
    hist = w.meta["history"]
    assert len(hist) == 3 and all(np.isfinite(h["train_distortion"]) for h in hist)
    assert w.encode(x[:1]).shape == (1, 6, H, H)


@pytest.mark.slow
def test_cli_train_wrapper_pca(tmp_path, tiny_dataset):
    from fcmcore.cli import main

    out = tmp_path / "pca.safetensors"
    assert main(["train-wrapper", "--dataset", str(tiny_dataset), "--split", SPLIT, "--channels", "8",
                 "--method", "pca", "--out", str(out)]) == 0
    w = load_wrapper(f"pca:{out}", MODEL, SPLIT)
    assert w.k == 8 and w.meta["train_images"] == 6 and w.meta["val_images"] == 2  # every 4th image is val
    assert set(w.importance) == {"post", "deep", "task"}
