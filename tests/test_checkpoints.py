"""Checkpoints load without unpickling code (issue 12 item 1): a planted malicious .pt is
refused with a clear WeightsError and its payload never runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fcmcore.checkpoints import load_checkpoint, save_checkpoint
from fcmcore.errors import WeightsError

PACKAGE = Path(__file__).resolve().parents[1] / "fcmcore"


class _Payload:
    """Unpickling this calls Path.touch(marker): what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_round_trip_of_what_trainers_save(tmp_path):
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    gen = torch.Generator().manual_seed(3)
    state = {"net": net.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
             "rng": torch.get_rng_state(), "epoch": 2, "cpu_s": 1.5}
    save_checkpoint(state, tmp_path / "c" / "x.pt")
    back = load_checkpoint(tmp_path / "c" / "x.pt")
    assert back["epoch"] == 2 and torch.equal(back["net"]["weight"], net.state_dict()["weight"])
    assert torch.equal(back["gen"], gen.get_state())
    assert not list((tmp_path / "c").glob("*.tmp"))


def test_planted_malicious_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "lambda_1.pt"
    torch.save({"net": {}, "epoch": _Payload(marker)}, path)
    with pytest.raises(WeightsError, match="refusing checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()  # the payload never ran


def test_garbage_and_non_dict_checkpoints_are_clear(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="unreadable checkpoint|refusing checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save(torch.zeros(3), tmp_path / "t.pt")
    with pytest.raises(WeightsError, match="not a dict"):
        load_checkpoint(tmp_path / "t.pt")


def test_no_trainer_unpickles_checkpoints():
    """Every torch.load call in fcmcore passes weights_only=True (read with ast: a docstring
    naming torch.load is no offender, a call without the flag is)."""
    import ast

    offenders = []
    for p in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                flag = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    offenders.append(f"{p.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []
