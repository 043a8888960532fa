"""The `fcm` command line as other tools call it: names, JSON fields, exit codes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fcmcore.cli import main

SAMPLES = Path(__file__).resolve().parents[1] / "assets" / "samples"


def fcm(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_codecs_json_fields(capsys):
    code, out, _ = fcm(capsys, "codecs", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    for name in ("jpeg", "webp", "avif", "png", "jpeg2000", "jpegxl", "hevc", "vvc"):
        row = rows[name]
        assert set(row) >= {"name", "available", "reason", "quality_range", "higher_is_better", "default_quality"}
        lo, hi = row["quality_range"]
        assert lo <= row["default_quality"] <= hi
    assert rows["hevc"]["higher_is_better"] is False and rows["jpeg"]["higher_is_better"] is True


def test_models_and_splits(capsys):
    code, out, _ = fcm(capsys, "models", "--json")
    names = [m["name"] for m in json.loads(out)]
    assert code == 0 and names[0] == "ssd_mobilenet_v2" and "fasterrcnn_resnet50_fpn_v2" in names
    code, out, _ = fcm(capsys, "splits", "--model", "ssd_mobilenet_v2", "--json")
    splits = {s["name"]: s for s in json.loads(out)}
    assert splits["expanded_conv_9"]["tensors"] == {"expanded_conv_9": [64, 19, 19]}
    assert len(splits["Conv_1"]["tensors"]) == 2  # carries the prediction map computed earlier


def test_detect_json_contract(capsys):
    code, out, _ = fcm(capsys, "detect", str(SAMPLES / "chelsea.jpg"), "--split", "expanded_conv_9",
                       "--codec", "hevc", "--quality", "32", "--json")
    assert code == 0
    result = json.loads(out)
    for key in ("detections", "bits", "bpp", "split", "codec", "quality", "feature_shape", "timings_ms"):
        assert key in result
    assert result["feature_shape"] == [1, 64, 19, 19]
    assert result["bits"] % 8 == 0 and result["bits"] > 1000
    assert result["bpp"] == pytest.approx(result["bits"] / (451 * 300))
    cat = result["detections"][0]
    assert cat["label"] == "cat" and cat["category_id"] == 17 and cat["score"] > 0.8
    assert set(cat) == {"label", "category_id", "score", "box"} and len(cat["box"]) == 4


def test_detect_full_input_text(capsys):
    code, out, _ = fcm(capsys, "detect", str(SAMPLES / "coffee.jpg"), "--split", "none", "--codec", "jpeg",
                       "--quality", "40")
    assert code == 0 and "full input" in out and "cup" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["detect", "IMG", "--model", "yolo"], "unknown model"),
        (["detect", "IMG", "--split", "nope"], "unknown split"),
        (["detect", "IMG", "--codec", "mp3"], "unknown codec"),
        (["detect", "IMG", "--codec", "hevc", "--quality", "80"], "out of range"),
        (["detect", "IMG", "--codec", "jpeg", "--bits", "10"], "10-bit"),
        (["detect", "IMG", "--score-threshold", "3"], "score-threshold"),
        (["detect", "MISSING"], "no such file"),
        (["splits", "--model", "nope"], "unknown model"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(capsys, args, message):
    args = [str(SAMPLES / "rocket.jpg") if a == "IMG" else ("/nonexistent/x.jpg" if a == "MISSING" else a)
            for a in args]
    code, out, err = fcm(capsys, *args)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_bad_images_exit_2(capsys, bad_corpus):
    folder, cases = bad_corpus
    for case in cases:
        if case.usable:
            continue
        code, _, err = fcm(capsys, "detect", str(folder / case.filename), "--codec", "jpeg")
        assert code == 2 and err.startswith("error: ") and "Traceback" not in err, case.filename


@pytest.mark.slow
def test_odd_but_valid_images_run_through_the_cli(capsys, bad_corpus):
    folder, cases = bad_corpus
    for case in cases:
        if case.usable:
            code, out, err = fcm(capsys, "detect", str(folder / case.filename), "--codec", "hevc", "--json")
            assert code == 0, (case.filename, err)
            assert json.loads(out)["bits"] > 0


def test_installed_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "fcmcore.cli", "codecs"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "hevc" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "fcmcore.cli", "detect", "/nonexistent.png"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr


def test_light_commands_table_matches_the_full_parser():
    """`fcm bdrate` / `fcm plot` load only their own module: the table must name the module
    that really registers each of them, and the light parser must know the same options."""
    import argparse
    import importlib

    from fcmcore import cli

    for command, owner in cli.LIGHT_COMMANDS.items():
        assert owner in cli.COMMAND_MODULES
        parser = argparse.ArgumentParser()
        importlib.import_module(owner).add_commands(parser.add_subparsers(dest="command"))
        full, light = (next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices
                       for p in (cli.build_parser(), cli.build_parser([command])))
        assert command in light and set(light) < set(full)
        assert ({o for a in light[command]._actions for o in a.option_strings}
                == {o for a in full[command]._actions for o in a.option_strings})


def test_bdrate_starts_without_torch():
    code = ("import sys; from fcmcore.cli import main\n"
            "try:\n    main(['bdrate', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip().splitlines()[-1] == "False"
