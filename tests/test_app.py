"""The Streamlit dashboard (app/).

Fast tests check the app's own pieces without a Streamlit session (drawing, exports, the
sweep grid, image intake). The ``slow`` ones drive the real page with
``streamlit.testing.v1.AppTest``: real detector, real codecs, real sweeps; they assert on
what the page shows. Uploads go through AppTest's ``file_uploader.set_value`` (supported by
this Streamlit); a pick on the RD chart (a browser click) is injected the way the chart's
callback records it, as ``session_state["_rd_pick"]``.
"""

from __future__ import annotations

import html
import io
import json
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "app" / "Home.py"
sys.path.insert(0, str(REPO / "app"))

from studio import charts, columns, compute, draw, export, fmt, inputs, keys, maps, state, uploads, url  # noqa: E402

from fcmcore.models.base import Detection  # noqa: E402
from fcmcore.pipeline import PipelineConfig  # noqa: E402


# -- fast: the app's own pieces ---------------------------------------------------------------
def _det(label, cid, score, box):
    return Detection(label=label, category_id=cid, score=score, box=box)


def test_detections_image_colours_each_kind_of_box():
    rgb = np.full((200, 300, 3), 255, np.uint8)
    matched = [_det("person", 1, 0.9, (10, 40, 90, 190))]
    false = [_det("cup", 47, 0.6, (120, 40, 180, 190))]
    missed = [_det("dog", 18, 0.7, (200, 40, 290, 190))]
    img = np.asarray(draw.detections_image(rgb, matched, false, missed))
    assert tuple(img[120, 10]) == draw.MATCHED  # left edge of each box, below any label
    assert tuple(img[120, 120]) == draw.FALSE
    dashed = img[40:190, 200]
    red = np.all(dashed == draw.MISSED, axis=1)
    assert 0.3 < red.mean() < 0.8, "missed boxes are dashed: red and background alternate"
    assert tuple(img[100, 60]) == (255, 255, 255), "inside the boxes the image is untouched"


def test_labels_of_overlapping_boxes_do_not_hide_each_other():
    rgb = np.full((200, 300, 3), 255, np.uint8)
    a, b = _det("cup", 47, 0.98, (100, 60, 200, 190)), _det("bowl", 51, 0.54, (102, 62, 210, 190))
    img = np.asarray(draw.detections_image(rgb, [a], [b], []))
    green = np.all(img == draw.MATCHED, axis=2)
    orange = np.all(img == draw.FALSE, axis=2)
    assert green[:58, 100:180].sum() > 300, "the cup label, above the boxes, is not painted over"
    assert orange[64:100, 104:200].sum() > 200, "the bowl label moved below it, inside its box"


def test_detections_image_shrinks_huge_images_but_keeps_box_positions():
    rgb = np.full((2000, 4000, 3), 255, np.uint8)
    img = draw.detections_image(rgb, [_det("car", 3, 0.9, (1000, 600, 3000, 1800))], [], [])
    assert max(img.size) == draw.DISPLAY_MAX_SIDE
    a = np.asarray(img)
    scale = draw.DISPLAY_MAX_SIDE / 4000
    assert tuple(a[int(1200 * scale), int(1000 * scale)]) == draw.MATCHED


def test_channel_grid_keeps_every_value_and_marks_gaps():
    chw = np.arange(5 * 3 * 4, dtype=np.float32).reshape(5, 3, 4)
    grid = draw.channel_grid(chw)
    assert grid.shape == (2 * 4, 3 * 5)  # 5 channels -> 2 rows x 3 cols of (3+1)x(4+1) tiles
    assert np.array_equal(np.sort(grid[np.isfinite(grid)]), np.sort(chw.ravel()))
    rgb = draw.colourise(grid, 0, 59)
    assert rgb.dtype == np.uint8 and rgb.shape == grid.shape + (3,)
    assert (rgb[~np.isfinite(grid)] == 255).all()


def test_per_channel_chart_shows_bits_when_the_result_has_them():
    mse = np.array([0.1, 0.5, 0.2])
    spec = charts.channel_chart(mse, None, 1).to_dict()
    assert spec["params"][0]["name"] == "channel" and "layer" not in spec
    spec = charts.channel_chart(mse, np.array([100.0, 300.0, 50.0]), 1).to_dict()
    assert len(spec["layer"]) == 2 and spec["layer"][1]["encoding"]["y"]["field"] == "bits"

    class Fake:
        extra = {"bits_per_channel": {"t": [10, 20, 30]}}

    assert list(maps.channel_bits(Fake(), "t", 3)) == [10, 20, 30]
    assert maps.channel_bits(Fake(), "t", 4) is None, "a length mismatch is ignored, not mis-drawn"
    Fake.extra = {}
    assert maps.channel_bits(Fake(), "t", 3) is None


def test_cli_command_reproduces_the_column_config():
    from fcmcore.cli import build_parser
    from fcmcore.cli.detect import config_from_args

    entry = inputs.sample_entry("astronaut")
    configs = [
        PipelineConfig(split="expanded_conv_9", codec="hevc", quality=40),
        PipelineConfig(split=None, codec="jpeg", quality=30),
        PipelineConfig(split="Conv", codec=None),
        PipelineConfig(split="expanded_conv_5", codec="vvc", quality=37, bit_depth=10, quant="channel"),
    ]
    for config in configs:
        line = export.cli_command(config, entry)
        args = build_parser().parse_args(shlex.split(line)[1:])
        assert args.image == "assets/samples/astronaut.jpg" and (REPO / args.image).is_file()
        assert config_from_args(args) == config, line


def test_uploaded_file_names_are_quoted_in_the_command_line():
    entry = inputs.entry_from_bytes("my photo; rm -rf x.jpg", b"data")
    line = export.cli_command(PipelineConfig(), entry)
    assert shlex.split(line)[2] == "my photo; rm -rf x.jpg"


def test_sweep_grid_spans_each_codec_range_towards_its_worst_setting():
    for name, codec in compute.codec_table().items():
        grid = compute.sweep_qualities(codec)
        lo, hi = codec["quality_range"]
        worst = lo if codec["higher_is_better"] else hi
        assert len(grid) >= 3 and list(grid) == sorted(set(grid)), name
        assert all(lo <= q <= hi for q in grid), name
        assert worst in grid, name
        if float(lo).is_integer() and float(hi).is_integer():
            assert all(float(q).is_integer() for q in grid), name
    hevc = compute.sweep_qualities(compute.codec_table()["hevc"])
    assert min(hevc) < 32 < max(hevc) == 51


def test_harsh_default_column_is_towards_fewer_bits():
    hevc = compute.codec_table()["hevc"]
    assert hevc["default_quality"] < compute.harsh_quality(hevc) <= hevc["quality_range"][1]
    jpeg = compute.codec_table()["jpeg"]
    assert jpeg["quality_range"][0] <= compute.harsh_quality(jpeg) < jpeg["default_quality"]


def test_image_intake_refuses_broken_files_with_one_line_and_keeps_odd_ones(bad_corpus):
    folder, cases = bad_corpus
    entries = [inputs.entry_from_bytes(c.filename, (folder / c.filename).read_bytes()) for c in cases]
    good, errors = inputs.load_entries(entries)
    usable = {c.filename for c in cases if c.usable}
    refused = {c.filename for c in cases if not c.usable}
    assert {g.entry.name for g in good} == usable
    assert len(errors) == len(refused)
    assert {k for k, _ in errors} == {e.key for e in entries if e.name in refused}
    for name in refused:
        (line,) = [e for _, e in errors if e.startswith(name + ":")]
        assert "\n" not in line and "Traceback" not in line
    assert all(g.image.mode == "RGB" for g in good)


def test_exports_are_readable_by_fcm_tools(tmp_path):
    from fcmcore.evaluate.sweep import load_results

    rd_doc = {"source": ["astronaut"], "metric": "f1", "curves": [
        {"name": "a", "results": {"bpp": [0.01, 0.1], "mAP": [0.5, 0.9], "quality": [45, 32], "f1": [0.6, 1.0]}},
        {"name": "b", "results": {"bpp": [0.02, 0.2], "mAP": [0.4, 0.8], "quality": [80, 30], "f1": [0.5, 0.9]}},
    ]}
    path = tmp_path / "curves.json"
    path.write_text(json.dumps(export.compressai_curves(rd_doc)))
    doc = load_results(path)
    assert [c["name"] for c in doc["curves"]] == ["a", "b"]
    assert doc["curves"][0]["results"]["bpp"] == [0.01, 0.1]
    lines = export.curves_csv(rd_doc).strip().splitlines()
    assert lines[0].split(",") == ["curve", "quality", "bpp", "mAP", "mAP50", "mAP_vs_ref", "f1"]
    assert len(lines) == 5


def test_markdown_escaping_keeps_file_names_plain():
    name = "[click](http://evil.example)![x](http://evil.example/i.png)<b>*bold*</b> www.evil.example.jpg"
    text = fmt.md_escape(f"{name}: corrupt or truncated image")
    for raw in ("](", "![", "<b>", "*bold*", "www.evil"):
        assert raw not in text, raw
    assert re.sub(r"\\(.)", r"\1", text) == f"{name}: corrupt or truncated image", "escaping only, nothing lost"
    assert "\n" not in fmt.md_escape("a\nb")


def test_three_significant_digits():
    assert [fmt.sig(v) for v in (0.000215, 0.0321, 1.2549, 24.0, 171.4)] == ["0.000215", "0.0321", "1.25", "24.0", "171"]
    assert fmt.bpp(0.00021478) == "0.000215 bpp"


def test_url_round_trip_and_bad_parts():
    codecs = compute.codec_table()
    page = {"samples": ["coffee", "rocket"], "shown": "rocket",
            "columns": {0: {"paradigm": state.MODEL_SPLIT, "model": "ssd_mobilenet_v2", "split": "expanded_conv_5",
                            "codec": "jpeg", "wrapper": "none", "rdo": "sse", "qualities": {"jpeg": 40}},
                        2: {"paradigm": state.FULL_INPUT, "model": "ssd_mobilenet_v2", "split": None,
                            "codec": "jpeg2000", "wrapper": "none", "rdo": "sse", "qualities": {"jpeg2000": 0.5}}},
            "tab": url.TABS["rd"], "source": "coco96", "limit": 8, "metric": "mAP", "threshold": 0.6}
    params = url.encode(page)
    assert params["A"] == "ssd_mobilenet_v2/expanded_conv_5/jpeg/40/none/sse" and "B" not in params
    assert params["C"] == "ssd_mobilenet_v2/-/jpeg2000/0.5/none/sse" and params["tab"] == "rd"
    back, notes = url.decode(params, codecs, ["coffee", "rocket", "astronaut"])
    assert not notes
    assert back["columns"][0]["qualities"] == {"jpeg": 40} and back["columns"][2]["paradigm"] == state.FULL_INPUT
    assert {k: back[k] for k in ("samples", "shown", "tab", "source", "limit", "metric", "threshold")} == \
        {k: page[k] for k in ("samples", "shown", "tab", "source", "limit", "metric", "threshold")}
    bad = dict(params, img="coffee,../../etc/passwd", A="m/s/nocodec/1/none/sse", C="x/y/hevc/99/none/sse")
    back, notes = url.decode(bad, codecs, ["coffee"])
    assert back["samples"] == ["coffee"] and "columns" not in back, "one valid column is not a page"
    assert any("not a bundled sample" in n for n in notes)
    assert any("unknown codec" in n for n in notes) and any("outside hevc" in n for n in notes)


def test_codec_lists_offer_only_what_can_run_and_say_why():
    codecs = compute.codec_table()
    offered, hidden = columns.valid_codecs(codecs, False, "ssd_mobilenet_v2", "expanded_conv_9")
    assert {"hevc", "jpeg", "hyperprior", "context"} <= set(offered)
    offered, hidden = columns.valid_codecs(codecs, False, "ssd_mobilenet_v2", "expanded_conv_5")
    assert "hyperprior" not in offered and "hevc" in offered
    assert "hyperprior: trained for ssd_mobilenet_v2 @ expanded_conv_9 only" in hidden
    offered, hidden = columns.valid_codecs(codecs, True, "ssd_mobilenet_v2", None)
    assert "factorized" not in offered and "jpeg" in offered
    assert "factorized: codes feature tensors only" in hidden


def test_column_letters_stay_with_their_columns(monkeypatch):
    fake = {keys.COLUMN_IDS: [0, 1, 2]}
    monkeypatch.setattr(state.st, "session_state", fake)
    for cid in (0, 1, 2):
        state.set_column(cid, state.default_columns(compute.codec_table())[0])
    state.remove_column(1)
    assert [state.letter(c) for c in state.column_ids()] == ["A", "C"]
    assert state.colour(2) == state.COLOURS["C"]
    state.add_column()
    assert [state.letter(c) for c in state.column_ids()] == ["A", "B", "C"], "the free letter comes back"


def test_uploads_go_to_a_private_folder_that_follows_no_symlink(tmp_path):
    import os
    import stat

    folder = uploads.folder()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.parent.resolve() != REPO
    path = uploads.file_for("ab" * 32, "x.png", b"one")
    assert path.parent == folder and path.read_bytes() == b"one"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # a symlink planted under the name the next upload will use is replaced, its target untouched
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    planted = folder / ("cd" * 32 + ".png")
    os.symlink(victim, planted)
    path = uploads.file_for("cd" * 32, "y.png", b"two")
    assert not path.is_symlink() and path.read_bytes() == b"two" and victim.read_text() == "keep"


def test_uploads_folder_is_bounded_and_removed_at_exit(tmp_path):
    import subprocess

    code = ("import sys; sys.path.insert(0, 'app'); from studio import uploads; uploads.MAX_FILES = 3\n"
            "paths = [uploads.file_for(f'{i:064x}', 'a.jpg', b'x') for i in range(5)]\n"
            "print(uploads.folder()); print(','.join(sorted(p.stem[-1] for p in uploads.folder().iterdir())))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    folder, names = out.splitlines()
    assert names == "2,3,4", "the oldest files this process wrote go first"
    assert not Path(folder).exists(), "removed when the process exits"


# -- slow: the real page through AppTest ----------------------------------------------------------
@pytest.fixture(scope="module")
def fresh_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("FCM_CACHE_DIR", str(tmp_path_factory.mktemp("fcm_cache")))
    yield
    mp.undo()


def new_app(**params):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=900)
    at.query_params.update(params)
    return at


TEXT_ELEMENTS = {"Markdown", "Caption", "Error", "Warning", "Info", "Code"}
SIDEBAR_IMAGES = "sidebar images"


def texts(block) -> list[str]:
    """Every text shown inside ``block`` (markdown, captions, alerts, code), depth first."""
    out = []
    for child in block.children.values():
        if type(child).__name__ in TEXT_ELEMENTS:
            out.append(str(child.value))
        if hasattr(child, "children"):
            out += texts(child)
    return out


def column_texts(at) -> dict[str, list[str]]:
    """Letter -> every text inside that comparison column (the outermost block holding its title)."""
    found: dict[str, list[str]] = {}
    for col in at.columns:
        t = [unescape(line) for line in texts(col)]  # escaped messages (fmt.md_escape) read as shown
        for line in t:
            m = re.search(r"■ Column ([A-D])</div>", line)
            if m and len(t) > len(found.get(m.group(1), [])):
                found[m.group(1)] = t
    return found


def joined(lines: list[str]) -> str:
    return "\n".join(lines)


def bits_of(lines: list[str]) -> int:
    for line in lines:
        m = re.search(r"\*\*([\d,]+) bits\*\*", line)
        if m:
            return int(m.group(1).replace(",", ""))
    raise AssertionError(f"no bits figure in {lines}")


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def check_clean(at):
    assert not at.exception, [e.value for e in at.exception]


def run(at):
    """One interaction, then the page as the browser shows it.

    A change in a column's settings reruns only that column's fragment and the tab showing it
    (columns.on_column_change); AppTest's tree then holds just those elements, where a browser keeps
    the rest of the page. So after such a partial run the page is run once more, unchanged."""
    at.run()
    check_clean(at)
    if not is_whole_page(at):
        at.run()
        check_clean(at)
    return at


def is_whole_page(at) -> bool:
    return any("FCM Studio" in m.value for m in at.markdown)  # the top bar: drawn by page runs only


def open_tab(at, tab_id: str, **state_values):
    at.session_state[keys.TAB] = url.TABS[tab_id]
    for k, v in state_values.items():
        at.session_state[k] = v
    return run(at)


@pytest.fixture(scope="module")
def first_load(fresh_cache):
    return run(new_app())


@pytest.mark.slow
def test_first_load_compares_two_hevc_columns_on_a_sample(first_load):
    at = first_load
    assert at.multiselect(key="samples").value == ["coffee", "astronaut"]
    assert at.selectbox(key="shown").value.startswith("sample:coffee:")
    cols = column_texts(at)
    assert set(cols) == {"A", "B"}
    for letter in "AB":
        body = joined(cols[letter])
        assert "Detections: cup" in body, body
        assert "smaller than float32 features" in body
        assert "edge" in body and "server" in body and "tail" in body
        assert state.COLOURS[letter] in body, "the column's colour is in its header and its caption"
    # default QP keeps the uncompressed run's three objects; the harsh QP loses one, for far fewer bits
    assert "vs uncompressed: **3 matched** · **0 missed** · **0 false**" in joined(cols["A"])
    assert re.search(r"\*\*[0-2] matched\*\* · \*\*[1-3] missed\*\*", joined(cols["B"])), cols["B"]
    assert bits_of(cols["A"]) > 4 * bits_of(cols["B"])
    assert re.search(r"\*\*0\.\d{3}\b|\*\*\d\.\d\d bpp|\*\*0\.0\d{3} bpp", joined(cols["A"])), "3 significant digits"
    assert at.slider(key="c0.q.hevc").value == 32 and at.slider(key="c1.q.hevc").value > 32
    assert at.selectbox(key="c0.split").value == "expanded_conv_9"
    assert at.selectbox(key="c0.codec").value == "hevc"
    assert at.selectbox(key="c0.model").value == "ssd_mobilenet_v2"
    assert at.button_group(key="c0.paradigm").value == state.MODEL_SPLIT
    # the feature-maps tab is open first; the heavy RD tab has not run
    assert any(c.value.startswith("Values from") for c in at.caption)
    assert keys.RD_CURVE_COLUMNS not in at.session_state
    assert not at.get("text_input"), "no path can be typed into the page"
    # the URL holds the page
    params = dict(at.query_params)
    assert params["A"] == "ssd_mobilenet_v2/expanded_conv_9/hevc/32/none/sse" and params["tab"] == "maps"
    assert params["img"] == "coffee,astronaut" and params["show"] == "coffee"


@pytest.mark.slow
def test_rd_and_export_tabs_on_the_sidebar_images(first_load):
    at = open_tab(first_load, "rd", **{keys.RD_SOURCE: SIDEBAR_IMAGES})
    assert at.get("vega_lite_chart"), "RD chart"
    assert any("BD-rate" in m.value for m in at.markdown)
    assert any(m.value.startswith("**Accuracy:** agreement with the uncompressed detector") for m in at.markdown)
    assert at.query_params["tab"] == "rd" and at.query_params["src"] == SIDEBAR_IMAGES
    at = open_tab(at, "export")
    codes = [c.value for c in at.code]
    assert "fcm detect assets/samples/coffee.jpg --model ssd_mobilenet_v2 --split expanded_conv_9 --codec hevc --quality 32" in codes
    assert len(at.get("download_button")) == 4, "columns and the RD curves computed in the other tab"
    open_tab(at, "maps")


@pytest.mark.slow
def test_a_link_reproduces_the_page(fresh_cache):
    at = run(new_app(img="rocket,coffee", show="rocket", A="ssd_mobilenet_v2/expanded_conv_5/jpeg/30/none/sse",
                     C="ssd_mobilenet_v2/-/webp/60/none/sse", tab="export", thr="0.5"))
    assert at.multiselect(key="samples").value == ["rocket", "coffee"]
    assert at.selectbox(key="shown").value.startswith("sample:rocket:")
    assert set(column_texts(at)) == {"A", "C"}
    assert at.slider(key="c0.q.jpeg").value == 30 and at.selectbox(key="c0.split").value == "expanded_conv_5"
    assert at.button_group(key="c2.paradigm").value == state.FULL_INPUT and at.slider(key="c2.q.webp").value == 60
    assert at.slider(key="threshold").value == 0.5
    codes = [c.value for c in at.code]
    assert any(c.startswith("fcm detect assets/samples/rocket.jpg") and "--split expanded_conv_5 --codec jpeg --quality 30"
               in c for c in codes), codes
    assert dict(at.query_params)["C"] == "ssd_mobilenet_v2/-/webp/60/none/sse"
    # a broken link part is said, and the page still shows the defaults
    at = run(new_app(A="ssd_mobilenet_v2/expanded_conv_9/nosuchcodec/3/none/sse"))
    assert any("Part of the link was not applied" in w.value for w in at.warning)
    assert set(column_texts(at)) == {"A", "B"}


@pytest.mark.slow
def test_astronaut_shows_a_person_in_every_column(fresh_cache):
    at = run(new_app())
    assert at.selectbox(key="shown").options == ["coffee", "astronaut"]
    at.selectbox(key="shown").set_value(inputs.sample_entry("astronaut").key)
    run(at)
    for lines in column_texts(at).values():
        assert any(line.startswith("Detections: person") for line in lines), lines
    assert at.query_params["show"] == "astronaut"


@pytest.mark.slow
def test_quality_change_reruns_only_that_column(first_load):
    at = first_load
    before = column_texts(at)
    at.slider(key="c0.q.hevc").set_value(42)
    at.run()
    check_clean(at)
    # only column A's fragment and the feature-maps tab (showing A) reran: no top bar, no column B
    assert not is_whole_page(at)
    rerun = "\n".join(m.value for m in at.markdown)
    assert "A</span> vs uncompressed" in rerun and "B</span>" not in rerun
    assert any(m.value.startswith("##### One channel") for m in at.markdown)
    run(at)
    after = column_texts(at)
    assert bits_of(after["A"]) < bits_of(before["A"])
    assert bits_of(after["B"]) == bits_of(before["B"])
    assert at.query_params["A"].endswith("/hevc/42/none/sse")
    at.slider(key="c0.q.hevc").set_value(32)
    run(at)


@pytest.mark.slow
def test_split_codec_paradigm_and_channel_picker(fresh_cache):
    at = run(new_app())
    at.selectbox(key="c1.split").set_value("expanded_conv_2")
    run(at)
    assert at.selectbox(key="c1.split").value == "expanded_conv_2"
    assert "expanded_conv_2 · 24×75×75 (135,000 values)" in at.selectbox(key="c1.split").options
    assert "hyperprior" not in at.selectbox(key="c1.codec").options, "learned codecs only where they were trained"
    assert any("hyperprior: trained for ssd_mobilenet_v2 @ expanded_conv_9 only" in t for t in column_texts(at)["B"])
    at.selectbox(key="c1.codec").set_value("jpeg")
    run(at)
    slider = at.slider(key="c1.q.jpeg")
    assert slider.value == 75 and "JPEG quality (higher = more bits)" in slider.label
    jpeg_bits = bits_of(column_texts(at)["B"])
    slider.set_value(10)
    run(at)
    assert bits_of(column_texts(at)["B"]) < jpeg_bits
    at.button_group(key="c1.paradigm").set_value(state.FULL_INPUT)
    run(at)
    body = joined(column_texts(at)["B"])
    assert "smaller than raw 24-bit RGB" in body and "detector" in body and "tail" not in body
    assert "Split point: none" in body
    assert "c1.split" not in [s.key for s in at.selectbox] and "c1.wrapper" not in [s.key for s in at.selectbox]
    # feature maps of column A: pick a channel
    at.number_input(key="fm.channel").set_value(5)
    run(at)
    assert any(c.value.startswith("channel 5: MSE") for c in at.caption)


@pytest.mark.slow
def test_learned_codec_quality_shows_its_rate(fresh_cache):
    at = run(new_app())
    at.selectbox(key="c1.codec").set_value("factorized")
    run(at)
    q = at.select_slider(key="c1.q.factorized")
    assert "learned model index" in q.label
    assert re.fullmatch(r"3 \(≈[\d,]+ bits, ≈0\.\d+ bpp here\)", q.format_func(3)), q.format_func(3)
    assert "bits**" in joined(column_texts(at)["B"])


@pytest.mark.slow
def test_add_and_remove_columns_keep_letters(fresh_cache):
    at = run(new_app())
    at.button(key="add_column").click()
    run(at)
    assert set(column_texts(at)) == {"A", "B", "C"}
    assert at.slider(key="c2.q.hevc").value == at.slider(key="c1.q.hevc").value  # copies the last column
    at.button(key="add_column").click()
    run(at)
    assert set(column_texts(at)) == {"A", "B", "C", "D"}
    assert at.button(key="add_column").disabled and "remove one" in at.button(key="add_column").help
    at.button(key="remove.1").click()
    run(at)
    assert set(column_texts(at)) == {"A", "C", "D"}, "removing B relabels nothing"
    assert at.slider(key="c0.q.hevc").value == 32 and "c1.q.hevc" not in at.session_state
    at.button(key="remove.0").click()
    run(at)
    assert set(column_texts(at)) == {"C", "D"}
    assert not [b for b in at.button if (b.key or "").startswith("remove.")], "two columns is the minimum"
    assert "A" not in at.query_params and "C" in at.query_params


@pytest.mark.slow
def test_bad_upload_shows_a_clear_error_that_clears(fresh_cache, bad_corpus):
    folder, _ = bad_corpus
    at = run(new_app())
    at.file_uploader(key="uploads").set_value([
        ("truncated.jpg", (folder / "truncated.jpg").read_bytes(), "image/jpeg"),
        ("bomb.png", (folder / "bomb.png").read_bytes(), "image/png"),
    ])
    run(at)
    errors = [unescape(e.value) for e in at.error]
    assert any(e.startswith("Upload refused: truncated.jpg: corrupt or truncated image") for e in errors), errors
    assert any(e.startswith("Upload refused: bomb.png: image too large") for e in errors), errors
    assert "Detections: cup" in joined(column_texts(at)["A"]), "the samples still run"
    run(at)
    assert not at.error, "said once; the sidebar keeps a note while the file is listed"
    assert any("truncated" in unescape(c.value) for c in at.sidebar.caption)
    # an odd but valid upload becomes the image shown
    at.file_uploader(key="uploads").set_value(("gray16.png", (folder / "gray16.png").read_bytes(), "image/png"))
    run(at)
    assert not at.error
    assert at.selectbox(key="shown").value.startswith("upload:gray16.png:")
    assert "bits**" in joined(column_texts(at)["A"])


@pytest.mark.slow
def test_upload_names_are_never_markdown(fresh_cache):
    at = run(new_app())
    name = "[click me](http://evil.example)![x](http://evil.example/i.png).jpg"
    at.file_uploader(key="uploads").set_value([(name, b"not an image", "image/jpeg")])
    run(at)
    (error,) = [e.value for e in at.error]
    assert "](" not in error and "![" not in error and unescape(error).startswith(f"Upload refused: {name}:")


@pytest.mark.slow
def test_a_failing_codec_is_reported_in_its_column_only(fresh_cache, monkeypatch):
    from fcmcore.codecs import get_codec
    from fcmcore.errors import BitstreamError

    at = run(new_app())
    codec = get_codec("hevc")

    def broken(*args, **kwargs):
        raise BitstreamError("hevc: decoder rejected the stream (simulated)")

    monkeypatch.setattr(codec, "decode", broken)
    at.slider(key="c1.q.hevc").set_value(29)  # not cached yet
    run(at)
    cols = column_texts(at)
    assert "hevc: decoder rejected the stream (simulated)" in cols["B"]
    assert "Detections: cup" in joined(cols["A"]), "column A (cached) still shows its result"
    monkeypatch.undo()
    run(at)
    assert "bits**" in joined(column_texts(at)["B"])
    assert "hevc: decoder rejected the stream (simulated)" not in column_texts(at)["B"], "the error cleared"


@pytest.mark.slow
def test_unavailable_codec_is_hidden_with_its_reason(fresh_cache, monkeypatch):
    from fcmcore.codecs.vvc import VVCCodec

    monkeypatch.setattr(VVCCodec, "available", lambda self: (False, "libvvenc missing (simulated)"))
    compute.codec_table.clear()
    try:
        at = run(new_app())
        assert "vvc" not in at.selectbox(key="c0.codec").options
        assert any("vvc: not available on this server (libvvenc missing (simulated))" in t for t in column_texts(at)["A"])
        assert "Detections: cup" in joined(column_texts(at)["B"])
    finally:
        monkeypatch.undo()
        compute.codec_table.clear()


@pytest.mark.slow
def test_model_without_weights_is_an_error_in_its_column(fresh_cache):
    at = run(new_app())
    at.selectbox(key="c0.model").set_value("fasterrcnn_resnet50_fpn_v2")
    run(at)
    body = joined(column_texts(at)["A"])
    assert "weights" in body and "missing" in body
    assert "Detections: cup" in joined(column_texts(at)["B"])


@pytest.mark.slow
def test_two_sessions_keep_independent_columns(fresh_cache):
    one, two = run(new_app()), run(new_app())
    one.slider(key="c0.q.hevc").set_value(44)
    one.button(key="add_column").click()
    run(one)
    run(two)
    assert one.slider(key="c0.q.hevc").value == 44 and two.slider(key="c0.q.hevc").value == 32
    assert set(column_texts(one)) == {"A", "B", "C"} and set(column_texts(two)) == {"A", "B"}
    assert bits_of(column_texts(one)["A"]) < bits_of(column_texts(two)["A"])


@pytest.mark.slow
def test_picking_an_rd_point_sets_the_column_quality(fresh_cache):
    at = open_tab(run(new_app()), "rd", **{keys.RD_SOURCE: SIDEBAR_IMAGES})
    curves = at.session_state[keys.RD_CURVE_COLUMNS]
    assert list(curves.values()) == [[0, 1]], "the chart knows which columns use each curve"
    before = bits_of(column_texts(at)["B"])
    at.session_state[keys.PICK] = {"column": 1, "quality": 24.0}
    run(at)
    assert at.slider(key="c1.q.hevc").value == 24
    assert bits_of(column_texts(at)["B"]) > before


def chart_data(at) -> list[dict]:
    """Every data row of the RD chart (the last chart on the page; Streamlit ships its
    datasets as Arrow streams beside the Vega-Lite spec)."""
    import pyarrow as pa

    proto = at.get("vega_lite_chart")[-1].proto
    rows = []
    for d in proto.datasets:
        frame = pa.ipc.open_stream(d.data.data).read_all().to_pandas()
        rows += [{k: v for k, v in r.items() if v == v and v is not None} for r in frame.to_dict("records")]
    return rows


@pytest.mark.slow
def test_rd_chart_marks_each_columns_operating_point_on_its_curve(fresh_cache):
    at = open_tab(run(new_app()), "rd", **{keys.RD_SOURCE: SIDEBAR_IMAGES})
    rows = chart_data(at)
    ops = {r["column"]: r for r in rows if "column" in r}
    assert set(ops) == {"A", "B"}
    assert ops["A"]["colour"] == state.COLOURS["A"] and ops["B"]["colour"] == state.COLOURS["B"]
    assert ops["A"]["quality"] == 32 and ops["B"]["quality"] == at.slider(key="c1.q.hevc").value
    assert ops["A"]["bpp"] > ops["B"]["bpp"]
    curve = [r for r in rows if "legend" in r and r.get("curve") == ops["A"]["curve"]]
    assert curve and curve[0]["legend"].startswith("A, B · hevc @ expanded_conv_9")
    on_curve = {r["quality"]: r for r in curve}
    for op in ops.values():
        assert op["quality"] in on_curve, "the default columns' qualities are on the swept grid"
        assert on_curve[op["quality"]]["bpp"] == pytest.approx(op["bpp"]), "same images, same rate"
        assert on_curve[op["quality"]]["value"] == pytest.approx(op["value"]), "same images, same accuracy"
    # a second curve brings the BD table, one decimal, with its interval column
    at.selectbox(key="c1.codec").set_value("jpeg")
    run(at)
    (table,) = at.dataframe
    assert "BD-rate 95% interval" in table.value.columns and len(table.value) == 2


@pytest.mark.slow
def test_rd_curves_on_a_server_dataset_with_annotations(fresh_cache, tiny_shared):
    at = run(new_app())
    at = open_tab(at, "rd", **{keys.RD_LIMIT: 8})
    source = at.selectbox(key="rd.source")
    assert source.options == ["dataset tinycoco (server)", "the 2 sidebar images"]
    assert source.value == "tinycoco", "a dataset with annotations by default, no button to press"
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="rd.metric").value == "mAP"
    assert any(re.match(r"\*\*Accuracy:\*\* COCO mAP@\[\.5:\.95\] \(annotations\) on \d+ images of tinycoco", m.value)
               for m in at.markdown), [m.value for m in at.markdown]
    rows = chart_data(at)
    ops = {r["column"]: r for r in rows if "column" in r}
    assert set(ops) == {"A", "B"} and ops["A"]["value"] > 0
    curve = [r for r in rows if "legend" in r]
    assert len({r["quality"] for r in curve}) >= 7
    assert any(r.get("text", "").startswith("uncompressed detector: ") for r in rows), "the reference line says what it is"


@pytest.mark.slow
def test_uncompressed_full_input_and_multi_tensor_columns_render(fresh_cache):
    at = run(new_app())
    at.selectbox(key="c0.codec").set_value("none")
    at.selectbox(key="c1.split").set_value("Conv_1")  # two tensors cross this split
    run(at)
    cols = column_texts(at)
    assert "vs uncompressed: **3 matched** · **0 missed** · **0 false**" in joined(cols["A"]), "raw features change nothing"
    assert any("**1.0×** smaller than float32 features" in line for line in cols["A"])
    assert at.selectbox(key="c1.split").value == "Conv_1"
    at.selectbox(key="fm.column").set_value("B")
    run(at)
    assert at.selectbox(key="fm.tensor").options == ["Conv_1 1280×10×10", "map0 576×19×19"]
    at.selectbox(key="fm.tensor").set_value("map0")
    run(at)
    assert any(c.value.startswith("channel ") for c in at.caption)
    # full input with an image codec: the feature-map tab shows the decoded image and its error
    at.button_group(key="c1.paradigm").set_value(state.FULL_INPUT)
    run(at)
    at.selectbox(key="c1.codec").set_value("webp")
    run(at)
    assert any("raw 24-bit RGB" in line for line in column_texts(at)["B"])
    assert any(c.value.startswith("Full input: the image itself was coded") for c in at.caption)
    # a higher score threshold hides the weaker boxes (bowl, dining table) everywhere
    at.slider(key="threshold").set_value(0.9)
    run(at)
    for lines in column_texts(at).values():
        (shown,) = [line for line in lines if line.startswith("Detections:")]
        assert "bowl" not in shown and "dining table" not in shown, shown


# -- wrappers, WA-RDO, bit allocation ---------------------------------------------------------
def test_cli_command_has_wrapper_and_rdo():
    entry = inputs.sample_entry("coffee")
    cfg = PipelineConfig(split="expanded_conv_9", codec="hevc", quality=32, wrapper="learned", rdo="wa-qp")
    argv = shlex.split(export.cli_command(cfg, entry))
    assert argv[argv.index("--wrapper") + 1] == "learned" and argv[argv.index("--rdo") + 1] == "wa-qp"


def test_rdo_only_with_a_wrapper_and_wrappers_only_with_weights():
    values = {"paradigm": state.MODEL_SPLIT, "model": "ssd_mobilenet_v2", "split": "expanded_conv_9",
              "codec": "hevc", "wrapper": "none", "rdo": "wa", "qualities": {}}
    assert state.build_config(values).rdo == "sse"
    assert state.build_config(dict(values, wrapper="learned")).rdo == "wa"
    names = compute.wrappers_with_weights("ssd_mobilenet_v2", "expanded_conv_9")
    assert "none" in names and "learned" in names
    assert compute.wrappers_with_weights("ssd_mobilenet_v2", "expanded_conv_2") == ["none"]


def _chart_specs(block) -> list[str]:
    out = []
    for child in block.children.values():
        if type(child).__name__ == "UnknownElement" and getattr(child, "type", "") == "vega_lite_chart":
            out.append(str(child.proto.spec))
        if hasattr(child, "children"):
            out += _chart_specs(child)
    return out


@pytest.mark.slow
def test_learned_wrapper_and_wa_rdo_change_the_bits_and_bit_allocation_charts(fresh_cache):
    at = run(new_app())
    assert "c1.rdo" not in [s.key for s in at.selectbox], "no wrapper: no RDO choice (plain SSE)"
    plain = bits_of(column_texts(at)["B"])
    at.selectbox(key="c1.wrapper").set_value("learned")
    run(at)
    sse = bits_of(column_texts(at)["B"])
    at.selectbox(key="c1.rdo").set_value("wa")
    run(at)
    wa = bits_of(column_texts(at)["B"])
    assert len({plain, sse, wa}) == 3, (plain, sse, wa)
    assert re.search(r"\d+ M MACs on the edge", joined(column_texts(at)["B"]))
    at = open_tab(at, "bits", **{keys.BA_COLUMN: "B"})
    tab = at.tabs[1]
    assert tab.label == "Bit allocation"
    assert any("WA-RDO" in t for t in texts(tab))
    assert any("**sse**" in t and "**wa**" in t for t in texts(tab)), texts(tab)
    assert any("below zero" in t for t in texts(tab)), "the leave-one-out bars are explained"
    specs = _chart_specs(tab)
    assert any("importance weight" in s and "bits per channel" in s for s in specs), specs
    at = open_tab(at, "export")
    assert any("--wrapper learned --rdo wa" in c.value for c in at.code)


@pytest.mark.slow
def test_wa_qp_with_vvc_is_an_error_in_its_column_only(fresh_cache):
    at = open_tab(run(new_app()), "bits")
    assert any("needs a column with a wrapper" in t for t in texts(at.tabs[1]))
    at.selectbox(key="c1.wrapper").set_value("learned")
    run(at)
    at.selectbox(key="c1.codec").set_value("vvc")
    at.selectbox(key="c1.rdo").set_value("wa-qp")
    run(at)
    cols = column_texts(at)
    assert any("wa-qp needs per-region QP control" in line for line in cols["B"]), cols["B"]
    assert "Detections: cup" in joined(cols["A"])


@pytest.mark.slow
def test_whole_bad_input_corpus_uploaded_at_once(fresh_cache, bad_corpus):
    """Every file of the corpus through the real upload widget: broken ones refused with one
    line each, odd ones accepted, and the page keeps serving detections."""
    folder, cases = bad_corpus
    at = run(new_app())
    at.file_uploader(key="uploads").set_value([(c.filename, (folder / c.filename).read_bytes(), "application/octet-stream")
                                               for c in cases])
    run(at)
    refused = [c.filename for c in cases if not c.usable]
    errors = [unescape(e.value) for e in at.error]
    for name in refused:
        (line,) = [e for e in errors if e.startswith(f"Upload refused: {name}:")]
        assert "\n" not in line and "Traceback" not in line
    shown_options = at.selectbox(key="shown").options
    for case in cases:
        if case.usable:
            assert any(case.filename in o for o in shown_options), case.filename
    assert "bits**" in joined(column_texts(at)["A"])


@pytest.mark.slow
def test_task_picker_serves_pose_and_classes_from_the_same_bits(fresh_cache):
    """Sidebar tasks: each split column at expanded_conv_9 draws a skeleton and lists top-5 classes
    coloured by agreement; a split without connectors says so; bits are those of detection alone;
    the tasks are in the link."""
    at = run(new_app(img="astronaut", show="astronaut", A="ssd_mobilenet_v2/expanded_conv_9/hevc/32/none/sse",
                     B="ssd_mobilenet_v2/expanded_conv_5/hevc/32/none/sse"))
    plain = column_texts(at)
    at.multiselect(key=keys.TASKS).set_value(["pose", "classification"])
    run(at)
    cols = column_texts(at)
    a, b = html.unescape(joined(cols["A"])), html.unescape(joined(cols["B"]))
    assert re.search(r"Pose: <b style='color:#[0-9a-f]{6}'>OKS 0\.\d\d vs uncompressed", a), a
    assert "Classes: <span style='color:" in a and ("top-1 agrees" in a or "top-1 differs" in a), a
    assert "Not served: pose: no connector trained for expanded_conv_5" in b, b
    assert "Not served: classification: no connector trained for expanded_conv_5" in b
    assert bits_of(cols["A"]) == bits_of(plain["A"]), "secondary tasks read the same bitstream: no extra bits"
    assert at.query_params["tasks"] == "pose,classification"
    # the link brings the tasks back
    at2 = run(new_app(img="astronaut", show="astronaut", tasks="classification,nosuchtask"))
    assert at2.multiselect(key=keys.TASKS).value == ["classification"]
    assert any("unknown task(s) nosuchtask" in unescape(w.value) for w in at2.warning)
    assert "Classes: " in html.unescape(joined(column_texts(at2)["A"]))


def test_pose_is_drawn_in_its_agreement_colour():
    rgb = np.full((200, 200, 3), 40, np.uint8)
    kp = lambda x, y: {"name": "k", "x": x, "y": y, "score": 0.9, "shown": True}  # noqa: E731
    pose = {"keypoints": [kp(50, 50), kp(150, 150)], "reference_keypoints": [kp(52, 52)],
            "limbs": [{"from": "k", "to": "k", "x1": 50, "y1": 50, "x2": 150, "y2": 150}], "oks": 0.9}
    img = np.asarray(draw.detections_image(rgb, [], [], [], pose=pose))
    assert tuple(img[100, 100]) == draw.MATCHED, "a limb of an agreeing pose is green"
    pose["oks"] = 0.2
    img = np.asarray(draw.detections_image(rgb, [], [], [], pose=pose))
    assert tuple(img[100, 100]) == draw.MISSED, "a disagreeing pose is red"
    assert tuple(img[10, 190]) == (40, 40, 40), "away from the skeleton the image is untouched"


@pytest.mark.slow
def test_rd_tab_offers_the_picked_tasks_metrics(fresh_cache):
    at = run(new_app(img="astronaut", show="astronaut", tasks="pose,classification",
                     A="ssd_mobilenet_v2/expanded_conv_9/hevc/32/none/sse", B="ssd_mobilenet_v2/expanded_conv_9/hevc/45/none/sse"))
    at = open_tab(at, "rd", **{keys.RD_SOURCE: SIDEBAR_IMAGES})
    options = at.selectbox(key=keys.RD_METRIC).options
    assert any(o.startswith("pose: OKS") for o in options) and any(o.startswith("classification: top-1") for o in options), options
    at.selectbox(key=keys.RD_METRIC).set_value("cls_top1")
    run(at)
    assert any("top-1 agreement with the uncompressed EfficientNet" in m.value for m in at.markdown)
    assert at.get("vega_lite_chart")


@pytest.mark.slow
def test_bit_allocation_tab_offers_spatial_weights_and_per_block_heat_maps(fresh_cache):
    at = run(new_app())
    at.selectbox(key="c1.wrapper").set_value("pca")
    run(at)
    at.selectbox(key="c1.rdo").set_value("wa-qp")
    run(at)
    at = open_tab(at, "bits", **{keys.BA_COLUMN: "B", keys.BA_KIND: "spatial", keys.BA_SOURCE: "image",
                                 keys.BA_PAD: True})
    tab = at.tabs[1]
    assert not at.exception and not [e.value for e in tab.error], [e.value for e in tab.error]
    assert any("**sse-qp**" in t and "**wa-qp**" in t for t in texts(tab)), texts(tab)
    specs = _chart_specs(tab)
    assert any("QP offset (wa-qp)" in s and "error change" in s for s in specs), specs


def _mode_bits(tab) -> dict[str, int]:
    line = next(t for t in texts(tab) if "**sse-qp**" in t and "**wa-qp**" in t)
    return {m: int(b.replace(",", "")) for m, b in re.findall(r"\*\*([a-z-]+)\*\*: ([\d,]+) bits", line)}


@pytest.mark.slow
def test_bit_allocation_strength_moves_the_wa_bits_and_leaves_the_anchor_alone(fresh_cache):
    at = run(new_app())
    at.selectbox(key="c1.wrapper").set_value("pca")
    run(at)
    at.selectbox(key="c1.rdo").set_value("wa-qp")
    run(at)
    bits = {}
    for strength in (1.0, 0.25):
        at = open_tab(at, "bits", **{keys.BA_COLUMN: "B", keys.BA_KIND: "spatial", keys.BA_SOURCE: "fixed",
                                     keys.BA_PAD: True, keys.BA_STRENGTH: strength})
        tab = at.tabs[1]
        assert not at.exception and not [e.value for e in tab.error], [e.value for e in tab.error]
        bits[strength] = _mode_bits(tab)
    assert bits[1.0]["sse-qp"] == bits[0.25]["sse-qp"], bits  # the anchor has no offsets to scale
    assert bits[1.0]["wa-qp"] != bits[0.25]["wa-qp"], bits  # the strength reached the encoder


def test_mode_config_keeps_the_strength_for_wa_modes_only():
    cfg = PipelineConfig(model="ssd_mobilenet_v2", split="expanded_conv_9", codec="hevc", quality=37,
                         wrapper="pca", rdo="wa-qp", wa_weights="spatial", wa_strength=0.5)
    assert compute.mode_config(cfg, "wa-qp").wa_strength == 0.5
    assert compute.mode_config(cfg, "wa").wa_strength == 0.5
    assert compute.mode_config(cfg, "sse-qp").wa_strength == 1.0 and compute.mode_config(cfg, "sse-qp").rdo == "sse-qp"
