"""The compared columns: a header (letter in the column's colour), the settings in a popover,
the picture, and the numbers right under it, so all columns' results fit the first screen.

Each column's body is an ``st.fragment`` keyed per column: changing its settings reruns that
column only. When the open tab shows that column alone (its feature maps or bit allocation,
fragments too), the widget's callback reruns the column and that tab, nothing else; when the
tab shows every column (RD, export), the column asks for one page rerun after its picture is drawn.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st

from fcmcore.evaluate.metrics import MatchResult, match_detections
from fcmcore.pipeline import DEFAULT_CODEC, DEFAULT_SPLIT, RDO_MODES, PipelineConfig, PipelineResult

from . import compute, draw, fmt, inputs, keys, state, trace, url

RDO_LABELS = {"sse": "sse (plain)", "wa": "wa (tile gains)", "wa-qp": "wa-qp (HEVC QP offsets)",
              "sse-qp": "sse-qp (HEVC QP path, zero offsets)"}
IMAGE_MAX_HEIGHT = 300  # CSS px: every column's picture is at most this tall (first screen at 1280x800)
RUN_ID = "_run"  # incremented by every whole-page run (fragment reruns leave it)


@dataclass
class ColumnOutcome:
    """What one column produced this run (a result, or the reason there is none)."""

    cid: int
    letter: str
    colour: str
    config: PipelineConfig | None = None
    result: PipelineResult | None = None
    reference: PipelineResult | None = None
    match: MatchResult | None = None
    problem: str | None = None  # shown in the column
    details: str | None = None  # times per stage and side information, under the quality control


def _sanitise(k: str, options: list, fallback) -> int:
    """Make the session's value of widget ``k`` one of ``options``; returns its index.

    The index is passed to the widget as its default too: a popover's widgets are mounted afresh by the
    browser, and a keyed widget whose default differs from the session's value then showed (and on the
    next change sent back) option 0 — a codec change after a quality change reset the split to Conv."""
    if st.session_state.get(k) not in options:
        st.session_state[k] = fallback if fallback in options else options[0]
    return list(options).index(st.session_state[k])


def comparison(codecs: dict[str, dict[str, Any]], shown: inputs.LoadedImage | None,
               threshold: float) -> list[ColumnOutcome]:
    ids = state.column_ids()
    outcomes = []
    for cid, col in zip(ids, st.columns(len(ids), border=True, gap="small")):
        with col:
            header(cid, removable=len(ids) > state.MIN_COLUMNS)
            outcomes.append(column_fragment(cid)(cid, codecs, shown, threshold, len(ids)))
    return outcomes


def stored_outcomes() -> list[ColumnOutcome]:
    """Every column's last outcome, in column order: what a tab rerunning on its own shows."""
    ss = st.session_state
    return [ss[keys.outcome(cid)] for cid in state.column_ids() if keys.outcome(cid) in ss]


def header(cid: int, removable: bool) -> None:
    left, right = st.columns([5, 1], vertical_alignment="center", gap="small")
    left.markdown(f"<div style='font-weight:700;font-size:1.15rem;color:{state.colour(cid)}'>"
                  f"■ Column {state.letter(cid)}</div>", unsafe_allow_html=True)
    if removable:
        right.button("", icon=":material/close:", key=keys.remove(cid), help=f"Remove column {state.letter(cid)}",
                     on_click=state.remove_column, args=(cid,), type="tertiary")


def _tab_showing(cid: int) -> str | None:
    """The fragment key of the open tab when it shows column ``cid`` alone, "app" when it shows every
    column (RD, export), None when it shows another column."""
    ss = st.session_state
    tab = ss.get(keys.TAB) or url.TABS["maps"]
    letter = state.letter(cid)
    if tab in (url.TABS["rd"], url.TABS["export"]):
        return "app"
    if tab == url.TABS["maps"]:
        return keys.MAPS_FRAGMENT if ss.get(keys.FM_COLUMN, "A") == letter else None
    return keys.BITS_FRAGMENT if ss.get(keys.BA_COLUMN) == letter else None


def on_column_change(cid: int) -> None:
    """Callback of every widget of column ``cid``: rerun the column and the one-column tab showing it.

    Without it the column's fragment would rerun alone and then ask for a whole-page rerun to bring
    the tab up to date, and the page run redraws every column (a quality step took ~1 s, not 0.2)."""
    tab = _tab_showing(cid)
    if tab in (keys.MAPS_FRAGMENT, keys.BITS_FRAGMENT):
        st.session_state[keys.tab_scheduled(cid)] = True
        st.rerun([keys.column_fragment(cid), tab])


_COLUMN_FRAGMENTS: dict[int, Any] = {}


def column_fragment(cid: int):
    """Column ``cid``'s body as an ``st.fragment`` with its own key, so a callback can rerun it alone.

    (One decorated function shared by all columns would share one key: they would rerun together.)"""
    if cid not in _COLUMN_FRAGMENTS:
        def body(cid: int, codecs: dict[str, dict[str, Any]], shown: inputs.LoadedImage | None,
                 threshold: float, n_columns: int) -> ColumnOutcome:
            with trace.span(f"column {state.letter(cid)}") as info:
                return _column_body(cid, codecs, shown, threshold, n_columns, info)

        body.__qualname__ = body.__name__ = f"column_body_{cid}"
        _COLUMN_FRAGMENTS[cid] = st.fragment(body, key=keys.column_fragment(cid))
    return _COLUMN_FRAGMENTS[cid]


def _column_body(cid, codecs, shown, threshold, n_columns, info) -> ColumnOutcome:
    ss = st.session_state
    fragment_rerun = ss.get(f"_col_run.{cid}") == ss.get(RUN_ID)
    ss[f"_col_run.{cid}"] = ss.get(RUN_ID)
    outcome = ColumnOutcome(cid, state.letter(cid), state.colour(cid))
    status = st.empty()  # one short line: "running…" while it computes, then how long it took
    slot = st.empty()  # the picture (or the problem) comes next: at the same height in every column
    label = settings_label(cid, codecs)
    with st.popover(label, width="stretch", key=f"pop.{cid}", wrap=False,
                    help=f"Settings of column {state.letter(cid)}: {label.split(' ', 1)[1]}"):
        outcome.config, outcome.problem = column_settings(cid, codecs)
    if outcome.config is not None and outcome.problem is None and shown is not None:
        column_result(outcome, shown, threshold, n_columns, slot, status)
    elif shown is None:
        slot.info("No usable image: pick a sample or upload one in the sidebar.")
    if outcome.problem:
        status.caption(":material/error: no result")
        slot.error(fmt.md_escape(outcome.problem))
    if outcome.config is not None and outcome.config.codec is not None:
        quality_control(cid, outcome)
    if outcome.details:
        with st.expander("Times per stage", icon=":material/timer:"):
            st.caption(outcome.details)
    drawn = ss.setdefault(keys.DRAWN, {})
    now = compute.config_key(outcome.config) if outcome.config is not None else None
    changed = drawn.get(cid) != now
    drawn[cid] = now
    info.update(fragment=fragment_rerun, changed=changed)
    ss[keys.outcome(cid)] = outcome
    tab_scheduled = ss.pop(keys.tab_scheduled(cid), False)
    if fragment_rerun:
        url.sync()
        tab = _tab_showing(cid)
        if changed and tab is not None and not tab_scheduled:
            st.rerun(scope="app")  # the tab below shows this column (or all): bring it up to date
    return outcome


def settings_label(cid: int, codecs: dict[str, dict[str, Any]]) -> str:
    """The popover's button: what the column runs, in a few words."""
    v = state.column_values(cid)
    codec = v.get("codec") or state.NO_CODEC
    where = "full input" if v.get("paradigm") == state.FULL_INPUT else (v.get("split") or DEFAULT_SPLIT)
    what = "uncompressed" if codec == state.NO_CODEC else codec
    extra = "" if v.get("paradigm") == state.FULL_INPUT or (v.get("wrapper") or "none") == "none" else f" + {v['wrapper']}"
    if extra and (v.get("rdo") or "sse") != "sse":
        extra += f" {v['rdo']}"
    return f":material/tune: {what} @ {where}{extra}"


def valid_codecs(codecs: dict[str, dict[str, Any]], full: bool, model: str, split: str | None) -> tuple[list[str], list[str]]:
    """(codec names offered here, one reason line per hidden codec)."""
    offered, hidden = [state.NO_CODEC], []
    for name, info in codecs.items():
        if not info["available"]:
            hidden.append(f"{name}: not available on this server ({info['reason']})")
        elif full and not info["supports_images"]:
            hidden.append(f"{name}: codes feature tensors only")
        elif not full and info.get("split") and (info.get("split") != split or info.get("model", model) != model):
            hidden.append(f"{name}: trained for {info.get('model', model)} @ {info['split']} only")
        else:
            offered.append(name)
    return offered, hidden


def column_settings(cid: int, codecs: dict[str, dict[str, Any]]) -> tuple[PipelineConfig | None, str | None]:
    """The column's widgets (in its popover); returns its configuration, or a problem."""
    k = lambda f: keys.column(cid, f)  # noqa: E731
    index = _sanitise(k("paradigm"), list(state.PARADIGMS), state.MODEL_SPLIT)
    paradigm = st.segmented_control(
        "Paradigm", state.PARADIGMS, default=state.PARADIGMS[index], key=k("paradigm"), on_change=on_column_change, args=(cid,), required=True, width="stretch",
        format_func=lambda p: "split model" if p == state.MODEL_SPLIT else "full input",
        help="Split model: the edge runs the detector up to the split point and codes the feature tensor. "
             "Full input: the edge codes the image itself and the server runs the whole detector.")
    full = paradigm == state.FULL_INPUT
    models = compute.model_names()
    model_name = st.selectbox("Model", models, index=_sanitise(k("model"), models, models[0]), key=k("model"), on_change=on_column_change, args=(cid,))
    problem = None
    try:
        splits = {sp["name"]: sp for sp in compute.split_points(model_name)}
    except Exception as exc:  # the model cannot load here (e.g. weights missing)
        splits, problem = {}, compute.error_message(exc)
    split_name = None
    if splits and not full:
        index = _sanitise(k("split"), list(splits), DEFAULT_SPLIT)
        sp = splits[st.session_state[k("split")]]
        split_name = st.selectbox(
            "Split point", list(splits), index=index, key=k("split"), on_change=on_column_change, args=(cid,), format_func=lambda n: f"{n} · {_shape_text(splits[n])}",
            help=f"{sp['description']}. Tensor(s) crossing the split, C×H×W, and their number of values "
                 f"({sp['num_values'] * 4 / 1024:,.0f} KiB as float32 here).")
    elif full:
        st.caption("Split point: none. The image is coded and the server runs the whole detector.")

    names, hidden = valid_codecs(codecs, full, model_name, split_name)
    codec_name = st.selectbox("Codec", names, index=_sanitise(k("codec"), names, DEFAULT_CODEC), key=k("codec"), on_change=on_column_change, args=(cid,),
                              format_func=lambda n: "none (uncompressed)" if n == state.NO_CODEC else n)
    if hidden:
        st.caption("Not offered here: " + "; ".join(hidden) + ".")
    if not full:
        wrappers = compute.wrappers_with_weights(model_name, split_name)
        wrapper_name = st.selectbox(
            "Wrapper", wrappers, index=_sanitise(k("wrapper"), wrappers, "none"), key=k("wrapper"), on_change=on_column_change, args=(cid,),
            help="A pre-network on the edge that makes features cheaper to code, and its post-network on "
                 "the server. Only wrappers with bundled weights for this split are listed.")
        if wrappers == ["none"]:
            st.caption(f"No wrapper has bundled weights for {split_name}.")
        if wrapper_name != "none":
            st.selectbox("RDO", list(RDO_MODES), index=_sanitise(k("rdo"), list(RDO_MODES), "sse"), key=k("rdo"), on_change=on_column_change, args=(cid,), format_func=RDO_LABELS.get,
                         help="How the codec spends bits across channels. sse: plain codec RDO (every channel "
                              "alike). wa: wrapper-aware, per-tile gains at packing (any codec). wa-qp: "
                              "wrapper-aware, per-tile QP offsets inside the codec (HEVC only).")
        else:
            st.session_state[k("rdo")] = "sse"
    else:
        st.session_state[k("wrapper")], st.session_state[k("rdo")] = "none", "sse"
    if codec_name == state.NO_CODEC:
        st.caption("No coding: the features (or the image) cross as raw values (float32 features, 24-bit RGB).")
    if problem or not splits:
        return None, problem
    return state.build_config(state.column_values(cid)), None


def _shape_text(sp: dict[str, Any]) -> str:
    shapes = " + ".join("×".join(map(str, shape)) for shape in sp["tensors"].values())
    return f"{shapes} ({sp['num_values']:,} values)"


def column_result(outcome: ColumnOutcome, shown: inputs.LoadedImage, threshold: float, n_columns: int,
                  slot, status) -> None:
    config = outcome.config
    entry, image = shown.entry, shown.image
    status.caption(":material/hourglass_top: running…")  # shown at once; the old picture stays until replaced
    start = time.perf_counter()
    try:
        outcome.reference = compute.reference(entry.sha, image, config.model)
        outcome.result = compute.result(entry.sha, image, config)
    except Exception as exc:  # a codec failing, a bad weights file: this column only
        outcome.problem = compute.error_message(exc)
        return
    res, ref = outcome.result, outcome.reference
    outcome.match = m = match_detections(res.detections, ref.detections, score_threshold=threshold)
    picture = compute.picture(entry.sha, compute.config_key(config), threshold, n_columns, image, res, m)
    quality = f", quality {res.quality:g}" if res.quality is not None else ""
    slot.image(picture, width=max(1, round(IMAGE_MAX_HEIGHT * picture.width / picture.height)))
    status.caption(f":material/check: {(time.perf_counter() - start) * 1000:,.0f} ms")
    counts = m.counts
    compact = n_columns > 2  # narrow columns: the same facts in fewer words, so they stay in the first screen
    st.markdown(
        f"<span style='color:{outcome.colour};font-weight:700'>{outcome.letter}</span>"
        f"{':' if compact else ' vs uncompressed:'} "
        f"**{counts['matched']} matched** · **{counts['missed']} missed** · **{counts['false']} false**",
        unsafe_allow_html=True)
    st.markdown(fmt.cost_text(res, compact=compact))
    labels = ", ".join(f"{d.label} {d.score:.2f}" for d in res.shown(threshold)) or "nothing above the threshold"
    st.caption(f"Detections: {labels}")
    tasks_caption(compute.task_overlay(res), state.served_tasks(state.column_values(outcome.cid))[1], compact)
    outcome.details = f"{config.label()}{quality}. " + fmt.timing_text(res)
    if extra := fmt.cost_details(res):
        outcome.details += f". {extra}"


def tasks_caption(view: dict[str, Any], not_served: list[str], compact: bool) -> None:
    """Pose and classes served from this column's bits, coloured by agreement with the uncompressed run."""
    hexes = {draw.MATCHED: draw.COLOURS_HEX["matched"], draw.FALSE: draw.COLOURS_HEX["false"],
             draw.MISSED: draw.COLOURS_HEX["missed"]}
    lines = []
    if pose := view.get("pose"):
        oks = pose["oks"]
        colour = hexes.get(draw.agreement_colour(oks), "#888")
        value = "no person in either run" if oks is None else f"OKS {oks:.2f} vs uncompressed"
        lines.append(f"Pose: <b style='color:{colour}'>{value}</b>"
                     + ("" if compact else " (skeleton on the picture; white dots: uncompressed)"))
    if cls := view.get("classification"):
        shown = cls["top5"][:3] if compact else cls["top5"]
        names = ", ".join(
            f"<span style='color:{draw.COLOURS_HEX['matched'] if c['in_reference_top5'] else draw.COLOURS_HEX['missed']}'>"
            f"{fmt.html_escape(c['label'])} {c['score']:.2f}</span>" for c in shown)
        agrees = "top-1 agrees" if cls["top1_agrees"] else \
            f"top-1 differs (uncompressed: {fmt.html_escape(cls['reference_top5'][0]['label'])})"
        lines.append(f"Classes: {names} · <b>{agrees}</b>")
    lines += [f"Not served: {fmt.html_escape(n)}" for n in not_served]
    if lines:
        st.markdown("<div style='font-size:0.85rem;line-height:1.35'>" + "<br>".join(lines) + "</div>",
                    unsafe_allow_html=True)


def quality_control(cid: int, outcome: ColumnOutcome) -> None:
    """The codec's own quality scale, with what it means in bits."""
    codec_name = outcome.config.codec
    info = compute.codec_table()[codec_name]
    lo, hi = (float(v) for v in info["quality_range"])
    default = float(info["default_quality"])
    kq = keys.quality(cid, codec_name)
    more = "higher" if info["higher_is_better"] else "lower"
    meaning = info.get("quality_meaning") or "quality"
    learned = compute.learned_stream_bytes(codec_name) if info.get("split") else None
    res = outcome.result
    if learned:
        label = f"learned model index ({more} = more bits)"
    else:
        label = f"{meaning} ({more} = more bits)"
    help_text = (f"{codec_name}: {lo:g} to {hi:g}, default {default:g}. A {more} value spends more bits and "
                 "keeps the features closer to the original.")
    value = min(max(float(st.session_state.get(kq, default)), lo), hi)
    if learned:
        pixels = res.image_size[0] * res.image_size[1] if res is not None else None
        st.session_state[kq] = int(round(value))

        def rate(q: int) -> str:
            size = learned.get(int(q))
            if size is None:
                return f"{q}"
            text = f"{q} (≈{size * 8:,.0f} bits"
            return text + (f", ≈{fmt.bpp(size * 8 / pixels)} here)" if pixels else ")")

        st.select_slider(label, list(range(int(lo), int(hi) + 1)), key=kq, on_change=on_column_change, args=(cid,), format_func=rate,
                         help=help_text + " Rates: mean stream size per index on the codec's validation images.")
        return
    if lo.is_integer() and hi.is_integer() and default.is_integer():
        st.session_state[kq] = int(round(value))
        st.slider(label, int(lo), int(hi), step=1, key=kq, on_change=on_column_change, args=(cid,), help=help_text)
    else:
        options = quality_steps(info)
        st.session_state[kq] = min(options, key=lambda o: abs(np.log(o / value)) if lo > 0 else abs(o - value))
        st.select_slider(label, options, key=kq, on_change=on_column_change, args=(cid,), help=help_text, format_func=lambda v: f"{v:g}")
    if res is not None and res.frames and "bits per pixel" in meaning:
        frame = next(iter(res.frames.values()))
        w, h = res.image_size
        st.caption(f"The target is bits per pixel of the {frame.shape[1]}×{frame.shape[0]} packed frame; "
                   f"of the {w}×{h} image that is {fmt.bpp(res.bpp)}.")


def quality_steps(info: dict[str, Any], n: int = 61) -> list[float]:
    """Slider stops of a real-valued quality scale: geometric when the range is wide, with the
    default and the RD sweep's qualities included so a chart pick lands exactly on a stop."""
    lo, hi = (float(v) for v in info["quality_range"])
    grid = np.geomspace(lo, hi, n) if lo > 0 and hi / lo > 100 else np.linspace(lo, hi, n)
    stops = {float(f"{v:.3g}") for v in grid} | {float(info["default_quality"])} | set(compute.sweep_qualities(info))
    return sorted(q for q in stops if lo <= q <= hi)
