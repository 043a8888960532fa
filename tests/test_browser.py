"""The dashboard in a real browser: `streamlit run app/Home.py` on a free localhost port,
opened in headless Chromium (Debian's, driven by Playwright). Checks what a person sees
in the first screen at 1280x800 and 1600x1000 (every column's detections and bits without
scrolling), that a link with four columns reproduces them, saves screenshots under
/tmp/fcm_screenshots/, and always stops the server."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 180  # the launcher imports fcmcore and loads the detector before serving
RENDER_TIMEOUT_MS = 240_000  # first load: detector weights, two columns, one sweep on 2 cores
SCREENSHOT_DIR = Path("/tmp/fcm_screenshots")  # for a person to look at; not part of the repo

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """The app served on a free port; yields its URL; the process group is always stopped."""
    port = _free_port()
    log = open(tmp_path / "streamlit.log", "w")
    env = dict(os.environ, FCM_CACHE_DIR=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "app" / "serve.py"),  # as `make app` serves it (imports warmed first)
         "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}: {(tmp_path / 'streamlit.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer on {url} within {START_TIMEOUT_S} s")
            time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        log.close()


VIEWPORTS = [(1280, 800), (1600, 1000)]
BITS = re.compile(r"[\d,]+ bits .* bpp")
FOUR_COLUMNS = ("?img=coffee,astronaut&show=coffee"
                "&A=ssd_mobilenet_v2/expanded_conv_9/hevc/32/none/sse&B=ssd_mobilenet_v2/expanded_conv_9/hevc/45/none/sse"
                "&C=ssd_mobilenet_v2/expanded_conv_5/jpeg/40/none/sse&D=ssd_mobilenet_v2/-/webp/50/none/sse")


def _launch(p):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make install-browser` (apt-get install chromium)")
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def _in_first_screen(locator, height: int) -> bool:
    box = locator.bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height


def _check_first_screen(page, columns: int, height: int) -> None:
    """Every column's bits line and detections caption, and its picture, lie inside the viewport."""
    from playwright.sync_api import expect

    wait = {"timeout": RENDER_TIMEOUT_MS}
    texts = page.locator("[data-testid='stMarkdownContainer']")
    bits = texts.filter(has_text=BITS)
    expect(bits).to_have_count(columns, **wait)
    labels = page.get_by_text(re.compile(r"^Detections: \w"))
    expect(labels).to_have_count(columns, **wait)
    expect(page.locator("[data-testid='stImage'] img")).not_to_have_count(0, **wait)
    page.wait_for_timeout(1500)  # let the layout settle (fonts, images)
    for i in range(columns):
        assert _in_first_screen(bits.nth(i), height), f"column {i}: bits below the fold: {bits.nth(i).bounding_box()}"
        assert _in_first_screen(labels.nth(i), height), f"column {i}: detections below the fold"
    pictures = page.locator("[data-testid='stMain'] [data-testid='stImage'] img")
    heights = {round(pictures.nth(i).bounding_box()["height"]) for i in range(columns)}
    assert len(heights) == 1, f"pictures of one image have one height, got {heights}"
    assert _in_first_screen(pictures.nth(columns - 1), height)


def test_first_screen_shows_every_columns_results(server):
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOT_DIR.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            for width, height in VIEWPORTS:
                page = browser.new_page(viewport={"width": width, "height": height})
                page.set_default_timeout(RENDER_TIMEOUT_MS)
                page.goto(server, timeout=60_000)
                expect(page.get_by_text("Column A", exact=False).first).to_be_visible(timeout=RENDER_TIMEOUT_MS)
                _check_first_screen(page, 2, height)
                body = page.inner_text("body")
                assert "FCM Studio" in body and "smaller than float32 features" in body
                assert "HEVC slice QP (lower = more bits)" in body
                assert "Traceback" not in body and "Unexpected error" not in body
                expect(page.locator("[data-testid='stException']")).to_have_count(0)
                # the page's settings are in the URL from the start
                # (the address bar follows the script's messages: wait for it rather than race it)
                expect(page).to_have_url(re.compile(r"[?&]A=ssd_mobilenet_v2(%2F|/)"), timeout=RENDER_TIMEOUT_MS)
                expect(page).to_have_url(re.compile(r"[?&]tab=maps"), timeout=RENDER_TIMEOUT_MS)
                page.screenshot(path=str(SCREENSHOT_DIR / f"first_load_{width}x{height}.png"))
                page.close()
        finally:
            browser.close()
    assert (SCREENSHOT_DIR / "first_load_1280x800.png").stat().st_size > 50_000


def test_a_four_column_link_fits_the_first_screen(server):
    from playwright.sync_api import sync_playwright

    SCREENSHOT_DIR.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(RENDER_TIMEOUT_MS)
            page.goto(server + FOUR_COLUMNS, timeout=60_000)
            _check_first_screen(page, 4, 800)
            body = page.inner_text("[data-testid='stMain']")
            for letter in "ABCD":
                assert f"Column {letter}" in body
            assert "jpeg @ expanded_conv_5" in body and "webp @ full input" in body
            page.screenshot(path=str(SCREENSHOT_DIR / "four_columns_1280x800.png"))
        finally:
            browser.close()


def _column_label(page, column: int) -> str:
    text = page.locator("[data-testid='stPopoverButton']:visible").nth(column + 1).inner_text()  # +1: Link first
    return next(line.replace("tune", "").strip() for line in text.splitlines() if "@" in line)


def test_a_codec_change_after_a_quality_change_keeps_the_split(server):
    """Regression: the popover's widgets were re-mounted with option 0 after a quality change, so the
    next codec pick silently moved the column to the split Conv (found by benchmarks/app_rerender.py)."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(RENDER_TIMEOUT_MS)
            page.goto(server, timeout=60_000)
            bits = page.locator("[data-testid='stMarkdownContainer']").filter(has_text=BITS)
            expect(bits).to_have_count(2, timeout=RENDER_TIMEOUT_MS)
            assert _column_label(page, 0) == "hevc @ expanded_conv_9"
            before = bits.first.inner_text()
            idle = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
            # why: a key press that lands while the first run is still finishing can be dropped by the
            # slider (seen once in CI: 240 s without a change); press again, each time on an idle page
            for attempt in range(3):
                page.wait_for_function(idle)
                page.locator("[data-testid='stMain'] [data-testid='stSlider'] input[type='range']").first.focus()
                page.keyboard.press("ArrowRight")
                try:
                    expect(bits.first).not_to_have_text(before, timeout=RENDER_TIMEOUT_MS // 4)
                    break
                except AssertionError:
                    if attempt == 2:
                        raise
            page.wait_for_function(idle)
            page.locator("[data-testid='stPopoverButton']:visible").nth(1).click()
            split = page.get_by_role("combobox", name="Split point", exact=True).last
            expect(split).to_be_visible()
            combo = page.get_by_role("combobox", name="Codec", exact=True).last
            combo.click()
            page.get_by_role("listbox").first.wait_for(state="visible")
            page.keyboard.type("jpeg")
            page.get_by_role("option", name=re.compile(r"^jpeg\b")).first.click()
            expect(page.locator("[data-testid='stPopoverButton']:visible").nth(1)).to_contain_text(
                "jpeg @ ", timeout=RENDER_TIMEOUT_MS)
            assert _column_label(page, 0) == "jpeg @ expanded_conv_9"
        finally:
            browser.close()
