"""The bit-allocation tab: how wrapper-aware RDO moves bits towards the channels the detector
needs, measured (leave-one-out bits per channel tile, real encodes), sse vs WA."""

from __future__ import annotations

import dataclasses

import streamlit as st

from fcmcore.inspect import channel_errors
from fcmcore.pipeline import DISPLAY_SCORE_THRESHOLD

from . import charts, compute, fmt, inputs, keys
from .columns import ColumnOutcome, _sanitise

EXPLAIN = (
    "**Wrapper-aware RDO (WA-RDO).** A plain codec spends bits to minimise the squared error of the coded "
    "channels, all alike (sse). After the wrapper's post-network some channels matter far more to the detector "
    "than others. WA-RDO weights each channel by its importance: `wa` scales the channel tiles before packing "
    "(any codec), `wa-qp` gives each tile its own HEVC QP offset. Important channels get more bits and less "
    "error, unimportant ones fewer. With **spatial** importance (or **both**: per coded sample) `wa-qp` gives "
    "every 8x8 block of the packed frame its own offset, -3·log2(weight); `sse-qp` is the same encoder with "
    "all offsets 0, the fair anchor. Padding tiles to the 8-grid keeps every block inside one channel.")
SOURCES = {"wrapper": "wrapper file's choice", "fixed": "fixed (saved with the wrapper)",
           "image": "this image (Jacobian at the encoder)"}
# why: the strengths measured in assets/wrappers/results/NOTES.md (step 6) plus a stronger one
STRENGTHS = (0.25, 0.5, 1.0, 2.0)
STRENGTH_HELP = ("WA-RDO strength S (`--wa-strength`): QP offsets -3·S·log2(weight), tile gains weight^(S/2). "
                 "1 is the first-order model; smaller moves fewer bits, larger more.")
HEAT = (
    "**Per block** (8x8 blocks of the packed frame, one tile per channel): the importance weight the encoder "
    "used, the QP offset it turns into (blue = finer), and where the error moved: log2 of WA's squared error "
    "over the anchor's (blue = WA spent more there). Tick *bits per block* for measured leave-one-out bits "
    "(one extra encode per block: seconds).")
BARS = (
    "**Bits per channel** are measured, not estimated: the frame is coded again with that channel's tile "
    "flattened to its mean, and the bar is how many bits the stream shrank. A bar below zero means flattening "
    "the tile made the stream *larger* (the encoder predicts neighbouring tiles from it, and a flat tile "
    "predicts worse): that channel costs about nothing of its own. The bars need not add up to the total.")


def bit_allocation(outcomes: list[ColumnOutcome], shown: inputs.LoadedImage | None) -> None:
    st.caption(EXPLAIN)
    usable = [o for o in outcomes if o.config is not None and o.config.wrapper not in (None, "", "none")
              and o.config.codec is not None and o.problem is None]
    if shown is None or not usable:
        st.info("Bit allocation needs a column with a wrapper (truncate, pca or learned) and a codec: "
                "the importance weights come from the wrapper. Pick one in a column's settings above.")
        return
    letters = [o.letter for o in usable]
    _sanitise(keys.BA_COLUMN, letters, letters[0])
    letter = st.selectbox("Column", letters, key=keys.BA_COLUMN,
                          format_func=lambda l: f"{l}: {usable[letters.index(l)].config.label()}")
    o = usable[letters.index(letter)]
    config = dataclasses.replace(o.config, quality=o.result.quality if o.result is not None else o.config.quality)
    config = _weight_options(config)
    wa = compute.wa_mode(config)
    try:
        with st.spinner(f"Measuring bits per channel (sse and {wa}: one extra encode per channel)…"):
            alloc = compute.bit_allocation(shown.entry.sha, shown.image, config)
    except Exception as exc:
        st.error(fmt.md_escape(compute.error_message(exc)))
        return
    runs, weights = alloc["runs"], alloc["weights"]
    rows, err_rows = [], []
    for mode, res in runs.items():
        for tensor, bits in (res.extra.get("bits_per_channel") or {}).items():
            w = weights.get(tensor)
            for ch, b in enumerate(bits):
                rows.append({"tensor": tensor, "channel": ch, "rdo": mode, "bits": float(b),
                             "weight": float(w[ch]) if w is not None and ch < len(w) else None})
        for tensor, orig in (res.features or {}).items():
            dec = (res.decoded_features or {}).get(tensor)
            if dec is None or dec.shape != orig.shape:
                continue
            mse = channel_errors(orig[0], dec[0]).mse
            err_rows += [{"tensor": tensor, "channel": ch, "rdo": mode, "mse": float(v)} for ch, v in enumerate(mse)]
    st.markdown(" · ".join(f"**{m}**: {r.bits:,} bits, {len(r.shown(DISPLAY_SCORE_THRESHOLD))} detections"
                           for m, r in runs.items()))
    if not rows:
        st.info("This codec reports no bits per channel (it does not pack channels into tiles).")
        return
    st.caption(BARS)
    negative = sum(1 for r in rows if r["bits"] < 0)
    if negative:
        st.caption(f"{negative} of {len(rows)} bars are below zero here.")
    st.altair_chart(charts.bit_allocation_chart(rows), width="stretch", key=keys.BA_CHART)
    if err_rows:
        st.caption("Per-channel squared error of the tensor the tail receives (after the post-wrapper), sse vs WA.")
        st.altair_chart(charts.error_chart(err_rows), width="stretch", key=keys.BA_ERROR)
    _heat_maps(shown, config, alloc.get("blocks") or {}, list(runs))


def _weight_options(config):
    """The tab's own WA-RDO weight options (kind, source, tile padding) for the compared run."""
    a, b, c, d = st.columns(4)
    _sanitise(keys.BA_KIND, ["channel", "spatial", "both"], config.wa_weights)
    _sanitise(keys.BA_SOURCE, ["wrapper", "fixed", "image"], config.wa_source)
    _sanitise(keys.BA_STRENGTH, list(STRENGTHS), config.wa_strength if config.wa_strength in STRENGTHS else 1.0)
    kind = a.selectbox("Importance", ["channel", "spatial", "both"], key=keys.BA_KIND,
                       help="per channel tile, per spatial position (shared by every tile), or per coded sample")
    source = b.selectbox("Weights from", ["wrapper", "fixed", "image"], key=keys.BA_SOURCE,
                         format_func=lambda v: SOURCES.get(v, str(v)))
    strength = c.select_slider("Strength", list(STRENGTHS), key=keys.BA_STRENGTH, format_func=lambda v: f"{v:g}",
                               help=STRENGTH_HELP)
    pad = d.checkbox("Pad tiles to the 8x8 QP grid", key=keys.BA_PAD)
    return dataclasses.replace(config, wa_weights=kind, wa_source=source, tile_pad=8 if pad else 0,
                               wa_strength=float(strength))


def _heat_maps(shown, config, blocks: dict, modes: list[str]) -> None:
    import numpy as np

    if not blocks:
        return
    st.caption(HEAT)
    with_bits = st.checkbox("Measure bits per block (leave-one-out)", key=keys.BA_BLOCKS)
    bits = {}
    if with_bits:
        try:
            with st.spinner("Measuring bits per block (one encode per block and run)…"):
                bits = compute.bits_per_block(shown.entry.sha, shown.image, config)
        except Exception as exc:
            st.error(fmt.md_escape(compute.error_message(exc)))
    anchor, wa = modes[0], modes[-1]
    rows = []
    for tensor, entry in blocks.items():
        panels = {"weight": entry["weight"]}
        if wa == "wa-qp":
            panels[f"QP offset ({wa})"] = entry["qp_offset"]
        err = entry.get("error", {})
        if anchor in err and wa in err:
            panels[f"error change log2({wa}/{anchor})"] = np.log2((err[wa] + 1e-3) / (err[anchor] + 1e-3))
        if tensor in bits and anchor in bits[tensor] and wa in bits[tensor]:
            panels[f"bits per block ({anchor})"] = bits[tensor][anchor]
            panels[f"bits per block ({wa})"] = bits[tensor][wa]
        for panel, arr in panels.items():
            for (y, x), v in np.ndenumerate(np.asarray(arr, dtype=np.float64)):
                rows.append({"tensor": tensor, "panel": panel, "x": int(x), "y": int(y), "value": float(v)})
    if rows:
        st.altair_chart(charts.block_heatmap(rows), key=keys.BA_HEAT)
