"""The page, section by section. Layout and widgets only: results come from ``compute``
(fcmcore), pictures from ``draw``, per-session columns from ``state``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st

from fcmcore.evaluate.metrics import MatchResult, match_detections
from fcmcore.pipeline import DEFAULT_SPLIT, DISPLAY_SCORE_THRESHOLD, RDO_MODES, PipelineConfig, PipelineResult

from . import compute, draw, inputs, state

EDGE_STAGES = ("preprocess", "head", "pre_wrapper", "encode")
SERVER_STAGES = ("decode", "post_wrapper", "tail", "detector")
RDO_LABELS = {"sse": "sse (plain)", "wa": "wa (tile gains)", "wa-qp": "wa-qp (HEVC QP offsets)"}


@dataclass
class ColumnOutcome:
    """What one column produced this run (a result, or the reason there is none)."""

    cid: int
    letter: str
    config: PipelineConfig | None = None
    result: PipelineResult | None = None
    reference: PipelineResult | None = None
    match: MatchResult | None = None
    problem: str | None = None  # st.error text shown in the column


# -- page -----------------------------------------------------------------------------------
def main() -> None:
    codecs = compute.codec_table()
    state.init(codecs)
    state.apply_pending_pick()

    images, shown, threshold = sidebar()
    header()
    outcomes = comparison(codecs, shown, threshold)
    tab_maps, tab_bits, tab_rd, tab_export = st.tabs(["Feature maps", "Bit allocation", "Rate–accuracy curves",
                                                      "Export"])
    with tab_maps:
        feature_maps(outcomes, shown)
    with tab_bits:
        bit_allocation(outcomes, shown)
    with tab_rd:
        rd_doc = rd_section(images, outcomes)
    with tab_export:
        export_section(outcomes, shown, rd_doc)


def header() -> None:
    st.title("FCM Studio: split inference, made visible")
    st.markdown(
        "An **edge device** runs the first part of a COCO detector, **compresses the feature tensor** "
        "at the split point with a real codec, and a **server** decodes it and finishes the detection. "
        "Each column below is one such pipeline: what it **costs** (bits sent, per-stage times) and what it "
        "**breaks** (boxes compared with the uncompressed detector: "
        f"<span style='color:{draw.COLOURS_HEX['matched']}'>■ matched</span>, "
        f"<span style='color:{draw.COLOURS_HEX['missed']}'>┅ missed</span>, "
        f"<span style='color:{draw.COLOURS_HEX['false']}'>■ false</span>).",
        unsafe_allow_html=True,
    )


# -- inputs ---------------------------------------------------------------------------------
def sidebar() -> tuple[list[inputs.LoadedImage], inputs.LoadedImage | None, float]:
    with st.sidebar:
        st.header("Images")
        names = list(inputs.sample_files())
        st.session_state.setdefault("samples", [n for n in inputs.DEFAULT_SAMPLES if n in names] or names[:1])
        picked = st.multiselect("Bundled samples (public domain)", names, key="samples")
        uploads = st.file_uploader(
            "Upload images", type=inputs.UPLOAD_TYPES, accept_multiple_files=True, key="uploads",
            help="JPEG, PNG, WebP, ... up to the server's upload limit. Files stay in this session's memory.",
        )
        entries = [inputs.sample_entry(n) for n in picked] + inputs.uploaded_entries(uploads)
        images, errors = inputs.load_entries(entries)
        for message in errors:
            st.error(message)
        shown = None
        if images:
            labels = [im.entry.key for im in images]
            seen = st.session_state.setdefault("_seen_images", set())
            fresh = [k for k in labels if k not in seen and k.startswith("upload:")]
            seen.update(labels)
            if fresh:  # a new upload is what the user wants to look at
                st.session_state["shown"] = fresh[-1]
            elif st.session_state.get("shown") not in labels:
                st.session_state["shown"] = labels[0]
            key = st.selectbox("Image shown in the columns", labels, key="shown",
                               format_func=lambda k: k.split(":", 1)[1].rsplit(":", 1)[0])
            shown = images[labels.index(key)]
            st.caption(f"{shown.image.width}×{shown.image.height} px. Rate–accuracy curves use all "
                       f"{len(images)} image(s) listed here.")
        st.header("Display")
        threshold = st.slider("Score threshold for boxes", 0.05, 0.95, DISPLAY_SCORE_THRESHOLD, 0.05,
                              key="threshold",
                              help="Detections below this score are hidden, in every column and in the uncompressed reference.")
    if errors:  # also in the main area, where the eye is
        for message in errors:
            st.error(f"Upload refused: {message}")
    return images, shown, threshold


# -- the columns ----------------------------------------------------------------------------
def comparison(codecs: dict[str, dict[str, Any]], shown: inputs.LoadedImage | None, threshold: float) -> list[ColumnOutcome]:
    ids = state.column_ids()
    top = st.columns([4, 1])
    with top[0]:
        st.subheader("Side by side")
    with top[1]:
        st.button("Add a column", icon=":material/add:", on_click=state.add_column,
                  disabled=len(ids) >= state.MAX_COLUMNS, width="stretch", key="add_column",
                  help=f"Compare up to {state.MAX_COLUMNS} configurations")
    if shown is None:
        st.info("No usable image: pick a bundled sample or upload an image in the sidebar.")
    outcomes = []
    for cid, col in zip(ids, st.columns(len(ids), border=True)):
        with col:
            outcome = ColumnOutcome(cid, state.letter(cid))
            column_header(outcome, removable=len(ids) > state.MIN_COLUMNS)
            outcome.config, outcome.problem = column_config(cid, codecs)
            if outcome.config is not None and outcome.problem is None and shown is not None:
                column_result(outcome, shown, threshold)
            if outcome.problem:
                st.error(outcome.problem)
            outcomes.append(outcome)
    return outcomes


def column_header(outcome: ColumnOutcome, removable: bool) -> None:
    left, right = st.columns([3, 1], vertical_alignment="center")
    left.markdown(f"#### Column {outcome.letter}")
    if removable:
        right.button("", icon=":material/close:", key=f"remove.{outcome.cid}", help="Remove this column",
                     on_click=state.remove_column, args=(outcome.cid,))


def _sanitise(k: str, options: list, fallback) -> None:
    if st.session_state.get(k) not in options:
        st.session_state[k] = fallback if fallback in options else options[0]


def column_config(cid: int, codecs: dict[str, dict[str, Any]]) -> tuple[PipelineConfig | None, str | None]:
    """The column's widgets; returns its configuration, or a problem to show instead of a result."""
    k = lambda f: state.key(cid, f)  # noqa: E731
    row = st.columns(2)
    paradigm = row[0].selectbox(
        "Paradigm", state.PARADIGMS, key=k("paradigm"),
        format_func=lambda p: "split model" if p == state.MODEL_SPLIT else "full input",
        help="Split model: the edge runs the detector up to the split point and codes the feature tensor. "
             "Full input: the edge codes the image itself and the server runs the whole detector.")
    full = paradigm == state.FULL_INPUT
    models = compute.model_names()
    _sanitise(k("model"), models, models[0])
    model_name = row[1].selectbox("Model", models, key=k("model"))
    problem = None
    try:
        splits = {sp["name"]: sp for sp in compute.split_points(model_name)}
    except Exception as exc:  # the model cannot load here (e.g. weights missing)
        splits, problem = {}, compute.error_message(exc)
    if splits:
        _sanitise(k("split"), list(splits), DEFAULT_SPLIT)
        sp = splits[st.session_state[k("split")]]
        st.selectbox("Split point" + (" (none: full input)" if full else ""), list(splits), key=k("split"),
                     disabled=full, format_func=lambda n: f"{n} · {_shape_text(splits[n])}",
                     help=f"{sp['description']}. Tensor(s) crossing the split, C×H×W, and their number of values "
                          f"({sp['num_values'] * 4 / 1024:,.0f} KiB as float32 here).")

    names = [state.NO_CODEC] + list(codecs)
    _sanitise(k("codec"), names, state.NO_CODEC)
    row = st.columns(2)
    codec_name = row[0].selectbox("Codec", names, key=k("codec"), format_func=lambda n: _codec_option(n, codecs, full))
    split_name = None if full or not splits else st.session_state.get(k("split"))
    wrappers = compute.wrappers_with_weights(model_name, split_name)
    wanted = st.session_state.get(k("wrapper"))
    if wanted not in wrappers and wanted not in (None, "none") and not full:
        st.session_state[k("wrapper")] = "none"
        st.warning(f"Wrapper {wanted} has no bundled weights for {model_name} at {split_name}: "
                   f"this split offers {', '.join(wrappers)}.")
    _sanitise(k("wrapper"), wrappers, "none")
    wrapper_name = row[1].selectbox(
        "Wrapper", wrappers, key=k("wrapper"), disabled=full,
        help="A pre-network on the edge that makes features cheaper to code, and its post-network on "
             "the server. Split model only; only wrappers with bundled weights for this split are listed.")
    no_rdo = full or wrapper_name in (None, "none")
    if no_rdo:
        st.session_state[k("rdo")] = "sse"
    _sanitise(k("rdo"), list(RDO_MODES), "sse")
    st.selectbox("RDO", list(RDO_MODES), key=k("rdo"), disabled=no_rdo, format_func=RDO_LABELS.get,
                 help="How the codec spends bits across channels. sse: plain codec RDO (every channel alike). "
                      "wa: wrapper-aware, per-tile gains at packing (any codec). wa-qp: wrapper-aware, per-tile "
                      "QP offsets inside the codec (HEVC only). Needs a wrapper.")
    if codec_name != state.NO_CODEC:
        info = codecs[codec_name]
        if not info["available"]:
            problem = problem or f"Codec {codec_name} is not available on this server: {info['reason']}"
        elif full and not info["supports_images"]:
            problem = problem or f"Codec {codec_name} codes feature frames only; pick another codec for full input."
        quality_slider(cid, codec_name, info)
    else:
        st.caption("No coding: the features (or the image) cross as raw values (float32 features, 24-bit RGB).")
    if problem or not splits:
        return None, problem
    return state.build_config(state.column_values(cid)), None


def _shape_text(sp: dict[str, Any]) -> str:
    shapes = " + ".join("×".join(map(str, shape)) for shape in sp["tensors"].values())
    return f"{shapes} ({sp['num_values']:,} values)"


def _codec_option(name: str, codecs: dict[str, dict[str, Any]], full: bool) -> str:
    if name == state.NO_CODEC:
        return "none (uncompressed)"
    info = codecs[name]
    if not info["available"]:
        return f"{name} (unavailable: {info['reason']})"
    if full and not info["supports_images"]:
        return f"{name} (features only)"
    return name


def quality_slider(cid: int, codec_name: str, info: dict[str, Any]) -> None:
    """The codec's own quality scale: a slider over its range (integer scales), or a slider over
    geometric steps for wide real-valued ones (e.g. a target bpp from 0.01 to 24)."""
    lo, hi = (float(v) for v in info["quality_range"])
    default = float(info["default_quality"])
    kq = state.quality_key(cid, codec_name)
    more = "higher" if info["higher_is_better"] else "lower"
    label = f"{info.get('quality_meaning') or 'quality'} ({more} = more bits)"
    help_text = (f"{codec_name}: {lo:g} to {hi:g}, default {default:g}. A {more} value spends more bits and "
                 "keeps the features closer to the original.")
    value = min(max(float(st.session_state.get(kq, default)), lo), hi)
    if lo.is_integer() and hi.is_integer() and default.is_integer():
        st.session_state[kq] = int(round(value))
        st.slider(label, int(lo), int(hi), step=1, key=kq, help=help_text)
        return
    options = quality_steps(info)
    st.session_state[kq] = min(options, key=lambda o: abs(np.log(o / value)) if lo > 0 else abs(o - value))
    st.select_slider(label, options, key=kq, help=help_text, format_func=lambda v: f"{v:g}")


def quality_steps(info: dict[str, Any], n: int = 61) -> list[float]:
    """Slider stops of a real-valued quality scale: geometric when the range is wide, with the
    default and the RD sweep's qualities included so a chart pick lands exactly on a stop."""
    lo, hi = (float(v) for v in info["quality_range"])
    grid = np.geomspace(lo, hi, n) if lo > 0 and hi / lo > 100 else np.linspace(lo, hi, n)
    stops = {float(f"{v:.3g}") for v in grid} | {float(info["default_quality"])} | set(compute.sweep_qualities(info))
    return sorted(q for q in stops if lo <= q <= hi)


def column_result(outcome: ColumnOutcome, shown: inputs.LoadedImage, threshold: float) -> None:
    config = outcome.config
    entry, image = shown.entry, shown.image
    try:
        with st.spinner("Running…"):
            outcome.reference = compute.reference(entry.sha, image, config.model)
            outcome.result = compute.result(entry.sha, image, config)
    except Exception as exc:  # a codec failing, a bad weights file: this column only
        outcome.problem = compute.error_message(exc)
        return
    res, ref = outcome.result, outcome.reference
    outcome.match = match_detections(res.detections, ref.detections, score_threshold=threshold)
    m = outcome.match
    rgb = res.decoded_image if res.decoded_image is not None else np.asarray(image)
    picture = draw.detections_image(rgb, [d for d, _, _ in m.matched], m.false, m.missed)
    st.image(picture, caption=config.label() + (f", quality {res.quality:g}" if res.quality is not None else ""),
             width="stretch")
    counts = m.counts
    st.markdown(
        f"vs uncompressed: **{counts['matched']} matched** · **{counts['missed']} missed** · **{counts['false']} false**")
    labels = ", ".join(f"{d.label} {d.score:.2f}" for d in res.shown(threshold)) or "nothing above the threshold"
    st.caption(f"Detections: {labels}")
    st.markdown(cost_text(res))
    st.caption(timing_text(res))


def cost_text(res: PipelineResult) -> str:
    kbytes = res.bits / 8 / 1024
    text = f"**{res.bits:,} bits** ({kbytes:,.1f} KiB) · **{res.bpp:.4f} bpp**"
    raw = res.raw_feature_bits
    if raw:
        text += f" · **{raw / max(res.bits, 1):,.1f}×** smaller than float32 features"
    else:
        w, h = res.image_size
        text += f" · **{w * h * 24 / max(res.bits, 1):,.1f}×** smaller than raw 24-bit RGB"
    if res.header_bytes:
        text += f" (side info {res.header_bytes} B)"
    if res.bits_estimated is not None:
        text += f" · estimated {float(res.bits_estimated):,.0f} bits (from likelihoods)"
    macs = res.extra.get("edge_macs")
    if macs is not None:
        text += f" · {macs_text(macs)} on the edge"
    return text


def macs_text(macs: float) -> str:
    macs = float(macs)
    if macs >= 1e9:
        return f"{macs / 1e9:,.2f} G MACs"
    if macs >= 1e6:
        return f"{macs / 1e6:,.0f} M MACs"
    return f"{macs:,.0f} MACs"


def timing_text(res: PipelineResult) -> str:
    """Per-stage times grouped by side, e.g. 'edge 52 ms (head 40, encode 12) → server 45 ms (...)'."""
    t = res.timings_ms
    parts = []
    for side, stages in (("edge", EDGE_STAGES), ("server", SERVER_STAGES)):
        present = [s for s in stages if s in t]
        if present:
            detail = ", ".join(f"{s.replace('_', '-')} {t[s]:.0f}" for s in present)
            parts.append(f"{side} {sum(t[s] for s in present):.0f} ms ({detail})")
    total = t.get("total")
    text = " → ".join(parts) + (f"; total {total:.0f} ms" if total is not None else "")
    if "head" in t:
        text += ". The head ran once for this image and split (cached)."
    return text


# -- feature maps ---------------------------------------------------------------------------
def feature_maps(outcomes: list[ColumnOutcome], shown: inputs.LoadedImage | None) -> None:
    ready = [o for o in outcomes if o.result is not None]
    if not ready:
        st.info("No column has a result yet.")
        return
    letters = [o.letter for o in ready]
    _sanitise("fm.column", letters, letters[0])
    top = st.columns([1, 1, 2])
    letter = top[0].selectbox("Column", letters, key="fm.column",
                              format_func=lambda l: f"{l}: {ready[letters.index(l)].config.label()}")
    outcome = ready[letters.index(letter)]
    res = outcome.result
    if res.features is None:
        full_input_maps(res, shown)
        return
    names = list(res.features)
    _sanitise("fm.tensor", names, names[0])
    name = top[1].selectbox("Tensor", names, key="fm.tensor",
                            format_func=lambda n: f"{n} {'×'.join(map(str, res.features[n].shape[1:]))}")
    original = res.features[name][0].float().numpy()
    decoded = res.decoded_features[name][0].float().numpy() if res.decoded_features else original
    if decoded.shape != original.shape:
        st.warning(f"The decoded tensor is {decoded.shape}, the original {original.shape}: no error map.")
        return
    error = np.abs(decoded - original)
    c = original.shape[0]
    lo, hi = float(original.min()), float(original.max())
    emax = float(error.max()) or 1.0
    mse = (error.astype(np.float64) ** 2).mean(axis=(1, 2))
    with top[2]:
        st.caption(f"Values from {lo:.3g} to {hi:.3g}; mean squared error {float(mse.mean()):.3g}, "
                   f"largest error {float(error.max()):.3g}. Channels are tiled row by row, as the codec packs them.")
    grid = st.columns(3)
    grid[0].image(draw.upscale(draw.colourise(draw.channel_grid(original), lo, hi)), caption="original (edge, before coding)",
                  width="stretch")
    grid[1].image(draw.upscale(draw.colourise(draw.channel_grid(decoded), lo, hi)), caption="decoded (what the tail received)",
                  width="stretch")
    grid[2].image(draw.upscale(draw.colourise(draw.channel_grid(error), 0.0, emax, "magma")),
                  caption=f"|error| heat map (0 to {emax:.3g})", width="stretch")

    st.markdown("##### One channel")
    worst = int(np.argmax(mse))
    st.session_state.setdefault("fm.channel", worst)
    if st.session_state["fm.channel"] >= c:
        st.session_state["fm.channel"] = worst
    pick = st.columns([1, 3])
    channel = pick[0].number_input(f"Channel (0–{c - 1})", 0, c - 1, step=1, key="fm.channel",
                                   help=f"Channel {worst} has the largest error.")
    bits = _channel_bits(res, name, c)
    pick[0].caption(f"channel {channel}: MSE {mse[channel]:.3g}, range {original[channel].min():.3g} to "
                    f"{original[channel].max():.3g}" + (f", {bits[channel]:,.0f} bits" if bits is not None else ""))
    with pick[1]:
        st.altair_chart(channel_chart(mse, bits, channel), width="stretch", key="fm.chart",
                        on_select=_on_channel_select, selection_mode="channel")
    one = st.columns(3)
    one[0].image(draw.upscale(draw.colourise(original[channel], lo, hi), 240), caption=f"original, channel {channel}")
    one[1].image(draw.upscale(draw.colourise(decoded[channel], lo, hi), 240), caption=f"decoded, channel {channel}")
    one[2].image(draw.upscale(draw.colourise(error[channel], 0.0, emax, "magma"), 240), caption=f"|error|, channel {channel}")

    if res.frames and name in res.frames:
        depth = res.extra.get("bit_depth")
        st.markdown("##### The packed frame the codec saw")
        st.caption(f"{res.frames[name].shape[1]}×{res.frames[name].shape[0]} samples, {depth}-bit, "
                   f"{res.config.quant} min-max quantisation; grey level = sample value.")
        fr = st.columns(2)
        fr[0].image(draw.upscale(draw.frame_image(res.frames[name], depth), 360), caption="frame given to the encoder",
                    width="stretch")
        if res.decoded_frames and name in res.decoded_frames:
            fr[1].image(draw.upscale(draw.frame_image(res.decoded_frames[name], depth), 360),
                        caption="frame out of the decoder", width="stretch")


def _channel_bits(res: PipelineResult, name: str, channels: int) -> np.ndarray | None:
    """Per-channel bits when the result provides them (``extra['bits_per_channel']``)."""
    raw = res.extra.get("bits_per_channel")
    if isinstance(raw, dict):
        raw = raw.get(name)
    if raw is None:
        return None
    arr = np.asarray(raw, dtype=np.float64).reshape(-1)
    return arr if arr.size == channels else None


def channel_chart(mse: np.ndarray, bits: np.ndarray | None, picked: int):
    import altair as alt
    import pandas as pd

    df = pd.DataFrame({"channel": np.arange(len(mse)), "mse": mse})
    tooltip = [alt.Tooltip("channel:Q"), alt.Tooltip("mse:Q", title="MSE", format=".3g")]
    if bits is not None:
        df["bits"] = bits
        tooltip.append(alt.Tooltip("bits:Q", format=",.0f"))
    select = alt.selection_point(name="channel", fields=["channel"], on="click")
    bars = alt.Chart(df).mark_bar().encode(
        x=alt.X("channel:O", axis=alt.Axis(labels=len(mse) <= 64, ticks=False, title="channel")),
        y=alt.Y("mse:Q", title="MSE after decoding"),
        color=alt.condition(alt.datum.channel == picked, alt.value("#d62728"), alt.value("#4c78a8")),
        tooltip=tooltip,
    ).add_params(select).properties(height=160)
    if bits is None:
        return bars
    line = alt.Chart(df).mark_line(color="#ff7f0e").encode(
        x="channel:O", y=alt.Y("bits:Q", title="bits (orange)"), tooltip=tooltip)
    return alt.layer(bars, line).resolve_scale(y="independent")


def _on_channel_select() -> None:
    picked = st.session_state.get("fm.chart")
    points = (picked or {}).get("selection", {}).get("channel") or []
    if points and "channel" in points[0]:
        st.session_state["fm.channel"] = int(points[0]["channel"])


def full_input_maps(res: PipelineResult, shown: inputs.LoadedImage) -> None:
    if res.decoded_image is None:
        st.info("Full input, uncompressed: the detector saw the original image; there is no feature tensor.")
        return
    st.caption("Full input: the image itself was coded; there is no feature tensor. "
               "The decoded image the detector saw, and its error.")
    original = np.asarray(shown.image, dtype=np.float64)
    error = np.abs(res.decoded_image.astype(np.float64) - original).mean(axis=2)
    cols = st.columns(2)
    cols[0].image(res.decoded_image, caption="decoded image (what the detector saw)", width="stretch")
    cols[1].image(draw.colourise(error, 0.0, float(error.max()) or 1.0, "magma"),
                  caption=f"|error| heat map, mean over RGB (0 to {float(error.max()):.0f})", width="stretch")


# -- bit allocation -------------------------------------------------------------------------
def bit_allocation(outcomes: list[ColumnOutcome], shown: inputs.LoadedImage | None) -> None:
    st.caption("**Wrapper-aware RDO (WA-RDO).** A plain codec spends bits to minimise the squared error of the "
               "coded channels, all alike (sse). But after the wrapper's post-network some channels matter far "
               "more to the detector than others. WA-RDO weights each coded channel by its importance: `wa` scales "
               "the channel tiles before packing (any codec), `wa-qp` gives each tile its own HEVC QP offset. "
               "Important channels get more bits and less error, unimportant ones fewer.")
    usable = [o for o in outcomes if o.config is not None and o.config.wrapper not in (None, "", "none")
              and o.config.codec is not None]
    if shown is None or not usable:
        st.info("Bit allocation needs a column with a wrapper (truncate, pca or learned) and a codec: "
                "the importance weights come from the wrapper. Pick one in a column above.")
        return
    letters = [o.letter for o in usable]
    _sanitise("ba.column", letters, letters[0])
    letter = st.selectbox("Column", letters, key="ba.column",
                          format_func=lambda l: f"{l}: {usable[letters.index(l)].config.label()}")
    o = usable[letters.index(letter)]
    config = dataclasses.replace(o.config, quality=o.result.quality if o.result is not None else o.config.quality)
    wa = compute.wa_mode(config)
    try:
        with st.spinner(f"Measuring bits per channel (sse and {wa}: one extra encode per channel)…"):
            alloc = compute.bit_allocation(shown.entry.sha, shown.image, config)
    except Exception as exc:
        st.error(compute.error_message(exc))
        return
    runs, weights = alloc["runs"], alloc["weights"]
    rows, err_rows = [], []
    for mode, res in runs.items():
        bpc = res.extra.get("bits_per_channel") or {}
        for tensor, bits in bpc.items():
            w = weights.get(tensor)
            for ch, b in enumerate(bits):
                rows.append({"tensor": tensor, "channel": ch, "rdo": mode, "bits": float(b),
                             "weight": float(w[ch]) if w is not None and ch < len(w) else None})
        for tensor, orig in (res.features or {}).items():
            dec = (res.decoded_features or {}).get(tensor)
            if dec is None or dec.shape != orig.shape:
                continue
            mse = ((dec[0].float() - orig[0].float()) ** 2).mean(dim=(1, 2)).double().numpy()
            err_rows += [{"tensor": tensor, "channel": ch, "rdo": mode, "mse": float(v)} for ch, v in enumerate(mse)]
    summary = " · ".join(f"**{m}**: {r.bits:,} bits, {len(r.shown(DISPLAY_SCORE_THRESHOLD))} detections"
                         for m, r in runs.items())
    st.markdown(summary)
    if not rows:
        st.info("This codec reports no bits per channel (it does not pack channels into tiles).")
        return
    st.altair_chart(bit_allocation_chart(rows), width="stretch", key="ba.chart")
    if err_rows:
        st.caption("Per-channel squared error of the tensor the tail receives (after the post-wrapper), sse vs WA.")
        st.altair_chart(error_chart(err_rows), width="stretch", key="ba.error")


def bit_allocation_chart(rows: list[dict[str, Any]]):
    """Importance weight per coded channel (top) over bits per channel for SSE and WA side by side."""
    import altair as alt
    import pandas as pd

    df = pd.DataFrame(rows)
    x = alt.X("channel:O", axis=alt.Axis(labels=df["channel"].nunique() <= 64, ticks=False))
    wdf = df.drop_duplicates(["tensor", "channel"])
    weight = alt.Chart(wdf).mark_bar(color="#54a24b").encode(
        x=x, y=alt.Y("weight:Q", title="importance weight"),
        tooltip=["tensor:N", "channel:Q", alt.Tooltip("weight:Q", format=".3g")]).properties(height=120)
    bits = alt.Chart(df).mark_bar().encode(
        x=x, xOffset="rdo:N", y=alt.Y("bits:Q", title="bits per channel"), color=alt.Color("rdo:N", title="RDO"),
        tooltip=["tensor:N", "channel:Q", "rdo:N", alt.Tooltip("bits:Q", format=",.0f"),
                 alt.Tooltip("weight:Q", format=".3g")]).properties(height=200)
    return alt.vconcat(weight, bits)


def error_chart(rows: list[dict[str, Any]]):
    import altair as alt
    import pandas as pd

    df = pd.DataFrame(rows)
    return alt.Chart(df).mark_line().encode(
        x=alt.X("channel:Q"), y=alt.Y("mse:Q", title="MSE after decoding", scale=alt.Scale(type="symlog")),
        color=alt.Color("rdo:N", title="RDO"),
        tooltip=["tensor:N", "channel:Q", "rdo:N", alt.Tooltip("mse:Q", format=".3g")]).properties(height=160)


# -- rate-accuracy curves -------------------------------------------------------------------
METRICS_SAMPLES = {"f1": "agreement F1 with the uncompressed run", "mAP_vs_ref": "mAP vs uncompressed detections"}
METRICS_ANNOTATED = {"mAP": "mAP@[.5:.95] (COCO annotations)", "mAP50": "mAP@.5 (COCO annotations)",
                     "mAP_vs_ref": "mAP vs uncompressed detections", "f1": "agreement F1 with the uncompressed run"}
SAMPLES_SOURCE = "the images in the sidebar"


@dataclass
class Curve:
    key: tuple  # configuration without quality
    config: PipelineConfig
    columns: list[ColumnOutcome]
    doc: dict[str, Any] | None = None
    problem: str | None = None


def _curves_for(outcomes: list[ColumnOutcome]) -> list[Curve]:
    curves: dict[tuple, Curve] = {}
    for o in outcomes:
        if o.config is None or o.config.codec is None or o.problem:
            continue
        base = o.config.with_quality(None)
        k = compute.config_key(base)
        curves.setdefault(k, Curve(k, base, [])).columns.append(o)
    return list(curves.values())


def _with_f1(curve: dict[str, Any]) -> dict[str, Any]:
    """The curve with ``results['f1']`` from its points' agreement (and 1.0 for the reference)."""
    out = dict(curve, results=dict(curve["results"]))
    out["results"]["f1"] = [(p.get("agreement") or {}).get("f1") for p in curve.get("points", [])]
    if curve.get("reference"):
        out["reference"] = dict(curve["reference"], f1=1.0)
    return out


def rd_section(images: list[inputs.LoadedImage], outcomes: list[ColumnOutcome]) -> dict[str, Any] | None:
    st.caption("Each configured column (codec, split, wrapper) swept over its codec's quality range. "
               "Hover a point for its numbers; **click a point to use that quality** in the column. "
               "Large rings are the columns' current operating points.")
    datasets = compute.dataset_choices()
    sources = [SAMPLES_SOURCE] + list(datasets)
    _sanitise("rd.source", sources, SAMPLES_SOURCE)
    controls = st.columns([2, 2, 1, 1, 1], vertical_alignment="bottom")
    source = controls[0].selectbox("Measured on", sources, key="rd.source",
                                   format_func=lambda s: s if s == SAMPLES_SOURCE else f"dataset {s} (server)")
    on_dataset = source != SAMPLES_SOURCE
    limit = None
    if on_dataset:
        limit = controls[2].selectbox("Images", [8, 16, 32, 96], key="rd.limit", index=1)
    curves = _curves_for(outcomes)
    if not curves:
        st.info("No column uses a codec: nothing to sweep.")
        return None
    if not on_dataset and not images:
        st.info("No usable image to sweep.")
        return None
    if on_dataset:
        requested = st.session_state.get("rd.requested")
        if controls[3].button(f"Sweep {source}", icon=":material/play_arrow:", key="rd.run"):
            requested = st.session_state["rd.requested"] = (source, limit)
        if requested != (source, limit):
            st.info(f"Sweeping {source} runs every configuration at {compute.SWEEP_POINTS} qualities across its "
                    f"codec's range (plus the default) on {limit} images, and measures each column's current "
                    "quality too; results are cached. Press the button to start.")
            return None

    codecs = compute.codec_table()
    annotated = False
    for curve in curves:
        qualities = compute.sweep_qualities(codecs[curve.config.codec])
        try:
            if on_dataset:
                curve.doc = compute.sweep_dataset(source, int(limit), curve.key, qualities, curve.config)
            else:
                items = [(im.entry.sha, im.entry.name, im.entry.data,
                          str(inputs.sample_files()[im.entry.name]) if im.entry.source == "sample" else None)
                         for im in images]
                curve.doc = compute.sweep_images(tuple(im.entry.sha for im in images), curve.key, qualities,
                                                 items, curve.config)
            annotated = annotated or curve.doc.get("ground_truth") == "annotations"
        except Exception as exc:
            curve.problem = compute.error_message(exc)
    for curve in curves:
        if curve.problem:
            st.error(f"{curve.config.label()}: {curve.problem}")
    done = [c for c in curves if c.doc is not None]
    if not done:
        return None
    metrics = METRICS_ANNOTATED if annotated else METRICS_SAMPLES
    _sanitise("rd.metric", list(metrics), list(metrics)[0])
    metric = controls[1].selectbox("Accuracy axis", list(metrics), key="rd.metric", format_func=metrics.get)
    shared = [c for c in done if len(c.columns) > 1]
    if shared:
        letters = {o.cid: o.letter for c in shared for o in c.columns}
        _sanitise("rd.target", list(letters), next(iter(letters)))
        controls[4].selectbox("A click sets column", list(letters), key="rd.target", format_func=letters.get,
                              help="Columns that differ only in quality share a curve: this one takes the clicked quality.")
    curve_docs = [_with_f1(c.doc["curves"][0]) for c in done]
    ops = operating_points(done, images, metric, (source, int(limit)) if on_dataset else None)
    left, right = st.columns([3, 2])
    with left:
        try:
            chart = rd_chart_with_picks(curve_docs, ops, metric)
            st.altair_chart(chart, key="rd.chart", on_select=_on_rd_select, selection_mode="pick", width="stretch")
        except Exception as exc:
            st.error(compute.error_message(exc))
    with right:
        bd_section(curve_docs, metric)
        if metric in ("f1", "mAP_vs_ref") and any(c.config.wrapper not in (None, "", "none") for c in done):
            st.caption("Curves with a wrapper are scored against that wrapper's own uncoded run (the sweep's "
                       "reference: same split and wrapper, no codec), so the wrapper's own loss is not in them; "
                       "the columns above compare with the uncut detector. For a like-for-like BD-rate across "
                       "wrappers, sweep an annotated dataset and use COCO mAP.")
        dropped = sum(len(c.doc.get("skipped", [])) for c in done)
        if dropped:
            st.warning(f"{dropped} image(s) could not be read and were left out of the sweep.")
    st.session_state["rd.curve_columns"] = {c.doc["curves"][0]["name"]: [o.cid for o in c.columns] for c in done}
    return {"curves": curve_docs, "metric": metric, "operating_points": ops,
            "source": source if on_dataset else [im.entry.name for im in images]}


def operating_points(curves: list[Curve], images: list[inputs.LoadedImage], metric: str,
                     dataset: tuple[str, int] | None) -> list[dict[str, Any]]:
    """Each column's current (bpp, accuracy), measured on the same images as its curve: on a
    dataset, a one-quality sweep (cached); on the sidebar's images, the columns' own cached
    results plus fcmcore's metrics against the same reference as the sweep's."""
    from fcmcore.evaluate.metrics import agreement, map_vs_reference
    from fcmcore.evaluate.sweep import reference_config, resolve_config

    ops = []
    for curve in curves:
        name = curve.doc["curves"][0]["name"]
        for o in curve.columns:
            quality = o.result.quality if o.result is not None else None
            if quality is None:
                continue
            try:
                if dataset is not None:
                    doc = compute.sweep_dataset(dataset[0], dataset[1], curve.key, (float(quality),), curve.config)
                    p = doc["curves"][0]["points"][0]
                    point = {"bpp": p["bpp"], "mAP": p.get("mAP"), "mAP50": p.get("mAP50"),
                             "mAP_vs_ref": p.get("mAP_vs_ref"), "f1": (p.get("agreement") or {}).get("f1")}
                else:
                    resolved, _ = resolve_config(o.config)
                    ref_cfg, _ = resolve_config(reference_config(resolved.with_quality(None)))
                    dets, refs, bpps = {}, {}, []
                    for i, im in enumerate(images, start=1):
                        r = compute.result(im.entry.sha, im.image, o.config)
                        dets[i] = r.detections
                        refs[i] = compute.result(im.entry.sha, im.image, ref_cfg).detections
                        bpps.append(r.bpp)
                    point = {"bpp": sum(bpps) / len(bpps), "f1": agreement(dets, refs)["f1"]}
                    if metric == "mAP_vs_ref":
                        point["mAP_vs_ref"] = map_vs_reference(dets, refs).mAP
            except Exception as exc:  # the column shows its own error; say why the ring is absent
                st.caption(f"Column {o.letter}: no operating point ({compute.error_message(exc)})")
                continue
            if point.get(metric) is not None:
                ops.append({"column": o.letter, "cid": o.cid, "curve": name, "quality": quality,
                            "bpp": point["bpp"], "value": float(point[metric]) * 100})
    return ops


def rd_chart_with_picks(curve_docs: list[dict[str, Any]], ops: list[dict[str, Any]], metric: str):
    """fcmcore's RD chart, plus a clickable point layer and the columns' operating points."""
    import altair as alt
    import pandas as pd

    from fcmcore.evaluate.charts import METRIC_TITLES, curves_frame, rd_chart

    title = METRICS_ANNOTATED.get(metric, METRIC_TITLES.get(metric, metric))
    base = rd_chart(curve_docs, metric, width=520, height=340)
    df = curves_frame(curve_docs, metric)
    x = alt.X("bpp:Q", scale=alt.Scale(type="log"))
    y = alt.Y("value:Q")
    color = alt.Color("curve:N")
    select = alt.selection_point(name="pick", fields=["curve", "quality"], on="click")
    clickable = alt.Chart(df).mark_point(filled=True, size=90, opacity=0.85, cursor="pointer").encode(
        x=x, y=y, color=color,
        tooltip=[alt.Tooltip("curve:N"), alt.Tooltip("quality:Q"), alt.Tooltip("bpp:Q", format=".4f"),
                 alt.Tooltip("value:Q", title=f"{title} ×100", format=".1f")],
    ).add_params(select)
    layers = [base, clickable]
    if ops:
        odf = pd.DataFrame(ops)
        rings = alt.Chart(odf).mark_point(size=420, strokeWidth=3, filled=False, color="black").encode(
            x=x, y=y, tooltip=[alt.Tooltip("column:N", title="column"), alt.Tooltip("curve:N"),
                               alt.Tooltip("quality:Q"), alt.Tooltip("bpp:Q", format=".4f"),
                               alt.Tooltip("value:Q", title=f"{title} ×100", format=".1f")])
        labels = alt.Chart(odf).mark_text(dx=14, dy=-12, fontWeight="bold", fontSize=14).encode(x=x, y=y, text="column:N")
        layers += [rings, labels]
    return alt.layer(*layers)


def _on_rd_select() -> None:
    """Chart click -> a pending quality for the column using that curve (applied before widgets)."""
    picked = st.session_state.get("rd.chart")
    points = (picked or {}).get("selection", {}).get("pick") or []
    if not points:
        return
    point = points[0]
    cids = st.session_state.get("rd.curve_columns", {}).get(point.get("curve"), [])
    target = st.session_state.get("rd.target")
    cid = target if target in cids else (cids[0] if cids else None)
    if cid is not None and point.get("quality") is not None:
        state.request_quality(cid, point["quality"])


def bd_section(curve_docs: list[dict[str, Any]], metric: str) -> None:
    import pandas as pd

    from fcmcore.evaluate.bdrate import bd_table

    st.markdown("##### BD-rate")
    if len(curve_docs) < 2:
        st.caption("Give a column another codec, split point or wrapper to get BD-rate figures "
                   "(columns that differ only in quality share one curve).")
        return
    names = [c["name"] for c in curve_docs]
    _sanitise("rd.anchor", names, names[0])
    anchor = st.selectbox("Anchor", names, key="rd.anchor")
    try:
        rows, notes = bd_table(curve_docs, anchor, metric)
    except Exception as exc:
        st.error(compute.error_message(exc))
        return
    df = pd.DataFrame([{"curve": r.name, "BD-rate %": r.bd_rate, f"BD-{metric} (points)": r.bd_map} for r in rows])
    st.dataframe(df, hide_index=True, width="stretch")
    st.caption("Negative BD-rate: fewer bits than the anchor for the same accuracy.")
    for note in notes:
        st.caption(note)


# -- export ---------------------------------------------------------------------------------
def export_section(outcomes: list[ColumnOutcome], shown: inputs.LoadedImage | None, rd_doc: dict[str, Any] | None) -> None:
    import json

    from . import export

    ready = [o for o in outcomes if o.result is not None]
    st.markdown("##### Reproduce a column on the command line")
    for o in outcomes:
        if o.config is None or shown is None:
            continue
        st.caption(f"Column {o.letter}")
        st.code(export.cli_command(o.config, shown.entry, o.result), language="bash")
    if not ready:
        return
    st.markdown("##### Download")
    cols = st.columns(3)
    rows = export.column_records(ready, shown)
    cols[0].download_button("Columns (JSON)", json.dumps(rows, indent=1), "fcm_columns.json", "application/json",
                            key="dl.columns.json", icon=":material/download:")
    cols[1].download_button("Columns (CSV)", export.columns_csv(rows), "fcm_columns.csv", "text/csv",
                            key="dl.columns.csv", icon=":material/download:")
    if rd_doc:
        cols[2].download_button("RD curves (CompressAI JSON)", json.dumps(export.compressai_curves(rd_doc), indent=1),
                                "fcm_rd_curves.json", "application/json", key="dl.rd.json", icon=":material/download:")
        cols[2].download_button("RD curves (CSV)", export.curves_csv(rd_doc), "fcm_rd_curves.csv", "text/csv",
                                key="dl.rd.csv", icon=":material/download:")
    else:
        cols[2].caption("RD curves: compute them in the rate–accuracy tab first.")
