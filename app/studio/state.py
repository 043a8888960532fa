"""Per-session state: the compared columns live in ``st.session_state`` only.

A column's id is also its identity: id i is column ``"ABCD"[i]`` with its own colour for its
whole life, in its header, its picture's caption and its RD curve. Removing B leaves A and C
as they were; adding a column takes the first free letter. Widgets are keyed by id
(``keys.column``), so two browser sessions (two session states) keep independent columns.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from fcmcore.models import DEFAULT_MODEL
from fcmcore.pipeline import DEFAULT_CODEC, DEFAULT_SPLIT, PipelineConfig

from . import compute, keys

MIN_COLUMNS = 2
MAX_COLUMNS = 4
LETTERS = "ABCD"
# Column colours: apart from each other and from the box colours (green/orange/red).
COLOURS = {"A": "#1f77b4", "B": "#9467bd", "C": "#8c564b", "D": "#17becf"}
MODEL_SPLIT = "model-split"
FULL_INPUT = "full-input"
PARADIGMS = (MODEL_SPLIT, FULL_INPUT)
NO_CODEC = "none"  # uncompressed: raw float32 features (or raw RGB for full input)
SECONDARY_TASKS = ("pose", "classification")  # served from the same bits as the detection


def column_ids() -> list[int]:
    return list(st.session_state[keys.COLUMN_IDS])


def letter(cid: int) -> str:
    return LETTERS[cid]


def colour(cid: int) -> str:
    return COLOURS[letter(cid)]


def default_columns(codecs: dict[str, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Two columns: the default codec at its default quality, and at a harsh one."""
    base = {"paradigm": MODEL_SPLIT, "model": DEFAULT_MODEL, "split": DEFAULT_SPLIT,
            "codec": DEFAULT_CODEC, "wrapper": "none", "rdo": "sse", "qualities": {}}
    second = dict(base)
    codec = codecs.get(DEFAULT_CODEC)
    if codec is not None:
        second["qualities"] = {DEFAULT_CODEC: compute.harsh_quality(codec)}
    return {0: base, 1: second}


def set_column(cid: int, values: dict[str, Any]) -> None:
    for field in keys.FIELDS:
        st.session_state[keys.column(cid, field)] = values[field]
    for name, q in values.get("qualities", {}).items():
        st.session_state[keys.quality(cid, name)] = q


def init(codecs: dict[str, dict[str, Any]], columns: dict[int, dict[str, Any]] | None = None) -> None:
    """First run of a session: the given columns (from a link), else the two defaults."""
    if keys.COLUMN_IDS in st.session_state:
        return
    columns = columns or default_columns(codecs)
    st.session_state[keys.COLUMN_IDS] = sorted(columns)
    for cid, values in columns.items():
        set_column(cid, values)


def column_values(cid: int) -> dict[str, Any]:
    values = {field: st.session_state.get(keys.column(cid, field)) for field in keys.FIELDS}
    values["rdo"] = values.get("rdo") or "sse"
    codec = values.get("codec")
    values["qualities"] = {}
    if codec and keys.quality(cid, codec) in st.session_state:
        values["qualities"][codec] = st.session_state[keys.quality(cid, codec)]
    return values


def add_column() -> None:
    """Button callback: the first free letter, copying the last column's settings."""
    ids = column_ids()
    free = [i for i in range(MAX_COLUMNS) if i not in ids]
    if not free:
        return
    cid = free[0]
    set_column(cid, column_values(ids[-1]))
    st.session_state[keys.COLUMN_IDS] = sorted(ids + [cid])


def remove_column(cid: int) -> None:
    ids = column_ids()
    if len(ids) <= MIN_COLUMNS or cid not in ids:
        return
    st.session_state[keys.COLUMN_IDS] = [i for i in ids if i != cid]
    for k in [k for k in st.session_state if str(k).startswith(keys.column_prefix(cid))]:
        del st.session_state[k]
    st.session_state.get(keys.DRAWN, {}).pop(cid, None)


def request_quality(cid: int, quality: float) -> None:
    """Ask for ``quality`` in column ``cid`` on the next run (widgets may not change once drawn)."""
    st.session_state[keys.PICK] = {"column": int(cid), "quality": float(quality)}


def apply_pending_pick() -> None:
    """Before any widget is drawn: move a pending RD-chart pick into the column's quality widget."""
    pick = st.session_state.pop(keys.PICK, None)
    if not pick:
        return
    cid = int(pick["column"])
    if cid not in column_ids():
        return
    codec = st.session_state.get(keys.column(cid, "codec"))
    if codec and codec != NO_CODEC:
        st.session_state[keys.quality(cid, codec)] = pick["quality"]


def served_tasks(values: dict[str, Any]) -> tuple[tuple[str, ...], list[str]]:
    """The secondary tasks picked in the sidebar that this column can serve, and why not the others."""
    wanted = [t for t in SECONDARY_TASKS if t in (st.session_state.get(keys.TASKS) or [])]
    if values["paradigm"] == FULL_INPUT:  # each task network runs on the decoded image
        return tuple(wanted), []
    served = tuple(t for t in wanted if compute.connector_available(t, values["model"], values["split"]))
    notes = [f"{t}: no connector trained for {values['split']}" for t in wanted if t not in served]
    return served, notes


def build_config(values: dict[str, Any]) -> PipelineConfig:
    full = values["paradigm"] == FULL_INPUT
    codec = values["codec"]
    wrapper = "none" if full else (values["wrapper"] or "none")
    return PipelineConfig(
        model=values["model"],
        split=None if full else values["split"],
        codec=None if codec in (None, NO_CODEC) else codec,
        quality=values["qualities"].get(codec),
        wrapper=wrapper,
        rdo="sse" if full or wrapper == "none" else (values.get("rdo") or "sse"),
        tasks=("detection", *served_tasks(values)[0]),
    )
