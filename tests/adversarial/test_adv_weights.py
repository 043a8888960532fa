"""Weight files are data, never code: a planted pickle payload in the torch hub cache must not run."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_clean_error
from corpus import plant_pickle_weights

from fcmcore.errors import WeightsError
from fcmcore.models import MODELS
from fcmcore.models.torchvision_zoo import weights_file

MODEL = "ssdlite320_mobilenet_v3_large"


def test_the_planted_file_is_live(tmp_path):
    """The payload really runs when unpickled (so the tests below can fail)."""
    marker = tmp_path / "marker"
    path = plant_pickle_weights(tmp_path / "evil.pth", marker)
    torch.load(path, weights_only=False)
    assert marker.read_text() == "code ran"


def test_planted_pickle_in_torch_home_is_refused_without_running(torch_home, tmp_path):
    marker = tmp_path / "marker"
    plant_pickle_weights(weights_file(MODEL), marker)
    with pytest.raises(WeightsError) as info:
        MODELS.create(MODEL)
    assert not marker.exists(), "unpickling ran code from the weights file"
    msg = str(info.value)
    assert "pickle" in msg and str(weights_file(MODEL)) in msg and "\n" not in msg


def test_planted_pickle_through_the_cli(tmp_path, cli):
    marker = tmp_path / "marker"
    home = tmp_path / "th"
    import os

    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)
    try:
        torch.hub._hub_dir = None
        path = weights_file(MODEL)
    finally:
        if old is None:
            del os.environ["TORCH_HOME"]
        else:
            os.environ["TORCH_HOME"] = old
    plant_pickle_weights(path, marker)
    proc = cli("detect", "assets/samples/astronaut.jpg", "--model", MODEL, "--split", "c4",
               env={"TORCH_HOME": str(home)})
    assert not marker.exists(), "unpickling ran code from the weights file"
    assert_clean_error(proc, "pickle")


def test_plain_state_dict_still_loads(torch_home):
    """The safe loader takes what torchvision ships: a dict of tensors."""
    torch.manual_seed(3)
    source = MODELS.create(MODEL, pretrained=False)
    path = weights_file(MODEL)
    path.parent.mkdir(parents=True)
    torch.save(source.model.state_dict(), path)
    loaded = MODELS.create(MODEL)
    for key, value in source.model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key]), key


def test_weights_path_that_is_not_a_regular_file(torch_home):
    import os

    path = weights_file(MODEL)
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    with pytest.raises(WeightsError, match="regular file"):
        MODELS.create(MODEL)
