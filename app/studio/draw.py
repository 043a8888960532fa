"""Pictures for the page (display only): detections coloured by how they match the
uncompressed run, and feature tensors as channel grids and heat maps."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fcmcore.packing import tile_channels

MATCHED = (46, 160, 67)  # green: also found by the uncompressed run
FALSE = (255, 127, 14)  # orange: not in the uncompressed run
MISSED = (214, 39, 40)  # red, dashed: the uncompressed run found it, this column did not
COLOURS_HEX = {"matched": "#2ea043", "false": "#ff7f0e", "missed": "#d62728"}
DISPLAY_MAX_SIDE = 960
PAGE_WIDTH_PX = 880  # CSS px the columns share at 1280x800 with the sidebar open
LABEL_PX = 13  # label text height on screen, whatever the number of columns


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _dashed_rect(draw: ImageDraw.ImageDraw, box, colour, width: int, dash: int) -> None:
    x1, y1, x2, y2 = box
    for (ax, ay, bx, by) in ((x1, y1, x2, y1), (x2, y1, x2, y2), (x2, y2, x1, y2), (x1, y2, x1, y1)):
        length = max(abs(bx - ax), abs(by - ay))
        steps = max(int(length // (2 * dash)), 1)
        for i in range(steps + 1):
            t0, t1 = (2 * i * dash) / max(length, 1), (2 * i * dash + dash) / max(length, 1)
            if t0 >= 1:
                break
            t1 = min(t1, 1.0)
            draw.line((ax + (bx - ax) * t0, ay + (by - ay) * t0, ax + (bx - ax) * t1, ay + (by - ay) * t1),
                      fill=colour, width=width)


def _label(draw: ImageDraw.ImageDraw, xy, text: str, colour, font, size: tuple[int, int],
           placed: list[tuple[float, float, float, float]]) -> None:
    """A filled label above (x, y), or below when there is no room; moved down past labels
    already drawn so that none hides another."""
    x, y = xy
    l, t, r, b = draw.textbbox((0, 0), text, font=font)
    w, h = r - l + 6, b - t + 4
    y = y - h if y - h >= 0 else y
    x = min(max(x, 0), max(size[0] - w, 0))
    for _ in range(len(placed) + 1):
        hit = next((p for p in placed if x < p[2] and p[0] < x + w and y < p[3] and p[1] < y + h), None)
        if hit is None:
            break
        y = hit[3]
    y = min(y, max(size[1] - h, 0))
    placed.append((x, y, x + w, y + h))
    draw.rectangle((x, y, x + w, y + h), fill=colour)
    draw.text((x + 3 - l, y + 2 - t), text, fill=(255, 255, 255), font=font)


def agreement_colour(oks: float | None) -> tuple[int, int, int]:
    """A pose's colour by its OKS against the uncompressed pose: green, orange, red."""
    if oks is None:
        return (200, 200, 200)
    return MATCHED if oks >= 0.75 else FALSE if oks >= 0.5 else MISSED


def _pose(draw: ImageDraw.ImageDraw, pose: dict, scale: float, width: int) -> None:
    """The column's skeleton (coloured by OKS) over the uncompressed keypoints (small white dots)."""
    colour = agreement_colour(pose.get("oks"))
    r = max(2, width)
    for k in pose["reference_keypoints"]:
        if k["shown"]:
            x, y = k["x"] * scale, k["y"] * scale
            draw.ellipse((x - r / 2, y - r / 2, x + r / 2, y + r / 2), fill=(255, 255, 255))
    for limb in pose["limbs"]:
        draw.line([(limb["x1"] * scale, limb["y1"] * scale), (limb["x2"] * scale, limb["y2"] * scale)],
                  fill=colour, width=width + 1)
    for k in pose["keypoints"]:
        if k["shown"]:
            x, y = k["x"] * scale, k["y"] * scale
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline=(255, 255, 255))


def detections_image(rgb: np.ndarray, matched, false, missed, columns: int = 2, pose: dict | None = None) -> Image.Image:
    """The image with boxes: matched (green), false (orange), missed reference boxes (red, dashed).

    ``matched``/``false`` are detections, ``missed`` reference detections (label, score, box).
    Labels and lines are sized for the width the picture gets on screen when ``columns``
    pictures share the page, so they stay readable at 4 columns. ``pose``: the pose part of
    ``fcmcore.tasks.secondary.overlay`` (image pixels), drawn under the boxes' labels."""
    img = Image.fromarray(rgb)
    scale = min(1.0, DISPLAY_MAX_SIDE / max(img.size))
    if scale < 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    side = min(img.size)
    shown_px = PAGE_WIDTH_PX / max(columns, 1) - 50  # about the picture's width on screen (less padding)
    per_px = img.width / shown_px  # image pixels per screen pixel
    width = max(2, round(2 * per_px))
    narrow = columns > 2  # smaller text and no score on the box (the caption lists the scores)
    font = _font(max(10, round((LABEL_PX - 2 if narrow else LABEL_PX) * per_px)))

    def box(d):
        return tuple(float(v) * scale for v in d.box)

    if pose:
        _pose(draw, pose, scale, width)
    for d in missed:
        _dashed_rect(draw, box(d), MISSED, width, dash=max(4, side // 60))
    for d, colour in [(d, FALSE) for d in false] + [(d, MATCHED) for d in matched]:
        draw.rectangle(box(d), outline=colour, width=width)
    placed: list[tuple[float, float, float, float]] = []
    for d, colour in [(d, MATCHED) for d in matched] + [(d, FALSE) for d in false]:
        x1, y1, _, _ = box(d)
        _label(draw, (x1, y1), d.label if narrow else f"{d.label} {d.score:.2f}", colour, font, img.size, placed)
    for d in missed:
        x1, y1, x2, y2 = box(d)
        _label(draw, (x1, y2 + 1), f"missed {d.label}", MISSED, font, img.size, placed)
    return img


# -- feature maps --------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _lut(name: str) -> np.ndarray:
    import matplotlib

    cmap = matplotlib.colormaps[name]
    return (cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def colourise(arr: np.ndarray, lo: float, hi: float, cmap: str = "viridis") -> np.ndarray:
    """2-D float array -> (H, W, 3) uint8 through a colour map; NaN (grid gaps) is white."""
    arr = np.asarray(arr, dtype=np.float64)
    nan = ~np.isfinite(arr)
    span = hi - lo if hi > lo else 1.0
    idx = np.clip((np.nan_to_num(arr, nan=lo) - lo) / span * 255.0 + 0.5, 0, 255).astype(np.uint8)
    out = _lut(cmap)[idx]
    out[nan] = 255
    return out


def channel_grid(chw: np.ndarray, gap: int = 1) -> np.ndarray:
    """(C, H, W) -> one 2-D float grid of channels (row-major like the codec's packing), NaN gaps."""
    chw = np.asarray(chw, dtype=np.float32)
    padded = np.pad(chw, ((0, 0), (0, gap), (0, gap)), constant_values=np.nan)
    return tile_channels(padded, fill=np.nan)


def upscale(rgb: np.ndarray, target: int = 480) -> np.ndarray:
    """Nearest-neighbour enlargement so small maps are visible as blocks, not blur."""
    factor = max(1, target // max(rgb.shape[:2]))
    if factor == 1:
        return rgb
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


def frame_image(frame: np.ndarray, bit_depth: int | None) -> np.ndarray:
    """A packed codec frame (uint16 samples of ``bit_depth`` bits) as 8-bit grey."""
    frame = np.asarray(frame)
    top = (1 << bit_depth) - 1 if bit_depth else max(int(frame.max()), 1)
    return np.clip(frame.astype(np.float64) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)


def colour_bar(lo: float, hi: float, cmap: str = "viridis", width: int = 480, label: str = "") -> Image.Image:
    """A horizontal colour scale from ``lo`` to ``hi`` with its end and middle values written
    under it: the key to a colourised map drawn with the same ``lo``, ``hi`` and ``cmap``."""
    bar_h, text_h = 14, 18
    img = Image.new("RGB", (width, bar_h + text_h), (255, 255, 255))
    ramp = colourise(np.tile(np.linspace(0.0, 1.0, width), (bar_h, 1)), 0.0, 1.0, cmap)
    img.paste(Image.fromarray(ramp), (0, 0))
    draw = ImageDraw.Draw(img)
    font = _font(12)
    ticks = [(0, f"{lo:.3g}"), (width // 2, f"{(lo + hi) / 2:.3g}"), (width - 1, f"{hi:.3g}")]
    for x, text in ticks:
        l, _, r, _ = draw.textbbox((0, 0), text, font=font)
        tx = min(max(x - (r - l) // 2, 0), width - (r - l))
        draw.line((x, bar_h - 4, x, bar_h), fill=(0, 0, 0))
        draw.text((tx, bar_h + 2), text, fill=(0, 0, 0), font=font)
    if label:
        l, _, r, _ = draw.textbbox((0, 0), label, font=font)
        draw.text((width // 4 - (r - l) // 2, bar_h + 2), label, fill=(90, 90, 90), font=font)
    return img
