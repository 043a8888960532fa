"""The feature-maps tab: one column's tensor before and after coding, its error, one channel,
and the packed frame the codec saw. Every colour map has its colour bar."""

from __future__ import annotations

import numpy as np
import streamlit as st

from fcmcore.inspect import channel_errors
from fcmcore.pipeline import PipelineResult

from . import charts, draw, inputs, keys
from .columns import ColumnOutcome, _sanitise


def _with_bar(where, rgb: np.ndarray, lo: float, hi: float, cmap: str, caption: str) -> None:
    where.image(rgb, caption=caption, width="stretch")
    where.image(draw.colour_bar(lo, hi, cmap), width="stretch")


def feature_maps(outcomes: list[ColumnOutcome], shown: inputs.LoadedImage | None) -> None:
    ready = [o for o in outcomes if o.result is not None]
    if not ready:
        st.info("No column has a result yet.")
        return
    letters = [o.letter for o in ready]
    _sanitise(keys.FM_COLUMN, letters, letters[0])
    top = st.columns([1, 1, 2])
    letter = top[0].selectbox("Column", letters, key=keys.FM_COLUMN,
                              format_func=lambda l: f"{l}: {ready[letters.index(l)].config.label()}")
    res = ready[letters.index(letter)].result
    if res.features is None:
        full_input_maps(res, shown)
        return
    names = list(res.features)
    _sanitise(keys.FM_TENSOR, names, names[0])
    name = top[1].selectbox("Tensor", names, key=keys.FM_TENSOR,
                            format_func=lambda n: f"{n} {'×'.join(map(str, res.features[n].shape[1:]))}")
    original = res.features[name][0].float().numpy()
    decoded = res.decoded_features[name][0].float().numpy() if res.decoded_features else original
    if decoded.shape != original.shape:
        st.warning(f"The decoded tensor is {decoded.shape}, the original {original.shape}: no error map.")
        return
    errs = channel_errors(original, decoded)
    error, mse = errs.abs_error, errs.mse
    c = original.shape[0]
    lo, hi = float(original.min()), float(original.max())
    emax = errs.largest or 1.0
    with top[2]:
        st.caption(f"Values from {lo:.3g} to {hi:.3g}; mean squared error {float(mse.mean()):.3g}, "
                   f"largest error {errs.largest:.3g}. Channels are tiled row by row, as the codec packs them.")
    grid = st.columns(3)
    _with_bar(grid[0], draw.upscale(draw.colourise(draw.channel_grid(original), lo, hi)), lo, hi, "viridis",
              "original (edge, before coding)")
    _with_bar(grid[1], draw.upscale(draw.colourise(draw.channel_grid(decoded), lo, hi)), lo, hi, "viridis",
              "decoded (what the tail received)")
    _with_bar(grid[2], draw.upscale(draw.colourise(draw.channel_grid(error), 0.0, emax, "magma")), 0.0, emax, "magma",
              "|error| heat map")

    st.markdown("##### One channel")
    worst = errs.worst_channel
    st.session_state.setdefault(keys.FM_CHANNEL, worst)
    if st.session_state[keys.FM_CHANNEL] >= c:
        st.session_state[keys.FM_CHANNEL] = worst
    pick = st.columns([1, 3])
    channel = pick[0].number_input(f"Channel (0–{c - 1})", 0, c - 1, step=1, key=keys.FM_CHANNEL,
                                   help=f"Channel {worst} has the largest error.")
    bits = channel_bits(res, name, c)
    pick[0].caption(f"channel {channel}: MSE {mse[channel]:.3g}, range {original[channel].min():.3g} to "
                    f"{original[channel].max():.3g}" + (f", {bits[channel]:,.0f} bits" if bits is not None else ""))
    with pick[1]:
        st.altair_chart(charts.channel_chart(mse, bits, channel), width="stretch", key=keys.FM_CHART,
                        on_select=_on_channel_select, selection_mode="channel")
    one = st.columns(3)
    _with_bar(one[0], draw.upscale(draw.colourise(original[channel], lo, hi), 240), lo, hi, "viridis",
              f"original, channel {channel}")
    _with_bar(one[1], draw.upscale(draw.colourise(decoded[channel], lo, hi), 240), lo, hi, "viridis",
              f"decoded, channel {channel}")
    _with_bar(one[2], draw.upscale(draw.colourise(error[channel], 0.0, emax, "magma"), 240), 0.0, emax, "magma",
              f"|error|, channel {channel}")

    if res.frames and name in res.frames:
        depth = res.extra.get("bit_depth")
        st.markdown("##### The packed frame the codec saw")
        st.caption(f"{res.frames[name].shape[1]}×{res.frames[name].shape[0]} samples, {depth}-bit, "
                   f"{res.config.quant} min-max quantisation; grey level = sample value (0 to {(1 << depth) - 1 if depth else 'max'}).")
        fr = st.columns(2)
        fr[0].image(draw.upscale(draw.frame_image(res.frames[name], depth), 360), caption="frame given to the encoder",
                    width="stretch")
        if res.decoded_frames and name in res.decoded_frames:
            fr[1].image(draw.upscale(draw.frame_image(res.decoded_frames[name], depth), 360),
                        caption="frame out of the decoder", width="stretch")


def channel_bits(res: PipelineResult, name: str, channels: int) -> np.ndarray | None:
    """Per-channel bits when the result provides them (``extra['bits_per_channel']``)."""
    raw = res.extra.get("bits_per_channel")
    if isinstance(raw, dict):
        raw = raw.get(name)
    if raw is None:
        return None
    arr = np.asarray(raw, dtype=np.float64).reshape(-1)
    return arr if arr.size == channels else None


def _on_channel_select() -> None:
    picked = st.session_state.get(keys.FM_CHART)
    points = (picked or {}).get("selection", {}).get("channel") or []
    if points and "channel" in points[0]:
        st.session_state[keys.FM_CHANNEL] = int(points[0]["channel"])


def full_input_maps(res: PipelineResult, shown: inputs.LoadedImage) -> None:
    if res.decoded_image is None:
        st.info("Full input, uncompressed: the detector saw the original image; there is no feature tensor.")
        return
    st.caption("Full input: the image itself was coded; there is no feature tensor. "
               "The decoded image the detector saw, and its error.")
    original = np.asarray(shown.image, dtype=np.float64)
    error = np.abs(res.decoded_image.astype(np.float64) - original).mean(axis=2)
    top = float(error.max()) or 1.0
    cols = st.columns(2)
    cols[0].image(res.decoded_image, caption="decoded image (what the detector saw)", width="stretch")
    _with_bar(cols[1], draw.colourise(error, 0.0, top, "magma"), 0.0, top, "magma",
              "|error| heat map, mean over RGB (0–255 scale)")
