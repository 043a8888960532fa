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
