"""``fcm train-direct`` options of issue 14 item 3: ``--student full``, ``--distill-layer``,
``--joint`` (and ``--max-steps``). The CLI hands them to the trainer, bad values are refused
with one clear line before any work, and a tiny run writes a codec that loads and decodes
its own bitstreams exactly (one student per quality with ``--joint``)."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("compressai")

from fcmcore.cli import main  # noqa: E402
from fcmcore.errors import ParameterError  # noqa: E402
from fcmcore.learned import direct_training  # noqa: E402
from fcmcore.learned.direct_training import DirectTrainConfig  # noqa: E402
from fcmcore.paths import ASSETS_DIR  # noqa: E402

LAMBDAS = "1,4"  # two lambdas the committed hyperprior has (the direct codec starts from it)


def _cli(tiny_dataset, tmp_path, *extra):
    return ["train-direct", "--dataset", str(tiny_dataset), "--split", "expanded_conv_9", "--lambdas", LAMBDAS,
            "--out", str(tmp_path / "out"), "--quiet", *extra]


def test_options_reach_the_trainer(tiny_dataset, tmp_path, monkeypatch):
    seen = {}

    def fake(cfg, dataset, progress=True, command=None):
        seen["cfg"] = cfg
        return {"arch": "direct", "model": cfg.model, "split": cfg.split, "train_cpu_s": 0.0, "qualities": []}

    monkeypatch.setattr(direct_training, "train_direct", fake)
    assert main(_cli(tiny_dataset, tmp_path, "--student", "full", "--distill-layer", "expanded_conv_12", "--joint",
                     "--max-steps", "5", "--distill-epochs", "2")) == 0
    cfg = seen["cfg"]
    assert (cfg.student, cfg.distill_layer, cfg.joint, cfg.max_steps, cfg.distill_epochs) == (
        "full", "expanded_conv_12", True, 5, 2)
    assert main(_cli(tiny_dataset, tmp_path)) == 0  # defaults: the bundled recipe
    cfg = seen["cfg"]
    assert (cfg.student, cfg.keep, cfg.distill_layer, cfg.joint, cfg.max_steps) == ("thin", 0.5, None, False, None)
    assert (cfg.loss, cfg.deep_layer, cfg.lambda_scale) == (None, None, None)
    assert main(_cli(tiny_dataset, tmp_path, "--loss", "task", "--lambda-scale", "0.3")) == 0
    assert (seen["cfg"].loss, seen["cfg"].lambda_scale) == ("task", 0.3)
    assert main(_cli(tiny_dataset, tmp_path, "--loss", "deep", "--deep-layer", "expanded_conv_15")) == 0
    assert (seen["cfg"].loss, seen["cfg"].deep_layer) == ("deep", "expanded_conv_15")


@pytest.mark.parametrize("kw, expected", [
    ({}, ("feature", None, 1.0)),  # unset: the distillation's distortion, as before --loss
    ({"distill_layer": "expanded_conv_12"}, ("deep", "expanded_conv_12", 1.0)),
    ({"loss": "feature"}, ("feature", None, 1.0)),
    ({"loss": "deep"}, ("deep", "expanded_conv_12", 1.0)),
    ({"loss": "deep", "distill_layer": "expanded_conv_15"}, ("deep", "expanded_conv_15", 1.0)),
    ({"loss": "task"}, ("task", None, 0.5)),  # losses.LAMBDA_SCALE, as train-codec
    ({"loss": "task", "lambda_scale": 2.0}, ("task", None, 2.0)),
])
def test_codec_loss_resolves(kw, expected):
    cfg = DirectTrainConfig("d", "expanded_conv_9", [1.0], "o", **kw)
    cfg.validate()
    assert cfg.codec_loss() == expected


def test_defaults_resolve():
    full = DirectTrainConfig("d", "expanded_conv_9", [1.0], "o", student="full")
    full.validate()
    assert (full.keep, full.distill_epochs) == (1.0, 0)  # it starts at the teacher: nothing to distil
    alias = DirectTrainConfig("d", "expanded_conv_9", [1.0], "o", keep=1.0)
    alias.validate()
    assert (alias.student, alias.distill_epochs) == ("full", 0)
    thin = DirectTrainConfig("d", "expanded_conv_9", [1.0], "o")
    thin.validate()
    assert (thin.student, thin.distill_epochs) == ("thin", 10)


@pytest.mark.parametrize("extra, message", [
    (["--keep", "0"], "--keep must be in (0, 1]"),
    (["--keep", "1.5"], "--keep must be in (0, 1]"),
    (["--student", "full", "--keep", "0.25"], "--keep is for --student thin"),
    (["--distill-layer", "bogus"], "unknown deep layer 'bogus'"),
    (["--distill-layer", "expanded_conv_5"], "not after split expanded_conv_9"),
    (["--max-steps", "0"], "max_steps must be >= 1"),
    (["--distill-epochs", "-1"], "distill_epochs must be >= 0"),
    (["--student", "light", "--distill-epochs", "0"], "needs distill_epochs >= 1"),
    (["--deep-layer", "expanded_conv_12"], "--deep-layer is for --loss deep"),
    (["--loss", "task", "--deep-layer", "expanded_conv_12"], "--deep-layer is for --loss deep"),
    (["--lambda-scale", "2"], "--lambda-scale needs --loss"),
    (["--loss", "task", "--lambda-scale", "-1"], "--lambda-scale needs --loss and must be a positive"),
    (["--loss", "deep", "--deep-layer", "expanded_conv_5"], "not after split expanded_conv_9"),
    (["--lambdas", "1,1"], "lambdas must be distinct"),
    (["--lambdas", "3"], "no hyperprior model for lambda [3.0]"),
])
def test_bad_values_are_refused_before_any_work(tiny_dataset, tmp_path, capsys, extra, message):
    args = _cli(tiny_dataset, tmp_path)
    if extra[0] == "--lambdas":
        args[args.index("--lambdas") + 1] = extra[1]
        extra = []
    assert main(args + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_bad_student_name_in_the_api():
    with pytest.raises(ParameterError, match="student must be one of thin, full, light"):
        DirectTrainConfig("d", "expanded_conv_9", [1.0], "o", student="wide").validate()


def test_full_student_is_the_head():
    """``--student full`` = the detector's blocks with its own weights: the same tensor as the
    head and the same MACs (so direct coding with it is model splitting + a learned codec)."""
    from PIL import Image

    from fcmcore.learned.direct_student import ThinStudent, prefix, prefix_macs, student_macs
    from fcmcore.models import load_model

    model = load_model("ssd_mobilenet_v2")
    x, _ = model.preprocess(Image.open(ASSETS_DIR / "samples" / "coffee.jpg"))
    full = ThinStudent.from_teacher(model, "expanded_conv_9", 1.0)
    with torch.no_grad():
        assert torch.equal(full(prefix(model, x)), model.head(x, "expanded_conv_9")["expanded_conv_9"])
    assert prefix_macs(model) + student_macs(full, model, (3, 300, 300)) == model.edge_macs("expanded_conv_9")


def _check_codec(folder, joint: bool):
    from PIL import Image

    from fcmcore.learned.direct import DirectCodec
    from fcmcore.models import load_model

    model = load_model("ssd_mobilenet_v2")
    x, _ = model.preprocess(Image.open(ASSETS_DIR / "samples" / "coffee.jpg"))
    codec = DirectCodec(folder)
    assert codec.available() == (True, "")
    manifest = json.loads((folder / "manifest.json").read_text())
    sizes = []
    for q in (1, 2):
        enc = codec.encode(x, q)
        assert enc.bitstream == codec.encode(x, q).bitstream
        dec = codec.decode(enc.bitstream)
        assert torch.equal(dec.extra["y_hat"], enc.extra["y_hat"])
        assert torch.equal(dec.features["expanded_conv_9"], enc.extra["features_hat"]["expanded_conv_9"])
        sizes.append(len(enc.bitstream))
        assert ("student" in manifest["qualities"][q - 1]) == joint
    if joint:  # each quality runs its own (fine-tuned) student
        s1, s2 = codec.student_features(x, 1), codec.student_features(x, 2)
        assert not torch.equal(s1, s2)
        assert codec._student_net(1) is not codec._student_net(2)
    return codec, manifest


@pytest.mark.slow
def test_tiny_joint_deep_run_gives_an_exact_codec(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("FCM_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert main(_cli(tiny_dataset, tmp_path, "--variants", "1", "--keep", "0.25", "--distill-epochs", "1",
                     "--distill-layer", "expanded_conv_12", "--joint", "--max-steps", "1")) == 0
    codec, manifest = _check_codec(out, joint=True)
    assert manifest["joint"] and manifest["distill_layer"] == "expanded_conv_12"
    assert manifest["student"]["keep"] == 0.25 and "distill_val_deep_mse_norm" in manifest["student"]
    assert all(q["val"]["deep_mse_norm"] > 0 and q["train_cpu_s"] >= 0 for q in manifest["qualities"])
    from fcmcore.learned.weights import read_metadata

    assert [json.loads(read_metadata(out / f"q{q}.safetensors")["train"])["steps"] for q in (1, 2)] == [1, 1]
    # a thinner student: fewer edge MACs than head + the same encoder
    assert codec.edge_macs(None, 1) < codec._model().edge_macs("expanded_conv_9") + codec._net(1).encoder_macs(19, 19)


@pytest.mark.slow
def test_tiny_full_run_is_head_plus_codec(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("FCM_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert main(_cli(tiny_dataset, tmp_path, "--variants", "1", "--student", "full", "--max-steps", "1")) == 0
    codec, manifest = _check_codec(out, joint=False)
    st = manifest["student"]
    assert (st["variant"], st["init"], st["distill_epochs"], st["distill_cpu_s"]) == ("full", "teacher", 0, 0.0)
    assert st["distill_val_mse_norm"] < 1e-4  # float16 storage of the head's weights, nothing else
    model = codec._model()
    assert codec.edge_macs(None, 2) == model.edge_macs("expanded_conv_9") + codec._net(2).encoder_macs(19, 19)


@pytest.mark.slow
def test_tiny_task_loss_run_trains_with_the_task_distortion(tiny_dataset, tmp_path, monkeypatch):
    """``--loss task``: the codec's fine-tuning calls the detector-output distortion (spied),
    weighted by its lambda scale, and the manifest says so; the codec decodes exactly."""
    monkeypatch.setenv("FCM_CACHE_DIR", str(tmp_path / "cache"))
    calls = []
    real = direct_training.raw_distortion

    def spy(loss, *a, **k):
        fn = real(loss, *a, **k)
        return lambda x_hat, x: calls.append((loss, tuple(x_hat.shape))) or fn(x_hat, x)

    monkeypatch.setattr(direct_training, "raw_distortion", spy)
    out = tmp_path / "out"
    assert main(_cli(tiny_dataset, tmp_path, "--variants", "1", "--student", "full", "--max-steps", "1",
                     "--loss", "task")) == 0
    assert [c[0] for c in calls] == ["task", "task"]  # one step per lambda
    assert calls[0][1][1:] == (64, 19, 19)  # raw split features (a batch of them)
    _, manifest = _check_codec(out, joint=False)
    assert (manifest["loss"], manifest["deep_layer"], manifest["lambda_scale"]) == ("task", None, 0.5)
    assert manifest["config"]["loss"] == "task"
