"""BD-rate / BD-mAP on known curves, and the `fcm bdrate` / `fcm plot` commands."""

from __future__ import annotations

import json

import pytest

from fcmcore.errors import InputError
from fcmcore.evaluate.bdrate import bd_table, monotone_front
from sweep_helpers import run_cli

RATES = [0.02, 0.05, 0.1, 0.2, 0.4, 0.8]
MAPS = [0.10, 0.22, 0.30, 0.35, 0.37, 0.38]


def curve(name, rates, maps):
    return {"name": name, "results": {"bpp": list(rates), "mAP": list(maps), "mAP50": [m + 0.2 for m in maps],
                                      "quality": list(range(len(rates)))}}


def test_ten_percent_fewer_bits():
    a = curve("A", RATES, MAPS)
    b = curve("B", [r * 0.9 for r in RATES], MAPS)
    rows, notes = bd_table([a, b], "A")
    assert rows[0].bd_rate == 0.0
    assert rows[1].bd_rate == pytest.approx(-10.0, abs=1e-6)
    assert rows[1].bd_map > 0  # same mAP for fewer bits = higher mAP at equal rate
    assert notes == []
    # and the other way round
    rows, _ = bd_table([a, b], "B")
    assert rows[0].bd_rate == pytest.approx(100 / 0.9 - 100, abs=1e-6)


def test_bd_map_in_points():
    a = curve("A", RATES, MAPS)
    up = curve("up", RATES, [m + 0.02 for m in MAPS])
    rows, _ = bd_table([a, up], "A")
    assert rows[1].bd_map == pytest.approx(2.0, abs=1e-6)  # +0.02 mAP = +2 points
    assert rows[1].bd_rate < 0


def test_dominated_points_are_dropped_and_reported():
    rates = [0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6]
    maps = [0.10, 0.22, 0.30, 0.29, 0.37, 0.38, 0.375]  # noisy plateau
    front = monotone_front("noisy", rates, maps)
    assert front.rates == [0.02, 0.05, 0.1, 0.4, 0.8]
    assert front.dropped == [(0.2, 0.29), (1.6, 0.375)]
    rows, notes = bd_table([curve("A", RATES, MAPS), curve("noisy", rates, maps)], "A")
    assert any("noisy: dropped 2 point(s)" in n for n in notes)
    assert rows[1].bd_rate is not None


def test_non_overlapping_curves_give_none_with_a_note():
    rows, notes = bd_table([curve("A", RATES, MAPS), curve("far", [5, 6, 8], [0.6, 0.7, 0.8])], "A")
    assert rows[1].bd_rate is None and rows[1].bd_map is None
    assert any("does not overlap" in n for n in notes)


def test_unknown_anchor_and_duplicates():
    with pytest.raises(InputError, match="no curve named"):
        bd_table([curve("A", RATES, MAPS)], "B")
    with pytest.raises(InputError, match="unique"):
        bd_table([curve("A", RATES, MAPS), curve("A", RATES, MAPS)], "A")


def _write(tmp_path, name, curves):
    path = tmp_path / name
    path.write_text(json.dumps({"version": 1, "curves": curves, "reference": None}))
    return str(path)


def test_cli_bdrate_json(tmp_path, monkeypatch, capsys):
    f1 = _write(tmp_path, "a.json", [curve("hevc @ full input", RATES, MAPS)])
    f2 = _write(tmp_path, "b.json", [curve("hevc @ expanded_conv_9", [r * 0.5 for r in RATES], MAPS)])
    assert run_cli(["bdrate", f1, f2, "--anchor", "full input", "--json"], monkeypatch) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert {"anchor", "rows"} <= set(out)
    assert out["anchor"] == "hevc @ full input"
    for r in out["rows"]:  # the old fields, and the interval fields (None: bare curves have no per-image data)
        assert {"name", "bd_rate", "bd_map", "bd_rate_ci", "bd_map_ci", "n_images", "overlap", "significant"} <= set(r)
    assert out["rows"][1]["bd_rate_ci"] is None and "no interval" in captured.err
    assert out["rows"][1]["name"] == "hevc @ expanded_conv_9"
    assert out["rows"][1]["bd_rate"] == pytest.approx(-50.0, abs=1e-6)


def test_cli_bdrate_table_and_errors(tmp_path, monkeypatch, capsys):
    f1 = _write(tmp_path, "a.json", [curve("A", RATES, MAPS), curve("B", [r * 0.9 for r in RATES], MAPS)])
    assert run_cli(["bdrate", f1, "--anchor", "A"], monkeypatch) == 0
    assert "-10.00" in capsys.readouterr().out
    assert run_cli(["bdrate", f1, "--anchor", "Z"], monkeypatch) == 2
    assert "error: no curve named 'Z'" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    assert run_cli(["bdrate", str(bad), "--anchor", "A"], monkeypatch) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_cli_plot_html(tmp_path, monkeypatch, capsys):
    c = curve("A", RATES, MAPS)
    c["reference"] = {"name": "A uncompressed", "bpp": 2.6, "mAP": 0.39}
    f1 = _write(tmp_path, "a.json", [c, curve("B", [r * 0.9 for r in RATES], MAPS)])
    out = tmp_path / "rd.html"
    assert run_cli(["plot", f1, "-o", str(out), "--anchor", "A"], monkeypatch) == 0
    html = out.read_text()
    assert "vega" in html and '"A uncompressed"' in html and "BD-rate vs A" in html
    assert run_cli(["plot", f1, "-o", str(tmp_path / "rd.txt")], monkeypatch) == 2


def test_results_files_roundtrip_and_errors(tmp_path):
    from fcmcore.evaluate.sweep import load_results, save_results

    doc = {"version": 1, "reference": None, "curves": [
        dict(curve("A", RATES, MAPS), points=[{"images": [{"image_id": 1, "bits": 10, "bpp": 0.1}] * 3}])]}
    path = tmp_path / "r.json"
    save_results(doc, path)
    assert load_results(path) == doc
    assert '{"image_id": 1, "bits": 10, "bpp": 0.1}' in path.read_text()  # one row per line
    # a bare CompressAI plot file is accepted too
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(curve("B", RATES, MAPS)))
    assert load_results(bare)["curves"][0]["name"] == "B"
    old = tmp_path / "old.json"
    old.write_text(json.dumps(dict(doc, version=99)))
    with pytest.raises(InputError, match="version 99"):
        load_results(old)
    with pytest.raises(InputError, match="no such file"):
        load_results(tmp_path / "missing.json")


def test_png_without_vl_convert_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    from fcmcore.errors import FCMError
    from fcmcore.evaluate.charts import rd_chart, save_chart

    monkeypatch.setitem(sys.modules, "vl_convert", None)  # as if not installed
    with pytest.raises(FCMError, match="pip install vl-convert-python"):
        save_chart(rd_chart([curve("A", RATES, MAPS)]), tmp_path / "rd.png")
