"""The page's configuration in the URL query string, so a link reproduces the page.

    ?img=coffee,astronaut&show=coffee&A=ssd_mobilenet_v2/expanded_conv_9/hevc/32/none/sse
     &B=ssd_mobilenet_v2/expanded_conv_9/hevc/45/none/sse&tab=rd&src=coco96&n=16&thr=0.5&tasks=pose

A column is ``model/split/codec/quality/wrapper/rdo`` (split ``-`` = full input, quality
``-`` = uncoded or the codec's default). Only bundled samples can be in a link (uploads
stay in the uploader's session). ``encode``/``decode`` are pure; ``load``/``sync`` move
them between ``st.query_params`` and the session.
"""

from __future__ import annotations

from typing import Any, Mapping

import streamlit as st

from . import keys, state

TABS = {"maps": "Feature maps", "bits": "Bit allocation", "rd": "Rate–accuracy curves", "export": "Export"}
TAB_IDS = {label: tab_id for tab_id, label in TABS.items()}


def column_text(values: Mapping[str, Any]) -> str:
    full = values["paradigm"] == state.FULL_INPUT
    codec = values.get("codec") or state.NO_CODEC
    q = values.get("qualities", {}).get(codec)
    parts = [values["model"], "-" if full else values["split"], codec, "-" if q is None else f"{float(q):g}",
             values.get("wrapper") or "none", values.get("rdo") or "sse"]
    return "/".join(str(p) for p in parts)


def parse_column(text: str, codecs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``column_text`` back to column values; ValueError with the reason for a bad one."""
    parts = text.split("/")
    if len(parts) != 6:
        raise ValueError("expected model/split/codec/quality/wrapper/rdo")
    model, split, codec, q, wrapper, rdo = parts
    if codec != state.NO_CODEC and codec not in codecs:
        raise ValueError(f"unknown codec {codec!r}")
    qualities = {}
    if q != "-" and codec != state.NO_CODEC:
        value = float(q)
        lo, hi = (float(v) for v in codecs[codec]["quality_range"])
        if not lo <= value <= hi:
            raise ValueError(f"quality {value:g} outside {codec}'s {lo:g}..{hi:g}")
        qualities[codec] = int(value) if value.is_integer() and float(lo).is_integer() and float(hi).is_integer() else value
    full = split == "-"
    return {"paradigm": state.FULL_INPUT if full else state.MODEL_SPLIT, "model": model,
            "split": None if full else split, "codec": codec, "wrapper": wrapper, "rdo": rdo,
            "qualities": qualities}


def encode(page: Mapping[str, Any]) -> dict[str, str]:
    """Page settings (samples, shown, columns by id, tab, source, limit, threshold) -> params."""
    out = {"img": ",".join(page["samples"])}
    if page.get("shown"):
        out["show"] = page["shown"]
    for cid, values in sorted(page["columns"].items()):
        out[state.letter(cid)] = column_text(values)
    if page.get("tab") in TAB_IDS:
        out["tab"] = TAB_IDS[page["tab"]]
    if page.get("tasks"):
        out["tasks"] = ",".join(page["tasks"])
    for name, key in (("src", "source"), ("n", "limit"), ("metric", "metric"), ("thr", "threshold")):
        if page.get(key) is not None:
            out[name] = f"{page[key]:g}" if isinstance(page[key], float) else str(page[key])
    return out


def decode(params: Mapping[str, str], codecs: Mapping[str, Mapping[str, Any]], samples: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Params -> page settings (only what is present and valid) and notes on what was not."""
    page: dict[str, Any] = {}
    notes: list[str] = []
    if "img" in params:
        names = [n for n in params["img"].split(",") if n]
        bad = [n for n in names if n not in samples]
        if bad:
            notes.append(f"not a bundled sample: {', '.join(bad)}")
        page["samples"] = [n for n in names if n in samples]
    if params.get("show") in page.get("samples", samples):
        page["shown"] = params["show"]
    columns = {}
    for cid, letter in enumerate(state.LETTERS):
        if letter in params:
            try:
                columns[cid] = parse_column(params[letter], codecs)
            except ValueError as exc:
                notes.append(f"column {letter}: {exc}")
    if len(columns) >= state.MIN_COLUMNS:
        page["columns"] = columns
    elif columns:
        notes.append(f"a link needs at least {state.MIN_COLUMNS} valid columns; showing the defaults")
    if params.get("tab") in TABS:
        page["tab"] = TABS[params["tab"]]
    if "src" in params:
        page["source"] = params["src"]
    for name, key, kind in (("n", "limit", int), ("thr", "threshold", float)):
        if name in params:
            try:
                page[key] = kind(params[name])
            except ValueError:
                notes.append(f"{name}={params[name]!r} is not a number")
    if "metric" in params:
        page["metric"] = params["metric"]
    if "tasks" in params:
        wanted = [t for t in params["tasks"].split(",") if t]
        bad = [t for t in wanted if t not in state.SECONDARY_TASKS]
        if bad:
            notes.append(f"unknown task(s) {', '.join(bad)}; known: {', '.join(state.SECONDARY_TASKS)}")
        page["tasks"] = [t for t in state.SECONDARY_TASKS if t in wanted]
    return page, notes


# -- session glue --------------------------------------------------------------------------
SOURCE_KEYS = {"source": keys.RD_SOURCE, "limit": keys.RD_LIMIT, "metric": keys.RD_METRIC,
               "threshold": keys.THRESHOLD, "tab": keys.TAB, "tasks": keys.TASKS}


def load(codecs: Mapping[str, Mapping[str, Any]], samples: list[str]) -> None:
    """First run of a session: the link's settings into the session (before any widget)."""
    if st.session_state.get(keys.URL_LOADED):
        return
    st.session_state[keys.URL_LOADED] = True
    params = {k: st.query_params.get(k) for k in st.query_params}
    if not params:
        state.init(codecs)
        return
    page, notes = decode(params, codecs, samples)
    state.init(codecs, page.get("columns"))
    if "samples" in page:
        st.session_state[keys.SAMPLES] = page["samples"]
    if "shown" in page:
        st.session_state[keys.SHOWN_SAMPLE] = page["shown"]
    for name, key in SOURCE_KEYS.items():
        if name in page:
            st.session_state[key] = page[name]
    st.session_state[keys.URL_NOTES] = notes


def current() -> dict[str, Any]:
    ss = st.session_state
    shown = str(ss.get(keys.SHOWN) or "")
    return {
        "samples": list(ss.get(keys.SAMPLES) or []),
        "shown": shown.split(":")[1] if shown.startswith("sample:") else None,
        "columns": {cid: state.column_values(cid) for cid in state.column_ids()},
        "tab": ss.get(keys.TAB),
        "source": ss.get(keys.RD_SOURCE),
        "limit": ss.get(keys.RD_LIMIT),
        "metric": ss.get(keys.RD_METRIC),
        "threshold": ss.get(keys.THRESHOLD),
        "tasks": list(ss.get(keys.TASKS) or []),
    }


def sync() -> dict[str, str]:
    """Write the session's settings into the URL (only when they changed); returns them."""
    params = encode(current())
    if {k: st.query_params.get(k) for k in st.query_params} != params:
        st.query_params.from_dict(params)
    return params


def share_link(params: Mapping[str, str]) -> str:
    from urllib.parse import urlencode

    base = st.context.url or ""
    return f"{base}?{urlencode(params, safe=',/')}"
