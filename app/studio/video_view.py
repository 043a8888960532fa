"""The video page: a clip, 2-4 columns (split, codec, structure, QP), a frame slider showing
each column's decoded-side detections on that frame, bits and F1 per frame over time, the
annotated clip of a column, and RD curves intra vs inter. Layout and widgets only; results
come from ``fcmcore.video`` through the cached functions at the top of this file."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from fcmcore.errors import FCMError
from fcmcore.paths import ASSETS_DIR

MAX_UPLOAD_BYTES = 100 * 1024 * 1024
MAX_FRAMES = 300
UPLOAD_TYPES = ["mp4", "avi", "mkv", "webm", "mov", "m4v"]
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
DEMO = "demo: camera panning over a sample photo"
SPLIT_CHOICES = ["expanded_conv_9", "expanded_conv_5", "Conv_1", "none"]
CODEC_CHOICES = ["hevc", "vvc", "jpeg", "jpeg2000", "webp"]
GOP_CHOICES = ["ldp", "ra", "intra"]
DEFAULT_COLUMNS = [("expanded_conv_9", "hevc", "intra", 32), ("expanded_conv_9", "hevc", "ldp", 32),
                   ("none", "hevc", "ldp", 32), ("expanded_conv_9", "hevc", "ra", 32)]
LETTERS = "ABCD"


# -- cached computing ---------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def _clip_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="fcm-video-"))


@st.cache_data(show_spinner="Making the demo clip…")
def demo_clip_bytes(n: int = 30) -> bytes:
    """A camera slowly panning and zooming over a bundled CC0 photo, H.264 at 10 fps."""
    from PIL import Image

    from fcmcore.video.clip import write_clip

    src = Image.open(ASSETS_DIR / "samples" / "astronaut.jpg").convert("RGB")
    frames = []
    for i in range(n):
        s = 0.9 - 0.005 * i
        cw, ch = src.width * s, src.height * s * 0.75
        x0, y0 = 5 + 2.0 * i, (src.height - ch) / 2
        frames.append(np.asarray(src.resize((320, 240), Image.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))))
    path = _clip_dir() / "demo.mp4"
    write_clip(path, frames, 10)
    return path.read_bytes()


def clip_file(sha: str, data: bytes) -> Path:
    """The clip's bytes on disk (PyAV reads files), named by their hash."""
    path = _clip_dir() / f"{sha}.bin"
    if not path.exists():
        path.write_bytes(data)
    return path


@st.cache_resource(show_spinner="Decoding the clip…", max_entries=4)
def load_clip(sha: str, _data: bytes, start: int, frames: int, stride: int):
    from fcmcore.video.clip import read_clip

    return read_clip(clip_file(sha, _data), start=start, frames=frames, stride=stride)


@st.cache_resource(show_spinner=False, max_entries=8)
def heads(sha: str, _clip, selection: tuple, model: str, split: str | None):
    from fcmcore.video.run import compute_heads

    return compute_heads(_clip, model, split)


@st.cache_data(show_spinner=False, max_entries=8)
def reference(sha: str, _clip, selection: tuple) -> list:
    from fcmcore.video.run import reference_detections

    return reference_detections(_clip, heads(sha, _clip, selection, "ssd_mobilenet_v2", "expanded_conv_9"))


@st.cache_data(show_spinner=False, max_entries=64)
def column_result(sha: str, _clip, selection: tuple, config_items: tuple) -> dict[str, Any]:
    """One column on the clip: per-frame bits, detections and agreement (plain values)."""
    from fcmcore.video.metrics import clip_metrics
    from fcmcore.video.run import VideoConfig, run_video

    config = VideoConfig(**dict(config_items))
    res = run_video(_clip, config, heads=heads(sha, _clip, selection, config.model, config.split))
    m = clip_metrics(res.detections, reference(sha, _clip, selection), fps=res.fps)
    return {"label": res.config.label(), "quality": res.config.quality, "bits": res.bits, "kbps": res.kbps,
            "bpp": res.bpp, "frame_bits": res.frame_bits, "intra": res.intra, "detections": res.detections,
            "per_frame_f1": m["per_frame_f1"], "agreement": m["agreement"], "mAP_vs_ref": m.get("mAP_vs_ref"),
            "fps": res.fps, "timings_ms": res.timings_ms}


@st.cache_data(show_spinner="Drawing the annotated clip…", max_entries=8)
def annotated_clip(sha: str, _clip, selection: tuple, config_items: tuple) -> bytes:
    from fcmcore.video.annotate import write_annotated

    r = column_result(sha, _clip, selection, config_items)
    path = _clip_dir() / f"annotated-{hashlib.sha256(repr((sha, selection, config_items)).encode()).hexdigest()[:16]}.mp4"
    write_annotated(path, _clip.frames, r["detections"], r["fps"], r["frame_bits"])
    return path.read_bytes()


@st.cache_data(show_spinner=False, max_entries=16)
def rd_curves(sha: str, _data: bytes, selection: tuple, config_items: tuple, qualities: tuple) -> list[dict]:
    """The column's configuration at several QPs with its structure and with ``intra``."""
    from dataclasses import replace

    from fcmcore.video.run import VideoConfig
    from fcmcore.video.sweep import video_sweep

    base = VideoConfig(**dict(config_items))
    curves = [(replace(base, gop=g, intra_period=None), list(qualities), None)
              for g in dict.fromkeys(["intra", base.gop])]
    start, frames, stride = selection
    doc = video_sweep(clip_file(sha, _data), curves, start=start, frames=frames, stride=stride, cache=True,
                      progress=False)
    return [{"name": c["name"], "results": c["results"]} for c in doc["curves"]]


# -- page ---------------------------------------------------------------------------------------
def main() -> None:
    st.title("FCM Studio: video")
    st.caption("The head runs on every frame; each frame's features are packed and the sequence is coded as ONE "
               "HEVC/VVC stream (intra, low-delay P, random access). Bits per frame are measured on the stream's "
               "NAL units; agreement is with the uncompressed run, frame by frame.")
    source = clip_source()
    if source is None:
        return
    name, data, start, frames, stride = source
    sha = hashlib.sha256(data).hexdigest()
    selection = (start, frames, stride)
    try:
        clip = load_clip(sha, data, start, frames, stride)
    except FCMError as exc:
        st.error(str(exc))
        return
    st.write(f"**{name}**: {len(clip.frames)} frames of {clip.width}x{clip.height} at {clip.fps:g} fps "
             f"(source frames {clip.indices[0]}..{clip.indices[-1]}, stride {stride})")
    configs = column_configs()
    results = run_columns(sha, clip, selection, configs)
    if not results:
        return
    frame = st.slider("frame", 0, len(clip.frames) - 1, 0, key="video_frame")
    frame_view(clip, results, frame)
    st.altair_chart(time_chart(results, "bits", "bits per frame", frame), width="stretch")
    st.altair_chart(time_chart(results, "f1", "F1 vs uncompressed", frame), width="stretch")
    playback(sha, clip, selection, configs, results)
    rd_section(sha, data, selection, configs)


def clip_source():
    with st.sidebar:
        st.header("Clip")
        options = [DEMO] + (["vtest.avi (opencv-doc)"] if VTEST.is_file() else []) + ["upload"]
        choice = st.radio("source", options, key="video_source")
        if choice == DEMO:
            name, data = "demo.mp4", demo_clip_bytes()
        elif choice.startswith("vtest"):
            name, data = VTEST.name, VTEST.read_bytes()
        else:
            up = st.file_uploader(f"video clip (≤ {MAX_UPLOAD_BYTES // 2**20} MB)", type=UPLOAD_TYPES,
                                  key="video_upload")
            if up is None:
                st.info("Upload a clip to start.")
                return None
            if up.size > MAX_UPLOAD_BYTES:
                st.error(f"{up.name}: {up.size / 2**20:.0f} MB, larger than the "
                         f"{MAX_UPLOAD_BYTES // 2**20} MB limit")
                return None
            name, data = up.name, up.getvalue()
        start = int(st.number_input("start frame", 0, 100000, 0, key="video_start"))
        frames = int(st.number_input("frames", 2, MAX_FRAMES, 20, key="video_frames"))
        stride = int(st.number_input("stride", 1, 30, 1, key="video_stride"))
        st.number_input("columns", 2, 4, 3, key="video_columns")
    return name, data, start, frames, stride


def column_configs() -> list[tuple]:
    n = int(st.session_state.get("video_columns", 3))
    cols = st.columns(n)
    out = []
    for i, col in enumerate(cols):
        split0, codec0, gop0, q0 = DEFAULT_COLUMNS[i]
        with col:
            st.subheader(LETTERS[i])
            split = st.selectbox("split", SPLIT_CHOICES, SPLIT_CHOICES.index(split0), key=f"v_split_{i}")
            codec = st.selectbox("codec", CODEC_CHOICES, CODEC_CHOICES.index(codec0), key=f"v_codec_{i}")
            seq = codec in ("hevc", "vvc")
            gop = st.selectbox("structure", GOP_CHOICES if seq else ["intra"],
                               GOP_CHOICES.index(gop0) if seq else 0, key=f"v_gop_{i}_{seq}")
            if seq:
                q = st.slider("QP (lower = more bits)", 12 if codec == "hevc" else 2, 51, q0, key=f"v_q_{i}_{codec}")
            else:
                q = st.slider("quality (higher = more bits)", 1, 95, 50, key=f"v_q_{i}_{codec}")
        cfg = {"split": None if split == "none" else split, "codec": codec, "gop": gop, "quality": float(q)}
        out.append(tuple(sorted(cfg.items())))
    return out


def run_columns(sha, clip, selection, configs) -> list[dict | str]:
    results = []
    bar = st.progress(0.0, text="running columns…")
    for i, items in enumerate(configs):
        try:
            results.append(column_result(sha, clip, selection, items))
        except FCMError as exc:
            results.append(str(exc))
        bar.progress((i + 1) / len(configs), text=f"column {LETTERS[i]} done")
    bar.empty()
    cols = st.columns(len(results))
    for letter, col, r in zip(LETTERS, cols, results):
        with col:
            if isinstance(r, str):
                st.error(r)
                continue
            a = r["agreement"]
            f1 = "n/a" if a["f1"] is None else f"{a['f1']:.3f}"
            ci = a.get("f1_ci")
            st.markdown(f"**{letter}** · {r['label']}  \n**{r['kbps']:.1f} kbps** ({r['bpp']:.4f} bpp), "
                        f"F1 {f1}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
                        + f", intra frames {sum(r['intra'])}")
    return results


def frame_view(clip, results, frame: int) -> None:
    from fcmcore.video.annotate import draw_detections

    cols = st.columns(len(results))
    for letter, col, r in zip(LETTERS, cols, results):
        if isinstance(r, str):
            continue
        with col:
            f1 = r["per_frame_f1"][frame]
            cap = f"{letter}: frame {frame}, {r['frame_bits'][frame]:,} bits" + (
                " (intra)" if r["intra"][frame] else "") + ("" if f1 is None else f", F1 {f1:.2f}")
            st.image(draw_detections(clip.frames[frame], r["detections"][frame]), width="stretch")
            st.caption(cap)


def time_chart(results, what: str, title: str, frame: int):
    rows = []
    for letter, r in zip(LETTERS, results):
        if isinstance(r, str):
            continue
        values = r["frame_bits"] if what == "bits" else r["per_frame_f1"]
        rows += [{"frame": i, "value": v, "column": f"{letter}: {r['label']}"} for i, v in enumerate(values)
                 if v is not None]
    df = pd.DataFrame(rows)
    y = alt.Y("value:Q", title=title, scale=alt.Scale(type="log") if what == "bits" else alt.Scale(domain=[0, 1]))
    lines = alt.Chart(df).mark_line(point=True).encode(x=alt.X("frame:Q"), y=y, color="column:N",
                                                       tooltip=["column", "frame", "value"])
    rule = alt.Chart(pd.DataFrame({"frame": [frame]})).mark_rule(color="red", strokeDash=[4, 3]).encode(x="frame:Q")
    return (lines + rule).properties(height=220, title=title)


def playback(sha, clip, selection, configs, results) -> None:
    st.subheader("Annotated clip")
    ok = [i for i, r in enumerate(results) if not isinstance(r, str)]
    if not ok:
        return
    pick = st.selectbox("column", [LETTERS[i] for i in ok], key="video_play_column")
    i = LETTERS.index(pick)
    st.video(annotated_clip(sha, clip, selection, configs[i]), format="video/mp4")


def rd_section(sha, data, selection, configs) -> None:
    st.subheader("Rate–accuracy: intra vs the column's structure")
    st.caption("The column's split and codec at several QPs, coded all-intra and with its own structure; "
               "F1 against the uncompressed run, kbps at the clip's rate.")
    pick = st.selectbox("column", list(LETTERS[: len(configs)]), key="video_rd_column")
    qs = st.text_input("QPs", "22,27,32,37,42,47", key="video_rd_qps")
    if not st.button("Compute RD curves", key="video_rd_go"):
        return
    try:
        qualities = tuple(float(q) for q in qs.split(",") if q.strip())
        with st.spinner("Sweeping…"):
            curves = rd_curves(sha, data, selection, configs[LETTERS.index(pick)], qualities)
    except (FCMError, ValueError) as exc:
        st.error(str(exc))
        return
    rows = [{"curve": c["name"], "kbps": k, "F1": f, "QP": q} for c in curves
            for k, f, q in zip(c["results"]["kbps"], c["results"]["f1"], c["results"]["quality"]) if f is not None]
    chart = alt.Chart(pd.DataFrame(rows)).mark_line(point=True).encode(
        x=alt.X("kbps:Q", scale=alt.Scale(type="log")), y=alt.Y("F1:Q", scale=alt.Scale(domain=[0, 1])),
        color="curve:N", tooltip=["curve", "QP", "kbps", "F1"])
    st.altair_chart(chart.properties(height=300), width="stretch")
    if len(curves) == 2:
        from fcmcore.evaluate.bdrate import bd_table

        table, notes = bd_table(curves, curves[0]["name"], "f1")
        r = table[1].bd_rate
        st.write(f"BD-rate of {curves[1]['name']} vs intra on F1: " + ("n/a" if r is None else f"**{r:+.1f} %**"))
        for n in notes:
            st.caption(n)
