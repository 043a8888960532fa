"""The dashboard in a real browser: `streamlit run app/Home.py` on a free localhost port,
opened in headless Chromium (Debian's, driven by Playwright). Checks what a person sees
on first load, saves a screenshot, and always stops the server."""

from __future__ import annotations

import os
import re
import shutil
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
START_TIMEOUT_S = 90
RENDER_TIMEOUT_MS = 240_000  # first load: detector weights, two columns, one sweep on 2 cores
SCREENSHOT_COPY = Path("/tmp/fcm_screenshot.png")

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
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "Home.py"),
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


def test_first_load_in_a_real_browser(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make install-browser` (apt-get install chromium)")
    shot = tmp_path / "fcm_first_load.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 2000})
            page.set_default_timeout(RENDER_TIMEOUT_MS)
            page.goto(server, timeout=60_000)
            # Both columns ran: each has its bits figure and its comparison with the uncompressed run.
            wait = {"timeout": RENDER_TIMEOUT_MS}
            texts = page.locator("[data-testid='stMarkdownContainer']")
            expect(page.get_by_text("Column A", exact=True)).to_be_visible(**wait)
            expect(texts.filter(has_text=re.compile(r"[\d,]+ bits .* bpp"))).to_have_count(2, **wait)
            expect(texts.filter(has_text=re.compile(r"vs uncompressed: \d+ matched"))).to_have_count(2, **wait)
            expect(page.get_by_text(re.compile(r"^Detections: cup \d"))).to_have_count(2, **wait)
            expect(page.locator("[data-testid='stImage'] img")).not_to_have_count(0, **wait)
            # The feature-map tab (shown first) draws its per-channel chart with Vega.
            expect(page.locator("[data-testid='stVegaLiteChart']").first).to_be_visible(**wait)
            body = page.inner_text("body")
            assert "FCM Studio" in body
            assert "smaller than float32 features" in body
            assert "HEVC slice QP (lower = more bits)" in body
            split_boxes = page.get_by_role("combobox", name="Split point")
            expect(split_boxes).to_have_count(2)
            expect(split_boxes.first).to_have_value("expanded_conv_9 · 64×19×19 (23,104 values)")
            assert "Traceback" not in body and "Unexpected error" not in body
            expect(page.locator("[data-testid='stException']")).to_have_count(0)
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert shot.stat().st_size > 50_000
    shutil.copyfile(shot, SCREENSHOT_COPY)
