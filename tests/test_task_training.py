"""The task-trained wrapper: random initialisation (not PCA), trained on the task loss, saved
as an ordinary ``learned`` file with fixed importance weights and maps."""

from __future__ import annotations

import torch

from fcmcore.wrappers.training import FeatureBank


def _bank(n: int = 8) -> FeatureBank:
    g = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(n, 64, 19, 19, generator=g))
    return FeatureBank("expanded_conv_9", x, x[:4], x[:4], list(range(4)), [4, 5, 6, 7])


def test_task_nets_start_random_and_train(tmp_path):
    from fcmcore.wrappers.convnet import LearnedWrapper, load_learned
    from fcmcore.wrappers.task_training import train_task_nets

    bank = _bank()
    meta = {"method": "learned", "model": "ssd_mobilenet_v2", "split": "expanded_conv_9", "tensor": "expanded_conv_9",
            "channels_in": 64, "channels_out": 8, "k": 8, "height": 19, "width": 19, "seed": 0}
    w = train_task_nets(bank, meta, epochs=1, batch=4, log=None)
    assert isinstance(w, LearnedWrapper)
    assert w.meta["init"] == "random" and w.meta["loss"] == "task" and w.meta["train_cpu_seconds"] > 0
    # not the PCA start: the non-linear paths' last layers are not zero
    assert float(w.nets.post.n3.weight.abs().sum()) > 0 and float(w.nets.pre.n2.weight.abs().sum()) > 0
    w.importance_maps["task"] = torch.rand(8, 19, 19) + 0.1
    w.importance["task"] = torch.rand(8) + 0.1
    w.rdo_weights = "task"
    path = w.save(tmp_path / "task.safetensors")
    back = load_learned("ssd_mobilenet_v2", "expanded_conv_9", str(path))
    torch.testing.assert_close(back.importance_maps["task"], w.importance_maps["task"])
    z = {"expanded_conv_9": back.encode(bank.val[:1])}
    sp = back.importance_weights(z, "spatial", "fixed")["expanded_conv_9"]
    assert sp.shape == (19, 19) and abs(sp.mean() - 1) < 1e-9
