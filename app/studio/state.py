"""Per-session state: the compared columns live in ``st.session_state`` only.

A column has a stable id; its widgets are keyed ``c{id}.{field}``, so two browser sessions
(two session states) keep independent columns, and removing a column does not shift the
others' settings. The quality widget is keyed per codec (``c{id}.q.{codec}``) because every
codec has its own scale.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from fcmcore.models import DEFAULT_MODEL
from fcmcore.pipeline import DEFAULT_CODEC, DEFAULT_SPLIT, PipelineConfig

from . import compute

MIN_COLUMNS = 2
MAX_COLUMNS = 4
MODEL_SPLIT = "model-split"
FULL_INPUT = "full-input"
PARADIGMS = (MODEL_SPLIT, FULL_INPUT)
NO_CODEC = "none"  # uncompressed: raw float32 features (or raw RGB for full input)

FIELDS = ("paradigm", "model", "split", "codec", "wrapper", "rdo")
PICK_KEY = "_rd_pick"  # a pending {"column": id, "quality": q} from the RD chart


def key(cid: int, field: str) -> str:
    return f"c{cid}.{field}"


def quality_key(cid: int, codec: str) -> str:
    return f"c{cid}.q.{codec}"


def column_ids() -> list[int]:
    return list(st.session_state["col_ids"])


def letter(cid: int) -> str:
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[column_ids().index(cid) % 26]


def _set_column(cid: int, values: dict[str, Any]) -> None:
    for field in FIELDS:
        st.session_state[key(cid, field)] = values[field]
    for name, q in values.get("qualities", {}).items():
        st.session_state[quality_key(cid, name)] = q


def init(codecs: dict[str, dict[str, Any]]) -> None:
    """First run of a session: two columns, the default codec at its default and at a harsh quality."""
    if "col_ids" in st.session_state:
        return
    base = {"paradigm": MODEL_SPLIT, "model": DEFAULT_MODEL, "split": DEFAULT_SPLIT,
            "codec": DEFAULT_CODEC, "wrapper": "none", "rdo": "sse"}
    codec = codecs.get(DEFAULT_CODEC)
    st.session_state["col_ids"] = [0, 1]
    st.session_state["next_col"] = 2
    _set_column(0, base)
    second = dict(base)
    if codec is not None:
        second["qualities"] = {DEFAULT_CODEC: compute.harsh_quality(codec)}
    _set_column(1, second)


def column_values(cid: int) -> dict[str, Any]:
    values = {field: st.session_state.get(key(cid, field)) for field in FIELDS}
    values["rdo"] = values.get("rdo") or "sse"
    codec = values.get("codec")
    values["qualities"] = {}
    if codec and quality_key(cid, codec) in st.session_state:
        values["qualities"][codec] = st.session_state[quality_key(cid, codec)]
    return values


def add_column() -> None:
    """Button callback: a new column copying the last one's settings."""
    ids = column_ids()
    if len(ids) >= MAX_COLUMNS:
        return
    cid = st.session_state["next_col"]
    st.session_state["next_col"] = cid + 1
    _set_column(cid, column_values(ids[-1]))
    st.session_state["col_ids"] = ids + [cid]


def remove_column(cid: int) -> None:
    ids = column_ids()
    if len(ids) <= MIN_COLUMNS or cid not in ids:
        return
    st.session_state["col_ids"] = [i for i in ids if i != cid]
    for k in [k for k in st.session_state if str(k).startswith(f"c{cid}.")]:
        del st.session_state[k]


def request_quality(cid: int, quality: float) -> None:
    """Ask for ``quality`` in column ``cid`` on the next run (widgets may not change once drawn)."""
    st.session_state[PICK_KEY] = {"column": int(cid), "quality": float(quality)}


def apply_pending_pick() -> None:
    """Before any widget is drawn: move a pending RD-chart pick into the column's quality widget."""
    pick = st.session_state.pop(PICK_KEY, None)
    if not pick:
        return
    cid = int(pick["column"])
    if cid not in column_ids():
        return
    codec = st.session_state.get(key(cid, "codec"))
    if codec and codec != NO_CODEC:
        st.session_state[quality_key(cid, codec)] = pick["quality"]


def build_config(values: dict[str, Any]) -> PipelineConfig:
    full = values["paradigm"] == FULL_INPUT
    codec = values["codec"]
    return PipelineConfig(
        model=values["model"],
        split=None if full else values["split"],
        codec=None if codec in (None, NO_CODEC) else codec,
        quality=values["qualities"].get(codec),
        wrapper="none" if full else (values["wrapper"] or "none"),
        rdo="sse" if full or (values["wrapper"] or "none") == "none" else (values.get("rdo") or "sse"),
    )
