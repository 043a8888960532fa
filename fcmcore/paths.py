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
    """A path as written into results files: the shared folder as ``$FCM_SHARED`` and the
    home folder as ``~``, so a results file names no machine-specific location."""
    if path is None:
        return None
    text = str(path)
    for prefix, token in ((str(shared_dir().resolve()), "$FCM_SHARED"), (str(shared_dir()), "$FCM_SHARED"),
                          (str(Path.home()), "~")):
        if text == prefix or text.startswith(prefix + os.sep):
            return token + text[len(prefix):]
    return text
