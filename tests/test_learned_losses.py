"""Training losses of the learned codecs (``fcm train-codec --loss feature|deep|task``).

The task loss must be the task distortion the wrappers use too (one definition, fcmcore.training.distortion), its lambdas
scaled per loss, and bad --loss / --deep-layer / --lambda-scale must fail with a clear message
before the (slow) feature bank is built.
"""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("compressai")

from fcmcore.cli import main as cli_main  # noqa: E402
from fcmcore.errors import ParameterError  # noqa: E402
from fcmcore.learned import train as train_mod  # noqa: E402
from fcmcore.learned.train import LAMBDA_SCALE, LOSSES, TrainConfig, deep_fn, train_codec  # noqa: E402
from fcmcore.models import load_model  # noqa: E402
from fcmcore.training import distortion as shared_distortion  # noqa: E402
from fcmcore.wrappers import training as wrappers_training  # noqa: E402

SPLIT = "expanded_conv_9"


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(dataset="unused", split=SPLIT, arch="hyperprior", lambdas=[2.0], out=str(tmp_path / "out"), epochs=1,
                finetune_epochs=1, variants=1, N=16, M=16, Nh=8, batch_size=16)
    base.update(kw)
    return TrainConfig(**base)


def test_losses_and_scales_cover_each_other():
    assert LOSSES == ("feature", "deep", "task")
    assert set(LAMBDA_SCALE) == set(LOSSES)
    assert LAMBDA_SCALE["feature"] == 1.0  # the committed feature-loss codecs keep their lambdas' meaning
    assert 0 < LAMBDA_SCALE["task"] < 1  # the task distortion is ~2x the feature MSE along the RD curve


@pytest.mark.parametrize("kw, match", [
    (dict(loss="bogus"), "loss must be one of feature, deep, task"),
    (dict(loss="task", lambda_scale=0.0), "lambda scale must be a positive number"),
    (dict(loss="task", lambda_scale=-1.0), "lambda scale must be a positive number"),
    (dict(loss="deep", lambda_scale=math.nan), "lambda scale must be a positive number"),
])
def test_bad_config_is_refused(tmp_path, kw, match):
    with pytest.raises(ParameterError, match=match):
        _cfg(tmp_path, **kw).validate()


@pytest.mark.parametrize("layer, match", [("nope", "unknown deep layer 'nope'"),
                                          ("expanded_conv_3", "not after split expanded_conv_9"),
                                          (SPLIT, "not after split expanded_conv_9")])
def test_bad_deep_layer_fails_before_the_bank(tmp_path, monkeypatch, layer, match):
    def no_bank(*a, **k):
        raise AssertionError("the feature bank was built before the deep layer was checked")

    monkeypatch.setattr(train_mod, "build_bank", no_bank)
    with pytest.raises(ParameterError, match=match):
        train_codec(_cfg(tmp_path, loss="deep", deep_layer=layer), dataset=None, progress=False)


def test_deep_layers_of_the_study_exist():
    model = load_model("ssd_mobilenet_v2")
    x = torch.zeros(1, 64, 19, 19)
    for layer, channels in (("expanded_conv_12", 96), ("expanded_conv_15", 160), ("map0", 576)):
        fn, c = deep_fn(model, SPLIT, layer)
        assert c == channels
        assert fn(x).shape[1] == channels


def test_cli_refuses_a_bad_loss(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["train-codec", "--dataset", "x", "--arch", "hyperprior", "--lambdas", "1", "--out", "o",
                  "--loss", "ssim"])
    assert exc.value.code == 2
    assert "invalid choice: 'ssim'" in capsys.readouterr().err


def test_cli_refuses_a_bad_deep_layer(tmp_path, tiny_dataset, monkeypatch, capsys):
    monkeypatch.setattr(train_mod, "build_bank", lambda *a, **k: pytest.fail("bank built"))
    rc = cli_main(["train-codec", "--dataset", str(tiny_dataset), "--arch", "hyperprior", "--lambdas", "1",
                   "--out", str(tmp_path / "o"), "--loss", "deep", "--deep-layer", "expanded_conv_99"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown deep layer 'expanded_conv_99'")
    assert "Traceback" not in err


def test_task_distortion_is_zero_on_itself_and_grows_with_error():
    torch.manual_seed(0)
    x = torch.randn(2, 64, 19, 19).clamp_min(0) * 2  # ReLU6-like features
    dist = wrappers_training.make_distortion("task", "ssd_mobilenet_v2", SPLIT, float(x.var()))
    assert float(dist(x, x)) == pytest.approx(0.0, abs=1e-6)
    small = float(dist(x + 0.05 * torch.randn_like(x), x))
    large = float(dist(x + 0.5 * torch.randn_like(x), x))
    assert 0 < small < large
    xh = (x + 0.3 * torch.randn_like(x)).requires_grad_(True)
    dist(xh, x).backward()  # differentiable through the frozen detector
    assert xh.grad is not None and float(xh.grad.abs().sum()) > 0


@pytest.mark.slow
def test_task_training_uses_the_wrappers_distortion(tmp_path, tiny_dataset, monkeypatch):
    from fcmcore.evaluate import load_dataset

    monkeypatch.setenv("FCM_CACHE_DIR", str(tmp_path / "cache"))
    calls = []
    real = shared_distortion.task_distortion

    def spy(model_name, split, feat_var):
        fn = real(model_name, split, feat_var)
        calls.append(("task", model_name, split, feat_var))

        def counted(x_hat, x):
            calls.append("step")
            return fn(x_hat, x)

        return counted

    monkeypatch.setattr(shared_distortion, "task_distortion", spy)
    manifest = train_codec(_cfg(tmp_path, dataset=str(tiny_dataset), loss="task", lambdas=[1.0, 4.0]),
                           load_dataset(tiny_dataset), progress=False)
    assert calls[0][:3] == ("task", "ssd_mobilenet_v2", SPLIT) and calls[0][3] > 0
    steps = calls.count("step")
    assert steps >= 2  # one training step per lambda at least, plus the val evaluation
    assert manifest["loss"] == "task" and manifest["deep_layer"] is None
    assert manifest["lambda_scale"] == LAMBDA_SCALE["task"]
    for q in manifest["qualities"]:
        val = q["val"]
        assert val["task_distortion"] > 0 and math.isfinite(val["task_distortion"])
        assert val["bits_per_value"] > 0


@pytest.mark.slow
def test_lambda_scale_override_is_recorded_and_weighs_the_distortion(tmp_path, tiny_dataset, monkeypatch):
    """Same seed, data and steps: a 100x larger distortion weight must spend more bits."""
    from fcmcore.evaluate import load_dataset

    monkeypatch.setenv("FCM_CACHE_DIR", str(tmp_path / "cache"))
    ds = load_dataset(tiny_dataset)
    bits = {}
    for scale in (0.01, 1.0):
        m = train_codec(_cfg(tmp_path, dataset=str(tiny_dataset), loss="deep", lambda_scale=scale, epochs=3,
                             out=str(tmp_path / f"s{scale}")), ds, progress=False)
        assert m["lambda_scale"] == scale and m["deep_layer"] == "expanded_conv_12"
        bits[scale] = m["qualities"][0]["val"]["bits_per_value_est"]
    assert bits[1.0] > bits[0.01]


# ----- the distortion builder train-codec uses ----------------------------------------------------

def test_raw_distortion_task_is_the_wrappers_and_deep_is_normalised(monkeypatch):
    from fcmcore.learned.train import raw_distortion

    torch.manual_seed(0)
    train = torch.randn(16, 64, 19, 19).clamp_min(0) * 2
    seen = []
    real = shared_distortion.task_distortion
    monkeypatch.setattr(shared_distortion, "task_distortion",
                        lambda *a: seen.append(("task", *a)) or real(*a))
    model = load_model("ssd_mobilenet_v2")
    assert raw_distortion("feature", model, "ssd_mobilenet_v2", SPLIT, "expanded_conv_12", train) is None
    task = raw_distortion("task", model, "ssd_mobilenet_v2", SPLIT, "expanded_conv_12", train)
    assert seen == [("task", "ssd_mobilenet_v2", SPLIT, pytest.approx(float(train.var())))]
    deep = raw_distortion("deep", model, "ssd_mobilenet_v2", SPLIT, "expanded_conv_15", train)
    x = train[:2]
    for fn in (task, deep):
        assert float(fn(x, x)) == pytest.approx(0.0, abs=1e-6)
        assert 0 < float(fn(x + 0.05 * torch.randn_like(x), x)) < float(fn(x + 0.5 * torch.randn_like(x), x))
    # normalised per channel: zeroed features cost O(1), not the layer's raw scale
    assert 0.1 < float(deep(torch.zeros_like(x), x)) < 10
    with pytest.raises(ParameterError, match="unknown deep layer"):
        raw_distortion("deep", model, "ssd_mobilenet_v2", SPLIT, "expanded_conv_99", train)


def test_wrappers_task_distortion_is_the_shared_one(monkeypatch):
    seen = []
    real = shared_distortion.task_distortion
    monkeypatch.setattr(shared_distortion, "task_distortion", lambda *a: seen.append(a) or real(*a))
    wrappers_training.make_distortion("task", "ssd_mobilenet_v2", SPLIT, 2.0)
    assert seen == [("ssd_mobilenet_v2", SPLIT, 2.0)]
