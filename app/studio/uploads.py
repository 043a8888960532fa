"""Uploaded images on disk, only where fcmcore needs a file (rate–accuracy sweeps).

Uploads live in the session's memory (``st.file_uploader`` bytes). A sweep reads images from
files, so an upload being swept is written once into this server process's own private
folder: ``tempfile.mkdtemp`` (mode 0700, a fresh name no one else can have created), files
created with ``O_EXCL | O_NOFOLLOW`` (mode 0600, never through a planted symlink), named by
content hash, at most ``MAX_FILES`` kept (only files this process wrote are ever removed),
and the whole folder removed when the process exits. See docs/security.md, "Uploads".
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

MAX_FILES = 64

_lock = threading.Lock()
_folder: Path | None = None
_written: "OrderedDict[str, Path]" = OrderedDict()  # sha -> file, oldest first


def folder() -> Path:
    """This process's private upload folder (created on first use, removed at exit)."""
    global _folder
    with _lock:
        if _folder is None or not _folder.is_dir():
            _folder = Path(tempfile.mkdtemp(prefix="fcm-studio-uploads-"))
            atexit.register(shutil.rmtree, _folder, True)
        return _folder


def _suffix(name: str) -> str:
    return "".join(ch for ch in Path(name).suffix.lower() if ch.isalnum() or ch == ".")[:6] or ".img"


def file_for(sha: str, name: str, data: bytes) -> Path:
    """A private file holding ``data`` (written once per content hash)."""
    root = folder()
    with _lock:
        path = _written.get(sha)
        if path is not None and path.is_file() and not path.is_symlink():
            _written.move_to_end(sha)
            return path
        path = root / f"{sha}{_suffix(name)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:  # not ours (we did not record it): never trust it, replace it
            path.unlink()
            fd = os.open(path, flags, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        _written[sha] = path
        while len(_written) > MAX_FILES:
            _, old = _written.popitem(last=False)
            try:
                old.unlink()
            except OSError:
                pass
        return path
