"""Where things live: bundled assets, the shared data folder, the result cache."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
ASSETS_DIR = REPO_DIR / "assets"


def shared_dir() -> Path:
    """The shared data folder (datasets): $FCM_SHARED, else ``shared/`` beside the checkout."""
    env = os.environ.get("FCM_SHARED")
    return Path(env) if env else REPO_DIR.parent / "shared"


def cache_dir() -> Path:
    """Per-user cache for results ($FCM_CACHE_DIR, default ~/.cache/fcm-studio)."""
    env = os.environ.get("FCM_CACHE_DIR")
    path = Path(env) if env else Path.home() / ".cache" / "fcm-studio"
    return path


def portable(path: str | Path | None) -> str | None:
    """A path as written into results files and recorded commands, naming no location of
    this machine: inside the checkout it is relative to it (``assets/...``), the shared
    folder is ``../shared/...`` (its default place beside the checkout; ``$FCM_SHARED``
    when set elsewhere), a ``$FCM_CACHE_DIR`` set outside both is ``$FCM_CACHE_DIR`` and the
    home folder is ``~``."""
    if path is None:
        return None
    text = str(path)
    shared = shared_dir()
    shared_token = "../shared" if shared.resolve() == (REPO_DIR.parent / "shared").resolve() else "$FCM_SHARED"
    prefixes = [(str(REPO_DIR), "."), (str(shared.resolve()), shared_token), (str(shared), shared_token)]
    env_cache = os.environ.get("FCM_CACHE_DIR")
    if env_cache:  # why: after the checkout and shared folder, which may hold it; before ~, which may too
        prefixes += [(str(Path(env_cache).resolve()), "$FCM_CACHE_DIR"), (str(Path(env_cache)), "$FCM_CACHE_DIR")]
    for prefix, token in prefixes + [(str(Path.home()), "~")]:
        if text == prefix or text.startswith(prefix + os.sep):
            rest = text[len(prefix):]
            return (token + rest) if token != "." else (rest.lstrip(os.sep) or ".")
    return text
