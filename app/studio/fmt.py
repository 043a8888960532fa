"""Numbers and names as the page prints them (plain functions, no Streamlit)."""

from __future__ import annotations

import html
import math
import re

from fcmcore.pipeline import PipelineResult

EDGE_STAGES = ("preprocess", "head", "pre_wrapper", "encode")
SERVER_STAGES = ("decode", "post_wrapper", "tail", "detector")

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=^&])")


def md_escape(text: str) -> str:
    """``text`` shown literally inside Markdown (``st.error``, ``st.markdown``, captions):
    a file name like ``[x](http://e).png`` or ``![i](http://e/i.png)`` stays plain text,
    never a link, an image or markup. Line breaks become spaces."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).splitlines()))


_MD_ENTITIES = {"*": "&#42;", "_": "&#95;", "`": "&#96;", "[": "&#91;", "]": "&#93;", "\\": "&#92;", "$": "&#36;"}


def html_escape(text: str) -> str:
    """``text`` shown literally inside HTML that Markdown renders (``unsafe_allow_html``): HTML
    escaped, and Markdown's emphasis/link/math characters as entities."""
    out = html.escape(" ".join(str(text).splitlines()))
    return "".join(_MD_ENTITIES.get(ch, ch) for ch in out)


def sig(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, without exponent for everyday sizes:
    0.000215, 0.0321, 1.25, 24.0 -> '0.000215', '0.0321', '1.25', '24.0'."""
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    exponent = math.floor(math.log10(abs(value)))
    decimals = max(digits - 1 - exponent, 0)
    if exponent < -6:
        return f"{value:.{digits - 1}e}"
    return f"{value:,.{decimals}f}"


def bpp(value: float) -> str:
    return f"{sig(value)} bpp"


def macs_text(macs: float) -> str:
    macs = float(macs)
    if macs >= 1e9:
        return f"{macs / 1e9:,.2f} G MACs"
    if macs >= 1e6:
        return f"{macs / 1e6:,.0f} M MACs"
    return f"{macs:,.0f} MACs"


def cost_text(res: PipelineResult, compact: bool = False) -> str:
    """'**12,345 bits** (1.5 KiB) · **0.0514 bpp** · **60.1×** smaller than float32 features'
    (compact: '**12,345 bits** · **0.0514 bpp** · **60.1×** smaller')."""
    raw = res.raw_feature_bits
    if compact:
        w, h = res.image_size
        ratio = (raw or w * h * 24) / max(res.bits, 1)
        return f"**{res.bits:,} bits** · **{bpp(res.bpp)}** · **{ratio:,.1f}×** smaller"
    text = f"**{res.bits:,} bits** ({res.bits / 8 / 1024:,.1f} KiB) · **{bpp(res.bpp)}**"
    if raw:
        text += f" · **{raw / max(res.bits, 1):,.1f}×** smaller than float32 features"
    else:
        w, h = res.image_size
        text += f" · **{w * h * 24 / max(res.bits, 1):,.1f}×** smaller than raw 24-bit RGB"
    return text


def cost_details(res: PipelineResult) -> str:
    parts = []
    if res.header_bytes:
        parts.append(f"side info {res.header_bytes} B (inside the bits)")
    if res.bits_estimated is not None:
        parts.append(f"estimated {float(res.bits_estimated):,.0f} bits from likelihoods")
    macs = res.extra.get("edge_macs")
    if macs is not None:
        parts.append(f"{macs_text(macs)} on the edge")
    return " · ".join(parts)


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
    return " → ".join(parts) + (f"; total {total:.0f} ms" if total is not None else "")
