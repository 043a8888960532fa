"""The video page through Streamlit's AppTest, on the demo clip the page makes at run time
(a camera panning over a bundled CC0 photo): real detector, real x265 streams."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parent.parent / "app" / "pages" / "2_Video.py"


def texts(block) -> list[str]:
    out = []
    for child in block.children.values():
        if type(child).__name__ in {"Markdown", "Caption", "Error", "Warning", "Info"}:
            out.append(str(child.value))
        if hasattr(child, "children"):
            out += texts(child)
    return out


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from streamlit.testing.v1 import AppTest

    mp = pytest.MonkeyPatch()
    mp.setenv("FCM_CACHE_DIR", str(tmp_path_factory.mktemp("fcm_cache")))
    at = AppTest.from_file(str(PAGE), default_timeout=900)
    at.session_state["video_frames"] = 5
    at.session_state["video_columns"] = 2
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    yield at
    mp.undo()


def all_texts(at) -> list[str]:
    return texts(at.main) + texts(at.sidebar)


@pytest.mark.slow
def test_columns_show_rate_and_agreement(page):
    lines = [t for t in all_texts(page) if re.search(r"\*\*[\d.]+ kbps\*\*", t)]
    assert len(lines) == 2, lines
    assert "intra" in lines[0] and "ldp" in lines[1]
    rates = [float(re.search(r"\*\*([\d.]+) kbps\*\*", t).group(1)) for t in lines]
    assert rates[1] < rates[0]  # same QP: the low-delay column spends fewer bits than all-intra
    assert len(page.get("vega_lite_chart")) >= 2  # bits and F1 over time
    assert page.get("video"), "the annotated clip is playable on the page"


@pytest.mark.slow
def test_frame_slider_moves_every_column(page):
    def captions(at):
        return [c.value.split(": ", 1)[1] for c in at.caption if re.match(r"[A-D]: frame \d+, [\d,]+ bits", c.value)]

    page.slider(key="video_frame").set_value(3).run()
    assert not page.exception
    shown = captions(page)
    assert len(shown) == 2 and all(c.startswith("frame 3,") for c in shown), shown


@pytest.mark.slow
def test_rd_curves_intra_vs_inter(page):
    page.selectbox(key="video_rd_column").set_value("B")
    page.text_input(key="video_rd_qps").set_value("27,37,47")
    page.button(key="video_rd_go").click().run()
    assert not page.exception, [e.value for e in page.exception]
    assert any("BD-rate" in t for t in all_texts(page)), all_texts(page)
