"""How fast the dashboard answers, measured as a person sees it: a real server, headless Chromium.

    python benchmarks/app_rerender.py [--repeats 5] [--json] [--screenshots DIR]

Starts `streamlit run app/Home.py` on a free port with a fresh result cache, waits for the
server's health check, then in Chromium at 1280x800 times (wall clock, browser side):

* first render: page opened -> both default columns show their bits; settled: -> no run in progress;
* quality: column A's slider one step to a value not seen before -> A's bits change;
* codec / split: in A's settings popover, a new codec (frame codecs, then learned ones) or a
  new split point -> A's bits change;
* RD point: in the rate-accuracy tab, a click on a curve point -> the column's bits change.

Beside each median it prints fcmcore's own time for the same work (codec + tail from a head
output, or head + codec + tail for a split change, `fcmcore.pipeline` in this process, warm)
and the ratio: the page's overhead over the pipeline it shows, on the same busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _timing import median_ms_over  # benchmarks/_timing.py (this script's folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
BITS = re.compile(r"[\d,]+ bits")
TARGETS_S = {"first render": 3.0, "settled": 5.0, "quality": 0.3, "codec (frame)": 1.0, "split": 1.0,
             "codec (learned)": 1.5, "RD point click": 0.5}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, cache: str, log: Path | None = None) -> subprocess.Popen:
    env = dict(os.environ, FCM_CACHE_DIR=cache, PYTHONUNBUFFERED="1")
    if log is not None:
        env["FCM_APP_TRACE"] = "1"  # one line per page / column / tab run (app/studio/trace.py)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return subprocess.Popen(
        [sys.executable, str(REPO / "app" / "serve.py"), "--server.port", str(port),  # as `make app` serves it
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(log, "w") if log is not None else subprocess.DEVNULL,
        env=env, start_new_session=True)


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("streamlit did not answer")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


# -- the page ------------------------------------------------------------------------------
def bits_texts(page) -> list[str]:
    return page.locator("[data-testid='stMarkdownContainer']").filter(has_text=BITS).all_inner_texts()


def idle(page, timeout_ms: float = 600_000) -> None:
    """No script run in progress (Streamlit's running indicator gone)."""
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                           timeout=timeout_ms, polling=20)


def time_until_bits_change(page, column: int | None, action, timeout_s: float = 300) -> float:
    """Seconds from ``action`` until the column's bits line changes (``None``: any column's)."""
    before = bits_texts(page)
    start = time.perf_counter()
    action()
    while True:
        texts = bits_texts(page)
        if column is None and len(texts) == len(before) and texts != before:
            return time.perf_counter() - start
        if column is not None and len(texts) > column and texts[column] != before[column]:
            return time.perf_counter() - start
        if time.perf_counter() - start > timeout_s:
            raise RuntimeError(f"column {column}: bits did not change within {timeout_s} s")
        page.wait_for_timeout(10)


def column_slider(page, column: int):
    return page.locator("[data-testid='stMain'] [data-testid='stSlider'] input[type='range']").nth(column)


def column_label(page, column: int) -> str:
    """The column's settings button text, e.g. 'hevc @ expanded_conv_9'."""
    text = page.locator("[data-testid='stPopoverButton']:visible").nth(column + 1).inner_text()
    return next(line.strip().removeprefix("tune ").strip() for line in text.splitlines() if "@" in line)


def pick_in_popover(page, column: int, box: str, option: str) -> None:
    """Open column's settings popover, choose ``option`` in its ``box`` selectbox."""
    page.locator("[data-testid='stPopoverButton']:visible").nth(column + 1).click()  # +1: the Link popover comes first
    combo = page.get_by_role("combobox", name=box, exact=True).last
    combo.wait_for(state="visible")
    combo.click()
    page.get_by_role("listbox").first.wait_for(state="visible")  # typed keys must reach the open list
    page.keyboard.type(option)  # the list is virtualised: filter it, then take the match
    page.get_by_role("option", name=re.compile(rf"^{re.escape(option)}\b")).first.click()


def expect_label(page, column: int, codec: str, split: str) -> None:
    """Fail loudly if a pick landed somewhere else (a timing of the wrong change is worthless)."""
    label = column_label(page, column)
    if label != f"{codec} @ {split}":
        raise RuntimeError(f"column {column} shows {label!r}, expected {codec} @ {split}")


def close_popover(page) -> None:
    page.keyboard.press("Escape")
    page.wait_for_timeout(100)


def rd_click(page, column: int) -> float:
    """Open the RD tab, find a curve point of another quality by hovering (its tooltip shows), click it.

    ``column`` must be the one the chart's "A click sets column" box names (A by default)."""
    page.get_by_role("tab", name=re.compile("Rate")).click()
    chart = page.locator("[data-testid='stVegaLiteChart']").last
    chart.wait_for(timeout=600_000)
    idle(page)
    chart.scroll_into_view_if_needed()  # the mouse only hovers what is on screen
    page.wait_for_timeout(500)
    box = chart.bounding_box()
    tooltip = page.locator("#vg-tooltip-element")
    ring = None
    for fy in [i / 40 for i in range(2, 36)]:
        for fx in [i / 50 for i in range(3, 48)]:
            x, y = box["x"] + fx * box["width"], box["y"] + fy * box["height"] * 0.75
            page.mouse.move(x, y)
            if tooltip.count() and tooltip.is_visible() and "quality" in tooltip.inner_text() \
                    and "column" not in tooltip.inner_text():
                text = tooltip.inner_text()
                q = re.search(r"quality\s+([\d.]+)", text)
                current = column_slider(page, column).input_value()
                if q and current is not None and float(q.group(1)) != float(current):  # a point that changes it
                    ring = (x, y)
                    break
        if ring:
            break
    if ring is None:
        page.screenshot(path="/tmp/rd_no_point.png")
        raise RuntimeError("no clickable RD point found (screenshot /tmp/rd_no_point.png)")
    return time_until_bits_change(page, None, lambda: page.mouse.click(*ring))  # the clicked curve's column


# -- fcmcore's own time for the same work ---------------------------------------------------
def fcmcore_ms(split: str, codec: str, qualities, image: str = "coffee", with_head: bool = False) -> float:
    from fcmcore.imageio import load_image
    from fcmcore.pipeline import PipelineConfig, run_from_head, run_head

    img = load_image(REPO / "assets" / "samples" / f"{image}.jpg")
    head = run_head(img, split=split)
    run_from_head(head, PipelineConfig(split=split, codec=codec, quality=qualities[0]))  # warm

    def once(q):
        h = run_head(img, split=split) if with_head else head
        run_from_head(h, PipelineConfig(split=split, codec=codec, quality=q))

    return median_ms_over(once, qualities)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--screenshots", type=Path, default=None, help="save a screenshot per step here")
    parser.add_argument("--server-log", type=Path, default=None,
                        help="write the server's run trace here (FCM_APP_TRACE: what each step reran, how long)")
    parser.add_argument("--skip-rd", action="store_true", help="do not time the RD click (the sweep is long)")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(port, tempfile.mkdtemp(prefix="fcm_bench_cache_"), args.server_log)
    out: dict[str, dict] = {}
    try:
        wait_healthy(url, proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            start = time.perf_counter()
            page.goto(url)
            page.wait_for_function(f"() => [...document.querySelectorAll('[data-testid=stMarkdownContainer]')]"
                                   f".filter(e => /[\\d,]+ bits/.test(e.innerText)).length >= 2", timeout=600_000,
                                   polling=20)
            first = time.perf_counter() - start
            idle(page)
            settled = time.perf_counter() - start
            out["first render"] = {"runs_s": [first]}
            out["settled"] = {"runs_s": [settled]}
            shot = (lambda name: page.screenshot(path=str(args.screenshots / f"{name}.png"))) if args.screenshots else (lambda name: None)
            if args.screenshots:
                args.screenshots.mkdir(parents=True, exist_ok=True)
            shot("first_load")

            slider = column_slider(page, 0)
            runs = []
            for _ in range(args.repeats):
                slider.focus()
                runs.append(time_until_bits_change(page, 0, lambda: page.keyboard.press("ArrowRight")))
                idle(page)
            out["quality"] = {"runs_s": runs, "fcmcore_ms": fcmcore_ms("expanded_conv_9", "hevc", [33, 34, 35, 36, 37])}
            shot("after_quality")

            runs = []
            for codec in ["jpeg", "webp", "png", "jpegxl", "avif"][: args.repeats]:
                runs.append(time_until_bits_change(page, 0, lambda: pick_in_popover(page, 0, "Codec", codec)))
                idle(page)
                close_popover(page)
                expect_label(page, 0, codec, "expanded_conv_9")
            out["codec (frame)"] = {"runs_s": runs, "fcmcore_ms": fcmcore_ms("expanded_conv_9", "jpeg", [75, 75, 75])}
            shot("after_codec")
            runs = []
            for codec in ["factorized", "hyperprior", "context"]:
                runs.append(time_until_bits_change(page, 0, lambda: pick_in_popover(page, 0, "Codec", codec)))
                idle(page)
                close_popover(page)
                expect_label(page, 0, codec, "expanded_conv_9")
            out["codec (learned)"] = {"runs_s": runs, "fcmcore_ms": fcmcore_ms("expanded_conv_9", "hyperprior", [3, 3, 3])}
            pick_in_popover(page, 0, "Codec", "hevc")
            idle(page)
            close_popover(page)
            runs = []
            for split in ["expanded_conv_5", "expanded_conv_12", "expanded_conv_2"][: args.repeats]:
                runs.append(time_until_bits_change(page, 0, lambda: pick_in_popover(page, 0, "Split point", split)))
                idle(page)
                close_popover(page)
            out["split"] = {"runs_s": runs, "fcmcore_ms": fcmcore_ms("expanded_conv_5", "hevc", [32, 32, 32], with_head=True)}
            shot("after_split")
            if not args.skip_rd:
                out["RD point click"] = {"runs_s": [rd_click(page, 0)], "fcmcore_ms": fcmcore_ms("expanded_conv_9", "hevc", [40, 40, 40])}
                idle(page)
                shot("after_rd_click")
            browser.close()
    except Exception as exc:  # keep what was measured; say where it stopped
        print(f"stopped early: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
    finally:
        stop(proc)
    for name, row in out.items():
        row["median_s"] = statistics.median(row["runs_s"])
        row["target_s"] = TARGETS_S.get(name)
        if row.get("fcmcore_ms"):
            row["ratio_to_fcmcore"] = row["median_s"] * 1000 / row["fcmcore_ms"]
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"{'step':18s} {'median s':>9s} {'target s':>9s} {'fcmcore ms':>11s} {'ratio':>6s}  runs (s)")
    for name, row in out.items():
        fc = f"{row['fcmcore_ms']:.0f}" if row.get("fcmcore_ms") else "-"
        ratio = f"{row['ratio_to_fcmcore']:.1f}" if row.get("ratio_to_fcmcore") else "-"
        print(f"{name:18s} {row['median_s']:9.2f} {row['target_s'] or 0:9.2f} {fc:>11s} {ratio:>6s}  "
              + ", ".join(f"{t:.2f}" for t in row["runs_s"]))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
