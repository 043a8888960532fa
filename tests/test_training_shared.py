"""fcmcore.training: the pieces every trainer shares (augmentation, banks, state)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fcmcore.errors import InputError, ParameterError
from fcmcore.training import (RECIPES, augment, cached_bank, proxy_noise, restore_train_state, save_train_state,
                              train_val_records)


def _image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))


@pytest.mark.parametrize("recipe", RECIPES)
def test_augment_is_seeded(recipe):
    a = [np.asarray(augment(_image(), np.random.default_rng(7), recipe)) for _ in range(2)]
    assert a[0].shape == a[1].shape and np.array_equal(a[0], a[1])
    views = {np.asarray(augment(_image(), np.random.default_rng(s), recipe)).tobytes() for s in range(6)}
    assert len(views) > 1


def test_recipes_draw_differently_and_unknown_is_refused():
    a = np.asarray(augment(_image(), np.random.default_rng(3), "crop50"))
    b = np.asarray(augment(_image(), np.random.default_rng(3), "crop35-zoom"))
    assert a.shape != b.shape or not np.array_equal(a, b)
    with pytest.raises(ParameterError):
        augment(_image(), np.random.default_rng(0), "mirror")


def test_train_val_records_needs_both_parts():
    class Rec:
        def __init__(self, i):
            self.id, self.path = i, f"{i}.jpg"

    class Data:
        name = "d"
        images = [Rec(i) for i in (5, 1, 3, 2, 4, 0, 7, 6)]

    train, val = train_val_records(Data())
    assert [r.id for r in val] == [3, 7] and [r.id for r in train] == [0, 1, 2, 4, 5, 6]
    Data.images = Data.images[:3]
    with pytest.raises(InputError):
        train_val_records(Data())


def test_cached_bank_rebuilds_broken_and_foreign_files(tmp_path):
    path = tmp_path / "bank.pt"
    calls = []

    def build():
        calls.append(1)
        return {"x": torch.arange(3)}

    assert cached_bank(path, build)[1] is False
    state, hit = cached_bank(path, build)
    assert hit and torch.equal(state["x"], torch.arange(3)) and len(calls) == 1
    assert cached_bank(path, build, accept=lambda st: "y" in st)[1] is False and len(calls) == 2
    path.write_bytes(b"not a checkpoint")
    stale = []
    assert cached_bank(path, build, on_stale=stale.append)[1] is False and len(stale) == 1


def test_train_state_round_trip(tmp_path):
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(4)
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    torch.rand(5, generator=gen)
    save_train_state(tmp_path / "s.pt", epoch=3, cpu_s=1.5, gen=gen, net=net, opt=opt)
    expect = torch.rand(4, generator=gen)
    net2, gen2 = torch.nn.Linear(3, 2), torch.Generator().manual_seed(0)
    opt2 = torch.optim.Adam(net2.parameters(), lr=1e-2)
    assert restore_train_state(tmp_path / "s.pt", gen=gen2, net=net2, opt=opt2) == (3, 1.5)
    assert torch.equal(net2.weight, net.weight) and torch.equal(torch.rand(4, generator=gen2), expect)
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]


def test_proxy_noise_stays_within_half_a_step():
    x = torch.randn(4, 2, 3, 3)
    y = proxy_noise(x, torch.Generator().manual_seed(0))
    rng = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))).view(-1, 1, 1, 1)
    assert not torch.equal(x, y) and bool(((y - x).abs() <= rng / 2 ** 3.5 / 2 + 1e-6).all())
