"""Reading images a user hands us, safely.

Everything odd is normalised to an 8-bit RGB PIL image (EXIF rotation applied, palette /
grayscale / CMYK / 16-bit / alpha converted); anything unusable raises ``InputError`` with
one clear line. Huge images are refused before they are decoded (decompression bombs).

Every file fcmcore reads on a user's behalf goes through ``check_regular_file`` /
``open_regular_file`` / ``read_regular_file``: only a regular file (after symlinks) under a
size limit is opened, and the read itself is bounded, so a FIFO cannot hang a command,
``/dev/zero`` cannot eat memory and ``/proc`` files give one clear line, not a traceback.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import FCMError, InputError

# 40 megapixels: a 8K photo fits; a decompression bomb does not. Checked before decoding.
MAX_PIXELS = 40_000_000
MAX_BYTES = 200 * 1024 * 1024
MIN_SIDE = 2  # detectors need at least a few pixels; a 1x1 image is refused clearly

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not a grey half-image


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n} bytes"


def _refuse_kind(mode: int, label: str, error: type[FCMError]) -> None:
    if stat.S_ISDIR(mode):
        raise error(f"{label}: is a folder, not a file")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
                else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "special")
        raise error(f"{label}: not a regular file ({kind}); give a file")


def check_regular_file(path: str | Path, max_bytes: int, *, label: str | None = None,
                       error: type[FCMError] = InputError) -> int:
    """Refuse (with ``error``, one line) anything but a regular file of at most ``max_bytes``
    at ``path`` (symlinks followed): missing, folder, FIFO, device, socket, symlink loop,
    too large. Never opens the file, so it cannot block. Returns the size in bytes."""
    label = label or str(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise error(f"{label}: no such file") from None
        if exc.errno == errno.ELOOP:
            raise error(f"{label}: symlink loop") from None
        raise error(f"{label}: cannot read ({exc.strerror or exc})") from None
    _refuse_kind(st.st_mode, label, error)
    if st.st_size > max_bytes:
        raise error(f"{label}: file is {_mb(st.st_size)}, larger than the {_mb(max_bytes)} limit")
    return st.st_size


def open_regular_file(path: str | Path, max_bytes: int, *, label: str | None = None,
                      error: type[FCMError] = InputError):
    """``check_regular_file``, then open it for binary reading and check again what was
    opened (the path may have been swapped in between). Non-blocking open: a FIFO swapped
    in cannot hang. Returns a file object (use it in a ``with``)."""
    label = label or str(path)
    check_regular_file(path, max_bytes, label=label, error=error)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise error(f"{label}: cannot read ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        _refuse_kind(st.st_mode, label, error)
        if st.st_size > max_bytes:
            raise error(f"{label}: file is {_mb(st.st_size)}, larger than the {_mb(max_bytes)} limit")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: str | Path, max_bytes: int, *, label: str | None = None,
                      error: type[FCMError] = InputError) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, or ``error``. The read is
    bounded too (files that lie about their size, like ``/proc`` ones, cannot overrun)."""
    label = label or str(path)
    with open_regular_file(path, max_bytes, label=label, error=error) as f:
        try:
            data = f.read(max_bytes + 1)
        except OSError as exc:
            raise error(f"{label}: cannot read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise error(f"{label}: more than the {_mb(max_bytes)} limit")
    return data


def load_image(source: str | Path | bytes | io.BytesIO, name: str | None = None) -> Image.Image:
    """Open ``source`` (path, bytes or file-like) as an 8-bit RGB image, or raise InputError."""
    label = name or (str(source) if isinstance(source, (str, Path)) else "image")
    if isinstance(source, (str, Path)):
        data = read_regular_file(source, MAX_BYTES, label=label)
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        try:
            data = source.read(MAX_BYTES + 1)
        except OSError as exc:
            raise InputError(f"{label}: cannot read ({exc.strerror or exc})") from None
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
