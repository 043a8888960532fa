"""Images: bundled samples and uploads. Bytes in; a usable image or one clear error line out.

The browser never names a file on the server: samples are picked by name from
``assets/samples``, uploads arrive as bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from PIL import Image

from fcmcore.paths import ASSETS_DIR

from . import compute

SAMPLES_DIR = ASSETS_DIR / "samples"
SAMPLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "avif", "jxl"]
DEFAULT_SAMPLES = ("coffee", "astronaut")  # coffee first: three objects, the harsh column loses one


@dataclass(frozen=True)
class ImageEntry:
    name: str  # what the user sees (sample name or uploaded file name)
    sha: str  # sha256 of the bytes: the cache key of everything computed on the image
    data: bytes
    source: str  # "sample" or "upload"

    @property
    def key(self) -> str:
        return f"{self.source}:{self.name}:{self.sha[:12]}"

    @property
    def cli_path(self) -> str:
        """What to pass to ``fcm detect`` to reproduce a column on this image."""
        if self.source == "sample":
            return str(Path("assets/samples") / sample_files()[self.name].name)
        return self.name


@dataclass
class LoadedImage:
    entry: ImageEntry
    image: Image.Image


@st.cache_resource(show_spinner=False)
def sample_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted(SAMPLES_DIR.iterdir()) if p.suffix.lower() in SAMPLE_SUFFIXES}


@st.cache_resource(show_spinner=False)
def _sample_bytes(name: str) -> bytes:
    return sample_files()[name].read_bytes()


def entry_from_bytes(name: str, data: bytes, source: str = "upload") -> ImageEntry:
    return ImageEntry(name=name, sha=hashlib.sha256(data).hexdigest(), data=data, source=source)


def sample_entry(name: str) -> ImageEntry:
    return entry_from_bytes(name, _sample_bytes(name), source="sample")


def load_entries(entries: list[ImageEntry]) -> tuple[list[LoadedImage], list[tuple[str, str]]]:
    """Decode every entry; returns the usable images and (entry key, one error line) per
    unusable one. The line is plain text (it starts with the file name): escape it for Markdown."""
    good: list[LoadedImage] = []
    errors: list[tuple[str, str]] = []
    seen: set[str] = set()
    for entry in entries:
        if entry.key in seen:
            continue
        seen.add(entry.key)
        try:
            good.append(LoadedImage(entry, compute.decoded_image(entry.sha, entry.name, entry.data)))
        except Exception as exc:  # InputError, or a bug: either way that image only
            errors.append((entry.key, compute.error_message(exc)))
    return good, errors


def uploaded_entries(files) -> list[ImageEntry]:
    """``st.file_uploader`` value(s) -> entries (the bytes are read here, once per run)."""
    if files is None:
        return []
    if not isinstance(files, list):
        files = [files]
    return [entry_from_bytes(f.name, f.getvalue()) for f in files]
