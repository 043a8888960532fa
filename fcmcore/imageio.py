"""Reading images a user hands us, safely.

Everything odd is normalised to an 8-bit RGB PIL image (EXIF rotation applied, palette /
grayscale / CMYK / 16-bit / alpha converted); anything unusable raises ``InputError`` with
one clear line. Huge images are refused before they are decoded (decompression bombs).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import InputError

# 40 megapixels: a 8K photo fits; a decompression bomb does not. Checked before decoding.
MAX_PIXELS = 40_000_000
MAX_BYTES = 200 * 1024 * 1024
MIN_SIDE = 2  # detectors need at least a few pixels; a 1x1 image is refused clearly

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not a grey half-image


def load_image(source: str | Path | bytes | io.BytesIO, name: str | None = None) -> Image.Image:
    """Open ``source`` (path, bytes or file-like) as an 8-bit RGB image, or raise InputError."""
    label = name or (str(source) if isinstance(source, (str, Path)) else "image")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise InputError(f"{label}: no such file")
        if path.is_dir():
            raise InputError(f"{label}: is a folder, not an image")
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise InputError(f"{label}: file is {size / 1e6:.0f} MB, larger than the {MAX_BYTES / 1e6:.0f} MB limit")
        data = path.read_bytes()
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        data = source.read()
    if len(data) == 0:
        raise InputError(f"{label}: file is empty (0 bytes)")
    if len(data) > MAX_BYTES:
        raise InputError(f"{label}: {len(data) / 1e6:.0f} MB, larger than the {MAX_BYTES / 1e6:.0f} MB limit")
    return decode_image_bytes(data, label)


def decode_image_bytes(data: bytes, label: str = "image") -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise InputError(
                    f"{label}: {width}x{height} is {width * height / 1e6:.0f} megapixels, "
                    f"more than the {MAX_PIXELS / 1e6:.0f} megapixel limit"
                )
            if min(width, height) < MIN_SIDE:
                raise InputError(f"{label}: {width}x{height} is too small to detect anything in")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # animated GIF/WebP: the first frame is the image
            img.load()
            img = ImageOps.exif_transpose(img)
            return to_rgb8(img)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{label}: image too large (decompression bomb guard)") from None
    except UnidentifiedImageError:
        raise InputError(f"{label}: not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated or corrupt data
        raise InputError(f"{label}: corrupt or truncated image ({exc})") from None


def to_rgb8(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB. 16-bit is scaled, not clipped; alpha is put on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = (0.0, 65535.0) if img.mode.startswith("I;16") else (float(arr.min()), float(arr.max()))
        arr = np.clip((arr - lo) / max(hi - lo, 1e-12) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img
