"""Generates the bad-input corpus: odd and broken image files, made here, never downloaded.

``python tests/bad_inputs.py OUT_DIR`` writes them to a folder; tests call ``make_corpus``.
Each entry says whether a *usable* image should come out (odd but valid files must work)
or a clear error (broken files must be refused with one line).
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    filename: str
    usable: bool  # True: must load as RGB and run; False: must give a clear error
    why: str


def _photo(width: int = 160, height: int = 120) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)), ((x + y) % 256)], axis=-1)
    return rgb.astype(np.uint8)


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge grey image (IDAT of one compressed row)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1) * 16, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def make_corpus(out: Path) -> list[Case]:
    out.mkdir(parents=True, exist_ok=True)
    rgb = _photo()
    base = Image.fromarray(rgb)
    jpeg = _save(base, "JPEG", quality=90)
    files: dict[str, tuple[bytes, bool, str]] = {}

    files["truncated.jpg"] = (jpeg[: len(jpeg) // 2], False, "JPEG cut in half")
    files["zero_bytes.jpg"] = (b"", False, "empty file")
    files["one_pixel.png"] = (_save(Image.new("RGB", (1, 1), (255, 0, 0)), "PNG"), False, "1x1 image")
    files["text_renamed.jpg"] = (b"this is not an image, just text renamed to .jpg\n" * 4, False, "text file")
    files["random_bytes.png"] = (np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(), False,
                                 "random bytes with a .png name")
    files["bomb.png"] = (_png_bomb(30000, 30000), False, "decompression bomb: 900 megapixels claimed in a few KB")
    files["corrupt_header.png"] = (_save(base, "PNG")[:40] + b"\x00" * 200, False, "PNG with a broken IDAT")

    gray16 = (np.linspace(0, 65535, 160 * 120).reshape(120, 160)).astype(np.uint16)
    files["gray16.png"] = (_save(Image.fromarray(gray16), "PNG"), True, "16-bit grayscale PNG")
    files["gray8.png"] = (_save(base.convert("L"), "PNG"), True, "8-bit grayscale")
    files["cmyk.jpg"] = (_save(base.convert("CMYK"), "JPEG"), True, "CMYK JPEG")
    pal = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    files["palette_transparent.png"] = (_save(pal, "PNG", transparency=0), True, "palette PNG with transparency")
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    files["rgba.png"] = (_save(rgba, "PNG"), True, "RGBA PNG")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW on display
    files["exif_rotated.jpg"] = (_save(base, "JPEG", exif=exif.tobytes()), True, "EXIF orientation 6")
    frames = [Image.fromarray(np.roll(rgb, 10 * i, axis=1)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    files["animated.gif"] = (buf.getvalue(), True, "animated GIF (first frame used)")
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=100)
    files["animated.webp"] = (buf.getvalue(), True, "animated WebP (first frame used)")
    files["very_wide.png"] = (_save(Image.fromarray(_photo(4000, 20)), "PNG"), True, "4000x20 strip")
    files["very_tall.png"] = (_save(Image.fromarray(_photo(20, 4000)), "PNG"), True, "20x4000 strip")
    files["tiny_3x3.png"] = (_save(Image.fromarray(_photo(3, 3)), "PNG"), True, "3x3 image")

    cases = []
    for name, (data, usable, why) in files.items():
        (out / name).write_bytes(data)
        cases.append(Case(name, usable, why))
    return cases


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "bad_inputs")
    for case in make_corpus(target):
        print(f"{case.filename:28s} {'usable' if case.usable else 'refused':8s} {case.why}")
