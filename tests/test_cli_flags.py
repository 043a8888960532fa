"""Flags that do not apply are refused (issue 12 item 7): exit 2 and one ``error:`` line."""

from __future__ import annotations

from pathlib import Path

import pytest

from fcmcore.cli import main

IMG = str(Path(__file__).resolve().parents[1] / "assets" / "samples" / "rocket.jpg")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--quality", "30"], "needs a codec"),
        (["--split", "none", "--quality", "30"], "needs a codec"),
        (["--codec", "hevc", "--bits", "0"], "--bits must be one of"),
        (["--codec", "hevc", "--bits", "3"], "--bits must be one of"),
        (["--bits", "8"], "needs a codec"),
        (["--wrapper", "pca", "--rdo", "wa"], "needs a codec"),
        (["--split", "none", "--codec", "jpeg", "--bits", "8"], "full-input"),
        (["--split", "none", "--codec", "jpeg", "--rdo", "wa"], "full-input"),
        (["--split", "none", "--codec", "jpeg", "--quant", "channel"], "full-input"),
        (["--codec", "hevc", "--rdo", "wa"], "importance weights"),
        (["--codec", "jpeg", "--wrapper", "pca", "--rdo", "wa-qp"], "per-region QP"),
        (["--codec", "hevc", "--wrapper", "pca", "--rdo", "wa-qp", "--wa-strength", "0"], "--wa-strength must be"),
    ],
)
def test_flags_that_do_not_apply_exit_2(capsys, args, message):
    code = main(["detect", IMG, *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--codec", "hyperprior", "--bits", "8"], "no bit depth"),
        (["--codec", "context", "--quant", "channel"], "does not apply"),
        (["--codec", "factorized", "--wrapper", "pca", "--rdo", "wa"], "does not apply"),
        (["--codec", "direct", "--bits", "10"], "no bit depth"),
    ],
)
def test_packing_flags_on_learned_codecs_exit_2(capsys, args, message):
    pytest.importorskip("compressai")
    code = main(["detect", IMG, *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_learned_codec_on_full_input_exits_2(capsys):
    pytest.importorskip("compressai")
    code = main(["detect", IMG, "--split", "none", "--codec", "hyperprior"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "not images" in err and "Traceback" not in err
